//! The controllers' agreement on one log of [`Event`]s, with TiKV's raft-rs: a pure state
//! machine that Keel ticks, feeds messages and polls (no threads, clocks or sockets of its
//! own), so it runs the same in the simulator.
//!
//! Every controller applies the committed events in log order to its own `ReplicaTable`;
//! only the leader decides requests and proposes. raft-rs draws its election timeout with
//! `thread_rng`, which no simulator controls: the range is pinned to one value
//! (`min_election_tick = election_tick`, `max_election_tick = election_tick + 1`) and the
//! owner spreads elections by skipping ticks with its own seeded randomness. The log lives in
//! raft-rs's `MemStorage` for now: a controller that restarts rejoins empty and is brought
//! up to date by the others (a majority must stay up).

use raft::prelude::{Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

use super::replicas::Event;
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
    Decode(#[from] prost::DecodeError),
    /// raft-rs refused.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
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

/// What a poll hands the owner: messages for peers and events committed, in order.
#[derive(Debug, Default)]
pub struct ConsensusOutput {
    /// (peer id, encoded message).
    pub messages: Vec<(u64, Vec<u8>)>,
    /// Events to apply, in log order.
    pub committed: Vec<Committed>,
}

/// One controller's replica of the event log.
pub struct Consensus {
    node: RawNode<MemStorage>,
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
    /// Controller `id` of the group `voters`.
    pub fn new(id: u64, voters: &[u64]) -> Result<Self, ConsensusError> {
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
        let storage = MemStorage::new_with_conf_state((voters.to_vec(), Vec::<u64>::new()));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        Ok(Self { node: RawNode::new(&config, storage, &logger)? })
    }

    /// One tick ([`TICK_MS`] of the owner's time).
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// A message from a peer.
    pub fn step(&mut self, bytes: &[u8]) -> Result<(), ConsensusError> {
        let message = <Message as prost::Message>::decode(bytes)?;
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

    /// Everything raft-rs has ready: entries stored (in memory), messages to send, events
    /// committed.
    pub fn poll(&mut self) -> ConsensusOutput {
        let mut out = ConsensusOutput::default();
        while self.node.has_ready() {
            let mut ready = self.node.ready();
            out.messages.extend(encode(ready.take_messages()));
            self.committed(ready.take_committed_entries(), &mut out);
            let store = self.node.raft.raft_log.store.clone();
            if !ready.entries().is_empty() {
                if let Err(error) = store.wl().append(ready.entries()) {
                    tracing::error!(%error, "raft log append refused");
                }
            }
            if let Some(state) = ready.hs() {
                store.wl().set_hardstate(state.clone());
            }
            out.messages.extend(encode(ready.take_persisted_messages()));
            let mut light = self.node.advance(ready);
            if let Some(commit) = light.commit_index() {
                store.wl().mut_hard_state().commit = commit;
            }
            out.messages.extend(encode(light.take_messages()));
            self.committed(light.take_committed_entries(), &mut out);
            self.node.advance_apply();
        }
        out
    }

    fn committed(&self, entries: Vec<Entry>, out: &mut ConsensusOutput) {
        for entry in entries {
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
    messages.into_iter().map(|message| (message.to, prost::Message::encode_to_vec(&message)))
}
