//! Every ConsumeQueue's in-core state: its offsets, its files, and entries built by dispatch
//! that have not been written yet.
//!
//! Dispatch happens as each record is appended (the core built the record, so it knows the
//! entry); entries are staged and leave as `Write` operations at the next poll.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;

use super::consume_queue::{CqEntry, ENTRY_LEN};
use super::ops::{OpQueue, Purpose};
use super::paths;
use crate::io::{DiskOp, FilePath};

/// One queue's state.
#[derive(Debug)]
pub(crate) struct QueueState {
    dir: FilePath,
    /// Lowest offset still in the queue.
    pub(crate) min_offset: u64,
    /// The offset the next entry gets (RocketMQ's max offset).
    pub(crate) next_offset: u64,
    /// Entries dispatched but not yet issued as writes, starting at `staged_from`.
    staged: BytesMut,
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
            staged: BytesMut::new(),
            staged_from: next_offset,
            files,
            unsynced: BTreeSet::new(),
            dir_dirty: false,
        }
    }

    /// Add the entry at `next_offset`.
    pub(crate) fn push(&mut self, entry: &CqEntry) {
        if self.staged.is_empty() {
            self.staged_from = self.next_offset;
        }
        self.staged.extend_from_slice(&entry.encode());
        self.next_offset += 1;
    }

    /// Issue staged entries as writes, creating files as needed.
    fn emit(&mut self, ops: &mut OpQueue, file_size: u64) {
        while !self.staged.is_empty() {
            let pos = self.staged_from * ENTRY_LEN;
            let file_start = pos - pos % file_size;
            let in_file = pos - file_start;
            let room = usize::try_from(file_size - in_file).unwrap_or(usize::MAX);
            let chunk = self.staged.split_to(room.min(self.staged.len())).freeze();
            let Some(file) = self.dir.join(&paths::offset_name(file_start)) else { return };
            if self.files.insert(file_start) {
                ops.push(DiskOp::Create { file: file.clone(), len: file_size }, Purpose::Plain);
                self.dir_dirty = true;
            }
            self.staged_from += chunk.len() as u64 / ENTRY_LEN;
            ops.push(DiskOp::Write { file, offset: in_file, data: chunk }, Purpose::Plain);
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

/// All queues, by topic then queue id.
#[derive(Debug)]
pub(crate) struct QueueTable {
    /// Entries per ConsumeQueue file.
    file_size: u64,
    queues: BTreeMap<String, BTreeMap<i32, QueueState>>,
    /// Queues with staged entries, in the order they first got one since the last emit.
    dirty: Vec<(String, i32)>,
    /// Queues written since the last sync round.
    unsynced: BTreeSet<(String, i32)>,
}

impl QueueTable {
    /// An empty table whose files hold `entries_per_file` entries.
    pub(crate) fn new(entries_per_file: u64) -> Self {
        Self {
            file_size: entries_per_file.max(1) * ENTRY_LEN,
            queues: BTreeMap::new(),
            dirty: Vec::new(),
            unsynced: BTreeSet::new(),
        }
    }

    /// Bytes per ConsumeQueue file.
    pub(crate) fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Add a queue recovered from disk.
    pub(crate) fn insert(&mut self, topic: &str, queue_id: i32, state: QueueState) {
        self.queues.entry(topic.to_owned()).or_default().insert(queue_id, state);
    }

    /// A queue's state, if it exists.
    pub(crate) fn get(&self, topic: &str, queue_id: i32) -> Option<&QueueState> {
        self.queues.get(topic)?.get(&queue_id)
    }

    /// The queue's state, created empty if new; `None` if the topic cannot name a directory.
    pub(crate) fn get_or_create(&mut self, topic: &str, queue_id: i32) -> Option<&mut QueueState> {
        if !self.queues.get(topic).is_some_and(|q| q.contains_key(&queue_id)) {
            let dir = paths::consume_queue_dir(topic, queue_id)?;
            self.insert(topic, queue_id, QueueState::new(dir, 0, 0, BTreeSet::new()));
        }
        self.queues.get_mut(topic)?.get_mut(&queue_id)
    }

    /// Dispatch an entry to its queue at the queue's next offset.
    pub(crate) fn dispatch(&mut self, topic: &str, queue_id: i32, entry: &CqEntry) {
        let Some(queue) = self.queues.get_mut(topic).and_then(|q| q.get_mut(&queue_id)) else { return };
        if queue.staged.is_empty() {
            self.dirty.push((topic.to_owned(), queue_id));
        }
        queue.push(entry);
    }

    /// Issue every staged entry as writes.
    pub(crate) fn emit_staged(&mut self, ops: &mut OpQueue) {
        let file_size = self.file_size;
        for (topic, queue_id) in core::mem::take(&mut self.dirty) {
            if let Some(queue) = self.queues.get_mut(&topic).and_then(|q| q.get_mut(&queue_id)) {
                queue.emit(ops, file_size);
                self.unsynced.insert((topic, queue_id));
            }
        }
    }

    /// Issue syncs of every queue file written since the last round; true if any.
    pub(crate) fn issue_sync(&mut self, ops: &mut OpQueue, purpose: Purpose) -> bool {
        self.emit_staged(ops);
        let unsynced = core::mem::take(&mut self.unsynced);
        let any = !unsynced.is_empty();
        for (topic, queue_id) in unsynced {
            if let Some(queue) = self.queues.get_mut(&topic).and_then(|q| q.get_mut(&queue_id)) {
                queue.issue_sync(ops, purpose);
            }
        }
        any
    }

    /// Every queue, in (topic, queue id) order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, i32, &QueueState)> {
        self.queues
            .iter()
            .flat_map(|(topic, queues)| queues.iter().map(move |(id, q)| (topic.as_str(), *id, q)))
    }
}

impl QueueTable {
    /// Recovery: only these files of the queue remain.
    pub(crate) fn retain_files(&mut self, topic: &str, queue_id: i32, files: &BTreeSet<u64>) {
        if let Some(queue) = self.queues.get_mut(topic).and_then(|q| q.get_mut(&queue_id)) {
            queue.files.clone_from(files);
        }
    }

    /// Recovery: this file was cut and must be synced.
    pub(crate) fn mark_file_unsynced(&mut self, topic: &str, queue_id: i32, file_start: u64) {
        if let Some(queue) = self.queues.get_mut(topic).and_then(|q| q.get_mut(&queue_id)) {
            queue.unsynced.insert(file_start);
            self.unsynced.insert((topic.to_owned(), queue_id));
        }
    }
}
