//! The IndexFile: messages found by key (`KEYS` tokens and `UNIQ_KEY`), in RocketMQ's layout
//! (see [`layout`]).
//!
//! Files are `index/{20-digit CommitLog offset of the first record they index}`; a record's
//! keys always go into one file, so names rise with the log and a file's records all lie at
//! or above its name. Entries are dispatched as records are appended, staged, and leave as
//! writes at the next round, like ConsumeQueue entries; the file being filled keeps its hash
//! slots in memory ("live"). Its slots go to disk, with Keel's seal record, only at a
//! checkpoint after the file is full and at shutdown, once the entries they point to were
//! synced, so slots on disk never point at entries a power loss could take back:
//!
//! - a full file is sealed in the first checkpoint that covers the record that filled it, so a
//!   checkpoint whose `queue_durable_end` lies past the next file's name vouches for the seal;
//!   recovery checks any other file's slots against its seal's CRC, and rebuilds them from
//!   its entries if they do not match;
//! - recovery loads the newest file's slots (from disk if its seal matches), replays its
//!   entries past the seal, stops at the first that does not continue the chain it rebuilds,
//!   and drops every entry of a record it dispatches again (from where the ConsumeQueues
//!   are dispatched again), so the index matches the recovered log exactly.
//!
//! Queries walk a slot's chain newest to oldest, and every hit is checked against its
//! record (topic, key, time) before it is returned: RocketMQ returns hash collisions.

mod layout;
mod load;
mod query;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::ops::{OpQueue, Purpose};
use super::paths;
use crate::invalid_setting::InvalidSetting;
use crate::io::{DiskOp, FilePath};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::sys_flag;
use layout::{Entry, Geometry, Header, Seal};

pub use layout::key_hash;
pub(crate) use load::load;
pub use query::{KeyQuery, KeyQueryResult};

/// Keys of one record indexed at most: a record's keys share one file, so a file must hold
/// them; RocketMQ has no limit, and 64 keys on one message is far past any real use.
pub const MAX_KEYS_PER_RECORD: usize = 64;

/// Slots per page written when a file's slots go to disk (4 KiB).
const SLOTS_PER_PAGE: usize = 1024;

/// IndexFile settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    /// Whether records are indexed (`messageIndexEnable`).
    pub enabled: bool,
    /// Hash slots per file (`maxHashSlotNum`).
    pub max_hash_slots: u32,
    /// Entries per file (`maxIndexNum`).
    pub max_entries: u32,
}

impl Default for IndexConfig {
    /// RocketMQ's: enabled, 5,000,000 slots, 20,000,000 entries (420 MB files).
    fn default() -> Self {
        Self { enabled: true, max_hash_slots: 5_000_000, max_entries: 20_000_000 }
    }
}

impl IndexConfig {
    /// Check the sizes; the error names the key to fix.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.max_hash_slots == 0 || self.max_hash_slots > i32::MAX as u32 / 4 {
            return Err(InvalidSetting::new("maxHashSlotNum", "must be between 1 and 536870911"));
        }
        let least = MAX_KEYS_PER_RECORD as u32 + 1;
        if self.max_entries < least || self.max_entries > i32::MAX as u32 / 20 {
            let problem = format!("must be between {least} and 107374182");
            return Err(InvalidSetting::new("maxIndexNum", problem));
        }
        Ok(())
    }

    fn geometry(&self) -> Geometry {
        Geometry { slots: self.max_hash_slots, entries: self.max_entries }
    }
}

/// Pages of slots changed since the slots were last written, a bit each: marked on every
/// key appended, so a set that costs no allocation or search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageSet(Vec<u64>);

impl PageSet {
    /// Mark `page`.
    pub(crate) fn insert(&mut self, page: u32) {
        let (word, bit) = (page as usize / 64, page % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    /// The marked pages in order, clearing them.
    pub(crate) fn take(&mut self) -> Vec<u32> {
        let words = core::mem::take(&mut self.0);
        let mut pages = Vec::new();
        for (at, word) in words.into_iter().enumerate() {
            let mut word = word;
            while word != 0 {
                let bit = word.trailing_zeros();
                pages.push(u32::try_from(at * 64).unwrap_or(u32::MAX) + bit);
                word &= word - 1;
            }
        }
        pages
    }
}

/// A file's slots and unwritten entries, kept in memory while it is filled and until its
/// slots are on disk.
#[derive(Debug)]
struct Live {
    slots: Vec<u32>,
    /// Slots that are not 0.
    used: u32,
    /// Pages of slots changed since the slots were last written.
    dirty: PageSet,
    /// Entries from `pending_from` on, not known written yet.
    pending: Vec<u8>,
    pending_from: u32,
    /// Entries below this were issued as writes.
    emitted: u32,
    /// No more entries go here: its slots go to disk at the next checkpoint.
    full: bool,
    /// The entries the seal on disk covers (0: no valid seal).
    sealed_count: u32,
    /// The entries the last sync of a checkpoint covered: slots may go to disk only when
    /// this is every entry.
    synced_count: u32,
}

impl Live {
    /// A live file over `slots`, `count` entries used; `dirty` holds the slot pages that
    /// differ from the slots on disk.
    fn new(slots: Vec<u32>, count: u32, dirty: PageSet) -> Self {
        let used = u32::try_from(slots.iter().filter(|s| **s != 0).count()).unwrap_or(u32::MAX);
        Self {
            slots,
            used,
            dirty,
            pending: Vec::new(),
            pending_from: count,
            emitted: count,
            full: false,
            sealed_count: 0,
            synced_count: 0,
        }
    }

    /// Every page of `slots` holding a non-zero slot.
    fn pages_in_use(slots: &[u32]) -> PageSet {
        let mut pages = PageSet::default();
        for (page, chunk) in slots.chunks(SLOTS_PER_PAGE).enumerate() {
            if chunk.iter().any(|s| *s != 0) {
                pages.insert(u32::try_from(page).unwrap_or(u32::MAX));
            }
        }
        pages
    }

    /// Entry `index` if it is still in memory.
    fn pending_entry(&self, index: u32) -> Option<Entry> {
        let at = usize::try_from(index.checked_sub(self.pending_from)?).ok()? * layout::ENTRY_LEN as usize;
        Entry::decode(self.pending.get(at..at + layout::ENTRY_LEN as usize)?)
    }
}

/// One index file.
#[derive(Debug)]
struct IndexFile {
    header: Header,
    /// Its creation was issued (or it was found on disk).
    created: bool,
    live: Option<Box<Live>>,
}

impl IndexFile {
    fn count(&self) -> u32 {
        u32::try_from(self.header.index_count).unwrap_or(1)
    }

    /// Append an entry for a key hashing to `hash` of the record at `phys` (the file is
    /// live and has room: [`IndexSet::file_for`] chose it).
    fn put(&mut self, geometry: Geometry, hash: u32, phys: u64, store_timestamp: i64) {
        let Some(live) = self.live.as_mut() else { return };
        let index = u32::try_from(self.header.index_count).unwrap_or(1);
        if index == 1 {
            self.header.begin_timestamp = store_timestamp;
            self.header.begin_phys = crate::protocol::wire_long(phys);
        }
        let slot = geometry.slot_of(hash);
        let Some(head) = live.slots.get_mut(slot as usize) else { return };
        let prev = *head;
        *head = index;
        if prev == 0 {
            live.used += 1;
            self.header.hash_slot_count = i32::try_from(live.used).unwrap_or(i32::MAX);
        }
        live.dirty.insert(slot / SLOTS_PER_PAGE as u32);
        let seconds = store_timestamp.saturating_sub(self.header.begin_timestamp) / 1000;
        let time_diff = i32::try_from(seconds.max(0)).unwrap_or(i32::MAX);
        live.pending.extend_from_slice(&Entry { hash, phys, time_diff, prev }.encode());
        self.header.index_count += 1;
        self.header.end_timestamp = store_timestamp;
        self.header.end_phys = crate::protocol::wire_long(phys);
    }
}

/// Every index file, in name order.
#[derive(Debug)]
pub(crate) struct IndexSet {
    config: IndexConfig,
    files: BTreeMap<u64, IndexFile>,
    /// Files with entries or a creation not issued yet.
    staged: BTreeSet<u64>,
    /// Files written since their last sync.
    unsynced: BTreeSet<u64>,
    /// A file was created or removed since the directory was last synced.
    dir_dirty: bool,
    /// Files whose slots are being written in the current checkpoint.
    sealing: Vec<u64>,
    /// The newest file and its count at the last [`issue_sync`](Self::issue_sync): what a
    /// checkpoint written after that sync vouches for.
    synced_mark: Option<crate::store::IndexMark>,
}

/// `index/`.
pub(crate) fn index_dir() -> FilePath {
    FilePath::new("index").unwrap_or_else(FilePath::root)
}

fn file_path(name: u64) -> FilePath {
    index_dir().join(&paths::offset_name(name)).unwrap_or_else(FilePath::root)
}

/// The keys of a record to index: its UNIQ_KEY, then each KEYS token (split on single
/// spaces, empty ones skipped), at most `cap`.
fn record_keys(properties: &[u8], cap: usize) -> impl Iterator<Item = &[u8]> {
    let unique = properties::find(properties, keys::UNIQ_KEY).filter(|k| !k.is_empty());
    let tokens = properties::find(properties, keys::KEYS)
        .into_iter()
        .flat_map(|keys| keys.split(|b| *b == b' '))
        .filter(|k| !k.is_empty());
    unique.into_iter().chain(tokens).take(cap)
}

/// Whether a record is indexed: all but transaction rollbacks, as RocketMQ's `buildIndex`.
fn indexed(flag: i32) -> bool {
    flag & sys_flag::TRANSACTION_MASK != sys_flag::TRANSACTION_ROLLBACK
}

impl IndexSet {
    /// An empty set.
    pub(crate) fn new(config: IndexConfig) -> Self {
        Self {
            config,
            files: BTreeMap::new(),
            staged: BTreeSet::new(),
            unsynced: BTreeSet::new(),
            dir_dirty: false,
            sealing: Vec::new(),
            synced_mark: None,
        }
    }

    fn geometry(&self) -> Geometry {
        self.config.geometry()
    }

    /// Index a record appended (or dispatched again) at `phys`.
    pub(crate) fn add_record(
        &mut self,
        phys: u64,
        store_timestamp: i64,
        topic: &str,
        props: &[u8],
        flag: i32,
    ) {
        if !self.config.enabled || !indexed(flag) {
            return;
        }
        let cap = MAX_KEYS_PER_RECORD.min(self.config.max_entries.saturating_sub(1) as usize);
        // Most records carry a unique id and a key or two: those are kept from the one
        // scan of the properties; more are found again by a second.
        let mut head: [&[u8]; 4] = [&[]; 4];
        let mut count = 0;
        for key in record_keys(props, cap) {
            if let Some(kept) = head.get_mut(count) {
                *kept = key;
            }
            count += 1;
        }
        if count == 0 {
            return;
        }
        let geometry = self.geometry();
        let name = self.file_for(phys, u32::try_from(count).unwrap_or(u32::MAX));
        let Some(file) = self.files.get_mut(&name) else { return };
        let prefix = layout::topic_prefix(topic);
        let mut put = |key: &[u8]| {
            file.put(geometry, layout::key_hash_after(prefix, topic, key), phys, store_timestamp)
        };
        if count <= head.len() {
            head.iter().take(count).for_each(|key| put(key));
        } else {
            record_keys(props, cap).for_each(put);
        }
        self.staged.insert(name);
    }

    /// The file `entries` more keys of the record at `phys` go into: the newest, or a new
    /// one named `phys` if that is full.
    fn file_for(&mut self, phys: u64, entries: u32) -> u64 {
        let max = self.config.max_entries;
        if let Some((&name, file)) = self.files.iter_mut().next_back() {
            match file.live.as_mut() {
                Some(live) if !live.full && file.header.index_count as u32 + entries <= max => {
                    return name;
                }
                Some(live) => live.full = true,
                None => {}
            }
        }
        // A new file's slots are all zero, as on disk: nothing is dirty yet.
        let live = Live::new(vec![0; self.geometry().slots as usize], 1, PageSet::default());
        let header = Header { index_count: 1, ..Header::default() };
        self.files.insert(phys, IndexFile { header, created: false, live: Some(Box::new(live)) });
        phys
    }

    /// Issue staged entries (and new files) as writes.
    pub(crate) fn emit_staged(&mut self, ops: &mut OpQueue) {
        let geometry = self.geometry();
        for name in core::mem::take(&mut self.staged) {
            let Some(file) = self.files.get_mut(&name) else { continue };
            let path = file_path(name);
            if !file.created {
                file.created = true;
                self.dir_dirty = true;
                ops.push(DiskOp::Create { file: path.clone(), len: geometry.file_len() }, Purpose::Plain);
                let header = Bytes::copy_from_slice(&file.header.encode());
                ops.push(DiskOp::Write { file: path.clone(), offset: 0, data: header }, Purpose::Plain);
            }
            let count = file.count();
            let Some(live) = file.live.as_mut() else { continue };
            if live.emitted >= count {
                continue;
            }
            let from = (live.emitted - live.pending_from) as usize * layout::ENTRY_LEN as usize;
            let data = Bytes::copy_from_slice(live.pending.get(from..).unwrap_or_default());
            let offset = geometry.entry_pos(live.emitted);
            live.emitted = count;
            ops.push(
                DiskOp::Write { file: path, offset, data },
                Purpose::IndexWrite { file: name, upto: count },
            );
            self.unsynced.insert(name);
        }
    }

    /// An entry write completed: entries below `upto` of file `name` read from disk.
    pub(crate) fn written(&mut self, name: u64, upto: u32) {
        let Some(live) = self.files.get_mut(&name).and_then(|f| f.live.as_mut()) else { return };
        if upto > live.pending_from {
            let drop =
                ((upto - live.pending_from) as usize * layout::ENTRY_LEN as usize).min(live.pending.len());
            live.pending.drain(..drop);
            live.pending_from = upto;
        }
    }

    /// Issue syncs of every index file written since the last round (staged entries first);
    /// true if any.
    pub(crate) fn issue_sync(&mut self, ops: &mut OpQueue, purpose: Purpose) -> bool {
        self.emit_staged(ops);
        for file in self.files.values_mut() {
            let count = file.count();
            if let Some(live) = file.live.as_mut() {
                live.synced_count = count;
            }
        }
        self.synced_mark = self
            .files
            .iter()
            .next_back()
            .map(|(name, file)| crate::store::IndexMark { file: *name, count: file.count() });
        let unsynced = core::mem::take(&mut self.unsynced);
        let any = !unsynced.is_empty() || self.dir_dirty;
        for name in unsynced {
            ops.push(DiskOp::Sync { file: file_path(name) }, purpose);
        }
        if core::mem::take(&mut self.dir_dirty) {
            ops.push(DiskOp::SyncDir { dir: index_dir() }, purpose);
        }
        any
    }

    /// The entries the last sync covered, for the checkpoint written after it.
    pub(crate) fn synced_mark(&self) -> Option<crate::store::IndexMark> {
        self.synced_mark
    }

    /// Recovery touched this file: it is synced with the rest of recovery's work.
    pub(crate) fn mark_unsynced(&mut self, name: u64) {
        self.unsynced.insert(name);
    }

    /// Everything was made durable by one `SyncAll`.
    pub(crate) fn forget_unsynced(&mut self) {
        self.unsynced.clear();
        self.dir_dirty = false;
    }

    /// Whether a checkpoint has slots to write: a full file's, or at shutdown the newest's
    /// if it changed since its seal.
    pub(crate) fn seal_due(&self, shutting_down: bool) -> bool {
        self.files.keys().any(|name| self.wants_seal(*name, shutting_down))
    }

    fn wants_seal(&self, name: u64, shutting_down: bool) -> bool {
        let last = self.files.keys().next_back().copied();
        let Some(file) = self.files.get(&name) else { return false };
        file.live.as_ref().is_some_and(|live| {
            live.full || (shutting_down && Some(name) == last && live.sealed_count != file.count())
        })
    }

    /// Write the slots, header and seal of every file [`seal_due`](Self::seal_due) names,
    /// then sync them, in `purpose`'s group; a file with entries the checkpoint's sync did not
    /// cover waits for the next one, as its slots must never point at entries a power loss
    /// could take back.
    pub(crate) fn seal(&mut self, ops: &mut OpQueue, purpose: Purpose, shutting_down: bool) {
        let geometry = self.geometry();
        let due: Vec<u64> =
            self.files.keys().copied().filter(|n| self.wants_seal(*n, shutting_down)).collect();
        for name in due {
            let Some(file) = self.files.get_mut(&name) else { continue };
            let count = file.count();
            let Some(live) = file.live.as_mut() else { continue };
            if live.synced_count != count {
                // Entries came after this checkpoint's sync: the next checkpoint seals it.
                continue;
            }
            let path = file_path(name);
            let table = layout::slot_bytes(&live.slots);
            let crc = crc32fast::hash(&table);
            let table = Bytes::from(table);
            let page_len = SLOTS_PER_PAGE * 4;
            let mut dirty = live.dirty.take().into_iter().peekable();
            while let Some(first) = dirty.next() {
                let mut last_page = first;
                while dirty.peek() == Some(&(last_page + 1)) {
                    last_page += 1;
                    dirty.next();
                }
                let start = first as usize * page_len;
                let end = ((last_page as usize + 1) * page_len).min(table.len());
                if start < end {
                    let data = table.slice(start..end);
                    let offset = geometry.slot_pos(first * SLOTS_PER_PAGE as u32);
                    ops.push(DiskOp::Write { file: path.clone(), offset, data }, purpose);
                }
            }
            let header = file.header.encode();
            let seal = Seal::of(&file.header, crc).encode();
            let at = geometry.entry_pos(0);
            ops.push(
                DiskOp::Write { file: path.clone(), offset: 0, data: Bytes::copy_from_slice(&header) },
                purpose,
            );
            ops.push(
                DiskOp::Write { file: path.clone(), offset: at, data: Bytes::copy_from_slice(&seal) },
                purpose,
            );
            ops.push(DiskOp::Sync { file: path }, purpose);
            live.sealed_count = count;
            self.unsynced.remove(&name);
            self.sealing.push(name);
        }
    }

    /// The checkpoint that sealed files finished: a full file's slots are read from disk
    /// from now on.
    pub(crate) fn sealed_done(&mut self) {
        for name in core::mem::take(&mut self.sealing) {
            if let Some(file) = self.files.get_mut(&name) {
                if file.live.as_ref().is_some_and(|live| live.full) {
                    file.live = None;
                }
            }
        }
    }

    /// Retention: remove every file whose records all lie below `log_min`, except the newest.
    pub(crate) fn retire_below(&mut self, log_min: u64, ops: &mut OpQueue, purpose: Purpose) {
        let last = self.files.keys().next_back().copied();
        let gone: Vec<u64> = self
            .files
            .iter()
            .filter(|(name, file)| {
                Some(**name) != last
                    && file.live.is_none()
                    && u64::try_from(file.header.end_phys).is_ok_and(|end| end < log_min)
            })
            .map(|(name, _)| *name)
            .collect();
        for name in &gone {
            self.files.remove(name);
            self.unsynced.remove(name);
            ops.push(DiskOp::Remove { file: file_path(*name) }, purpose);
        }
        if !gone.is_empty() {
            ops.push(DiskOp::SyncDir { dir: index_dir() }, purpose);
            tracing::info!(files = gone.len(), "expired index files deleted");
        }
    }

    /// Files, for operators and audits: (name, entries, whether its slots are in memory).
    pub(crate) fn files(&self) -> impl Iterator<Item = (u64, u32, bool)> + '_ {
        self.files.iter().map(|(name, file)| (*name, file.count() - 1, file.live.is_some()))
    }
}
