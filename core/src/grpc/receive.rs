//! The consumer side of the 5.x protocol, as RocketMQ's proxy maps it onto pop consumption:
//! QueryAssignment, ReceiveMessage (POP_MESSAGE), AckMessage (ACK_MESSAGE),
//! ChangeInvisibleDuration (CHANGE_MESSAGE_INVISIBLETIME) and
//! ForwardMessageToDeadLetterQueue (CONSUMER_SEND_MSG_BACK to the DLQ, then an ack).
//!
//! A receipt handle given to a gRPC client is the pop's handle plus the message's
//! CommitLog offset, as the proxy's are: forwarding to the DLQ needs it.

use super::message::from_stored;
use super::proto::{self, Code};
use super::status::{from_remoting, ok, status};
use crate::broker::pop::receipt::ReceiptHandle;
use crate::broker::topics::RETRY_PREFIX;
use crate::protocol::client_requests::{
    ack_message, change_invisible_time, pop_message, popped_messages, send_message_back, PopRequest,
};
use crate::protocol::headers::{ChangeInvisibleTimeResponseHeader, CommandHeader};
use crate::protocol::message::properties::keys;
use crate::protocol::{RemotingCommand, ResponseCode};

/// The shortest long poll a receive gets, and the longest (the proxy's bounds).
const POLL_MS: (i64, i64) = (5_000, 20_000);
/// The shortest invisible time without auto-renew, and the longest.
const INVISIBLE_MS: (i64, i64) = (10_000, 43_200_000);
/// The invisible time a push consumer's auto-renewed receive starts with.
const AUTO_RENEW_MS: i64 = 60_000;

fn duration_ms(d: Option<&prost_types::Duration>) -> Option<i64> {
    d.map(|d| d.seconds.saturating_mul(1000).saturating_add(i64::from(d.nanos / 1_000_000)))
}

fn name(resource: Option<&proto::Resource>) -> String {
    resource.map(|r| r.name.clone()).unwrap_or_default()
}

/// QueryAssignment's answer: for a FIFO group every readable queue, otherwise one queue
/// per broker with id -1 (the broker picks at pop time), from `queues` (QueryRoute's).
#[must_use]
pub fn assignments(queues: &[proto::MessageQueue], fifo: bool) -> Vec<proto::Assignment> {
    let readable = |q: &&proto::MessageQueue| {
        q.permission == proto::Permission::Read as i32 || q.permission == proto::Permission::ReadWrite as i32
    };
    let mut out: Vec<proto::Assignment> = Vec::new();
    for queue in queues.iter().filter(readable) {
        let broker = queue.broker.as_ref().map(|b| b.name.clone());
        if fifo {
            out.push(proto::Assignment { message_queue: Some(queue.clone()) });
        } else if !out.iter().any(|a| {
            a.message_queue.as_ref().and_then(|q| q.broker.as_ref()).map(|b| b.name.clone()) == broker
        }) {
            let any = proto::MessageQueue { id: -1, ..queue.clone() };
            out.push(proto::Assignment { message_queue: Some(any) });
        }
    }
    out
}

/// A receive as a pop: what to ask the broker, and how long it may hold it.
pub fn pop_of(request: &proto::ReceiveMessageRequest, fifo: bool) -> Result<PopRequest, proto::Status> {
    let queue = request.message_queue.as_ref();
    let topic = name(queue.and_then(|q| q.topic.as_ref()));
    let group = name(request.group.as_ref());
    if topic.is_empty() || group.is_empty() {
        return Err(status(Code::BadRequest, "a receive names its group and topic"));
    }
    let expression = match request.filter_expression.as_ref() {
        Some(filter) if filter.r#type == proto::FilterType::Sql as i32 => {
            return Err(status(Code::IllegalFilterExpression, "SQL92 filters are not served by Keel"));
        }
        Some(filter) => filter.expression.clone(),
        None => "*".into(),
    };
    let invisible_ms = if request.auto_renew {
        AUTO_RENEW_MS
    } else {
        let asked = duration_ms(request.invisible_duration.as_ref()).unwrap_or(0);
        if !(INVISIBLE_MS.0..=INVISIBLE_MS.1).contains(&asked) {
            return Err(status(
                Code::IllegalInvisibleTime,
                format!("the invisible time must be within [10 s, 12 h], not {asked} ms"),
            ));
        }
        asked
    };
    let poll_ms =
        duration_ms(request.long_polling_timeout.as_ref()).unwrap_or(POLL_MS.1).clamp(POLL_MS.0, POLL_MS.1);
    let attempt =
        request.attempt_id.clone().filter(|a| !a.is_empty()).unwrap_or_else(|| format!("{group}-{topic}"));
    Ok(PopRequest {
        group,
        topic,
        // As the proxy does, a receive pops the whole broker (queue -1) whatever queue the
        // client picked from the route: SDKs' simple consumers rotate over route queues and
        // would otherwise wait on empty ones. A FIFO receive keeps its queue.
        queue_id: if fifo { queue.map_or(-1, |q| q.id) } else { -1 },
        max_messages: request.batch_size.clamp(1, 32),
        invisible_ms,
        poll_ms,
        expression,
        order: fifo.then_some(attempt),
        // The proxy pops with ConsumeInitMode.MAX: a new group starts at the end (a queue
        // whose first message is still there is read from its start).
        init_mode: 1,
    })
}

/// The pop request itself.
#[must_use]
pub fn pop_command(pop: &PopRequest, now_ms: i64) -> RemotingCommand {
    pop_message(0, pop, now_ms)
}

/// The frames ReceiveMessage answers a pop's `reply` with: a status, one frame per message,
/// then the delivery time; or a status alone when nothing was found.
#[must_use]
pub fn receive_frames(
    reply: &RemotingCommand,
    broker_name: &str,
    now_ms: i64,
) -> Vec<proto::ReceiveMessageResponse> {
    use proto::receive_message_response::Content;
    let frame = |content| proto::ReceiveMessageResponse { content: Some(content) };
    let stamp = prost_types::Timestamp {
        seconds: now_ms.div_euclid(1000),
        nanos: i32::try_from(now_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    };
    let code = reply.response_code();
    if code != ResponseCode::SUCCESS {
        let refused = match code {
            ResponseCode::PULL_NOT_FOUND | ResponseCode::POLLING_TIMEOUT => {
                status(Code::MessageNotFound, "no new message")
            }
            ResponseCode::POLLING_FULL => status(Code::TooManyRequests, "too many receives held"),
            other => from_remoting(other, reply.remark.as_deref()),
        };
        return vec![frame(Content::Status(refused)), frame(Content::DeliveryTimestamp(stamp))];
    }
    let Ok(popped) = popped_messages(reply, broker_name) else {
        return vec![frame(Content::Status(status(
            Code::InternalError,
            "the broker's messages do not decode",
        )))];
    };
    if popped.is_empty() {
        return vec![
            frame(Content::Status(status(Code::MessageNotFound, "no new message"))),
            frame(Content::DeliveryTimestamp(stamp)),
        ];
    }
    let mut frames = vec![frame(Content::Status(ok()))];
    for message in popped {
        let stored = message.record.record.to_stored();
        let mut converted = from_stored(&stored);
        // A retried message shows its own topic, as the proxy restores it.
        if stored.topic.starts_with(RETRY_PREFIX) {
            if let Some(original) =
                crate::protocol::message::properties::find(&stored.properties, keys::RETRY_TOPIC)
            {
                converted.topic = Some(proto::Resource {
                    resource_namespace: String::new(),
                    name: String::from_utf8_lossy(original).into_owned(),
                });
            }
        }
        if let Some(system) = converted.system_properties.as_mut() {
            system.receipt_handle = Some(message.handle.render());
            system.delivery_attempt =
                Some(i32::try_from(message.attempts_before).unwrap_or(i32::MAX).saturating_add(1));
        }
        frames.push(frame(Content::Message(converted)));
    }
    frames.push(frame(Content::DeliveryTimestamp(stamp)));
    frames
}

/// The topic a handle's message was popped from, for the broker: the request's topic (the
/// broker finds a retried message's retry topic by the handle's mark).
fn handle_of(receipt: &str) -> Result<ReceiptHandle, proto::Status> {
    ReceiptHandle::parse(receipt)
        .map_err(|_| status(Code::InvalidReceiptHandle, "the receipt handle does not decode"))
}

/// The ACK_MESSAGE of one AckMessage entry.
pub fn ack_command(
    group: &str,
    topic: &str,
    entry: &proto::AckMessageEntry,
) -> Result<RemotingCommand, proto::Status> {
    let handle = handle_of(&entry.receipt_handle)?;
    Ok(ack_message(0, group, topic, &handle))
}

/// An ack entry's result from the broker's `reply` (or the refusal before it).
#[must_use]
pub fn ack_result(
    entry: &proto::AckMessageEntry,
    outcome: Result<&RemotingCommand, proto::Status>,
) -> proto::AckMessageResultEntry {
    let status = match outcome {
        Ok(reply) => from_remoting(reply.response_code(), reply.remark.as_deref()),
        Err(refused) => refused,
    };
    proto::AckMessageResultEntry {
        message_id: entry.message_id.clone(),
        receipt_handle: entry.receipt_handle.clone(),
        status: Some(status),
    }
}

/// The AckMessage status: OK, the one status shared by every entry, or MULTIPLE_RESULTS.
#[must_use]
pub fn ack_status(entries: &[proto::AckMessageResultEntry]) -> proto::Status {
    let codes: std::collections::BTreeSet<i32> =
        entries.iter().filter_map(|e| e.status.as_ref().map(|s| s.code)).collect();
    match codes.len() {
        0 => ok(),
        1 => entries.first().and_then(|e| e.status.clone()).unwrap_or_else(ok),
        _ => status(Code::MultipleResults, "the entries had different results"),
    }
}

/// The CHANGE_MESSAGE_INVISIBLETIME of a ChangeInvisibleDuration, with the handle it moves.
pub fn change_invisible_command(
    request: &proto::ChangeInvisibleDurationRequest,
) -> Result<(RemotingCommand, ReceiptHandle), proto::Status> {
    let handle = handle_of(&request.receipt_handle)?;
    let invisible = duration_ms(request.invisible_duration.as_ref()).unwrap_or(0);
    if !(0..=INVISIBLE_MS.1).contains(&invisible) {
        return Err(status(
            Code::IllegalInvisibleTime,
            format!("the invisible time {invisible} ms is out of range"),
        ));
    }
    let (group, topic) = (name(request.group.as_ref()), name(request.topic.as_ref()));
    Ok((change_invisible_time(0, &group, &topic, &handle, invisible), handle))
}

/// The new receipt handle a changed invisible time gives (`reply` carries its parts).
pub fn changed_handle(old: &ReceiptHandle, reply: &RemotingCommand) -> Result<String, proto::Status> {
    if reply.response_code() != ResponseCode::SUCCESS {
        return Err(from_remoting(reply.response_code(), reply.remark.as_deref()));
    }
    let header = ChangeInvisibleTimeResponseHeader::decode(&reply.ext_fields)
        .map_err(|e| status(Code::InternalError, format!("the broker's answer does not decode: {e}")))?;
    let offset = old.queue_offset.unwrap_or(old.ck_start_offset);
    let new = ReceiptHandle {
        ck_start_offset: if old.is_order() { old.ck_start_offset } else { offset },
        pop_time: header.pop_time,
        invisible_time: header.invisible_time,
        revive_qid: header.revive_qid,
        ..old.clone()
    };
    Ok(new.render())
}

/// ForwardMessageToDeadLetterQueue: the message to the group's DLQ, then its ack.
pub fn forward_to_dlq_commands(
    request: &proto::ForwardMessageToDeadLetterQueueRequest,
) -> Result<(RemotingCommand, RemotingCommand), proto::Status> {
    let handle = handle_of(&request.receipt_handle)?;
    let phys = handle
        .commit_log_offset
        .ok_or_else(|| status(Code::InvalidReceiptHandle, "the receipt handle names no stored message"))?;
    let (group, topic) = (name(request.group.as_ref()), name(request.topic.as_ref()));
    Ok((send_message_back(0, &group, phys, -1, 0), ack_message(0, &group, &topic, &handle)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: i32, permission: proto::Permission, broker: &str) -> proto::MessageQueue {
        proto::MessageQueue {
            topic: Some(proto::Resource { resource_namespace: String::new(), name: "T".into() }),
            id,
            permission: permission as i32,
            broker: Some(proto::Broker { name: broker.into(), id: 0, endpoints: None }),
            accept_message_types: Vec::new(),
        }
    }

    #[test]
    fn assignments_are_one_per_broker_or_every_readable_queue_for_fifo() {
        let queues = [
            queue(0, proto::Permission::ReadWrite, "a"),
            queue(1, proto::Permission::ReadWrite, "a"),
            queue(2, proto::Permission::Write, "a"),
            queue(0, proto::Permission::ReadWrite, "b"),
        ];
        let any = assignments(&queues, false);
        let ids: Vec<(i32, String)> = any
            .iter()
            .map(|a| {
                a.message_queue.as_ref().map(|q| (q.id, q.broker.as_ref().unwrap().name.clone())).unwrap()
            })
            .collect();
        assert_eq!(ids, vec![(-1, "a".to_owned()), (-1, "b".to_owned())]);
        assert_eq!(assignments(&queues, true).len(), 3, "write-only queues are not read");
    }

    #[test]
    fn a_receive_is_a_pop_within_the_proxys_bounds() {
        let request = proto::ReceiveMessageRequest {
            group: Some(proto::Resource { resource_namespace: String::new(), name: "cg".into() }),
            message_queue: Some(queue(-1, proto::Permission::ReadWrite, "a")),
            filter_expression: Some(proto::FilterExpression {
                r#type: proto::FilterType::Tag as i32,
                expression: "A||B".into(),
            }),
            batch_size: 64,
            invisible_duration: Some(prost_types::Duration { seconds: 30, nanos: 0 }),
            auto_renew: false,
            long_polling_timeout: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
            attempt_id: Some("x".into()),
        };
        let pop = pop_of(&request, false).unwrap();
        assert_eq!((pop.max_messages, pop.invisible_ms, pop.poll_ms, pop.queue_id), (32, 30_000, 20_000, -1));
        assert_eq!((pop.expression.as_str(), pop.order.as_deref()), ("A||B", None));
        assert_eq!(pop_of(&request, true).unwrap().order.as_deref(), Some("x"));
        let picked = proto::ReceiveMessageRequest {
            message_queue: Some(queue(3, proto::Permission::ReadWrite, "a")),
            ..request.clone()
        };
        assert_eq!(
            (pop_of(&picked, false).unwrap().queue_id, pop_of(&picked, true).unwrap().queue_id),
            (-1, 3)
        );
        let short = proto::ReceiveMessageRequest {
            invisible_duration: Some(prost_types::Duration { seconds: 2, nanos: 0 }),
            ..request.clone()
        };
        assert_eq!(pop_of(&short, false).unwrap_err().code, Code::IllegalInvisibleTime as i32);
        let renewed = proto::ReceiveMessageRequest { auto_renew: true, ..short };
        assert_eq!(pop_of(&renewed, false).unwrap().invisible_ms, AUTO_RENEW_MS);
        let sql = proto::ReceiveMessageRequest {
            filter_expression: Some(proto::FilterExpression {
                r#type: proto::FilterType::Sql as i32,
                expression: "a > 1".into(),
            }),
            ..request
        };
        assert_eq!(pop_of(&sql, false).unwrap_err().code, Code::IllegalFilterExpression as i32);
    }

    #[test]
    fn nothing_found_is_message_not_found_then_the_delivery_time() {
        let request = pop_command(&PopRequest::default(), 0);
        let reply = RemotingCommand::response_to(&request, ResponseCode::POLLING_TIMEOUT, None);
        let frames = receive_frames(&reply, "a", 1_500);
        assert_eq!(frames.len(), 2);
        let Some(proto::receive_message_response::Content::Status(s)) = &frames[0].content else { panic!() };
        assert_eq!(s.code, Code::MessageNotFound as i32);
        assert!(matches!(
            frames[1].content,
            Some(proto::receive_message_response::Content::DeliveryTimestamp(_))
        ));
    }
}
