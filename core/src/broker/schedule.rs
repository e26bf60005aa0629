//! Delayed delivery by level (`ScheduleMessageService`). A message with a delay level waits
//! in queue `level - 1` of [`SCHEDULE_TOPIC`]; it carries its real topic and queue in
//! `REAL_TOPIC` and `REAL_QID`. Each level is FIFO with one delay, so only its head needs
//! watching: when the head is due (stored at least `delay(level)` ago by the broker's wall
//! clock) it is stored again in its real topic and the level moves on.
//!
//! A level's progress is persisted in `config/delayOffset.json` (RocketMQ's shape) only up
//! to deliveries that are durable (written under ASYNC_FLUSH, fsynced under SYNC_FLUSH), so
//! a crash may deliver a message twice but never skips one.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::delay_levels::{DelayLevels, SCHEDULE_TOPIC};
use super::Broker;
use crate::io::{MonoNanos, Now};
use crate::protocol::body::DataVersion;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{parse_record, sys_flag, Parsed};
use crate::store::{AppendRequest, QueueOffset};

/// How often due heads are looked for while some level has messages waiting.
const BUSY_TICK_MS: u64 = 100;
/// How often when every level is empty (no level's delay is below a second by default;
/// a message sent meanwhile waits at most this much longer).
const IDLE_TICK_MS: u64 = 1_000;
/// How often delivered offsets are persisted (`flushDelayOffsetInterval`).
const PERSIST_MS: u64 = 10_000;
/// Most deliveries per level per tick, so one deep level cannot starve the broker.
const DELIVERIES_PER_TICK: usize = 256;
/// A head that fails to read this many ticks in a row is skipped (logged): a transient
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
    end: u64,
}

/// The delivery state of every level.
#[derive(Debug)]
pub struct Scheduler {
    levels: DelayLevels,
    /// Per level: the next schedule-queue offset to look at.
    next: BTreeMap<i32, u64>,
    in_flight: VecDeque<Delivery>,
    /// What is persisted: offsets whose deliveries are durable.
    durable: DelayOffsets,
    changed: bool,
    next_tick: MonoNanos,
    next_persist: MonoNanos,
    /// Per level: failed reads of the head in a row.
    head_failures: BTreeMap<i32, u32>,
    /// Offsets loaded from disk are clamped into each queue once the store is up.
    clamped: bool,
    /// Messages delivered since start.
    pub delivered: u64,
}

impl Scheduler {
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
            next_tick: now.mono.plus_millis(IDLE_TICK_MS),
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

    /// When the scheduler next needs a timeout.
    #[must_use]
    pub fn next_deadline(&self) -> MonoNanos {
        self.next_tick.min(self.next_persist)
    }

    /// The persisted form.
    #[must_use]
    pub fn offsets(&self) -> &DelayOffsets {
        &self.durable
    }

    /// Deliveries whose data reached `durable_end` become persisted progress.
    pub fn settle(&mut self, durable_end: u64, wall_ms: i64) {
        while let Some(front) = self.in_flight.front().copied() {
            if front.end > durable_end {
                break;
            }
            self.in_flight.pop_front();
            self.durable.offset_table.insert(front.level, i64::try_from(front.next).unwrap_or(i64::MAX));
            self.durable.data_version.bump(wall_ms);
            self.changed = true;
        }
    }

    /// Move past `offset` of `level` without delivering it; the skip becomes persisted
    /// progress in order, after the deliveries before it.
    fn skip(&mut self, level: i32, offset: u64) {
        self.next.insert(level, offset + 1);
        self.in_flight.push_back(Delivery { level, next: offset + 1, end: 0 });
    }

    /// Whether delivered offsets are due to be persisted (every 10 s, if they changed).
    pub fn take_persist_due(&mut self, now: MonoNanos) -> bool {
        if now < self.next_persist {
            return false;
        }
        self.next_persist = now.plus_millis(PERSIST_MS);
        core::mem::take(&mut self.changed)
    }
}

/// Why a head could not be delivered this tick.
enum Stop {
    /// Not due yet, or nothing more to read.
    Wait,
    /// The head could not be read or stored; retry next tick.
    Retry,
}

impl Broker {
    /// Deliver every due head, level by level (on the master only).
    pub(super) fn deliver_delayed(&mut self, now: Now) {
        if now.mono < self.scheduler.next_tick {
            return;
        }
        if self.config.broker_id != 0 || !self.store.is_ready() {
            self.scheduler.next_tick = now.mono.plus_millis(IDLE_TICK_MS);
            return;
        }
        if !self.scheduler.clamped {
            self.clamp_delay_offsets();
        }
        let mut waiting = false;
        let levels: Vec<i32> = self.scheduler.levels.levels().collect();
        for level in levels {
            for _ in 0..DELIVERIES_PER_TICK {
                match self.deliver_head(now, level) {
                    Ok(()) => {}
                    Err(Stop::Wait | Stop::Retry) => break,
                }
            }
            let next = self.scheduler.next.get(&level).copied().unwrap_or(0);
            let end = self.store.queue_offsets(SCHEDULE_TOPIC, level - 1).map_or(0, |(_, max)| max.0);
            waiting |= next < end;
        }
        let tick = if waiting { BUSY_TICK_MS } else { IDLE_TICK_MS };
        self.scheduler.next_tick = now.mono.plus_millis(tick);
    }

    /// Offsets loaded from disk may lie outside the queues after a crash (a queue cut back
    /// by recovery): keep each within [min, max] of its queue.
    fn clamp_delay_offsets(&mut self) {
        self.scheduler.clamped = true;
        for (level, next) in &mut self.scheduler.next {
            let (min, max) = self
                .store
                .queue_offsets(SCHEDULE_TOPIC, level - 1)
                .map_or((0, 0), |(min, max)| (min.0, max.0));
            *next = (*next).clamp(min, max);
        }
    }

    /// Deliver the head of `level` if it is due.
    fn deliver_head(&mut self, now: Now, level: i32) -> Result<(), Stop> {
        let queue_id = level - 1;
        let next = self.scheduler.next.get(&level).copied().unwrap_or(0);
        let entries = self
            .store
            .read_entries(&*self.reader, SCHEDULE_TOPIC, queue_id, QueueOffset(next), 1)
            .map_err(|_| Stop::Retry)?;
        let Some(entry) = entries.first().copied() else { return Err(Stop::Wait) };
        // Entries below the queue's minimum are gone; reading starts at the minimum.
        let offset =
            self.store.queue_offsets(SCHEDULE_TOPIC, queue_id).map_or(next, |(min, _)| next.max(min.0));
        let record = match self.store.read_record(&*self.reader, entry.phys_offset, entry.size) {
            Ok(record) => record,
            Err(error) => return self.head_unreadable(level, offset, &error.to_string()),
        };
        let Ok(Parsed::Message(view)) = parse_record(&record) else {
            return self.head_unreadable(level, offset, "not a message record");
        };
        self.scheduler.head_failures.remove(&level);
        let delay = i64::try_from(self.scheduler.levels.delay_ms(level).unwrap_or(0)).unwrap_or(i64::MAX);
        let mut due = view.store_timestamp.saturating_add(delay);
        // The clock went back: do not wait longer than one delay from now.
        if due > now.wall.0.saturating_add(delay) {
            due = now.wall.0;
        }
        if due > now.wall.0 {
            return Err(Stop::Wait);
        }
        let real_topic =
            properties::find(view.properties, keys::REAL_TOPIC).and_then(|t| core::str::from_utf8(t).ok());
        let real_queue = properties::find(view.properties, keys::REAL_QID)
            .and_then(|q| core::str::from_utf8(q).ok())
            .and_then(|q| q.parse::<i32>().ok());
        let (Some(topic), Some(real_queue)) = (real_topic, real_queue) else {
            tracing::error!(level, offset, "delayed message without REAL_TOPIC/REAL_QID; skipped");
            self.scheduler.skip(level, offset);
            return Ok(());
        };
        #[cfg(madsim)]
        if self.store.config().mutation == Some(crate::mutation::Mutation::DropRetryMessage)
            && topic.starts_with(super::topics::RETRY_PREFIX)
        {
            self.scheduler.skip(level, offset);
            return Ok(());
        }
        // Java keeps DELAY, REAL_TOPIC and REAL_QID in the stored properties; consumers may
        // look at them. Only our CRC tail is replaced by the new record's own.
        let props = properties::without(view.properties, &[keys::CRC32]);
        let request = AppendRequest {
            topic,
            queue_id: real_queue,
            flag: view.flag,
            sys_flag: view.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6),
            born_timestamp: view.born_timestamp,
            born_host: view.born_host,
            reconsume_times: view.reconsume_times,
            prepared_transaction_offset: 0,
            body: view.body,
            properties: &props,
        };
        let appended = match self.store.append(now, &request) {
            Ok(appended) => appended,
            Err(error) => {
                tracing::warn!(level, offset, %error, "delayed delivery failed; retrying");
                return Err(Stop::Retry);
            }
        };
        self.stats.messages_put += 1;
        self.scheduler.delivered += 1;
        self.scheduler.next.insert(level, offset + 1);
        self.scheduler.in_flight.push_back(Delivery { level, next: offset + 1, end: appended.end().0 });
        Ok(())
    }

    fn head_unreadable(&mut self, level: i32, offset: u64, error: &str) -> Result<(), Stop> {
        let failures = self.scheduler.head_failures.entry(level).or_insert(0);
        *failures += 1;
        if *failures < HEAD_READ_ATTEMPTS {
            return Err(Stop::Retry);
        }
        tracing::error!(
            level,
            offset,
            error,
            "delayed message unreadable after {HEAD_READ_ATTEMPTS} tries; skipped"
        );
        self.scheduler.head_failures.remove(&level);
        self.scheduler.skip(level, offset);
        Ok(())
    }
}
