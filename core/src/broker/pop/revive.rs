//! The revive service (`PopReviveService`): it reads the revive queues back, keeps every
//! open checkpoint with its acknowledged bits, and once a checkpoint's invisible time is up
//! puts its unacknowledged messages again: to the group's pop retry topic with the retry
//! count raised, or, once a message was delivered `retryMaxTimes + 1` times, to the
//! group's dead-letter topic. It writes the copies and a `bAck` naming them in one append,
//! so the checkpoint reads as done after a restart.
//!
//! A checkpoint is due once what was left of its invisible time when it was read back has
//! passed by the monotonic clock (never more than its whole invisible time), so a wall
//! clock stepped back holds no message invisible for the length of the step.
//! A checkpoint is revived only once its revive queue is read to its end: an ack written
//! before the invisible time ran out lies in the same queue behind its checkpoint, so it
//! has been read by then (under SYNC_FLUSH, once fsynced). Revive's progress, the offset
//! of `CID_RMQ_SYS_REVIVE_GROUP` in each revive queue, is the oldest checkpoint still open
//! there, and never past a record not fsynced.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::receipt::pop_retry_topic;
use super::records::{AckRecord, CheckPoint, ACK_TAG, BATCH_ACK_TAG, CK_TAG, REVIVE_GROUP};
use super::{PopStats, REVIVE_QUEUES};
use crate::broker::consumers::Consumers;
use crate::broker::shared::{copy_request, Shared};
use crate::broker::topics::DLQ_PREFIX;
use crate::io::{MonoNanos, Now};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::message_id::offset_message_id;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::protocol::wire_long;
use crate::store::{AppendRequest, PhysOffset, QueueOffset};

/// Pause before trying again when the store is not ready or a read failed.
const RETRY_MS: u64 = 100;
/// Revive-queue entries read per wake-up.
const READ_PER_WAKE: u64 = 4_096;
/// Checkpoints revived per wake-up.
const REVIVES_PER_WAKE: usize = 256;

/// Which checkpoint a record is about: the fields an ack repeats.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CkKey {
    revive_qid: i32,
    group: String,
    topic: String,
    queue_id: i32,
    start_offset: i64,
    pop_time: i64,
}

/// An open checkpoint.
#[derive(Debug)]
struct Open {
    ck: CheckPoint,
    /// Its offset in its revive queue.
    at: u64,
    acked: u64,
    /// When it is revived, by the monotonic clock.
    due: MonoNanos,
}

impl Open {
    fn all_acked(&self) -> bool {
        let bits = u32::from(self.ck.num).min(64);
        let full = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        self.acked & full == full
    }
}

/// The revive service's state.
#[derive(Debug)]
pub(super) struct Revive {
    /// Per revive queue, the next offset to read; `None` until loaded at the first wake.
    read_next: Option<Vec<u64>>,
    /// Per revive queue, entries read whose records are not yet fsynced: (offset after, end).
    unflushed: Vec<VecDeque<(u64, PhysOffset)>>,
    /// Per revive queue, the offset past the last read entry that is fsynced.
    flushed_next: Vec<u64>,
    open: BTreeMap<CkKey, Open>,
    /// Open checkpoints not yet revived, by when they are due (monotonic clock).
    due: BTreeSet<(MonoNanos, CkKey)>,
    /// Checkpoints done by the record ending at the offset given, forgotten once it is fsynced.
    done: VecDeque<(PhysOffset, CkKey)>,
    wake_at: Option<MonoNanos>,
    /// When the earliest due checkpoint's time is up, by the monotonic clock.
    due_at: Option<MonoNanos>,
    /// The revive offsets last committed.
    committed: Vec<i64>,
    /// The revive topic (`rmq_sys_REVIVE_LOG_<cluster>`), named once.
    topic: String,
    /// Read to the end once since start: until then a pop could hand out again what a
    /// checkpoint not yet read says was popped.
    replayed: bool,
    /// Batches read back (group, topic, queue, offset after the batch, the checkpoint's
    /// end): a restarted broker's pops go on past them.
    pub(super) popped: Vec<(String, String, i32, u64, PhysOffset)>,
}

impl Revive {
    pub(super) fn new(now: Now, topic: String) -> Self {
        let queues = usize::try_from(REVIVE_QUEUES).unwrap_or(0);
        Self {
            read_next: None,
            unflushed: vec![VecDeque::new(); queues],
            flushed_next: vec![0; queues],
            open: BTreeMap::new(),
            due: BTreeSet::new(),
            done: VecDeque::new(),
            wake_at: Some(now.mono),
            due_at: None,
            committed: vec![-1; queues],
            topic,
            replayed: false,
            popped: Vec::new(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        self.wake_at.into_iter().chain(self.due_at).min()
    }

    /// Open checkpoints.
    pub(super) fn open(&self) -> usize {
        self.open.len()
    }

    /// The revive topic it reads.
    pub(super) fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether revive has read its queues to the end once since start.
    pub(super) fn replayed(&self) -> bool {
        self.replayed
    }

    fn caught_up(&self, shared: &Shared, topic: &str) -> Vec<bool> {
        let Some(read_next) = self.read_next.as_ref() else { return vec![false; self.flushed_next.len()] };
        let readable_next = shared.store.readable_next_of(topic);
        (0..REVIVE_QUEUES)
            .map(|q| {
                let readable = readable_next(q).map_or(0, |n| n.0);
                read_next.get(usize::try_from(q).unwrap_or(0)).is_some_and(|next| *next >= readable)
            })
            .collect()
    }

    pub(super) fn handle_timeout(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        stats: &mut PopStats,
    ) {
        let due =
            self.wake_at.is_some_and(|at| now.mono >= at) || self.due_at.is_some_and(|at| now.mono >= at);
        if !due {
            return;
        }
        self.wake_at = None;
        if shared.config.role.is_slave() {
            return;
        }
        if !shared.store.is_ready() {
            self.wake_at = Some(now.mono.plus_millis(RETRY_MS));
            return;
        }
        let more = !self.replay(shared, consumers, now);
        let topic = self.topic.clone();
        let revived = self.revive_due(shared, consumers, now, &topic, stats);
        if more || !revived {
            let pause = if revived { crate::broker::BATCH_PAUSE_MS } else { RETRY_MS };
            self.wake_at = Some(now.mono.plus_millis(pause));
        }
        self.plan_due(now);
    }

    /// Read the revive queues up to the budget (loading revive's offsets first); true once
    /// everything readable is read.
    pub(super) fn replay(&mut self, shared: &Shared, consumers: &Consumers, now: Now) -> bool {
        let topic = self.topic.clone();
        if self.read_next.is_none() {
            let starts: Vec<u64> = (0..REVIVE_QUEUES)
                .map(|q| {
                    let committed = consumers.offsets.get(REVIVE_GROUP, &topic, q).unwrap_or(0);
                    u64::try_from(committed).unwrap_or(0)
                })
                .collect();
            self.flushed_next.clone_from(&starts);
            self.read_next = Some(starts);
        }
        let more = self.read_queues(shared, &topic, now);
        if !more && self.caught_up(shared, &topic).iter().all(|c| *c) {
            self.replayed = true;
        }
        !more
    }

    /// Read every revive queue's new records, up to the budget; true if more are left.
    fn read_queues(&mut self, shared: &Shared, topic: &str, now: Now) -> bool {
        let Some(mut read_next) = self.read_next.take() else { return false };
        let more = self.read_queues_from(shared, topic, &mut read_next, now);
        self.read_next = Some(read_next);
        more
    }

    fn read_queues_from(&mut self, shared: &Shared, topic: &str, read_next: &mut [u64], now: Now) -> bool {
        let mut budget = READ_PER_WAKE;
        let mut more = false;
        for q in 0..REVIVE_QUEUES {
            let qi = usize::try_from(q).unwrap_or(0);
            let Some(next) = read_next.get_mut(qi) else { continue };
            let min = shared.store.queue_offsets(topic, q).map_or(0, |(min, _)| min.0);
            if *next < min {
                tracing::warn!(
                    queue = q,
                    from = *next,
                    to = min,
                    "revive records deleted by retention before they were read"
                );
                *next = min;
            }
            while budget > 0 {
                let want = budget.min(256);
                let Ok(entries) =
                    shared.store.read_entries(&*shared.reader, topic, q, QueueOffset(*next), want)
                else {
                    tracing::warn!(queue = q, offset = *next, "revive queue unreadable; retrying");
                    return true;
                };
                if entries.is_empty() {
                    break;
                }
                for entry in &entries {
                    let Ok(record) = shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size)
                    else {
                        // Read again next time: a checkpoint must not be missed.
                        return true;
                    };
                    let end = PhysOffset(entry.phys_offset.0 + u64::from(entry.size));
                    if let Ok(Parsed::Message(view)) = parse_record(&record) {
                        let tag = properties::find(view.record.properties, keys::TAGS).unwrap_or_default();
                        let key_of = |ack: &AckRecord| CkKey {
                            revive_qid: q,
                            group: ack.consumer_group.clone(),
                            topic: ack.topic.clone(),
                            queue_id: ack.queue_id,
                            start_offset: ack.start_offset,
                            pop_time: ack.pop_time,
                        };
                        if tag == CK_TAG.as_bytes() {
                            if let Ok(ck) = json::from_slice::<CheckPoint>(view.record.body) {
                                let key = CkKey {
                                    revive_qid: q,
                                    group: ck.cid.clone(),
                                    topic: ck.topic.clone(),
                                    queue_id: ck.queue_id,
                                    start_offset: ck.start_offset,
                                    pop_time: ck.pop_time,
                                };
                                let last = ck.queue_offset_diff.iter().max().copied().unwrap_or(0);
                                let after = ck.start_offset.saturating_add(i64::from(last)).saturating_add(1);
                                let after = u64::try_from(after).unwrap_or(0);
                                self.popped.push((ck.cid.clone(), ck.topic.clone(), ck.queue_id, after, end));
                                tracing::debug!(revive_qid = q, at = *next, group = %ck.cid, topic = %ck.topic, queue = ck.queue_id, start = ck.start_offset, "checkpoint read back");
                                if !self.open.contains_key(&key) {
                                    // Due after what is left of its invisible time by the
                                    // wall clock now, never more than its whole invisible
                                    // time: a wall clock stepped back (before a restart, or
                                    // after the read) delays no revive beyond that.
                                    let left = ck.revive_time().saturating_sub(now.wall.0);
                                    let left = left.clamp(0, ck.invisible_time.max(0));
                                    let due = now.mono.plus_millis(u64::try_from(left).unwrap_or(0));
                                    self.due.insert((due, key.clone()));
                                    self.open.insert(key, Open { ck, at: *next, acked: 0, due });
                                }
                            }
                        } else if tag == ACK_TAG.as_bytes() || tag == BATCH_ACK_TAG.as_bytes() {
                            // The mutation drops clients' acks (revive's own markers stay).
                            let lost = tag == ACK_TAG.as_bytes()
                                && shared
                                    .store
                                    .config()
                                    .mutated(crate::mutation::Mutation::PopAckLostOnRevive);
                            if let (false, Ok(ack)) = (lost, json::from_slice::<AckRecord>(view.record.body))
                            {
                                let key = key_of(&ack);
                                self.apply_ack(&key, &ack, end);
                            }
                        }
                    }
                    *next += 1;
                    if let Some(unflushed) = self.unflushed.get_mut(qi) {
                        unflushed.push_back((*next, end));
                    }
                }
                budget = budget.saturating_sub(entries.len() as u64);
            }
            more |= budget == 0;
        }
        more
    }

    fn apply_ack(&mut self, key: &CkKey, ack: &AckRecord, end: PhysOffset) {
        let Some(open) = self.open.get_mut(key) else { return };
        let was_done = open.all_acked();
        for offset in ack.offsets() {
            if let Some(bit) = open.ck.index_of(offset).filter(|b| *b < 64) {
                open.acked |= 1 << bit;
            }
        }
        if !was_done && open.all_acked() {
            self.due.remove(&(open.due, key.clone()));
            self.done.push_back((end, key.clone()));
        }
    }

    /// Revive the checkpoints whose time is up, in queues read to their end; false if one
    /// could not be (try again shortly).
    fn revive_due(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        topic: &str,
        stats: &mut PopStats,
    ) -> bool {
        let caught_up = self.caught_up(shared, topic);
        let ready: Vec<CkKey> = self
            .due
            .iter()
            .take_while(|(due, _)| *due <= now.mono)
            .filter(|(_, key)| {
                caught_up.get(usize::try_from(key.revive_qid).unwrap_or(0)).copied().unwrap_or(false)
            })
            .take(REVIVES_PER_WAKE)
            .map(|(_, key)| key.clone())
            .collect();
        for key in ready {
            let Some(open) = self.open.get(&key) else { continue };
            let (ck, acked, due) = (open.ck.clone(), open.acked, open.due);
            tracing::debug!(group = %key.group, topic = %key.topic, queue = key.queue_id, start = key.start_offset, acked, "reviving a checkpoint");
            match revive_one(shared, consumers, now, topic, key.revive_qid, &ck, acked, stats) {
                // Done once the record naming the copies is read back.
                Ok(()) => {
                    self.due.remove(&(due, key.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, group = %key.group, topic = %key.topic, "revive failed; retrying");
                    return false;
                }
            }
        }
        true
    }

    fn plan_due(&mut self, _now: Now) {
        self.due_at = self.due.first().map(|(due, _)| *due);
    }

    /// After an input: wake when a revive queue grew; forget done checkpoints once the
    /// record that ended them is fsynced, and commit revive's progress.
    pub(super) fn settle(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        flushed_end: PhysOffset,
    ) {
        let Some(read_next) = self.read_next.as_ref() else { return };
        let topic = &self.topic;
        let readable_next = shared.store.readable_next_of(topic);
        let grew = (0..REVIVE_QUEUES).any(|q| {
            let readable = readable_next(q).map_or(0, |n| n.0);
            read_next.get(usize::try_from(q).unwrap_or(0)).is_some_and(|next| readable > *next)
        });
        if grew && self.wake_at.is_none() {
            self.wake_at = Some(now.mono);
        }
        // Revive's progress moves only when a done checkpoint is forgotten or a record read
        // is fsynced (a checkpoint read lies at or past the fsynced read position): the
        // open checkpoints are scanned only then, not after every input.
        let mut moved = self.committed.iter().any(|c| *c < 0);
        while self.done.front().is_some_and(|(end, _)| *end <= flushed_end) {
            if let Some((_, key)) = self.done.pop_front() {
                self.open.remove(&key);
                moved = true;
            }
        }
        for (qi, unflushed) in self.unflushed.iter_mut().enumerate() {
            while unflushed.front().is_some_and(|(_, end)| *end <= flushed_end) {
                if let (Some((after, _)), Some(flushed)) =
                    (unflushed.pop_front(), self.flushed_next.get_mut(qi))
                {
                    *flushed = after;
                    moved = true;
                }
            }
        }
        if !moved {
            self.plan_due(now);
            return;
        }
        let topic = self.topic.clone();
        let mut oldest: Vec<u64> = self.flushed_next.clone();
        for (key, open) in &self.open {
            if let Some(low) = oldest.get_mut(usize::try_from(key.revive_qid).unwrap_or(0)) {
                *low = (*low).min(open.at);
            }
        }
        for (q, offset) in (0..REVIVE_QUEUES).zip(oldest) {
            let qi = usize::try_from(q).unwrap_or(0);
            if self.committed.get(qi).is_some_and(|c| *c != wire_long(offset)) {
                consumers.commit_offset(REVIVE_GROUP, &topic, q, wire_long(offset));
                if let Some(c) = self.committed.get_mut(qi) {
                    *c = wire_long(offset);
                }
            }
        }
        self.plan_due(now);
    }
}

/// Put a checkpoint's unacknowledged messages again (retry topic, or DLQ past the group's
/// limit) and a `bAck` naming them, in one append.
#[allow(clippy::too_many_arguments)] // the whole checkpoint's context
fn revive_one(
    shared: &mut Shared,
    consumers: &mut Consumers,
    now: Now,
    revive_topic: &str,
    revive_qid: i32,
    ck: &CheckPoint,
    acked: u64,
    stats: &mut PopStats,
) -> Result<(), String> {
    let group = ck.cid.as_str();
    let max = consumers.groups.get(group).map_or(16, |g| g.retry_max_times);
    let mut records = Vec::new();
    let mut named = Vec::new();
    for index in 0..usize::from(ck.num) {
        if index < 64 && acked & (1 << index) != 0 {
            continue;
        }
        let Some(offset) = ck.offset_of(index) else { continue };
        named.push(offset);
        let Ok(queue_offset) = u64::try_from(offset) else { continue };
        let entries = shared
            .store
            .read_entries(&*shared.reader, &ck.topic, ck.queue_id, QueueOffset(queue_offset), 1)
            .map_err(|e| e.to_string())?;
        let Some(entry) = entries.first().filter(|_| {
            shared.store.queue_offsets(&ck.topic, ck.queue_id).is_some_and(|(min, _)| min.0 <= queue_offset)
        }) else {
            tracing::warn!(group, topic = %ck.topic, offset, "a popped message is gone (retention) before revive");
            continue;
        };
        let record = shared
            .store
            .read_record(&*shared.reader, entry.phys_offset, entry.size)
            .map_err(|e| e.to_string())?;
        records.push(record);
    }
    let mut copies: Vec<(String, Vec<u8>, i32, bytes::Bytes)> = Vec::new();
    for record in &records {
        let Ok(Parsed::Message(view)) = parse_record(record) else { continue };
        let original_topic = properties::find(view.record.properties, keys::RETRY_TOPIC)
            .map_or_else(|| view.record.topic.to_owned(), |t| String::from_utf8_lossy(t).into_owned());
        let mut props = properties::without(view.record.properties, &[keys::CRC32, keys::POP_CK]);
        if properties::find(view.record.properties, keys::RETRY_TOPIC).is_none() {
            properties::push(&mut props, keys::RETRY_TOPIC, view.record.topic);
        }
        if properties::find(view.record.properties, keys::ORIGIN_MESSAGE_ID).is_none() {
            let id = offset_message_id(view.head().store_host, view.head().physical_offset);
            properties::push(&mut props, keys::ORIGIN_MESSAGE_ID, &id);
        }
        if properties::find(view.record.properties, keys::FIRST_POP_TIME).is_none() {
            properties::push(&mut props, keys::FIRST_POP_TIME, &ck.pop_time.to_string());
        }
        let times = view.head().reconsume_times;
        let target = if times >= max {
            stats.dead_lettered += 1;
            *shared.traffic.to_dlq.entry((original_topic.clone(), group.to_owned())) += 1;
            tracing::info!(
                group,
                times,
                "popped message sent to the dead-letter queue after its last attempt"
            );
            format!("{DLQ_PREFIX}{group}")
        } else {
            stats.revived += 1;
            pop_retry_topic(group, &original_topic)
        };
        shared.ensure_group_topic(now, &target);
        copies.push((target, props, times.saturating_add(1), record.clone()));
    }
    let marker = AckRecord {
        ack_offset: None,
        ack_offset_list: named,
        start_offset: ck.start_offset,
        consumer_group: ck.cid.clone(),
        topic: ck.topic.clone(),
        queue_id: ck.queue_id,
        pop_time: ck.pop_time,
        broker_name: ck.broker_name.clone(),
    };
    let marker_body = json::to_body(&marker, KeyStyle::Fastjson);
    let marker_props = properties::encode(&[(keys::TAGS, BATCH_ACK_TAG), (keys::WAIT, "false")]);
    let views: Vec<_> = copies
        .iter()
        .filter_map(|(target, props, times, record)| match parse_record(record) {
            Ok(Parsed::Message(view)) => Some((view, target, props, *times)),
            _ => None,
        })
        .collect();
    let mut requests: Vec<AppendRequest<'_>> = views
        .iter()
        .map(|(view, target, props, times)| AppendRequest {
            reconsume_times: *times,
            ..copy_request(view, target, 0, props)
        })
        .collect();
    requests.push(AppendRequest::broker_record(
        revive_topic,
        revive_qid,
        now,
        shared.config.advertised_addr,
        &marker_body,
        &marker_props,
    ));
    let appended = shared.store.append_batch(now, &requests).map_err(|e| e.to_string())?;
    shared.stats.messages_put += appended.len() as u64;
    Ok(())
}
