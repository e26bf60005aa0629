//! The name server's tables (RocketMQ's `RouteInfoManager`): which broker groups serve
//! which topics, where each broker is, and when each was last heard from.

use std::collections::{BTreeMap, BTreeSet};

use crate::io::{ConnId, MonoNanos};
use crate::protocol::body::{
    BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfigSerializeWrapper, TopicList, TopicRouteData,
};

/// The master's broker id.
pub const MASTER_ID: i64 = 0;

/// One registration: who the broker is and what it says it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Cluster.
    pub cluster: String,
    /// Broker group.
    pub broker_name: String,
    /// `ip:port` clients use.
    pub broker_addr: String,
    /// 0 = master.
    pub broker_id: i64,
    /// `ip:haPort`.
    pub ha_server_addr: String,
    /// Expiry after this long without registering.
    pub timeout_ms: u64,
    /// Slave-acting-master mode.
    pub enable_acting_master: bool,
    /// The broker's topics and their version.
    pub topics: TopicConfigSerializeWrapper,
}

/// What a registering broker learns (slaves learn their master).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterResult {
    /// The master's address, for a slave.
    pub master_addr: Option<String>,
    /// The master's HA address, for a slave.
    pub ha_server_addr: Option<String>,
}

#[derive(Debug, Clone)]
struct LiveBroker {
    broker_name: String,
    last_seen: MonoNanos,
    timeout_ms: u64,
    data_version: DataVersion,
    ha_server_addr: String,
    conn: Option<ConnId>,
}

/// The route tables.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// topic → broker group → its queues.
    topic_queues: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// broker group → its members.
    brokers: BTreeMap<String, BrokerData>,
    /// cluster → broker groups.
    clusters: BTreeMap<String, BTreeSet<String>>,
    /// broker address → liveness.
    live: BTreeMap<String, LiveBroker>,
}

impl RouteTable {
    /// Register (or re-register) a broker; topic configs count only from a master.
    pub fn register(&mut self, now: MonoNanos, conn: Option<ConnId>, reg: Registration) -> RegisterResult {
        tracing::debug!(broker = %reg.broker_addr, ?conn, topics = reg.topics.topic_config_table.len(), version = ?reg.topics.data_version, "register");
        self.clusters.entry(reg.cluster.clone()).or_default().insert(reg.broker_name.clone());
        let data = self.brokers.entry(reg.broker_name.clone()).or_insert_with(|| BrokerData {
            cluster: reg.cluster.clone(),
            broker_name: reg.broker_name.clone(),
            ..BrokerData::default()
        });
        data.cluster.clone_from(&reg.cluster);
        data.enable_acting_master = reg.enable_acting_master;
        // An address re-registering under another id (a slave promoted) drops its old id.
        data.broker_addrs.retain(|id, addr| *addr != reg.broker_addr || *id == reg.broker_id);
        let first = data.broker_addrs.insert(reg.broker_id, reg.broker_addr.clone()).is_none();
        let previous_version = self.live.get(&reg.broker_addr).map(|l| l.data_version);
        let changed = first || previous_version != Some(reg.topics.data_version);
        if reg.broker_id == MASTER_ID && changed {
            for (topic, config) in &reg.topics.topic_config_table {
                let queue = QueueData {
                    broker_name: reg.broker_name.clone(),
                    read_queue_nums: config.read_queue_nums,
                    write_queue_nums: config.write_queue_nums,
                    perm: config.perm,
                    topic_sys_flag: config.topic_sys_flag,
                };
                self.topic_queues.entry(topic.clone()).or_default().insert(reg.broker_name.clone(), queue);
            }
        }
        self.live.insert(
            reg.broker_addr.clone(),
            LiveBroker {
                broker_name: reg.broker_name.clone(),
                last_seen: now,
                timeout_ms: reg.timeout_ms,
                data_version: reg.topics.data_version,
                ha_server_addr: reg.ha_server_addr,
                conn,
            },
        );
        if reg.broker_id == MASTER_ID {
            return RegisterResult::default();
        }
        let master_addr =
            self.brokers.get(&reg.broker_name).and_then(|d| d.broker_addrs.get(&MASTER_ID)).cloned();
        let ha_server_addr =
            master_addr.as_ref().and_then(|m| self.live.get(m)).map(|l| l.ha_server_addr.clone());
        RegisterResult { master_addr, ha_server_addr }
    }

    /// A lightweight heartbeat: only refreshes liveness. `false` if the broker is unknown.
    pub fn heartbeat(&mut self, now: MonoNanos, broker_addr: &str) -> bool {
        match self.live.get_mut(broker_addr) {
            Some(live) => {
                live.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// Whether `version` differs from what the broker at `broker_addr` last registered.
    #[must_use]
    pub fn data_version_changed(&self, broker_addr: &str, version: &DataVersion) -> bool {
        self.live.get(broker_addr).is_none_or(|live| live.data_version != *version)
    }

    /// The version the broker at `broker_addr` last registered.
    #[must_use]
    pub fn data_version(&self, broker_addr: &str) -> Option<DataVersion> {
        self.live.get(broker_addr).map(|live| live.data_version)
    }

    /// Remove a broker address: its group loses the member, and a group left empty loses
    /// its queues (and topics left without queues disappear).
    pub fn unregister(&mut self, broker_addr: &str) -> bool {
        let live = self.live.remove(broker_addr);
        let Some(name) = live.as_ref().map(|l| l.broker_name.clone()).or_else(|| {
            self.brokers
                .values()
                .find(|d| d.broker_addrs.values().any(|a| a == broker_addr))
                .map(|d| d.broker_name.clone())
        }) else {
            return false;
        };
        let Some(data) = self.brokers.get_mut(&name) else { return live.is_some() };
        data.broker_addrs.retain(|_, addr| addr != broker_addr);
        if data.broker_addrs.is_empty() {
            let cluster = data.cluster.clone();
            self.brokers.remove(&name);
            if let Some(groups) = self.clusters.get_mut(&cluster) {
                groups.remove(&name);
                if groups.is_empty() {
                    self.clusters.remove(&cluster);
                }
            }
            self.topic_queues.retain(|_, groups| {
                groups.remove(&name);
                !groups.is_empty()
            });
        }
        true
    }

    /// Unregister every broker not heard from within its timeout; returns their addresses.
    pub fn expire(&mut self, now: MonoNanos) -> Vec<String> {
        self.unregister_where(
            |live| now.millis_since(live.last_seen) > live.timeout_ms,
            "broker expired: no registration within its timeout",
        )
    }

    /// A connection closed: unregister every broker that registered through it.
    pub fn connection_closed(&mut self, conn: ConnId) -> Vec<String> {
        self.unregister_where(|live| live.conn == Some(conn), "broker connection closed: unregistered")
    }

    /// Unregister every live broker matching `gone`, logging `why`; returns their addresses.
    fn unregister_where(&mut self, gone: impl Fn(&LiveBroker) -> bool, why: &str) -> Vec<String> {
        let addrs: Vec<String> =
            self.live.iter().filter(|(_, live)| gone(live)).map(|(addr, _)| addr.clone()).collect();
        for addr in &addrs {
            tracing::info!(broker = %addr, "{why}");
            self.unregister(addr);
        }
        addrs
    }

    /// The route of `topic`, if any broker group serves it.
    #[must_use]
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let groups = self.topic_queues.get(topic)?;
        let queue_datas: Vec<QueueData> = groups.values().cloned().collect();
        let broker_datas: Vec<BrokerData> =
            groups.keys().filter_map(|name| self.brokers.get(name).cloned()).collect();
        if queue_datas.is_empty() || broker_datas.is_empty() {
            return None;
        }
        Some(TopicRouteData { queue_datas, broker_datas, ..TopicRouteData::default() })
    }

    /// Every cluster and broker group.
    #[must_use]
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo { broker_addr_table: self.brokers.clone(), cluster_addr_table: self.clusters.clone() }
    }

    /// Every topic.
    #[must_use]
    pub fn topics(&self) -> TopicList {
        TopicList { topic_list: self.topic_queues.keys().cloned().collect(), broker_addr: None }
    }

    /// Topics with queues on any broker group of `cluster`.
    #[must_use]
    pub fn topics_of_cluster(&self, cluster: &str) -> TopicList {
        let groups = self.clusters.get(cluster);
        let topic_list = self
            .topic_queues
            .iter()
            .filter(|(_, queues)| queues.keys().any(|name| groups.is_some_and(|g| g.contains(name))))
            .map(|(topic, _)| topic.clone())
            .collect();
        TopicList { topic_list, broker_addr: None }
    }

    /// Delete a topic's route, everywhere or only from the broker groups of `cluster`.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster {
            None => {
                self.topic_queues.remove(topic);
            }
            Some(cluster) => {
                let groups = self.clusters.get(cluster).cloned().unwrap_or_default();
                if let Some(queues) = self.topic_queues.get_mut(topic) {
                    queues.retain(|name, _| !groups.contains(name));
                    if queues.is_empty() {
                        self.topic_queues.remove(topic);
                    }
                }
            }
        }
    }

    /// When the next broker may expire, if any is registered.
    #[must_use]
    pub fn next_expiry(&self) -> Option<MonoNanos> {
        self.live.values().map(|live| live.last_seen.plus_millis(live.timeout_ms + 1)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::TopicConfig;

    fn registration(name: &str, addr: &str, id: i64, topics: &[&str], counter: i64) -> Registration {
        let topic_config_table = topics
            .iter()
            .map(|t| {
                let config = TopicConfig {
                    topic_name: (*t).to_owned(),
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    ..TopicConfig::default()
                };
                ((*t).to_owned(), config)
            })
            .collect();
        Registration {
            cluster: "DefaultCluster".into(),
            broker_name: name.into(),
            broker_addr: addr.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            timeout_ms: 120_000,
            enable_acting_master: false,
            topics: TopicConfigSerializeWrapper {
                data_version: DataVersion { counter, ..DataVersion::default() },
                topic_config_table,
            },
        }
    }

    #[test]
    fn masters_define_queues_and_slaves_learn_their_master() {
        let mut table = RouteTable::default();
        let t0 = MonoNanos(0);
        assert_eq!(
            table.register(t0, None, registration("a", "10.0.0.1:10911", 0, &["T", "TBW102"], 1)),
            RegisterResult::default()
        );
        let slave = table.register(t0, None, registration("a", "10.0.0.2:10911", 1, &["Other"], 1));
        assert_eq!(slave.master_addr.as_deref(), Some("10.0.0.1:10911"));
        assert_eq!(slave.ha_server_addr.as_deref(), Some("10.0.0.1:10911-ha"));
        let route = table.route("T").unwrap();
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
        // A slave's topics are ignored.
        assert!(table.route("Other").is_none());
        assert_eq!(table.topics().topic_list.into_iter().collect::<Vec<_>>(), vec!["T", "TBW102"]);
        assert_eq!(table.topics_of_cluster("DefaultCluster").topic_list.len(), 2);
        assert!(table.topics_of_cluster("Nope").topic_list.is_empty());
    }

    #[test]
    fn brokers_expire_after_their_timeout_and_take_their_routes() {
        let mut table = RouteTable::default();
        table.register(MonoNanos(0), None, registration("a", "10.0.0.1:10911", 0, &["T"], 1));
        table.register(MonoNanos(0), None, registration("b", "10.0.0.3:10911", 0, &["T"], 1));
        assert!(table.expire(MonoNanos(0).plus_millis(120_000)).is_empty());
        assert!(table.heartbeat(MonoNanos(0).plus_millis(100_000), "10.0.0.3:10911"));
        let gone = table.expire(MonoNanos(0).plus_millis(120_001));
        assert_eq!(gone, vec!["10.0.0.1:10911".to_owned()]);
        let route = table.route("T").unwrap();
        assert_eq!(route.broker_datas.len(), 1);
        assert_eq!(route.broker_datas[0].broker_name, "b");
        table.expire(MonoNanos(0).plus_millis(220_001));
        assert!(table.route("T").is_none());
        assert!(table.cluster_info().cluster_addr_table.is_empty());
    }

    #[test]
    fn a_closed_connection_unregisters_its_brokers_at_once() {
        let mut table = RouteTable::default();
        table.register(MonoNanos(0), Some(ConnId(7)), registration("a", "10.0.0.1:10911", 0, &["T"], 1));
        assert_eq!(table.connection_closed(ConnId(8)), Vec::<String>::new());
        assert_eq!(table.connection_closed(ConnId(7)), vec!["10.0.0.1:10911".to_owned()]);
        assert!(table.route("T").is_none());
    }

    #[test]
    fn topics_are_deleted_everywhere_or_per_cluster() {
        let mut table = RouteTable::default();
        table.register(MonoNanos(0), None, registration("a", "10.0.0.1:10911", 0, &["T", "U"], 1));
        let mut other = registration("c", "10.0.0.9:10911", 0, &["T"], 1);
        other.cluster = "Other".into();
        table.register(MonoNanos(0), None, other);
        table.delete_topic("T", Some("Other"));
        assert_eq!(table.route("T").unwrap().broker_datas[0].broker_name, "a");
        table.delete_topic("T", None);
        assert!(table.route("T").is_none());
        assert!(table.route("U").is_some());
    }

    #[test]
    fn topic_configs_apply_only_when_their_version_changes() {
        let mut table = RouteTable::default();
        table.register(MonoNanos(0), None, registration("a", "10.0.0.1:10911", 0, &["T"], 1));
        table.delete_topic("T", None);
        // Same version: the deletion stands (RocketMQ re-applies only changed tables).
        table.register(MonoNanos(1), None, registration("a", "10.0.0.1:10911", 0, &["T"], 1));
        assert!(table.route("T").is_none());
        table.register(MonoNanos(2), None, registration("a", "10.0.0.1:10911", 0, &["T"], 2));
        assert!(table.route("T").is_some());
        assert!(!table
            .data_version_changed("10.0.0.1:10911", &DataVersion { counter: 2, ..DataVersion::default() }));
        assert!(table
            .data_version_changed("10.0.0.1:10911", &DataVersion { counter: 3, ..DataVersion::default() }));
    }
}
