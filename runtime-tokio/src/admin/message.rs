//! mqadmin's message tools: look a message up by its offset id (VIEW_MESSAGE_BY_ID) or by
//! queue and offset (a one-message PULL_MESSAGE), and send one (SEND_MESSAGE_V2).

use anyhow::{anyhow, Context};
use bytes::Bytes;
use keel_core::protocol::client_requests::{send_message, OutgoingMessage, PULL_FLAG_SUBSCRIPTION};
use keel_core::protocol::headers::{
    CommandHeader, PullMessageRequestHeader, SendMessageResponseHeader, ViewMessageRequestHeader,
};
use keel_core::protocol::message::message_id::decode_offset_message_id;
use keel_core::protocol::message::stored::{decode_records, StoredMessage};
use keel_core::protocol::RequestCode;

use super::{resolve, AdminClient};

/// The consumer group mqadmin's lookups pull as (RocketMQ's tools use the same).
const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
/// The producer group `sendMessage` sends as.
const TOOLS_PRODUCER_GROUP: &str = "TOOLS_PRODUCER";

/// Where `sendMessage` put a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The broker set.
    pub broker_name: String,
    /// The queue.
    pub queue_id: i32,
    /// The offset message id the broker gave it.
    pub msg_id: String,
}

impl AdminClient {
    /// The message an offset message id names: the id carries the broker's address and
    /// the CommitLog offset.
    pub async fn message_by_offset_id(&self, id: &str) -> anyhow::Result<StoredMessage> {
        let (broker, offset) = decode_offset_message_id(id).ok_or_else(|| {
            anyhow!("{id} is not an offset message id (32 or 56 hex digits: broker address, then CommitLog offset)")
        })?;
        let header = ViewMessageRequestHeader { offset, topic: None };
        let body = Self::call(broker, RequestCode::VIEW_MESSAGE_BY_ID, header.to_ext_fields())
            .await
            .with_context(|| {
                format!(
                    "looking {id} up as an offset id (broker {broker}, offset {offset}); a lookup by unique key \
                     needs the broker's key index, which Keel does not build yet"
                )
            })?;
        one_message(&body)
    }

    /// The message at `offset` of queue `queue_id` of `topic` on broker set `broker_name`.
    pub async fn message_at(
        &self,
        topic: &str,
        broker_name: &str,
        queue_id: i32,
        offset: i64,
    ) -> anyhow::Result<StoredMessage> {
        let addr = self.master_of(topic, broker_name).await?;
        let header = PullMessageRequestHeader {
            consumer_group: TOOLS_CONSUMER_GROUP.into(),
            topic: topic.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 1,
            sys_flag: PULL_FLAG_SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
            broker_name: None,
        };
        let body = Self::call(resolve(&addr)?, RequestCode::PULL_MESSAGE, header.to_ext_fields())
            .await
            .with_context(|| {
                format!("no message at offset {offset} of {topic} queue {queue_id} on {broker_name}")
            })?;
        one_message(&body)
    }

    /// Send one message to `topic`, to queue `queue` of broker set `broker` if named, else
    /// to queue 0 of the first set serving the topic.
    pub async fn send(
        &self,
        message: OutgoingMessage,
        broker: Option<&str>,
        queue: Option<i32>,
    ) -> anyhow::Result<Sent> {
        let route = self.route(&message.topic).await?;
        let set = match broker {
            Some(name) => route.broker_datas.iter().find(|b| b.broker_name == name),
            None => route.broker_datas.first(),
        }
        .ok_or_else(|| anyhow!("no broker set {} serves {}", broker.unwrap_or("at all"), message.topic))?;
        let addr = set.broker_addrs.get(&0).ok_or_else(|| anyhow!("{} has no master", set.broker_name))?;
        let queue_id = queue.unwrap_or(0);
        let mut request = send_message(0, TOOLS_PRODUCER_GROUP, queue_id, &message);
        // The born timestamp (`g`): when the tool sent it.
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        request.ext_fields.insert("g", now_ms.to_string());
        let reply = Self::call_request(resolve(addr)?, request).await?;
        let header = SendMessageResponseHeader::decode(&reply.ext_fields)
            .map_err(|e| anyhow!("the send's answer has no usable header: {e}"))?;
        Ok(Sent { broker_name: set.broker_name.clone(), queue_id: header.queue_id, msg_id: header.msg_id })
    }

    /// The master of broker set `broker_name` serving `topic`.
    async fn master_of(&self, topic: &str, broker_name: &str) -> anyhow::Result<String> {
        let route = self.route(topic).await?;
        route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
            .and_then(|b| b.broker_addrs.get(&0).cloned())
            .ok_or_else(|| anyhow!("no master of {broker_name} serves {topic}"))
    }
}

/// The first message of a pull or view body.
fn one_message(body: &Bytes) -> anyhow::Result<StoredMessage> {
    decode_records(body)
        .map_err(|e| anyhow!("the broker's answer holds no readable message: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the broker's answer holds no message"))
}
