//! mqadmin's message tools: look a message up by its offset id (VIEW_MESSAGE_BY_ID), by key
//! or unique key (QUERY_MESSAGE) or by queue and offset (a one-message PULL_MESSAGE), and
//! send one (SEND_MESSAGE_V2).

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use keel_core::protocol::client_requests::{send_message, OutgoingMessage, PULL_FLAG_SUBSCRIPTION};
use keel_core::protocol::headers::{
    CommandHeader, OffsetResponseHeader, PullMessageRequestHeader, QueryMessageRequestHeader,
    QueueRequestHeader, SearchOffsetRequestHeader, SendMessageResponseHeader, ViewMessageRequestHeader,
};
use keel_core::protocol::message::message_id::{decode_offset_message_id, UniqueIdGenerator};
use keel_core::protocol::message::stored::{decode_records, StoredMessage};
use keel_core::protocol::RequestCode;
use keel_core::protocol::ResponseCode;

use super::{resolve, AdminClient};

/// The consumer group mqadmin's lookups pull as (RocketMQ's tools use the same).
const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
/// The producer group `sendMessage` sends as.
const TOOLS_PRODUCER_GROUP: &str = "TOOLS_PRODUCER";

/// What [`AdminClient::scan_topic`] comes across.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// A queue about to be read, and the range that will be.
    Queue {
        /// Its broker set.
        broker_name: &'a str,
        /// The queue.
        queue_id: i32,
        /// The first offset read.
        min: i64,
        /// The offset reading stops at.
        max: i64,
    },
    /// One message of that queue.
    Message {
        /// Its broker set.
        broker_name: &'a str,
        /// The message.
        message: &'a StoredMessage,
    },
}

/// Where `sendMessage` put a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The broker set.
    pub broker_name: String,
    /// The queue.
    pub queue_id: i32,
    /// The offset message id the broker gave it.
    pub msg_id: String,
    /// The unique id (UNIQ_KEY) the tool gave it, as a producer does.
    pub unique_id: String,
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
            .with_context(|| format!("looking {id} up as an offset id (broker {broker}, offset {offset})"))?;
        one_message(&body)
    }

    /// Messages of `topic` stored with `key` (a KEYS token; with `unique`, the UNIQ_KEY a
    /// producer gave it) between `begin` and `end` ms, from every master of the topic, each
    /// broker's newest first; at most `max` from each.
    pub async fn messages_by_key(
        &self,
        topic: &str,
        key: &str,
        unique: bool,
        max: i32,
        (begin, end): (i64, i64),
    ) -> anyhow::Result<Vec<(String, StoredMessage)>> {
        let route = self.route(topic).await?;
        let mut found = Vec::new();
        for broker in &route.broker_datas {
            let Some(addr) = broker.broker_addrs.get(&0) else { continue };
            let header = QueryMessageRequestHeader {
                topic: topic.into(),
                key: key.into(),
                max_num: max,
                begin_timestamp: begin,
                end_timestamp: end,
                unique_key_query: Some(unique.to_string()),
            };
            let request = keel_core::protocol::RemotingCommand::request(
                RequestCode::QUERY_MESSAGE,
                0,
                header.to_ext_fields(),
            );
            let addr = resolve(addr)?;
            let client = crate::remoting_client::RemotingClient::connect(addr)
                .await
                .with_context(|| format!("cannot connect to {addr}"))?;
            let reply = client.call(request).await.with_context(|| format!("QUERY_MESSAGE to {addr}"))?;
            match reply.response_code() {
                ResponseCode::SUCCESS => {
                    let body = reply.body;
                    let messages = decode_records(&body)
                        .map_err(|e| anyhow!("the answer of {addr} holds no readable message: {e}"))?;
                    found.extend(messages.into_iter().map(|m| (broker.broker_name.clone(), m)));
                }
                ResponseCode::QUERY_NOT_FOUND => {}
                code => bail!(
                    "QUERY_MESSAGE to {addr} answered {code:?}: {}",
                    reply.remark.as_deref().unwrap_or("no remark")
                ),
            }
        }
        Ok(found)
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
        let messages = Self::pull(&addr, topic, queue_id, offset, 1).await.with_context(|| {
            format!("no message at offset {offset} of {topic} queue {queue_id} on {broker_name}")
        })?;
        messages.into_iter().next().ok_or_else(|| anyhow!("the broker's answer holds no message"))
    }

    /// Up to `max` messages (at most 32) of a queue from `offset`, from the broker at `addr`.
    pub async fn pull(
        addr: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max: i32,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        let header = PullMessageRequestHeader {
            consumer_group: TOOLS_CONSUMER_GROUP.into(),
            topic: topic.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: max,
            sys_flag: PULL_FLAG_SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
            broker_name: None,
        };
        let body = Self::call(resolve(addr)?, RequestCode::PULL_MESSAGE, header.to_ext_fields()).await?;
        decode_records(&body).map_err(|e| anyhow!("the broker's answer holds no readable message: {e}"))
    }

    /// A queue's offset range on the broker at `addr`: from the first stored (or the first
    /// stored at or after `begin` ms) to the end (or the first stored after `end` ms).
    pub async fn queue_range(
        addr: &str,
        topic: &str,
        queue_id: i32,
        begin: Option<i64>,
        end: Option<i64>,
    ) -> anyhow::Result<(i64, i64)> {
        let offset_of = |code: RequestCode, ext: keel_core::protocol::ExtFields| async move {
            let reply = Self::call_request(
                resolve(addr)?,
                keel_core::protocol::RemotingCommand::request(code, 0, ext),
            )
            .await?;
            OffsetResponseHeader::decode(&reply.ext_fields)
                .map(|h| h.offset)
                .map_err(|e| anyhow!("{code:?} answered no offset: {e}"))
        };
        let by_time = |timestamp: i64| {
            let header =
                SearchOffsetRequestHeader { topic: topic.into(), queue_id, timestamp, boundary_type: None };
            offset_of(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, header.to_ext_fields())
        };
        let queue = QueueRequestHeader { topic: topic.into(), queue_id, committed: None };
        let min = match begin {
            Some(time) => by_time(time).await?,
            None => offset_of(RequestCode::GET_MIN_OFFSET, queue.to_ext_fields()).await?,
        };
        let max = match end {
            Some(time) => by_time(time).await?,
            None => offset_of(RequestCode::GET_MAX_OFFSET, queue.to_ext_fields()).await?,
        };
        Ok((min, max))
    }

    /// Every message of `topic` (from `begin`, to `end`, ms), queue by queue over every
    /// master serving it, at most `limit` in all; `each` sees each queue's range as
    /// `(broker, queue, min, max)`, then its messages.
    pub async fn scan_topic(
        &self,
        topic: &str,
        begin: Option<i64>,
        end: Option<i64>,
        limit: usize,
        mut each: impl FnMut(Scanned<'_>),
    ) -> anyhow::Result<usize> {
        let route = self.route(topic).await?;
        let mut seen = 0;
        for (set, queues) in route.queue_datas.iter().filter_map(|q| {
            let set = route.broker_datas.iter().find(|b| b.broker_name == q.broker_name)?;
            Some((set, q.read_queue_nums))
        }) {
            let Some(addr) = set.broker_addrs.get(&0) else { continue };
            for queue_id in 0..queues {
                let (min, max) = Self::queue_range(addr, topic, queue_id, begin, end).await?;
                each(Scanned::Queue { broker_name: &set.broker_name, queue_id, min, max });
                let mut offset = min;
                while offset < max && seen < limit {
                    let batch = Self::pull(addr, topic, queue_id, offset, 32).await?;
                    if batch.is_empty() {
                        break;
                    }
                    for message in &batch {
                        if message.head.queue_offset >= max || seen >= limit {
                            break;
                        }
                        each(Scanned::Message { broker_name: &set.broker_name, message });
                        seen += 1;
                    }
                    offset = batch.last().map_or(max, |m| m.head.queue_offset + 1);
                }
            }
        }
        Ok(seen)
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
        let mut message = message;
        let now = super::now_ms();
        // The low bits of the clock salt the id, as the class loader's hash does in Java.
        let mut ids =
            UniqueIdGenerator::new(std::net::Ipv4Addr::LOCALHOST, std::process::id() as i16, now as i32);
        let unique_id = ids.next_id(keel_core::io::UnixMillis(now));
        message
            .user_properties
            .push((keel_core::protocol::message::properties::keys::UNIQ_KEY.to_owned(), unique_id.clone()));
        let mut request = send_message(0, TOOLS_PRODUCER_GROUP, queue_id, &message);
        // The born timestamp (`g`): when the tool sent it.
        request.ext_fields.insert("g", super::now_ms().to_string());
        let reply = Self::call_request(resolve(addr)?, request).await?;
        let header = SendMessageResponseHeader::decode(&reply.ext_fields)
            .map_err(|e| anyhow!("the send's answer has no usable header: {e}"))?;
        Ok(Sent {
            broker_name: set.broker_name.clone(),
            queue_id: header.queue_id,
            msg_id: header.msg_id,
            unique_id,
        })
    }

    /// The master of broker set `broker_name` serving `topic`.
    pub async fn master_of(&self, topic: &str, broker_name: &str) -> anyhow::Result<String> {
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
