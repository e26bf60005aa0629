//! Delayed delivery by level (`ScheduleMessageService`). A message with a delay level waits
//! in queue `level - 1` of [`SCHEDULE_TOPIC`]; it carries its real topic and queue in
//! `REAL_TOPIC` and `REAL_QID`. Each level is FIFO with one delay, so only its head needs
//! watching: when the head is due (stored at least `delay(level)` ago by the broker's wall
//! clock) it is stored again in its real topic and the level moves on.
//!
//! Wake-ups are event-driven, not a fixed-rate tick: the scheduler sleeps until the
//! earliest head is due, or, with every level caught up, until a new entry of a schedule
//! queue becomes readable (checked after each input that completed a ConsumeQueue write).
//! A sleep is capped at a second so that a forward step of the wall clock delays nothing by
//! more than that; a head's due time is cached, so those wake-ups read nothing.
//!
//! A level's progress is persisted in `config/delayOffset.json` (RocketMQ's shape) only up
//! to deliveries that are durable (written under ASYNC_FLUSH, fsynced under SYNC_FLUSH), so
//! a crash may deliver a message twice but never skips one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

pub mod levels;

use crate::broker::shared::{real_destination, Shared};
use crate::io::{MonoNanos, Now, UnixMillis};
use crate::protocol::body::DataVersion;
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::store::StoreConfig;
use crate::store::{PhysOffset, QueueOffset, StoreError};
pub use levels::{BadDelayLevel, DelayLevels, DEFAULT_DELAY_LEVELS, SCHEDULE_TOPIC};

/// The longest sleep while a head waits: the bound on lateness after a forward wall-clock
/// step.
const MAX_SLEEP_MS: u64 = 1_000;
/// Pause before retrying a head that could not be read or stored, or a store not ready.
const RETRY_MS: u64 = 100;
/// How often delivered offsets are persisted (`flushDelayOffsetInterval`).
const PERSIST_MS: u64 = 10_000;
/// Most deliveries per level per wake-up, so one deep level cannot starve the broker.
const DELIVERIES_PER_WAKE: usize = 256;
/// A head that fails to read this many times in a row is skipped (logged): a transient
/// read error is retried, a destroyed record does not block its level forever.
const HEAD_READ_ATTEMPTS: u32 = 50;

/// `config/delayOffset.json`: per level, the schedule-queue offset delivered up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DelayOffsets {
    /// Level → next offset to deliver.
    pub offset_table: BTreeMap<i32, i64>,
    /// Version stamp.
    pub data_version: DataVersion,
}

/// A delivery stored in its real topic, not yet durable.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    level: i32,
    next: u64,
    /// Where the delivery's copy ends in the CommitLog (0 for a skipped head).
    end: PhysOffset,
}

/// The delivery state of every level.
#[derive(Debug)]
pub struct DelayService {
    levels: DelayLevels,
    /// Per level: the next schedule-queue offset to look at.
    next: BTreeMap<i32, u64>,
    in_flight: VecDeque<Delivery>,
    /// What is persisted: offsets whose deliveries are durable.
    durable: DelayOffsets,
    changed: bool,
    /// When to look at the heads again; `None`: only when a schedule queue grows.
    wake_at: Option<MonoNanos>,
    /// Levels with nothing readable past their offset at the last look.
    idle: BTreeSet<i32>,
    /// The store's readable generation and visible end when idle levels were last checked.
    seen_visible: (u64, u64),
    /// Per level: the head's queue offset and its store time plus delay, once read.
    heads: BTreeMap<i32, (u64, UnixMillis)>,
    next_persist: MonoNanos,
    /// Per level: failed reads of the head in a row.
    head_failures: BTreeMap<i32, u32>,
    /// Offsets loaded from disk are clamped into each queue once the store is up.
    clamped: bool,
    /// Messages delivered since start.
    pub delivered: u64,
}

impl DelayService {
    /// A scheduler resuming from `persisted` (empty on first start).
    #[must_use]
    pub fn new(levels: DelayLevels, persisted: DelayOffsets, now: Now) -> Self {
        let next = levels
            .levels()
            .map(|level| {
                let at = persisted.offset_table.get(&level).copied().unwrap_or(0);
                (level, u64::try_from(at).unwrap_or(0))
            })
            .collect();
        Self {
            levels,
            next,
            in_flight: VecDeque::new(),
            durable: persisted,
            changed: false,
            wake_at: Some(now.mono),
            idle: BTreeSet::new(),
            seen_visible: (0, 0),
            heads: BTreeMap::new(),
            next_persist: now.mono.plus_millis(PERSIST_MS),
            head_failures: BTreeMap::new(),
            clamped: false,
            delivered: 0,
        }
    }

    /// The delay levels.
    #[must_use]
    pub fn levels(&self) -> &DelayLevels {
        &self.levels
    }

    /// When the scheduler next needs a timeout: a head due, a retry, or persisting changed
    /// offsets.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        let persist = self.changed.then_some(self.next_persist);
        self.wake_at.into_iter().chain(persist).min()
    }

    /// Some queue's readable end may have moved (`visible`: the store's readable generation
    /// and visible end): if a caught-up level has a new readable
    /// entry (`readable` gives a level's readable end), look at the heads now.
    pub fn on_visible(&mut self, now: MonoNanos, visible: (u64, u64), readable: impl Fn(i32) -> u64) {
        if visible == self.seen_visible {
            return;
        }
        self.seen_visible = visible;
        if self.wake_at.is_some_and(|at| at <= now) {
            return;
        }
        let grown =
            self.idle.iter().any(|level| readable(*level) > self.next.get(level).copied().unwrap_or(0));
        if grown {
            self.wake_at = Some(now);
        }
    }

    /// When the heads are looked at next; `None` while every level is caught up.
    #[must_use]
    pub fn wake_at(&self) -> Option<MonoNanos> {
        self.wake_at
    }

    /// Per level: messages waiting in its schedule queue, and how long its head is overdue
    /// at `now`, ms (0 when not due or not read yet).
    pub(super) fn lag(&self, store: &crate::store::Store, now: UnixMillis) -> Vec<(i32, u64, u64)> {
        self.levels
            .levels()
            .map(|level| {
                let end = store.queue_offsets(SCHEDULE_TOPIC, level - 1).map_or(0, |(_, end)| end.0);
                let next = self.next.get(&level).copied().unwrap_or(0);
                let waiting = end.saturating_sub(next);
                let overdue = self
                    .heads
                    .get(&level)
                    .filter(|_| waiting > 0)
                    .map_or(0, |(_, due)| u64::try_from(now.0.saturating_sub(due.0)).unwrap_or(0));
                (level, waiting, overdue)
            })
            .collect()
    }

    /// The persisted form.
    #[must_use]
    pub fn offsets(&self) -> &DelayOffsets {
        &self.durable
    }

    /// Deliveries whose data reached `durable_end` become persisted progress.
    pub fn settle(&mut self, durable_end: PhysOffset, now: UnixMillis) {
        while let Some(front) = self.in_flight.front().copied() {
            if front.end > durable_end {
                break;
            }
            self.in_flight.pop_front();
            self.durable.offset_table.insert(front.level, crate::protocol::wire_long(front.next));
            self.durable.data_version.bump(now);
            self.changed = true;
        }
    }

    /// Move past `offset` of `level` without delivering it; the skip becomes persisted
    /// progress in order, after the deliveries before it.
    fn skip(&mut self, level: i32, offset: u64) {
        self.head_failures.remove(&level);
        self.next.insert(level, offset + 1);
        self.in_flight.push_back(Delivery { level, next: offset + 1, end: PhysOffset(0) });
    }

    /// Whether delivered offsets are due to be persisted (every 10 s, if they changed).
    fn take_persist_due(&mut self, now: MonoNanos) -> bool {
        if !self.changed || now < self.next_persist {
            return false;
        }
        self.next_persist = now.plus_millis(PERSIST_MS);
        core::mem::take(&mut self.changed)
    }
}

/// Why a level stopped delivering for now.
enum Stop {
    /// The head is due at this wall time.
    Due(UnixMillis),
    /// Nothing readable past the level's offset.
    Empty,
    /// The head could not be read or stored; retry shortly.
    Retry,
    /// The per-wake budget is spent; more may be due.
    Budget,
}

impl DelayService {
    /// Deliver every due head, level by level (on the master only), and mark the offsets
    /// for persisting when that is due.
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, now: Now) {
        self.deliver_due(shared, now);
        if self.take_persist_due(now.mono) {
            shared.metadata.delay_offsets.mark_dirty();
        }
    }

    fn deliver_due(&mut self, shared: &mut Shared, now: Now) {
        if self.wake_at.is_none_or(|at| now.mono < at) {
            return;
        }
        // Only a master delivers; a slave's scheduler sleeps.
        if shared.config.broker_id != 0 {
            self.wake_at = None;
            return;
        }
        if !shared.store.is_ready() {
            self.wake_at = Some(now.mono.plus_millis(RETRY_MS));
            return;
        }
        if !self.clamped {
            self.clamp_offsets(&shared.store);
        }
        let mut wake: Option<MonoNanos> = None;
        let levels: Vec<i32> = self.levels.levels().collect();
        for level in levels {
            let mut stop = Stop::Budget;
            for _ in 0..DELIVERIES_PER_WAKE {
                if let Err(why) = self.deliver_head(shared, now, level) {
                    stop = why;
                    break;
                }
            }
            let idle = matches!(stop, Stop::Empty);
            let at = match stop {
                Stop::Due(due) => {
                    let wait = now.wall.millis_until(due);
                    Some(now.mono.plus_millis(wait.min(MAX_SLEEP_MS)))
                }
                Stop::Empty => None,
                Stop::Retry => Some(now.mono.plus_millis(RETRY_MS)),
                Stop::Budget => Some(now.mono.plus_millis(crate::broker::BATCH_PAUSE_MS)),
            };
            if idle {
                self.idle.insert(level);
            } else {
                self.idle.remove(&level);
            }
            wake = wake.into_iter().chain(at).min();
        }
        self.wake_at = wake;
    }

    /// After an input: wake the scheduler if a caught-up level got a readable entry.
    pub(super) fn watch(&mut self, store: &crate::store::Store, now: Now) {
        // Under SYNC_FLUSH an entry written to its queue is readable only once its record
        // is fsynced: either may come last.
        let visible = (store.readable_generation(), store.visible_end().0);
        let readable = store.readable_next_of(SCHEDULE_TOPIC);
        self.on_visible(now.mono, visible, |level| readable(level - 1).map_or(0, |n| n.0));
    }

    /// Offsets loaded from disk may lie outside the queues after a crash (a queue cut back
    /// by recovery): keep each within [min, max] of its queue.
    fn clamp_offsets(&mut self, store: &crate::store::Store) {
        self.clamped = true;
        for (level, next) in &mut self.next {
            let (min, max) =
                store.queue_offsets(SCHEDULE_TOPIC, level - 1).map_or((0, 0), |(min, max)| (min.0, max.0));
            *next = (*next).clamp(min, max);
        }
    }

    /// Per delay level with a schedule queue, RocketMQ's `scheduleMessageOffset_<level>`
    /// runtime-info entry: "<next offset to deliver>,<queue end>"; the difference is the
    /// level's backlog.
    pub(super) fn progress(&self, store: &crate::store::Store) -> Vec<(String, String)> {
        self.levels
            .levels()
            .filter_map(|level| {
                let (_, end) = store.queue_offsets(SCHEDULE_TOPIC, level - 1)?;
                let next = self.next.get(&level).copied().unwrap_or(0);
                Some((format!("scheduleMessageOffset_{level}"), format!("{next},{}", end.0)))
            })
            .collect()
    }

    /// Deliver the head of `level` if it is due.
    fn deliver_head(&mut self, shared: &mut Shared, now: Now, level: i32) -> Result<(), Stop> {
        let queue_id = level - 1;
        let mut next = self.next.get(&level).copied().unwrap_or(0);
        let min = shared.store.queue_offsets(SCHEDULE_TOPIC, queue_id).map_or(0, |(min, _)| min.0);
        if next < min {
            // Retention deleted these heads before they were due: one line for the lot.
            tracing::warn!(
                level,
                skipped = min - next,
                "delayed messages deleted by retention before they were due; skipped"
            );
            self.skip(level, min - 1);
            self.heads.remove(&level);
            next = min;
        }
        let delay = i64::try_from(self.levels.delay_ms(level).unwrap_or(0)).unwrap_or(i64::MAX);
        // A head already read and not due: no need to read it again.
        if let Some(&(offset, due)) = self.heads.get(&level) {
            if offset == next && due > deliver_until(shared.store.config(), now) {
                return Err(Stop::Due(due));
            }
        }
        let entries = shared
            .store
            .read_entries(&*shared.reader, SCHEDULE_TOPIC, queue_id, QueueOffset(next), 1)
            .map_err(|_| Stop::Retry)?;
        let Some(entry) = entries.first().copied() else { return Err(Stop::Empty) };
        if entry.phys_offset < shared.store.min_phys() {
            // Retention is moving this queue's minimum past the head: wait for it, then
            // skip to it above (one log line for the lot).
            return Err(Stop::Retry);
        }
        let offset = next;
        let record = match shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size) {
            Ok(record) => record,
            Err(error) => return self.head_unreadable(level, offset, &error.to_string()),
        };
        let Ok(Parsed::Message(view)) = parse_record(&record) else {
            return self.head_unreadable(level, offset, "not a message record");
        };
        let due = UnixMillis(view.head().store_timestamp).plus_millis(delay);
        if due > deliver_until(shared.store.config(), now) {
            self.head_failures.remove(&level);
            self.heads.insert(level, (offset, due));
            return Err(Stop::Due(due));
        }
        let Some((topic, real_queue)) = real_destination(view.record.properties) else {
            tracing::error!(level, offset, "delayed message without REAL_TOPIC/REAL_QID; skipped");
            self.skip(level, offset);
            return Ok(());
        };
        if shared.store.config().mutated(crate::mutation::Mutation::DropRetryMessage)
            && topic.starts_with(crate::broker::topics::RETRY_PREFIX)
        {
            self.skip(level, offset);
            return Ok(());
        }
        let end = match shared.store_copy(now, &view, topic, real_queue, Some(due)) {
            Ok(end) => end,
            Err(error) if error.refuses_every_write() => {
                // A full disk is logged once by the store, not once per retry.
                if !matches!(error, StoreError::DiskFull { .. }) {
                    tracing::warn!(level, offset, %error, "delayed delivery failed; retrying");
                }
                // The head read well: only consecutive bad reads count toward skipping it,
                // or a transient read fault now and then over minutes of a full disk would
                // add up to a skip of a good message.
                self.head_failures.remove(&level);
                return Err(Stop::Retry);
            }
            // This record's copy cannot be stored (too large, bad topic): like an unreadable
            // head, retried a few times, then skipped and logged, so the level goes on.
            Err(error) => return self.head_unreadable(level, offset, &format!("copy refused: {error}")),
        };
        self.head_failures.remove(&level);
        self.delivered += 1;
        self.next.insert(level, offset + 1);
        self.in_flight.push_back(Delivery { level, next: offset + 1, end });
        Ok(())
    }

    fn head_unreadable(&mut self, level: i32, offset: u64, error: &str) -> Result<(), Stop> {
        let failures = self.head_failures.entry(level).or_insert(0);
        *failures += 1;
        if *failures < HEAD_READ_ATTEMPTS {
            return Err(Stop::Retry);
        }
        tracing::error!(
            level,
            offset,
            error,
            "delayed message unreadable or undeliverable after {HEAD_READ_ATTEMPTS} tries; skipped"
        );
        self.skip(level, offset);
        Ok(())
    }
}

/// The latest due time deliverable now: the broker's wall clock. RocketMQ delivers a head
/// at once when a backward clock step leaves it due more than one delay away; Keel holds it
/// until the clock reaches its due time, as it does timed messages, so a delivery is never
/// early by the broker's clock (a backward step delays instead).
fn deliver_until(config: &StoreConfig, now: Now) -> UnixMillis {
    if config.mutated(crate::mutation::Mutation::DeliverEarly) {
        return now.wall.plus_millis(1_000);
    }
    now.wall
}
