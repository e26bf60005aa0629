//! The requests a RocketMQ client sends to a broker, built the way the Java client builds
//! them (short-form send headers, the subscription flag on pulls). Used by Keel's client
//! library and tools (`mqbench`), and pops as the gRPC endpoint makes them; with the
//! `testing` feature, also a bare PULL_MESSAGE, for tests that play the client.

mod pop;
#[cfg(any(test, feature = "testing"))]
mod pull;
pub use pop::pulled_records;
pub use pop::{ack_message, change_invisible_time, pop_message, popped_messages, PopRequest, Popped};
#[cfg(any(test, feature = "testing"))]
pub use pull::{pull_message, PullRequest};

use bytes::Bytes;

use super::headers::{CommandHeader, SendMessageRequestHeaderV2};
use super::message::batch::{encode_batch, BatchEntry};
use super::message::properties;
use super::{RemotingCommand, RequestCode};

/// PullSysFlag: commit the offset carried in the request.
pub const PULL_FLAG_COMMIT_OFFSET: i32 = 0b0001;
/// PullSysFlag: the broker may hold the pull.
pub const PULL_FLAG_SUSPEND: i32 = 0b0010;
/// PullSysFlag: the request carries a subscription expression.
pub const PULL_FLAG_SUBSCRIPTION: i32 = 0b0100;

/// A message as a producer hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingMessage {
    /// Topic.
    pub topic: String,
    /// Tag (`TAGS`), if any.
    pub tags: Option<String>,
    /// Keys (`KEYS`, space-separated), if any.
    pub keys: Option<String>,
    /// User properties.
    pub user_properties: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl OutgoingMessage {
    /// The properties string: tags, keys, `WAIT=true`, then the user's.
    #[must_use]
    pub fn properties(&self) -> Vec<u8> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(tags) = &self.tags {
            pairs.push(("TAGS", tags));
        }
        if let Some(keys) = &self.keys {
            pairs.push(("KEYS", keys));
        }
        pairs.push(("WAIT", "true"));
        pairs.extend(self.user_properties.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        properties::encode(&pairs)
    }
}

fn send_header(
    group: &str,
    topic: &str,
    queue_id: i32,
    properties: Vec<u8>,
    batch: bool,
) -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        a: group.into(),
        b: topic.into(),
        c: "TBW102".into(),
        d: 4,
        e: queue_id,
        i: Some(String::from_utf8_lossy(&properties).into_owned()),
        m: batch.then_some(true),
        ..SendMessageRequestHeaderV2::default()
    }
}

/// SEND_MESSAGE_V2 of one message to `queue_id`.
#[must_use]
pub fn send_message(opaque: i32, group: &str, queue_id: i32, message: &OutgoingMessage) -> RemotingCommand {
    let header = send_header(group, &message.topic, queue_id, message.properties(), false);
    RemotingCommand::request(RequestCode::SEND_MESSAGE_V2, opaque, header.to_ext_fields())
        .with_body(message.body.clone())
}

/// SEND_BATCH_MESSAGE of `messages` (all to the first one's topic) to `queue_id`.
#[must_use]
pub fn send_batch(opaque: i32, group: &str, queue_id: i32, messages: &[OutgoingMessage]) -> RemotingCommand {
    let topic = messages.first().map(|m| m.topic.as_str()).unwrap_or_default();
    let entries: Vec<BatchEntry> = messages
        .iter()
        .map(|m| BatchEntry { flag: 0, body: m.body.clone(), properties: Bytes::from(m.properties()) })
        .collect();
    let header = send_header(group, topic, queue_id, Vec::new(), true);
    RemotingCommand::request(RequestCode::SEND_BATCH_MESSAGE, opaque, header.to_ext_fields())
        .with_body(encode_batch(&entries))
}

/// RECALL_MESSAGE of the timed message whose send answered `recall_handle`, to the broker
/// the handle names (`DefaultMQProducer.recallMessage`).
#[must_use]
pub fn recall_message(opaque: i32, group: &str, topic: &str, recall_handle: &str) -> RemotingCommand {
    let broker_name =
        crate::broker::timer::recall::RecallHandle::decode(recall_handle).map(|h| h.broker_name);
    let header = super::headers::RecallMessageRequestHeader {
        producer_group: Some(group.into()),
        topic: topic.into(),
        recall_handle: recall_handle.into(),
        broker_name,
    };
    RemotingCommand::request(RequestCode::RECALL_MESSAGE, opaque, header.to_ext_fields())
}

/// CONSUMER_SEND_MSG_BACK: `group` failed the message stored at `commit_log_offset`; retry
/// it at `delay_level` (0: the broker's choice, negative: straight to the DLQ).
#[must_use]
pub fn send_message_back(
    opaque: i32,
    group: &str,
    commit_log_offset: i64,
    delay_level: i32,
    max_reconsume_times: i32,
) -> RemotingCommand {
    let header = super::headers::ConsumerSendMsgBackRequestHeader {
        offset: commit_log_offset,
        group: group.into(),
        delay_level,
        max_reconsume_times: Some(max_reconsume_times),
        ..Default::default()
    };
    RemotingCommand::request(RequestCode::CONSUMER_SEND_MSG_BACK, opaque, header.to_ext_fields())
}

/// LOCK_BATCH_MQ (or UNLOCK_BATCH_MQ when `unlock`) of `queues` for `client_id` in `group`.
#[must_use]
pub fn lock_batch(
    opaque: i32,
    group: &str,
    client_id: &str,
    queues: &[super::body::MessageQueue],
    unlock: bool,
) -> RemotingCommand {
    let body = super::body::LockBatchRequestBody {
        client_id: client_id.into(),
        consumer_group: group.into(),
        mq_set: queues.to_vec(),
        only_this_broker: false,
    };
    let code = if unlock { RequestCode::UNLOCK_BATCH_MQ } else { RequestCode::LOCK_BATCH_MQ };
    let bytes = super::json::to_body(&body, super::json::KeyStyle::Standard);
    RemotingCommand::request(code, opaque, super::ExtFields::default()).with_body(bytes)
}
