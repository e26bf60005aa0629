//! Producers and consumers known to the broker, from their heartbeats.
//!
//! A consumer group's membership is the set of client ids heartbeating on their
//! connections; whenever it changes the group's consumers are told
//! (NOTIFY_CONSUMER_IDS_CHANGED) so they rebalance at once. A client silent for the expiry
//! time, or whose connection closes, leaves its groups.

use std::collections::{BTreeMap, BTreeSet};

use crate::io::{ConnId, MonoNanos};
use crate::protocol::body::{HeartbeatData, SubscriptionData};
use crate::protocol::LanguageCode;

/// One client connection in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChannel {
    /// `ip@instance`.
    pub client_id: String,
    /// The client's language.
    pub language: LanguageCode,
    /// The client's version ordinal.
    pub version: i32,
    /// Last heartbeat.
    pub last_seen: MonoNanos,
}

/// A consumer group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    /// Members by connection.
    pub channels: BTreeMap<ConnId, ClientChannel>,
    /// Subscriptions by topic (the latest heartbeat's).
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    /// `CONSUME_PASSIVELY` / `CONSUME_ACTIVELY`.
    pub consume_type: String,
    /// Where a new member starts.
    pub consume_from_where: String,
}

/// Every known client.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    producers: BTreeMap<String, BTreeMap<ConnId, ClientChannel>>,
    consumers: BTreeMap<String, ConsumerGroup>,
}

impl ClientRegistry {
    /// Record a heartbeat; returns the consumer groups whose membership changed.
    pub fn heartbeat(
        &mut self,
        now: MonoNanos,
        conn: ConnId,
        data: &HeartbeatData,
        language: LanguageCode,
        version: i32,
    ) -> Vec<String> {
        let channel = ClientChannel { client_id: data.client_id.clone(), language, version, last_seen: now };
        for producer in &data.producer_data_set {
            self.producers.entry(producer.group_name.clone()).or_default().insert(conn, channel.clone());
        }
        let mut changed = Vec::new();
        for consumer in &data.consumer_data_set {
            let group = self.consumers.entry(consumer.group_name.clone()).or_default();
            let before = member_ids(group);
            group.channels.insert(conn, channel.clone());
            if !(data.without_sub && consumer.subscription_data_set.is_empty()) {
                group.subscriptions =
                    consumer.subscription_data_set.iter().map(|s| (s.topic.clone(), s.clone())).collect();
            }
            group.message_model.clone_from(&consumer.message_model);
            group.consume_type.clone_from(&consumer.consume_type);
            group.consume_from_where.clone_from(&consumer.consume_from_where);
            if member_ids(group) != before {
                changed.push(consumer.group_name.clone());
            }
        }
        changed
    }

    /// A client left a group (UNREGISTER_CLIENT); returns the consumer groups that changed.
    pub fn unregister(
        &mut self,
        conn: ConnId,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Vec<String> {
        if let Some(group) = producer_group {
            if let Some(channels) = self.producers.get_mut(group) {
                channels.remove(&conn);
            }
        }
        let mut changed = Vec::new();
        if let Some(name) = consumer_group {
            if let Some(group) = self.consumers.get_mut(name) {
                if group.channels.remove(&conn).is_some() {
                    changed.push(name.to_owned());
                }
            }
        }
        self.drop_empty();
        changed
    }

    /// A connection closed: it leaves every group; returns the consumer groups that changed.
    pub fn connection_closed(&mut self, conn: ConnId) -> Vec<String> {
        for channels in self.producers.values_mut() {
            channels.remove(&conn);
        }
        let mut changed = Vec::new();
        for (name, group) in &mut self.consumers {
            if group.channels.remove(&conn).is_some() {
                changed.push(name.clone());
            }
        }
        self.drop_empty();
        changed
    }

    /// Drop channels silent for longer than `expiry_ms`; returns their connections and the
    /// consumer groups that changed.
    pub fn expire(&mut self, now: MonoNanos, expiry_ms: u64) -> (Vec<ConnId>, Vec<String>) {
        let mut conns = BTreeSet::new();
        for channels in self.producers.values_mut() {
            channels.retain(|conn, c| {
                let keep = now.millis_since(c.last_seen) <= expiry_ms;
                if !keep {
                    conns.insert(*conn);
                }
                keep
            });
        }
        let mut changed = Vec::new();
        for (name, group) in &mut self.consumers {
            let before = group.channels.len();
            group.channels.retain(|conn, c| {
                let keep = now.millis_since(c.last_seen) <= expiry_ms;
                if !keep {
                    conns.insert(*conn);
                }
                keep
            });
            if group.channels.len() != before {
                changed.push(name.clone());
            }
        }
        self.drop_empty();
        (conns.into_iter().collect(), changed)
    }

    fn drop_empty(&mut self) {
        self.producers.retain(|_, channels| !channels.is_empty());
        self.consumers.retain(|_, group| !group.channels.is_empty());
    }

    /// A consumer group.
    #[must_use]
    pub fn consumer_group(&self, group: &str) -> Option<&ConsumerGroup> {
        self.consumers.get(group)
    }

    /// The client ids of a consumer group, sorted, one per client.
    #[must_use]
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.consumers.get(group).map(|g| member_ids(g).into_iter().collect()).unwrap_or_default()
    }

    /// The connections of a consumer group's members.
    #[must_use]
    pub fn consumer_conns(&self, group: &str) -> Vec<ConnId> {
        self.consumers.get(group).map(|g| g.channels.keys().copied().collect()).unwrap_or_default()
    }

    /// The connections of a producer group's live producers (for transaction checks).
    #[must_use]
    pub fn producer_conns(&self, group: &str) -> Vec<ConnId> {
        self.producers.get(group).map(|channels| channels.keys().copied().collect()).unwrap_or_default()
    }

    /// The connections of a producer group, if any is online.
    #[must_use]
    pub fn producer_group(&self, name: &str) -> Option<&BTreeMap<ConnId, ClientChannel>> {
        self.producers.get(name).filter(|c| !c.is_empty())
    }

    /// The online consumer groups subscribing to `topic`.
    pub fn groups_subscribing<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.consumers
            .iter()
            .filter(|(_, g)| g.subscriptions.contains_key(topic))
            .map(|(name, _)| name.as_str())
    }

    /// Every online consumer group.
    pub fn consumer_groups(&self) -> impl Iterator<Item = (&str, &ConsumerGroup)> {
        self.consumers.iter().map(|(name, group)| (name.as_str(), group))
    }

    /// Open producer and consumer connections (a client in several groups counts in each).
    #[must_use]
    pub fn connection_counts(&self) -> (usize, usize) {
        let producers = self.producers.values().map(BTreeMap::len).sum();
        let consumers = self.consumers.values().map(|g| g.channels.len()).sum();
        (producers, consumers)
    }

    /// Counts of (producer groups, consumer groups), for runtime info.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        (self.producers.len(), self.consumers.len())
    }
}

fn member_ids(group: &ConsumerGroup) -> BTreeSet<String> {
    group.channels.values().map(|c| c.client_id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::{ConsumerData, ProducerData};

    fn heartbeat(client: &str, group: &str) -> HeartbeatData {
        HeartbeatData {
            client_id: client.into(),
            consumer_data_set: vec![ConsumerData {
                group_name: group.into(),
                message_model: "CLUSTERING".into(),
                subscription_data_set: vec![SubscriptionData::from_expression("T", "*", 1)],
                ..ConsumerData::default()
            }],
            producer_data_set: vec![ProducerData { group_name: "pg".into() }],
            ..HeartbeatData::default()
        }
    }

    #[test]
    fn membership_changes_are_reported_once() {
        let mut registry = ClientRegistry::default();
        let t = MonoNanos(0);
        assert_eq!(
            registry.heartbeat(t, ConnId(1), &heartbeat("c1", "g"), LanguageCode::JAVA, 479),
            vec!["g"]
        );
        assert!(registry.heartbeat(t, ConnId(1), &heartbeat("c1", "g"), LanguageCode::JAVA, 479).is_empty());
        assert_eq!(
            registry.heartbeat(t, ConnId(2), &heartbeat("c2", "g"), LanguageCode::CPP, 333),
            vec!["g"]
        );
        assert_eq!(registry.consumer_ids("g"), vec!["c1", "c2"]);
        assert!(registry.consumer_group("g").unwrap().subscriptions.contains_key("T"));
        assert_eq!(registry.connection_closed(ConnId(1)), vec!["g"]);
        assert_eq!(registry.consumer_ids("g"), vec!["c2"]);
        let (conns, changed) = registry.expire(t.plus_millis(120_001), 120_000);
        assert_eq!((conns, changed), (vec![ConnId(2)], vec!["g".to_owned()]));
        assert!(registry.consumer_group("g").is_none());
    }
}
