//! Route bodies: what a name server answers about topics, brokers and clusters.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One broker group's queues of a topic (`QueueData`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    /// Broker group name.
    pub broker_name: String,
    /// Queues consumers read.
    pub read_queue_nums: i32,
    /// Queues producers write.
    pub write_queue_nums: i32,
    /// Permission bits ([`super::perm`]).
    pub perm: i32,
    /// Topic sys flag (unit topics).
    pub topic_sys_flag: i32,
}

/// One broker group: its cluster and the address of each member (`BrokerData`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Cluster name.
    pub cluster: String,
    /// Broker group name.
    pub broker_name: String,
    /// Broker id → `ip:port`; id 0 is the master.
    pub broker_addrs: BTreeMap<i64, String>,
    /// Slave-acting-master mode; some clients require the field to be present.
    pub enable_acting_master: bool,
    /// Zone, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

/// Where a topic lives (`TopicRouteData`, the GET_ROUTEINFO_BY_TOPIC body).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    /// `brokerA:4;brokerB:4` overriding producer queues for ordered topics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// Queues per broker group.
    pub queue_datas: Vec<QueueData>,
    /// The broker groups serving the topic.
    pub broker_datas: Vec<BrokerData>,
    /// Always present and empty (filter servers were removed from RocketMQ).
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

/// Clusters and their brokers (`ClusterInfo`, the GET_BROKER_CLUSTER_INFO body).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    /// Broker group name → its data.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → broker group names.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A list of topics (`TopicList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    /// Topic names.
    pub topic_list: BTreeSet<String>,
    /// The broker that answered, when a broker answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}
