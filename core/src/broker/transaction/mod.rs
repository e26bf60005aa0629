//! Transaction messages in the broker: the service that reads the half queue and writes
//! the op records that end a transaction. The table and its crash-safety argument are in
//! `table.rs`, END_TRANSACTION in `end.rs`, check-back in `check.rs`, the replay at boot in
//! `replay.rs`.
//!
//! Only a master runs them: a slave answers END_TRANSACTION with SLAVE_NOT_AVAILABLE.
//! Every `transactionCheckInterval` the service looks at the open transactions: one older
//! than `transactionTimeOut` (by the monotonic clock since this broker read it) gets a
//! copy with its check count raised, and once that copy is fsynced (in either flush mode,
//! so a power loss cannot undo a check that went out), CHECK_TRANSACTION_STATE goes to a
//! live producer of its group. A check is counted only when sent. After
//! `transactionCheckMax` checks (or the age limit) the transaction is discarded into
//! `TRANS_CHECK_MAX_TIME_TOPIC`.

use bytes::Bytes;

mod check;
mod end;
mod replay;
pub mod table;

use crate::broker::consumers::Consumers;
use crate::broker::shared::{copy_request, real_destination, record_phys, Shared};
use crate::io::{MonoNanos, Now, UnixMillis};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{parse_record, sys_flag, Parsed, RecordView};
use crate::protocol::wire_long;

use crate::store::{AppendRequest, PhysOffset, QueueOffset};
use table::{EndKind, HalfEntry, TransactionTable, OP_HALF_PHYS, OP_KIND, OP_TAG, SYS_TRANS_GROUP};
pub use table::{TransactionConfig, CHECK_MAX_TOPIC, HALF_TOPIC, OP_TOPIC};

/// Pause before retrying when the store is not ready or a read failed.
const RETRY_MS: u64 = 100;
/// Half-queue entries read per wake-up.
pub(super) const READ_PER_WAKE: u64 = 4_096;
/// Open transactions looked at per check round before yielding.
const CHECKS_PER_WAKE: usize = 10_000;
/// A record that fails to read this many times in a row is skipped (logged).
const READ_ATTEMPTS: u32 = 50;

/// An op record with a copy, replayed at boot: (kind, the half message's CommitLog offset,
/// where its copy should be).
type ReplayedEnd = (EndKind, PhysOffset, PhysOffset);

/// How reading the half queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Everything readable was read.
    CaughtUp,
    /// The budget ran out first.
    More,
    /// A read failed: try again shortly.
    Retry,
}

/// The check-back service's state beside the table.
#[derive(Debug)]
pub(super) struct TransactionService {
    /// `None` until the replay at boot is done.
    pub(super) table: Option<TransactionTable>,
    wake_at: Option<MonoNanos>,
    next_check: MonoNanos,
    /// Where a check round yielded (the next origin to look at).
    check_from: Option<u64>,
    /// Rotates checks over a group's producers.
    producer_cursor: usize,
    /// Failed reads per (queue, offset): a record that stays unreadable is skipped in the
    /// end; one bad read (a flipped bit) must not lose a transaction.
    read_failures: std::collections::BTreeMap<(&'static str, u64), u32>,
    /// Commits and discards replayed at boot whose copies are still to be found, by origin.
    verify: std::collections::BTreeMap<u64, Vec<ReplayedEnd>>,
    /// The CommitLog's end when the broker started: nothing recovered lies beyond it.
    boot_log_end: PhysOffset,
    /// ENDs that arrived before they could be carried out.
    held: end::HeldEnds,
    /// Counters: checks sent, commits, rollbacks, discards.
    pub(super) stats: TransactionStats,
}

/// What the transaction service did since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransactionStats {
    /// CHECK_TRANSACTION_STATE requests sent.
    pub checks_sent: u64,
    /// Transactions committed (each stored once).
    pub committed: u64,
    /// Transactions rolled back.
    pub rolled_back: u64,
    /// Transactions discarded after their last check.
    pub discarded: u64,
    /// Commits or discards redone at boot because their copy was lost in a crash.
    pub redone: u64,
}

impl TransactionService {
    pub(super) fn new(now: Now, check_interval_ms: u64, boot_log_end: PhysOffset) -> Self {
        Self {
            table: None,
            wake_at: Some(now.mono),
            next_check: now.mono.plus_millis(check_interval_ms),
            check_from: None,
            producer_cursor: 0,
            read_failures: std::collections::BTreeMap::new(),
            verify: std::collections::BTreeMap::new(),
            boot_log_end,
            held: end::HeldEnds::default(),
            stats: TransactionStats::default(),
        }
    }

    /// Wake the service within `RETRY_MS` (a held END to try again).
    pub(super) fn wake_soon(&mut self, now: Now) {
        let at = now.mono.plus_millis(RETRY_MS);
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// When the service next needs a timeout: a wake-up or the next check round.
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        let check = self.table.is_some().then_some(self.next_check);
        self.wake_at.into_iter().chain(check).min()
    }
}

/// A half message as read, with what END_TRANSACTION and checks need from it.
pub(super) struct HalfRecord {
    pub(super) record: Bytes,
}

impl HalfRecord {
    pub(super) fn view(&self) -> Option<RecordView<'_>> {
        match parse_record(&self.record) {
            Ok(Parsed::Message(view)) => Some(view),
            _ => None,
        }
    }
}

/// The transaction's origin and check count that a half-queue record carries.
pub(super) fn half_entry(view: &RecordView<'_>, offset: u64, size: u32) -> HalfEntry {
    let number = |key: &str| {
        properties::find(view.record.properties, key)
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    HalfEntry {
        offset,
        phys: record_phys(view),
        size,
        origin: number(keys::TRAN_PREPARED_QUEUE_OFFSET).unwrap_or(offset),
        checks: number(keys::TRANSACTION_CHECK_TIMES).map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX)),
        group: properties::find(view.record.properties, keys::PGROUP)
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .unwrap_or_default(),
        stored_at: UnixMillis(view.head().store_timestamp),
        immunity_ms: number(keys::CHECK_IMMUNITY_TIME_IN_SECONDS).map_or(0, |s| s.saturating_mul(1_000)),
    }
}

/// The origins an op record's body lists (`"3,17,"`).
fn op_origins(body: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(body).split(',').filter_map(|s| s.trim().parse::<u64>().ok()).collect()
}

impl TransactionService {
    /// Boot (replay), read new half messages, run a due check round (master only).
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, consumers: &mut Consumers, now: Now) {
        let due = self.wake_at.is_some_and(|at| now.mono >= at)
            || (self.table.is_some() && now.mono >= self.next_check);
        if !due {
            return;
        }
        self.wake_at = None;
        if shared.config.broker_id != 0 {
            return;
        }
        if !self.ready(shared, consumers) {
            self.wake_at = Some(now.mono.plus_millis(RETRY_MS));
            return;
        }
        let reading = self.read_half_queue(shared, now, READ_PER_WAKE);
        self.verify_ends(shared, now);
        self.retry_held_ends(shared, consumers, now);
        let replayed = self.table.as_ref().is_some_and(TransactionTable::replayed);
        if now.mono >= self.next_check {
            if !replayed {
                // Checks wait for the replay: until then an open transaction may look ended.
                self.next_check = now.mono.plus_millis(RETRY_MS);
            } else if self.check_round(shared, consumers, now) {
                self.wake_at = Some(now.mono.plus_millis(crate::broker::BATCH_PAUSE_MS));
            } else {
                let interval = shared.config.transaction.check_interval_ms;
                self.next_check = now.mono.plus_millis(interval);
            }
        }
        let again = match reading {
            Reading::CaughtUp => None,
            Reading::More => Some(now.mono.plus_millis(crate::broker::BATCH_PAUSE_MS)),
            Reading::Retry => Some(now.mono.plus_millis(RETRY_MS)),
        };
        let again = if self.verify.is_empty() { again } else { Some(now.mono.plus_millis(RETRY_MS)) };
        if let Some(at) = again {
            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        }
    }

    /// Count a failed read of `offset` in `queue`; true once it has failed so often that it
    /// is skipped.
    fn give_up_reading(&mut self, queue: &'static str, offset: u64, error: &str) -> bool {
        let failures = self.read_failures.entry((queue, offset)).or_insert(0);
        *failures += 1;
        if *failures < READ_ATTEMPTS {
            tracing::debug!(queue, offset, error, "transaction record unreadable; retrying");
            return false;
        }
        tracing::error!(
            queue,
            offset,
            error,
            "transaction record unreadable after {READ_ATTEMPTS} tries; skipped"
        );
        self.read_failures.remove(&(queue, offset));
        true
    }

    /// After an input: wake the service if the half queue grew, and send the checks whose
    /// copies became durable; move the checkpoint.
    pub(super) fn settle(
        &mut self,
        shared: &mut Shared,
        consumers: &mut Consumers,
        now: Now,
        durable_end: PhysOffset,
    ) {
        let Some(table) = self.table.as_mut() else { return };
        let ready = table.settle(durable_end);
        if let Some((half_low, op_low)) = table.take_checkpoint() {
            consumers.commit_offset(SYS_TRANS_GROUP, HALF_TOPIC, 0, wire_long(half_low));
            consumers.commit_offset(SYS_TRANS_GROUP, OP_TOPIC, 0, wire_long(op_low));
        }
        let readable = shared.store.readable_next(HALF_TOPIC, 0).map_or(0, |n| n.0);
        if readable > table.half_next() && self.wake_at.is_none() {
            self.wake_at = Some(now.mono);
        }
        for (origin, offset) in ready {
            self.send_check(shared, consumers, origin, offset);
        }
    }

    /// Read readable half-queue entries into the table, up to `budget`.
    pub(super) fn read_half_queue(&mut self, shared: &mut Shared, now: Now, budget: u64) -> Reading {
        let timeout = shared.config.transaction.timeout_ms;
        let mut read = 0;
        let min = shared.store.queue_offsets(HALF_TOPIC, 0).map_or(0, |(min, _)| min.0);
        if let Some(table) = self.table.as_mut() {
            let skipped = table.skip_half_to(min);
            if skipped > 0 {
                tracing::warn!(skipped, "half messages deleted by retention before they were read; skipped");
            }
        }
        while read < budget {
            let Some(table) = self.table.as_ref() else { return Reading::CaughtUp };
            let next = table.half_next();
            let want = (budget - read).min(256);
            let Ok(entries) =
                shared.store.read_entries(&*shared.reader, HALF_TOPIC, 0, QueueOffset(next), want)
            else {
                tracing::warn!(next, "half queue unreadable; retrying");
                return Reading::Retry;
            };
            if entries.is_empty() {
                return Reading::CaughtUp;
            }
            if entries.iter().any(|e| e.phys_offset < shared.store.min_phys()) {
                // Retention is moving the queue's minimum past these: read on once it has.
                return Reading::Retry;
            }
            for (offset, entry) in (next..).zip(&entries) {
                let half = match shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size) {
                    Ok(record) => HalfRecord { record },
                    Err(error) => {
                        if self.give_up_reading(HALF_TOPIC, offset, &error.to_string()) {
                            if let Some(table) = self.table.as_mut() {
                                table.skip_half(offset);
                            }
                            continue;
                        }
                        return Reading::Retry;
                    }
                };
                self.read_failures.remove(&(HALF_TOPIC, offset));
                let Some(view) = half.view() else { continue };
                let entry = half_entry(&view, offset, entry.size);
                if let Some(table) = self.table.as_mut() {
                    table.read_half(entry, timeout, now.mono);
                }
            }
            read += entries.len() as u64;
        }
        Reading::More
    }

    /// Write the op record ending `origin` and, for a commit or discard, the copy of the
    /// half message `view` right behind it (one append, so a crash leaves a prefix). Returns
    /// the op record's queue offset and the CommitLog end.
    pub(super) fn append_end(
        &mut self,
        shared: &mut Shared,
        now: Now,
        view: &RecordView<'_>,
        origin: u64,
        kind: EndKind,
    ) -> Result<(u64, PhysOffset), crate::store::StoreError> {
        let half_phys = record_phys(view);
        let op_body = format!("{origin},");
        let op_props = properties::encode(&[
            (keys::TAGS, OP_TAG),
            (keys::WAIT, "false"),
            (OP_KIND, kind.as_str()),
            (OP_HALF_PHYS, &half_phys.to_string()),
        ]);
        let op = AppendRequest::broker_record(
            OP_TOPIC,
            0,
            now,
            shared.config.advertised_addr,
            op_body.as_bytes(),
            &op_props,
        );
        let copy_props = properties::without(view.record.properties, &[keys::CRC32]);
        let destination = match kind {
            EndKind::Commit => real_destination(view.record.properties),
            EndKind::Discard => Some((CHECK_MAX_TOPIC, 0)),
            EndKind::Rollback => None,
        };
        let tx_type = if kind == EndKind::Commit { sys_flag::TRANSACTION_COMMIT } else { 0 };
        let copy = destination.map(|(topic, queue_id)| {
            let request = copy_request(view, topic, queue_id, &copy_props);
            AppendRequest {
                sys_flag: (request.sys_flag & !sys_flag::TRANSACTION_MASK) | tx_type,
                prepared_transaction_offset: wire_long(half_phys.0),
                ..request
            }
        });
        if kind.has_copy() && copy.is_none() {
            tracing::error!(origin, "half message without REAL_TOPIC/REAL_QID; ended without a copy");
        }
        let appended = match copy {
            Some(copy) => shared.store.append_batch(now, &[op, copy])?,
            None => vec![shared.store.append(now, &op)?],
        };
        shared.stats.messages_put += appended.len() as u64;
        let op_offset = appended.first().and_then(|a| a.queue_offset).map_or(0, |q| q.0);
        let end = appended.last().map_or(PhysOffset(0), crate::store::Appended::end);
        let real_topic =
            || real_destination(view.record.properties).map_or_else(String::new, |(t, _)| t.to_owned());
        match kind {
            EndKind::Commit => {
                self.stats.committed += 1;
                *shared.traffic.commits.entry(real_topic()) += 1;
            }
            EndKind::Rollback => {
                self.stats.rolled_back += 1;
                *shared.traffic.rollbacks.entry(real_topic()) += 1;
            }
            EndKind::Discard => self.stats.discarded += 1,
        }
        if let Some(table) = self.table.as_mut() {
            table.end(origin, op_offset, end);
        }
        Ok((op_offset, end))
    }
}
