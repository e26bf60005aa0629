//! Recovery's view of the ConsumeQueue files: each queue's entries as found on disk, the
//! prefix worth keeping (entries of records at or below the cut, without gaps), and a check
//! of each kept tail against the CommitLog.

use std::collections::BTreeSet;

use super::super::consume_queue::{first_entry_at_or_above, is_pre_blank, read_slot, CqEntry, ENTRY_LEN};
use super::super::paths;
use super::super::StoreConfig;
use super::RecoveryError;
use crate::io::{DiskError, FilePath, StoreRead};
use crate::protocol::message::stored::{parse_record, verify_crcs, Parsed};

/// A ConsumeQueue as found on disk.
pub(super) struct LoadedQueue {
    pub(super) topic: String,
    pub(super) queue_id: i32,
    pub(super) dir: FilePath,
    pub(super) files: BTreeSet<u64>,
    pub(super) min_offset: u64,
    /// Entries kept: the valid prefix whose records end at or below the cut.
    pub(super) next_offset: u64,
    /// Byte position beyond which the files hold nothing; `u64::MAX` when that was not
    /// read (after a crash): the tail is then cut and zeroed unread.
    pub(super) extent: u64,
    /// Files shorter than a full ConsumeQueue file (their length change was lost).
    pub(super) short_files: Vec<u64>,
}

pub(super) fn load_queues(
    reader: &dyn StoreRead,
    file_size: u64,
    cut: u64,
    log_min: u64,
    assume_dirty: bool,
    ignored: &mut Vec<String>,
) -> Result<Vec<LoadedQueue>, RecoveryError> {
    let root = paths::consume_queue_root();
    let mut loaded = Vec::new();
    for topic in reader.list(&root)? {
        let Some(topic_dir) = root.join(&topic) else { continue };
        for queue in reader.list(&topic_dir)? {
            let (Ok(queue_id), Some(dir)) = (queue.parse::<i32>(), topic_dir.join(&queue)) else {
                ignored.push(format!("{topic_dir}/{queue}"));
                continue;
            };
            let mut files = BTreeSet::new();
            for name in reader.list(&dir)? {
                match paths::parse_offset_name(&name) {
                    Some(start) if start % file_size == 0 => {
                        files.insert(start);
                    }
                    _ => ignored.push(format!("{dir}/{name}")),
                }
            }
            let mut queue =
                load_queue(reader, topic.clone(), queue_id, dir, files, file_size, cut, assume_dirty)?;
            if log_min > 0 {
                // Retention deleted the segments below `log_min` (maybe not yet the queue
                // files pointing there).
                let range = (queue.min_offset, queue.next_offset);
                queue.min_offset = first_entry_at_or_above(reader, &queue.dir, file_size, range, log_min)?;
            }
            loaded.push(queue);
        }
    }
    Ok(loaded)
}

/// Leading slots of a queue's first file read at once (its first page): its pre-blank
/// entries (RocketMQ's marks before a queue's first entry in its first file), and for most
/// queues every entry.
const HEAD_SLOTS: usize = (HOLE_GRAIN / ENTRY_LEN) as usize;

/// One queue's entries as recovery trusts them, found with a few small reads rather than
/// by reading its files whole (preallocated files are mostly zeros, and a broker with tens
/// of thousands of queues would read gigabytes of them at every start, as RocketMQ's
/// last-files scan avoids): the kept entries are the prefix of valid entries whose
/// records end at or below `cut`, found by binary search (entries are in log order and
/// everything the checkpoint covers was synced, so that prefix has no holes); a garbled
/// entry at its end is dropped by [`verify_queue_tails`]. What lies beyond is not read:
/// after a clean stop nothing does (the checkpoint covered every entry); otherwise
/// (`assume_dirty`) the tail is cut and zeroed unless the file system shows only a hole
/// there ([`tail_is_hole`]).
#[allow(clippy::too_many_arguments)] // recovery's facts about one queue, each needed
fn load_queue(
    reader: &dyn StoreRead,
    topic: String,
    queue_id: i32,
    dir: FilePath,
    files: BTreeSet<u64>,
    file_size: u64,
    cut: u64,
    assume_dirty: bool,
) -> Result<LoadedQueue, RecoveryError> {
    let first = files.first().copied().unwrap_or(0);
    let file_of = |start: u64| dir.join(&paths::offset_name(start)).unwrap_or_else(FilePath::root);
    // Entries are trusted only in files that continue without a gap from the first and
    // only up to the end of the first short file (its length change was lost).
    let mut short_files = Vec::new();
    let mut limit = first;
    let mut whole = true;
    for &start in &files {
        let len = reader.len(&file_of(start))?.unwrap_or(0);
        if len < file_size {
            short_files.push(start);
        }
        if whole && start == limit {
            limit = start + len.min(file_size);
            whole = len >= file_size;
        } else {
            whole = false;
        }
    }
    let limit = limit / ENTRY_LEN;
    // The first page of the first file: most queues' entries all lie in it.
    let mut page = vec![0u8; HOLE_GRAIN as usize];
    let got = if files.is_empty() { 0 } else { reader.read_at(&file_of(first), 0, &mut page)? };
    page.truncate(got);
    let head = page.get(..got - got % ENTRY_LEN as usize).unwrap_or_default();
    let head_from = first / ENTRY_LEN;
    let leading = head.chunks_exact(ENTRY_LEN as usize).take_while(|slot| is_pre_blank(slot)).count() as u64;
    let mut min_offset = head_from + leading;
    if leading == HEAD_SLOTS as u64 {
        // Pre-blanks fill the whole first page: bisect the first file for where they end.
        let (mut low, mut high) = (min_offset, (head_from + file_size / ENTRY_LEN).min(limit.max(head_from)));
        while low < high {
            let mid = low + (high - low) / 2;
            let mut slot = [0u8; ENTRY_LEN as usize];
            let got = read_slot(reader, &dir, file_size, mid, &mut slot)?;
            if got == slot.len() && is_pre_blank(&slot) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        min_offset = low;
    }
    let min_offset = min_offset.min(limit);
    // Whether slot `i` holds an entry the checkpoint covers.
    let trusted = |i: u64| -> Result<bool, RecoveryError> {
        let mut slot = [0u8; ENTRY_LEN as usize];
        let bytes = slot_at(head, head_from, i, reader, &dir, file_size, &mut slot)?;
        Ok(bytes.len() == ENTRY_LEN as usize
            && CqEntry::decode(bytes).is_some_and(|entry| entry.end().0 <= cut))
    };
    // Gallop from the start (a queue's few entries are found in its first page, touching
    // no other), then bisect the last stride.
    let (mut low, mut high) = (min_offset, limit);
    let mut stride = 1u64;
    while low < high {
        let probe = (low + stride - 1).min(high - 1);
        if !trusted(probe)? {
            high = probe;
            break;
        }
        low = probe + 1;
        stride = stride.saturating_mul(2);
    }
    while low < high {
        let mid = low + (high - low) / 2;
        if trusted(mid)? {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    let next_offset = low;
    // One look past the kept entries: anything there (a boot's unsynced work that a crash
    // cut short before the abort marker existed) is cut and zeroed too.
    let mut after = [0u8; ENTRY_LEN as usize];
    let written_after =
        slot_at(head, head_from, next_offset, reader, &dir, file_size, &mut after)?.iter().any(|x| *x != 0);
    let suspect = written_after
        || !short_files.is_empty()
        || files.last().is_some_and(|&last| last >= limit * ENTRY_LEN)
        || (assume_dirty && !tail_is_hole(reader, &dir, &files, file_size, &page, next_offset * ENTRY_LEN)?);
    let extent = if suspect { u64::MAX } else { next_offset * ENTRY_LEN };
    Ok(LoadedQueue { topic, queue_id, dir, files, min_offset, next_offset, extent, short_files })
}

/// Bytes a file system reports data or holes by (a page; a larger block only makes
/// [`tail_is_hole`] say no more often).
const HOLE_GRAIN: u64 = 4096;

/// Whether a queue's files hold nothing but zeros from byte `pos` of the queue on, found
/// without reading the preallocated rest: no file begins after the one holding `pos`, the
/// rest of `pos`'s page reads as zeros, and the file system reports only a hole after it.
/// `first_page` is what was read of the queue's first file from its start, so a tail in it
/// is not read again.
/// After a crash this is what lets recovery trust a queue's tail without cutting and
/// zeroing it (two truncations per queue, which with 80,000 queues doubled a restart); it
/// sees page-cache-only data and holes alike, so whatever a power loss kept, however
/// scattered, is found.
fn tail_is_hole(
    reader: &dyn StoreRead,
    dir: &FilePath,
    files: &BTreeSet<u64>,
    file_size: u64,
    first_page: &[u8],
    pos: u64,
) -> Result<bool, RecoveryError> {
    let tail_start = pos - pos % file_size;
    if files.range(tail_start + 1..).next().is_some() {
        return Ok(false);
    }
    if !files.contains(&tail_start) {
        return Ok(true);
    }
    let file = dir.join(&paths::offset_name(tail_start)).unwrap_or_else(FilePath::root);
    let in_file = pos - tail_start;
    let page_end = ((in_file / HOLE_GRAIN + 1) * HOLE_GRAIN).min(file_size);
    let (from, to) = (usize::try_from(in_file).unwrap_or(usize::MAX), usize::try_from(page_end).unwrap_or(0));
    let in_first_page = files.first() == Some(&tail_start) && to <= first_page.len();
    let rest_written = if in_first_page {
        first_page.get(from..to).is_some_and(|bytes| bytes.iter().any(|b| *b != 0))
    } else {
        let mut rest = vec![0u8; to.saturating_sub(from)];
        let got = reader.read_at(&file, in_file, &mut rest)?;
        rest.get(..got).is_some_and(|bytes| bytes.iter().any(|b| *b != 0))
    };
    if rest_written {
        return Ok(false);
    }
    Ok(page_end >= file_size || reader.next_data(&file, page_end)?.is_none())
}

/// Slot `i` of a queue: from `head` (its first file's first slots, from slot `head_from`)
/// when it lies there, else read from its file into `buf`; fewer than 20 bytes past a
/// file's end.
fn slot_at<'a>(
    head: &'a [u8],
    head_from: u64,
    i: u64,
    reader: &dyn StoreRead,
    dir: &FilePath,
    file_size: u64,
    buf: &'a mut [u8; ENTRY_LEN as usize],
) -> Result<&'a [u8], DiskError> {
    let in_head = i.checked_sub(head_from).and_then(|k| usize::try_from(k * ENTRY_LEN).ok());
    if let Some(bytes) = in_head.and_then(|at| head.get(at..at + ENTRY_LEN as usize)) {
        return Ok(bytes);
    }
    let got = read_slot(reader, dir, file_size, i, buf)?;
    Ok(buf.get(..got).unwrap_or_default())
}

/// Reads of a queue's tail record that must all disagree with its entry before the entry
/// is dropped.
const MISMATCH_READS: usize = 5;

/// Check each queue's last kept entry against the record it points at, dropping entries
/// until one matches. ConsumeQueue entries carry no checksum, and an entry written after the
/// checkpoint can come back from a power loss garbled so that it seems to point below the
/// boundary; only such a last, unsynced entry can be wrong, so one read per queue suffices
/// (the scan then dispatches its real record again, if the record survived).
pub(super) fn verify_queue_tails(
    reader: &dyn StoreRead,
    config: &StoreConfig,
    file_size: u64,
    cut: u64,
    loaded: &mut [LoadedQueue],
) -> Result<(), RecoveryError> {
    for queue in loaded {
        while queue.next_offset > queue.min_offset {
            let offset = queue.next_offset - 1;
            let pos = offset * ENTRY_LEN;
            let file =
                queue.dir.join(&paths::offset_name(pos - pos % file_size)).unwrap_or_else(FilePath::root);
            let mut slot = [0u8; ENTRY_LEN as usize];
            let got = reader.read_at(&file, pos % file_size, &mut slot)?;
            // A mismatch must be read again before it is believed: dropping a good entry to
            // a transient read fault would lose a message and reuse its offset.
            // An entry past the cut points into log recovery is about to drop (a stale
            // entry the search took for a trusted one can leave one below it): never a match,
            // however whole the record still on disk there looks.
            let matches = got == slot.len()
                && CqEntry::decode(&slot).is_some_and(|entry| {
                    entry.end().0 <= cut
                        && (0..MISMATCH_READS).any(|_| entry_matches(reader, config, queue, offset, &entry))
                });
            if matches {
                break;
            }
            tracing::warn!(topic = %queue.topic, queue = queue.queue_id, offset, "dropping a ConsumeQueue entry that does not match its record");
            queue.next_offset = offset;
        }
    }
    Ok(())
}

/// Whether `entry`, slot `offset` of `queue`, points at an intact record of that queue and
/// offset.
fn entry_matches(
    reader: &dyn StoreRead,
    config: &StoreConfig,
    queue: &LoadedQueue,
    offset: u64,
    entry: &CqEntry,
) -> bool {
    let phys = entry.phys_offset.0;
    let base = phys - phys % config.segment_size;
    let mut buf = vec![0u8; usize::try_from(entry.size).unwrap_or(0)];
    if phys % config.segment_size + u64::from(entry.size) > config.segment_size {
        return false;
    }
    match reader.read_at(&paths::segment(base), phys - base, &mut buf) {
        Ok(got) if got == buf.len() => {}
        _ => return false,
    }
    match parse_record(&buf) {
        Ok(Parsed::Message(view)) => {
            view.bytes.len() == buf.len()
                && u64::try_from(view.head().physical_offset).ok() == Some(phys)
                && u64::try_from(view.head().queue_offset).ok() == Some(offset)
                && view.head().queue_id == queue.queue_id
                && view.record.topic == queue.topic
                && verify_crcs(&view, true).is_ok()
        }
        _ => false,
    }
}
