//! What an operator sees of one broker at a glance, for the dashboard: its identity, its
//! topics, each group's progress in each topic, and its throughput over the last ten
//! minutes. Worked out when asked, like the metrics, from the same state.

use std::collections::BTreeSet;

use serde::Serialize;

use super::admin::Admin;
use super::Broker;
use crate::io::Now;

/// One group's progress in one topic, over its readable queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupProgress {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Messages stored but not committed.
    pub lag: u64,
    /// Messages pulled but not committed.
    pub inflight: u64,
    /// Messages stored but not pulled.
    pub ready: u64,
    /// Age of the oldest message not committed, ms (0: none).
    pub oldest_unacked_ms: i64,
    /// Age of the oldest message not pulled, ms (0: none).
    pub oldest_ready_ms: i64,
    /// Clients of the group online now.
    pub members: usize,
}

/// One topic on this broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRow {
    /// Its name.
    pub topic: String,
    /// Read and write queues.
    pub read_queues: i32,
    /// Write queues.
    pub write_queues: i32,
    /// Permission bits (2 write, 4 read).
    pub perm: i32,
    /// Messages its queues hold (sum of each queue's max minus min offset).
    pub messages: u64,
    /// A topic of the broker's own (retry, dead-letter, schedule, trace, timer, TBW102).
    pub system: bool,
}

/// Throughput over one stretch of time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputPoint {
    /// The stretch's end, wall clock ms.
    pub at: i64,
    /// Messages stored per second.
    pub put_tps: f64,
    /// Messages delivered by pulls per second.
    pub get_tps: f64,
}

/// The dashboard's view of one broker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// `brokerClusterName`.
    pub cluster: String,
    /// `brokerName`.
    pub broker_name: String,
    /// Where clients reach it.
    pub addr: String,
    /// Its role now (ASYNC_MASTER, SYNC_MASTER, SLAVE).
    pub role: String,
    /// The wall clock now, ms.
    pub now: i64,
    /// Messages stored and delivered since boot.
    pub messages_put: u64,
    /// Messages delivered by pulls since boot.
    pub messages_got: u64,
    /// Topics, by name.
    pub topics: Vec<TopicRow>,
    /// Groups' progress, by topic then group.
    pub groups: Vec<GroupProgress>,
    /// Throughput, oldest first, one point per sampled second of the last ten minutes.
    pub throughput: Vec<ThroughputPoint>,
}

/// Whether `topic` is one the broker keeps for itself.
fn is_system_topic(topic: &str) -> bool {
    use super::topics::{DLQ_PREFIX, RETRY_PREFIX, SELF_TEST_TOPIC, TBW102};
    [TBW102, SELF_TEST_TOPIC, super::delay::levels::SCHEDULE_TOPIC].contains(&topic)
        || [RETRY_PREFIX, DLQ_PREFIX, "RMQ_SYS_", "rmq_sys_"].iter().any(|p| topic.starts_with(p))
}

impl Broker {
    /// Every group's progress in every topic it has committed in or subscribes to, by topic
    /// then group.
    #[must_use]
    pub fn group_progress(&self, now: Now) -> Vec<GroupProgress> {
        let consumers = &self.consumers;
        let shared = &self.shared;
        let mut pairs: BTreeSet<(&str, &str)> = consumers.offsets.pairs().collect();
        for (group, online) in consumers.clients.consumer_groups() {
            pairs.extend(online.subscriptions.keys().map(|topic| (topic.as_str(), group)));
        }
        let age = |topic: &str, queue: i32, offset: u64| {
            Admin::store_time(shared, topic, queue, offset)
                .map_or(0, |stored| now.wall.0.saturating_sub(stored).max(0))
        };
        let mut rows = Vec::new();
        for (topic, group) in pairs {
            let Some(config) = shared.topics.get(topic) else { continue };
            let members = consumers.clients.consumer_group(group).map_or(0, |g| g.channels.len());
            let mut row = GroupProgress {
                topic: topic.to_owned(),
                group: group.to_owned(),
                lag: 0,
                inflight: 0,
                ready: 0,
                oldest_unacked_ms: 0,
                oldest_ready_ms: 0,
                members,
            };
            for queue in 0..config.read_queue_nums.max(0) {
                let Some((_, end)) = shared.store.queue_offsets(topic, queue) else { continue };
                let end = end.0;
                let committed =
                    consumers.offsets.get(group, topic, queue).map_or(0, |c| u64::try_from(c).unwrap_or(0));
                // Where the group's last pull of the queue ended; a commit past it (another
                // member, or a reset) counts as pulled.
                let pulled = shared
                    .traffic
                    .pulled
                    .get(&(topic.to_owned(), group.to_owned(), queue))
                    .copied()
                    .unwrap_or(committed)
                    .max(committed);
                row.lag += end.saturating_sub(committed);
                row.inflight += pulled.min(end).saturating_sub(committed);
                row.ready += end.saturating_sub(pulled);
                if committed < end {
                    row.oldest_unacked_ms = row.oldest_unacked_ms.max(age(topic, queue, committed));
                }
                if pulled < end {
                    row.oldest_ready_ms = row.oldest_ready_ms.max(age(topic, queue, pulled));
                }
            }
            rows.push(row);
        }
        rows
    }

    /// The dashboard's view at `now`.
    #[must_use]
    pub fn overview(&self, now: Now) -> Overview {
        let shared = &self.shared;
        let topics = shared
            .topics
            .names()
            .filter_map(|name| shared.topics.get(name))
            .map(|config| {
                let messages = (0..config.write_queue_nums.max(config.read_queue_nums).max(0))
                    .filter_map(|queue| shared.store.queue_offsets(&config.topic_name, queue))
                    .map(|(min, max)| max.0.saturating_sub(min.0))
                    .sum();
                TopicRow {
                    topic: config.topic_name.clone(),
                    read_queues: config.read_queue_nums,
                    write_queues: config.write_queue_nums,
                    perm: config.perm,
                    messages,
                    system: is_system_topic(&config.topic_name),
                }
            })
            .collect();
        let counters = super::rate_counters(&shared.stats, &self.timers);
        Overview {
            cluster: shared.config.cluster_name.clone(),
            broker_name: shared.config.broker_name.clone(),
            addr: shared.config.advertised_addr.to_string(),
            role: shared.config.role.name().to_owned(),
            now: now.wall.0,
            messages_put: shared.stats.messages_put,
            messages_got: shared.stats.messages_got,
            topics,
            groups: self.group_progress(now),
            throughput: self.admin.throughput(now, counters),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brokers_own_topics_are_marked_system() {
        for topic in [
            "TBW102",
            "%RETRY%cg",
            "%DLQ%cg",
            "RMQ_SYS_TRACE_TOPIC",
            "rmq_sys_wheel_timer",
            "SCHEDULE_TOPIC_XXXX",
            "SELF_TEST_TOPIC",
        ] {
            assert!(is_system_topic(topic), "{topic}");
        }
        assert!(!is_system_topic("Orders"));
    }
}
