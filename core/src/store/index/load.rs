//! Loading the index at recovery, so it matches the recovered log exactly (see the
//! [module docs](super) for why each step is sound).
//!
//! 1. Files named at or past `reindex_from` (where recovery dispatches records again) are
//!    removed: every record they indexed is indexed again.
//! 2. Every other file but the newest keeps its slots on disk if a checkpoint vouches for its
//!    seal or the seal's CRC matches them; else its slots are rebuilt from its entries and
//!    written again.
//! 3. The newest file's slots are loaded (from disk if its seal matches and the entries it
//!    covers all lie below `reindex_from`), its entries after them replayed up to the first
//!    that does not continue (empty, out of log order, at or past `reindex_from`, or not
//!    linking to its slot's head), and everything after that point is zeroed.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::layout::{Entry, Geometry, Header, Seal, ENTRY_LEN, HEADER_LEN, SLOT_LEN};
use super::{file_path, index_dir, IndexFile, IndexSet, Live, PageSet, SLOTS_PER_PAGE};
use crate::io::{DiskError, DiskOp, FilePath, StoreRead};
use crate::store::{paths, Checkpoint, StoreConfig};

/// Entries read at a time while replaying.
const REPLAY_CHUNK: u32 = 64 * 1024;

/// Load the index files for a log whose records from `reindex_from` on are dispatched again,
/// trusting what `checkpoint` vouches for (the default one vouches for nothing). Returns
/// the set and the fix-ups to run (and sync) before the store takes writes.
pub(crate) fn load(
    reader: &dyn StoreRead,
    store_config: &StoreConfig,
    reindex_from: u64,
    checkpoint: &Checkpoint,
    ignored: &mut Vec<String>,
) -> Result<(IndexSet, Vec<DiskOp>), DiskError> {
    let config = store_config.index;
    let trusted_below = checkpoint.queue_durable_end;
    let mut set = IndexSet::new(config);
    let mut fixups = Vec::new();
    if !config.enabled {
        return Ok((set, fixups));
    }
    let geometry = config.geometry();
    let mut names = BTreeSet::new();
    for name in reader.list(&index_dir())? {
        let Some(n) = paths::parse_offset_name(&name) else {
            ignored.push(format!("index/{name}"));
            continue;
        };
        match reader.len(&file_path(n))? {
            Some(len) if len > geometry.file_len() => {
                tracing::warn!(
                    file = name,
                    "index file larger than maxHashSlotNum and maxIndexNum make one: not used"
                );
                ignored.push(format!("index/{name}"));
            }
            Some(len) => {
                if len < geometry.file_len() && n < reindex_from {
                    // Its creation (or a cut) was interrupted: what is missing reads as zeros.
                    fixups.push(DiskOp::SetLen { file: file_path(n), len: geometry.file_len() });
                    set.mark_unsynced(n);
                }
                names.insert(n);
            }
            None => {}
        }
    }
    for &name in names.range(reindex_from..) {
        fixups.push(DiskOp::Remove { file: file_path(name) });
        set.dir_dirty = true;
    }
    let kept: Vec<u64> = names.range(..reindex_from).copied().collect();
    for (at, &name) in kept.iter().enumerate() {
        match kept.get(at + 1) {
            Some(&next) => load_sealed(reader, geometry, name, trusted_below > next, &mut set, &mut fixups)?,
            None => {
                // Entries past the mark were never synced: one torn by a power loss can look
                // like any entry, so none is replayed (their records are dispatched again).
                let cap = match checkpoint.index_mark {
                    _ if store_config.mutated(crate::mutation::Mutation::IndexSkipsReplay) => 0,
                    Some(mark) if mark.file == name => mark.count,
                    _ => geometry.entries,
                };
                load_newest(reader, geometry, (name, cap), reindex_from, &mut set, &mut fixups)?;
            }
        }
    }
    Ok((set, fixups))
}

fn read_header(
    reader: &dyn StoreRead,
    geometry: Geometry,
    path: &FilePath,
) -> Result<(Header, Option<Seal>), DiskError> {
    let mut head = [0u8; HEADER_LEN as usize];
    let got = reader.read_at(path, 0, &mut head)?;
    let header = Header::decode(head.get(..got).unwrap_or_default()).unwrap_or_default();
    let mut seal = [0u8; ENTRY_LEN as usize];
    let got = reader.read_at(path, geometry.entry_pos(0), &mut seal)?;
    let seal = Seal::decode(seal.get(..got).unwrap_or_default(), &header);
    Ok((header, seal.filter(|s| s.count >= 1 && s.count <= geometry.entries)))
}

/// The slots on disk, if their CRC is `crc`.
fn read_slots(
    reader: &dyn StoreRead,
    geometry: Geometry,
    path: &FilePath,
    crc: u32,
) -> Result<Option<Vec<u32>>, DiskError> {
    let mut bytes = vec![0u8; geometry.slots as usize * SLOT_LEN as usize];
    let got = reader.read_at(path, geometry.slot_pos(0), &mut bytes)?;
    if got < bytes.len() || crc32fast::hash(&bytes) != crc {
        return Ok(None);
    }
    Ok(Some(
        bytes
            .chunks_exact(SLOT_LEN as usize)
            .map(|b| <[u8; 4]>::try_from(b).map_or(0, u32::from_be_bytes))
            .collect(),
    ))
}

fn read_entry(
    reader: &dyn StoreRead,
    geometry: Geometry,
    path: &FilePath,
    index: u32,
) -> Result<Option<Entry>, DiskError> {
    let mut bytes = [0u8; ENTRY_LEN as usize];
    let got = reader.read_at(path, geometry.entry_pos(index), &mut bytes)?;
    Ok(Entry::decode(bytes.get(..got).unwrap_or_default()))
}

/// What replaying a file's entries found.
struct Replay {
    /// The first entry not kept: the file's next index.
    next: u32,
    /// The first and last entries kept.
    first: Option<Entry>,
    last: Option<Entry>,
    /// Pages of slots the replay changed.
    dirty: PageSet,
}

/// Apply entries from `start` up to (not including) `end` to `slots` while they continue
/// the file: non-empty, in log order from `floor`, below `below`, each linking to its slot's
/// current head.
fn replay(
    reader: &dyn StoreRead,
    geometry: Geometry,
    path: &FilePath,
    slots: &mut [u32],
    (start, end): (u32, u32),
    (floor, below): (u64, u64),
) -> Result<Replay, DiskError> {
    let end = end.min(geometry.entries);
    let mut replay = Replay { next: start, first: None, last: None, dirty: PageSet::default() };
    let mut floor = floor;
    let mut chunk = vec![0u8; REPLAY_CHUNK as usize * ENTRY_LEN as usize];
    while replay.next < end {
        let want = (end - replay.next).min(REPLAY_CHUNK) as usize * ENTRY_LEN as usize;
        let buf = chunk.get_mut(..want).unwrap_or_default();
        let got = reader.read_at(path, geometry.entry_pos(replay.next), buf)?;
        for bytes in buf.get(..got).unwrap_or_default().chunks_exact(ENTRY_LEN as usize) {
            let Some(entry) = Entry::decode(bytes) else { return Ok(replay) };
            let slot = geometry.slot_of(entry.hash) as usize;
            let head = slots.get(slot).copied();
            if entry.phys < floor
                || entry.phys >= below
                || head != Some(entry.prev)
                || entry.prev >= replay.next
            {
                return Ok(replay);
            }
            if let Some(head) = slots.get_mut(slot) {
                *head = replay.next;
            }
            replay.dirty.insert(u32::try_from(slot / SLOTS_PER_PAGE).unwrap_or(u32::MAX));
            floor = entry.phys;
            replay.first = replay.first.or(Some(entry));
            replay.last = Some(entry);
            replay.next += 1;
        }
        if got < want {
            break;
        }
    }
    Ok(replay)
}

/// Zero everything from entry `from` on, so a later recovery can never replay it.
fn zero_entries_from(geometry: Geometry, path: &FilePath, from: u32, fixups: &mut Vec<DiskOp>) {
    fixups.push(DiskOp::SetLen { file: path.clone(), len: geometry.entry_pos(from) });
    fixups.push(DiskOp::SetLen { file: path.clone(), len: geometry.file_len() });
}

/// A file that is not the newest: full, its slots on disk once checked. Its seal stands if
/// no entry follows the ones it covers and a checkpoint vouches for it or its CRC matches;
/// else the slots are completed (from the seal's, or from nothing) by replaying its entries,
/// and written again.
fn load_sealed(
    reader: &dyn StoreRead,
    geometry: Geometry,
    name: u64,
    vouched: bool,
    set: &mut IndexSet,
    fixups: &mut Vec<DiskOp>,
) -> Result<(), DiskError> {
    let path = file_path(name);
    let (header, seal) = read_header(reader, geometry, &path)?;
    let mut from_seal = None;
    if let Some(seal) = seal {
        let complete =
            seal.count == geometry.entries || read_entry(reader, geometry, &path, seal.count)?.is_none();
        if complete && vouched {
            set.files.insert(name, IndexFile { header, created: true, live: None });
            return Ok(());
        }
        if let Some(slots) = read_slots(reader, geometry, &path, seal.slots_crc)? {
            if complete {
                set.files.insert(name, IndexFile { header, created: true, live: None });
                return Ok(());
            }
            from_seal = Some((seal.count, slots));
        }
    }
    tracing::warn!(file = name, "an index file's slots do not cover its entries: completing them");
    let (start, mut slots) = from_seal.unwrap_or_else(|| (1, vec![0u32; geometry.slots as usize]));
    let replay = replay(reader, geometry, &path, &mut slots, (start, geometry.entries), (name, u64::MAX))?;
    let header = if start > 1 && replay.last.is_none() {
        header
    } else {
        replayed_header(Header { index_count: i32::try_from(start).unwrap_or(1), ..header }, &replay, &slots)
    };
    let table = super::layout::slot_bytes(&slots);
    let seal = Seal::of(&header, crc32fast::hash(&table));
    fixups.push(DiskOp::Write { file: path.clone(), offset: geometry.slot_pos(0), data: Bytes::from(table) });
    fixups.push(DiskOp::Write {
        file: path.clone(),
        offset: 0,
        data: Bytes::copy_from_slice(&header.encode()),
    });
    let at = geometry.entry_pos(0);
    fixups.push(DiskOp::Write {
        file: path.clone(),
        offset: at,
        data: Bytes::copy_from_slice(&seal.encode()),
    });
    zero_entries_from(geometry, &path, replay.next, fixups);
    set.mark_unsynced(name);
    set.files.insert(name, IndexFile { header, created: true, live: None });
    Ok(())
}

/// `header` with the counts and ends a replay found.
fn replayed_header(header: Header, replay: &Replay, slots: &[u32]) -> Header {
    let mut header = header;
    header.index_count = i32::try_from(replay.next).unwrap_or(i32::MAX);
    header.hash_slot_count = i32::try_from(slots.iter().filter(|s| **s != 0).count()).unwrap_or(i32::MAX);
    if let Some(first) = replay.first.filter(|_| header.begin_phys <= 0) {
        header.begin_phys = crate::protocol::wire_long(first.phys);
    }
    if let Some(last) = replay.last {
        header.end_phys = crate::protocol::wire_long(last.phys);
        header.end_timestamp = header.begin_timestamp.saturating_add(i64::from(last.time_diff) * 1000);
    }
    if replay.next <= 1 {
        header = Header { index_count: 1, ..Header::default() };
    }
    header
}

/// The newest file: live again, cut below `reindex_from`.
fn load_newest(
    reader: &dyn StoreRead,
    geometry: Geometry,
    (name, cap): (u64, u32),
    reindex_from: u64,
    set: &mut IndexSet,
    fixups: &mut Vec<DiskOp>,
) -> Result<(), DiskError> {
    let path = file_path(name);
    let (header, seal) = read_header(reader, geometry, &path)?;
    let mut from_seal = None;
    if let Some(seal) = seal {
        let below = seal.count == 1
            || read_entry(reader, geometry, &path, seal.count - 1)?.is_some_and(|e| e.phys < reindex_from);
        match read_slots(reader, geometry, &path, seal.slots_crc)? {
            Some(slots) if below => from_seal = Some((seal.count, slots)),
            _ => {
                // The slots on disk point at entries about to be dropped: the seal must not
                // vouch for them again after the next crash.
                let at = geometry.entry_pos(0);
                fixups.push(DiskOp::Write {
                    file: path.clone(),
                    offset: at,
                    data: Bytes::from_static(&[0; 20]),
                });
            }
        }
    }
    let sealed_count = from_seal.as_ref().map_or(0, |(count, _)| *count);
    let (start, mut slots) = from_seal.unwrap_or_else(|| (1, vec![0u32; geometry.slots as usize]));
    // Replay stops at the checkpoint's mark: a torn unsynced entry past it can look valid.
    let replay = replay(reader, geometry, &path, &mut slots, (start, cap.max(start)), (name, reindex_from))?;
    let header = if replay.last.is_none() && start > 1 {
        // Nothing past the seal: the header on disk is the seal's.
        header
    } else {
        replayed_header(header, &replay, &slots)
    };
    zero_entries_from(geometry, &path, replay.next, fixups);
    set.mark_unsynced(name);
    // With a seal, only what the replay changed differs from the slots on disk.
    let dirty = if sealed_count > 0 { replay.dirty } else { Live::pages_in_use(&slots) };
    let mut live = Live::new(slots, replay.next, dirty);
    live.sealed_count = sealed_count;
    live.full = replay.next >= geometry.entries;
    set.files.insert(name, IndexFile { header, created: true, live: Some(Box::new(live)) });
    Ok(())
}
