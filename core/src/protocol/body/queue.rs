//! Message queues and the bodies that carry sets of them (LOCK_BATCH_MQ, UNLOCK_BATCH_MQ).
//!
//! Every client of a group must sort queues and client ids the same way, or their
//! rebalances disagree on who owns what; Java sorts strings by UTF-16 code units, which
//! differs from Rust's byte order for characters beyond the Basic Multilingual Plane.

use core::cmp::Ordering;
use core::fmt;

use serde::{Deserialize, Serialize};

/// Compare two strings as Java's `String.compareTo` does (UTF-16 code units).
#[must_use]
pub fn java_str_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// One queue of a topic on one broker (`MessageQueue`), ordered as Java orders it: topic,
/// then broker name, then queue id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    /// The broker (by name, not address: a master and its slaves share it).
    pub broker_name: String,
    /// The queue's index within the topic on that broker.
    pub queue_id: i32,
    /// The topic.
    pub topic: String,
}

impl MessageQueue {
    /// The queue `queue_id` of `topic` on `broker_name`.
    #[must_use]
    pub fn new(topic: &str, broker_name: &str, queue_id: i32) -> Self {
        Self { broker_name: broker_name.to_owned(), queue_id, topic: topic.to_owned() }
    }
}

impl Ord for MessageQueue {
    fn cmp(&self, other: &Self) -> Ordering {
        java_str_cmp(&self.topic, &other.topic)
            .then_with(|| java_str_cmp(&self.broker_name, &other.broker_name))
            .then_with(|| self.queue_id.cmp(&other.queue_id))
    }
}

impl PartialOrd for MessageQueue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Java's `MessageQueue.toString()`: the key the consistent-hash strategy hashes, so it
/// must match byte for byte.
impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ request body (`LockBatchRequestBody`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    /// The client asking.
    pub client_id: String,
    /// Its consumer group.
    pub consumer_group: String,
    /// The queues to lock or unlock.
    pub mq_set: Vec<MessageQueue>,
    /// 5.x: do not forward to other brokers (Keel never forwards).
    pub only_this_broker: bool,
}

/// LOCK_BATCH_MQ answer (`LockBatchResponseBody`): the queues now held by the client.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    /// Queues locked by the asking client (new, renewed or taken over from an expired lock).
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json;

    #[test]
    fn queues_sort_as_java_sorts_them() {
        let mut queues = [
            MessageQueue::new("T", "broker-b", 0),
            MessageQueue::new("T", "broker-a", 10),
            MessageQueue::new("T", "broker-a", 2),
            MessageQueue::new("S", "broker-z", 5),
        ];
        queues.sort();
        let keys: Vec<(String, i32)> = queues.iter().map(|q| (q.broker_name.clone(), q.queue_id)).collect();
        assert_eq!(
            keys,
            [("broker-z".into(), 5), ("broker-a".into(), 2), ("broker-a".into(), 10), ("broker-b".into(), 0)]
        );
    }

    #[test]
    fn strings_compare_by_utf16_units_like_java() {
        // U+FF21 (one unit 0xFF21) sorts after U+1F600 (surrogates 0xD83D…) in Java, before
        // it in UTF-8 byte order.
        assert_eq!(java_str_cmp("\u{FF21}", "\u{1F600}"), Ordering::Greater);
        assert_eq!("\u{FF21}".cmp("\u{1F600}"), Ordering::Less);
        assert_eq!(java_str_cmp("a", "b"), Ordering::Less);
    }

    #[test]
    fn display_is_javas_to_string() {
        assert_eq!(
            MessageQueue::new("TopicTest", "broker-a", 3).to_string(),
            "MessageQueue [topic=TopicTest, brokerName=broker-a, queueId=3]"
        );
    }

    #[test]
    fn lock_bodies_use_javas_field_names() {
        let request = br#"{"clientId":"10.0.0.1@123","consumerGroup":"g","mqSet":[{"brokerName":"b","queueId":1,"topic":"T"}],"onlyThisBroker":false}"#;
        let body: LockBatchRequestBody = json::from_slice(request).unwrap();
        assert_eq!(body.mq_set, vec![MessageQueue::new("T", "b", 1)]);
        let reply = LockBatchResponseBody { lock_ok_mq_set: body.mq_set };
        let text = json::to_string(&reply, json::KeyStyle::Standard).unwrap();
        assert_eq!(text, r#"{"lockOKMQSet":[{"brokerName":"b","queueId":1,"topic":"T"}]}"#);
    }
}
