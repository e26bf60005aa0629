//! How a controller answers each request (RocketMQ's `ReplicasInfoManager` and
//! `ControllerRequestProcessor`): from the replicated [`ReplicaTable`] and this controller's
//! [`LiveTable`], a request is answered at once or becomes an [`Event`] to commit, answered
//! once the event is applied — from the state as it then is, so a fenced event is answered
//! as the failure it became.

use std::collections::BTreeSet;

use super::elect::{elect, ElectRequest};
use super::live::{LiveInfo, LiveTable};
use super::replicas::{BrokerSet, Event, ReplicaTable, FIRST_BROKER_ID};
use crate::io::{ConnId, MonoNanos, Now};
use crate::protocol::body::{
    BrokerMemberGroup, BrokerReplicasInfo, ElectMasterResponseBody, ReplicaIdentity, ReplicasInfo,
    SyncStateSet,
};
use crate::protocol::headers::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ApplyBrokerIdRequestHeader,
    BrokerHeartbeatRequestHeader, CleanControllerBrokerDataRequestHeader, CommandHeader,
    ElectMasterRequestHeader, GetNextBrokerIdHeader, GetReplicaInfoRequestHeader, HeaderError,
    MasterInfoHeader, RegisterBrokerToControllerRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Controller settings (RocketMQ's `ControllerConfig` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Elect outside the SyncStateSet when nobody in it qualifies
    /// (`enableElectUncleanMaster`, off): availability over acknowledged data.
    pub elect_unclean: bool,
    /// How often dead masters are looked for (`scanNotActiveBrokerInterval`, 5 s).
    pub scan_interval_ms: u64,
    /// A broker's heartbeat timeout when it names none (10 s).
    pub heartbeat_timeout_ms: u64,
    /// Entries applied between two compactions of the group's log
    /// (`controllerSnapshotEntries`, Keel's key, 10,000).
    pub snapshot_entries: u64,
    /// A deliberate bug the simulator switches on (only a `--cfg madsim` build obeys it).
    pub mutation: Option<crate::mutation::Mutation>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            elect_unclean: false,
            scan_interval_ms: 5_000,
            heartbeat_timeout_ms: 10_000,
            snapshot_entries: 10_000,
            mutation: None,
        }
    }
}

impl ControllerConfig {
    /// Whether `mutation` is switched on (never outside the simulator).
    #[must_use]
    pub fn mutated(&self, mutation: crate::mutation::Mutation) -> bool {
        crate::mutation::switched_on(self.mutation, mutation)
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this reply now.
    Reply(RemotingCommand),
    /// Commit this event, then answer with [`ControllerState::answer_committed`].
    Commit(Event),
    /// Not a controller request.
    NotMine,
}

/// A controller's state: the replicated table and the brokers it hears.
#[derive(Debug, Default)]
pub struct ControllerState {
    config: ControllerConfig,
    table: ReplicaTable,
    live: LiveTable,
    /// No master counts as gone before this: a controller that just started, or just began
    /// to lead, has not had a heartbeat timeout to hear the brokers.
    judge_from: MonoNanos,
}

fn id_of(raw: i64) -> Option<u64> {
    u64::try_from(raw).ok()
}

fn signed(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn reply(
    request: &RemotingCommand,
    code: ResponseCode,
    remark: impl Into<Option<String>>,
) -> RemotingCommand {
    RemotingCommand::response_to(request, code, remark.into())
}

/// The master header and SyncStateSet body RocketMQ answers registrations and queries with.
/// The epochs are there with no master too: a deposed master that hears of a newer epoch
/// with none steps down.
fn master_info(set: &BrokerSet, master_alive: bool) -> MasterInfoHeader {
    let master = set.master.filter(|_| master_alive);
    MasterInfoHeader {
        master_broker_id: master.map(signed),
        master_address: master.and_then(|id| set.addr(id)).map(str::to_owned),
        master_epoch: Some(set.master_epoch),
        sync_state_set_epoch: Some(set.sync_state_set_epoch),
        master_ha_address: master.and_then(|_| set.master_ha_addr()).map(str::to_owned),
    }
}

fn sync_state_body(set: &BrokerSet) -> Vec<u8> {
    let body = SyncStateSet {
        sync_state_set: set.sync_state_set.iter().copied().map(signed).collect(),
        sync_state_set_epoch: set.sync_state_set_epoch,
    };
    json::to_body(&body, KeyStyle::Fastjson)
}

fn with_header(mut reply: RemotingCommand, header: &impl CommandHeader) -> RemotingCommand {
    header.encode(&mut reply.ext_fields);
    reply
}

impl ControllerState {
    /// An empty controller.
    #[must_use]
    pub fn new(config: ControllerConfig) -> Self {
        Self { config, table: ReplicaTable::default(), live: LiveTable::default(), judge_from: MonoNanos(0) }
    }

    fn policy(&self, designated: Option<u64>) -> ElectRequest {
        ElectRequest {
            designated,
            unclean: self.config.elect_unclean,
            out_of_sync_first: self.config.mutated(crate::mutation::Mutation::ElectOutOfSync),
        }
    }

    /// Count no master as gone before `at` (a heartbeat timeout after this controller
    /// started, or began to lead).
    pub fn judge_from(&mut self, at: MonoNanos) {
        self.judge_from = at;
    }

    /// Whether `set`'s master counts as alive: heard, or not yet judged.
    fn master_alive(&self, broker_name: &str, set: &BrokerSet, now: MonoNanos) -> bool {
        set.master.is_some_and(|m| now < self.judge_from || self.live.is_alive(broker_name, m, now))
    }

    /// The replicated table.
    #[must_use]
    pub fn table(&self) -> &ReplicaTable {
        &self.table
    }

    /// The brokers heard.
    #[must_use]
    pub fn live(&self) -> &LiveTable {
        &self.live
    }

    /// Replace the table with a snapshot's (a follower too far behind, or a restart).
    pub fn restore(&mut self, table: ReplicaTable) {
        self.table = table;
    }

    /// Apply a committed event; `false` if it was fenced.
    pub fn apply(&mut self, event: &Event) -> bool {
        self.table.apply(event)
    }

    /// A connection closed: its brokers count as gone.
    pub fn connection_closed(&mut self, conn: ConnId) {
        self.live.connection_closed(conn);
    }

    /// Decide a request. Heartbeats are taken by every controller, leader or not; the rest
    /// only by the leader (the caller answers CONTROLLER_NOT_LEADER otherwise).
    pub fn decide(&mut self, now: Now, conn: ConnId, request: &RemotingCommand) -> Decision {
        match self.try_decide(now.mono, conn, request) {
            Ok(decision) => decision,
            Err(error) => {
                Decision::Reply(reply(request, ResponseCode::CONTROLLER_INVALID_REQUEST, error.to_string()))
            }
        }
    }

    /// Whether `request` is one only the leader may answer.
    #[must_use]
    pub fn needs_leader(request: &RemotingCommand) -> bool {
        matches!(
            request.request_code(),
            RequestCode::CONTROLLER_GET_NEXT_BROKER_ID
                | RequestCode::CONTROLLER_APPLY_BROKER_ID
                | RequestCode::CONTROLLER_REGISTER_BROKER
                | RequestCode::CONTROLLER_ELECT_MASTER
                | RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET
                | RequestCode::CONTROLLER_GET_REPLICA_INFO
                | RequestCode::CONTROLLER_GET_SYNC_STATE_DATA
                | RequestCode::CLEAN_BROKER_DATA
        )
    }

    /// A registration heard: the broker is alive at `addr`, on `conn`; what its last
    /// heartbeat said of its log is kept.
    fn heard(&mut self, now: MonoNanos, conn: ConnId, broker_name: &str, id: u64, addr: &str) {
        let info = match self.live.get(broker_name, id) {
            Some(previous) => LiveInfo { addr: addr.to_owned(), conn, last_seen: now, ..previous.clone() },
            None => LiveInfo {
                addr: addr.to_owned(),
                conn,
                last_seen: now,
                timeout_ms: self.config.heartbeat_timeout_ms,
                epoch: 0,
                max_offset: 0,
                confirm_offset: 0,
                priority: 0,
            },
        };
        self.live.heard(broker_name, id, info);
    }

    fn try_decide(
        &mut self,
        now: MonoNanos,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<Decision, HeaderError> {
        let ok = |request: &RemotingCommand| reply(request, ResponseCode::SUCCESS, None);
        Ok(match request.request_code() {
            RequestCode::BROKER_HEARTBEAT => {
                let header = BrokerHeartbeatRequestHeader::decode(&request.ext_fields)?;
                if let Some(id) = header.broker_id.and_then(id_of) {
                    let info = LiveInfo {
                        addr: header.broker_addr.clone(),
                        conn,
                        last_seen: now,
                        timeout_ms: header
                            .heartbeat_timeout_mills
                            .and_then(|t| u64::try_from(t).ok())
                            .unwrap_or(self.config.heartbeat_timeout_ms),
                        epoch: header.epoch.unwrap_or(0),
                        max_offset: header.max_offset.unwrap_or(0),
                        confirm_offset: header.confirm_offset.unwrap_or(0),
                        priority: header.election_priority.unwrap_or(0),
                    };
                    self.live.heard(&header.broker_name, id, info);
                }
                // Keel's extension: the answer names the set's master and carries its
                // SyncStateSet, so a master learns at once that it was deposed, its lease
                // runs only while it is named, and it learns the members even when the
                // answer to its own change was lost.
                Decision::Reply(match self.table.get(&header.broker_name) {
                    Some(set) => {
                        with_header(ok(request), &master_info(set, true)).with_body(sync_state_body(set))
                    }
                    None => ok(request),
                })
            }
            RequestCode::CONTROLLER_GET_NEXT_BROKER_ID => {
                let mut header = GetNextBrokerIdHeader::decode(&request.ext_fields)?;
                header.next_broker_id = Some(signed(self.table.next_id(&header.broker_name)));
                Decision::Reply(with_header(ok(request), &header))
            }
            RequestCode::CONTROLLER_APPLY_BROKER_ID => {
                let header = ApplyBrokerIdRequestHeader::decode(&request.ext_fields)?;
                let addr = header.register_check_code.split(';').next().unwrap_or_default().to_owned();
                let invalid = |why: String| {
                    Decision::Reply(reply(request, ResponseCode::CONTROLLER_BROKER_ID_INVALID, why))
                };
                let Some(id) = id_of(header.applied_broker_id).filter(|id| *id >= FIRST_BROKER_ID) else {
                    return Ok(invalid(format!("broker id {} is not a valid id", header.applied_broker_id)));
                };
                let taken = self.table.get(&header.broker_name).and_then(|set| set.replicas.get(&id));
                match (self.table.get(&header.broker_name), taken) {
                    (None, _) if id != FIRST_BROKER_ID => invalid(format!(
                        "broker set {} is not registered: its first broker must apply for id {FIRST_BROKER_ID}, not {id}",
                        header.broker_name
                    )),
                    (_, Some(replica)) if replica.check_code != header.register_check_code => {
                        invalid(format!("broker id {id} of {} belongs to another broker", header.broker_name))
                    }
                    _ => Decision::Commit(Event::ApplyBrokerId {
                        cluster: header.cluster_name,
                        broker_name: header.broker_name,
                        id,
                        addr,
                        check_code: header.register_check_code,
                    }),
                }
            }
            RequestCode::CONTROLLER_REGISTER_BROKER => {
                let header = RegisterBrokerToControllerRequestHeader::decode(&request.ext_fields)?;
                let id = id_of(header.broker_id);
                let known = self
                    .table
                    .get(&header.broker_name)
                    .zip(id)
                    .filter(|(set, id)| set.replicas.contains_key(id));
                let Some((set, id)) = known else {
                    return Ok(Decision::Reply(reply(
                        request,
                        ResponseCode::CONTROLLER_BROKER_NEED_TO_BE_REGISTERED,
                        format!(
                            "broker {} of {} has no id here: apply for one first",
                            header.broker_id, header.broker_name
                        ),
                    )));
                };
                let replica = set.replicas.get(&id);
                let moved =
                    replica.is_none_or(|r| r.addr != header.broker_address || r.ha_addr != header.ha_address);
                self.heard(now, conn, &header.broker_name, id, &header.broker_address);
                if moved {
                    Decision::Commit(Event::UpdateAddress {
                        broker_name: header.broker_name,
                        id,
                        addr: header.broker_address,
                        ha_addr: header.ha_address,
                    })
                } else {
                    Decision::Reply(self.answer_registered(request, &header.broker_name, now))
                }
            }
            RequestCode::CONTROLLER_GET_REPLICA_INFO => {
                let header = GetReplicaInfoRequestHeader::decode(&request.ext_fields)?;
                Decision::Reply(match self.table.get(&header.broker_name) {
                    Some(set) => {
                        let info = master_info(set, true);
                        with_header(ok(request), &info).with_body(sync_state_body(set))
                    }
                    None => reply(
                        request,
                        ResponseCode::CONTROLLER_BROKER_METADATA_NOT_EXIST,
                        format!("no broker set {}", header.broker_name),
                    ),
                })
            }
            RequestCode::CONTROLLER_ELECT_MASTER => self.decide_election(now, request)?,
            RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET => self.decide_alter(now, request)?,
            RequestCode::CONTROLLER_GET_SYNC_STATE_DATA => {
                let names: Vec<String> = json::from_slice(&request.body).unwrap_or_default();
                Decision::Reply(
                    ok(request)
                        .with_body(json::to_body(&self.sync_state_data(&names, now), KeyStyle::Fastjson)),
                )
            }
            RequestCode::CLEAN_BROKER_DATA => self.decide_clean(now, request)?,
            _ => Decision::NotMine,
        })
    }

    fn answer_registered(
        &self,
        request: &RemotingCommand,
        broker_name: &str,
        now: MonoNanos,
    ) -> RemotingCommand {
        let Some(set) = self.table.get(broker_name) else {
            return reply(
                request,
                ResponseCode::CONTROLLER_BROKER_NEED_TO_BE_REGISTERED,
                format!("no broker set {broker_name}"),
            );
        };
        let alive = self.master_alive(broker_name, set, now);
        with_header(reply(request, ResponseCode::SUCCESS, None), &master_info(set, alive))
            .with_body(sync_state_body(set))
    }

    fn decide_election(&self, now: MonoNanos, request: &RemotingCommand) -> Result<Decision, HeaderError> {
        let header = ElectMasterRequestHeader::decode(&request.ext_fields)?;
        let Some(set) = self.table.get(&header.broker_name) else {
            return Ok(Decision::Reply(reply(
                request,
                ResponseCode::CONTROLLER_BROKER_NEED_TO_BE_REGISTERED,
                format!("broker set {} is not registered", header.broker_name),
            )));
        };
        let asker = header.broker_id.and_then(id_of).filter(|id| set.replicas.contains_key(id));
        let designated = header.designate_elect == Some(true);
        let chosen = if !designated && now < self.judge_from && set.master.is_some() {
            // Not heard long enough to call the master gone: it stays.
            set.master
        } else if set.master_epoch == 0 && asker.is_some() {
            // A set's first election: whoever asks first is master.
            asker
        } else {
            let designated = asker.filter(|_| designated);
            let policy = self.policy(designated);
            elect(&header.broker_name, set, &self.live, now, policy)
        };
        Ok(match chosen {
            Some(master) if set.master == Some(master) => {
                let info = master_info(set, true);
                let remark = format!("the master {master} of {} is alive and stays", header.broker_name);
                let mut answer =
                    with_header(reply(request, ResponseCode::CONTROLLER_MASTER_STILL_EXIST, remark), &info);
                answer.body = json::to_body(&elect_body(&header.broker_name, set), KeyStyle::Fastjson).into();
                Decision::Reply(answer)
            }
            Some(master) => Decision::Commit(Event::ElectMaster {
                broker_name: header.broker_name,
                master: Some(master),
                master_epoch: set.master_epoch,
            }),
            // Asked by nobody in particular (a tool, or the scan): record that the master is
            // gone, which fences it.
            None if asker.is_none() && set.master.is_some() => Decision::Commit(Event::ElectMaster {
                broker_name: header.broker_name,
                master: None,
                master_epoch: set.master_epoch,
            }),
            None => Decision::Reply(reply(
                request,
                ResponseCode::CONTROLLER_ELECT_MASTER_FAILED,
                format!("no replica of {} qualifies to be master", header.broker_name),
            )),
        })
    }

    fn decide_alter(&self, now: MonoNanos, request: &RemotingCommand) -> Result<Decision, HeaderError> {
        let header = AlterSyncStateSetRequestHeader::decode(&request.ext_fields)?;
        let refuse = |code, why: String| Ok(Decision::Reply(reply(request, code, why)));
        let Ok(proposed) = json::from_slice::<SyncStateSet>(&request.body) else {
            return refuse(ResponseCode::CONTROLLER_INVALID_REQUEST, "the body is not a SyncStateSet".into());
        };
        let Some(set) = self.table.get(&header.broker_name) else {
            return refuse(
                ResponseCode::CONTROLLER_ALTER_SYNC_STATE_SET_FAILED,
                format!("no broker set {}", header.broker_name),
            );
        };
        let members: Option<BTreeSet<u64>> = proposed.sync_state_set.iter().map(|id| id_of(*id)).collect();
        let Some(members) = members else {
            return refuse(ResponseCode::CONTROLLER_INVALID_REPLICAS, "a negative broker id".into());
        };
        if members == set.sync_state_set {
            return refuse(
                ResponseCode::CONTROLLER_ALTER_SYNC_STATE_SET_FAILED,
                "the SyncStateSet is unchanged".into(),
            );
        }
        if set.master.map(signed) != Some(header.master_broker_id) {
            return refuse(
                ResponseCode::CONTROLLER_INVALID_MASTER,
                format!("the master is {:?}, not {}", set.master, header.master_broker_id),
            );
        }
        if header.master_epoch != set.master_epoch {
            return refuse(
                ResponseCode::CONTROLLER_FENCED_MASTER_EPOCH,
                format!("the master epoch is {}, not {}", set.master_epoch, header.master_epoch),
            );
        }
        if proposed.sync_state_set_epoch != set.sync_state_set_epoch {
            return refuse(
                ResponseCode::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH,
                format!(
                    "the SyncStateSet epoch is {}, not {}",
                    set.sync_state_set_epoch, proposed.sync_state_set_epoch
                ),
            );
        }
        for id in &members {
            if !set.replicas.contains_key(id) {
                return refuse(
                    ResponseCode::CONTROLLER_INVALID_REPLICAS,
                    format!("replica {id} is not registered"),
                );
            }
            if !self.live.is_alive(&header.broker_name, *id, now) {
                return refuse(
                    ResponseCode::CONTROLLER_BROKER_NOT_ALIVE,
                    format!("replica {id} is not alive"),
                );
            }
        }
        if !set.master.is_some_and(|m| members.contains(&m)) {
            return refuse(
                ResponseCode::CONTROLLER_ALTER_SYNC_STATE_SET_FAILED,
                "the master must stay in the set".into(),
            );
        }
        Ok(Decision::Commit(Event::AlterSyncStateSet {
            broker_name: header.broker_name,
            members,
            master_epoch: set.master_epoch,
            sync_state_set_epoch: set.sync_state_set_epoch,
        }))
    }

    fn decide_clean(&self, now: MonoNanos, request: &RemotingCommand) -> Result<Decision, HeaderError> {
        let header = CleanControllerBrokerDataRequestHeader::decode(&request.ext_fields)?;
        let refuse = |why: String| {
            Ok(Decision::Reply(reply(request, ResponseCode::CONTROLLER_INVALID_CLEAN_BROKER_METADATA, why)))
        };
        let Some(set) = self.table.get(&header.broker_name) else {
            return refuse(format!("no broker set {}", header.broker_name));
        };
        let ids: Option<BTreeSet<u64>> =
            match header.broker_controller_ids_to_clean.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(list) => {
                    match list.split(';').map(|id| id.trim().parse::<u64>()).collect::<Result<_, _>>() {
                        Ok(ids) => Some(ids),
                        Err(_) => {
                            return refuse(format!(
                                "brokerControllerIdsToClean must be ids separated by ';', not {list}"
                            ))
                        }
                    }
                }
            };
        if header.clean_living_broker != Some(true) {
            let named: Vec<u64> = ids
                .clone()
                .map_or_else(|| set.replicas.keys().copied().collect(), |ids| ids.into_iter().collect());
            if let Some(alive) = named.iter().find(|id| self.live.is_alive(&header.broker_name, **id, now)) {
                return refuse(format!("broker {alive} of {} is alive", header.broker_name));
            }
        }
        Ok(Decision::Commit(Event::CleanBrokerData { broker_name: header.broker_name, ids }))
    }

    /// The reply to `request` once `event`, decided from it, was committed and applied
    /// (`applied` false: fenced by a change committed before it).
    #[must_use]
    pub fn answer_committed(
        &self,
        now: Now,
        request: &RemotingCommand,
        event: &Event,
        applied: bool,
    ) -> RemotingCommand {
        let broker_name = event.broker_name();
        let set = self.table.get(broker_name);
        match (event, set) {
            (Event::UpdateAddress { .. }, _) => self.answer_registered(request, broker_name, now.mono),
            (Event::ApplyBrokerId { id, .. }, _) if !applied => reply(
                request,
                ResponseCode::CONTROLLER_BROKER_ID_INVALID,
                format!("broker id {id} of {broker_name} was taken meanwhile"),
            ),
            (Event::ApplyBrokerId { .. }, _) | (Event::CleanBrokerData { .. }, _) => {
                reply(request, ResponseCode::SUCCESS, None)
            }
            (Event::ElectMaster { master: Some(_), .. }, Some(set)) if applied => {
                with_header(reply(request, ResponseCode::SUCCESS, None), &master_info(set, true))
                    .with_body(json::to_body(&elect_body(broker_name, set), KeyStyle::Fastjson))
            }
            (Event::ElectMaster { master: None, .. }, _) if applied => reply(
                request,
                ResponseCode::CONTROLLER_MASTER_NOT_AVAILABLE,
                format!("the master of {broker_name} is gone and no replica qualifies to follow it"),
            ),
            (Event::AlterSyncStateSet { .. }, Some(set)) if applied => {
                let header =
                    AlterSyncStateSetResponseHeader { new_sync_state_set_epoch: set.sync_state_set_epoch };
                with_header(reply(request, ResponseCode::SUCCESS, None), &header)
                    .with_body(sync_state_body(set))
            }
            (Event::AlterSyncStateSet { .. }, _) => reply(
                request,
                ResponseCode::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH,
                format!("the SyncStateSet of {broker_name} changed meanwhile"),
            ),
            (Event::ElectMaster { .. }, _) => reply(
                request,
                ResponseCode::CONTROLLER_FENCED_MASTER_EPOCH,
                format!("another election for {broker_name} was committed first"),
            ),
        }
    }

    /// Elections due: each set whose master is not heard while another replica is, decided
    /// as an election asked by nobody (RocketMQ's `scanNeedReelectBrokerSets`).
    #[must_use]
    pub fn elections_due(&self, now: MonoNanos) -> Vec<Event> {
        let mut due = Vec::new();
        for (name, set) in self.table.iter() {
            let Some(master) = set.master else { continue };
            if now < self.judge_from
                || self.live.is_alive(name, master, now)
                || !set.replicas.keys().any(|id| self.live.is_alive(name, *id, now))
            {
                continue;
            }
            let policy = self.policy(None);
            let chosen = elect(name, set, &self.live, now, policy);
            due.push(Event::ElectMaster {
                broker_name: name.to_owned(),
                master: chosen,
                master_epoch: set.master_epoch,
            });
        }
        due
    }

    /// What NOTIFY_BROKER_ROLE_CHANGED tells a set's brokers after an election, and where
    /// to send it: each alive broker's connection.
    #[must_use]
    pub fn role_change_notices(&self, broker_name: &str, now: MonoNanos) -> Vec<(ConnId, RemotingCommand)> {
        let Some(set) = self.table.get(broker_name) else { return Vec::new() };
        let header = master_info(set, true);
        set.replicas
            .keys()
            .filter_map(|id| {
                self.live.get(broker_name, *id).filter(|_| self.live.is_alive(broker_name, *id, now))
            })
            .map(|info| {
                let notice = RemotingCommand::request(
                    RequestCode::NOTIFY_BROKER_ROLE_CHANGED,
                    0,
                    header.to_ext_fields(),
                )
                .with_body(sync_state_body(set));
                (info.conn, notice)
            })
            .collect()
    }

    /// CONTROLLER_GET_SYNC_STATE_DATA: the named sets (every set when none is named).
    #[must_use]
    pub fn sync_state_data(&self, names: &[String], now: MonoNanos) -> BrokerReplicasInfo {
        let mut info = BrokerReplicasInfo::default();
        for (name, set) in
            self.table.iter().filter(|(name, _)| names.is_empty() || names.iter().any(|n| n == name))
        {
            let identity = |id: u64| ReplicaIdentity {
                broker_name: name.to_owned(),
                broker_id: signed(id),
                broker_address: set.addr(id).unwrap_or_default().to_owned(),
                alive: self.live.is_alive(name, id, now),
            };
            let (in_sync, not_in_sync): (Vec<u64>, Vec<u64>) =
                set.replicas.keys().copied().partition(|id| set.sync_state_set.contains(id));
            info.replicas_info_table.insert(
                name.to_owned(),
                ReplicasInfo {
                    master_broker_id: set.master.map(signed),
                    master_address: set.master_addr().map(str::to_owned),
                    master_epoch: set.master_epoch,
                    sync_state_set_epoch: set.sync_state_set_epoch,
                    in_sync_replicas: in_sync.into_iter().map(identity).collect(),
                    not_in_sync_replicas: not_in_sync.into_iter().map(identity).collect(),
                },
            );
        }
        info
    }
}

fn elect_body(broker_name: &str, set: &BrokerSet) -> ElectMasterResponseBody {
    ElectMasterResponseBody {
        broker_member_group: Some(BrokerMemberGroup {
            cluster: set.cluster.clone(),
            broker_name: broker_name.to_owned(),
            broker_addrs: set
                .replicas
                .iter()
                .map(|(id, replica)| (signed(*id), replica.addr.clone()))
                .collect(),
        }),
        sync_state_set: set.sync_state_set.iter().copied().map(signed).collect(),
    }
}
