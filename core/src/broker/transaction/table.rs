//! Transaction messages: the table of open transactions, and what makes it crash-safe.
//!
//! A half message waits in [`HALF_TOPIC`] queue 0 until END_TRANSACTION commits it (a copy
//! goes to its real topic) or rolls it back. Each resolution is an op record in
//! [`OP_TOPIC`] (RocketMQ's shape: tag `d`, body `"offset,"`). A check-back re-appends a
//! copy of the half message with `TRANSACTION_CHECK_TIMES` + 1 and
//! `TRAN_PREPARED_QUEUE_OFFSET` naming the first half offset, its *origin*, as RocketMQ
//! does; the origin is the transaction's identity throughout, so a commit that arrives
//! twice (the producer's own and a check's answer, or one repeated after a timeout) is
//! stored once.
//!
//! What survives a crash: the half queue from a low-water offset, and the op queue from an
//! offset such that every op record about a transaction still in the half queue is
//! replayed. Both are persisted as the consume offsets of `CID_RMQ_SYS_TRANS`, and only
//! ever cover resolutions and copies that are durable. A commit writes its op record first
//! and the committed copy right behind it, in one append; after a crash, an op record
//! whose copy did not survive is redone, so a commit is never lost nor stored twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::io::{MonoNanos, UnixMillis};
use crate::store::PhysOffset;

/// Where half messages wait.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where resolutions are recorded.
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where a half message goes after its last unanswered check; never delivered.
pub const CHECK_MAX_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The internal group whose consume offsets on the half and op queues are the checkpoint.
pub const SYS_TRANS_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// The op records' tag (`TransactionalMessageUtil.REMOVE_TAG`).
pub const OP_TAG: &str = "d";
/// Op-record property: how the transaction ended (`commit`, `rollback`, `discard`).
pub const OP_KIND: &str = "KEEL_TX_END";
/// Op-record property: the CommitLog offset of the half message a commit or discard copied.
pub const OP_HALF_PHYS: &str = "KEEL_TX_HALF";

/// Transaction settings (RocketMQ's names in the broker config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `transactionTimeOut`: a half message younger than this is not checked.
    pub timeout_ms: u64,
    /// `transactionCheckInterval`: how often open transactions are checked.
    pub check_interval_ms: u64,
    /// `transactionCheckMax`: checks sent before a transaction is discarded.
    pub check_max: u32,
    /// `rejectTransactionMessage`: refuse half messages (NO_PERMISSION).
    pub reject: bool,
    /// A transaction open this long is discarded even if no check could be sent (no live
    /// producer): RocketMQ uses `fileReservedTime`, 72 h.
    pub max_age_ms: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 6_000,
            check_interval_ms: 30_000,
            check_max: 15,
            reject: false,
            max_age_ms: 72 * 3_600 * 1_000,
        }
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// Committed: a copy is in the real topic.
    Commit,
    /// Rolled back: nothing is delivered.
    Rollback,
    /// Discarded after its last check: a copy is in [`CHECK_MAX_TOPIC`].
    Discard,
}

impl EndKind {
    /// The op-record value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::Discard => "discard",
        }
    }

    /// Parse an op-record value; RocketMQ's own op records carry none and count as rollbacks.
    #[must_use]
    pub fn parse(value: Option<&[u8]>) -> Self {
        match value {
            Some(b"commit") => Self::Commit,
            Some(b"discard") => Self::Discard,
            _ => Self::Rollback,
        }
    }

    /// Whether the op record is followed by a copy of the half message.
    #[must_use]
    pub fn has_copy(self) -> bool {
        !matches!(self, Self::Rollback)
    }
}

/// Where one half message (an original or a check copy) sits: its half-queue offset and
/// its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfCopy {
    /// Half-queue offset.
    pub offset: u64,
    /// CommitLog offset of the record.
    pub phys: PhysOffset,
    /// Record size.
    pub size: u32,
}

/// One half-queue entry, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfEntry {
    /// Its half-queue offset.
    pub offset: u64,
    /// CommitLog offset of its record.
    pub phys: PhysOffset,
    /// Record size.
    pub size: u32,
    /// The transaction's first half offset (`TRAN_PREPARED_QUEUE_OFFSET`, else its own).
    pub origin: u64,
    /// Checks already sent (`TRANSACTION_CHECK_TIMES`).
    pub checks: u32,
    /// Producer group (`PGROUP`).
    pub group: String,
    /// Broker wall clock when stored.
    pub stored_at: UnixMillis,
    /// `CHECK_IMMUNITY_TIME_IN_SECONDS`, in ms.
    pub immunity_ms: u64,
}

impl HalfEntry {
    /// Where this entry sits.
    #[must_use]
    pub fn copy(&self) -> HalfCopy {
        HalfCopy { offset: self.offset, phys: self.phys, size: self.size }
    }
}

/// An open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTx {
    /// Its newest half-queue copy.
    pub latest: HalfCopy,
    /// The lowest half offset a restart must read to find it again (its newest durable copy).
    keep_from: u64,
    /// Checks sent.
    pub checks: u32,
    /// Producer group.
    pub group: String,
    /// When stored (broker wall clock), for the age limit.
    pub stored_at: UnixMillis,
    /// Not checked before then (`None`: checked already, due at every round).
    first_check: Option<MonoNanos>,
}

impl OpenTx {
    /// Whether a check may be sent now: never before `transactionTimeOut` (or the message's
    /// immunity) has passed since this broker first read the half message. That is by the
    /// monotonic clock, so a wall-clock step neither hastens nor holds a check; after a
    /// restart a recovered transaction waits one timeout again (its age by the wall clock
    /// would be wrong by any step in between).
    #[must_use]
    pub fn check_due(&self, now_mono: MonoNanos) -> bool {
        self.first_check.is_none_or(|at| now_mono >= at)
    }
}

/// What a half-queue entry means to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A new open transaction.
    Opened,
    /// A newer copy of an open one.
    Copy,
    /// It belongs to a transaction already ended.
    Ended,
}

/// The open transactions and the checkpoint bookkeeping.
#[derive(Debug, Default)]
pub struct TransactionTable {
    open: BTreeMap<u64, OpenTx>,
    /// The next half-queue offset to read.
    half_next: u64,
    /// The op-queue offset after the last op record known.
    op_next: u64,
    /// Origins ended by op records replayed at boot, until the half queue is read past them.
    ended_at_boot: BTreeSet<u64>,
    /// The half-queue end when replay began: entries below it may be ended at boot.
    boot_half_end: u64,
    /// Op records that a restart must still replay: (op offset, half end when written).
    op_log: VecDeque<(u64, u64)>,
    /// Ends not yet durable: (CommitLog end, the half offset they keep).
    unsettled: VecDeque<(PhysOffset, u64)>,
    /// Check copies not yet durable: (CommitLog end, origin, copy offset).
    copies: VecDeque<(PhysOffset, u64, u64)>,
    /// The checkpoint last reported: (half low water, op low water).
    reported: (u64, u64),
}

impl TransactionTable {
    /// A table resuming at `half_from` / `op_from` (the persisted checkpoint, clamped into
    /// the queues by the caller); the half queue ended at `half_end` when the broker started.
    #[must_use]
    pub fn new(half_from: u64, op_from: u64, half_end: u64) -> Self {
        Self {
            half_next: half_from,
            op_next: op_from,
            boot_half_end: half_end,
            reported: (half_from, op_from),
            ..Self::default()
        }
    }

    /// The next half-queue offset to read.
    #[must_use]
    pub fn half_next(&self) -> u64 {
        self.half_next
    }

    /// Whether every half message stored before the broker started has been read (until
    /// then an origin not open may still be open).
    #[must_use]
    pub fn replayed(&self) -> bool {
        self.half_next >= self.boot_half_end
    }

    /// The next op-queue offset (to replay at boot, or to be written).
    #[must_use]
    pub fn op_next(&self) -> u64 {
        self.op_next
    }

    /// How many transactions are open.
    #[must_use]
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// An open transaction by origin.
    #[must_use]
    pub fn get(&self, origin: u64) -> Option<&OpenTx> {
        self.open.get(&origin)
    }

    /// Open transactions in origin order.
    pub fn iter_open(&self) -> impl Iterator<Item = (u64, &OpenTx)> {
        self.open.iter().map(|(origin, tx)| (*origin, tx))
    }

    /// Replay at boot: the op record at `op_offset` ended `origins` (every copy of them
    /// lies below the half queue's end at boot).
    pub fn replay_op(&mut self, op_offset: u64, origins: &[u64]) {
        self.ended_at_boot.extend(origins);
        self.op_log.push_back((op_offset, self.boot_half_end));
        self.op_next = self.op_next.max(op_offset + 1);
    }

    /// Whether `origin` was ended by a replayed op record.
    #[must_use]
    pub fn ended_at_boot(&self, origin: u64) -> bool {
        self.ended_at_boot.contains(&origin)
    }

    /// A half-queue entry was read (in offset order) at `now_mono`.
    pub fn read_half(&mut self, entry: HalfEntry, timeout_ms: u64, now_mono: MonoNanos) -> Seen {
        self.half_next = self.half_next.max(entry.offset + 1);
        let before_crash = entry.offset < self.boot_half_end;
        let ended = self.ended_at_boot.contains(&entry.origin);
        if self.half_next >= self.boot_half_end {
            // Every entry stored before the crash has been read: no later one belongs to a
            // transaction ended by a replayed op record.
            self.ended_at_boot.clear();
        }
        if ended {
            return Seen::Ended;
        }
        if let Some(tx) = self.open.get_mut(&entry.origin) {
            if entry.offset > tx.latest.offset {
                tx.latest = entry.copy();
                tx.checks = tx.checks.max(entry.checks);
                tx.keep_from = entry.offset;
            }
            return Seen::Copy;
        }
        let copy = entry.origin != entry.offset;
        if copy && !before_crash {
            // A check copy of ours, of a transaction that ended since.
            return Seen::Ended;
        }
        // A new half message, or (replaying) a copy standing for an origin below where
        // reading started.
        let wait = timeout_ms.max(entry.immunity_ms);
        let checked = entry.checks > 0;
        let tx = OpenTx {
            latest: entry.copy(),
            keep_from: entry.offset,
            checks: entry.checks,
            group: entry.group,
            stored_at: entry.stored_at,
            first_check: (!checked).then(|| now_mono.plus_millis(wait)),
        };
        self.open.insert(entry.origin, tx);
        if copy {
            Seen::Copy
        } else {
            Seen::Opened
        }
    }

    /// Retention deleted the CommitLog below `log_min`: open transactions whose newest
    /// half message lay there can no longer be checked or committed and are forgotten
    /// (a restart does not read them back either: the half queue's minimum moved past
    /// them). Returns how many.
    pub fn forget_deleted(&mut self, log_min: PhysOffset) -> usize {
        let before = self.open.len();
        self.open.retain(|_, tx| tx.latest.phys >= log_min);
        before - self.open.len()
    }

    /// Half-queue entries below `min` are gone (retention): reading goes on from `min`.
    /// Returns how many were skipped.
    pub fn skip_half_to(&mut self, min: u64) -> u64 {
        let skipped = min.saturating_sub(self.half_next);
        self.half_next = self.half_next.max(min);
        skipped
    }

    /// The entry at `offset` could not be read and is given up on.
    pub fn skip_half(&mut self, offset: u64) {
        self.half_next = self.half_next.max(offset + 1);
    }

    /// End an open transaction: its op record went to the op queue at `op_offset`, and the
    /// op record (and copy) reach the CommitLog up to `end`. `None` if it was not open.
    pub fn end(&mut self, origin: u64, op_offset: u64, end: PhysOffset) -> Option<OpenTx> {
        let tx = self.open.remove(&origin)?;
        self.unsettled.push_back((end, tx.keep_from));
        self.op_log.push_back((op_offset, self.half_next.max(tx.latest.offset + 1)));
        self.op_next = self.op_next.max(op_offset + 1);
        Some(tx)
    }

    /// A check copy of `origin` was appended as `copy`, durable once the CommitLog reaches
    /// `end`.
    pub fn copied(&mut self, origin: u64, copy: HalfCopy, end: PhysOffset) {
        if let Some(tx) = self.open.get_mut(&origin) {
            tx.latest = copy;
            tx.checks += 1;
            self.copies.push_back((end, origin, copy.offset));
        }
    }

    /// The CommitLog is durable up to `durable_end`: the check copies that became durable,
    /// as (origin, copy offset), to be sent now.
    pub fn settle(&mut self, durable_end: PhysOffset) -> Vec<(u64, u64)> {
        while self.unsettled.front().is_some_and(|(end, _)| *end <= durable_end) {
            self.unsettled.pop_front();
        }
        let mut ready = Vec::new();
        while let Some(&(end, origin, offset)) = self.copies.front() {
            if end > durable_end {
                break;
            }
            self.copies.pop_front();
            if let Some(tx) = self.open.get_mut(&origin) {
                if tx.latest.offset == offset {
                    tx.keep_from = offset;
                }
                ready.push((origin, offset));
            }
        }
        ready
    }

    /// The half queue's low water: a restart reads from here.
    fn half_low(&self) -> u64 {
        let open = self.open.values().map(|tx| tx.keep_from);
        let unsettled = self.unsettled.iter().map(|(_, keep)| *keep);
        open.chain(unsettled).chain(Some(self.half_next)).min().unwrap_or(self.half_next)
    }

    /// The checkpoint, if it moved since last asked: (half low water, op low water).
    pub fn take_checkpoint(&mut self) -> Option<(u64, u64)> {
        let half_low = self.half_low();
        while self.op_log.front().is_some_and(|(_, half_end)| *half_end <= half_low) {
            self.op_log.pop_front();
        }
        let op_low = self.op_log.front().map_or(self.op_next, |(offset, _)| *offset);
        let now = (half_low, op_low);
        if now == self.reported {
            return None;
        }
        self.reported = now;
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, origin: u64, checks: u32) -> HalfEntry {
        HalfEntry {
            offset,
            phys: PhysOffset(offset * 100),
            size: 100,
            origin,
            checks,
            group: "pg".into(),
            stored_at: UnixMillis(1_000),
            immunity_ms: 0,
        }
    }

    #[test]
    fn the_checkpoint_passes_an_end_only_once_it_is_durable() {
        let mut table = TransactionTable::new(0, 0, 0);
        let mono = MonoNanos(0);
        for offset in 0..3 {
            assert_eq!(table.read_half(entry(offset, offset, 0), 6_000, mono), Seen::Opened);
        }
        assert_eq!(table.take_checkpoint(), None, "nothing ended yet");
        table.end(0, 0, PhysOffset(5_000));
        assert_eq!(table.take_checkpoint(), None, "an end not yet durable moved the checkpoint");
        table.settle(PhysOffset(4_999));
        assert_eq!(table.take_checkpoint(), None);
        table.settle(PhysOffset(5_000));
        // Half offset 1 is still open; the op record about 0 need not be replayed.
        assert_eq!(table.take_checkpoint(), Some((1, 0)), "op record 0 is about half 0 < 3: kept");
        table.end(1, 1, PhysOffset(6_000));
        table.end(2, 2, PhysOffset(7_000));
        table.settle(PhysOffset(7_000));
        assert_eq!(table.take_checkpoint(), Some((3, 3)));
    }

    #[test]
    fn a_check_copy_moves_the_low_water_once_durable_and_counts_the_check() {
        let mut table = TransactionTable::new(0, 0, 0);
        let mono = MonoNanos(0);
        table.read_half(entry(0, 0, 0), 6_000, mono);
        table.read_half(entry(1, 1, 0), 6_000, mono);
        table.end(1, 0, PhysOffset(900));
        table.copied(0, HalfCopy { offset: 2, phys: PhysOffset(200), size: 100 }, PhysOffset(1_000));
        // The copy is read back from the queue: still the same transaction.
        assert_eq!(table.read_half(entry(2, 0, 1), 6_000, mono), Seen::Copy);
        assert_eq!(table.get(0).map(|tx| (tx.latest.offset, tx.checks)), Some((2, 1)));
        assert_eq!(table.settle(PhysOffset(999)), vec![]);
        assert_eq!(table.take_checkpoint(), None, "low water moved before the copy was durable");
        assert_eq!(
            table.settle(PhysOffset(1_000)),
            vec![(0, 2)],
            "the check goes out once its copy is durable"
        );
        assert_eq!(table.take_checkpoint(), Some((2, 1)), "and the op record about 1 is no longer needed");
    }

    #[test]
    fn replay_skips_ended_transactions_and_a_copy_stands_for_its_origin() {
        // Persisted: half from 5, op from 0; the half queue held 5..9 at the crash.
        let mut table = TransactionTable::new(5, 0, 9);
        table.replay_op(0, &[6]);
        table.replay_op(1, &[2]);
        let boot = MonoNanos(1_000_000_000);
        assert_eq!(table.read_half(entry(5, 5, 0), 6_000, boot), Seen::Opened);
        assert_eq!(table.read_half(entry(6, 6, 0), 6_000, boot), Seen::Ended);
        assert_eq!(table.read_half(entry(7, 2, 1), 6_000, boot), Seen::Ended, "a copy of an ended origin");
        assert_eq!(table.read_half(entry(8, 3, 2), 6_000, boot), Seen::Copy, "a copy of an origin below 5");
        assert_eq!(table.iter_open().map(|(o, _)| o).collect::<Vec<_>>(), [3, 5]);
        // A recovered transaction waits one timeout from the replay; a checked copy is due.
        let tx = table.get(5).cloned().expect("open");
        assert!(!tx.check_due(boot.plus_millis(5_999)));
        assert!(tx.check_due(boot.plus_millis(6_000)));
        assert!(table.get(3).is_some_and(|tx| tx.check_due(boot)));
        // After the replay, a copy of an ended transaction is recognised as ours.
        assert_eq!(table.read_half(entry(9, 9, 0), 6_000, boot), Seen::Opened);
        table.end(9, 2, PhysOffset(10_000));
        assert_eq!(table.read_half(entry(10, 9, 1), 6_000, boot), Seen::Ended);
    }

    #[test]
    fn immunity_replaces_a_shorter_timeout() {
        let mut table = TransactionTable::new(0, 0, 0);
        let seen = MonoNanos(1_000_000_000);
        table.read_half(HalfEntry { immunity_ms: 20_000, ..entry(0, 0, 0) }, 6_000, seen);
        let tx = table.get(0).cloned().expect("open");
        assert!(!tx.check_due(seen.plus_millis(19_999)));
        assert!(tx.check_due(seen.plus_millis(20_000)));
    }
}
