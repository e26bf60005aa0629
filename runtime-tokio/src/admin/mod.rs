//! What `mqadmin` asks of a cluster: the name server for clusters, topics and routes, and
//! each master for its status, with RocketMQ's request codes and bodies, so the same calls
//! work against Apache RocketMQ. [`report`] turns the answers into mqadmin's output.

pub mod change;
pub mod consumer;
pub mod ha;
pub mod kv;
pub mod message;
pub mod report;
pub mod trace;

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use keel_core::protocol::body::{
    ClusterInfo, ConsumeStats, ConsumerConnection, GroupList, KvTable, ProducerConnection, TopicList,
    TopicRouteData, TopicStatsTable,
};
use keel_core::protocol::headers::{
    CommandHeader, ConsumerGroupRequestHeader, GetConsumeStatsRequestHeader, GetRouteInfoRequestHeader,
    ProducerGroupRequestHeader, TopicRequestHeader,
};
use keel_core::protocol::json;
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use serde::de::DeserializeOwned;

use crate::remoting_client::RemotingClient;

/// The prefix of a consumer group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";

/// Resolve `host:port` (the first of a `;`-separated list, as RocketMQ's `namesrvAddr`).
pub fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    let first = addr.split(';').map(str::trim).find(|a| !a.is_empty()).unwrap_or("");
    first
        .to_socket_addrs()
        .with_context(|| format!("'{first}' is not a host:port address"))?
        .next()
        .ok_or_else(|| anyhow!("'{first}' resolves to no address"))
}

/// The wall clock, ms since 1970.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One master of a broker set, as the name server knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The set's cluster.
    pub cluster: String,
    /// The set's name.
    pub broker_name: String,
    /// Its remoting address.
    pub addr: String,
}

/// An admin session against one name server.
#[derive(Debug, Clone)]
pub struct AdminClient {
    namesrv: SocketAddr,
}

impl AdminClient {
    /// A session with the name server at `namesrv` (`host:port`).
    pub fn new(namesrv: &str) -> anyhow::Result<Self> {
        Ok(Self { namesrv: resolve(namesrv).context("the name server address (-n)")? })
    }

    /// One request to `addr`; the body of a SUCCESS answer, or an error naming the code and
    /// the server's remark.
    async fn call(addr: SocketAddr, code: RequestCode, ext: ExtFields) -> anyhow::Result<Bytes> {
        Ok(Self::call_request(addr, RemotingCommand::request(code, 0, ext)).await?.body)
    }

    /// `request` to `addr`; a SUCCESS answer, or an error naming the code and the remark.
    async fn call_request(addr: SocketAddr, request: RemotingCommand) -> anyhow::Result<RemotingCommand> {
        let code = request.request_code();
        let client =
            RemotingClient::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
        let reply = client.call(request).await.with_context(|| format!("{code:?} to {addr}"))?;
        if reply.response_code() != ResponseCode::SUCCESS {
            bail!(
                "{code:?} to {addr} answered {:?}: {}",
                reply.response_code(),
                reply.remark.as_deref().unwrap_or("no remark")
            );
        }
        Ok(reply)
    }

    async fn call_json<T: DeserializeOwned>(
        addr: SocketAddr,
        code: RequestCode,
        ext: ExtFields,
    ) -> anyhow::Result<T> {
        let body = Self::call(addr, code, ext).await?;
        json::from_slice(&body).with_context(|| format!("the body of {code:?} from {addr} does not decode"))
    }

    /// Every cluster and broker set the name server knows.
    pub async fn cluster_info(&self) -> anyhow::Result<ClusterInfo> {
        Self::call_json(self.namesrv, RequestCode::GET_BROKER_CLUSTER_INFO, ExtFields::new()).await
    }

    /// Every topic the name server knows.
    pub async fn topic_list(&self) -> anyhow::Result<TopicList> {
        Self::call_json(self.namesrv, RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, ExtFields::new()).await
    }

    /// Where `topic` lives.
    pub async fn route(&self, topic: &str) -> anyhow::Result<TopicRouteData> {
        let header = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: Some(true) };
        Self::call_json(self.namesrv, RequestCode::GET_ROUTEINFO_BY_TOPIC, header.to_ext_fields()).await
    }

    /// Every master the name server knows, by cluster then set.
    pub async fn masters(&self) -> anyhow::Result<Vec<Master>> {
        let info = self.cluster_info().await?;
        let mut masters = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            for name in names {
                if let Some(addr) = info.broker_addr_table.get(name).and_then(|b| b.broker_addrs.get(&0)) {
                    masters.push(Master {
                        cluster: cluster.clone(),
                        broker_name: name.clone(),
                        addr: addr.clone(),
                    });
                }
            }
        }
        Ok(masters)
    }

    /// The masters serving `topic`, by its route.
    pub async fn topic_masters(&self, topic: &str) -> anyhow::Result<Vec<String>> {
        let route = self.route(topic).await?;
        Ok(route.broker_datas.iter().filter_map(|b| b.broker_addrs.get(&0).cloned()).collect())
    }

    /// A broker's runtime information (GET_BROKER_RUNTIME_INFO).
    pub async fn runtime_info(&self, broker: &str) -> anyhow::Result<KvTable> {
        Self::call_json(resolve(broker)?, RequestCode::GET_BROKER_RUNTIME_INFO, ExtFields::new()).await
    }

    /// A topic's queues on every master serving it.
    pub async fn topic_stats(&self, topic: &str) -> anyhow::Result<TopicStatsTable> {
        let mut merged = TopicStatsTable::default();
        for master in self.topic_masters(topic).await? {
            let ext = TopicRequestHeader { topic: topic.into() }.to_ext_fields();
            let table: TopicStatsTable =
                Self::call_json(resolve(&master)?, RequestCode::GET_TOPIC_STATS_INFO, ext).await?;
            merged.offset_table.extend(table.offset_table);
        }
        Ok(merged)
    }

    /// A group's progress on every master (in `topic` only, if given). Every master is
    /// asked, not only those of the group's retry topic: a pull consumer has none.
    pub async fn consume_stats(&self, group: &str, topic: Option<&str>) -> anyhow::Result<ConsumeStats> {
        let mut merged = ConsumeStats::default();
        for master in self.masters().await? {
            let header = GetConsumeStatsRequestHeader {
                consumer_group: group.into(),
                topic: topic.map(str::to_owned),
                topic_list: None,
            };
            let stats: ConsumeStats = Self::call_json(
                resolve(&master.addr)?,
                RequestCode::GET_CONSUME_STATS,
                header.to_ext_fields(),
            )
            .await?;
            merged.offset_table.extend(stats.offset_table);
            if let Some(tps) = stats.consume_tps {
                merged.consume_tps = Some(merged.consume_tps.unwrap_or(0.0) + tps);
            }
        }
        Ok(merged)
    }

    /// The members of a consumer group, as the first master that has them online says.
    pub async fn consumer_connection(&self, group: &str) -> anyhow::Result<ConsumerConnection> {
        let mut last_error = None;
        for master in self.masters().await? {
            let ext = ConsumerGroupRequestHeader { consumer_group: group.into() }.to_ext_fields();
            match Self::call_json(resolve(&master.addr)?, RequestCode::GET_CONSUMER_CONNECTION_LIST, ext)
                .await
            {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no broker is registered with the name server")))
            .with_context(|| format!("the consumer group {group} is not online"))
    }

    /// The producers of a group, on every master serving `topic`.
    pub async fn producer_connection(&self, group: &str, topic: &str) -> anyhow::Result<ProducerConnection> {
        let mut merged = ProducerConnection::default();
        let mut last_error = None;
        for master in self.topic_masters(topic).await? {
            let ext = ProducerGroupRequestHeader { producer_group: group.into() }.to_ext_fields();
            match Self::call_json::<ProducerConnection>(
                resolve(&master)?,
                RequestCode::GET_PRODUCER_CONNECTION_LIST,
                ext,
            )
            .await
            {
                Ok(connection) => merged.connection_set.extend(connection.connection_set),
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) if merged.connection_set.is_empty() => {
                Err(error).with_context(|| format!("the producer group {group} is not online"))
            }
            _ => Ok(merged),
        }
    }

    /// The groups consuming `topic`, over every master serving it.
    pub async fn consumed_by(&self, topic: &str) -> anyhow::Result<Vec<String>> {
        let mut groups = std::collections::BTreeSet::new();
        for master in self.topic_masters(topic).await? {
            let ext = TopicRequestHeader { topic: topic.into() }.to_ext_fields();
            let list: GroupList =
                Self::call_json(resolve(&master)?, RequestCode::QUERY_TOPIC_CONSUME_BY_WHO, ext).await?;
            groups.extend(list.group_list);
        }
        Ok(groups.into_iter().collect())
    }
}
