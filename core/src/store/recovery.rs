//! Recovery: from whatever a crash left on disk to a store whose CommitLog is the longest
//! valid prefix and whose ConsumeQueues match it exactly.
//!
//! 1. The checkpoint (CRC-checked; a torn one is ignored) says up to where the CommitLog and
//!    the ConsumeQueue entries were fsynced: `queue_durable_end`. Everything below it is
//!    trusted; the scan starts at the segment holding it.
//! 2. The scan validates every record from that segment on: length, magic, that TOTALSIZE
//!    equals its fields, that PHYSICALOFFSET is its own position, BODYCRC and the
//!    whole-record CRC. It stops at the first invalid byte: that is the recovered end. A
//!    BLANK must fill its segment exactly.
//! 3. Each ConsumeQueue keeps its entries whose record ends at or below
//!    `min(queue_durable_end, end)`; records from `queue_durable_end` on are dispatched again.
//!    A queue whose offsets do not continue (a lost file, a torn entry in the trusted part,
//!    a scan start that is not a record boundary) sends recovery back to a full rebuild:
//!    every ConsumeQueue file is removed and all records are dispatched from the first
//!    segment.
//! 4. Fix-ups: the segment holding the end is truncated there and re-extended, so the bytes
//!    after the cut read as zeros and can never be parsed again; later segments are
//!    removed; ConsumeQueue files are cut the same way after their last entry. Everything
//!    recovery read or wrote is synced before a fresh checkpoint and the abort marker are
//!    written, and only then does the store accept appends.
//!
//! Normal (no abort marker) and abnormal (abort marker left by a crash) recovery run the same
//! steps: the checkpoint is only ever written after the syncs it describes, so both can trust
//! it. The kind is reported for operators.

use std::collections::BTreeSet;

use super::checkpoint::{Checkpoint, CHECKPOINT_LEN};
use super::commitlog::CommitLog;
use super::consume_queue::entry_tags_code;
use super::consume_queue::{CqEntry, ENTRY_LEN};
use super::index::{self, IndexSet};
use super::message_store::Store;
use super::paths;
use super::queue_table::{QueueState, QueueTable};
use super::{PhysOffset, StoreConfig};
use crate::io::{DiskError, DiskErrorKind, DiskOp, FilePath, Now, StoreRead};
use crate::protocol::message::stored::{parse_record, verify_crcs, Parsed, RecordView, BLANK_MIN_LEN};
use queue_files::{load_queues, verify_queue_tails, LoadedQueue};

mod queue_files;

/// Bytes read at a time while scanning.
const READ_CHUNK: usize = 4 * 1024 * 1024;

/// How the previous run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryKind {
    /// Nothing on disk: a new store.
    Fresh,
    /// The previous run shut down cleanly (no abort marker).
    Normal,
    /// The previous run crashed (abort marker present).
    Abnormal,
}

/// What recovery found and did, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// How the previous run ended.
    pub kind: RecoveryKind,
    /// The checkpoint recovery trusted, if one was valid.
    pub checkpoint: Option<Checkpoint>,
    /// Where validation started.
    pub scanned_from: u64,
    /// The recovered end of the CommitLog.
    pub recovered_end: u64,
    /// Why the scan stopped before the end of the last segment, if it did.
    pub stopped_because: Option<String>,
    /// Segments removed because they lay entirely after the end (or after a gap).
    pub removed_segments: Vec<u64>,
    /// Records dispatched to ConsumeQueues again.
    pub redispatched: u64,
    /// Whether every ConsumeQueue was rebuilt from the first segment.
    pub rebuilt_queues: bool,
    /// Files in the store directories that are not ours, left alone.
    pub ignored_files: Vec<String>,
}

/// Why recovery could not produce a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// Reading the disk failed.
    #[error("reading the store failed: {0}")]
    Disk(#[from] DiskError),
    /// A segment's size disagrees with the configuration (RocketMQ refuses to start too).
    #[error("segment {file} is {len} bytes but the configured segment size is {expected}")]
    SegmentSizeMismatch {
        /// The file.
        file: String,
        /// Its length.
        len: u64,
        /// `segment_size`.
        expected: u64,
    },
    /// The configuration is invalid.
    #[error("bad store configuration: {0}")]
    BadConfig(String),
}

/// The segments on disk.
struct Segments {
    /// Contiguous from the first one.
    kept: Vec<u64>,
    /// After a gap: unreachable by any valid prefix.
    orphaned: Vec<u64>,
    /// Lengths of the kept ones.
    lengths: Vec<u64>,
}

fn list_segments(
    reader: &dyn StoreRead,
    config: &StoreConfig,
    ignored: &mut Vec<String>,
) -> Result<Segments, RecoveryError> {
    let mut bases = BTreeSet::new();
    for name in reader.list(&paths::commitlog_dir())? {
        match paths::parse_offset_name(&name) {
            Some(base) if base % config.segment_size == 0 => {
                bases.insert(base);
            }
            Some(_) => {
                return Err(RecoveryError::SegmentSizeMismatch {
                    file: name,
                    len: 0,
                    expected: config.segment_size,
                })
            }
            None => ignored.push(format!("commitlog/{name}")),
        }
    }
    let mut segments = Segments { kept: Vec::new(), orphaned: Vec::new(), lengths: Vec::new() };
    for base in bases {
        let contiguous = segments.kept.last().is_none_or(|last| last + config.segment_size == base);
        if !contiguous || !segments.orphaned.is_empty() {
            segments.orphaned.push(base);
            continue;
        }
        let file = paths::segment(base);
        let len = reader.len(&file)?.unwrap_or(0);
        if len > config.segment_size {
            return Err(RecoveryError::SegmentSizeMismatch {
                file: file.to_string(),
                len,
                expected: config.segment_size,
            });
        }
        segments.kept.push(base);
        segments.lengths.push(len);
    }
    Ok(segments)
}

fn read_checkpoint(reader: &dyn StoreRead) -> Result<Option<Checkpoint>, RecoveryError> {
    let mut buf = vec![0u8; CHECKPOINT_LEN];
    match reader.read_at(&paths::checkpoint(), 0, &mut buf) {
        Ok(n) => Ok(Checkpoint::decode(buf.get(..n).unwrap_or_default())),
        Err(e) if e.kind == DiskErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A window over one segment's bytes, refilled as the scan moves.
struct SegmentReader<'r> {
    reader: &'r dyn StoreRead,
    file: FilePath,
    window: Vec<u8>,
    window_at: u64,
}

impl<'r> SegmentReader<'r> {
    fn new(reader: &'r dyn StoreRead, base: u64) -> Self {
        Self { reader, file: paths::segment(base), window: Vec::new(), window_at: 0 }
    }

    /// Up to `len` bytes at `at` (fewer at the end of the file).
    fn bytes_at(&mut self, at: u64, len: usize, limit: u64) -> Result<&[u8], DiskError> {
        let in_window = at >= self.window_at && at + len as u64 <= self.window_at + self.window.len() as u64;
        if !in_window {
            let want =
                len.max(READ_CHUNK).min(usize::try_from(limit.saturating_sub(at)).unwrap_or(usize::MAX));
            self.window.resize(want.max(len), 0);
            let got = self.reader.read_at(&self.file, at, &mut self.window)?;
            self.window.truncate(got);
            self.window_at = at;
        }
        let start = usize::try_from(at - self.window_at).unwrap_or(usize::MAX);
        let end = start.saturating_add(len).min(self.window.len());
        Ok(self.window.get(start..end).unwrap_or_default())
    }
}

/// The outcome of scanning the CommitLog.
struct Scan {
    /// The first byte that is not part of a valid record: the recovered end.
    end: u64,
    stopped_because: Option<String>,
    /// Whether `boundary` is a record start, a segment start reached, or the end.
    boundary_hit: bool,
    last_timestamp: Option<i64>,
}

/// Validate records from the segment `kept[start_index]` on; call `visit` for each valid
/// record at or after `boundary`. `visit` returns false to abandon the scan (`Ok(None)`).
fn scan(
    reader: &dyn StoreRead,
    config: &StoreConfig,
    kept: &[u64],
    start_index: usize,
    boundary: u64,
    limit: u64,
    visit: &mut dyn FnMut(&RecordView<'_>) -> bool,
) -> Result<Option<Scan>, RecoveryError> {
    let segment_size = config.segment_size;
    let Some(&first) = kept.get(start_index) else {
        // Nothing to scan: the log ends where the last segment ends (or is empty).
        let end = kept.last().map_or(boundary, |last| last + segment_size);
        return Ok(Some(Scan {
            end,
            stopped_because: None,
            boundary_hit: end == boundary,
            last_timestamp: None,
        }));
    };
    let mut cursor = first;
    let mut boundary_hit = false;
    let mut last_timestamp = None;
    let mut stopped_because = None;
    'segments: for &base in kept.iter().skip(start_index) {
        if base != cursor {
            break;
        }
        let mut segment = SegmentReader::new(reader, base);
        loop {
            boundary_hit |= cursor == boundary;
            if cursor >= limit {
                stopped_because = Some(format!("repair cut at {limit}"));
                break 'segments;
            }
            let pos = cursor - base;
            let room = segment_size - pos;
            match next_record(&mut segment, pos, room, config)? {
                Step::Blank if base + segment_size > limit => {
                    stopped_because =
                        Some(format!("repair cut at {limit}: the segment's end filler crosses it"));
                    break 'segments;
                }
                Step::Blank => {
                    cursor = base + segment_size;
                    continue 'segments;
                }
                Step::Invalid(why) => {
                    stopped_because = Some(format!("{why} at {cursor}"));
                    break 'segments;
                }
                Step::Record(total) if cursor + total as u64 > limit => {
                    stopped_because = Some(format!("repair cut at {limit}: record at {cursor} crosses it"));
                    break 'segments;
                }
                Step::Record(total) => {
                    let record = segment.bytes_at(pos, total, segment_size)?;
                    let Ok(Parsed::Message(view)) = parse_record(record) else {
                        stopped_because = Some(format!("record vanished at {cursor}"));
                        break 'segments;
                    };
                    if u64::try_from(view.head().physical_offset).ok() != Some(cursor) {
                        stopped_because =
                            Some(format!("record at {cursor} claims offset {}", view.head().physical_offset));
                        break 'segments;
                    }
                    last_timestamp = Some(view.head().store_timestamp);
                    if cursor >= boundary && !visit(&view) {
                        return Ok(None);
                    }
                    cursor += total as u64;
                }
            }
        }
    }
    boundary_hit |= cursor == boundary;
    Ok(Some(Scan { end: cursor, stopped_because, boundary_hit, last_timestamp }))
}

/// What the bytes at a segment position are.
enum Step {
    /// A BLANK filling the rest of the segment.
    Blank,
    /// A valid record of this length (CRCs checked).
    Record(usize),
    /// Not a valid record.
    Invalid(String),
}

fn next_record(
    segment: &mut SegmentReader<'_>,
    pos: u64,
    room: u64,
    config: &StoreConfig,
) -> Result<Step, RecoveryError> {
    let segment_size = config.segment_size;
    let head = segment.bytes_at(pos, BLANK_MIN_LEN, segment_size)?;
    let Some(total) = head.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(i32::from_be_bytes) else {
        return Ok(Step::Invalid("end of file".into()));
    };
    let total = u64::try_from(total).unwrap_or(0);
    if total < BLANK_MIN_LEN as u64 || total > room {
        return Ok(Step::Invalid(format!("impossible record size {total}")));
    }
    let len = usize::try_from(total).unwrap_or(usize::MAX);
    let record = segment.bytes_at(pos, len, segment_size)?;
    Ok(match parse_record(record) {
        Ok(Parsed::Blank(blank)) if blank as u64 == room => Step::Blank,
        Ok(Parsed::Blank(blank)) => {
            Step::Invalid(format!("BLANK of {blank} bytes does not fill its segment"))
        }
        // A record must leave room for a BLANK after it: no record touches a segment's end.
        Ok(Parsed::Message(_)) if total + BLANK_MIN_LEN as u64 > room => {
            Step::Invalid("record leaves no room for a BLANK".into())
        }
        Ok(Parsed::Message(_)) if config.mutated(crate::mutation::Mutation::SkipCrcOnRecovery) => {
            Step::Record(len)
        }
        Ok(Parsed::Message(view)) => match verify_crcs(&view, true) {
            Ok(()) => Step::Record(len),
            Err(e) => Step::Invalid(e.to_string()),
        },
        Err(e) => Step::Invalid(e.to_string()),
    })
}

/// Everything recovery decided, before it becomes a [`Store`].
struct Plan {
    queues: QueueTable,
    /// The index, loaded to match the log below where records are dispatched again, and
    /// its fix-ups.
    index: (IndexSet, Vec<DiskOp>),
    loaded: Vec<LoadedQueue>,
    scan: Scan,
    scanned_from: u64,
    redispatched: u64,
    rebuilt: bool,
}

/// Dispatch scanned records into `queues`; false if a queue's offsets do not continue.
fn dispatch_record(
    config: &StoreConfig,
    queues: &mut QueueTable,
    view: &RecordView<'_>,
    rebuilding: bool,
) -> bool {
    if !super::consume_queue::takes_queue_entry(view.head().sys_flag) {
        return true;
    }
    let Ok(queue_offset) = u64::try_from(view.head().queue_offset) else { return false };
    let exists = queues.get(view.record.topic, view.head().queue_id).is_some();
    if !exists {
        // A queue recovery has not seen yet starts at this record's offset; outside a full
        // rebuild its earlier entries would have been on disk, so it must start at zero.
        if !rebuilding && queue_offset != 0 {
            return false;
        }
        let Some(dir) = paths::consume_queue_dir(view.record.topic, view.head().queue_id) else {
            // Appends refuse such topics, so this record was never dispatched: skip it.
            return true;
        };
        queues.insert(
            view.record.topic,
            view.head().queue_id,
            QueueState::new(dir, queue_offset, queue_offset, BTreeSet::new()),
        );
    }
    match queues.get(view.record.topic, view.head().queue_id) {
        Some(queue) if queue.next_offset == queue_offset => {}
        _ => return false,
    }
    let entry = CqEntry {
        phys_offset: PhysOffset(u64::try_from(view.head().physical_offset).unwrap_or(0)),
        size: u32::try_from(view.bytes.len()).unwrap_or(u32::MAX),
        tags_code: entry_tags_code(&config.due_time_topics, view.record.topic, view.record.properties),
    };
    queues.dispatch_to(view.record.topic, view.head().queue_id, &entry);
    true
}

/// Index a scanned record again.
fn index_record(index: &mut IndexSet, view: &RecordView<'_>) {
    let head = view.head();
    let phys = u64::try_from(head.physical_offset).unwrap_or(0);
    index.add_record(phys, head.store_timestamp, view.record.topic, view.record.properties, head.sys_flag);
}

/// Recover using the checkpoint: trust what it says is durable, rescan the rest. `None`
/// means the disk disagrees with the checkpoint and a full rebuild is needed.
fn plan_incremental(
    reader: &dyn StoreRead,
    config: &StoreConfig,
    segments: &Segments,
    checkpoint: &Checkpoint,
    abnormal: bool,
    limit: u64,
    ignored: &mut Vec<String>,
) -> Result<Option<Plan>, RecoveryError> {
    let (Some(&first), Some(&last)) = (segments.kept.first(), segments.kept.last()) else { return Ok(None) };
    let boundary = checkpoint.queue_durable_end.clamp(first, last + config.segment_size);
    let start_index = segments
        .kept
        .iter()
        .position(|base| boundary < base + config.segment_size)
        .unwrap_or(segments.kept.len().saturating_sub(1));
    let scanned_from = segments.kept.get(start_index).copied().unwrap_or(first);
    if limit < scanned_from {
        // A cut below where the checkpoint lets the scan begin (a slave's log cut back to its
        // master's): the queues are rebuilt from a scan of the whole log instead.
        return Ok(None);
    }
    let file_size = QueueTable::new(config.queue_file_entries).file_size();
    // Queues keep entries of records ending at or below the boundary; records from the
    // boundary on are dispatched again as the scan meets them.
    let mut loaded = load_queues(reader, file_size, boundary, first, abnormal, ignored)?;
    verify_queue_tails(reader, config, file_size, boundary, &mut loaded)?;
    let mut queues = queues_from(config, &loaded);
    let (mut index, index_fixups) = index::load(reader, config, boundary, checkpoint, ignored)?;
    let mut redispatched = 0u64;
    let mut visit = |view: &RecordView<'_>| {
        redispatched += 1;
        index_record(&mut index, view);
        dispatch_record(config, &mut queues, view, false)
    };
    let Some(scan) = scan(reader, config, &segments.kept, start_index, boundary, limit, &mut visit)? else {
        return Ok(None);
    };
    if scan.end > boundary && !scan.boundary_hit {
        // The checkpoint's position is inside a record: the disk is not what it described.
        return Ok(None);
    }
    if scan.end < boundary {
        // Bytes the checkpoint called durable are gone (e.g. bit rot): cut the queues at the
        // recovered end instead. Nothing was dispatched, since no record lay past the boundary.
        ignored.clear();
        let mut loaded = load_queues(reader, file_size, scan.end, first, true, ignored)?;
        verify_queue_tails(reader, config, file_size, scan.end, &mut loaded)?;
        let queues = queues_from(config, &loaded);
        let index = index::load(reader, config, scan.end, checkpoint, ignored)?;
        return Ok(Some(Plan { queues, index, loaded, scan, scanned_from, redispatched: 0, rebuilt: false }));
    }
    let index = (index, index_fixups);
    Ok(Some(Plan { queues, index, loaded, scan, scanned_from, redispatched, rebuilt: false }))
}

fn queues_from(config: &StoreConfig, loaded: &[LoadedQueue]) -> QueueTable {
    let mut queues = QueueTable::new(config.queue_file_entries);
    for queue in loaded {
        let state =
            QueueState::new(queue.dir.clone(), queue.min_offset, queue.next_offset, queue.files.clone());
        queues.insert(&queue.topic, queue.queue_id, state);
    }
    queues
}

/// Rebuild every ConsumeQueue from the first segment.
fn plan_rebuild(
    reader: &dyn StoreRead,
    config: &StoreConfig,
    segments: &Segments,
    limit: u64,
    ignored: &mut Vec<String>,
) -> Result<Plan, RecoveryError> {
    let first = segments.kept.first().copied().unwrap_or(0);
    // Every existing queue file goes; loading with a cut of zero keeps no entries.
    let file_size = QueueTable::new(config.queue_file_entries).file_size();
    let loaded = load_queues(reader, file_size, 0, first, true, ignored)?;
    let mut queues = QueueTable::new(config.queue_file_entries);
    // Every record is indexed again, so no checkpoint vouches for any index file.
    let (mut index, index_fixups) = index::load(reader, config, first, &Checkpoint::default(), ignored)?;
    let mut redispatched = 0u64;
    let mut visit = |view: &RecordView<'_>| {
        redispatched += 1;
        index_record(&mut index, view);
        if !dispatch_record(config, &mut queues, view, true) {
            tracing::warn!(
                offset = view.head().physical_offset,
                topic = view.record.topic,
                "queue offset out of sequence"
            );
        }
        true
    };
    let scan = scan(reader, config, &segments.kept, 0, first, limit, &mut visit)?.unwrap_or(Scan {
        end: first,
        stopped_because: None,
        boundary_hit: true,
        last_timestamp: None,
    });
    let index = (index, index_fixups);
    Ok(Plan { queues, index, loaded, scan, scanned_from: first, redispatched, rebuilt: true })
}

/// Truncate `file` at `len` and extend it back to `full`, so everything after `len` reads
/// as zeros; then it is synced with the rest of recovery's work.
fn zero_after(fixups: &mut Vec<DiskOp>, file: FilePath, len: u64, full: u64) {
    fixups.push(DiskOp::SetLen { file: file.clone(), len });
    fixups.push(DiskOp::SetLen { file, len: full });
}

fn commitlog_fixups(
    config: &StoreConfig,
    segments: &Segments,
    end: u64,
    scanned_from: u64,
    log: &mut CommitLog,
    fixups: &mut Vec<DiskOp>,
    removed: &mut Vec<u64>,
) -> BTreeSet<u64> {
    let end_base = end - end % config.segment_size;
    let mut kept = BTreeSet::new();
    for (&base, &len) in segments.kept.iter().zip(&segments.lengths) {
        if base > end_base {
            fixups.push(DiskOp::Remove { file: paths::segment(base) });
            removed.push(base);
            continue;
        }
        kept.insert(base);
        if base == end_base {
            zero_after(fixups, paths::segment(base), end - base, config.segment_size);
        } else if len < config.segment_size {
            fixups.push(DiskOp::SetLen { file: paths::segment(base), len: config.segment_size });
        }
        if base >= scanned_from {
            // Recovery read these bytes; they may only be in the page cache.
            log.mark_unsynced(base);
        }
    }
    for &base in &segments.orphaned {
        fixups.push(DiskOp::Remove { file: paths::segment(base) });
        removed.push(base);
    }
    if !removed.is_empty() {
        log.mark_dir_dirty();
    }
    kept
}

/// Cut every ConsumeQueue after its last kept entry. After an abnormal exit, bytes that
/// merely look right may only be in the page cache (an interrupted earlier recovery can
/// leave its zeroing unsynced), so each queue's tail is synced, and files past it removed,
/// whether or not they look dirty.
fn queue_fixups(plan: &mut Plan, abnormal: bool, fixups: &mut Vec<DiskOp>) {
    let file_size = plan.queues.file_size();
    for loaded in &plan.loaded {
        let file_of = |start: u64| loaded.dir.join(&paths::offset_name(start));
        if plan.rebuilt {
            for file in loaded.files.iter().filter_map(|&start| file_of(start)) {
                fixups.push(DiskOp::Remove { file });
            }
            if !loaded.files.is_empty() {
                fixups.push(DiskOp::SyncDir { dir: loaded.dir.clone() });
            }
            continue;
        }
        let next = plan.queues.get(&loaded.topic, loaded.queue_id).map_or(0, |q| q.next_offset);
        let keep_to = next * ENTRY_LEN;
        let dirty_tail = loaded.extent > keep_to;
        let mut remaining = BTreeSet::new();
        let mut removed_any = false;
        for &start in &loaded.files {
            let Some(file) = file_of(start) else { continue };
            if start >= keep_to && (dirty_tail || abnormal) {
                fixups.push(DiskOp::Remove { file });
                removed_any = true;
                continue;
            }
            let holds_tail = start < keep_to && keep_to < start + file_size;
            let short = loaded.short_files.contains(&start);
            if holds_tail && dirty_tail {
                zero_after(fixups, file, keep_to - start, file_size);
            } else if short {
                fixups.push(DiskOp::SetLen { file, len: file_size });
            }
            if (holds_tail && (dirty_tail || abnormal)) || short {
                plan.queues.mark_file_unsynced(&loaded.topic, loaded.queue_id, start);
            }
            remaining.insert(start);
        }
        if removed_any || (abnormal && !loaded.files.is_empty()) {
            fixups.push(DiskOp::SyncDir { dir: loaded.dir.clone() });
        }
        plan.queues.retain_files(&loaded.topic, loaded.queue_id, &remaining);
    }
}

/// Recover a store from disk. See the [module docs](self) for the steps. With a `limit`
/// (a store rebuilt in place after a disk error), no record reaching past it is kept.
pub(super) fn recover(
    config: StoreConfig,
    reader: &dyn StoreRead,
    now: Now,
    limit: Option<u64>,
) -> Result<(Store, RecoveryReport), RecoveryError> {
    let limit = limit.unwrap_or(u64::MAX);
    config.validate().map_err(|e| RecoveryError::BadConfig(e.to_string()))?;
    let mut ignored = Vec::new();
    let abort_present = reader.len(&paths::abort())?.is_some();
    let checkpoint = read_checkpoint(reader)?;
    let segments = list_segments(reader, &config, &mut ignored)?;
    let kind = match (abort_present, &checkpoint, segments.kept.is_empty()) {
        (true, _, _) => RecoveryKind::Abnormal,
        (false, None, true) => RecoveryKind::Fresh,
        _ => RecoveryKind::Normal,
    };
    // A cut below the oldest segment keeps nothing: a slave starting over empty (every
    // segment and queue file goes, and the log begins again at 0).
    let wipe = segments.kept.first().is_some_and(|&first| limit < first);
    let incremental = match &checkpoint {
        Some(cp) if !wipe => {
            let abnormal = kind == RecoveryKind::Abnormal;
            plan_incremental(reader, &config, &segments, cp, abnormal, limit, &mut ignored)?
        }
        _ => None,
    };
    let mut plan = match incremental {
        Some(plan) => plan,
        None => {
            ignored.clear();
            let nothing = Segments { kept: Vec::new(), orphaned: Vec::new(), lengths: Vec::new() };
            plan_rebuild(reader, &config, if wipe { &nothing } else { &segments }, limit, &mut ignored)?
        }
    };
    let end = plan.scan.end;
    let last_timestamp =
        plan.scan.last_timestamp.or(checkpoint.map(|c| c.physic_msg_timestamp)).unwrap_or(0).max(0);
    let mut fixups = Vec::new();
    if plan.rebuilt && checkpoint.is_some() {
        // A rebuild removes and rewrites every queue file. Until its new checkpoint is
        // written, the old one must not vouch for files half rewritten: a crash in between
        // would trust a prefix of them and resume a queue at a reused offset. Withdrawn
        // first, durably, so that crash rebuilds again.
        fixups.push(DiskOp::Remove { file: paths::checkpoint() });
        fixups.push(DiskOp::SyncDir { dir: FilePath::root() });
    }
    let mut removed = Vec::new();
    let mut log = CommitLog::new(config.segment_size, BTreeSet::new(), end, last_timestamp);
    let kept =
        commitlog_fixups(&config, &segments, end, plan.scanned_from, &mut log, &mut fixups, &mut removed);
    log.set_segments(kept);
    let abnormal = kind == RecoveryKind::Abnormal;
    queue_fixups(&mut plan, abnormal, &mut fixups);
    let (index, index_fixups) = plan.index;
    fixups.extend(index_fixups);
    if abnormal {
        // After a crash, the segments' directory entries may only be in the page cache:
        // make them durable before the checkpoint vouches for them.
        log.mark_dir_dirty();
    }
    let boot_checkpoint = Checkpoint {
        physic_msg_timestamp: last_timestamp,
        logics_msg_timestamp: last_timestamp,
        confirm_phy_offset: end,
        log_durable_end: end,
        queue_durable_end: end,
        index_mark: None,
    };
    let report = RecoveryReport {
        kind,
        checkpoint,
        scanned_from: plan.scanned_from,
        recovered_end: end,
        stopped_because: plan.scan.stopped_because.clone(),
        removed_segments: removed,
        redispatched: plan.redispatched,
        // An empty store has nothing to rebuild, whichever path recovery took.
        rebuilt_queues: plan.rebuilt && (!plan.loaded.is_empty() || plan.redispatched > 0),
        ignored_files: ignored,
    };
    tracing::info!(?report, "store recovered");
    let store = Store::boot(config, log, (plan.queues, index), fixups, boot_checkpoint, now);
    Ok((store, report))
}
