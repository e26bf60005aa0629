//! The controllers' agreement on one log of [`Event`]s, with TiKV's raft-rs: a pure state
//! machine that Keel ticks, feeds messages and polls (no threads, clocks or sockets of its
//! own), so it runs the same in the simulator.
//!
//! Every controller applies the committed events in log order to its own `ReplicaTable`;
//! only the leader decides requests and proposes. raft-rs draws its election timeout with
//! `thread_rng`, which no simulator controls: the range is pinned to one value
//! (`min_election_tick = election_tick`, `max_election_tick = election_tick + 1`) and the
//! owner spreads elections by skipping ticks with its own seeded randomness.
//!
//! raft-rs reads the log from its `MemStorage`; with a [`RaftLogFile`] every batch is also
//! written and synced, and raft-rs hears it is persisted (so votes and acknowledgements go
//! out) only once the disk says so. Without one (tests, and a lone controller) the log
//! lives in memory only.
//!
//! The owner compacts the log ([`Consensus::compact`]) once enough entries were applied: a
//! snapshot of its table as of the last applied index replaces the entries up to it (a
//! few are kept for followers just behind), on disk too. A follower too far behind gets
//! the snapshot instead of entries; applying it hands the owner the table to restore.

use std::collections::VecDeque;

use raft::prelude::{Entry, EntryType, Message, MessageType, Snapshot};
use raft::storage::MemStorage;
use raft::{Config, GetEntriesContext, RawNode, SnapshotStatus, StateRole, Storage};

use super::raft_log::{RaftLogFile, RecoveredLog};
use super::raft_storage::SnapshotStorage;
use super::replicas::Event;
use crate::io::{DiskError, IoId, Output};
use crate::protocol::json::{self, KeyStyle};

/// How often the owner ticks a replica.
pub const TICK_MS: u64 = 100;
/// Ticks without a leader's heartbeat before a follower stands (1 s at [`TICK_MS`]).
const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
const HEARTBEAT_TICKS: usize = 2;

/// Why the consensus refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// Only the leader proposes.
    #[error("this controller is not the leader (the leader is {leader:?})")]
    NotLeader {
        /// The leader's id, if one is known.
        leader: Option<u64>,
    },
    /// A message from a peer did not decode.
    #[error("a controller message does not decode: {0}")]
    Decode(#[from] raft_prost::DecodeError),
    /// raft-rs refused.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A snapshot's table does not decode.
    #[error("a snapshot of the controller's table does not decode: {0}")]
    Snapshot(String),
}

/// One committed event and where it sits in the log: an owner waiting on a proposal
/// matches it by index, and a different term there means the proposal was overwritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The entry's index.
    pub index: u64,
    /// The term it was proposed in.
    pub term: u64,
    /// The event.
    pub event: Event,
}

/// What a poll hands the owner: messages for peers, a snapshot to restore, events
/// committed (in order, after the snapshot) and the log's disk writes.
#[derive(Debug, Default)]
pub struct ConsensusOutput {
    /// (peer id, encoded message).
    pub messages: Vec<(u64, Vec<u8>)>,
    /// A snapshot's data (the table) received from the leader, to restore before applying
    /// `committed`: it covers everything committed before it.
    pub restored: Option<Vec<u8>>,
    /// Events to apply, in log order.
    pub committed: Vec<Committed>,
    /// Writes of the log file, to carry out in order.
    pub disk: Vec<Output>,
}

/// A batch's messages that may go out only once it (and every batch before) is durable.
#[derive(Debug)]
struct Unpersisted {
    /// raft-rs's number for the batch.
    number: u64,
    /// The write that makes it durable; `None` when it had nothing to write.
    write: Option<IoId>,
    messages: Vec<Message>,
}

/// One controller's replica of the event log.
pub struct Consensus {
    node: RawNode<SnapshotStorage>,
    /// The last index handed to the owner to apply (or restored from a snapshot).
    applied: u64,
    /// The log on disk, if it is kept there.
    file: Option<RaftLogFile>,
    /// Batches waiting on the disk, oldest first.
    unpersisted: VecDeque<Unpersisted>,
}

impl core::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Consensus")
            .field("id", &self.node.raft.id)
            .field("term", &self.node.raft.term)
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

impl Consensus {
    /// Controller `id` of the group `voters`, its log in memory only.
    pub fn new(id: u64, voters: &[u64]) -> Result<Self, ConsensusError> {
        Self::build(id, voters, None)
    }

    /// Controller `id` of the group `voters`, going on from the log `recovered` from its
    /// file and writing there. The committed entries come back from [`poll`](Self::poll)
    /// again, so the owner rebuilds its state by applying them.
    pub fn recovered(id: u64, voters: &[u64], recovered: &RecoveredLog) -> Result<Self, ConsensusError> {
        Self::build(id, voters, Some(recovered))
    }

    fn build(id: u64, voters: &[u64], recovered: Option<&RecoveredLog>) -> Result<Self, ConsensusError> {
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            // One value in raft-rs's own draw: the spread comes from the owner's skipped ticks.
            min_election_tick: ELECTION_TICKS,
            max_election_tick: ELECTION_TICKS + 1,
            check_quorum: true,
            pre_vote: true,
            ..Config::default()
        };
        config.validate()?;
        let mut storage =
            SnapshotStorage::new(MemStorage::new_with_conf_state((voters.to_vec(), Vec::<u64>::new())));
        if let Some(log) = recovered {
            let mut core = storage.mem.wl();
            if let Some(snapshot) = &log.snapshot {
                core.apply_snapshot(snapshot.clone())?;
                storage.snapshot = snapshot.clone();
            }
            // `RecoveredLog::read` checked the entries are continuous from the snapshot on.
            core.append(&log.entries)?;
            let mut hard_state = log.hard_state.clone();
            hard_state.commit = hard_state.commit.max(log.snapshot_index());
            core.set_hardstate(hard_state);
        }
        let applied = storage.snapshot_index();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&config, storage, &logger)?;
        let file = recovered.map(RaftLogFile::new);
        Ok(Self { node, applied, file, unpersisted: VecDeque::new() })
    }

    /// The index the log was last compacted to (0 if never).
    #[must_use]
    pub fn snapshot_index(&self) -> u64 {
        self.node.store().snapshot_index()
    }

    /// The last index handed to the owner to apply.
    #[must_use]
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Compact the log to the last applied index: `data` is the owner's table as of it.
    /// raft-rs keeps `keep` entries up to that index (at least one) for followers just behind; the file,
    /// if there is one, is written anew from the snapshot (its writes go to `disk`).
    pub fn compact(
        &mut self,
        data: Vec<u8>,
        keep: u64,
        disk: &mut Vec<crate::io::Output>,
    ) -> Result<(), ConsensusError> {
        let index = self.applied;
        if index <= self.snapshot_index() {
            return Ok(());
        }
        let store = self.node.store().clone();
        let mut snapshot = Snapshot { data, ..Snapshot::default() };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = store.term(index)?;
        meta.set_conf_state(store.initial_state()?.conf_state);
        self.node.mut_store().snapshot = snapshot.clone();
        // The entry at `index` itself stays: `MemStorage` counts its first index from its
        // entries, and from a snapshot only when it applied one, which this is not.
        let first_kept = index.saturating_add(1).saturating_sub(keep.max(1)).max(1);
        store.mem.wl().compact(first_kept)?;
        if let Some(file) = &mut self.file {
            let last = store.last_index()?;
            let after = if last > index {
                store.entries(index + 1, last + 1, None, GetEntriesContext::empty(false))?
            } else {
                Vec::new()
            };
            let hard_state = store.mem.rl().hard_state().clone();
            file.rewrite(&snapshot, &hard_state, &after, disk);
        }
        Ok(())
    }

    /// A write of the log file completed.
    pub fn persisted(&mut self, io: IoId, result: &Result<(), DiskError>) -> Result<(), DiskError> {
        match &mut self.file {
            Some(file) => file.completed(io, result),
            None => Ok(()),
        }
    }

    /// One tick ([`TICK_MS`] of the owner's time).
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// A message from a peer.
    pub fn step(&mut self, bytes: &[u8]) -> Result<(), ConsensusError> {
        let message = <Message as raft_prost::Message>::decode(bytes)?;
        self.node.step(message)?;
        Ok(())
    }

    /// The leader's id, if this replica knows one.
    #[must_use]
    pub fn leader(&self) -> Option<u64> {
        Some(self.node.raft.leader_id).filter(|id| *id != raft::INVALID_ID)
    }

    /// Whether this replica leads.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The current term.
    #[must_use]
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Append `event` to the log (the leader only); it comes back from [`poll`](Self::poll)
    /// on every replica once committed. Returns its (index, term).
    pub fn propose(&mut self, event: &Event) -> Result<(u64, u64), ConsensusError> {
        if !self.is_leader() {
            return Err(ConsensusError::NotLeader { leader: self.leader() });
        }
        let data = json::to_body(event, KeyStyle::Standard);
        self.node.propose(Vec::new(), data)?;
        Ok((self.node.raft.raft_log.last_index(), self.node.raft.term))
    }

    /// Everything raft-rs has ready: entries stored (in memory, and written to the file),
    /// messages to send (a follower's once the disk has its batch), events committed (only
    /// ever entries this replica holds durably).
    pub fn poll(&mut self) -> ConsensusOutput {
        let mut out = ConsensusOutput::default();
        self.release(&mut out);
        while self.node.has_ready() {
            let mut ready = self.node.ready();
            // A leader's messages go out at once: it counts its own copy only once durable.
            let messages = ready.take_messages();
            let snapshots_sent: Vec<u64> = messages
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .map(|m| m.to)
                .collect();
            out.messages.extend(encode(messages));
            let store = self.node.store().clone();
            let restored = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
            if let Some(snapshot) = &restored {
                if let Err(error) = store.mem.wl().apply_snapshot(snapshot.clone()) {
                    tracing::error!(%error, "raft snapshot refused");
                }
                self.node.mut_store().snapshot = snapshot.clone();
                // It covers everything committed before it.
                self.applied = snapshot.get_metadata().index;
                out.committed.clear();
                out.restored = Some(snapshot.data.clone());
            }
            self.committed(ready.take_committed_entries(), &mut out);
            if !ready.entries().is_empty() {
                if let Err(error) = store.mem.wl().append(ready.entries()) {
                    tracing::error!(%error, "raft log append refused");
                }
            }
            if let Some(state) = ready.hs() {
                store.mem.wl().set_hardstate(state.clone());
            }
            let write = match (&mut self.file, &restored) {
                (Some(file), Some(snapshot)) => {
                    let state = store.mem.rl().hard_state().clone();
                    Some(file.rewrite(snapshot, &state, ready.entries(), &mut out.disk))
                }
                (Some(file), None) if !ready.entries().is_empty() || ready.hs().is_some() => {
                    let state = store.mem.rl().hard_state().clone();
                    Some(file.append(&state, ready.entries(), &mut out.disk))
                }
                _ => None,
            };
            let number = ready.number();
            let messages = ready.take_persisted_messages();
            self.unpersisted.push_back(Unpersisted { number, write, messages });
            self.node.advance_append_async(ready);
            self.apply_persisted();
            // A snapshot handed to a link may be lost on the way: the follower is probed
            // again at the next heartbeat answer, and sent a snapshot again if it still
            // needs one (otherwise raft-rs would wait for it forever).
            for to in snapshots_sent {
                self.node.report_snapshot(to, SnapshotStatus::Finish);
            }
            self.release(&mut out);
        }
        out
    }

    /// Send the messages of every batch that is durable, oldest first, and tell raft-rs.
    fn release(&mut self, out: &mut ConsensusOutput) {
        let mut persisted = None;
        while let Some(batch) = self.unpersisted.front() {
            let durable = batch.write.is_none_or(|io| self.file.as_ref().is_none_or(|f| f.is_done(io)));
            if !durable {
                break;
            }
            let Some(batch) = self.unpersisted.pop_front() else { break };
            out.messages.extend(encode(batch.messages));
            persisted = Some(batch.number);
        }
        if let Some(number) = persisted {
            self.node.on_persist_ready(number);
            self.apply_persisted();
        }
    }

    /// Tell raft-rs what the owner applied, as far as it is durable here: a snapshot
    /// restored is applied at once but counts only once its file is written (raft-rs
    /// refuses an applied index past the persisted one).
    fn apply_persisted(&mut self) {
        let log = &self.node.raft.raft_log;
        let to = self.applied.min(log.persisted);
        if to > log.applied {
            self.node.advance_apply_to(to);
        }
    }

    fn committed(&mut self, entries: Vec<Entry>, out: &mut ConsensusOutput) {
        for entry in entries {
            // A snapshot restored in the same batch covers it.
            if entry.index <= self.applied {
                continue;
            }
            self.applied = entry.index;
            // A new leader's empty entry, and membership changes, carry no event.
            if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
                continue;
            }
            match json::from_slice::<Event>(&entry.data) {
                Ok(event) => out.committed.push(Committed { index: entry.index, term: entry.term, event }),
                Err(error) => {
                    tracing::error!(index = entry.index, %error, "a committed entry is not an event")
                }
            }
        }
    }
}

fn encode(messages: Vec<Message>) -> impl Iterator<Item = (u64, Vec<u8>)> {
    messages.into_iter().map(|message| (message.to, raft_prost::Message::encode_to_vec(&message)))
}
