//! Retention: expired CommitLog segments are deleted oldest first, one at a time, with the
//! ConsumeQueue files that only pointed into them, as RocketMQ's clean services do.
//!
//! Which clock decides: a segment's age is the broker's wall clock now minus the store
//! timestamp of its newest message. Store timestamps never go backwards in log order, so
//! the first record of the next segment bounds that newest message from above, and one
//! small read finds it. A forward wall-clock step of `s` can therefore delete a segment
//! whose newest message is `fileReservedTime - s` old, never younger; a backward step only
//! delays deletion.
//!
//! A deletion runs in three steps, each safe to crash in:
//! 1. **Retiring**: the log's minimum moves past the segment at once (pulls and the
//!    broker's services skip anything below it), and every queue's minimum is moved past
//!    its entries into the segment, a batch of queues per turn, its files wholly below the
//!    new minimum removed (never a queue's newest file, which keeps its max offset).
//! 2. **Removing**: the segment is removed and the directory synced; the next deletion
//!    waits for that, so the segments left are always contiguous.
//! 3. **Paced**: the next check comes `deletePhysicFilesInterval` later, so a backlog of
//!    expired segments never turns into a burst of unlinks.
//!
//! A recovery after a crash anywhere in between finds either the segment (it is retired
//! again later) or not (queue minimums are corrected as the queues load).

use super::message_store::Store;
use super::ops::{GroupId, Purpose};
use super::PhysOffset;
use crate::invalid_setting::InvalidSetting;
use crate::io::{DiskUsage, MonoNanos, Now, StoreRead};
use crate::protocol::message::stored::{parse_record, Parsed};

/// Queues whose minimum is corrected per turn while a segment is retired.
const RETIRE_BATCH: usize = 1024;
/// Pause between two batches, so requests are served in between.
const RETIRE_PAUSE_MS: u64 = 1;
/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;

/// RocketMQ's retention and disk-space keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// `fileReservedTime`, in ms (RocketMQ's key is hours; default 72).
    pub file_reserved_ms: u64,
    /// `deleteWhen`: the hours of the day (UTC) in which expired segments are deleted
    /// even while space is plentiful (default `04`).
    pub delete_hours: Vec<u8>,
    /// `cleanFileForciblyEnable`: above `clean_forcibly_ratio`, delete the oldest segment
    /// even if it has not expired.
    pub clean_forcibly: bool,
    /// `diskMaxUsedSpaceRatio` (%): above it, expired segments go at any hour.
    pub disk_max_used_ratio: u8,
    /// `diskSpaceCleanForciblyRatio` (%).
    pub clean_forcibly_ratio: u8,
    /// `diskSpaceWarningLevelRatio` (%): at or above it, writes are refused ("disk full").
    pub warning_ratio: u8,
    /// `deletePhysicFilesInterval` (ms): at most one segment is deleted per interval.
    pub delete_interval_ms: u64,
    /// `cleanResourceInterval` (ms): how often space and expiry are checked.
    pub check_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            file_reserved_ms: 72 * 3_600_000,
            delete_hours: vec![4],
            clean_forcibly: true,
            disk_max_used_ratio: 75,
            clean_forcibly_ratio: 85,
            warning_ratio: 90,
            delete_interval_ms: 100,
            check_interval_ms: 10_000,
        }
    }
}

impl RetentionConfig {
    /// `deleteWhen`'s value: hours of the day separated by `;` (`"04"`, `"01;13"`).
    pub fn parse_delete_when(text: &str) -> Result<Vec<u8>, String> {
        let mut hours = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u8>() {
                Ok(hour) if hour < 24 => hours.push(hour),
                _ => return Err(format!("deleteWhen: {part:?} is not an hour of the day (00 to 23)")),
            }
        }
        hours.sort_unstable();
        hours.dedup();
        Ok(hours)
    }

    /// Check the ratios make sense; the error names the key to fix.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (key, value) in [
            ("diskMaxUsedSpaceRatio", self.disk_max_used_ratio),
            ("diskSpaceCleanForciblyRatio", self.clean_forcibly_ratio),
            ("diskSpaceWarningLevelRatio", self.warning_ratio),
        ] {
            if value == 0 || value > 100 {
                return Err(InvalidSetting::new(
                    key,
                    format!("must be a percentage from 1 to 100, not {value}"),
                ));
            }
        }
        if self.check_interval_ms == 0 {
            return Err(InvalidSetting::new("cleanResourceInterval", "must be positive"));
        }
        Ok(())
    }
}

/// What retention is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RetentionPhase {
    /// Waiting for the next check.
    Idle,
    /// Queue minimums are moving past segment `base`; `cursor` is the next queue slot.
    Retiring { base: u64, cursor: usize },
    /// The segment's removal is being made durable.
    ExpectRemoved { group: GroupId, base: u64 },
}

/// Retention's state inside the store.
#[derive(Debug, Clone)]
pub(super) struct Retention {
    pub(super) phase: RetentionPhase,
    pub(super) next_step: MonoNanos,
    /// The last measurement of the store's file system.
    pub(super) usage: Option<DiskUsage>,
    /// Writes are refused: the disk was at or above the warning ratio at the last check.
    pub(super) disk_full: bool,
    /// Segments deleted since boot.
    pub(super) segments_deleted: u64,
    /// Queue entries the minimums moved over since boot.
    pub(super) entries_retired: u64,
}

impl Retention {
    pub(super) fn new(now: Now) -> Self {
        Self {
            phase: RetentionPhase::Idle,
            next_step: now.mono,
            usage: None,
            disk_full: false,
            segments_deleted: 0,
            entries_retired: 0,
        }
    }

    /// Take over what a store being replaced in place knew of its disk, so a full disk stays
    /// refused across the rebuild instead of until the next check.
    pub(super) fn carry_disk_state(&mut self, old: &Self) {
        self.usage = old.usage;
        self.disk_full = old.disk_full;
        self.segments_deleted = old.segments_deleted;
        self.entries_retired = old.entries_retired;
    }
}

/// Why retention deleted (or chose not to delete) the oldest segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Expired,
    Forcibly,
    Keep,
}

impl Store {
    /// The log's logical minimum (RocketMQ's min physical offset): records below it are
    /// deleted or being deleted, and no reader is served them.
    #[must_use]
    pub fn min_phys(&self) -> PhysOffset {
        PhysOffset(match self.retention.phase {
            RetentionPhase::Retiring { base, .. } | RetentionPhase::ExpectRemoved { base, .. } => {
                base + self.config.segment_size
            }
            RetentionPhase::Idle => self.log.min_offset(),
        })
    }

    /// The last measurement of the store's file system, if the runtime reports one.
    #[must_use]
    pub fn disk_usage(&self) -> Option<DiskUsage> {
        self.retention.usage
    }

    /// Whether writes are refused because the disk is at or above `diskSpaceWarningLevelRatio`.
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        self.retention.disk_full
    }

    /// Segments deleted and queue entries retired since boot.
    #[must_use]
    pub fn retention_counts(&self) -> (u64, u64) {
        (self.retention.segments_deleted, self.retention.entries_retired)
    }

    /// When [`run_retention`](Self::run_retention) wants to run next (only while running).
    #[must_use]
    pub fn retention_deadline(&self) -> Option<MonoNanos> {
        let waiting = matches!(self.retention.phase, RetentionPhase::ExpectRemoved { .. });
        (self.is_ready() && !waiting).then_some(self.retention.next_step)
    }

    /// Check space and expiry, and carry a deletion on by one step. Call it when
    /// [`retention_deadline`](Self::retention_deadline) has passed; it reads through `reader`.
    pub fn run_retention(&mut self, now: Now, reader: &dyn StoreRead) {
        if !self.is_ready() || now.mono < self.retention.next_step {
            return;
        }
        match self.retention.phase {
            RetentionPhase::Idle => self.check_retention(now, reader),
            RetentionPhase::Retiring { base, cursor } => self.retire_batch(now, reader, base, cursor),
            RetentionPhase::ExpectRemoved { .. } => {}
        }
    }

    /// A retention group finished: the segment's removal is durable.
    pub(super) fn retention_group_done(&mut self, group: GroupId) {
        if let RetentionPhase::ExpectRemoved { group: g, base } = self.retention.phase {
            if g == group {
                tracing::info!(segment = base, "expired CommitLog segment deleted");
                self.retention.segments_deleted += 1;
                self.retention.phase = RetentionPhase::Idle;
            }
        }
    }

    fn check_retention(&mut self, now: Now, reader: &dyn StoreRead) {
        let config = &self.config.retention;
        self.retention.next_step = now.mono.plus_millis(config.check_interval_ms);
        let usage = reader.disk_usage();
        self.retention.usage = usage;
        let used = usage.map_or(0, |u| u.used_per_mille());
        let at_least = |ratio: u8| used >= u64::from(ratio) * 10;
        let full = usage.is_some() && at_least(config.warning_ratio);
        if full {
            // Writes wait on this flag: look again soon, so they resume within a second of
            // space coming back.
            self.retention.next_step = now.mono.plus_millis(config.check_interval_ms.min(1_000));
        }
        if full != self.retention.disk_full {
            if full {
                tracing::error!(used_per_mille = used, "disk full: writes are refused until space is freed");
            } else {
                tracing::info!(used_per_mille = used, "disk space is back: writes resume");
            }
            self.retention.disk_full = full;
        }
        let hour = u8::try_from(now.wall.0.div_euclid(HOUR_MS).rem_euclid(24)).unwrap_or(0);
        let time_to_delete = config.delete_hours.contains(&hour);
        let space_to_delete = usage.is_some() && used > u64::from(config.disk_max_used_ratio) * 10;
        let forcibly =
            config.clean_forcibly && usage.is_some() && (at_least(config.clean_forcibly_ratio) || full);
        if !(time_to_delete || space_to_delete || forcibly) {
            return;
        }
        let Some(base) = self.deletable_oldest() else { return };
        let ignore_age = self.config.mutated(crate::mutation::Mutation::DeleteInsideHorizon);
        let verdict = match self.newest_timestamp_bound(reader, base) {
            Some(newest) if newest.saturating_add_unsigned(config.file_reserved_ms) <= now.wall.0 => {
                Verdict::Expired
            }
            _ if ignore_age => Verdict::Expired,
            _ if forcibly => Verdict::Forcibly,
            _ => Verdict::Keep,
        };
        if verdict == Verdict::Keep {
            return;
        }
        tracing::info!(
            segment = base,
            forcibly = verdict == Verdict::Forcibly,
            used_per_mille = used,
            "retiring the oldest CommitLog segment"
        );
        self.retention.phase = RetentionPhase::Retiring { base, cursor: 0 };
        self.retire_batch(now, reader, base, 0);
    }

    /// The oldest segment, if retention may delete it: not the newest that exists (the one
    /// being written; or, while the log's end sits on a boundary whose segment does not exist
    /// yet, the last one, whose deletion would leave an empty log that starts again at zero),
    /// and wholly flushed and covered by the checkpoint (recovery never needs it again).
    fn deletable_oldest(&self) -> Option<u64> {
        let base = self.log.oldest_segment()?;
        let end = base + self.config.segment_size;
        let covered = end <= self.flushed_end && end <= self.last_checkpoint().queue_durable_end;
        (covered && self.log.newest_segment() != Some(base)).then_some(base)
    }

    /// An upper bound on the newest store timestamp in segment `base`: the next segment's
    /// first record's (timestamps never go back in log order), else the log's newest.
    fn newest_timestamp_bound(&self, reader: &dyn StoreRead, base: u64) -> Option<i64> {
        let next = base + self.config.segment_size;
        let fallback = Some(self.log.last_store_timestamp());
        if next >= self.log.write_pos() {
            return fallback;
        }
        let Ok(record) = self.read_record_at(reader, PhysOffset(next)) else { return fallback };
        match parse_record(&record) {
            Ok(Parsed::Message(view)) => Some(view.head().store_timestamp),
            _ => fallback,
        }
    }

    fn retire_batch(&mut self, now: Now, reader: &dyn StoreRead, base: u64, cursor: usize) {
        let log_min = base + self.config.segment_size;
        let mut slot = cursor;
        while slot < cursor + RETIRE_BATCH {
            match self.queues.retire_below(slot, log_min, reader, &mut self.ops) {
                Ok(Some(moved)) => {
                    self.retention.entries_retired += moved;
                    slot += 1;
                }
                Ok(None) => {
                    let group = self.ops.new_group();
                    self.log.remove_oldest(&mut self.ops, base, Purpose::Group(group));
                    self.index.retire_below(log_min, &mut self.ops, Purpose::Group(group));
                    self.retention.phase = RetentionPhase::ExpectRemoved { group, base };
                    self.retention.next_step = now.mono.plus_millis(self.config.retention.delete_interval_ms);
                    return;
                }
                Err(error) => {
                    // A queue file that cannot be read now is tried again a second later;
                    // the segment stays until every queue has moved past it.
                    tracing::warn!(%error, "retention: reading a consume queue failed; retrying in 1 s");
                    self.retention.phase = RetentionPhase::Retiring { base, cursor: slot };
                    self.retention.next_step = now.mono.plus_millis(1000);
                    return;
                }
            }
        }
        self.retention.phase = RetentionPhase::Retiring { base, cursor: slot };
        self.retention.next_step = now.mono.plus_millis(RETIRE_PAUSE_MS);
    }
}
