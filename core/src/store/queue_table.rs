//! Every ConsumeQueue's in-core state: its offsets, its files, and entries built by dispatch
//! that have not been written yet.
//!
//! Dispatch happens as each record is appended (the core built the record, so it knows the
//! entry); entries are staged and leave as `Write` operations at the next poll. Queues live
//! in a slab indexed by (topic, queue id), so an append looks its queue up once and then
//! works with a plain index.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::consume_queue::{first_entry_at_or_above, CqEntry, ENTRY_LEN, PRE_BLANK};
use super::ops::{OpQueue, Purpose};
use super::paths;
use crate::io::{DiskError, DiskOp, FilePath, StoreRead};

/// Entries a queue's staging buffer holds before it regrows.
const STAGE_ENTRIES: usize = 128;

/// One queue's state.
#[derive(Debug)]
pub(crate) struct QueueState {
    dir: FilePath,
    /// Lowest offset still in the queue.
    pub(crate) min_offset: u64,
    /// The offset the next entry gets (RocketMQ's max offset).
    pub(crate) next_offset: u64,
    /// Entries below this offset are written to the queue's files (readable).
    pub(crate) written_next: u64,
    /// Entries dispatched but not yet issued as writes, starting at `staged_from`.
    staged: Vec<u8>,
    staged_from: u64,
    /// Byte offsets of files that exist (or whose creation has been issued).
    files: BTreeSet<u64>,
    /// Files written since their last sync.
    unsynced: BTreeSet<u64>,
    /// A file was created since the directory was last synced.
    dir_dirty: bool,
}

impl QueueState {
    /// A queue whose entries run from `min_offset` to `next_offset`, with these files.
    pub(crate) fn new(dir: FilePath, min_offset: u64, next_offset: u64, files: BTreeSet<u64>) -> Self {
        Self {
            dir,
            min_offset,
            next_offset,
            written_next: next_offset,
            staged: Vec::new(),
            staged_from: next_offset,
            files,
            unsynced: BTreeSet::new(),
            dir_dirty: false,
        }
    }

    /// Add the entry at `next_offset`.
    fn push(&mut self, entry: &CqEntry) {
        if self.staged.is_empty() {
            self.staged_from = self.next_offset;
            // One allocation per queue per poll instead of regrowing entry by entry.
            self.staged.reserve(STAGE_ENTRIES * ENTRY_LEN as usize);
        }
        entry.write_to(&mut self.staged);
        self.next_offset += 1;
    }

    /// Issue staged entries as writes, creating files as needed.
    fn emit(&mut self, ops: &mut OpQueue, file_size: u64, slot: Slot) {
        let mut staged = Bytes::from(core::mem::take(&mut self.staged));
        while !staged.is_empty() {
            let pos = self.staged_from * ENTRY_LEN;
            let file_start = pos - pos % file_size;
            let in_file = pos - file_start;
            let room = usize::try_from(file_size - in_file).unwrap_or(usize::MAX);
            let chunk = staged.split_to(room.min(staged.len()));
            let Some(file) = self.dir.join(&paths::offset_name(file_start)) else { return };
            let first_file = self.files.range(..file_start).next().is_none();
            if self.files.insert(file_start) {
                ops.push(DiskOp::Create { file: file.clone(), len: file_size }, Purpose::Plain);
                self.dir_dirty = true;
                if first_file && in_file > 0 {
                    // The queue begins inside its first file (rebuilt from a log whose head
                    // was deleted): pre-blanks before it, so a loader finds where it begins.
                    let len = usize::try_from(in_file).unwrap_or(0);
                    let blanks: Vec<u8> = PRE_BLANK.iter().copied().cycle().take(len).collect();
                    ops.push(
                        DiskOp::Write { file: file.clone(), offset: 0, data: blanks.into() },
                        Purpose::Plain,
                    );
                }
            }
            self.staged_from += chunk.len() as u64 / ENTRY_LEN;
            let purpose = Purpose::CqWrite { slot: slot.0, upto: self.staged_from };
            ops.push(DiskOp::Write { file, offset: in_file, data: chunk }, purpose);
            self.unsynced.insert(file_start);
        }
    }

    /// Issue syncs for written files and the directory if files were created.
    fn issue_sync(&mut self, ops: &mut OpQueue, purpose: Purpose) {
        for file_start in core::mem::take(&mut self.unsynced) {
            if let Some(file) = self.dir.join(&paths::offset_name(file_start)) {
                ops.push(DiskOp::Sync { file }, purpose);
            }
        }
        if core::mem::take(&mut self.dir_dirty) {
            ops.push(DiskOp::SyncDir { dir: self.dir.clone() }, purpose);
        }
    }
}

/// A queue's position in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Slot(usize);

/// All queues.
#[derive(Debug)]
pub(crate) struct QueueTable {
    /// Bytes per ConsumeQueue file.
    file_size: u64,
    slots: Vec<QueueState>,
    /// (topic, queue id) → slot, in (topic, queue id) order.
    index: BTreeMap<String, BTreeMap<i32, Slot>>,
    /// Queues with staged entries, in the order they first got one since the last emit.
    dirty: Vec<Slot>,
    /// Queues written since the last sync round.
    unsynced: BTreeSet<Slot>,
    /// ConsumeQueue writes completed so far: it changes whenever entries may have become
    /// readable, so a watcher need not look at every queue after every input.
    pub(crate) writes: u64,
}

impl QueueTable {
    /// An empty table whose files hold `entries_per_file` entries.
    pub(crate) fn new(entries_per_file: u64) -> Self {
        Self {
            file_size: entries_per_file.max(1) * ENTRY_LEN,
            slots: Vec::new(),
            index: BTreeMap::new(),
            dirty: Vec::new(),
            unsynced: BTreeSet::new(),
            writes: 0,
        }
    }

    /// Bytes per ConsumeQueue file.
    pub(crate) fn file_size(&self) -> u64 {
        self.file_size
    }

    fn slot(&self, topic: &str, queue_id: i32) -> Option<Slot> {
        self.index.get(topic)?.get(&queue_id).copied()
    }

    fn state(&self, slot: Slot) -> Option<&QueueState> {
        self.slots.get(slot.0)
    }

    fn state_mut(&mut self, slot: Slot) -> Option<&mut QueueState> {
        self.slots.get_mut(slot.0)
    }

    /// Add a queue recovered from disk (replacing one of the same name).
    pub(crate) fn insert(&mut self, topic: &str, queue_id: i32, state: QueueState) -> Slot {
        if let Some(slot) = self.slot(topic, queue_id) {
            if let Some(existing) = self.state_mut(slot) {
                *existing = state;
            }
            return slot;
        }
        let slot = Slot(self.slots.len());
        self.slots.push(state);
        self.index.entry(topic.to_owned()).or_default().insert(queue_id, slot);
        slot
    }

    /// A queue's state, if it exists.
    pub(crate) fn get(&self, topic: &str, queue_id: i32) -> Option<&QueueState> {
        self.state(self.slot(topic, queue_id)?)
    }

    /// A lookup of the queues of one topic by id, finding the topic once.
    pub(crate) fn of_topic<'a>(&'a self, topic: &str) -> impl Fn(i32) -> Option<&'a QueueState> + 'a {
        let queues = self.index.get(topic);
        move |queue_id| self.state(*queues?.get(&queue_id)?)
    }

    /// The queue's slot and the offset its next entry gets, creating the queue if new;
    /// `None` if the topic cannot name a directory.
    pub(crate) fn slot_or_create(&mut self, topic: &str, queue_id: i32) -> Option<(Slot, u64)> {
        if let Some(slot) = self.slot(topic, queue_id) {
            return Some((slot, self.state(slot)?.next_offset));
        }
        let dir = paths::consume_queue_dir(topic, queue_id)?;
        let slot = self.insert(topic, queue_id, QueueState::new(dir, 0, 0, BTreeSet::new()));
        Some((slot, 0))
    }

    /// A new queue whose first entry gets offset `start` (a slave's queue whose earlier
    /// entries lie before the log it copied); `None` if the topic cannot name a directory.
    pub(crate) fn create_at(&mut self, topic: &str, queue_id: i32, start: u64) -> Option<Slot> {
        let dir = paths::consume_queue_dir(topic, queue_id)?;
        Some(self.insert(topic, queue_id, QueueState::new(dir, start, start, BTreeSet::new())))
    }

    /// Dispatch an entry to the queue in `slot` at the queue's next offset.
    pub(crate) fn dispatch(&mut self, slot: Slot, entry: &CqEntry) {
        // A slot comes only from this table's own lookups, and an entry only from a record
        // the log holds: anything else is a bug that would lose or garble a queue entry.
        let Some(queue) = self.slots.get_mut(slot.0) else {
            panic!("dispatch to slot {} of a table of {} queues", slot.0, self.slots.len());
        };
        assert!(entry.size > 0, "a ConsumeQueue entry of size 0 reads as the queue's end");
        if queue.staged.is_empty() {
            self.dirty.push(slot);
        }
        queue.push(entry);
    }

    /// Dispatch an entry to a queue by name (recovery).
    pub(crate) fn dispatch_to(&mut self, topic: &str, queue_id: i32, entry: &CqEntry) {
        if let Some(slot) = self.slot(topic, queue_id) {
            self.dispatch(slot, entry);
        }
    }

    /// Issue every staged entry as writes.
    pub(crate) fn emit_staged(&mut self, ops: &mut OpQueue) {
        let file_size = self.file_size;
        for slot in core::mem::take(&mut self.dirty) {
            if let Some(queue) = self.slots.get_mut(slot.0) {
                queue.emit(ops, file_size, slot);
                self.unsynced.insert(slot);
            }
        }
    }

    /// Issue syncs of every queue file written since the last round; true if any.
    pub(crate) fn issue_sync(&mut self, ops: &mut OpQueue, purpose: Purpose) -> bool {
        self.emit_staged(ops);
        let unsynced = core::mem::take(&mut self.unsynced);
        let any = !unsynced.is_empty();
        for slot in unsynced {
            if let Some(queue) = self.slots.get_mut(slot.0) {
                queue.issue_sync(ops, purpose);
            }
        }
        any
    }

    /// Every queue, in (topic, queue id) order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, i32, &QueueState)> {
        self.index.iter().flat_map(move |(topic, queues)| {
            queues.iter().filter_map(move |(id, slot)| Some((topic.as_str(), *id, self.slots.get(slot.0)?)))
        })
    }

    /// A ConsumeQueue write completed: the queue is on disk up to `upto`.
    pub(crate) fn written(&mut self, slot: usize, upto: u64) {
        self.writes += 1;
        if let Some(queue) = self.slots.get_mut(slot) {
            queue.written_next = queue.written_next.max(upto);
        }
    }

    /// The directory of a queue's files.
    pub(crate) fn dir(&self, topic: &str, queue_id: i32) -> Option<&FilePath> {
        self.get(topic, queue_id).map(|q| &q.dir)
    }

    /// Retention: move the minimum of the queue in slot `index` to its first entry whose
    /// record starts at or above `log_min` (everything below is gone or going), and remove
    /// its files wholly below the new minimum, never its newest file (it keeps the queue's
    /// max offset across restarts, as RocketMQ keeps a queue's last file). Returns how many
    /// entries the minimum moved over; `Ok(None)` past the last slot.
    pub(crate) fn retire_below(
        &mut self,
        index: usize,
        log_min: u64,
        reader: &dyn StoreRead,
        ops: &mut OpQueue,
    ) -> Result<Option<u64>, DiskError> {
        let file_size = self.file_size;
        let Some(queue) = self.slots.get_mut(index) else { return Ok(None) };
        let old_min = queue.min_offset;
        let range = (queue.min_offset, queue.written_next);
        let new_min = first_entry_at_or_above(reader, &queue.dir, file_size, range, log_min)?;
        queue.min_offset = new_min;
        let newest = queue.files.last().copied();
        let below: Vec<u64> = queue
            .files
            .iter()
            .copied()
            .filter(|&start| Some(start) != newest && (start + file_size) / ENTRY_LEN <= new_min)
            .collect();
        for start in below {
            queue.files.remove(&start);
            queue.unsynced.remove(&start);
            if let Some(file) = queue.dir.join(&paths::offset_name(start)) {
                ops.push(DiskOp::Remove { file }, Purpose::Plain);
                queue.dir_dirty = true;
                self.unsynced.insert(Slot(index));
            }
        }
        Ok(Some(new_min - old_min))
    }

    /// Files written or marked since their last sync, over every queue.
    pub(crate) fn unsynced_files(&self) -> usize {
        self.unsynced.iter().filter_map(|slot| self.slots.get(slot.0)).map(|q| q.unsynced.len()).sum()
    }

    /// Everything was made durable by one `SyncAll`: nothing is left to sync.
    pub(crate) fn forget_unsynced(&mut self) {
        for slot in core::mem::take(&mut self.unsynced) {
            if let Some(queue) = self.slots.get_mut(slot.0) {
                queue.unsynced.clear();
                queue.dir_dirty = false;
            }
        }
    }

    /// Recovery: only these files of the queue remain.
    pub(crate) fn retain_files(&mut self, topic: &str, queue_id: i32, files: &BTreeSet<u64>) {
        if let Some(queue) = self.slot(topic, queue_id).and_then(|s| self.slots.get_mut(s.0)) {
            queue.files.clone_from(files);
        }
    }

    /// Recovery: this file was cut and must be synced.
    pub(crate) fn mark_file_unsynced(&mut self, topic: &str, queue_id: i32, file_start: u64) {
        if let Some(slot) = self.slot(topic, queue_id) {
            if let Some(queue) = self.slots.get_mut(slot.0) {
                queue.unsynced.insert(file_start);
                self.unsynced.insert(slot);
            }
        }
    }
}
