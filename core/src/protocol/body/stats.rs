//! What the operator tools read of a broker's progress: queue offsets of a topic
//! (GET_TOPIC_STATS_INFO), a group's progress against them (GET_CONSUME_STATS), who is
//! connected (GET_CONSUMER_CONNECTION_LIST, GET_PRODUCER_CONNECTION_LIST) and which groups
//! consume a topic (QUERY_TOPIC_CONSUME_BY_WHO).
//!
//! The offset tables are maps keyed by [`MessageQueue`]: fastjson writes such a key as a JSON
//! object (`{{"brokerName":"b","queueId":0,"topic":"T"}:{…}}`), and mqadmin reads nothing
//! else, so they must be written with [`KeyStyle::Fastjson`](crate::protocol::json::KeyStyle).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MessageQueue, SubscriptionData};

/// One queue's range in a [`TopicStatsTable`] (`TopicOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    /// Store time of the newest message (ms), 0 if the queue is empty.
    pub last_update_timestamp: i64,
    /// The offset the next message will take.
    pub max_offset: i64,
    /// The oldest offset still stored.
    pub min_offset: i64,
}

/// GET_TOPIC_STATS_INFO response body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicStatsTable {
    /// Every queue of the topic on this broker.
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
    /// Messages stored per second in the topic; Keel keeps no per-topic rate yet, so it
    /// leaves it out (Java's tools read a missing one as 0).
    pub topic_put_tps: Option<f64>,
}

/// One queue's progress in [`ConsumeStats`] (`OffsetWrapper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    /// The queue's max offset (the next to be written).
    pub broker_offset: i64,
    /// The group's committed offset (0 if none).
    pub consumer_offset: i64,
    /// Store time (ms) of the last message consumed (at `consumer_offset − 1`), 0 if none.
    pub last_timestamp: i64,
    /// How far the group has pulled (never behind the committed offset).
    pub pull_offset: i64,
}

impl OffsetWrapper {
    /// Messages stored and not yet consumed: the lag mqadmin prints as `#Diff`.
    #[must_use]
    pub fn diff(&self) -> i64 {
        self.broker_offset - self.consumer_offset
    }
}

/// GET_CONSUME_STATS response body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeStats {
    /// Messages the group takes per second; Keel keeps no per-group rate yet, so it leaves
    /// it out (Java's tools read a missing one as 0).
    pub consume_tps: Option<f64>,
    /// Every queue of the topics asked about.
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
}

impl ConsumeStats {
    /// The lag over every queue.
    #[must_use]
    pub fn total_diff(&self) -> i64 {
        self.offset_table.values().map(OffsetWrapper::diff).sum()
    }
}

/// One client connection (`Connection`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    /// The TCP peer, `ip:port`.
    pub client_addr: String,
    /// `ip@instance`.
    pub client_id: String,
    /// The client's language (`JAVA`, `CPP`, `RUST`, …).
    pub language: String,
    /// The client's version ordinal.
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    /// Every member's connection.
    pub connection_set: Vec<Connection>,
    /// Where a new member starts.
    pub consume_from_where: String,
    /// `CONSUME_PASSIVELY` (push) or `CONSUME_ACTIVELY` (pull).
    pub consume_type: String,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    /// The group's subscriptions by topic.
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// GET_PRODUCER_CONNECTION_LIST response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    /// Every producer's connection.
    pub connection_set: Vec<Connection>,
}

/// INVOKE_BROKER_TO_RESET_OFFSET response and RESET_CONSUMER_CLIENT_OFFSET request body
/// (`ResetOffsetBody`): the offset each queue was reset to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResetOffsetBody {
    /// Queue → the offset its group restarts from.
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

/// QUERY_TOPIC_CONSUME_BY_WHO response body (`GroupList`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupList {
    /// The groups.
    pub group_list: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::{self, KeyStyle};

    #[test]
    fn queue_keyed_tables_are_written_with_object_keys_as_fastjson_does_and_read_back() {
        let mut stats = ConsumeStats::default();
        stats.offset_table.insert(
            MessageQueue::new("T", "broker-a", 0),
            OffsetWrapper {
                broker_offset: 120,
                consumer_offset: 118,
                last_timestamp: 1_726_000_000_000,
                pull_offset: 120,
            },
        );
        let text = String::from_utf8(json::to_body(&stats, KeyStyle::Fastjson)).unwrap();
        assert_eq!(
            text,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"brokerOffset":120,"consumerOffset":118,"lastTimestamp":1726000000000,"pullOffset":120}}}"#
        );
        let back: ConsumeStats = json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back, stats);
        assert_eq!(back.total_diff(), 2);
    }

    #[test]
    fn a_topic_stats_table_reads_what_java_writes() {
        let java = br#"{"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"lastUpdateTimestamp":5,"maxOffset":9,"minOffset":2}}}"#;
        let table: TopicStatsTable = json::from_slice(java).unwrap();
        let offsets = table.offset_table[&MessageQueue::new("T", "broker-a", 1)];
        assert_eq!((offsets.min_offset, offsets.max_offset, offsets.last_update_timestamp), (2, 9, 5));
    }
}
