//! Replication, the master's side: every slave connected on the replication port
//! (`haListenPort`) has a [`SlaveSession`] that streams it this broker's CommitLog.
//!
//! After every input the broker settles, each session sends what it may (a batch within its
//! window, or a heartbeat when one is due). A session whose slave breaks the stream, is
//! ahead of this log, lacks what retention deleted, or stays silent for the housekeeping
//! interval is closed with the reason logged; the slave reconnects and reports again.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet};

use super::shared::Shared;
use crate::ha::{HaConfig, HaError, SlaveSession};
use crate::io::{CloseReason, ConnId, MonoNanos, Now, Output};
use crate::protocol::body::{
    EpochEntryCache, EpochRange, HaClientRuntimeInfo, HaConnectionRuntimeInfo, HaRuntimeInfo,
};
use crate::protocol::wire_long;
use crate::store::PhysOffset;

/// Most slaves streaming at once: a set has a few; more connections on the replication
/// port are refused rather than each given a stream.
const MAX_SLAVES: usize = 16;

/// The slaves streaming from this broker.
#[derive(Debug)]
pub(super) struct Replication {
    config: HaConfig,
    /// Each slave's session, with its address (for `mqadmin haStatus`).
    sessions: BTreeMap<ConnId, (SlaveSession, SocketAddr)>,
}

impl Replication {
    /// No slaves yet.
    pub(super) fn new(config: HaConfig) -> Self {
        Self { config, sessions: BTreeMap::new() }
    }

    /// Whether `conn` is a slave's connection.
    pub(super) fn owns(&self, conn: ConnId) -> bool {
        self.sessions.contains_key(&conn)
    }

    /// A slave connected.
    pub(super) fn opened(&mut self, shared: &mut Shared, now: Now, conn: ConnId, peer: SocketAddr) {
        // A slave has no log of its own to serve: one that dialled it took it for the master
        // (a role change not yet heard of) and dials again.
        if shared.config.role.is_slave() {
            tracing::info!(?conn, %peer, "replication connection refused: this broker is not a master");
            let reason = CloseReason("this broker is not a master".into());
            shared.out.push_back(Output::Close { conn, reason });
            return;
        }
        if self.sessions.len() >= MAX_SLAVES {
            tracing::warn!(
                ?conn,
                slaves = self.sessions.len(),
                "replication connection refused: too many slaves"
            );
            let reason = CloseReason(format!("more than {MAX_SLAVES} slaves"));
            shared.out.push_back(Output::Close { conn, reason });
            return;
        }
        self.sessions.insert(conn, (SlaveSession::new(now.mono), peer));
    }

    /// The ids of the slaves in sync (controller mode): each caught up with this log within
    /// `max_lag_ms` (RocketMQ's `haMaxTimeSlaveNotCatchup`) and still streaming.
    pub(super) fn in_sync_ids(&self, now: Now, max_lag_ms: u64) -> BTreeSet<i64> {
        self.streaming()
            .map(|(session, _)| session)
            .filter(|session| {
                session.caught_up_at().is_some_and(|at| now.mono.millis_since(at) <= max_lag_ms)
            })
            .filter_map(SlaveSession::slave_id)
            .collect()
    }

    /// GET_BROKER_HA_STATUS: a master's slaves, or a slave's link to its master.
    pub(super) fn ha_status(
        &self,
        shared: &Shared,
        client: &super::ha_client::HaClient,
        now: Now,
    ) -> HaRuntimeInfo {
        if shared.config.role.is_slave() {
            let client = client.runtime_info(shared, now);
            HaRuntimeInfo {
                master_commit_log_max_offset: client.max_offset,
                ha_client_runtime_info: client,
                ..HaRuntimeInfo::default()
            }
        } else {
            self.runtime_info(shared, now)
        }
    }

    /// This master's slaves as `mqadmin haStatus` shows them (RocketMQ counts a slave in
    /// sync within `haMaxGapNotInSync` of the end).
    pub(super) fn runtime_info(&self, shared: &Shared, now: Now) -> HaRuntimeInfo {
        let end = shared.store.write_pos();
        let slaves: Vec<HaConnectionRuntimeInfo> = self
            .streaming()
            .map(|(session, peer)| {
                let diff = end.bytes_since(session.acked());
                HaConnectionRuntimeInfo {
                    addr: peer.to_string(),
                    slave_ack_offset: wire_long(session.acked().0),
                    diff: wire_long(diff),
                    in_sync: diff <= self.config.max_gap_not_in_sync,
                    transferred_byte_in_second: wire_long(session.bytes_per_second(now.mono)),
                    transfer_from_where: wire_long(session.streamed_from().map_or(0, |from| from.0)),
                }
            })
            .collect();
        HaRuntimeInfo {
            master: true,
            master_commit_log_max_offset: wire_long(end.0),
            in_sync_slave_nums: i32::try_from(slaves.iter().filter(|slave| slave.in_sync).count())
                .unwrap_or(i32::MAX),
            ha_connection_info: slaves,
            ha_client_runtime_info: HaClientRuntimeInfo::default(),
        }
    }

    /// Close every slave's connection (they connect again).
    pub(super) fn drop_all(&mut self, shared: &mut Shared, why: &str) {
        for conn in core::mem::take(&mut self.sessions).into_keys() {
            tracing::warn!(?conn, why, "closing a slave's replication connection");
            shared.out.push_back(Output::Close { conn, reason: CloseReason(why.to_owned()) });
        }
        self.publish_acked(shared);
    }

    /// A slave's connection is gone.
    pub(super) fn closed(&mut self, shared: &mut Shared, conn: ConnId) {
        self.sessions.remove(&conn);
        self.publish_acked(shared);
    }

    /// Bytes from a slave.
    pub(super) fn on_bytes(&mut self, shared: &mut Shared, now: Now, conn: ConnId, data: &[u8]) {
        let Some((session, _)) = self.sessions.get_mut(&conn) else { return };
        if let Err(error) = session.on_bytes(now.mono, data, &shared.store) {
            self.drop_slave(shared, conn, &error);
        }
        self.publish_acked(shared);
    }

    /// The sessions streaming (past their first report and this master's history), with
    /// their slaves' addresses.
    fn streaming(&self) -> impl Iterator<Item = (&SlaveSession, SocketAddr)> + Clone {
        self.sessions
            .values()
            .filter(|(session, _)| session.is_streaming())
            .map(|(session, peer)| (session, *peer))
    }

    /// The least any SyncStateSet member other than `me` holds (one not streaming holds
    /// nothing); `None` for a set of `me` alone.
    fn least_held<'a>(&self, members: impl Iterator<Item = &'a i64>, me: i64) -> Option<PhysOffset> {
        members.filter(|id| **id != me).map(|id| self.held_by(*id)).min()
    }

    /// How much of this log slave `id` holds: the newest end it reported while streaming
    /// (nothing if it does not stream).
    pub(super) fn held_by(&self, id: i64) -> PhysOffset {
        let held =
            self.streaming().map(|(session, _)| session).filter(|session| session.slave_id() == Some(id));
        held.map(SlaveSession::acked).max().unwrap_or(PhysOffset(0))
    }

    /// Tell the replies what the slaves hold: the furthest streaming slave's end; with
    /// `allAckInSyncStateSet` (controller mode), the least of every SyncStateSet member's
    /// (a member not streaming holds nothing; a set of the master alone holds everything).
    pub(super) fn publish_acked(&self, shared: &mut Shared) {
        let me = shared.replica_id;
        // Slaves about to join count as members already (see `Shared::sync_state_joining`);
        // one in both is counted twice, which changes no least.
        let joining = &shared.sync_state_joining;
        let counted = shared.sync_state_set.as_ref().map(|members| members.iter().chain(joining));
        shared.slave_acked = match counted.clone() {
            Some(members) if self.config.all_ack_in_sync_state_set => {
                self.least_held(members, me).or(Some(PhysOffset(u64::MAX)))
            }
            _ => self.streaming().map(|(session, _)| session.acked()).max(),
        };
        // Controller mode: queues serve only what every SyncStateSet member holds, and at
        // least what this master's epoch began with (its log when it was elected). Never
        // lowered within an epoch: a member that reconnects reports again from less.
        let limit = counted.filter(|_| !shared.config.role.is_slave()).map(|members| {
            let least = self.least_held(members, me).unwrap_or_else(|| shared.store.visible_end());
            let epoch = shared.epochs.current();
            let floor = match shared.confirmed {
                Some((at, confirmed)) if at == epoch.epoch => confirmed.max(PhysOffset(epoch.start)),
                _ => PhysOffset(epoch.start),
            };
            let confirmed = least.max(floor);
            shared.confirmed = Some((epoch.epoch, confirmed));
            confirmed
        });
        // A slave's limit is its master's word (the confirmed-offset frame).
        if !shared.config.role.is_slave() {
            shared.store.set_confirmed_limit(limit);
        }
    }

    /// Send each slave what it may have now.
    pub(super) fn pump(&mut self, shared: &mut Shared, now: Now) {
        let mut broken = Vec::new();
        // Slaves learn this master's history once it is durable, and nothing before it.
        let durable = shared.metadata.epochs.is_durable_through(shared.metadata.epochs.changes());
        let history = durable.then_some(&shared.epochs);
        let current = shared.epochs.current();
        for (&conn, (session, _)) in &mut self.sessions {
            if let Some(sent) = session.history_epoch().filter(|sent| *sent != current) {
                broken.push((conn, HaError::EpochChanged { sent: sent.epoch, now: current.epoch }));
                continue;
            }
            loop {
                match session.poll_transmit(now.mono, &shared.store, &*shared.reader, &self.config, history) {
                    Ok(Some(data)) => shared.out.push_back(Output::Send { conn, data }),
                    Ok(None) => break,
                    Err(error) => {
                        broken.push((conn, error));
                        break;
                    }
                }
            }
        }
        for (conn, error) in broken {
            self.drop_slave(shared, conn, &error);
        }
        // A slave counts once it has this master's history.
        self.publish_acked(shared);
    }

    /// When a session next needs a timeout (a heartbeat or a silence check).
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        self.sessions.values().map(|(session, _)| session.poll_timeout(&self.config)).min()
    }

    /// Drop the slaves silent too long; heartbeats go out as the broker settles.
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, now: Now) {
        let silent: Vec<(ConnId, HaError)> = self
            .sessions
            .iter()
            .filter_map(|(&conn, (session, _))| {
                session.check_alive(now.mono, &self.config).err().map(|e| (conn, e))
            })
            .collect();
        for (conn, error) in silent {
            self.drop_slave(shared, conn, &error);
        }
    }

    fn drop_slave(&mut self, shared: &mut Shared, conn: ConnId, error: &HaError) {
        tracing::warn!(?conn, %error, "closing a slave's replication connection");
        self.sessions.remove(&conn);
        self.publish_acked(shared);
        shared.out.push_back(Output::Close { conn, reason: CloseReason(error.to_string()) });
    }
}

/// GET_BROKER_EPOCH_CACHE (`mqadmin getBrokerEpoch`): this broker's epochs, each ending where
/// the next began (the newest at `i64::MAX`, as Java's), and its log end.
pub(super) fn epoch_cache(shared: &Shared) -> EpochEntryCache {
    let entries = shared.epochs.entries();
    let epoch_list = entries
        .iter()
        .enumerate()
        .map(|(at, entry)| EpochRange {
            epoch: i64::from(entry.epoch),
            start_offset: wire_long(entry.start),
            end_offset: entries.get(at + 1).map_or(i64::MAX, |next| wire_long(next.start)),
        })
        .collect();
    EpochEntryCache {
        cluster_name: shared.config.cluster_name.clone(),
        broker_name: shared.config.broker_name.clone(),
        broker_id: shared.replica_id,
        epoch_list,
        max_offset: wire_long(shared.store.write_pos().0),
    }
}
