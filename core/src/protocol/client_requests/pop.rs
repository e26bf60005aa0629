//! POP_MESSAGE, ACK_MESSAGE and CHANGE_MESSAGE_INVISIBLETIME as a pop client sends them,
//! and a pop reply's messages with the receipt handles a client builds for them
//! (`MQClientAPIImpl.processPopResponse`). The gRPC endpoint pops through these too.

use crate::broker::pop::receipt::{parse_order_counts, parse_start_offsets, ReceiptHandle, RetryMark};
use crate::protocol::headers::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, CommandHeader, PopMessageRequestHeader,
    PopMessageResponseHeader,
};
use crate::protocol::message::stored::{parse_record, Parsed, RecordError, RecordView, MAGIC_BLANK};
use crate::protocol::{RemotingCommand, RequestCode};

/// What a pop asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PopRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue, or -1 for any.
    pub queue_id: i32,
    /// Most messages.
    pub max_messages: i32,
    /// How long the messages stay invisible, ms.
    pub invisible_ms: i64,
    /// How long the broker may hold the pop, ms (0: answer at once).
    pub poll_ms: i64,
    /// Tag expression (`*` when empty).
    pub expression: String,
    /// A FIFO pop, with its attempt id.
    pub order: Option<String>,
    /// Where a group without an offset starts: 0 the queue's first message, 1 its last.
    pub init_mode: i32,
}

/// POP_MESSAGE for `request`, sent at `born_ms` by the client's clock.
#[must_use]
pub fn pop_message(opaque: i32, request: &PopRequest, born_ms: i64) -> RemotingCommand {
    let header = PopMessageRequestHeader {
        consumer_group: request.group.clone(),
        topic: request.topic.clone(),
        queue_id: request.queue_id,
        max_msg_nums: request.max_messages,
        invisible_time: request.invisible_ms,
        poll_time: request.poll_ms,
        born_time: born_ms,
        init_mode: request.init_mode,
        exp_type: Some("TAG".into()),
        exp: Some(if request.expression.is_empty() { "*".into() } else { request.expression.clone() }),
        order: request.order.as_ref().map(|_| true),
        attempt_id: request.order.clone(),
    };
    RemotingCommand::request(RequestCode::POP_MESSAGE, opaque, header.to_ext_fields())
}

/// ACK_MESSAGE of a popped message by its handle; `topic` is the topic popped.
#[must_use]
pub fn ack_message(opaque: i32, group: &str, topic: &str, handle: &ReceiptHandle) -> RemotingCommand {
    let header = AckMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id: handle.queue_id,
        extra_info: handle.render(),
        offset: handle.queue_offset.unwrap_or(handle.ck_start_offset),
    };
    RemotingCommand::request(RequestCode::ACK_MESSAGE, opaque, header.to_ext_fields())
}

/// CHANGE_MESSAGE_INVISIBLETIME: hide the message `invisible_ms` from now.
#[must_use]
pub fn change_invisible_time(
    opaque: i32,
    group: &str,
    topic: &str,
    handle: &ReceiptHandle,
    invisible_ms: i64,
) -> RemotingCommand {
    let header = ChangeInvisibleTimeRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id: handle.queue_id,
        extra_info: handle.render(),
        offset: handle.queue_offset.unwrap_or(handle.ck_start_offset),
        invisible_time: invisible_ms,
    };
    RemotingCommand::request(RequestCode::CHANGE_MESSAGE_INVISIBLETIME, opaque, header.to_ext_fields())
}

/// A popped message: its record, its receipt handle, and its deliveries before this one
/// (the retry count for a message from the retry topic, the FIFO count otherwise).
#[derive(Debug)]
pub struct Popped<'a> {
    /// The record.
    pub record: RecordView<'a>,
    /// Its receipt handle.
    pub handle: ReceiptHandle,
    /// Deliveries before this one.
    pub attempts_before: u32,
}

/// The messages of a successful POP_MESSAGE reply from `broker_name`, with their handles.
pub fn popped_messages<'a>(
    reply: &'a RemotingCommand,
    broker_name: &str,
) -> Result<Vec<Popped<'a>>, RecordError> {
    let Ok(header) = PopMessageResponseHeader::decode(&reply.ext_fields) else { return Ok(Vec::new()) };
    let starts = parse_start_offsets(header.start_offset_info.as_deref().unwrap_or_default());
    let counts = parse_order_counts(header.order_count_info.as_deref().unwrap_or_default());
    let records = pulled_records(&reply.body)?;
    Ok(records
        .into_iter()
        .map(|record| {
            let mark = RetryMark::of_topic(record.record.topic);
            let head = record.head();
            let start = starts.get(&(mark, head.queue_id)).copied().unwrap_or(head.queue_offset);
            let order_count = counts.get(&(mark, head.queue_id, head.queue_offset)).copied();
            let handle = ReceiptHandle {
                ck_start_offset: start,
                pop_time: header.pop_time,
                invisible_time: header.invisible_time,
                revive_qid: header.revive_qid,
                retry: mark,
                broker_name: broker_name.to_owned(),
                queue_id: head.queue_id,
                queue_offset: Some(head.queue_offset),
                commit_log_offset: Some(head.physical_offset),
            };
            let attempts_before =
                order_count.unwrap_or_else(|| u32::try_from(head.reconsume_times).unwrap_or(0));
            Popped { record, handle, attempts_before }
        })
        .collect())
}

/// The records of a successful pull or pop reply's body, in order.
pub fn pulled_records(body: &[u8]) -> Result<Vec<RecordView<'_>>, RecordError> {
    let mut records = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        match parse_record(rest)? {
            Parsed::Message(record) => {
                rest = rest.get(record.bytes.len()..).unwrap_or_default();
                records.push(record);
            }
            // A BLANK closes a segment; it is never part of a pull reply.
            Parsed::Blank(_) => return Err(RecordError::BadMagic(MAGIC_BLANK)),
        }
    }
    Ok(records)
}
