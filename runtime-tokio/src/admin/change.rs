//! mqadmin's changes to a cluster: topics (created, re-permissioned, deleted) and
//! subscription groups (created or updated, deleted), on one broker (`-b`) or on every
//! master of a cluster (`-c`), as RocketMQ's tool does them.

use anyhow::{anyhow, bail};
use std::collections::BTreeMap;

use keel_core::protocol::body::{MessageQueue, ResetOffsetBody, SubscriptionGroupConfig};
use keel_core::protocol::headers::{
    CommandHeader, CreateTopicRequestHeader, DeleteSubscriptionGroupRequestHeader,
    DeleteTopicFromNamesrvRequestHeader, ResetOffsetRequestHeader, TopicRequestHeader,
};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{RemotingCommand, RequestCode};

use super::{resolve, AdminClient};

/// Where a change goes: one broker, or every master of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One broker, `host:port`.
    Broker(String),
    /// Every master of the named cluster.
    Cluster(String),
}

impl Target {
    /// The target named by `-b` or `-c` (exactly one of them).
    pub fn from_options(broker: Option<String>, cluster: Option<String>) -> anyhow::Result<Self> {
        match (broker, cluster) {
            (Some(broker), None) => Ok(Self::Broker(broker)),
            (None, Some(cluster)) => Ok(Self::Cluster(cluster)),
            _ => bail!("name either a broker (-b host:port) or a cluster (-c name)"),
        }
    }
}

/// A topic as `updateTopic` creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic.
    pub topic: String,
    /// Queues consumers read.
    pub read_queue_nums: i32,
    /// Queues producers write.
    pub write_queue_nums: i32,
    /// Permission bits (6 = read and write).
    pub perm: i32,
    /// An ordered topic.
    pub order: bool,
    /// Attribute changes (`+message.type=FIFO`), if any.
    pub attributes: Option<String>,
}

/// What `resetOffsetByTime` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetSpec {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// Restart from the first message stored at or after this time (ms); −1: the end.
    pub timestamp: i64,
    /// Move forward too (otherwise only back).
    pub force: bool,
}

impl AdminClient {
    /// Reset a group's progress in a topic on every master serving it; the offset each
    /// queue restarts from.
    pub async fn reset_offsets(&self, spec: &ResetSpec) -> anyhow::Result<BTreeMap<MessageQueue, i64>> {
        let mut table = BTreeMap::new();
        for addr in self.topic_masters(&spec.topic).await? {
            let header = ResetOffsetRequestHeader {
                topic: spec.topic.clone(),
                group: spec.group.clone(),
                timestamp: spec.timestamp,
                is_force: Some(spec.force),
                queue_id: None,
                offset: None,
            };
            let body = Self::call(
                resolve(&addr)?,
                RequestCode::INVOKE_BROKER_TO_RESET_OFFSET,
                header.to_ext_fields(),
            )
            .await?;
            let reset: ResetOffsetBody = json::from_slice(&body)
                .map_err(|e| anyhow!("the reset's answer from {addr} does not decode: {e}"))?;
            table.extend(reset.offset_table);
        }
        Ok(table)
    }

    /// The broker addresses `target` stands for.
    pub async fn target_addrs(&self, target: &Target) -> anyhow::Result<Vec<String>> {
        match target {
            Target::Broker(addr) => Ok(vec![addr.clone()]),
            Target::Cluster(cluster) => {
                let masters: Vec<String> = self
                    .masters()
                    .await?
                    .into_iter()
                    .filter(|m| &m.cluster == cluster)
                    .map(|m| m.addr)
                    .collect();
                if masters.is_empty() {
                    return Err(anyhow!(
                        "the cluster {cluster} has no master registered with the name server"
                    ));
                }
                Ok(masters)
            }
        }
    }

    /// Create or update a topic on every broker of `target`; the brokers changed.
    pub async fn update_topic(&self, spec: &TopicSpec, target: &Target) -> anyhow::Result<Vec<String>> {
        let addrs = self.target_addrs(target).await?;
        for addr in &addrs {
            let header = CreateTopicRequestHeader {
                topic: spec.topic.clone(),
                default_topic: Some("TBW102".into()),
                read_queue_nums: spec.read_queue_nums,
                write_queue_nums: spec.write_queue_nums,
                perm: spec.perm,
                topic_filter_type: Some("SINGLE_TAG".into()),
                topic_sys_flag: Some(0),
                order: Some(spec.order),
                attributes: spec.attributes.clone(),
            };
            Self::call(resolve(addr)?, RequestCode::UPDATE_AND_CREATE_TOPIC, header.to_ext_fields()).await?;
        }
        Ok(addrs)
    }

    /// Delete a topic from every master of `cluster`, then from the name server.
    pub async fn delete_topic(&self, topic: &str, cluster: &str) -> anyhow::Result<()> {
        for addr in self.target_addrs(&Target::Cluster(cluster.into())).await? {
            let header = TopicRequestHeader { topic: topic.into() };
            Self::call(resolve(&addr)?, RequestCode::DELETE_TOPIC_IN_BROKER, header.to_ext_fields()).await?;
        }
        let header =
            DeleteTopicFromNamesrvRequestHeader { topic: topic.into(), cluster_name: Some(cluster.into()) };
        Self::call(self.namesrv, RequestCode::DELETE_TOPIC_IN_NAMESRV, header.to_ext_fields()).await?;
        Ok(())
    }

    /// Create or update a subscription group on every broker of `target`.
    pub async fn update_group(
        &self,
        config: &SubscriptionGroupConfig,
        target: &Target,
    ) -> anyhow::Result<Vec<String>> {
        let addrs = self.target_addrs(target).await?;
        let body = json::to_body(config, KeyStyle::Fastjson);
        for addr in &addrs {
            let request = RemotingCommand::request(
                RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                0,
                keel_core::protocol::ExtFields::new(),
            )
            .with_body(body.clone());
            Self::call_request(resolve(addr)?, request).await?;
        }
        Ok(addrs)
    }

    /// A broker's settings as properties text (GET_BROKER_CONFIG).
    pub async fn broker_config(&self, addr: &str) -> anyhow::Result<String> {
        let body =
            Self::call(resolve(addr)?, RequestCode::GET_BROKER_CONFIG, keel_core::protocol::ExtFields::new())
                .await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Change one setting on every broker of `target` (UPDATE_BROKER_CONFIG).
    pub async fn update_broker_config(
        &self,
        key: &str,
        value: &str,
        target: &Target,
    ) -> anyhow::Result<Vec<String>> {
        let addrs = self.target_addrs(target).await?;
        for addr in &addrs {
            let request = RemotingCommand::request(
                RequestCode::UPDATE_BROKER_CONFIG,
                0,
                keel_core::protocol::ExtFields::new(),
            )
            .with_body(format!("{key}={value}\n").into_bytes());
            Self::call_request(resolve(addr)?, request).await?;
        }
        Ok(addrs)
    }

    /// Delete a subscription group (and its committed offsets, if `clean_offset`) on every
    /// broker of `target`.
    pub async fn delete_group(
        &self,
        group: &str,
        clean_offset: bool,
        target: &Target,
    ) -> anyhow::Result<Vec<String>> {
        let addrs = self.target_addrs(target).await?;
        for addr in &addrs {
            let header = DeleteSubscriptionGroupRequestHeader {
                group_name: group.into(),
                clean_offset: Some(clean_offset),
            };
            Self::call(resolve(addr)?, RequestCode::DELETE_SUBSCRIPTIONGROUP, header.to_ext_fields()).await?;
        }
        Ok(addrs)
    }
}
