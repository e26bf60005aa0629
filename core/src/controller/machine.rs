//! The controller as a sans-IO machine: brokers and tools connect, requests are decided by
//! [`ControllerState`], and the events they become are committed — here by a single
//! controller, which commits as it decides — and applied in order. After an election is
//! applied, every alive broker of the set is told (NOTIFY_BROKER_ROLE_CHANGED, oneway, on
//! the connection it heartbeats on; brokers also ask, so a lost notice only delays them).
//! Every `scan_interval_ms` the controller elects for sets whose master went unheard.
//!
//! The same [`ControllerCore`] serves a name server with `enableControllerInNamesrv` and the
//! `mqcontroller` binary ([`Controller`]).

use std::collections::VecDeque;

use super::replicas::Event;
use super::state::{ControllerConfig, ControllerState, Decision};
use crate::io::{ConnId, Input, Machine, MonoNanos, Now, Output};
use crate::protocol::command::FLAG_ONEWAY;
use crate::protocol::{RemotingCommand, DEFAULT_MAX_FRAME_LEN};
use crate::remoting::{self, ConnectionTable, Received};

/// The controller's logic without its connections: what a name server embeds.
#[derive(Debug)]
pub struct ControllerCore {
    config: ControllerConfig,
    state: ControllerState,
    /// When the next scan for dead masters is due.
    next_scan: Option<MonoNanos>,
    /// No master is called dead before this: brokers have had a heartbeat timeout to be
    /// heard since this controller started.
    judge_from: Option<MonoNanos>,
}

impl ControllerCore {
    /// A controller with no broker sets yet.
    #[must_use]
    pub fn new(config: ControllerConfig) -> Self {
        Self { config, state: ControllerState::new(config), next_scan: None, judge_from: None }
    }

    /// The state (for tests and admin views).
    #[must_use]
    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    fn started(&mut self, now: MonoNanos) {
        if self.next_scan.is_none() {
            self.next_scan = Some(now.plus_millis(self.config.scan_interval_ms));
            self.judge_from = Some(now.plus_millis(self.config.heartbeat_timeout_ms));
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
        match self.state.decide(now, conn, request) {
            Decision::NotMine => false,
            Decision::Reply(reply) => {
                remoting::reply(out, conn, request, &reply);
                true
            }
            Decision::Commit(event) => {
                let applied = self.commit(now, &event, out);
                let reply = self.state.answer_committed(now, request, &event, applied);
                remoting::reply(out, conn, request, &reply);
                true
            }
        }
    }

    /// Apply a committed event, and tell the set's brokers about a new master.
    fn commit(&mut self, now: Now, event: &Event, out: &mut VecDeque<Output>) -> bool {
        let applied = self.state.apply(event);
        match event {
            Event::ElectMaster { broker_name, master, .. } if applied => {
                let set = self.state.table().get(broker_name);
                tracing::warn!(
                    broker_name = %broker_name,
                    master = ?master,
                    master_epoch = set.map_or(0, |s| s.master_epoch),
                    "new master elected"
                );
                if master.is_some() {
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

    /// A connection closed.
    pub fn connection_closed(&mut self, conn: ConnId) {
        self.state.connection_closed(conn);
    }

    /// When the next scan is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        self.next_scan
    }

    /// Scan for dead masters when due.
    pub fn handle_timeout(&mut self, now: Now, out: &mut VecDeque<Output>) {
        self.started(now.mono);
        if self.next_scan.is_some_and(|at| now.mono >= at) {
            self.next_scan = Some(now.mono.plus_millis(self.config.scan_interval_ms));
            if self.judge_from.is_some_and(|from| now.mono >= from) {
                for event in self.state.elections_due(now.mono) {
                    self.commit(now, &event, out);
                }
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
    /// A controller with no broker sets yet.
    #[must_use]
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            conns: ConnectionTable::new(DEFAULT_MAX_FRAME_LEN, 10_000),
            core: ControllerCore::new(config),
            out: VecDeque::new(),
        }
    }

    /// The logic.
    #[must_use]
    pub fn core(&self) -> &ControllerCore {
        &self.core
    }
}

impl Machine for Controller {
    fn handle(&mut self, now: Now, input: Input) {
        match input {
            Input::ConnOpened { conn, peer, .. } => {
                self.conns.open(conn, peer, &mut self.out);
            }
            Input::ConnClosed { conn } => {
                self.conns.close(conn);
                self.core.connection_closed(conn);
            }
            Input::Bytes { conn, data, .. } => {
                for received in self.conns.feed(conn, &data, &mut self.out) {
                    match received {
                        Received::Command(cmd) if cmd.is_response() => {
                            tracing::debug!(?conn, opaque = cmd.opaque, "ignoring a response");
                        }
                        Received::Command(cmd) => {
                            if !self.core.on_request(now, conn, &cmd, &mut self.out) {
                                remoting::reply(&mut self.out, conn, &cmd, &remoting::not_supported(&cmd));
                            }
                        }
                        Received::Closed(_) => self.core.connection_closed(conn),
                    }
                }
            }
            Input::DiskDone { io, .. } => {
                tracing::warn!(?io, "controller got a disk completion it never asked for")
            }
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
