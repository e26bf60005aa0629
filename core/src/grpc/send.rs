//! SendMessage: a 5.x client's messages as the remoting send the broker serves
//! (SEND_MESSAGE_V2 for one, SEND_BATCH_MESSAGE for several), and its reply as the SDK's
//! result entries. The mapping is RocketMQ's proxy's: tag → `TAGS`, keys → `KEYS`, the
//! client's message id → `UNIQ_KEY`, message group → `__SHARDINGKEY`, delivery time →
//! `TIMER_DELIVER_MS`, a transaction → `TRAN_MSG` with the prepared flag; the producer group
//! is the topic. The client's queue choice is ignored: the caller picks the queue.

use bytes::Bytes;

use super::proto::{self, Code, Encoding, MessageType};
use super::status::{from_remoting, ok, status};
use crate::protocol::headers::{
    CommandHeader, HeaderField as _, RecallMessageResponseHeader, SendMessageRequestHeaderV2,
};
use crate::protocol::message::batch::{encode_batch, BatchEntry};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::sys_flag;
use crate::protocol::message::tag::java_string_hash;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Most messages one SendMessage may carry.
pub const MAX_MESSAGES: usize = 1024;
/// The furthest ahead a delivery time may be, as RocketMQ's proxy allows: one day.
pub const MAX_DELIVERY_AHEAD_MS: i64 = 86_400_000;

/// Property names the broker owns: a user property may not take one, and a message shows
/// none of them as a user property.
pub(super) const SYSTEM_KEYS: &[&str] = &[
    keys::KEYS,
    keys::TAGS,
    keys::WAIT,
    keys::DELAY,
    keys::RETRY_TOPIC,
    keys::REAL_TOPIC,
    keys::REAL_QID,
    keys::TRAN_MSG,
    keys::PGROUP,
    keys::UNIQ_KEY,
    keys::CLUSTER,
    keys::MAX_RECONSUME_TIMES,
    keys::RECONSUME_TIME,
    keys::ORIGIN_MESSAGE_ID,
    keys::TRANSACTION_ID,
    keys::TRAN_PREPARED_QUEUE_OFFSET,
    keys::TRANSACTION_CHECK_TIMES,
    keys::CHECK_IMMUNITY_TIME_IN_SECONDS,
    keys::TIMER_DELIVER_MS,
    keys::TIMER_DELAY_SEC,
    keys::TIMER_DELAY_MS,
    keys::TIMER_OUT_MS,
    keys::SHARDING_KEY,
    keys::CRC32,
    "MIN_OFFSET",
    "MAX_OFFSET",
    "MSG_REGION",
    "TRACE_ON",
    "INSTANCE_ID",
    "CORRELATION_ID",
    "REPLY_TO_CLIENT",
    "TTL",
    "TRACE_CONTEXT",
    "POP_CK",
    "1ST_POP_TIME",
];

/// What a SendMessage asks: its topic, the message group its first message names (which
/// picks the queue), and its messages checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SendPlan {
    /// The topic every message goes to.
    pub topic: String,
    /// The first message's group, for FIFO messages.
    pub message_group: Option<String>,
    /// The messages' client ids, in order.
    pub message_ids: Vec<String>,
    /// Whether the messages are half messages of a transaction.
    pub transactional: bool,
    entries: Vec<(i32, Bytes, Vec<u8>)>,
    sys_flag: i32,
    born_timestamp: i64,
}

/// Check `request` and turn its messages into what the broker stores; `now_ms` reads the
/// wall clock, only when a message has a delivery time or no born time (SDKs stamp every
/// message, and the read showed in the profile of the busiest call).
pub fn plan(
    request: &proto::SendMessageRequest,
    now_ms: impl FnOnce() -> i64,
) -> Result<SendPlan, proto::Status> {
    let first = request.messages.first().ok_or_else(|| status(Code::BadRequest, "no message to send"))?;
    if request.messages.len() > MAX_MESSAGES {
        return Err(status(Code::BadRequest, format!("more than {MAX_MESSAGES} messages in one send")));
    }
    let topic = first.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
    if topic.is_empty() {
        return Err(status(Code::IllegalTopic, "the message has no topic"));
    }
    let needs_now = request.messages.iter().any(|m| {
        m.system_properties
            .as_ref()
            .is_none_or(|s| s.born_timestamp.is_none() || s.delivery_timestamp.is_some())
    });
    let now_ms = if needs_now { now_ms() } else { 0 };
    let mut plan = SendPlan {
        topic,
        message_group: None,
        message_ids: Vec::new(),
        transactional: false,
        entries: Vec::new(),
        sys_flag: 0,
        born_timestamp: now_ms,
    };
    let no_system = proto::SystemProperties::default();
    for (index, message) in request.messages.iter().enumerate() {
        if message.topic.as_ref().map(|t| t.name.as_str()) != Some(plan.topic.as_str()) {
            return Err(status(Code::IllegalTopic, "every message of one send must have the same topic"));
        }
        let system = message.system_properties.as_ref().unwrap_or(&no_system);
        let props = properties_of(&plan.topic, message, system, now_ms)?;
        let transactional = system.message_type == MessageType::Transaction as i32;
        let compressed = system.body_encoding == Encoding::Gzip as i32;
        if index == 0 {
            plan.message_group = system.message_group.clone().filter(|g| !g.is_empty());
            plan.transactional = transactional;
            plan.sys_flag = if transactional { sys_flag::TRANSACTION_PREPARED } else { 0 }
                | if compressed { sys_flag::COMPRESSED } else { 0 };
            if let Some(born) = &system.born_timestamp {
                plan.born_timestamp = super::timestamp_ms(born);
            }
        } else if transactional != plan.transactional {
            return Err(status(Code::BadRequest, "a send mixes transactional and other messages"));
        }
        plan.message_ids.push(system.message_id.clone());
        plan.entries.push((0, message.body.clone(), props));
    }
    Ok(plan)
}

/// The stored properties of `message`, checked.
fn properties_of(
    topic: &str,
    message: &proto::Message,
    system: &proto::SystemProperties,
    now_ms: i64,
) -> Result<Vec<u8>, proto::Status> {
    if system.message_id.is_empty() {
        return Err(status(Code::IllegalMessageId, "the message has no message_id"));
    }
    let mut props = Vec::new();
    if let Some(tag) = system.tag.as_deref().filter(|t| !t.is_empty()) {
        if tag.contains('|') || tag.trim().is_empty() {
            return Err(status(Code::IllegalMessageTag, format!("tag {tag:?} is not allowed")));
        }
        properties::push(&mut props, keys::TAGS, tag);
    }
    if !system.keys.is_empty() {
        properties::push(&mut props, keys::KEYS, &system.keys.join(" "));
    }
    properties::push(&mut props, keys::UNIQ_KEY, &system.message_id);
    if let Some(group) = system.message_group.as_deref().filter(|g| !g.is_empty()) {
        properties::push(&mut props, keys::SHARDING_KEY, group);
    }
    if let Some(at) = &system.delivery_timestamp {
        let due = super::timestamp_ms(at);
        if due > now_ms.saturating_add(MAX_DELIVERY_AHEAD_MS) {
            return Err(status(Code::IllegalDeliveryTime, "the delivery time is more than a day ahead"));
        }
        properties::push(&mut props, keys::TIMER_DELIVER_MS, &due.to_string());
    }
    if system.message_type == MessageType::Transaction as i32 {
        properties::push(&mut props, keys::TRAN_MSG, "true");
        properties::push(&mut props, keys::PGROUP, topic);
        if let Some(wait) = &system.orphaned_transaction_recovery_duration {
            properties::push(
                &mut props,
                keys::CHECK_IMMUNITY_TIME_IN_SECONDS,
                &wait.seconds.max(0).to_string(),
            );
        }
    }
    if let Some(trace) = system.trace_context.as_deref().filter(|t| !t.is_empty()) {
        properties::push(&mut props, "TRACE_CONTEXT", trace);
    }
    properties::push(&mut props, keys::WAIT, "true");
    for (key, value) in &message.user_properties {
        if SYSTEM_KEYS.contains(&key.as_str()) {
            return Err(status(Code::IllegalMessagePropertyKey, format!("property {key} is the broker's")));
        }
        if key.is_empty() || key.contains(['\u{1}', '\u{2}']) || value.contains(['\u{1}', '\u{2}']) {
            return Err(status(Code::IllegalMessagePropertyKey, format!("property {key:?} is not allowed")));
        }
        properties::push(&mut props, key, value);
    }
    Ok(props)
}

impl SendPlan {
    /// The queue among `write_queues` the messages go to: by the message group's hash for
    /// FIFO messages (RocketMQ's proxy: the group's Java hash modulo the queue count), else
    /// the `turn`-th in rotation.
    #[must_use]
    pub fn queue(&self, write_queues: i32, turn: u64) -> i32 {
        let count = write_queues.max(1);
        match &self.message_group {
            Some(group) => java_string_hash(group).rem_euclid(count),
            None => i32::try_from(turn % u64::from(count.unsigned_abs())).unwrap_or(0),
        }
    }

    /// The remoting request that stores the messages in `queue_id`.
    #[must_use]
    pub fn command(&self, queue_id: i32) -> RemotingCommand {
        let batch = self.entries.len() > 1;
        let mut header = SendMessageRequestHeaderV2 {
            a: self.topic.clone(),
            b: self.topic.clone(),
            c: crate::broker::topics::TBW102.into(),
            d: 4,
            e: queue_id,
            f: self.sys_flag,
            g: self.born_timestamp,
            h: 0,
            ..SendMessageRequestHeaderV2::default()
        };
        let (code, body) = if batch {
            header.m = Some(true);
            let entries: Vec<BatchEntry> = self
                .entries
                .iter()
                .map(|(flag, body, props)| BatchEntry {
                    flag: *flag,
                    body: body.clone(),
                    properties: Bytes::from(props.clone()),
                })
                .collect();
            (RequestCode::SEND_BATCH_MESSAGE, encode_batch(&entries))
        } else {
            let (body, props) = self
                .entries
                .first()
                .map(|(_, body, props)| (body.clone(), props.as_slice()))
                .unwrap_or_default();
            header.i = Some(String::from_utf8_lossy(props).into_owned());
            (RequestCode::SEND_MESSAGE_V2, body)
        };
        RemotingCommand::request(code, 0, header.to_ext_fields()).with_body(body)
    }

    /// The SDK's answer to the broker's `reply`: one entry per message.
    #[must_use]
    pub fn response(&self, reply: &RemotingCommand) -> proto::SendMessageResponse {
        let code = reply.response_code();
        if code != ResponseCode::SUCCESS {
            let failed = from_remoting(code, reply.remark.as_deref());
            let entries = self
                .message_ids
                .iter()
                .map(|id| proto::SendResultEntry {
                    status: Some(failed.clone()),
                    message_id: id.clone(),
                    ..proto::SendResultEntry::default()
                })
                .collect();
            return proto::SendMessageResponse { status: Some(failed), entries };
        }
        // Only the two fields an SDK is answered with are read, not the whole header: the
        // busiest answer on the gRPC port.
        let fields = &reply.ext_fields;
        let queue_offset = i64::read(fields, "queueOffset").unwrap_or(0);
        let recall_handle = Option::<String>::read(fields, "recallHandle").ok().flatten().unwrap_or_default();
        let entries = self
            .message_ids
            .iter()
            .zip(0i64..)
            .map(|(id, index)| proto::SendResultEntry {
                status: Some(ok()),
                message_id: id.clone(),
                transaction_id: if self.transactional { id.clone() } else { String::new() },
                offset: queue_offset.saturating_add(index),
                recall_handle: recall_handle.clone(),
            })
            .collect();
        proto::SendMessageResponse { status: Some(ok()), entries }
    }
}

/// RECALL_MESSAGE for a RecallMessage RPC (`RecallMessageActivity`): the producer group is
/// the topic, as for sends.
///
/// # Errors
/// BAD_REQUEST without a topic or a handle.
pub fn recall_command(request: &proto::RecallMessageRequest) -> Result<RemotingCommand, proto::Status> {
    let topic = request.topic.as_ref().map(|t| t.name.as_str()).unwrap_or_default();
    if topic.is_empty() || request.recall_handle.is_empty() {
        return Err(status(Code::BadRequest, "a recall needs a topic and a recall_handle"));
    }
    Ok(crate::protocol::client_requests::recall_message(0, topic, topic, &request.recall_handle))
}

/// The SDK's answer to the broker's reply to a recall.
#[must_use]
pub fn recall_response(reply: &RemotingCommand) -> proto::RecallMessageResponse {
    let code = reply.response_code();
    if code != ResponseCode::SUCCESS {
        let refused = from_remoting(code, reply.remark.as_deref());
        return proto::RecallMessageResponse { status: Some(refused), message_id: String::new() };
    }
    let header = RecallMessageResponseHeader::decode(&reply.ext_fields).unwrap_or_default();
    proto::RecallMessageResponse { status: Some(ok()), message_id: header.msg_id }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::headers::SendMessageResponseHeader;
    use crate::protocol::ExtFields;

    fn message(id: &str, kind: MessageType, group: Option<&str>) -> proto::Message {
        proto::Message {
            topic: Some(proto::Resource { resource_namespace: String::new(), name: "T".into() }),
            user_properties: [("color".to_owned(), "blue".to_owned())].into_iter().collect(),
            system_properties: Some(proto::SystemProperties {
                tag: Some("TagA".into()),
                keys: vec!["k1".into(), "k2".into()],
                message_id: id.into(),
                message_type: kind as i32,
                message_group: group.map(str::to_owned),
                ..proto::SystemProperties::default()
            }),
            body: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn one_message_becomes_a_send_with_rocketmqs_properties_in_the_topics_producer_group() {
        let request =
            proto::SendMessageRequest { messages: vec![message("01ABC", MessageType::Normal, None)] };
        let plan = plan(&request, || 1_000).unwrap();
        let command = plan.command(3);
        assert_eq!(command.request_code(), RequestCode::SEND_MESSAGE_V2);
        let header = SendMessageRequestHeaderV2::decode(&command.ext_fields).unwrap();
        assert_eq!((header.a.as_str(), header.b.as_str(), header.e, header.f), ("T", "T", 3, 0));
        let props = header.i.unwrap();
        assert_eq!(
            properties::parse(props.as_bytes()),
            [("TAGS", "TagA"), ("KEYS", "k1 k2"), ("UNIQ_KEY", "01ABC"), ("WAIT", "true"), ("color", "blue")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(&command.body[..], b"hello");
    }

    #[test]
    fn fifo_messages_pick_their_queue_by_group_and_transactions_are_prepared() {
        let fifo = plan(
            &proto::SendMessageRequest { messages: vec![message("a", MessageType::Fifo, Some("g1"))] },
            || 0,
        )
        .unwrap();
        assert_eq!(fifo.queue(8, 5), java_string_hash("g1").rem_euclid(8));
        assert_eq!(fifo.queue(8, 6), fifo.queue(8, 5), "the group, not the turn, picks");
        let tx = plan(
            &proto::SendMessageRequest { messages: vec![message("t", MessageType::Transaction, None)] },
            || 0,
        )
        .unwrap();
        let header = SendMessageRequestHeaderV2::decode(&tx.command(0).ext_fields).unwrap();
        assert_eq!(header.f, sys_flag::TRANSACTION_PREPARED);
        let props = header.i.unwrap();
        assert_eq!(properties::find(props.as_bytes(), keys::TRAN_MSG), Some(&b"true"[..]));
        assert_eq!(properties::find(props.as_bytes(), keys::PGROUP), Some(&b"T"[..]));
        let mut reply = RemotingCommand::response_to(&tx.command(0), ResponseCode::SUCCESS, None);
        reply.ext_fields = SendMessageResponseHeader {
            queue_offset: 7,
            recall_handle: Some("h".into()),
            ..Default::default()
        }
        .to_ext_fields();
        let entry = &tx.response(&reply).entries[0];
        assert_eq!((entry.message_id.as_str(), entry.transaction_id.as_str(), entry.offset), ("t", "t", 7));
        assert_eq!(entry.recall_handle, "h");
    }

    #[test]
    fn bad_sends_are_refused_with_the_sdks_codes() {
        let code = |request: proto::SendMessageRequest| plan(&request, || 0).unwrap_err().code;
        assert_eq!(
            code(proto::SendMessageRequest { messages: vec![message("", MessageType::Normal, None)] }),
            Code::IllegalMessageId as i32
        );
        let mut reserved = message("x", MessageType::Normal, None);
        reserved.user_properties.insert("UNIQ_KEY".into(), "mine".into());
        assert_eq!(
            code(proto::SendMessageRequest { messages: vec![reserved] }),
            Code::IllegalMessagePropertyKey as i32
        );
        let mut other = message("y", MessageType::Normal, None);
        other.topic = Some(proto::Resource { resource_namespace: String::new(), name: "U".into() });
        let two = vec![message("x", MessageType::Normal, None), other];
        assert_eq!(code(proto::SendMessageRequest { messages: two }), Code::IllegalTopic as i32);
        let failed = RemotingCommand::response_to(
            &RemotingCommand::request(RequestCode::SEND_MESSAGE_V2, 1, ExtFields::new()),
            ResponseCode::SYSTEM_BUSY,
            Some("busy".into()),
        );
        let sent = plan(
            &proto::SendMessageRequest { messages: vec![message("z", MessageType::Normal, None)] },
            || 0,
        )
        .unwrap();
        assert_eq!(
            sent.response(&failed).entries[0].status.as_ref().unwrap().code,
            Code::TooManyRequests as i32
        );
    }

    #[test]
    fn several_messages_go_as_one_batch() {
        let request = proto::SendMessageRequest {
            messages: vec![message("a", MessageType::Normal, None), message("b", MessageType::Normal, None)],
        };
        let command = plan(&request, || 0).unwrap().command(1);
        assert_eq!(command.request_code(), RequestCode::SEND_BATCH_MESSAGE);
        let entries = crate::protocol::message::batch::decode_batch(&command.body, 10).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(properties::find(&entries[1].properties, keys::UNIQ_KEY), Some(&b"b"[..]));
    }

    /// The wall clock is read only for what needs it: a message without a born time (it
    /// is born now) or with a delivery time (checked against now).
    #[test]
    fn the_clock_is_read_only_for_a_missing_born_time_or_a_delivery_time() {
        let at = |ms: i64| prost_types::Timestamp { seconds: ms / 1000, nanos: 0 };
        let born = |m: &mut proto::Message| {
            m.system_properties.as_mut().unwrap().born_timestamp = Some(at(5_000));
        };
        let mut stamped = message("a", MessageType::Normal, None);
        born(&mut stamped);
        let sent = plan(&proto::SendMessageRequest { messages: vec![stamped.clone()] }, || {
            panic!("the clock is not read for a stamped message")
        })
        .unwrap();
        assert_eq!(sent.born_timestamp, 5_000);

        let unstamped = message("b", MessageType::Normal, None);
        let sent = plan(&proto::SendMessageRequest { messages: vec![unstamped] }, || 9_000).unwrap();
        assert_eq!(sent.born_timestamp, 9_000);

        let mut far = stamped;
        far.system_properties.as_mut().unwrap().delivery_timestamp = Some(at(MAX_DELIVERY_AHEAD_MS + 20_000));
        let refused = plan(&proto::SendMessageRequest { messages: vec![far] }, || 10_000).unwrap_err();
        assert_eq!(refused.code, Code::IllegalDeliveryTime as i32);
    }
}
