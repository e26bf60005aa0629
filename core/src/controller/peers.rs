//! A controller among its peers (`controllerDLegerPeers`): the links it dials to each other
//! controller, the ticks that drive its [`Consensus`], and the raft-rs messages carried as
//! oneway KEEL_CONTROLLER_RAFT_MESSAGE requests over those links. Each controller sends on
//! the link it dialled and receives on the ones its peers dialled, so a link is one-way
//! traffic and needs no replies. A message for a peer whose link is down is dropped: Raft
//! retransmits.
//!
//! raft-rs draws election timeouts from a fixed range here ([`Consensus`]); the spread that
//! keeps followers from standing together comes from this controller's seeded RNG, which
//! skips a follower's tick now and then.

use core::net::SocketAddr;
use std::collections::{BTreeMap, VecDeque};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::consensus::{Committed, Consensus, ConsensusError, TICK_MS};
use super::raft_log::RecoveredLog;
use super::replicas::Event;
use crate::io::{ConnId, ConnKind, DiskError, IoId, MonoNanos, Output};
use crate::protocol::command::FLAG_ONEWAY;
use crate::protocol::{ExtFields, RemotingCommand, RequestCode};

/// The pause before a lost peer link is dialled again.
const REDIAL_MS: u64 = 1_000;
/// One tick in this many is skipped by a follower (the election spread).
const SKIP_ONE_IN: u32 = 4;

/// What the group's log gave its owner in one drain.
#[derive(Debug, Default)]
pub struct Drained {
    /// A snapshot's table to restore first: it covers everything committed before it.
    pub restored: Option<Vec<u8>>,
    /// Events to apply after it, in log order.
    pub committed: Vec<Committed>,
}

/// One member of the controller group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its name in `controllerDLegerPeers` (`n0`).
    pub name: String,
    /// Where it serves brokers, tools and its peers.
    pub addr: SocketAddr,
}

/// The controller group as this controller is configured with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerPeers {
    /// `controllerDLegerGroup`.
    pub group: String,
    /// This controller's Raft id (a key of `members`).
    pub self_id: u64,
    /// Every member by Raft id (from 1), this one included.
    pub members: BTreeMap<u64, PeerInfo>,
    /// Seeds the election spread (the runtime's randomness, the simulator's seed).
    pub seed: u64,
}

impl ControllerPeers {
    /// `n0-host:port;n1-host:port;…` and the id `n1`: member `nK` gets Raft id K+1.
    pub fn parse(group: &str, peers: &str, self_name: &str, seed: u64) -> Result<Self, String> {
        let mut members = BTreeMap::new();
        for part in peers.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, addr) =
                part.split_once('-').ok_or_else(|| format!("peer {part:?} is not name-host:port"))?;
            let id = raft_id(name).ok_or_else(|| format!("peer name {name:?} is not n0, n1, …"))?;
            let addr =
                addr.parse().map_err(|_| format!("peer {name}'s address {addr:?} is not host:port"))?;
            if members.insert(id, PeerInfo { name: name.to_owned(), addr }).is_some() {
                return Err(format!("peer {name} is listed twice"));
            }
        }
        let self_id = raft_id(self_name).ok_or_else(|| format!("self id {self_name:?} is not n0, n1, …"))?;
        if !members.contains_key(&self_id) {
            return Err(format!("self id {self_name} is not among the peers {peers:?}"));
        }
        Ok(Self { group: group.to_owned(), self_id, members, seed })
    }

    /// This controller's entry.
    #[must_use]
    pub fn me(&self) -> Option<&PeerInfo> {
        self.members.get(&self.self_id)
    }

    /// `n0-host:port;n1-host:port`, as RocketMQ lists them.
    #[must_use]
    pub fn listing(&self) -> String {
        let parts: Vec<String> = self.members.values().map(|p| format!("{}-{}", p.name, p.addr)).collect();
        parts.join(";")
    }
}

fn raft_id(name: &str) -> Option<u64> {
    name.strip_prefix('n')?.parse::<u64>().ok()?.checked_add(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Idle { redial_at: MonoNanos },
    Connecting(ConnId),
    Open(ConnId),
}

impl Link {
    fn conn(self) -> Option<ConnId> {
        match self {
            Self::Connecting(conn) | Self::Open(conn) => Some(conn),
            Self::Idle { .. } => None,
        }
    }
}

/// This controller's replica of the group's log and its links to the others.
#[derive(Debug)]
pub struct PeerGroup {
    peers: ControllerPeers,
    consensus: Consensus,
    links: BTreeMap<u64, Link>,
    next_conn: u64,
    next_tick: Option<MonoNanos>,
    rng: ChaCha8Rng,
    opaque: i32,
}

impl PeerGroup {
    /// This controller's place in `peers`; its log in memory only, or going on from the
    /// one `recovered` from its file and written there.
    pub fn new(peers: ControllerPeers, recovered: Option<&RecoveredLog>) -> Result<Self, ConsensusError> {
        let voters: Vec<u64> = peers.members.keys().copied().collect();
        let consensus = match recovered {
            Some(log) => Consensus::recovered(peers.self_id, &voters, log)?,
            None => Consensus::new(peers.self_id, &voters)?,
        };
        let links = voters
            .iter()
            .filter(|id| **id != peers.self_id)
            .map(|id| (*id, Link::Idle { redial_at: MonoNanos(0) }))
            .collect();
        let rng = ChaCha8Rng::seed_from_u64(peers.seed);
        Ok(Self { peers, consensus, links, next_conn: ConnId::OUTBOUND, next_tick: None, rng, opaque: 0 })
    }

    /// The group as configured.
    #[must_use]
    pub fn peers(&self) -> &ControllerPeers {
        &self.peers
    }

    /// Whether this controller leads.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.consensus.is_leader()
    }

    /// The leader, if known.
    #[must_use]
    pub fn leader(&self) -> Option<&PeerInfo> {
        self.consensus.leader().and_then(|id| self.peers.members.get(&id))
    }

    /// Propose `event` (the leader only): its (index, term) in the log.
    pub fn propose(&mut self, event: &Event) -> Result<(u64, u64), ConsensusError> {
        self.consensus.propose(event)
    }

    /// A message a peer sent.
    pub fn step(&mut self, request: &RemotingCommand) {
        if let Err(error) = self.consensus.step(&request.body) {
            tracing::warn!(%error, "a controller peer's message was refused");
        }
    }

    /// Whether `conn` is a link this controller dialled.
    #[must_use]
    pub fn owns(&self, conn: ConnId) -> bool {
        self.links.values().any(|link| link.conn() == Some(conn))
    }

    /// A dialled link opened.
    pub fn opened(&mut self, conn: ConnId) {
        for link in self.links.values_mut() {
            if *link == Link::Connecting(conn) {
                *link = Link::Open(conn);
            }
        }
    }

    /// A dialled link closed (or never opened): dial it again after a pause.
    pub fn closed(&mut self, now: MonoNanos, conn: ConnId) {
        for (id, link) in &mut self.links {
            if link.conn() == Some(conn) {
                tracing::info!(peer = *id, "controller peer link lost; re-dialling");
                *link = Link::Idle { redial_at: now.plus_millis(REDIAL_MS) };
            }
        }
    }

    /// When a tick or a dial is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        let redials = self.links.values().filter_map(|link| match link {
            Link::Idle { redial_at } => Some(*redial_at),
            _ => None,
        });
        self.next_tick.into_iter().chain(redials).min()
    }

    /// Tick and dial when due.
    pub fn handle_timeout(&mut self, now: MonoNanos, out: &mut VecDeque<Output>) {
        let next_tick = *self.next_tick.get_or_insert(now);
        if now >= next_tick {
            self.next_tick = Some(now.plus_millis(TICK_MS));
            let skip = !self.consensus.is_leader() && self.rng.next_u32().is_multiple_of(SKIP_ONE_IN);
            if !skip {
                self.consensus.tick();
            }
        }
        for (id, link) in &mut self.links {
            if let Link::Idle { redial_at } = *link {
                if now >= redial_at {
                    let Some(peer) = self.peers.members.get(id) else { continue };
                    let conn = ConnId(self.next_conn);
                    self.next_conn = self.next_conn.saturating_add(1);
                    *link = Link::Connecting(conn);
                    out.push_back(Output::Connect { conn, addr: peer.addr, kind: ConnKind::Remoting });
                }
            }
        }
    }

    /// A write of the log file completed; a failure is final.
    pub fn persisted(&mut self, io: IoId, result: &Result<(), DiskError>) -> Result<(), DiskError> {
        self.consensus.persisted(io, result)
    }

    /// The index the log was last compacted to (0 if never).
    #[must_use]
    pub fn snapshot_index(&self) -> u64 {
        self.consensus.snapshot_index()
    }

    /// Entries applied since the log was last compacted.
    #[must_use]
    pub fn applied_since_snapshot(&self) -> u64 {
        self.consensus.applied().saturating_sub(self.consensus.snapshot_index())
    }

    /// Compact the log to the last applied index, `data` being the table as of it; `keep`
    /// entries before it stay for followers just behind.
    pub fn compact(
        &mut self,
        data: Vec<u8>,
        keep: u64,
        out: &mut VecDeque<Output>,
    ) -> Result<(), ConsensusError> {
        let mut disk = Vec::new();
        let compacted = self.consensus.compact(data, keep, &mut disk);
        out.extend(disk);
        compacted
    }

    /// Send what the consensus has for peers and write what it has for the disk; a snapshot
    /// to restore and the events committed since the last drain.
    pub fn drain(&mut self, out: &mut VecDeque<Output>) -> Drained {
        let ready = self.consensus.poll();
        out.extend(ready.disk);
        for (to, bytes) in ready.messages {
            let Some(Link::Open(conn)) = self.links.get(&to).copied() else { continue };
            self.opaque = self.opaque.wrapping_add(1);
            let mut message = RemotingCommand::request(
                RequestCode::KEEL_CONTROLLER_RAFT_MESSAGE,
                self.opaque,
                ExtFields::new(),
            )
            .with_body(bytes);
            message.flag |= FLAG_ONEWAY;
            crate::remoting::send(out, conn, &message);
        }
        Drained { restored: ready.restored, committed: ready.committed }
    }
}
