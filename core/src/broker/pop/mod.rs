//! Pop consumption (RocketMQ 5.x): the broker, not the client, picks what a consumer gets.
//! A pop hands out a batch and hides it for an invisible time; the consumer acknowledges
//! each message by its receipt handle; what is not acknowledged in time is put again, with
//! its attempt count raised, to the group's pop retry topic (`%RETRY%group_topic`), and
//! after the group's `retryMaxTimes` to its dead-letter topic.
//!
//! | file | what |
//! |---|---|
//! | `take.rs` | POP_MESSAGE and NOTIFICATION, with long polling |
//! | `ack.rs` | ACK_MESSAGE, BATCH_ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME |
//! | `revive.rs` | the revive service: checkpoints and acks read back, unacknowledged messages put again |
//! | `order.rs` | FIFO pops: a queue blocked while its batch is out |
//! | `receipt.rs` | receipt handles and the offset lists, RocketMQ's text |
//! | `records.rs` | the checkpoint and ack records' JSON |
//!
//! **Crash safety.** Every popped batch (but FIFO ones) writes a checkpoint record to a
//! queue of the revive topic before the pop is answered; acks are records in the same
//! queue, so an ack always follows its checkpoint there. The group's offset moves past a
//! batch only once its checkpoint is fsynced, and revive's own progress (the group
//! `CID_RMQ_SYS_REVIVE_GROUP`'s offset in each revive queue) never passes a checkpoint
//! still open nor a record not fsynced. So after a crash a batch is either popped again
//! (its checkpoint was lost, so was the offset) or revived from its checkpoint once its
//! invisible time is up; an ack that was answered (it waits for the flush mode's
//! durability, like a send) is never lost. Revive writes its copies and a record naming
//! them in one append, so a replay finds a revived batch done; a crash between the two
//! can put a batch twice, never none.
//!
//! RocketMQ delivers checkpoints through its timer at their revive time, and acks too;
//! Keel writes both straight to the revive queue and keeps open checkpoints by revive time
//! in memory (rebuilt at boot by reading from revive's offset), which needs no ordering
//! between timer deliveries to know an ack came in time.

mod ack;
pub mod order;
pub mod receipt;
pub mod records;
mod revive;
mod take;

use std::collections::{BTreeMap, VecDeque};

use crate::broker::consumers::Consumers;
use crate::broker::shared::Shared;
use crate::io::{MonoNanos, Now};
use crate::protocol::wire_long;
use crate::store::PhysOffset;

/// Revive queues in the revive topic (RocketMQ's `reviveQueueNum`).
pub const REVIVE_QUEUES: i32 = 8;
/// Most messages one pop returns.
const MAX_POP_MESSAGES: usize = 32;

/// The monotonic clock in milliseconds: FIFO batches unblock by it, so a wall clock stepped
/// back holds no queue blocked for the length of the step.
fn mono_ms(now: Now) -> i64 {
    i64::try_from(now.mono.0 / 1_000_000).unwrap_or(i64::MAX)
}

/// A group's offset to commit once the log holding its batch's checkpoint is fsynced.
#[derive(Debug)]
struct PendingCommit {
    end: PhysOffset,
    group: String,
    topic: String,
    queue_id: i32,
    offset: u64,
}

/// What pop consumption did since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PopStats {
    /// Messages handed out by pops.
    pub popped: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages put again to a retry topic by revive.
    pub revived: u64,
    /// Messages revive sent to a dead-letter topic.
    pub dead_lettered: u64,
}

/// Pop consumption's state beside the broker's.
#[derive(Debug)]
pub(super) struct PopService {
    /// Where the next pop of (group, topic, queue) reads: ahead of the committed offset
    /// while the batches before it wait for their checkpoints' fsync.
    next_pop: BTreeMap<(String, String, i32), u64>,
    pending: VecDeque<PendingCommit>,
    holds: Vec<take::PopHold>,
    /// The store's readable generation and consumable end when held pops were last
    /// looked at: a message becomes poppable when dispatched and when visible.
    seen_generation: (u64, PhysOffset),
    /// Held FIFO pops must look again (an ack or a change unblocked a queue).
    recheck: bool,
    order: order::OrderTable,
    revive: revive::Revive,
    /// Pops served: rotates queues, revive queues and retry-topic turns.
    pops: u64,
    pub(super) stats: PopStats,
}

impl PopService {
    pub(super) fn new(now: Now, revive_topic: String) -> Self {
        Self {
            next_pop: BTreeMap::new(),
            pending: VecDeque::new(),
            holds: Vec::new(),
            seen_generation: (0, PhysOffset(0)),
            recheck: false,
            order: order::OrderTable::default(),
            revive: revive::Revive::new(now, revive_topic),
            pops: 0,
            stats: PopStats::default(),
        }
    }

    /// Start again from settled progress (the store was replaced, or the role changed):
    /// revive re-reads from its committed offsets; held pops stay held.
    pub(super) fn restart(&mut self, now: Now) {
        self.next_pop.clear();
        self.pending.clear();
        self.order.clear();
        self.revive = revive::Revive::new(now, self.revive.topic().to_owned());
    }

    /// When the service next needs a timeout: revive's, or a held pop's time up.
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        let holds = self.holds.iter().map(|h| h.deadline).min();
        self.revive.poll_timeout().into_iter().chain(holds).min()
    }

    /// Revive's reads and due batches (master only).
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, consumers: &mut Consumers, now: Now) {
        self.revive.handle_timeout(shared, consumers, now, &mut self.stats);
        self.take_replayed();
        self.recheck = true;
    }

    /// After a start, read the revive queues back before popping: a checkpoint not read
    /// yet may name a batch popped before. True once done.
    fn ensure_replayed(&mut self, shared: &Shared, consumers: &Consumers, now: Now) -> bool {
        if !self.revive.replayed() && shared.store.is_ready() {
            self.revive.replay(shared, consumers, now);
            self.take_replayed();
        }
        self.revive.replayed()
    }

    fn take_replayed(&mut self) {
        // A batch read back was popped: pops go on past it even if the offsets file did
        // not see it before a crash (its offset waits for the checkpoint's fsync as any).
        for (group, topic, queue_id, after, end) in core::mem::take(&mut self.revive.popped) {
            let key = (group, topic, queue_id);
            let next = self.next_pop.entry(key.clone()).or_insert(0);
            if *next < after {
                *next = after;
                let (group, topic, queue_id) = key;
                self.pending.push_back(PendingCommit { end, group, topic, queue_id, offset: after });
            }
        }
    }

    /// After an input: offsets whose checkpoints are now fsynced are committed, revive's
    /// progress too, and held pops that may find something are tried again.
    pub(super) fn settle(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        flushed_end: PhysOffset,
    ) {
        while self.pending.front().is_some_and(|p| p.end <= flushed_end) {
            let Some(commit) = self.pending.pop_front() else { break };
            let current = consumers.offsets.get(&commit.group, &commit.topic, commit.queue_id);
            if current.is_none_or(|c| c < wire_long(commit.offset)) {
                consumers.commit_offset(
                    &commit.group,
                    &commit.topic,
                    commit.queue_id,
                    wire_long(commit.offset),
                );
            }
        }
        self.revive.settle(shared, consumers, now, flushed_end);
        self.wake_holds(shared, consumers, now);
    }

    /// Forget held pops of a closed connection.
    pub(super) fn connection_gone(&mut self, conn: crate::io::ConnId) {
        self.holds.retain(|h| h.conn != conn);
    }

    /// Open checkpoints, FIFO batches out, and pops held.
    #[must_use]
    pub(super) fn in_flight(&self) -> (usize, usize, usize) {
        (self.revive.open(), self.order.len(), self.holds.len())
    }
}
