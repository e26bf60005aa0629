//! A broker's link to its controller (controller mode, RocketMQ's `ReplicasManager`). With
//! several controllers (`controllerAddr=a;b;c`) it first asks the one it dialled for the
//! group's metadata (CONTROLLER_GET_METADATA_INFO) and moves to the leader it names, or to
//! the next address; a CONTROLLER_NOT_LEADER answer later moves it the same way. Then it
//! claims its `brokerId` in the set (CONTROLLER_APPLY_BROKER_ID, with a check code the
//! same broker repeats after a restart), registers with its addresses, asks to be elected
//! when the set has no master, heartbeats every second with its epoch and CommitLog end,
//! asks for the set's master every few seconds, and takes NOTIFY_BROKER_ROLE_CHANGED. Each
//! answer that names a master becomes a [`RoleChange`] for the broker: master if it names
//! this broker, else a slave of the named master's replication address.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet};

use super::replication::Replication;
use super::role::{controller_epoch, RoleChange};
use super::shared::Shared;
use crate::io::{CloseReason, ConnId, ConnKind, MonoNanos, Now, Output};
use crate::protocol::body::SyncStateSet;
use crate::protocol::headers::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ApplyBrokerIdRequestHeader,
    BrokerHeartbeatRequestHeader, CommandHeader, ElectMasterRequestHeader, GetMetaDataResponseHeader,
    GetReplicaInfoRequestHeader, MasterInfoHeader, RegisterBrokerToControllerRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{wire_long, ExtFields, RemotingCommand, RequestCode, ResponseCode};

/// Heartbeats to the controller (`brokerHeartbeatInterval`).
pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// How long the controller waits without a heartbeat before it counts this broker dead
/// (`controllerHeartBeatTimeoutMills`).
pub const HEARTBEAT_TIMEOUT_MS: u64 = 10_000;
/// How often the set's master is asked for (`syncBrokerMetadataPeriod`), and the pause
/// before a lost link is dialled again.
pub const POLL_INTERVAL_MS: u64 = 5_000;
/// A master that has heard nothing from the controller for this long stops taking writes:
/// the controller counts it dead after [`HEARTBEAT_TIMEOUT_MS`] and may elect another, and
/// writes a deposed master took (ASYNC_MASTER acknowledges them at once) would be lost.
pub const LEASE_MS: u64 = HEARTBEAT_TIMEOUT_MS - 2 * HEARTBEAT_INTERVAL_MS;
/// The pause before the next controller is tried when the one dialled does not lead.
pub const LEADER_HUNT_MS: u64 = 500;
/// How often a master compares its in-sync slaves with the controller's SyncStateSet.
pub const SYNC_STATE_CHECK_MS: u64 = 3_000;
/// A slave that has not caught up for this long leaves the SyncStateSet
/// (`haMaxTimeSlaveNotCatchup`).
pub const MAX_TIME_NOT_CAUGHT_UP_MS: u64 = 15_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Off,
    ExpectRedial(MonoNanos),
    ExpectConnected(ConnId),
    Open(ConnId),
}

/// The link; off unless `enableControllerMode`.
#[derive(Debug)]
pub(super) struct ControllerLink {
    /// Every controller configured (`controllerAddr`).
    addrs: Vec<SocketAddr>,
    /// The one dialled next, or now: a configured one, or the leader one named.
    target: Option<SocketAddr>,
    state: LinkState,
    /// Registered in this connection (heartbeats and polls go out).
    registered: bool,
    next_heartbeat: MonoNanos,
    next_poll: MonoNanos,
    /// Requests sent and not answered: opaque → code and when it went out.
    waiting: BTreeMap<i32, (RequestCode, MonoNanos)>,
    /// The time of the input being handled (what requests are stamped with).
    clock: MonoNanos,
    /// The set as the controller last described it: master epoch, SyncStateSet and its
    /// epoch.
    master_epoch: i32,
    sync_state: BTreeSet<i64>,
    sync_state_epoch: i32,
    /// Slaves caught up with this master but not yet holding all it confirmed: counted as
    /// members (acknowledgements wait for them, the confirmed offset stops at what they
    /// hold) until they do, then proposed to the controller. Never asked for, so dropped
    /// freely.
    catching: BTreeSet<i64>,
    /// Slaves proposed to join in a request made at this SyncStateSet epoch, whose outcome
    /// is not known yet: still counted, since the controller may have made them members
    /// (and electable), until its answer or a later SyncStateSet says.
    proposed: Option<(BTreeSet<i64>, i32)>,
    next_sync_check: MonoNanos,
    /// When the newest request went out whose answer named this broker the set's master in
    /// its epoch (or a newer one): the controller counts a master dead only a heartbeat
    /// timeout after it last heard it, which is no earlier.
    vouched: Option<MonoNanos>,
    /// Whether the lease lapsed at the last look (then no deadline is kept for it).
    lapsed: bool,
}

impl ControllerLink {
    /// A link to the controllers at `addrs` (none: not in controller mode), dialled at once.
    pub(super) fn new(addrs: Vec<SocketAddr>, now: MonoNanos) -> Self {
        let target = addrs.first().copied();
        let state = if target.is_some() { LinkState::ExpectRedial(now) } else { LinkState::Off };
        Self {
            addrs,
            target,
            state,
            registered: false,
            next_heartbeat: now,
            next_poll: now,
            waiting: BTreeMap::new(),
            clock: now,
            master_epoch: 0,
            sync_state: BTreeSet::new(),
            sync_state_epoch: 0,
            catching: BTreeSet::new(),
            proposed: None,
            next_sync_check: now,
            vouched: None,
            lapsed: false,
        }
    }

    /// Whether `conn` is the controller's connection.
    pub(super) fn owns(&self, conn: ConnId) -> bool {
        matches!(self.state, LinkState::ExpectConnected(c) | LinkState::Open(c) if c == conn)
    }

    fn send(&mut self, shared: &mut Shared, code: RequestCode, header: &impl CommandHeader) {
        self.send_with_body(shared, code, header, Vec::new());
    }

    fn send_with_body(
        &mut self,
        shared: &mut Shared,
        code: RequestCode,
        header: &impl CommandHeader,
        body: Vec<u8>,
    ) {
        self.send_fields(shared, code, header.to_ext_fields(), body);
    }

    fn send_fields(&mut self, shared: &mut Shared, code: RequestCode, fields: ExtFields, body: Vec<u8>) {
        let LinkState::Open(conn) = self.state else { return };
        let opaque = shared.opaque();
        self.waiting.insert(opaque, (code, self.clock));
        let request = RemotingCommand::request(code, opaque, fields).with_body(body);
        crate::remoting::send(&mut shared.out, conn, &request);
    }

    /// The connection opened: find whether it reaches the leader, or claim this broker's
    /// id at once when there is one controller.
    pub(super) fn opened(&mut self, shared: &mut Shared, now: Now, conn: ConnId, replica_id: i64) {
        if self.state != LinkState::ExpectConnected(conn) {
            return;
        }
        self.clock = now.mono;
        self.state = LinkState::Open(conn);
        self.registered = false;
        if self.addrs.len() > 1 {
            self.send_fields(shared, RequestCode::CONTROLLER_GET_METADATA_INFO, ExtFields::new(), Vec::new());
        } else {
            self.apply_id(shared, replica_id);
        }
    }

    /// Leave the controller dialled for the leader `named` (or, named none, the next one
    /// configured after a pause).
    fn hunt_leader(&mut self, shared: &mut Shared, now: Now, named: Option<&str>) {
        let LinkState::Open(conn) = self.state else { return };
        let leader =
            named.and_then(|addr| addr.parse::<SocketAddr>().ok()).filter(|addr| Some(*addr) != self.target);
        let pause = if leader.is_some() { 0 } else { LEADER_HUNT_MS };
        self.target = leader.or_else(|| self.next_configured());
        tracing::info!(leader = ?self.target, "the controller dialled does not lead; moving");
        shared.out.push_back(Output::Close { conn, reason: CloseReason("not the controller leader".into()) });
        self.state = LinkState::ExpectRedial(now.mono.plus_millis(pause));
        self.registered = false;
        self.waiting.clear();
    }

    /// Drop the link and dial the same controller again after `pause_ms`.
    fn redial_later(&mut self, shared: &mut Shared, now: Now, pause_ms: u64) {
        let LinkState::Open(conn) = self.state else { return };
        shared.out.push_back(Output::Close {
            conn,
            reason: CloseReason("asking the controller again later".into()),
        });
        self.state = LinkState::ExpectRedial(now.mono.plus_millis(pause_ms));
        self.registered = false;
        self.waiting.clear();
    }

    /// The configured controller after the one dialled last.
    fn next_configured(&self) -> Option<SocketAddr> {
        let at = self.target.and_then(|t| self.addrs.iter().position(|a| *a == t));
        let next = at.map_or(0, |i| (i + 1) % self.addrs.len().max(1));
        self.addrs.get(next).copied()
    }

    fn apply_id(&mut self, shared: &mut Shared, replica_id: i64) {
        let addr = shared.config.advertised_addr.to_string();
        let header = ApplyBrokerIdRequestHeader {
            cluster_name: shared.config.cluster_name.clone(),
            broker_name: shared.config.broker_name.clone(),
            applied_broker_id: replica_id,
            // The same broker after a restart claims its id again.
            register_check_code: format!("{addr};{};{replica_id}", shared.config.broker_name),
        };
        self.send(shared, RequestCode::CONTROLLER_APPLY_BROKER_ID, &header);
    }

    /// The connection closed or could not open: dial again after a pause.
    pub(super) fn closed(&mut self, now: Now, conn: ConnId) {
        if self.owns(conn) {
            tracing::warn!(controller = ?self.target, "controller link lost; re-dialling");
            // With several controllers the next is tried soon; one is dialled again later.
            let pause = if self.addrs.len() > 1 { LEADER_HUNT_MS } else { POLL_INTERVAL_MS };
            self.target = self.next_configured();
            self.state = LinkState::ExpectRedial(now.mono.plus_millis(pause));
            self.registered = false;
            self.waiting.clear();
        }
    }

    fn register(&mut self, shared: &mut Shared, replica_id: i64) {
        let header = RegisterBrokerToControllerRequestHeader {
            cluster_name: shared.config.cluster_name.clone(),
            broker_name: shared.config.broker_name.clone(),
            broker_id: replica_id,
            broker_address: shared.config.advertised_addr.to_string(),
            ha_address: Some(shared.ha_addr().to_string()),
        };
        self.send(shared, RequestCode::CONTROLLER_REGISTER_BROKER, &header);
    }

    fn elect_me(&mut self, shared: &mut Shared, replica_id: i64) {
        let header = ElectMasterRequestHeader {
            cluster_name: shared.config.cluster_name.clone(),
            broker_name: shared.config.broker_name.clone(),
            broker_id: Some(replica_id),
            designate_elect: Some(false),
        };
        self.send(shared, RequestCode::CONTROLLER_ELECT_MASTER, &header);
    }

    /// A reply from the controller: the role it implies, if any.
    pub(super) fn on_response(
        &mut self,
        shared: &mut Shared,
        now: Now,
        response: &RemotingCommand,
        replica_id: i64,
    ) -> Option<RoleChange> {
        let (code, sent) = self.waiting.remove(&response.opaque)?;
        self.clock = now.mono;
        let status = response.response_code();
        let answered =
            status == ResponseCode::SUCCESS || status == ResponseCode::CONTROLLER_MASTER_STILL_EXIST;
        if answered && names_master(response, replica_id, shared.epochs.current().epoch) {
            self.vouched = self.vouched.max(Some(sent));
        }
        self.refresh_lease(shared, now);
        tracing::debug!(?code, ?status, remark = ?response.remark, "controller reply");
        if code == RequestCode::CONTROLLER_GET_METADATA_INFO || status == ResponseCode::CONTROLLER_NOT_LEADER
        {
            let meta = GetMetaDataResponseHeader::decode(&response.ext_fields).ok();
            if status == ResponseCode::SUCCESS && meta.as_ref().is_some_and(|m| m.is_leader) {
                self.apply_id(shared, replica_id);
            } else {
                let named = meta.and_then(|m| m.controller_leader_address);
                self.hunt_leader(shared, now, named.as_deref());
            }
            return None;
        }
        if answered {
            self.learn(shared, response);
        }
        match code {
            RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET => {
                if status == ResponseCode::SUCCESS {
                    if let Ok(header) = AlterSyncStateSetResponseHeader::decode(&response.ext_fields) {
                        self.sync_state_epoch = header.new_sync_state_set_epoch;
                    }
                    if let Ok(body) = json::from_slice::<SyncStateSet>(&response.body) {
                        self.sync_state = body.sync_state_set;
                    }
                    tracing::info!(members = ?self.sync_state, epoch = self.sync_state_epoch, "SyncStateSet changed");
                } else {
                    tracing::info!(?status, remark = ?response.remark, "the controller refused the SyncStateSet");
                }
                // Decided either way: the controller compares epochs before it changes a
                // set, so a request it refused never takes effect later.
                self.proposed = None;
                self.publish(shared);
                None
            }
            RequestCode::CONTROLLER_APPLY_BROKER_ID if status == ResponseCode::SUCCESS => {
                self.register(shared, replica_id);
                None
            }
            RequestCode::CONTROLLER_APPLY_BROKER_ID => {
                // A set's first broker must be id 1, and a broker started before it is
                // refused until it is there; an id another broker holds stays refused.
                tracing::error!(broker_id = replica_id, remark = ?response.remark, "the controller refused this broker's id; asking again later (if it persists, fix brokerId)");
                self.redial_later(shared, now, POLL_INTERVAL_MS);
                None
            }
            RequestCode::CONTROLLER_REGISTER_BROKER
            | RequestCode::CONTROLLER_GET_REPLICA_INFO
            | RequestCode::CONTROLLER_ELECT_MASTER => {
                if code == RequestCode::CONTROLLER_REGISTER_BROKER && status == ResponseCode::SUCCESS {
                    self.registered = true;
                    self.next_heartbeat = now.mono;
                    self.next_poll = now.mono.plus_millis(POLL_INTERVAL_MS);
                }
                let told =
                    answered.then(|| role_of(response, replica_id, shared.epochs.current().epoch)).flatten();
                let master_named = MasterInfoHeader::decode(&response.ext_fields)
                    .is_ok_and(|info| info.master_broker_id.is_some());
                if !master_named
                    && code != RequestCode::CONTROLLER_ELECT_MASTER
                    && status == ResponseCode::SUCCESS
                {
                    // The set has no master: ask to be it (the controller elects by its rules).
                    self.elect_me(shared, replica_id);
                }
                if told.is_none() && status != ResponseCode::SUCCESS {
                    tracing::info!(?code, ?status, remark = ?response.remark, "the controller names no master yet");
                }
                told
            }
            // Keel's controllers name the master in heartbeat answers: a deposed master learns.
            RequestCode::BROKER_HEARTBEAT if status == ResponseCode::SUCCESS => {
                role_of(response, replica_id, shared.epochs.current().epoch)
            }
            _ => None,
        }
    }

    /// NOTIFY_BROKER_ROLE_CHANGED from the controller.
    pub(super) fn on_notice(
        &mut self,
        shared: &mut Shared,
        notice: &RemotingCommand,
        replica_id: i64,
    ) -> Option<RoleChange> {
        self.learn(shared, notice);
        role_of(notice, replica_id, shared.epochs.current().epoch)
    }

    /// What a controller's master header and SyncStateSet body say about the set.
    fn learn(&mut self, shared: &mut Shared, command: &RemotingCommand) {
        let Ok(info) = MasterInfoHeader::decode(&command.ext_fields) else { return };
        let (Some(master_epoch), Some(epoch)) = (info.master_epoch, info.sync_state_set_epoch) else {
            return;
        };
        if (master_epoch, epoch) < (self.master_epoch, self.sync_state_epoch) {
            return;
        }
        // A SyncStateSet body, or an election's (whose epoch is in the header).
        if let Ok(body) = json::from_slice::<SyncStateSet>(&command.body) {
            self.sync_state = body.sync_state_set;
            // The set as it stands past the epoch a proposal was made at: its outcome.
            if self.proposed.as_ref().is_some_and(|(_, at)| epoch > *at) {
                self.proposed = None;
            }
        }
        if master_epoch != self.master_epoch {
            // Another master epoch: what this broker asked for as master is void.
            self.catching.clear();
            self.proposed = None;
        }
        self.master_epoch = master_epoch;
        self.sync_state_epoch = epoch;
        self.publish(shared);
    }

    /// Give the replies the SyncStateSet the controller confirmed (a master's
    /// `allAckInSyncStateSet` and `minInSyncReplicas` go by it).
    fn publish(&self, shared: &mut Shared) {
        shared.sync_state_set = Some(self.sync_state.clone());
        let proposed = self.proposed.iter().flat_map(|(ids, _)| ids);
        shared.sync_state_joining = self.catching.iter().chain(proposed).copied().collect();
    }

    /// On a master: ask the controller to make the SyncStateSet this master and the slaves
    /// caught up with it, when that differs from the controller's.
    fn check_sync_state(
        &mut self,
        shared: &mut Shared,
        now: Now,
        replica_id: i64,
        replication: &Replication,
    ) {
        if now.mono < self.next_sync_check {
            return;
        }
        // Due every few seconds whatever the role, so the deadline never stays behind.
        self.next_sync_check = now.mono.plus_millis(SYNC_STATE_CHECK_MS);
        if shared.config.role.is_slave() {
            return;
        }
        let mut in_sync = replication.in_sync_ids(now, MAX_TIME_NOT_CAUGHT_UP_MS);
        in_sync.insert(replica_id);
        // A slave joins only once it holds all this master confirmed (RocketMQ re-adds one
        // whose ack reached the confirm offset), so none the controller may elect lacks a
        // message acknowledged or served. Until then it counts as a member, which holds the
        // confirmed offset back until it has caught up with it.
        let proposed: BTreeSet<i64> = self.proposed.iter().flat_map(|(ids, _)| ids).copied().collect();
        self.catching = in_sync
            .iter()
            .filter(|id| !self.sync_state.contains(id) && !proposed.contains(id))
            .copied()
            .collect();
        let confirmed = shared.confirmed.map_or(crate::store::PhysOffset(0), |(_, at)| at);
        let waiting: BTreeSet<i64> =
            self.catching.iter().filter(|id| replication.held_by(**id) < confirmed).copied().collect();
        self.publish(shared);
        let asking =
            self.waiting.values().any(|(code, _)| *code == RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET);
        let in_sync: BTreeSet<i64> = in_sync.difference(&waiting).copied().collect();
        // An unsettled proposal (its link closed before the answer) is settled by asking
        // again, even for the set the controller already has.
        if (in_sync == self.sync_state && self.proposed.is_none()) || asking {
            return;
        }
        let header = AlterSyncStateSetRequestHeader {
            broker_name: shared.config.broker_name.clone(),
            master_broker_id: replica_id,
            master_epoch: self.master_epoch,
        };
        let body =
            SyncStateSet { sync_state_set: in_sync.clone(), sync_state_set_epoch: self.sync_state_epoch };
        let body = json::to_body(&body, KeyStyle::Fastjson);
        self.send_with_body(shared, RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET, &header, body);
        let joining: BTreeSet<i64> = in_sync.difference(&self.sync_state).copied().chain(proposed).collect();
        self.catching.retain(|id| !joining.contains(id));
        self.proposed = (!joining.is_empty()).then_some((joining, self.sync_state_epoch));
        self.publish(shared);
        tracing::info!(from = ?self.sync_state, to = ?in_sync, "asking the controller to change the SyncStateSet");
    }

    /// A master in controller mode takes writes only within [`LEASE_MS`] of a request whose
    /// answer named it master.
    pub(super) fn refresh_lease(&mut self, shared: &mut Shared, now: Now) {
        let silent_ms = self.vouched.map(|at| now.mono.millis_since(at));
        // Past the deadline: no further wake-up for it until the controller is heard.
        self.lapsed = silent_ms.is_none_or(|ms| ms > LEASE_MS);
        let fenced = !self.addrs.is_empty() && !shared.config.role.is_slave() && self.lapsed;
        if fenced != shared.lease_lapsed {
            if fenced && silent_ms.is_none() {
                tracing::info!("this master takes writes once a controller's answer names it");
            } else if fenced {
                tracing::warn!(
                    silent_ms,
                    "the controller has not named this broker master lately: it stops taking writes"
                );
            } else if !shared.config.role.is_slave() {
                tracing::info!("the controller names this broker master again: it takes writes");
            }
            shared.lease_lapsed = fenced;
        }
    }

    /// When a dial, heartbeat or poll is next due.
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        // The lease is looked at when it would lapse, whatever the link is doing.
        let lease = self
            .vouched
            .filter(|_| !self.addrs.is_empty() && !self.lapsed)
            .map(|at| at.plus_millis(LEASE_MS + 1));
        let link = match self.state {
            LinkState::ExpectRedial(at) => Some(at),
            LinkState::Open(_) if self.registered => {
                Some(self.next_heartbeat.min(self.next_poll).min(self.next_sync_check))
            }
            _ => None,
        };
        [link, lease].into_iter().flatten().min()
    }

    /// Dial, heartbeat or poll when due.
    pub(super) fn handle_timeout(
        &mut self,
        shared: &mut Shared,
        now: Now,
        replica_id: i64,
        replication: &Replication,
    ) {
        self.clock = now.mono;
        self.refresh_lease(shared, now);
        match self.state {
            LinkState::ExpectRedial(at) if now.mono >= at => {
                let Some(addr) = self.target else { return };
                let conn = shared.dial_id();
                self.state = LinkState::ExpectConnected(conn);
                shared.out.push_back(Output::Connect { conn, addr, kind: ConnKind::Remoting });
            }
            LinkState::Open(_) if self.registered => {
                if now.mono >= self.next_heartbeat {
                    self.next_heartbeat = now.mono.plus_millis(HEARTBEAT_INTERVAL_MS);
                    let header = BrokerHeartbeatRequestHeader {
                        cluster_name: shared.config.cluster_name.clone(),
                        broker_addr: shared.config.advertised_addr.to_string(),
                        broker_name: shared.config.broker_name.clone(),
                        broker_id: Some(replica_id),
                        epoch: Some(
                            i32::try_from(controller_epoch(shared.epochs.current().epoch))
                                .unwrap_or(i32::MAX),
                        ),
                        max_offset: Some(wire_long(shared.store.write_pos().0)),
                        confirm_offset: Some(wire_long(shared.store.flushed_end().0)),
                        heartbeat_timeout_mills: Some(HEARTBEAT_TIMEOUT_MS as i64),
                        election_priority: Some(shared.config.election_priority),
                    };
                    self.send(shared, RequestCode::BROKER_HEARTBEAT, &header);
                }
                if now.mono >= self.next_poll {
                    self.next_poll = now.mono.plus_millis(POLL_INTERVAL_MS);
                    let header =
                        GetReplicaInfoRequestHeader { broker_name: shared.config.broker_name.clone() };
                    self.send(shared, RequestCode::CONTROLLER_GET_REPLICA_INFO, &header);
                }
                self.check_sync_state(shared, now, replica_id, replication);
            }
            _ => {}
        }
    }
}

/// Whether a controller's answer names broker `replica_id` master in its epoch (from its
/// newest local epoch `own`) or a newer one.
fn names_master(command: &RemotingCommand, replica_id: i64, own: u32) -> bool {
    MasterInfoHeader::decode(&command.ext_fields).is_ok_and(|info| {
        info.master_broker_id == Some(replica_id)
            && info
                .master_epoch
                .and_then(|e| u32::try_from(e).ok())
                .is_some_and(|e| e >= controller_epoch(own))
    })
}

/// The role a controller's master header implies for broker `replica_id`, whose newest
/// local epoch is `own`. An answer from an older master epoch than this broker's is stale
/// (a reply overtaken by a notice) and implies nothing, as RocketMQ's brokers ignore one.
/// One that names no master in a newer epoch deposes this broker if it is master: it stops
/// taking writes and waits to be told whom to follow.
fn role_of(command: &RemotingCommand, replica_id: i64, own: u32) -> Option<RoleChange> {
    let info = MasterInfoHeader::decode(&command.ext_fields).ok()?;
    let epoch = u32::try_from(info.master_epoch?).ok()?;
    let own = controller_epoch(own);
    if epoch < own {
        return None;
    }
    let Some(master) = info.master_broker_id else {
        return (epoch > own).then_some(RoleChange::Slave { master_ha: None, master: None });
    };
    if master == replica_id {
        return Some(RoleChange::Master { master_epoch: epoch });
    }
    let master_ha = info.master_ha_address.and_then(|addr| addr.parse().ok());
    let master = info.master_address.and_then(|addr| addr.parse().ok());
    Some(RoleChange::Slave { master_ha, master })
}
