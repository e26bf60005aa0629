//! The controller as a sans-IO machine: brokers and tools connect, requests are decided by
//! [`ControllerState`], and the events they become are committed and applied in order.
//! Alone, a controller commits as it decides. In a group (`controllerDLegerPeers`) only the
//! leader decides: it proposes each event to the group's Raft log ([`PeerGroup`]) and
//! answers the request once the event comes back committed; every member applies the same
//! events in the same order, and a follower answers CONTROLLER_NOT_LEADER, naming the
//! leader, to anything but heartbeats and the group's metadata. After an election is
//! applied, the leader tells every alive broker of the set (NOTIFY_BROKER_ROLE_CHANGED,
//! oneway, on the connection it heartbeats on; brokers also ask, so a lost notice only
//! delays them). Every `scan_interval_ms` the leader elects for sets whose master went
//! unheard, once it has led for a heartbeat timeout (so it has heard the brokers).
//!
//! The same [`ControllerCore`] serves a name server with `enableControllerInNamesrv` and the
//! `mqcontroller` binary ([`Controller`]).

use std::collections::{BTreeMap, VecDeque};

use super::consensus::Committed;
use super::peers::{ControllerPeers, Drained, PeerGroup};
use super::raft_log::RecoveredLog;
use super::replicas::{Event, ReplicaTable};
use super::state::{ControllerConfig, ControllerState, Decision};
use crate::io::{ConnId, DiskError, Input, IoId, Machine, MonoNanos, Now, Output};
use crate::protocol::command::FLAG_ONEWAY;
use crate::protocol::headers::{CommandHeader, GetMetaDataResponseHeader};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_LEN};
use crate::remoting::{self, ConnectionTable, Received};

/// The fields of a master header (`MasterInfoHeader`), dropped from a follower's heartbeat
/// answers.
const MASTER_INFO_KEYS: [&str; 5] =
    ["masterBrokerId", "masterAddress", "masterEpoch", "syncStateSetEpoch", "masterHaAddress"];

/// A request waiting for its event to commit.
#[derive(Debug)]
struct Pending {
    term: u64,
    conn: ConnId,
    request: RemotingCommand,
}

/// The controller's logic without its connections: what a name server embeds.
#[derive(Debug)]
pub struct ControllerCore {
    config: ControllerConfig,
    state: ControllerState,
    /// When the next scan for dead masters is due.
    next_scan: Option<MonoNanos>,
    /// The group, unless this controller is alone.
    group: Option<PeerGroup>,
    /// Requests waiting on their proposals, by log index.
    pending: BTreeMap<u64, Pending>,
    /// Whether this controller led at the last look.
    leading: bool,
}

impl ControllerCore {
    /// A lone controller with no broker sets yet.
    #[must_use]
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            state: ControllerState::new(config),
            next_scan: None,
            group: None,
            pending: BTreeMap::new(),
            leading: true,
        }
    }

    /// A member of the controller group `peers`: its log in memory only, or going on from
    /// the one `recovered` from its file (`controllerStorePath`) and written there.
    pub fn in_group(
        config: ControllerConfig,
        peers: ControllerPeers,
        recovered: Option<&RecoveredLog>,
    ) -> Result<Self, super::consensus::ConsensusError> {
        let forgotten = RecoveredLog::default();
        let recovered = match recovered {
            Some(_) if config.mutated(crate::mutation::Mutation::ForgetControllerLog) => Some(&forgotten),
            other => other,
        };
        let group = PeerGroup::new(peers, recovered)?;
        let mut core = Self { group: Some(group), leading: false, ..Self::new(config) };
        if let Some(snapshot) = recovered.and_then(|log| log.snapshot.as_ref()) {
            core.restore(&snapshot.data, "its log file")?;
        }
        Ok(core)
    }

    /// Replace the table with a snapshot's: the entries after it are applied on top.
    fn restore(&mut self, data: &[u8], from: &str) -> Result<(), super::consensus::ConsensusError> {
        let table = json::from_slice::<ReplicaTable>(data)
            .map_err(|error| super::consensus::ConsensusError::Snapshot(error.to_string()))?;
        tracing::info!(sets = table.iter().count(), from, "controller table restored from a snapshot");
        self.state.restore(table);
        Ok(())
    }

    /// The state (for tests and admin views).
    #[must_use]
    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    /// Whether this controller decides: it leads its group, or is alone.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.group.as_ref().is_none_or(PeerGroup::is_leader)
    }

    fn started(&mut self, now: MonoNanos) {
        if self.next_scan.is_none() {
            self.next_scan = Some(now.plus_millis(self.config.scan_interval_ms));
            self.state.judge_from(now.plus_millis(self.config.heartbeat_timeout_ms));
        }
    }

    /// Serve `request` if it is a controller's; `false` leaves it to the caller.
    pub fn on_request(
        &mut self,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
        out: &mut VecDeque<Output>,
    ) -> bool {
        self.started(now.mono);
        match request.request_code() {
            RequestCode::KEEL_CONTROLLER_RAFT_MESSAGE => {
                match &mut self.group {
                    Some(group) => group.step(request),
                    None => {
                        tracing::warn!(?conn, "a controller peer's message, but this controller is alone")
                    }
                }
                self.pump(now, out);
                return true;
            }
            RequestCode::CONTROLLER_GET_METADATA_INFO => {
                let reply = self.metadata(request);
                remoting::reply(out, conn, request, &reply);
                return true;
            }
            _ => {}
        }
        if ControllerState::needs_leader(request) && !self.is_leader() {
            let reply = self.not_leader(request);
            remoting::reply(out, conn, request, &reply);
            return true;
        }
        match self.state.decide(now, conn, request) {
            Decision::NotMine => false,
            Decision::Reply(mut reply) => {
                // A follower's view of the sets may lag the leader's: its heartbeat answers
                // vouch for no master.
                if !self.is_leader() && request.request_code() == RequestCode::BROKER_HEARTBEAT {
                    for key in MASTER_INFO_KEYS {
                        reply.ext_fields.remove(key);
                    }
                }
                remoting::reply(out, conn, request, &reply);
                true
            }
            Decision::Commit(event) => {
                let Some(group) = &mut self.group else {
                    let applied = self.commit(now, &event, out);
                    let reply = self.state.answer_committed(now, request, &event, applied);
                    remoting::reply(out, conn, request, &reply);
                    return true;
                };
                match group.propose(&event) {
                    Ok((index, term)) => {
                        self.pending.insert(index, Pending { term, conn, request: request.clone() });
                    }
                    Err(error) => {
                        tracing::info!(%error, "a controller request could not be proposed");
                        let reply = self.not_leader(request);
                        remoting::reply(out, conn, request, &reply);
                    }
                }
                self.pump(now, out);
                true
            }
        }
    }

    /// CONTROLLER_GET_METADATA_INFO: the group, its leader and whether this is it.
    fn metadata(&self, request: &RemotingCommand) -> RemotingCommand {
        let header = match &self.group {
            None => GetMetaDataResponseHeader {
                group: None,
                controller_leader_id: None,
                controller_leader_address: None,
                is_leader: true,
                peers: None,
            },
            Some(group) => GetMetaDataResponseHeader {
                group: Some(group.peers().group.clone()),
                controller_leader_id: group.leader().map(|p| p.name.clone()),
                controller_leader_address: group.leader().map(|p| p.addr.to_string()),
                is_leader: group.is_leader(),
                peers: Some(group.peers().listing()),
            },
        };
        let mut reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        header.encode(&mut reply.ext_fields);
        reply
    }

    /// CONTROLLER_NOT_LEADER, naming the leader when one is known (brokers dial it).
    fn not_leader(&self, request: &RemotingCommand) -> RemotingCommand {
        let leader = self.group.as_ref().and_then(PeerGroup::leader);
        let remark = match leader {
            Some(peer) => {
                format!("this controller is not the leader; the leader is {} at {}", peer.name, peer.addr)
            }
            None => "this controller is not the leader, and no leader is known yet".to_owned(),
        };
        let mut reply =
            RemotingCommand::response_to(request, ResponseCode::CONTROLLER_NOT_LEADER, Some(remark));
        let header = self.metadata(request);
        reply.ext_fields = header.ext_fields;
        reply
    }

    /// Carry the group's messages, apply what it committed and answer the requests that
    /// waited on it; notice a change of leadership.
    fn pump(&mut self, now: Now, out: &mut VecDeque<Output>) {
        let Some(group) = &mut self.group else { return };
        let Drained { restored, committed } = group.drain(out);
        let leading = group.is_leader();
        if let Some(data) = restored {
            if let Err(error) = self.restore(&data, "the leader") {
                out.push_back(Output::Fatal {
                    reason: format!("controller snapshot from the leader: {error}"),
                });
                return;
            }
        }
        for Committed { index, term, event } in committed {
            let applied = self.commit(now, &event, out);
            if let Some(pending) = self.pending.remove(&index) {
                let reply = if pending.term == term {
                    self.state.answer_committed(now, &pending.request, &event, applied)
                } else {
                    self.not_leader(&pending.request)
                };
                remoting::reply(out, pending.conn, &pending.request, &reply);
            }
        }
        self.compact_if_due(out);
        if leading != self.leading {
            self.leading = leading;
            tracing::warn!(leading, "controller leadership changed");
            if leading {
                // Judge no master before the brokers had a heartbeat timeout to reach us.
                self.state.judge_from(now.mono.plus_millis(self.config.heartbeat_timeout_ms));
            }
        }
        if !leading {
            // What was proposed may never commit, or commit under the next leader: the
            // brokers ask that one again.
            for (_, pending) in std::mem::take(&mut self.pending) {
                let reply = self.not_leader(&pending.request);
                remoting::reply(out, pending.conn, &pending.request, &reply);
            }
        }
    }

    /// Compact the log once `snapshot_entries` were applied since the last snapshot.
    fn compact_if_due(&mut self, out: &mut VecDeque<Output>) {
        let Some(group) = &mut self.group else { return };
        let every = self.config.snapshot_entries.max(1);
        if group.applied_since_snapshot() < every {
            return;
        }
        let data = json::to_body(self.state.table(), KeyStyle::Standard);
        match group.compact(data, every / 4, out) {
            Ok(()) => tracing::info!(index = group.snapshot_index(), "controller log compacted"),
            Err(error) => tracing::error!(%error, "controller log compaction failed; the log keeps growing"),
        }
    }

    /// Apply a committed event, and (the leader) tell the set's brokers about a new master.
    fn commit(&mut self, now: Now, event: &Event, out: &mut VecDeque<Output>) -> bool {
        let applied = self.state.apply(event);
        let leading = self.is_leader();
        match event {
            Event::ElectMaster { broker_name, master, .. } if applied => {
                let set = self.state.table().get(broker_name);
                tracing::warn!(
                    broker_name = %broker_name,
                    master = ?master,
                    master_epoch = set.map_or(0, |s| s.master_epoch),
                    "new master elected"
                );
                if master.is_some() && leading {
                    for (conn, mut notice) in self.state.role_change_notices(broker_name, now.mono) {
                        notice.flag |= FLAG_ONEWAY;
                        remoting::send(out, conn, &notice);
                    }
                }
            }
            _ if !applied => tracing::info!(?event, "event fenced by an earlier change"),
            _ => tracing::debug!(?event, "event applied"),
        }
        applied
    }

    /// A connection opened (one this controller dialled to a peer, or any other).
    pub fn connection_opened(&mut self, conn: ConnId) {
        if let Some(group) = &mut self.group {
            group.opened(conn);
        }
    }

    /// A connection closed.
    pub fn connection_closed(&mut self, now: Now, conn: ConnId) {
        self.state.connection_closed(conn);
        if let Some(group) = &mut self.group {
            group.closed(now.mono, conn);
        }
    }

    /// A write of the Raft log completed: go on with what waited for it. A failed write
    /// stops the controller (its peers carry on; it recovers from the file on restart).
    pub fn disk_done(
        &mut self,
        now: Now,
        io: IoId,
        result: &Result<(), DiskError>,
        out: &mut VecDeque<Output>,
    ) {
        let Some(group) = &mut self.group else {
            tracing::warn!(?io, "controller got a disk completion it never asked for");
            return;
        };
        if let Err(error) = group.persisted(io, result) {
            out.push_back(Output::Fatal { reason: format!("controller Raft log write failed: {error}") });
            return;
        }
        self.pump(now, out);
    }

    /// When the next scan, tick or dial is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        let group = self.group.as_ref().and_then(PeerGroup::poll_timeout);
        self.next_scan.into_iter().chain(group).min()
    }

    /// Tick, dial and scan for dead masters when due.
    pub fn handle_timeout(&mut self, now: Now, out: &mut VecDeque<Output>) {
        self.started(now.mono);
        if let Some(group) = &mut self.group {
            group.handle_timeout(now.mono, out);
            self.pump(now, out);
        }
        if self.next_scan.is_some_and(|at| now.mono >= at) {
            self.next_scan = Some(now.mono.plus_millis(self.config.scan_interval_ms));
            if self.is_leader() {
                for event in self.state.elections_due(now.mono) {
                    match &mut self.group {
                        None => {
                            self.commit(now, &event, out);
                        }
                        Some(group) => {
                            if let Err(error) = group.propose(&event) {
                                tracing::info!(%error, "an election could not be proposed");
                            }
                        }
                    }
                }
                self.pump(now, out);
            }
        }
    }
}

/// The standalone controller (`mqcontroller`): a [`ControllerCore`] with its own port.
#[derive(Debug)]
pub struct Controller {
    conns: ConnectionTable,
    core: ControllerCore,
    out: VecDeque<Output>,
}

impl Controller {
    /// A lone controller with no broker sets yet.
    #[must_use]
    pub fn new(config: ControllerConfig) -> Self {
        Self::with_core(ControllerCore::new(config))
    }

    /// A controller serving `core` (alone or in a group).
    #[must_use]
    pub fn with_core(core: ControllerCore) -> Self {
        Self { conns: ConnectionTable::new(DEFAULT_MAX_FRAME_LEN, 10_000), core, out: VecDeque::new() }
    }

    /// The logic.
    #[must_use]
    pub fn core(&self) -> &ControllerCore {
        &self.core
    }

    /// Serve what came on `conn`: requests (responses are not expected), or the stream's end.
    fn on_received(&mut self, now: Now, conn: ConnId, received: impl IntoIterator<Item = Received>) {
        for received in received {
            match received {
                Received::Command(cmd) if cmd.is_response() => {
                    tracing::debug!(?conn, opaque = cmd.opaque, "ignoring a response");
                }
                Received::Command(cmd) => {
                    if !self.core.on_request(now, conn, &cmd, &mut self.out) {
                        remoting::reply(&mut self.out, conn, &cmd, &remoting::not_supported(&cmd));
                    }
                }
                Received::Closed(_) => self.core.connection_closed(now, conn),
            }
        }
    }
}

impl Machine for Controller {
    fn handle(&mut self, now: Now, input: Input) {
        match input {
            Input::ConnOpened { conn, peer, .. } => {
                self.conns.open(conn, peer, &mut self.out);
                self.core.connection_opened(conn);
            }
            Input::ConnClosed { conn } => {
                self.conns.close(conn);
                self.core.connection_closed(now, conn);
            }
            Input::Bytes { conn, data, .. } => {
                let received = self.conns.feed(conn, &data, &mut self.out);
                self.on_received(now, conn, received);
            }
            Input::Command { conn, command, .. } => {
                let received = self.conns.take_command(conn, command);
                self.on_received(now, conn, received);
            }
            Input::DiskDone { io, result } => self.core.disk_done(now, io, &result, &mut self.out),
            Input::Timeout => self.core.handle_timeout(now, &mut self.out),
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<MonoNanos> {
        self.core.poll_timeout()
    }
}
