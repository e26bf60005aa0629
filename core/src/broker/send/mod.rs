//! SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE.
//!
//! A send is validated (topic, auto-creation through TBW102, permissions, queue), stamped
//! with the broker's properties (CLUSTER, a UNIQ_KEY if the producer sent none), appended,
//! and answered only once its data is as safe as the flush mode promises: written (in the
//! page cache) under ASYNC_FLUSH, fsynced under SYNC_FLUSH (group commit: one fsync answers
//! every send it covers). Every reply, errors included, carries `MSG_REGION` and `TRACE_ON`:
//! the Java client reads them without a null check.

use crate::broker::refusal::Refusal;
use std::collections::BTreeMap;

use bytes::Bytes;

use super::consumers::Consumers;
use super::delay::SCHEDULE_TOPIC;
use super::shared::Shared;
use super::timer::recall::RecallHandle;
use super::timer::{deliver_at, TIMER_TOPIC};
use super::topics::{DLQ_PREFIX, RETRY_PREFIX};
use super::transaction::HALF_TOPIC;
use super::BrokerConfig;
use crate::io::{ConnId, Now, UnixMillis};
use crate::protocol::body::perm;
use crate::protocol::headers::{CommandHeader, SendMessageRequestHeader, SendMessageResponseHeader};
use crate::protocol::message::batch::decode_batch;
use crate::protocol::message::message_id::offset_message_id;
use crate::protocol::message::properties::{self, keys, PROPERTY_SEPARATOR};
use crate::protocol::message::stored::sys_flag;
use crate::protocol::{wire_long, RemotingCommand, ResponseCode};
use crate::store::{AppendRequest, Appended, FlushMode, PhysOffset};

/// Most messages in one batch send.
pub(super) mod durable;
pub(super) mod send_back;

const MAX_BATCH: usize = 1024;

/// Where a send is stored, and its properties after routing.
struct SendRoute {
    topic: String,
    queue_id: i32,
    properties: Vec<u8>,
    /// Sys-flag bits the stored record must not carry.
    clear_sys_flags: i32,
}

impl SendRoute {
    /// Make the send wait in `topic`/`queue_id` (half, schedule or timer queue) with
    /// `properties`, to which its real topic and queue are added (`REAL_TOPIC`, `REAL_QID`).
    fn wait_in(&mut self, topic: &str, queue_id: i32, mut properties: Vec<u8>) {
        properties::push(&mut properties, keys::REAL_TOPIC, &self.topic);
        properties::push(&mut properties, keys::REAL_QID, &self.queue_id.to_string());
        self.topic = topic.to_owned();
        self.queue_id = queue_id;
        self.properties = properties;
    }
}

/// One message of a send, ready to append.
struct Outgoing {
    flag: i32,
    body: Bytes,
    properties: Vec<u8>,
    unique_id: String,
}

/// The send path: routing, stamping and appending sends; its own state is the round-robin
/// cursor of sends that leave the queue to the broker.
#[derive(Debug, Default)]
pub(super) struct SendPath {
    /// Per topic: the last queue a send without one was given.
    queue_cursor: BTreeMap<String, u32>,
}

impl SendPath {
    /// A send reply with the fields every client reads, even on errors.
    fn send_error(shared: &Shared, request: &RemotingCommand, refusal: &Refusal) -> RemotingCommand {
        let mut reply = refusal.reply_to(request);
        reply.ext_fields.insert("MSG_REGION", shared.config.region.clone());
        reply.ext_fields.insert("TRACE_ON", shared.config.trace_on.to_string());
        reply
    }

    /// Handle a send; `None` when the reply waits for durability.
    pub(super) fn on_send(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Option<RemotingCommand> {
        match self.try_send(shared, consumers, now, conn, request) {
            Ok(()) => None,
            Err(refusal) => Some(Self::send_error(shared, request, &refusal)),
        }
    }

    fn try_send(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<(), Refusal> {
        let header = SendMessageRequestHeader::decode_any(&request.ext_fields)
            .map_err(|e| Refusal::SystemError(e.to_string()))?;
        if shared.replies.len() >= shared.config.max_pending_replies {
            return Err(Refusal::Busy(
                "[PC_SYNCHRONIZED]broker busy: too many sends waiting for flush".into(),
            ));
        }
        if let Some(remark) = shed_reason(shared, now) {
            shared.stats.sends_shed += 1;
            return Err(Refusal::Busy(remark));
        }
        let config = topic_for_send(shared, now, &header)?;
        if !perm::writable(config.perm) {
            return Err(Refusal::NoPermission(format!(
                "the topic[{}] sending message is forbidden",
                header.topic
            )));
        }
        let queue_nums = config.write_queue_nums.max(config.read_queue_nums);
        let queue_id = if header.queue_id < 0 {
            let cursor = self.queue_cursor.entry(header.topic.clone()).or_insert(0);
            *cursor = cursor.wrapping_add(1);
            // A remainder below a positive i32 fits one.
            let Ok(queue) = i32::try_from(*cursor % config.write_queue_nums.max(1).unsigned_abs()) else {
                panic!("a queue index below {} does not fit an i32", config.write_queue_nums);
            };
            queue
        } else {
            header.queue_id
        };
        if queue_id >= queue_nums {
            return Err(Refusal::InvalidParameter(format!(
                "request queueId[{queue_id}] is illegal, topic {} has {queue_nums} queues",
                header.topic
            )));
        }
        let given = header.properties.as_deref().unwrap_or("").as_bytes();
        let batch = header.batch == Some(true)
            || request.request_code() == crate::protocol::RequestCode::SEND_BATCH_MESSAGE;
        let route = route_send(shared, consumers, now, &header, queue_id, given, batch)?;
        let given: &[u8] = &route.properties;
        let messages = if batch {
            let entries =
                decode_batch(&request.body, MAX_BATCH).map_err(|e| Refusal::MessageIllegal(e.to_string()))?;
            if entries.is_empty() {
                return Err(Refusal::MessageIllegal("empty batch".into()));
            }
            entries.into_iter().map(|e| stamp(shared, now, e.flag, e.body, &e.properties)).collect::<Vec<_>>()
        } else {
            vec![stamp(shared, now, header.flag, request.body.clone(), given)]
        };
        let born_host = shared.peer_of(conn);
        let requests: Vec<AppendRequest<'_>> = messages
            .iter()
            .map(|m| AppendRequest {
                topic: &route.topic,
                queue_id: route.queue_id,
                flag: m.flag,
                sys_flag: header.sys_flag
                    & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6 | route.clear_sys_flags),
                born_timestamp: header.born_timestamp,
                born_host,
                reconsume_times: header.reconsume_times.unwrap_or(0),
                prepared_transaction_offset: 0,
                body: &m.body,
                properties: &m.properties,
            })
            .collect();
        let appended = match requests.as_slice() {
            [single] => shared.store.append(now, single).map(|a| vec![a]),
            many => shared.store.append_batch(now, many),
        }?;
        shared.stats.messages_put += appended.len() as u64;
        for message in &messages {
            let kind = crate::broker::traffic::MessageType::of(&message.properties);
            shared.traffic.put(&header.topic, kind, message.body.len());
        }
        let recall = recall_handle(&shared.config, &header.topic, &route, &messages);
        let reply = send_reply(&shared.config, request, queue_id, &appended, &messages, recall);
        // `WAIT=false`: the producer does not wait for the fsync or a slave (RocketMQ's
        // waitStoreMsgOK).
        let wait_store = properties::find(given, keys::WAIT) != Some(b"false");
        let needs_flush = matches!(shared.store.config().flush_mode, FlushMode::Sync) && wait_store;
        let needs_flush =
            needs_flush && !shared.store.config().mutated(crate::mutation::Mutation::AckBeforeFsync);
        let end = appended.last().map_or(PhysOffset(0), Appended::end);
        let wait = durable::Wait { flush: needs_flush, slave: wait_store };
        shared.reply_when_durable(now, conn, request, reply, end, wait);
        Ok(())
    }
}

/// Why a send is shed now, RocketMQ's remark first: it waited in line longer than
/// `send_queue_wait_ms`, or the disk is more than `max_unwritten_bytes` behind.
fn shed_reason(shared: &Shared, now: Now) -> Option<String> {
    let waited_ms = now.mono.0.saturating_sub(shared.request_received.0) / 1_000_000;
    if waited_ms > shared.config.send_queue_wait_ms {
        return Some(format!(
            "[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while, period in queue: {waited_ms}ms, size of queue: {}",
            shared.replies.len()
        ));
    }
    let behind = shared.store.write_pos().0.saturating_sub(shared.store.written_end().0);
    (behind > shared.config.max_unwritten_bytes).then(|| {
        format!(
            "[PCBUSY_CLEAN_QUEUE]broker busy, start flow control for a while, the disk is {} KiB behind",
            behind / 1024
        )
    })
}

/// The topic a send goes to, auto-created if allowed; retry topics are created with one
/// queue on first use, as RocketMQ does.
fn topic_for_send(
    shared: &mut Shared,
    now: Now,
    header: &SendMessageRequestHeader,
) -> Result<crate::protocol::body::TopicConfig, Refusal> {
    if header.topic.starts_with(RETRY_PREFIX) {
        shared.ensure_group_topic(now, &header.topic);
    }
    let (config, created) = shared
        .topics
        .get_or_auto_create(&header.topic, &header.default_topic, header.default_topic_queue_nums, now.wall)
        .map_err(|e| match e {
            super::topics::TopicError::Invalid(_) => Refusal::InvalidParameter(e.to_string()),
            super::topics::TopicError::NotExist(_) => Refusal::TopicNotExist(e.to_string()),
        })?;
    if created {
        tracing::info!(topic = %header.topic, queues = config.write_queue_nums, "topic auto-created");
        shared.topics_changed();
    }
    Ok(config)
}

/// A half message (`TRAN_MSG=true` or the PREPARED sys flag) waits in the half topic
/// queue 0, carrying its real topic and queue, with its sys flag's transaction type
/// cleared, until END_TRANSACTION. It cannot be a batch, nor delayed or timed (the Java
/// client clears a delay level itself; a commit is delivered at once).
fn route_half(
    shared: &Shared,
    mut route: SendRoute,
    given: &[u8],
    batch: bool,
) -> Result<SendRoute, Refusal> {
    if shared.config.transaction.reject {
        return Err(Refusal::NoPermission(
            "transaction messages are disabled on this broker (rejectTransactionMessage)".into(),
        ));
    }
    if batch {
        return Err(Refusal::MessageIllegal("a batch message cannot be transactional".into()));
    }
    let delayed = properties::find(given, keys::DELAY).is_some_and(|d| d != b"0")
        || [keys::TIMER_DELAY_SEC, keys::TIMER_DELAY_MS, keys::TIMER_DELIVER_MS]
            .iter()
            .any(|key| properties::find(given, key).is_some());
    if delayed {
        return Err(Refusal::MessageIllegal("a transaction message cannot be delayed or timed".into()));
    }
    let props = properties::without(
        given,
        &[keys::REAL_TOPIC, keys::REAL_QID, keys::TRAN_PREPARED_QUEUE_OFFSET, keys::TRANSACTION_CHECK_TIMES],
    );
    route.wait_in(HALF_TOPIC, 0, props);
    route.clear_sys_flags = sys_flag::TRANSACTION_MASK;
    Ok(route)
}

/// Where a send is stored. A send to a retry topic past its group's retry limit, or
/// from a group consuming orderly (it holds queue locks), goes to the group's
/// dead-letter queue (`handleRetryAndDLQ`). A send with a delay level waits in the
/// schedule topic, carrying its real topic and queue.
fn route_send(
    shared: &mut Shared,
    consumers: &mut Consumers,
    now: Now,
    header: &SendMessageRequestHeader,
    queue_id: i32,
    given: &[u8],
    batch: bool,
) -> Result<SendRoute, Refusal> {
    let mut route =
        SendRoute { topic: header.topic.clone(), queue_id, properties: given.to_vec(), clear_sys_flags: 0 };
    let transactional = header.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_PREPARED
        || properties::find(given, keys::TRAN_MSG) == Some(b"true");
    if transactional && !header.topic.starts_with(RETRY_PREFIX) {
        return route_half(shared, route, given, batch);
    }
    if let Some(group) = header.topic.strip_prefix(RETRY_PREFIX) {
        let config = consumers.group_config(shared, now, group)?;
        let max = header.max_reconsume_times.filter(|m| *m >= 0).unwrap_or(config.retry_max_times);
        let reconsume_times = header.reconsume_times.unwrap_or(0);
        if reconsume_times > max || consumers.locks.group_holds_locks(group, now.mono) {
            let dlq = format!("{DLQ_PREFIX}{group}");
            shared.ensure_group_topic(now, &dlq);
            tracing::info!(group, reconsume_times, max, "retry send goes to the dead-letter queue");
            route.topic = dlq;
            route.queue_id = 0;
            route.properties = properties::without(given, &[keys::DELAY]);
            return Ok(route);
        }
    }
    let requested = properties::find(given, keys::DELAY)
        .and_then(|level| core::str::from_utf8(level).ok())
        .and_then(|level| level.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let Some(level) = shared.config.delay_levels.effective(requested) else {
        return route_timed(shared, now, route, given, batch);
    };
    if batch {
        return Err(Refusal::MessageIllegal("a batch message cannot be delayed".into()));
    }
    let mut props = properties::without(given, &[keys::DELAY, keys::REAL_TOPIC, keys::REAL_QID]);
    properties::push(&mut props, keys::DELAY, &level.to_string());
    route.wait_in(SCHEDULE_TOPIC, level - 1, props);
    Ok(route)
}

/// A send with `TIMER_*` properties due later than now waits in the timer topic with its
/// due time (`TIMER_OUT_MS`) and its real topic and queue; one due already is stored at
/// once; one past `timerMaxDelaySec` or garbled is refused.
fn route_timed(
    shared: &Shared,
    now: Now,
    mut route: SendRoute,
    given: &[u8],
    batch: bool,
) -> Result<SendRoute, Refusal> {
    let due = deliver_at(given, now.wall, shared.config.timer_max_delay_ms)
        .map_err(|error| Refusal::MessageIllegal(error.to_string()))?;
    let Some(due) = due.filter(|due| *due > now.wall) else { return Ok(route) };
    if batch {
        return Err(Refusal::MessageIllegal("a batch message cannot be timed".into()));
    }
    let mut props = properties::without(given, &[keys::TIMER_OUT_MS, keys::REAL_TOPIC, keys::REAL_QID]);
    properties::push(&mut props, keys::TIMER_OUT_MS, &due.0.to_string());
    route.wait_in(TIMER_TOPIC, 0, props);
    Ok(route)
}

/// A message's stored properties: the producer's, a generated UNIQ_KEY if missing, and
/// the broker's CLUSTER (reply messages find their cluster's reply topic through it).
fn stamp(shared: &mut Shared, now: Now, flag: i32, body: Bytes, given: &[u8]) -> Outgoing {
    let mut props = given.to_vec();
    if !props.is_empty() && props.last() != Some(&PROPERTY_SEPARATOR) {
        props.push(PROPERTY_SEPARATOR);
    }
    let unique_id = match properties::find(given, keys::UNIQ_KEY) {
        Some(id) => String::from_utf8_lossy(id).into_owned(),
        None => {
            let id = shared.unique_ids.next_id(now.wall);
            properties::push(&mut props, keys::UNIQ_KEY, &id);
            id
        }
    };
    if properties::find(given, keys::CLUSTER).is_none() {
        properties::push(&mut props, keys::CLUSTER, &shared.config.cluster_name);
    }
    Outgoing { flag, body, properties: props, unique_id }
}

/// The recall handle of a send that waits in the timer topic (not a retry), as RocketMQ
/// 5.3.2 answers it.
fn recall_handle(
    config: &BrokerConfig,
    topic: &str,
    route: &SendRoute,
    messages: &[Outgoing],
) -> Option<String> {
    if route.topic != TIMER_TOPIC || topic.starts_with(RETRY_PREFIX) {
        return None;
    }
    let due = properties::find(&route.properties, keys::TIMER_OUT_MS)
        .and_then(|due| core::str::from_utf8(due).ok())
        .and_then(|due| due.parse::<i64>().ok())?;
    let id = &messages.first()?.unique_id;
    Some(RecallHandle::for_timed(topic, &config.broker_name, UnixMillis(due), id).encode())
}

fn send_reply(
    config: &BrokerConfig,
    request: &RemotingCommand,
    queue_id: i32,
    appended: &[Appended],
    messages: &[Outgoing],
    recall_handle: Option<String>,
) -> RemotingCommand {
    let host = config.advertised_addr;
    let msg_id = appended
        .iter()
        .map(|a| offset_message_id(host, wire_long(a.phys_offset.0)))
        .collect::<Vec<_>>()
        .join(",");
    let queue_offset = appended.first().and_then(|a| a.queue_offset).map_or(0, |q| wire_long(q.0));
    let header = SendMessageResponseHeader {
        msg_id,
        queue_id,
        queue_offset,
        transaction_id: (messages.len() == 1)
            .then(|| messages.first().map(|m| m.unique_id.clone()))
            .flatten(),
        msg_region: config.region.clone(),
        trace_on: config.trace_on.to_string(),
        batch_uniq_id: None,
        recall_handle,
    };
    let mut reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
    reply.ext_fields = header.to_ext_fields();
    reply
}
