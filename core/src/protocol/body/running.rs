//! What a client answers about itself when an operator asks through a broker:
//! GET_CONSUMER_RUNNING_INFO ([`ConsumerRunningInfo`]) and CONSUME_MESSAGE_DIRECTLY
//! ([`ConsumeMessageDirectlyResult`]). `mqTable` is keyed by [`MessageQueue`], written as
//! fastjson writes object keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MessageQueue, SubscriptionData};

/// One owned queue as a client holds it (`ProcessQueueInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessQueueInfo {
    /// The offset the client would commit now.
    pub commit_offset: i64,
    /// The lowest offset pulled and not finished.
    pub cached_msg_min_offset: i64,
    /// The highest offset pulled and not finished.
    pub cached_msg_max_offset: i64,
    /// Messages pulled and not finished.
    pub cached_msg_count: i32,
    /// Their bodies, MiB.
    pub cached_msg_size_in_mi_b: i32,
    /// Orderly: whether the client holds the broker's lock on the queue.
    pub locked: bool,
    /// No longer owned (Java spells it `droped`).
    pub droped: bool,
}

/// A consumer's rates per topic (`ConsumeStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ConsumeStatus {
    /// Average pull round trip, ms.
    #[serde(rename = "pullRT")]
    pub pull_rt: f64,
    /// Pulls per second.
    #[serde(rename = "pullTPS")]
    pub pull_tps: f64,
    /// Average listener time, ms.
    #[serde(rename = "consumeRT")]
    pub consume_rt: f64,
    /// Messages consumed per second.
    #[serde(rename = "consumeOKTPS")]
    pub consume_ok_tps: f64,
    /// Messages failed per second.
    #[serde(rename = "consumeFailedTPS")]
    pub consume_failed_tps: f64,
    /// Messages failed in the last hour.
    #[serde(rename = "consumeFailedMsgs")]
    pub consume_failed_msgs: i64,
}

/// GET_CONSUMER_RUNNING_INFO's answer (`ConsumerRunningInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerRunningInfo {
    /// `PROP_CONSUME_TYPE`, `PROP_CONSUMEORDERLY`, `PROP_CLIENT_VERSION`, …
    pub properties: BTreeMap<String, String>,
    /// The group's subscriptions.
    pub subscription_set: Vec<SubscriptionData>,
    /// Every queue the client owns.
    pub mq_table: BTreeMap<MessageQueue, ProcessQueueInfo>,
    /// Rates per topic, where the client keeps them.
    pub status_table: BTreeMap<String, ConsumeStatus>,
}

/// CONSUME_MESSAGE_DIRECTLY's answer (`ConsumeMessageDirectlyResult`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeMessageDirectlyResult {
    /// The group consumes orderly.
    pub order: bool,
    /// Offsets are committed automatically.
    pub auto_commit: bool,
    /// `CR_SUCCESS`, `CR_LATER`, `CR_THROW_EXCEPTION`, …
    pub consume_result: String,
    /// Why, when it did not succeed.
    pub remark: String,
    /// How long the listener took, ms.
    pub spent_time_mills: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::{self, KeyStyle};

    #[test]
    fn running_info_keys_queues_by_object_and_reads_java_names() {
        let mut info = ConsumerRunningInfo::default();
        info.mq_table.insert(
            MessageQueue::new("T", "broker-a", 2),
            ProcessQueueInfo { commit_offset: 7, cached_msg_count: 3, ..ProcessQueueInfo::default() },
        );
        info.status_table
            .insert("T".into(), ConsumeStatus { consume_ok_tps: 1.5, ..ConsumeStatus::default() });
        let text = String::from_utf8(json::to_body(&info, KeyStyle::Fastjson)).unwrap();
        assert!(
            text.contains(
                r#""mqTable":{{"brokerName":"broker-a","queueId":2,"topic":"T"}:{"commitOffset":7"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""consumeOKTPS":1.5"#), "{text}");
        let back: ConsumerRunningInfo = json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back, info);
    }
}
