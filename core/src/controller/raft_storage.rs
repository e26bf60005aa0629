//! The log raft-rs reads: its `MemStorage` plus the snapshot the log was last compacted to,
//! data and all. `MemStorage` alone hands out snapshots with no data (its own are for
//! tests), and a follower restored from one would hold an empty table.

use raft::prelude::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// raft-rs's in-memory log and the latest snapshot of the replicated table.
#[derive(Clone)]
pub struct SnapshotStorage {
    /// The entries and the Raft state (shared: clones see the same log).
    pub mem: MemStorage,
    /// The newest snapshot taken or received; empty (index 0) until the first.
    pub snapshot: Snapshot,
}

impl SnapshotStorage {
    /// A log over `mem` with no snapshot yet.
    #[must_use]
    pub fn new(mem: MemStorage) -> Self {
        Self { mem, snapshot: Snapshot::default() }
    }

    /// The index the newest snapshot covers up to (0 without one).
    #[must_use]
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }
}

impl Storage for SnapshotStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        // A compaction drops the entry at the snapshot's index; its term is the snapshot's.
        let meta = self.snapshot.get_metadata();
        if idx != 0 && idx == meta.index {
            return Ok(meta.term);
        }
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() == 0 {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}
