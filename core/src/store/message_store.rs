//! [`Store`]: the message store's state machine.

use super::checkpoint::Checkpoint;
use super::commitlog::CommitLog;
use super::consume_queue::entry_tags_code;
use super::consume_queue::CqEntry;
use super::index::IndexSet;
use super::ops::{Completed, GroupId, OpQueue, Purpose};
use super::paths;
use super::queue_table::QueueTable;
use super::retention::Retention;
use super::{AppendRequest, Appended, FlushMode, PhysOffset, QueueOffset, StoreConfig, StoreError};
use crate::io::{DiskError, DiskOp, FilePath, IoId, MonoNanos, Now, Output};
use crate::protocol::message::stored::BLANK_MIN_LEN;

/// Files and directories to sync at boot above which one `SyncAll` replaces them.
const SYNC_ALL_ABOVE: usize = 256;

/// Topics longer than this are refused (RocketMQ allows 255 for retry and DLQ topics).
const MAX_TOPIC_LEN: usize = 255;

/// What the store is doing, named after what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Recovery fix-ups and their syncs are running.
    ExpectFixupsDone(GroupId, Checkpoint),
    /// The fresh checkpoint and the abort marker are being written.
    ExpectBootMarkersDone(GroupId),
    /// Accepting appends.
    Running,
    /// Shutting down: waiting for in-flight rounds, then a final flush and checkpoint.
    ExpectShutdownRounds,
    /// Shutting down: the abort marker is being removed.
    ExpectAbortRemoved(GroupId),
    /// Shut down cleanly.
    Stopped,
    /// A disk operation failed while shutting down; the process exits and the next start
    /// recovers.
    Failed(String),
    /// A disk operation failed while running: writes are refused, the operations in flight
    /// drain, then the broker rebuilds the store in place ([`Store::rebuild`]).
    Repairing(Repair),
}

/// A store waiting to be rebuilt after a failed disk operation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Repair {
    /// The CommitLog is trusted below this offset only.
    cut: u64,
    /// When the rebuild may be tried.
    retry_at: MonoNanos,
    /// It began while booting: `flushed_end` meant nothing yet (recovery reads what the page
    /// cache holds, so the recovered end stays the cut).
    while_booting: bool,
    /// Rebuilds abandoned because recovery ended short of the cut, and where the last ended.
    short_reads: u32,
    last_short_end: Option<u64>,
    /// A sync of CommitLog data failed while booting: pages the last recovery read may be
    /// gone, so less of the log is known whole.
    log_pages_dropped: bool,
}

/// Where a repairing store's log is known whole: the cut (written, or synced, below it; or
/// read whole by the last recovery); but after a failed sync of the log while booting, only
/// what is known synced, by the checkpoint on disk or by the store replaced before (the page
/// cache may have dropped the rest of what the last recovery read).
fn whole_below(repair: &Repair, report: &super::RecoveryReport, durable_floor: u64) -> u64 {
    if repair.log_pages_dropped {
        report.checkpoint.map_or(0, |c| c.log_durable_end).max(durable_floor).min(repair.cut)
    } else {
        repair.cut
    }
}

/// The longest pause between rebuilds of a store whose disk keeps failing.
const REPAIR_BACKOFF_MAX_MS: u64 = 10_000;

/// A rebuild that reads the log as damaged below the cut is tried again this far apart
/// until two reads agree, and where the log is known whole until they have agreed after this
/// many tries; past that many, reads that still disagree are tried again with the repair's
/// backoff.
const SHORT_REBUILD_TRIES: u32 = 10;
const SHORT_REBUILD_PAUSE_MS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlushRound {
    group: GroupId,
    /// Log end the round's syncs cover.
    target: u64,
    /// Store timestamp of the last record below `target`.
    timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointRound {
    /// ConsumeQueue files are being synced; entries of records below `queue_target` are
    /// covered once they finish.
    ExpectQueuesSynced { group: GroupId, queue_target: u64, queue_timestamp: i64 },
    /// The checkpoint file is being written and synced.
    ExpectWritten { group: GroupId, checkpoint: Checkpoint },
}

/// The message store. See the [module docs](super) for its life cycle.
#[derive(Debug)]
pub struct Store {
    pub(super) config: StoreConfig,
    pub(super) log: CommitLog,
    pub(super) queues: QueueTable,
    /// The IndexFile: messages by key.
    pub(super) index: IndexSet,
    pub(super) ops: OpQueue,
    phase: Phase,
    pub(super) written_end: u64,
    pub(super) flushed_end: u64,
    flushed_timestamp: i64,
    flush: Option<FlushRound>,
    checkpoint: Option<CheckpointRound>,
    last_checkpoint: Checkpoint,
    next_flush_at: MonoNanos,
    next_checkpoint_at: MonoNanos,
    /// A shutdown was asked for while booting: it starts once boot completes.
    shutdown_requested: bool,
    pub(super) retention: Retention,
    /// How long to wait before the next rebuild if this store fails too: 0 until a disk
    /// error, doubled by each rebuild that fails again, cleared by a checkpoint written.
    repair_backoff_ms: u64,
    /// The log is known synced below this, by a store this one replaced in place (its
    /// `flushed_end`), whatever the checkpoint on disk says.
    durable_floor: u64,
    /// A slave's store: only its master's log is appended ([`Store::append_replicated`]).
    replica: bool,
    /// Consumers and the broker's own readers of queues see nothing past this (a master in
    /// controller mode: what every SyncStateSet member holds); `None`: no such limit.
    pub(super) confirmed_limit: Option<u64>,
}

impl Store {
    /// A store whose state recovery built, which first runs `fixups` (then syncs of
    /// everything recovery touched), then writes `checkpoint` and the abort marker.
    pub(super) fn boot(
        config: StoreConfig,
        log: CommitLog,
        (queues, index): (QueueTable, IndexSet),
        fixups: Vec<DiskOp>,
        checkpoint: Checkpoint,
        now: Now,
    ) -> Self {
        let end = log.write_pos();
        let mut store = Self {
            next_flush_at: now.mono.plus_millis(flush_interval(&config)),
            next_checkpoint_at: now.mono.plus_millis(config.checkpoint_interval_ms),
            config,
            log,
            queues,
            index,
            ops: OpQueue::default(),
            phase: Phase::Running,
            written_end: end,
            // Nothing counts as durable until recovery's syncs are done.
            flushed_end: 0,
            flushed_timestamp: 0,
            flush: None,
            checkpoint: None,
            last_checkpoint: Checkpoint::default(),
            shutdown_requested: false,
            retention: Retention::new(now),
            confirmed_limit: None,
            repair_backoff_ms: 0,
            durable_floor: 0,
            replica: false,
        };
        let group = store.ops.new_group();
        // After a crash every queue tail and directory recovery touched must be synced:
        // past a few hundred files, one syncfs costs one journal commit instead of one each.
        // Queue directories' syncs are folded into it; the root's stays where it is (it
        // orders a withdrawn checkpoint before the rebuild's removals).
        let folded = |op: &DiskOp| matches!(op, DiskOp::SyncDir { dir } if !dir.is_root());
        let sync_all =
            fixups.iter().filter(|op| folded(op)).count() + store.queues.unsynced_files() > SYNC_ALL_ABOVE;
        for op in fixups {
            if !(sync_all && folded(&op)) {
                store.ops.push(op, Purpose::Group(group));
            }
        }
        if sync_all {
            store.queues.emit_staged(&mut store.ops);
            store.index.emit_staged(&mut store.ops);
            store.log.emit_staged(&mut store.ops);
            store.ops.push(DiskOp::SyncAll, Purpose::Group(group));
            store.queues.forget_unsynced();
            store.index.forget_unsynced();
            store.log.forget_unsynced();
        }
        store.queues.issue_sync(&mut store.ops, Purpose::Group(group));
        store.index.issue_sync(&mut store.ops, Purpose::Group(group));
        store.log.issue_sync(&mut store.ops, Purpose::Group(group));
        store.phase = Phase::ExpectFixupsDone(group, checkpoint);
        if store.ops.group_is_empty(group) {
            store.group_done(group);
        }
        store
    }

    /// Recover a store from what is on disk (a fresh store if nothing is). The store then
    /// emits recovery's fix-ups and becomes ready once they complete.
    pub fn recover(
        config: StoreConfig,
        reader: &dyn crate::io::StoreRead,
        now: Now,
    ) -> Result<(Self, super::RecoveryReport), super::RecoveryError> {
        super::recovery::recover(config, reader, now, None)
    }

    /// Whether appends are accepted.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Whether a shutdown has completed (the abort marker is gone).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// Whether a disk operation failed and the store waits to be rebuilt in place.
    #[must_use]
    pub fn is_repairing(&self) -> bool {
        matches!(self.phase, Phase::Repairing(_))
    }

    /// Whether the store is ready to be rebuilt ([`rebuild`](Self::rebuild)): it is
    /// repairing, nothing it issued is still in flight, and the retry time has come.
    #[must_use]
    pub fn repair_due(&self, now: MonoNanos) -> bool {
        matches!(&self.phase, Phase::Repairing(r) if now >= r.retry_at) && self.ops.in_flight() == 0
    }

    /// The offset below which a repairing store trusts its CommitLog.
    #[must_use]
    pub fn repair_cut(&self) -> Option<PhysOffset> {
        match &self.phase {
            Phase::Repairing(r) => Some(PhysOffset(r.cut)),
            _ => None,
        }
    }

    /// Recover a new store from disk exactly as a restart would, trusting the CommitLog only
    /// below the cut, to replace this repairing one; `None` (logged, retried later) if
    /// recovery fails or the store is not repairing. The new store runs recovery's fix-ups
    /// and boot markers before it accepts writes, as at a start.
    pub fn rebuild(
        &mut self,
        reader: &dyn crate::io::StoreRead,
        now: Now,
    ) -> Option<(Store, super::RecoveryReport)> {
        let Phase::Repairing(repair) = &mut self.phase else { return None };
        let backoff = (self.repair_backoff_ms * 2).clamp(1_000, REPAIR_BACKOFF_MAX_MS);
        match super::recovery::recover(self.config.clone(), reader, now, Some(repair.cut)) {
            Ok((_, report))
                if report.recovered_end < repair.cut
                    && (repair.last_short_end != Some(report.recovered_end)
                        || (repair.short_reads < SHORT_REBUILD_TRIES
                            && report.recovered_end < whole_below(repair, &report, self.durable_floor))) =>
            {
                // A transient read fault would cut good (even acknowledged) records: a short
                // end is believed only once two reads in a row agree on it, and where the log
                // is known whole only once the tries run out (the disk keeps returning the
                // same damage). Reads that keep disagreeing are flaky, not the log: they are
                // read again, the tries spent backing off as for a failing disk.
                repair.short_reads += 1;
                repair.last_short_end = Some(report.recovered_end);
                tracing::warn!(
                    cut = repair.cut,
                    recovered_end = report.recovered_end,
                    why = report.stopped_because.as_deref().unwrap_or(""),
                    "the rebuild read the log as damaged below the cut; reading again"
                );
                let pause = if repair.short_reads < SHORT_REBUILD_TRIES {
                    SHORT_REBUILD_PAUSE_MS
                } else {
                    self.repair_backoff_ms = backoff;
                    backoff
                };
                repair.retry_at = now.mono.plus_millis(pause);
                None
            }
            Ok((mut store, report)) => {
                store.retention.carry_disk_state(&self.retention);
                store.shutdown_requested = self.shutdown_requested;
                store.durable_floor = self.durable_floor.max(self.flushed_end).min(report.recovered_end);
                store.repair_backoff_ms = backoff;
                store.replica = self.replica;
                Some((store, report))
            }
            Err(error) => {
                tracing::error!(%error, retry_in_ms = backoff, "store repair failed; retrying");
                repair.retry_at = now.mono.plus_millis(backoff);
                self.repair_backoff_ms = backoff;
                None
            }
        }
    }

    /// The failure that stopped the store, if any.
    #[must_use]
    pub fn failure(&self) -> Option<&str> {
        match &self.phase {
            Phase::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    /// The end of the log: where the next record goes (RocketMQ's max physical offset).
    #[must_use]
    pub fn write_pos(&self) -> PhysOffset {
        PhysOffset(self.log.write_pos())
    }

    /// CommitLog bytes whose writes have completed (in the page cache, not yet durable).
    #[must_use]
    pub fn written_end(&self) -> PhysOffset {
        PhysOffset(self.written_end)
    }

    /// CommitLog bytes known durable: every sync covering them has completed.
    #[must_use]
    pub fn flushed_end(&self) -> PhysOffset {
        PhysOffset(self.flushed_end)
    }

    /// The last checkpoint written since this store started.
    #[must_use]
    pub fn last_checkpoint(&self) -> Checkpoint {
        self.last_checkpoint
    }

    /// A queue's (min, next) offsets, if the queue exists.
    #[must_use]
    pub fn queue_offsets(&self, topic: &str, queue_id: i32) -> Option<(QueueOffset, QueueOffset)> {
        self.queues.get(topic, queue_id).map(|q| (QueueOffset(q.min_offset), QueueOffset(q.next_offset)))
    }

    /// Every queue with its (min, next) offsets, in (topic, queue id) order.
    pub fn queues(&self) -> impl Iterator<Item = (&str, i32, QueueOffset, QueueOffset)> {
        self.queues.iter().map(|(t, q, s)| (t, q, QueueOffset(s.min_offset), QueueOffset(s.next_offset)))
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(super) fn check_writable(&self) -> Result<(), StoreError> {
        match &self.phase {
            Phase::Running if self.retention.disk_full => Err(StoreError::DiskFull {
                used_per_mille: self.retention.usage.map_or(1000, |u| u.used_per_mille()),
            }),
            Phase::Running => Ok(()),
            Phase::ExpectFixupsDone(..) | Phase::ExpectBootMarkersDone(_) => Err(StoreError::NotReady),
            Phase::ExpectShutdownRounds | Phase::ExpectAbortRemoved(_) | Phase::Stopped => {
                Err(StoreError::ShutDown)
            }
            Phase::Failed(reason) => Err(StoreError::Failed(reason.clone())),
            Phase::Repairing(_) => Err(StoreError::Repairing),
        }
    }

    /// Make this a slave's store (its own appends refused) or a master's.
    pub fn set_replica(&mut self, replica: bool) {
        self.replica = replica;
    }

    /// Whether this is a slave's store, which takes only its master's log.
    #[must_use]
    pub fn is_replica(&self) -> bool {
        self.replica
    }

    /// Whether appends of this store's own records are accepted.
    fn check_local_writable(&self) -> Result<(), StoreError> {
        if self.replica {
            return Err(StoreError::Replica);
        }
        self.check_writable()
    }

    /// Validate one request; returns its record length.
    fn check_request(&self, req: &AppendRequest<'_>) -> Result<u64, StoreError> {
        if req.body.len() > self.config.max_message_size {
            return Err(StoreError::BodyTooLarge { size: req.body.len(), max: self.config.max_message_size });
        }
        if req.topic.is_empty() || req.topic.len() > MAX_TOPIC_LEN {
            return Err(StoreError::BadTopic(req.topic.to_owned()));
        }
        let len = CommitLog::record_len_for(req, self.config.store_host.is_ipv6()) as u64;
        if len + BLANK_MIN_LEN as u64 > self.config.segment_size {
            return Err(StoreError::TooLargeForSegment(len));
        }
        Ok(len)
    }

    /// Append one message. It is encoded, CRC-sealed and dispatched now; its bytes leave as
    /// writes at the next poll, and it is durable once [`flushed_end`](Self::flushed_end)
    /// reaches [`Appended::end`].
    pub fn append(&mut self, now: Now, req: &AppendRequest<'_>) -> Result<Appended, StoreError> {
        self.check_local_writable()?;
        let len = self.check_request(req)?;
        self.log.reserve(&mut self.ops, len);
        self.append_reserved(now, req)
    }

    /// Append messages that must share a segment (a batch send): all or none are stored.
    pub fn append_batch(
        &mut self,
        now: Now,
        reqs: &[AppendRequest<'_>],
    ) -> Result<Vec<Appended>, StoreError> {
        self.check_local_writable()?;
        let mut total = 0u64;
        for req in reqs {
            total += self.check_request(req)?;
            if dispatched(req) && self.queues.slot_or_create(req.topic, req.queue_id).is_none() {
                return Err(StoreError::BadTopic(req.topic.to_owned()));
            }
        }
        if total + BLANK_MIN_LEN as u64 > self.config.segment_size {
            return Err(StoreError::TooLargeForSegment(total));
        }
        self.log.reserve(&mut self.ops, total);
        reqs.iter().map(|req| self.append_reserved(now, req)).collect()
    }

    fn append_reserved(&mut self, now: Now, req: &AppendRequest<'_>) -> Result<Appended, StoreError> {
        let queue = if dispatched(req) {
            let found = self.queues.slot_or_create(req.topic, req.queue_id);
            Some(found.ok_or_else(|| StoreError::BadTopic(req.topic.to_owned()))?)
        } else {
            None
        };
        let queue_offset = queue.map_or(0, |(_, offset)| offset);
        let pos = self.log.append(&mut self.ops, now.wall.0, req, queue_offset, self.config.store_host)?;
        self.index.add_record(pos.offset, pos.store_timestamp, req.topic, req.properties, req.sys_flag);
        if let Some((slot, _)) = queue {
            let entry = CqEntry {
                phys_offset: PhysOffset(pos.offset),
                size: pos.size,
                tags_code: entry_tags_code(&self.config.due_time_topics, req.topic, req.properties),
            };
            self.queues.dispatch(slot, &entry);
            if self.config.mutated(crate::mutation::Mutation::CqOffByOne) && queue_offset % 8 == 7 {
                self.queues.dispatch(slot, &entry);
            }
        }
        Ok(Appended {
            phys_offset: PhysOffset(pos.offset),
            size: pos.size,
            queue_offset: queue.map(|_| QueueOffset(queue_offset)),
            store_timestamp: pos.store_timestamp,
        })
    }

    /// Start a clean shutdown: flush, checkpoint, remove the abort marker. Appends are
    /// refused from now on; [`is_stopped`](Self::is_stopped) turns true at the end.
    pub fn begin_shutdown(&mut self) {
        match self.phase {
            Phase::Running => {
                self.phase = Phase::ExpectShutdownRounds;
                self.advance_shutdown();
            }
            // Recovery's fix-ups must finish first (their syncs make the recovered state
            // durable); the shutdown follows them.
            Phase::ExpectFixupsDone(..) | Phase::ExpectBootMarkersDone(_) => self.shutdown_requested = true,
            // A disk that keeps failing could hold the exit forever: stop now, and let the
            // next start recover, as after a crash.
            Phase::Repairing(_) => self.fail("shut down while repairing after a disk error".into()),
            _ => {}
        }
    }

    /// A disk operation finished. A failure stops writes and starts a repair (see
    /// `disk_failed`); while repairing, completions change nothing.
    pub fn handle_disk_done(&mut self, now: Now, io: IoId, result: Result<(), DiskError>) {
        if let Err(error) = result {
            self.disk_failed(now, io, &error);
            return;
        }
        if self.is_repairing() {
            // Frozen: nothing completing after a failure makes more of the log count as
            // written or durable (a write after a failed one would leave a hole below it).
            let _ = self.ops.complete(io);
            return;
        }
        match self.ops.complete(io) {
            Completed::LogWritten { end } => self.written_end = self.written_end.max(end),
            Completed::CqWritten { slot, upto } => self.queues.written(slot, upto),
            Completed::IndexWritten { file, upto } => self.index.written(file, upto),
            Completed::GroupDone(group) => self.group_done(group),
            Completed::Nothing => {}
        }
    }

    /// A disk operation failed. While shutting down, the store stops (the process exits and
    /// the next start recovers). Otherwise writes are refused from now on and the CommitLog
    /// is trusted only up to a cut: what was written before the failure, since operations
    /// complete in order; or, if a sync of CommitLog data failed, only what earlier syncs
    /// made durable, because the page cache may have dropped the rest (the kernel reports a
    /// writeback error once and may mark the pages clean; retrying the fsync would "succeed").
    fn disk_failed(&mut self, now: Now, io: IoId, error: &DiskError) {
        // A failed sync of a segment may have dropped that segment's pages written since the
        // last sync (the log up to `flushed_end` is durable, and syncs complete in order, so
        // earlier segments of this round are too).
        let log_sync = self.ops.log_sync(io);
        let synced_before = log_sync.map(|segment| self.flushed_end.max(segment.unwrap_or(0)));
        let _ = self.ops.complete(io);
        let reason = format!("disk operation {io:?} failed: {error}");
        let booting = matches!(self.phase, Phase::ExpectFixupsDone(..) | Phase::ExpectBootMarkersDone(_));
        match &mut self.phase {
            Phase::Repairing(repair) => {
                if let Some(synced) = synced_before.filter(|_| !repair.while_booting) {
                    repair.cut = repair.cut.min(synced);
                }
                repair.log_pages_dropped |= repair.while_booting && log_sync.is_some();
            }
            Phase::Running | Phase::ExpectFixupsDone(..) | Phase::ExpectBootMarkersDone(_) => {
                // While booting nothing was acknowledged by this store yet, and recovery
                // reads what the page cache still holds: the recovered end is the cut.
                let cut =
                    synced_before.filter(|_| !booting).unwrap_or(self.written_end).min(self.written_end);
                tracing::error!(
                    %reason,
                    cut,
                    written = self.written_end,
                    "disk error: writes past the cut fail; repairing the store's tail in place"
                );
                self.begin_repair(now, cut, booting, booting && log_sync.is_some());
            }
            Phase::ExpectShutdownRounds
            | Phase::ExpectAbortRemoved(_)
            | Phase::Stopped
            | Phase::Failed(_) => {
                self.fail(reason);
            }
        }
    }

    /// Stop writing and rebuild the store in place with its log cut at `cut`, once the
    /// operations in flight are done.
    pub(super) fn begin_repair(&mut self, now: Now, cut: u64, while_booting: bool, log_pages_dropped: bool) {
        self.ops.cancel_unissued();
        self.flush = None;
        self.checkpoint = None;
        self.phase = Phase::Repairing(Repair {
            cut,
            retry_at: now.mono.plus_millis(self.repair_backoff_ms),
            while_booting,
            short_reads: 0,
            last_short_end: None,
            log_pages_dropped,
        });
    }

    /// The deadline from [`poll_timeout`](Self::poll_timeout) has passed.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.phase != Phase::Running {
            return;
        }
        if let FlushMode::Async { interval_ms } = self.config.flush_mode {
            if now.mono >= self.next_flush_at {
                self.start_flush();
                self.next_flush_at = now.mono.plus_millis(interval_ms);
            }
        }
        if now.mono >= self.next_checkpoint_at {
            self.start_checkpoint(false);
            self.next_checkpoint_at = now.mono.plus_millis(self.config.checkpoint_interval_ms);
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        if let Phase::Repairing(repair) = &self.phase {
            return Some(repair.retry_at);
        }
        if self.phase != Phase::Running {
            return None;
        }
        let checkpoint = self.next_checkpoint_at;
        Some(match self.config.flush_mode {
            FlushMode::Async { .. } => checkpoint.min(self.next_flush_at),
            FlushMode::Sync => checkpoint,
        })
    }

    /// Start the next disk round once the last one's operations are all out: the staged
    /// CommitLog and ConsumeQueue writes, and under SYNC_FLUSH the group commit's fsync, which
    /// covers everything appended since the last round. A driver calls it before each
    /// [`poll_output`](Self::poll_output): the later a round starts, the more appends share
    /// its writes and its fsync, and a round starts no later than when the runtime asks for
    /// work with nothing else queued.
    pub fn start_round(&mut self) {
        if self.is_repairing() || self.ops.has_outputs() {
            return;
        }
        if matches!(self.config.flush_mode, FlushMode::Sync)
            && matches!(self.phase, Phase::Running | Phase::ExpectShutdownRounds)
        {
            self.start_flush();
        }
        self.log.emit_staged(&mut self.ops);
        self.queues.emit_staged(&mut self.ops);
        self.index.emit_staged(&mut self.ops);
    }

    /// The next disk operation (or fatal stop) to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.is_repairing() {
            // This store is being replaced: nothing new goes to disk.
            return None;
        }
        self.ops.pop()
    }

    /// Disk operations issued and not yet completed.
    #[must_use]
    pub fn io_in_flight(&self) -> usize {
        self.ops.in_flight()
    }

    fn fail(&mut self, reason: String) {
        if !matches!(self.phase, Phase::Failed(_)) {
            tracing::error!(%reason, "store failed while shutting down; the next start recovers");
            self.ops.push_output(Output::Fatal { reason: reason.clone() });
            self.phase = Phase::Failed(reason);
        }
    }

    fn start_flush(&mut self) {
        if self.flush.is_some() || !self.log.has_unsynced() {
            return;
        }
        let group = self.ops.new_group();
        let timestamp = self.log.last_store_timestamp();
        let target = self.log.issue_sync(&mut self.ops, Purpose::Group(group));
        self.flush = Some(FlushRound { group, target, timestamp });
        if self.ops.group_is_empty(group) {
            self.group_done(group);
        }
    }

    fn start_checkpoint(&mut self, force: bool) {
        if self.checkpoint.is_some() {
            return;
        }
        let queue_target = self.log.write_pos();
        let unchanged = self.last_checkpoint.log_durable_end == self.flushed_end
            && self.last_checkpoint.queue_durable_end == queue_target.min(self.flushed_end);
        let group = self.ops.new_group();
        let queues_written = self.queues.issue_sync(&mut self.ops, Purpose::Group(group));
        let index_written = self.index.issue_sync(&mut self.ops, Purpose::Group(group));
        let seal_due = self.index.seal_due(self.phase == Phase::ExpectShutdownRounds);
        if unchanged && !queues_written && !index_written && !seal_due && !force {
            self.ops.close_group(group);
            return;
        }
        self.checkpoint = Some(CheckpointRound::ExpectQueuesSynced {
            group,
            queue_target,
            queue_timestamp: self.log.last_store_timestamp(),
        });
        if self.ops.group_is_empty(group) {
            self.group_done(group);
        }
    }

    fn write_checkpoint(&mut self, queue_target: u64, queue_timestamp: i64) {
        let queue_durable_end = queue_target.min(self.flushed_end);
        let checkpoint = Checkpoint {
            physic_msg_timestamp: self.flushed_timestamp,
            logics_msg_timestamp: if queue_target <= self.flushed_end {
                queue_timestamp
            } else {
                self.flushed_timestamp
            },
            confirm_phy_offset: self.flushed_end,
            log_durable_end: self.flushed_end,
            queue_durable_end,
            index_mark: self.index.synced_mark(),
        };
        let group = self.ops.new_group();
        self.push_checkpoint_file(group, &checkpoint);
        self.checkpoint = Some(CheckpointRound::ExpectWritten { group, checkpoint });
    }

    fn push_checkpoint_file(&mut self, group: GroupId, checkpoint: &Checkpoint) {
        let file = paths::checkpoint();
        self.ops.push(
            DiskOp::Write { file: file.clone(), offset: 0, data: checkpoint.encode().into() },
            Purpose::Group(group),
        );
        self.ops.push(DiskOp::Sync { file }, Purpose::Group(group));
    }

    fn group_done(&mut self, group: GroupId) {
        self.ops.close_group(group);
        self.retention_group_done(group);
        if let Some(round) = self.flush.filter(|r| r.group == group) {
            self.flushed_end = self.flushed_end.max(round.target);
            self.flushed_timestamp = round.timestamp;
            self.flush = None;
        }
        match self.checkpoint {
            Some(CheckpointRound::ExpectQueuesSynced { group: g, queue_target, queue_timestamp })
                if g == group =>
            {
                match self.start_seal() {
                    Some(group) => {
                        self.checkpoint = Some(CheckpointRound::ExpectQueuesSynced {
                            group,
                            queue_target,
                            queue_timestamp,
                        });
                    }
                    None => self.write_checkpoint(queue_target, queue_timestamp),
                }
            }
            Some(CheckpointRound::ExpectWritten { group: g, checkpoint }) if g == group => {
                self.last_checkpoint = checkpoint;
                self.checkpoint = None;
                // The disk works again: a later failure is repaired at once.
                self.repair_backoff_ms = 0;
            }
            _ => {}
        }
        match self.phase.clone() {
            Phase::ExpectFixupsDone(g, checkpoint) if g == group => match self.start_seal() {
                Some(group) => self.phase = Phase::ExpectFixupsDone(group, checkpoint),
                None => self.write_boot_markers(checkpoint),
            },
            Phase::ExpectBootMarkersDone(g) if g == group => {
                self.phase = Phase::Running;
                if self.shutdown_requested {
                    self.begin_shutdown();
                }
            }
            Phase::ExpectAbortRemoved(g) if g == group => self.phase = Phase::Stopped,
            _ => {}
        }
        if self.phase == Phase::ExpectShutdownRounds {
            self.advance_shutdown();
        }
    }

    /// Write the index slots that are due (entries a completed sync covered) in a group of
    /// their own, once the last one is done; `None` if none are due. A checkpoint is written
    /// only after that group completes, so one never vouches for slots whose sync failed.
    fn start_seal(&mut self) -> Option<GroupId> {
        self.index.sealed_done();
        let group = self.ops.new_group();
        let shutting_down = self.phase == Phase::ExpectShutdownRounds;
        self.index.seal(&mut self.ops, Purpose::Group(group), shutting_down);
        if self.ops.group_is_empty(group) {
            self.ops.close_group(group);
            return None;
        }
        Some(group)
    }

    fn write_boot_markers(&mut self, checkpoint: Checkpoint) {
        let checkpoint = Checkpoint { index_mark: self.index.synced_mark(), ..checkpoint };
        let group = self.ops.new_group();
        let root = FilePath::root();
        let file = paths::checkpoint();
        self.ops.push(DiskOp::Create { file, len: super::CHECKPOINT_LEN as u64 }, Purpose::Group(group));
        self.push_checkpoint_file(group, &checkpoint);
        let abort = paths::abort();
        let marker = format!("{}\n", self.config.instance);
        self.ops.push(DiskOp::Create { file: abort.clone(), len: 0 }, Purpose::Group(group));
        self.ops.push(DiskOp::Write { file: abort, offset: 0, data: marker.into() }, Purpose::Group(group));
        self.ops.push(DiskOp::SyncDir { dir: root }, Purpose::Group(group));
        self.last_checkpoint = checkpoint;
        self.flushed_end = checkpoint.log_durable_end;
        self.flushed_timestamp = checkpoint.physic_msg_timestamp;
        self.phase = Phase::ExpectBootMarkersDone(group);
    }

    fn advance_shutdown(&mut self) {
        if self.flush.is_some() || self.checkpoint.is_some() {
            return;
        }
        if self.log.has_unsynced() {
            self.start_flush();
            return;
        }
        if self.last_checkpoint.log_durable_end != self.flushed_end
            || self.last_checkpoint.queue_durable_end != self.log.write_pos()
            || self.index.seal_due(true)
        {
            self.start_checkpoint(true);
            return;
        }
        let group = self.ops.new_group();
        self.ops.push(DiskOp::Remove { file: paths::abort() }, Purpose::Group(group));
        self.ops.push(DiskOp::SyncDir { dir: FilePath::root() }, Purpose::Group(group));
        self.phase = Phase::ExpectAbortRemoved(group);
    }
}

/// Whether a record goes to a ConsumeQueue: transaction half and rollback records do not.
fn dispatched(req: &AppendRequest<'_>) -> bool {
    super::consume_queue::takes_queue_entry(req.sys_flag)
}

fn flush_interval(config: &StoreConfig) -> u64 {
    match config.flush_mode {
        FlushMode::Async { interval_ms } => interval_ms,
        FlushMode::Sync => config.checkpoint_interval_ms,
    }
}
