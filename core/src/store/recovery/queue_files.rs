//! Recovery's view of the ConsumeQueue files: each queue's entries as found on disk, the
//! prefix worth keeping (entries of records at or below the cut, without gaps), and a check
//! of each kept tail against the CommitLog.

use std::collections::BTreeSet;

use super::super::consume_queue::{CqEntry, ENTRY_LEN};
use super::super::paths;
use super::super::StoreConfig;
use super::RecoveryError;
use crate::io::{FilePath, StoreRead};
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
    /// Byte position of the first all-zero slot (or the end of the last file): beyond it
    /// the files hold nothing.
    pub(super) extent: u64,
    /// Files shorter than a full ConsumeQueue file (their length change was lost).
    pub(super) short_files: Vec<u64>,
}

pub(super) fn load_queues(
    reader: &dyn StoreRead,
    file_size: u64,
    cut: u64,
    log_min: u64,
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
            let mut queue = load_queue(reader, topic.clone(), queue_id, dir, files, file_size, cut)?;
            queue.min_offset = first_at_or_above(reader, &queue, file_size, log_min)?;
            loaded.push(queue);
        }
    }
    Ok(loaded)
}

/// The first kept entry of `queue` whose record starts at or above `log_min`: retention
/// deleted the segments below it (and maybe not yet the queue files pointing there).
/// Entries are in log order, so a binary search finds it.
fn first_at_or_above(
    reader: &dyn StoreRead,
    queue: &LoadedQueue,
    file_size: u64,
    log_min: u64,
) -> Result<u64, RecoveryError> {
    let (mut low, mut high) = (queue.min_offset, queue.next_offset);
    while low < high {
        let mid = low + (high - low) / 2;
        let pos = mid * ENTRY_LEN;
        let file = queue.dir.join(&paths::offset_name(pos - pos % file_size)).unwrap_or_else(FilePath::root);
        let mut slot = [0u8; ENTRY_LEN as usize];
        let got = reader.read_at(&file, pos % file_size, &mut slot)?;
        if got == slot.len() && CqEntry::decode(&slot).is_some_and(|e| e.phys_offset < log_min) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// Marks slots before a queue's first entry in its first file (RocketMQ's pre-blank entry).
const PRE_BLANK_SIZE: i32 = i32::MAX;

fn load_queue(
    reader: &dyn StoreRead,
    topic: String,
    queue_id: i32,
    dir: FilePath,
    files: BTreeSet<u64>,
    file_size: u64,
    cut: u64,
) -> Result<LoadedQueue, RecoveryError> {
    let first = files.first().copied().unwrap_or(0);
    let mut min_offset = first / ENTRY_LEN;
    let mut next_offset = min_offset;
    let mut extent = first;
    let mut keeping = true;
    let mut buf = vec![0u8; usize::try_from(file_size).unwrap_or(0)];
    let mut short_files = Vec::new();
    for &start in &files {
        let file = dir.join(&paths::offset_name(start)).unwrap_or_else(FilePath::root);
        if reader.len(&file)?.unwrap_or(0) < file_size {
            short_files.push(start);
        }
        // Entries are kept while they continue without a gap from the queue's start.
        keeping &= start == next_offset * ENTRY_LEN - (next_offset * ENTRY_LEN) % file_size;
        let got = reader.read_at(&file, 0, &mut buf)?;
        // A torn slot at the end of a short file is no entry.
        let data = buf.get(..got - got % ENTRY_LEN as usize).unwrap_or_default();
        // Files are preallocated: slots past the last non-zero byte were never written, so
        // only the written prefix is walked slot by slot.
        let written = written_len(data);
        if written > 0 {
            extent = extent.max(start + written as u64);
        }
        let mut slot_pos = start;
        for slot in data.get(..written).unwrap_or_default().chunks_exact(ENTRY_LEN as usize) {
            let pre_blank = slot.get(8..12) == Some(&PRE_BLANK_SIZE.to_be_bytes()[..])
                && slot.get(..8).is_some_and(|b| b.iter().all(|x| *x == 0));
            if keeping && slot_pos == next_offset * ENTRY_LEN {
                if pre_blank && next_offset == min_offset {
                    min_offset += 1;
                    next_offset += 1;
                } else {
                    match CqEntry::decode(slot) {
                        Some(entry) if entry.end() <= cut => next_offset += 1,
                        _ => keeping = false,
                    }
                }
            }
            slot_pos += ENTRY_LEN;
        }
        // The first unwritten slot, if any, is an empty entry: the kept entries end there.
        if written + ENTRY_LEN as usize <= data.len() && slot_pos == next_offset * ENTRY_LEN {
            keeping = false;
        }
        // A short file ends the kept entries where its bytes end.
        keeping &= got as u64 == file_size;
    }
    Ok(LoadedQueue { topic, queue_id, dir, files, min_offset, next_offset, extent, short_files })
}

/// Check each queue's last kept entry against the record it points at, dropping entries
/// until one matches. ConsumeQueue entries carry no checksum, and an entry written after the
/// checkpoint can come back from a power loss garbled so that it seems to point below the
/// boundary; only such a last, unsynced entry can be wrong, so one read per queue suffices
/// (the scan then dispatches its real record again, if the record survived).
pub(super) fn verify_queue_tails(
    reader: &dyn StoreRead,
    config: &StoreConfig,
    file_size: u64,
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
            let matches = got == slot.len()
                && CqEntry::decode(&slot)
                    .is_some_and(|entry| entry_matches(reader, config, queue, offset, &entry));
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
    let phys = entry.phys_offset;
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
                && u64::try_from(view.physical_offset).ok() == Some(phys)
                && u64::try_from(view.queue_offset).ok() == Some(offset)
                && view.queue_id == queue.queue_id
                && view.topic == queue.topic
                && verify_crcs(&view, true).is_ok()
        }
        _ => false,
    }
}

/// The length of `data` up to the end of the last slot holding a non-zero byte. Zero runs are
/// skipped a block at a time (a slice comparison, i.e. `memcmp`), as preallocated queue files
/// are mostly zeros and recovery reads every one of them.
fn written_len(data: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut end = data.len();
    while end > 0 {
        let from = end.saturating_sub(BLOCK);
        let block = data.get(from..end).unwrap_or_default();
        if block == ZEROS.get(..block.len()).unwrap_or_default() {
            end = from;
            continue;
        }
        let last = block.iter().rposition(|b| *b != 0).map_or(0, |i| from + i);
        let slot = ENTRY_LEN as usize;
        return (last / slot + 1) * slot;
    }
    0
}
