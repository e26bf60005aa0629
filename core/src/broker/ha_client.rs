//! Replication, the slave's side (RocketMQ's HAClient): one connection to the master's
//! replication port, over which a [`MasterLink`] appends the master's CommitLog to this
//! broker's store and reports how far it got.
//!
//! The master's address is `haMasterAddress` when set, else the `haServerAddr` the name
//! servers name in their replies to REGISTER_BROKER. A failed or lost connection is dialled
//! again after `reconnect_ms`; a new address learned drops the old connection at once. The
//! link is dialled only once the store is ready, and a store rebuilt in place after a disk
//! error starts a new one from its new end.

use core::net::SocketAddr;

use super::shared::Shared;
use crate::ha::{ByteRate, HaConfig, HaError, MasterLink};
use crate::io::{CloseReason, ConnId, ConnKind, MonoNanos, Now, Output, UnixMillis};
use crate::protocol::body::HaClientRuntimeInfo;

#[derive(Debug)]
enum LinkState {
    /// No master address known yet.
    NoMaster,
    /// Waiting to dial at this time (or once the store is ready, if later).
    ExpectRedial(MonoNanos),
    /// Dialling under this id.
    ExpectConnected(ConnId),
    /// Streaming from the master.
    Open(ConnId, MasterLink),
}

/// A slave's link to its master; inactive on a master.
#[derive(Debug)]
pub(super) struct HaClient {
    config: HaConfig,
    active: bool,
    /// `haMasterAddress`, which wins over what the name servers say.
    configured: Option<SocketAddr>,
    /// The master's replication address as the name servers last named it.
    learned: Option<SocketAddr>,
    /// Where the current connection goes.
    dialled: Option<SocketAddr>,
    state: LinkState,
    /// Bytes received from the master per second, and when it last sent or was reported to
    /// (for `mqadmin haStatus`).
    received: ByteRate,
    last_read: UnixMillis,
    last_write: UnixMillis,
    /// This broker's id in its set.
    identity: i64,
}

impl HaClient {
    /// A link for a broker of `role`, dialled at once when `configured` names the master.
    pub(super) fn new(
        config: HaConfig,
        active: bool,
        configured: Option<SocketAddr>,
        identity: i64,
        now: MonoNanos,
    ) -> Self {
        let state = if configured.is_some() { LinkState::ExpectRedial(now) } else { LinkState::NoMaster };
        Self {
            config,
            active,
            configured,
            learned: None,
            dialled: None,
            state,
            received: ByteRate::default(),
            last_read: UnixMillis(0),
            last_write: UnixMillis(0),
            identity,
        }
    }

    /// Follow a master (a broker turned slave: `master` is its replication address if known,
    /// else the name servers' word is awaited), or stop (turned master: the link is closed).
    pub(super) fn set_active(
        &mut self,
        shared: &mut Shared,
        now: Now,
        active: bool,
        master: Option<SocketAddr>,
    ) {
        if let LinkState::ExpectConnected(conn) | LinkState::Open(conn, _) = self.state {
            let reason = CloseReason("this broker's role changed".into());
            shared.out.push_back(Output::Close { conn, reason });
        }
        self.active = active;
        // A master named by a controller wins over a configured one.
        if master.is_some() {
            self.configured = None;
        }
        self.learned = if active { master } else { None };
        self.dialled = None;
        self.state = if active && self.master_addr().is_some() {
            LinkState::ExpectRedial(now.mono)
        } else {
            LinkState::NoMaster
        };
    }

    /// Whether the link follows `addr`.
    pub(super) fn follows(&self, addr: SocketAddr) -> bool {
        self.active && self.master_addr() == Some(addr)
    }

    fn master_addr(&self) -> Option<SocketAddr> {
        self.configured.or(self.learned)
    }

    /// Whether `conn` is the link's connection (open or being dialled).
    pub(super) fn owns(&self, conn: ConnId) -> bool {
        matches!(self.state, LinkState::ExpectConnected(c) | LinkState::Open(c, _) if c == conn)
    }

    /// A name server named the master's replication address: follow it unless
    /// `haMasterAddress` is set.
    pub(super) fn learned(&mut self, shared: &mut Shared, now: Now, addr: SocketAddr) {
        if !self.active || self.configured.is_some() || self.learned == Some(addr) {
            return;
        }
        tracing::info!(master = %addr, "the name server names the master's replication address");
        self.learned = Some(addr);
        match self.state {
            LinkState::NoMaster => self.state = LinkState::ExpectRedial(now.mono),
            LinkState::ExpectRedial(_) => {}
            LinkState::ExpectConnected(conn) | LinkState::Open(conn, _) => {
                let reason = CloseReason("the master's replication address changed".into());
                shared.out.push_back(Output::Close { conn, reason });
                self.state = LinkState::ExpectRedial(now.mono);
            }
        }
    }

    /// The dialled connection opened: report where this log ends.
    pub(super) fn opened(&mut self, shared: &mut Shared, now: Now, conn: ConnId) {
        if !matches!(self.state, LinkState::ExpectConnected(c) if c == conn) {
            let reason = CloseReason("not a replication link this broker dialled".into());
            shared.out.push_back(Output::Close { conn, reason });
            return;
        }
        // In controller mode the master is told who this slave is (for its SyncStateSet).
        let identity = shared.config.in_controller_mode().then_some(self.identity);
        let (link, hello) = MasterLink::new(now.mono, &shared.store, identity);
        tracing::info!(
            master = ?self.dialled,
            end = shared.store.write_pos().0,
            "replication link to the master open"
        );
        shared.out.push_back(Output::Send { conn, data: hello });
        self.last_write = now.wall;
        self.state = LinkState::Open(conn, link);
    }

    /// The connection closed, or could not be opened: dial again after the pause.
    pub(super) fn closed(&mut self, now: Now, conn: ConnId) {
        if self.owns(conn) {
            tracing::warn!(master = ?self.dialled, retry_in_ms = self.config.reconnect_ms, "replication link to the master lost");
            self.state = LinkState::ExpectRedial(now.mono.plus_millis(self.config.reconnect_ms));
        }
    }

    /// Bytes from the master.
    pub(super) fn on_bytes(&mut self, shared: &mut Shared, now: Now, conn: ConnId, data: &[u8]) {
        let LinkState::Open(open, link) = &mut self.state else { return };
        if *open != conn {
            return;
        }
        self.received.record(now.mono, data.len() as u64);
        self.last_read = now.wall;
        match link.on_bytes(now.mono, data, &mut shared.store, &shared.epochs) {
            Ok(()) => {}
            // Cut back to where the two logs agree; or, behind the master's retention, to
            // nothing (the master streams an empty slave from its newest segment). A log
            // that agrees with the master's by epochs yet cannot take its next record (its
            // queues disagree) starts over the same way rather than stay stuck.
            Err(
                error @ (HaError::CutBack { .. }
                | HaError::BehindRetention { .. }
                | HaError::Store(crate::store::StoreError::Diverged { .. })),
            ) => {
                let to = match error {
                    HaError::CutBack { to } => to,
                    HaError::Store(_) => {
                        tracing::error!(%error, "this slave's log cannot continue its master's: copying it anew");
                        shared.stats.replica_copied_anew += 1;
                        crate::store::PhysOffset(0)
                    }
                    _ => crate::store::PhysOffset(0),
                };
                // The link is closed and dialled again once the store is rebuilt.
                if let Err(error) = shared.store.cut_back_replica(now, to) {
                    tracing::warn!(%error, "cannot cut the log back now; trying again later");
                }
                let conn = *open;
                let reason = CloseReason(error.to_string());
                shared.out.push_back(Output::Close { conn, reason });
                self.state = LinkState::ExpectRedial(now.mono.plus_millis(self.config.reconnect_ms));
                return;
            }
            Err(error) => return self.drop_link(shared, now, &error),
        }
        if let Some(history) = link.take_adopted().filter(|history| *history != shared.epochs) {
            tracing::info!(epoch = history.current().epoch, "following the master's epochs");
            shared.epochs = history;
            shared.metadata.epochs.mark_dirty();
        }
    }

    /// Dial when due and the store is ready; report to the master when there is news or a
    /// heartbeat is due.
    pub(super) fn pump(&mut self, shared: &mut Shared, now: Now) {
        if !self.active {
            return;
        }
        match &mut self.state {
            LinkState::ExpectRedial(at) if now.mono >= *at && shared.store.is_ready() => {
                let Some(addr) = self.master_addr() else { return };
                let conn = shared.dial_id();
                self.dialled = Some(addr);
                self.state = LinkState::ExpectConnected(conn);
                shared.out.push_back(Output::Connect { conn, addr, kind: ConnKind::Replication });
            }
            LinkState::Open(conn, link) => {
                let store = &shared.store;
                // The disk behind by more than a send may be: hold the report back so the
                // master's window stops the stream, as sends are shed on a master.
                let backlogged =
                    store.write_pos().bytes_since(store.written_end()) > shared.config.max_unwritten_bytes;
                if let Some(data) = link.poll_transmit(now.mono, store, &self.config, backlogged) {
                    shared.out.push_back(Output::Send { conn: *conn, data });
                    self.last_write = now.wall;
                }
            }
            _ => {}
        }
    }

    /// When the link next needs a timeout: a dial due (once the store is ready, which an
    /// input announces), a heartbeat, or a silence check.
    pub(super) fn poll_timeout(&self, store_ready: bool) -> Option<MonoNanos> {
        match &self.state {
            LinkState::ExpectRedial(at) if self.active && store_ready => Some(*at),
            LinkState::Open(_, link) => Some(link.poll_timeout(&self.config)),
            _ => None,
        }
    }

    /// Drop a master silent too long; dials and heartbeats go out as the broker settles.
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, now: Now) {
        if let LinkState::Open(_, link) = &self.state {
            if let Err(error) = link.check_alive(now.mono, &self.config) {
                self.drop_link(shared, now, &error);
            }
        }
    }

    /// The store was rebuilt in place: what the link holds refers to the old one, so a new
    /// link reports the new end at once.
    pub(super) fn store_replaced(&mut self, shared: &mut Shared, now: Now) {
        if let LinkState::ExpectConnected(conn) | LinkState::Open(conn, _) = self.state {
            let reason = CloseReason("the store was rebuilt after a disk error".into());
            shared.out.push_back(Output::Close { conn, reason });
            self.state = LinkState::ExpectRedial(now.mono);
        }
    }

    /// The link as `mqadmin haStatus` shows a slave's.
    pub(super) fn runtime_info(&self, shared: &Shared, now: Now) -> HaClientRuntimeInfo {
        HaClientRuntimeInfo {
            master_addr: self.dialled.or(self.master_addr()).map(|a| a.to_string()).unwrap_or_default(),
            transferred_byte_in_second: crate::protocol::wire_long(self.received.per_second(now.mono)),
            max_offset: crate::protocol::wire_long(shared.store.write_pos().0),
            last_read_timestamp: self.last_read.0,
            last_write_timestamp: self.last_write.0,
            master_flush_offset: 0,
            activated: matches!(self.state, LinkState::Open(..)),
        }
    }

    fn drop_link(&mut self, shared: &mut Shared, now: Now, error: &HaError) {
        let LinkState::Open(conn, _) = self.state else { return };
        tracing::warn!(master = ?self.dialled, %error, retry_in_ms = self.config.reconnect_ms, "closing the replication link to the master");
        shared.out.push_back(Output::Close { conn, reason: CloseReason(error.to_string()) });
        self.state = LinkState::ExpectRedial(now.mono.plus_millis(self.config.reconnect_ms));
    }
}
