//! POP_MESSAGE and NOTIFICATION (`PopMessageProcessor`, `NotificationProcessor`).
//!
//! A pop with queue -1 looks at the topic's readable queues in turn, starting one further
//! each pop, and at the group's pop retry topic: first on every fifth pop, last otherwise,
//! so retries are neither starved nor favoured. Each queue read gives one checkpoint. A
//! group without an offset starts at the queue's minimum (`initMode` 0) or, as RocketMQ
//! does for `initMode` 1, at its last message, except that a queue whose first message is
//! still there is read from the start. Nothing found: PULL_NOT_FOUND, or with a poll time
//! the pop is held until something may be found (POLLING_TIMEOUT when its time is up;
//! POLLING_FULL when too many are held).

use std::collections::BTreeSet;

use super::order::{OrderBatch, OrderGate};
use super::receipt::{self, pop_retry_topic, ORDER_REVIVE_QID};
use super::records::{self, CheckPoint, CK_TAG};
use super::{PendingCommit, PopService, MAX_POP_MESSAGES, REVIVE_QUEUES};
use crate::broker::consumers::Consumers;
use crate::broker::refusal::Refusal;
use crate::broker::shared::Shared;
use crate::io::{ConnId, MonoNanos, Now};
use crate::protocol::body::{perm, SubscriptionData};
use crate::protocol::headers::{
    CommandHeader, NotificationRequestHeader, NotificationResponseHeader, PopMessageRequestHeader,
    PopMessageResponseHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::{wire_long, RemotingCommand, ResponseCode};
use crate::store::{AppendRequest, QueueOffset};

/// A pop or notification waiting for messages.
#[derive(Debug)]
pub(super) struct PopHold {
    pub(super) conn: ConnId,
    pub(super) deadline: MonoNanos,
    received: MonoNanos,
    request: RemotingCommand,
    /// The pop's header; a notification's as a pop header of the same group and queues.
    header: PopMessageRequestHeader,
    notification: bool,
}

/// What one pop gathered.
#[derive(Debug, Default)]
struct Popped {
    body: Vec<u8>,
    found: usize,
    start_info: String,
    msg_info: String,
    order_info: String,
    rest: i64,
    /// The revive queue of this pop's checkpoints.
    revive_qid: i32,
}

/// One queue to read: the topic read (the topic or its retry topic) and the queue.
type Target = (String, i32);

impl PopService {
    /// POP_MESSAGE; `None` while it is held.
    pub(in crate::broker) fn on_pop(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let header = match PopMessageRequestHeader::decode(&request.ext_fields) {
            Ok(header) => header,
            Err(e) => return Some(Refusal::from(e).reply_to(&request)),
        };
        if let Err(refusal) = Self::check_pop(shared, consumers, now, &header) {
            return Some(refusal.reply_to(&request));
        }
        let popped = match self.pop_once(shared, consumers, now, &header) {
            Ok(popped) => popped,
            Err(refusal) => return Some(refusal.reply_to(&request)),
        };
        if popped.found > 0 || header.poll_time <= 0 {
            return Some(Self::pop_reply(&request, &header, now, popped, ResponseCode::PULL_NOT_FOUND));
        }
        if self.holds.len() >= shared.config.max_pull_holds {
            let reply = RemotingCommand::response_to(
                &request,
                ResponseCode::POLLING_FULL,
                Some("polling full".into()),
            );
            return Some(reply);
        }
        self.hold(shared, now, conn, request, header, false);
        None
    }

    /// Hold a pop (or a notification, as a pop header) for up to its poll time.
    fn hold(
        &mut self,
        shared: &Shared,
        now: Now,
        conn: ConnId,
        request: RemotingCommand,
        header: PopMessageRequestHeader,
        notification: bool,
    ) {
        let hold_ms = u64::try_from(header.poll_time).unwrap_or(0).min(shared.config.max_pull_hold_ms);
        let deadline = now.mono.plus_millis(hold_ms);
        let received = shared.request_received;
        self.holds.push(PopHold { conn, deadline, received, request, header, notification });
    }

    /// NOTIFICATION: whether a pop of the group would find something, held up to its poll
    /// time while not.
    pub(in crate::broker) fn on_notification(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        conn: ConnId,
        request: RemotingCommand,
    ) -> Option<RemotingCommand> {
        let header = match NotificationRequestHeader::decode(&request.ext_fields) {
            Ok(header) => header,
            Err(e) => return Some(Refusal::from(e).reply_to(&request)),
        };
        let as_pop = PopMessageRequestHeader {
            consumer_group: header.consumer_group,
            topic: header.topic,
            queue_id: header.queue_id,
            max_msg_nums: 1,
            invisible_time: 0,
            poll_time: header.poll_time,
            born_time: header.born_time,
            init_mode: 0,
            exp_type: None,
            exp: None,
            order: header.order,
            attempt_id: header.attempt_id,
        };
        if let Err(refusal) = Self::check_pop(shared, consumers, now, &as_pop) {
            return Some(refusal.reply_to(&request));
        }
        let has_msg = self.may_find(shared, consumers, now, &as_pop);
        if has_msg || as_pop.poll_time <= 0 || self.holds.len() >= shared.config.max_pull_holds {
            return Some(Self::notification_reply(&request, has_msg));
        }
        self.hold(shared, now, conn, request, as_pop, true);
        None
    }

    fn notification_reply(request: &RemotingCommand, has_msg: bool) -> RemotingCommand {
        let mut reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        reply.ext_fields = NotificationResponseHeader { has_msg }.to_ext_fields();
        reply
    }

    fn check_pop(
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        header: &PopMessageRequestHeader,
    ) -> Result<(), Refusal> {
        let config = shared.topics.get(&header.topic).ok_or_else(|| {
            Refusal::TopicNotExist(format!("topic[{}] not exist, apply first please!", header.topic))
        })?;
        if !perm::readable(config.perm) {
            return Err(Refusal::NoPermission(format!(
                "the topic[{}] peeking message is forbidden",
                header.topic
            )));
        }
        if header.queue_id >= config.read_queue_nums || header.queue_id < -1 {
            return Err(Refusal::InvalidParameter(format!(
                "queueId[{}] is illegal, topic {} has {} read queues",
                header.queue_id, header.topic, config.read_queue_nums
            )));
        }
        let expression_type = header.exp_type.as_deref().unwrap_or("TAG");
        if !expression_type.eq_ignore_ascii_case("TAG") {
            return Err(Refusal::SubscriptionParseFailed(format!(
                "{expression_type} filtering is not supported by this broker"
            )));
        }
        consumers.check_group(shared, now, &header.consumer_group)
    }

    /// The queues a pop reads, in order.
    fn targets(&self, shared: &Shared, header: &PopMessageRequestHeader) -> Vec<Target> {
        let queues = shared.topics.get(&header.topic).map_or(0, |c| c.read_queue_nums.max(0));
        let mut targets: Vec<Target> = if header.queue_id >= 0 {
            vec![(header.topic.clone(), header.queue_id)]
        } else {
            let start = i32::try_from(self.pops % u64::try_from(queues.max(1)).unwrap_or(1)).unwrap_or(0);
            (0..queues).map(|i| (header.topic.clone(), (start + i) % queues)).collect()
        };
        if header.order != Some(true) {
            let retry = pop_retry_topic(&header.consumer_group, &header.topic);
            if shared.store.queue_offsets(&retry, 0).is_some() {
                if self.pops.is_multiple_of(5) {
                    targets.insert(0, (retry, 0));
                } else {
                    targets.push((retry, 0));
                }
            }
        }
        targets
    }

    /// Where the group reads `target` next, and the offsets a FIFO pop passes over;
    /// `None` when a FIFO queue is blocked. A group without an offset gets one here.
    fn read_from(
        &self,
        shared: &Shared,
        consumers: &mut Consumers,
        header: &PopMessageRequestHeader,
        (topic, queue_id): (&str, i32),
        mono_ms: i64,
    ) -> Option<(u64, BTreeSet<u64>)> {
        let (min, max) = shared.store.queue_offsets(topic, queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
        let group = header.consumer_group.as_str();
        let committed = match consumers.offsets.get(group, topic, queue_id) {
            Some(offset) => u64::try_from(offset).unwrap_or(0),
            None => {
                let init = if header.init_mode == 0 || min == 0 { min } else { max.saturating_sub(1) };
                consumers.commit_offset(group, topic, queue_id, wire_long(init));
                init
            }
        };
        let key = (group.to_owned(), topic.to_owned(), queue_id);
        let (from, skip) = if header.order == Some(true) {
            let early = shared.store.config().mutated(crate::mutation::Mutation::PopFifoUnblockedEarly);
            match self.order.gate(&key, header.attempt_id.as_deref(), mono_ms) {
                OrderGate::Blocked if early => (committed, BTreeSet::new()),
                OrderGate::Blocked | OrderGate::Repeat(_) => return None,
                OrderGate::Read(skip) => (committed, skip),
            }
        } else {
            (committed.max(self.next_pop.get(&key).copied().unwrap_or(0)), BTreeSet::new())
        };
        Some((from.max(min), skip))
    }

    /// Whether a pop may find something now (a cheap look at queue ends, no reads).
    fn may_find(
        &self,
        shared: &Shared,
        consumers: &mut Consumers,
        now: Now,
        header: &PopMessageRequestHeader,
    ) -> bool {
        self.targets(shared, header).into_iter().any(|(topic, queue_id)| {
            let key = (header.consumer_group.clone(), topic.clone(), queue_id);
            if header.order == Some(true)
                && matches!(
                    self.order.gate(&key, header.attempt_id.as_deref(), super::mono_ms(now)),
                    OrderGate::Repeat(_)
                )
            {
                return true;
            }
            let readable = shared.store.readable_next(&topic, queue_id).map_or(0, |n| n.0);
            self.read_from(shared, consumers, header, (&topic, queue_id), super::mono_ms(now))
                .is_some_and(|(from, _)| readable > from)
        })
    }

    /// Pop up to the asked number of messages from the targets.
    fn pop_once(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        header: &PopMessageRequestHeader,
    ) -> Result<Popped, Refusal> {
        let order = header.order == Some(true);
        let revive_qid = if order {
            ORDER_REVIVE_QID
        } else {
            i32::try_from(self.pops % u64::try_from(REVIVE_QUEUES).unwrap_or(1)).unwrap_or(0)
        };
        let want = usize::try_from(header.max_msg_nums).unwrap_or(1).clamp(1, MAX_POP_MESSAGES);
        let filter =
            SubscriptionData::from_expression(&header.topic, header.exp.as_deref().unwrap_or("*"), 0);
        let mut popped = Popped { revive_qid, ..Popped::default() };
        if !order && !self.ensure_replayed(shared, consumers, now) {
            // After a start, checkpoints not read back yet may name batches popped before.
            return Ok(popped);
        }
        let targets = self.targets(shared, header);
        self.pops += 1;
        for (topic, queue_id) in targets {
            let (_, max) = shared.store.queue_offsets(&topic, queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
            let key = (header.consumer_group.clone(), topic.clone(), queue_id);
            if popped.found >= want {
                let from = self.read_from(shared, consumers, header, (&topic, queue_id), super::mono_ms(now));
                popped.rest += wire_long(max.saturating_sub(from.map_or(max, |(f, _)| f)));
                continue;
            }
            if order {
                if let OrderGate::Repeat(batch) =
                    self.order.gate(&key, header.attempt_id.as_deref(), super::mono_ms(now))
                {
                    self.repeat_batch(shared, &key, &batch, &mut popped);
                    continue;
                }
            }
            let Some((from, skip)) =
                self.read_from(shared, consumers, header, (&topic, queue_id), super::mono_ms(now))
            else {
                continue;
            };
            let next = self.pop_queue(
                shared,
                now,
                header,
                &key,
                (from, &skip),
                &filter,
                want,
                revive_qid,
                &mut popped,
            )?;
            popped.rest += wire_long(max.saturating_sub(next));
        }
        if popped.found > 0 {
            self.stats.popped += popped.found as u64;
        }
        Ok(popped)
    }

    /// Read one queue from `from`: deliver what matches (passing over `skip`), write the
    /// batch's checkpoint (or, FIFO, remember the batch). Returns where the read stopped.
    #[allow(clippy::too_many_arguments)] // one queue's read needs the whole pop's context
    fn pop_queue(
        &mut self,
        shared: &mut Shared,
        now: Now,
        header: &PopMessageRequestHeader,
        key: &(String, String, i32),
        (from, skip): (u64, &BTreeSet<u64>),
        filter: &SubscriptionData,
        want: usize,
        revive_qid: i32,
        popped: &mut Popped,
    ) -> Result<u64, Refusal> {
        let (group, topic, queue_id) = (key.0.as_str(), key.1.as_str(), key.2);
        let order = header.order == Some(true);
        let room = want - popped.found;
        let entries = shared
            .store
            .read_entries(&*shared.reader, topic, queue_id, QueueOffset(from), 256)
            .map_err(|e| Refusal::SystemError(format!("reading queue {queue_id} of {topic} failed: {e}")))?;
        let log_min = shared.store.min_phys();
        let mut offsets = Vec::new();
        let mut next = from;
        let mut bytes = 0usize;
        for (offset, entry) in (from..).zip(&entries) {
            if offsets.len() >= room {
                break;
            }
            if entry.phys_offset < log_min || skip.contains(&offset) || !filter.matches_code(entry.tags_code)
            {
                next = offset + 1;
                continue;
            }
            match shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size) {
                Ok(record) => {
                    bytes += record.len();
                    popped.body.extend_from_slice(&record);
                    offsets.push(offset);
                    next = offset + 1;
                }
                Err(error) => {
                    // As a pull does: never skip a record that fails to read; stop before it.
                    tracing::error!(%error, topic, queue = queue_id, "unreadable record: pop stops before it");
                    break;
                }
            }
        }
        let pop_time = now.wall.0;
        tracing::debug!(
            group,
            topic,
            queue = queue_id,
            from,
            next,
            found = offsets.len(),
            "pop read a queue"
        );
        if offsets.is_empty() {
            if next > from && !order {
                self.next_pop.insert(key.clone(), next);
                self.pending.push_back(PendingCommit {
                    end: shared.store.write_pos(),
                    group: group.to_owned(),
                    topic: topic.to_owned(),
                    queue_id,
                    offset: next,
                });
            }
            return Ok(next);
        }
        popped.found += offsets.len();
        shared.stats.messages_got += offsets.len() as u64;
        shared.traffic.got((topic, group, queue_id), offsets.len() as u64, bytes as u64, next);
        receipt::push_start_offset(&mut popped.start_info, topic, queue_id, from);
        receipt::push_msg_offsets(&mut popped.msg_info, topic, queue_id, &offsets);
        if order {
            let batch = OrderBatch {
                attempt_id: header.attempt_id.clone(),
                offsets: offsets.clone(),
                acked: BTreeSet::new(),
                pop_time,
                visible_at: super::mono_ms(now).saturating_add(header.invisible_time),
            };
            let counts = self.order.delivered(key, batch);
            for (offset, count) in offsets.iter().zip(counts) {
                receipt::push_order_count(&mut popped.order_info, topic, queue_id, *offset, count);
            }
            return Ok(next);
        }
        let ck = CheckPoint {
            start_offset: wire_long(from),
            pop_time,
            invisible_time: header.invisible_time,
            bit_map: 0,
            num: u8::try_from(offsets.len()).unwrap_or(u8::MAX),
            queue_id,
            topic: topic.to_owned(),
            cid: group.to_owned(),
            revive_offset: -1,
            queue_offset_diff: offsets.iter().map(|o| i32::try_from(o - from).unwrap_or(i32::MAX)).collect(),
            broker_name: Some(shared.config.broker_name.clone()),
        };
        let end =
            append_revive_record(shared, now, revive_qid, CK_TAG, &json::to_body(&ck, KeyStyle::Fastjson))?;
        self.next_pop.insert(key.clone(), next);
        self.pending.push_back(PendingCommit {
            end,
            group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            offset: next,
        });
        Ok(next)
    }

    /// A FIFO pop repeating its attempt: the same messages again.
    fn repeat_batch(
        &self,
        shared: &mut Shared,
        key: &(String, String, i32),
        batch: &OrderBatch,
        popped: &mut Popped,
    ) {
        let (topic, queue_id) = (key.1.as_str(), key.2);
        let mut offsets = Vec::new();
        for offset in batch.offsets.iter().filter(|o| !batch.acked.contains(o)) {
            let Ok(entries) =
                shared.store.read_entries(&*shared.reader, topic, queue_id, QueueOffset(*offset), 1)
            else {
                break;
            };
            let Some(entry) = entries.first() else { break };
            let Ok(record) = shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size) else {
                break;
            };
            popped.body.extend_from_slice(&record);
            offsets.push(*offset);
            let count = self.order.delivered_before(key, *offset);
            receipt::push_order_count(&mut popped.order_info, topic, queue_id, *offset, count);
        }
        if let Some(first) = batch.offsets.first() {
            popped.found += offsets.len();
            receipt::push_start_offset(&mut popped.start_info, topic, queue_id, *first);
            receipt::push_msg_offsets(&mut popped.msg_info, topic, queue_id, &offsets);
        }
    }

    fn pop_reply(
        request: &RemotingCommand,
        header: &PopMessageRequestHeader,
        now: Now,
        popped: Popped,
        not_found: ResponseCode,
    ) -> RemotingCommand {
        let (code, remark) = if popped.found > 0 {
            (ResponseCode::SUCCESS, "FOUND")
        } else {
            (not_found, "NO_MESSAGE_IN_QUEUE")
        };
        let mut reply = RemotingCommand::response_to(request, code, Some(remark.to_owned()));
        let response = PopMessageResponseHeader {
            pop_time: now.wall.0,
            invisible_time: header.invisible_time,
            revive_qid: popped.revive_qid,
            rest_num: popped.rest,
            start_offset_info: Some(popped.start_info).filter(|s| !s.is_empty()),
            msg_offset_info: Some(popped.msg_info).filter(|s| !s.is_empty()),
            order_count_info: Some(popped.order_info).filter(|s| !s.is_empty()),
        };
        reply.ext_fields = response.to_ext_fields();
        reply.with_body(popped.body)
    }

    /// Answer held pops and notifications that may find something, or whose time is up.
    pub(super) fn wake_holds(&mut self, shared: &mut Shared, consumers: &mut Consumers, now: Now) {
        if self.holds.is_empty() {
            return;
        }
        let generation = (shared.store.readable_generation(), shared.store.consumable_end());
        let expired = self.holds.iter().any(|h| now.mono >= h.deadline);
        if generation == self.seen_generation && !expired && !self.recheck {
            return;
        }
        self.seen_generation = generation;
        self.recheck = false;
        for hold in core::mem::take(&mut self.holds) {
            let expired = now.mono >= hold.deadline;
            let may = self.may_find(shared, consumers, now, &hold.header);
            if !may && !expired {
                self.holds.push(hold);
                continue;
            }
            let reply = if hold.notification {
                Self::notification_reply(&hold.request, may)
            } else {
                let popped = match self.pop_once(shared, consumers, now, &hold.header) {
                    Ok(popped) => popped,
                    Err(refusal) => {
                        crate::remoting::send(&mut shared.out, hold.conn, &refusal.reply_to(&hold.request));
                        continue;
                    }
                };
                if popped.found == 0 && !expired {
                    self.holds.push(hold);
                    continue;
                }
                Self::pop_reply(&hold.request, &hold.header, now, popped, ResponseCode::POLLING_TIMEOUT)
            };
            let waited = now.mono.0.saturating_sub(hold.received.0);
            shared.traffic.answered(hold.request.code, reply.code, true, waited);
            crate::remoting::send(&mut shared.out, hold.conn, &reply);
        }
    }
}

/// Append a record of pop consumption to revive queue `revive_qid`; returns its end.
pub(super) fn append_revive_record(
    shared: &mut Shared,
    now: Now,
    revive_qid: i32,
    tag: &str,
    body: &[u8],
) -> Result<crate::store::PhysOffset, Refusal> {
    let topic = records::revive_topic(&shared.config.cluster_name);
    let props = properties::encode(&[(keys::TAGS, tag), (keys::WAIT, "false")]);
    let append =
        AppendRequest::broker_record(&topic, revive_qid, now, shared.config.advertised_addr, body, &props);
    let appended = shared.store.append(now, &append).map_err(Refusal::from)?;
    shared.stats.messages_put += 1;
    Ok(appended.end())
}
