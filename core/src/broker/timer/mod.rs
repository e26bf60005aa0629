//! Timed messages in the broker: the timer queue is read into the [`TimerState`] wheel as
//! entries become readable, due timers are stored again in their real topics, and the
//! checkpoint (`config/timerCheckpoint.json`) is written once a second when deliveries have
//! become durable.
//!
//! Like the delay levels, it is woken by events: a readable timer-queue entry, or the next
//! tick with a timer in it (at most a second away, so a forward wall-clock step delays
//! nothing by more than that).

use std::collections::BTreeMap;

pub mod recall;
pub mod state;
pub mod wheel;

use crate::broker::shared::{real_destination, Shared};
use crate::io::{MonoNanos, Now, UnixMillis};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::store::Store;
use crate::store::{PhysOffset, QueueOffset, StoreError};
pub use state::{
    deliver_at, Pending, TimerCheckpoint, TimerError, TimerState, DEFAULT_MAX_DELAY_MS, TIMER_TOPIC,
};
pub use wheel::TimerWheel;

/// The longest sleep while timers wait.
const MAX_SLEEP_MS: u64 = 1_000;
/// Pause before retrying a failed read or store, or a store not ready.
const RETRY_MS: u64 = 100;
/// Timer-queue entries read per wake-up, so a flood of timed sends cannot stall the broker.
const READ_PER_WAKE: u64 = 4_096;
/// Deliveries per wake-up: a burst due in one tick goes out in batches between the
/// broker's other work (sends, pulls), not in one long turn.
const DELIVER_PER_WAKE: usize = 1_024;
/// How often a changed checkpoint is written (`timerFlushIntervalMs`).
const PERSIST_MS: u64 = 1_000;
/// A due timer whose record cannot be read this many times is dropped (logged).
const READ_ATTEMPTS: u32 = 50;

/// What became of one due timer's delivery.
enum Delivery {
    /// Stored in its real topic, its copy ending at this CommitLog offset; 0: dropped.
    Done(PhysOffset),
    /// Its record could not be read (or copied) this time: retried.
    Again,
    /// The store refused the copy: retried, and the rest of the batch waits with it.
    Refused,
}

/// The broker's timed-delivery state beside the wheel.
#[derive(Debug)]
pub(super) struct TimerService {
    pub(super) state: TimerState,
    wake_at: Option<MonoNanos>,
    /// The store's readable generation and visible end at the last look at the queue.
    seen: (u64, u64),
    /// The last durable checkpoint, and whether it still has to be written.
    checkpoint: TimerCheckpoint,
    dirty: bool,
    next_persist: MonoNanos,
    /// Failed reads per timer-queue offset.
    attempts: BTreeMap<u64, u32>,
    /// Timed messages delivered since start.
    pub(super) delivered: u64,
    /// Recall markers: messages to drop when they come due.
    pub(super) recalls: recall::RecallMarkers,
}

impl TimerService {
    pub(super) fn new(checkpoint: TimerCheckpoint, precision_ms: u64, now: Now) -> Self {
        Self {
            state: TimerState::new(checkpoint, precision_ms),
            wake_at: Some(now.mono),
            seen: (0, 0),
            checkpoint,
            dirty: false,
            next_persist: now.mono.plus_millis(PERSIST_MS),
            attempts: BTreeMap::new(),
            delivered: 0,
            recalls: recall::RecallMarkers::default(),
        }
    }

    /// When it next needs a timeout: a tick with a timer in it, a retry, or a changed
    /// checkpoint to write.
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        self.wake_at.into_iter().chain(self.dirty.then_some(self.next_persist)).min()
    }

    /// Deliveries up to `durable_end` are durable.
    pub(super) fn settle(&mut self, durable_end: PhysOffset) {
        self.state.settle(durable_end);
        if let Some(checkpoint) = self.state.take_checkpoint() {
            self.checkpoint = checkpoint;
            self.dirty = true;
            self.recalls.forget_before(self.state.durably_done_before());
        }
    }

    /// Whether the checkpoint is due to be written.
    fn take_persist_due(&mut self, now: MonoNanos) -> bool {
        if !self.dirty || now < self.next_persist {
            return false;
        }
        self.next_persist = now.plus_millis(PERSIST_MS);
        self.dirty = false;
        true
    }

    /// The checkpoint to write.
    pub(super) fn checkpoint(&self) -> &TimerCheckpoint {
        &self.checkpoint
    }
}

impl TimerService {
    /// Read new timer-queue entries into the wheel, deliver every due timer (master only),
    /// and mark the checkpoint for writing when that is due.
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, now: Now) {
        self.deliver_due(shared, now);
        if self.take_persist_due(now.mono) {
            shared.metadata.timer_checkpoint.mark_dirty();
        }
    }

    fn deliver_due(&mut self, shared: &mut Shared, now: Now) {
        if self.wake_at.is_none_or(|at| now.mono < at) {
            return;
        }
        self.wake_at = None;
        if shared.config.broker_id != 0 {
            return;
        }
        if !shared.store.is_ready() {
            self.wake_at = Some(now.mono.plus_millis(RETRY_MS));
            return;
        }
        let mut wake = self.enqueue_timers(shared, now);
        // Every marker readable is known before anything is delivered.
        if let Some(again) = self.recalls.read(shared, now, self.state.durably_done_before()) {
            self.wake_at = wake.into_iter().chain(Some(again)).min();
            return;
        }
        let mut until = now.wall;
        if shared.store.config().mutated(crate::mutation::Mutation::DeliverEarly) {
            until = until.plus_millis(1_000);
        }
        let mut failed = false;
        let mut deleted = 0u64;
        let mut batch = self.state.due(until, DELIVER_PER_WAKE).into_iter();
        while let Some(pending) = batch.next() {
            if pending.phys < shared.store.min_phys() {
                // Its record was deleted by retention while it waited (a delay longer than
                // fileReservedTime): nothing left to deliver.
                deleted += 1;
                self.attempts.remove(&pending.offset);
                self.state.delivered(&pending, PhysOffset(0));
                continue;
            }
            match self.deliver_timer(shared, now, &pending) {
                Delivery::Done(end) => {
                    self.attempts.remove(&pending.offset);
                    self.state.delivered(&pending, end);
                }
                Delivery::Again => {
                    failed = true;
                    self.state.failed(pending);
                }
                Delivery::Refused => {
                    // The store refuses every copy alike: the rest of the batch waits too,
                    // in order, rather than fail (and log) one by one.
                    failed = true;
                    for rest in batch.rev() {
                        self.state.failed(rest);
                    }
                    self.state.failed(pending);
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::warn!(deleted, "due timed messages whose records retention deleted; dropped");
        }
        if let Some(wait) = self.state.wait_ms(now.wall) {
            // 0: more are due now (the next batch), or a failed delivery waits to be retried.
            let wait = match wait {
                0 if failed => RETRY_MS,
                0 => crate::broker::BATCH_PAUSE_MS,
                wait => wait.min(MAX_SLEEP_MS),
            };
            let at = now.mono.plus_millis(wait);
            wake = wake.into_iter().chain(Some(at)).min();
        }
        self.wake_at = wake;
    }

    /// Timer progress as RocketMQ 5 reports it in GET_BROKER_RUNTIME_INFO (and `mqadmin
    /// clusterList` shows as `Timer(Progress)`): `timerReadBehind`, seconds delivery is
    /// behind the clock; `timerOffsetBehind`, timer-queue entries not read into the wheel
    /// yet; `timerCongestNum`, timers due and waiting for their batch.
    pub(super) fn progress(&self, store: &Store, now: UnixMillis) -> [(&'static str, String); 3] {
        let end = store.queue_offsets(TIMER_TOPIC, 0).map_or(0, |(_, end)| end.0);
        [
            ("timerReadBehind", (self.state.overdue_ms(now) / 1_000).to_string()),
            ("timerOffsetBehind", end.saturating_sub(self.state.next_offset()).to_string()),
            ("timerCongestNum", self.state.backlog().to_string()),
        ]
    }

    /// Read readable timer-queue entries into the wheel; a wake-up time if more remain.
    fn enqueue_timers(&mut self, shared: &Shared, now: Now) -> Option<MonoNanos> {
        let mut read = 0;
        let min = shared.store.queue_offsets(TIMER_TOPIC, 0).map_or(0, |(min, _)| min.0);
        let next = self.state.next_offset();
        if next < min {
            tracing::warn!(
                skipped = min - next,
                "timed messages deleted by retention before they were read; skipped"
            );
            self.state.skip_to(min);
        }
        while read < READ_PER_WAKE {
            let next = self.state.next_offset();
            let want = (READ_PER_WAKE - read).min(256);
            let entries =
                match shared.store.read_entries(&*shared.reader, TIMER_TOPIC, 0, QueueOffset(next), want) {
                    Ok(entries) => entries,
                    Err(error) => {
                        tracing::warn!(%error, next, "timer queue unreadable; retrying");
                        return Some(now.mono.plus_millis(RETRY_MS));
                    }
                };
            if entries.is_empty() {
                return None;
            }
            if entries.iter().any(|e| e.phys_offset < shared.store.min_phys()) {
                // Retention is moving the queue's minimum past these: read on once it has.
                return Some(now.mono.plus_millis(RETRY_MS));
            }
            for (offset, entry) in (next..).zip(&entries) {
                // The timer topic's tag code is the due time (StoreConfig::due_time_topics).
                self.state.enqueue(offset, entry.phys_offset, entry.size, UnixMillis(entry.tags_code));
            }
            read += entries.len() as u64;
        }
        Some(now.mono.plus_millis(crate::broker::BATCH_PAUSE_MS))
    }

    /// Store a due timer in its real topic. A record that stays unreadable, or carries no
    /// destination, is dropped and logged (end 0), so it cannot block the wheel.
    fn deliver_timer(&mut self, shared: &mut Shared, now: Now, pending: &Pending) -> Delivery {
        let record = match shared.store.read_record(&*shared.reader, pending.phys, pending.size) {
            Ok(record) => record,
            Err(error) => return self.timer_unreadable(pending, &error.to_string()),
        };
        let Ok(Parsed::Message(view)) = parse_record(&record) else {
            return self.timer_unreadable(pending, "not a message record");
        };
        let Some((topic, queue)) = real_destination(view.record.properties) else {
            tracing::error!(offset = pending.offset, "timed message without REAL_TOPIC/REAL_QID; dropped");
            return Delivery::Done(PhysOffset(0));
        };
        // Most brokers never see a recall: the key is looked up only when one is known.
        let recalled = (!self.recalls.is_empty())
            .then(|| properties::find(view.record.properties, keys::UNIQ_KEY))
            .flatten()
            .and_then(|key| self.recalls.take(topic, &String::from_utf8_lossy(key)));
        if let Some(marker_end) = recalled {
            // Done once the marker is durable: a crash before it delivers the message.
            return Delivery::Done(marker_end);
        }
        match shared.store_copy(now, &view, topic, queue, None) {
            Ok(end) => {
                self.delivered += 1;
                Delivery::Done(end)
            }
            Err(error) if error.refuses_every_write() => {
                // A full disk is logged once by the store, not once per retry.
                if !matches!(error, StoreError::DiskFull { .. }) {
                    tracing::warn!(offset = pending.offset, %error, "timed delivery failed; retrying");
                }
                // It read well: only consecutive bad reads count toward dropping it.
                self.attempts.remove(&pending.offset);
                Delivery::Refused
            }
            // This record's copy cannot be stored (too large, bad topic): like an unreadable
            // record, retried a few times, then dropped and logged.
            Err(error) => self.timer_unreadable(pending, &format!("copy refused: {error}")),
        }
    }

    fn timer_unreadable(&mut self, pending: &Pending, error: &str) -> Delivery {
        let attempts = self.attempts.entry(pending.offset).or_insert(0);
        *attempts += 1;
        if *attempts < READ_ATTEMPTS {
            return Delivery::Again;
        }
        tracing::error!(
            offset = pending.offset,
            error,
            "timed message unreadable or undeliverable after {READ_ATTEMPTS} tries; dropped"
        );
        self.attempts.remove(&pending.offset);
        Delivery::Done(PhysOffset(0))
    }

    /// After an input: wake the timers if the timer queue got a readable entry.
    pub(super) fn watch(&mut self, store: &Store, now: Now) {
        let seen = (store.readable_generation(), store.visible_end().0);
        if seen == self.seen {
            return;
        }
        self.seen = seen;
        if self.wake_at.is_some_and(|at| at <= now.mono) {
            return;
        }
        let readable = store.readable_next(TIMER_TOPIC, 0).map_or(0, |n| n.0);
        if readable > self.state.next_offset() {
            self.wake_at = Some(now.mono);
        }
    }
}
