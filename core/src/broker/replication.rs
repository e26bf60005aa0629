//! Replication, the master's side: every slave connected on the replication port
//! (`haListenPort`) has a [`SlaveSession`] that streams it this broker's CommitLog.
//!
//! After every input the broker settles, each session sends what it may (a batch within its
//! window, or a heartbeat when one is due). A session whose slave breaks the stream, is
//! ahead of this log, lacks what retention deleted, or stays silent for the housekeeping
//! interval is closed with the reason logged; the slave reconnects and reports again.

use std::collections::BTreeMap;

use super::shared::Shared;
use crate::ha::{HaConfig, HaError, SlaveSession};
use crate::io::{CloseReason, ConnId, MonoNanos, Now, Output};

/// Most slaves streaming at once: a set has a few; more connections on the replication
/// port are refused rather than each given a stream.
const MAX_SLAVES: usize = 16;

/// The slaves streaming from this broker.
#[derive(Debug)]
pub(super) struct Replication {
    config: HaConfig,
    sessions: BTreeMap<ConnId, SlaveSession>,
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
    pub(super) fn opened(&mut self, shared: &mut Shared, now: Now, conn: ConnId) {
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
        self.sessions.insert(conn, SlaveSession::new(now.mono));
    }

    /// A slave's connection is gone.
    pub(super) fn closed(&mut self, conn: ConnId) {
        self.sessions.remove(&conn);
    }

    /// Bytes from a slave.
    pub(super) fn on_bytes(&mut self, shared: &mut Shared, now: Now, conn: ConnId, data: &[u8]) {
        let Some(session) = self.sessions.get_mut(&conn) else { return };
        if let Err(error) = session.on_bytes(now.mono, data, &shared.store) {
            self.drop_slave(shared, conn, &error);
        }
    }

    /// Send each slave what it may have now.
    pub(super) fn pump(&mut self, shared: &mut Shared, now: Now) {
        let mut broken = Vec::new();
        for (&conn, session) in &mut self.sessions {
            loop {
                match session.poll_transmit(now.mono, &shared.store, &*shared.reader, &self.config) {
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
    }

    /// When a session next needs a timeout (a heartbeat or a silence check).
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        self.sessions.values().map(|session| session.poll_timeout(&self.config)).min()
    }

    /// Drop the slaves silent too long; heartbeats go out as the broker settles.
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, now: Now) {
        let silent: Vec<(ConnId, HaError)> = self
            .sessions
            .iter()
            .filter_map(|(&conn, session)| {
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
        shared.out.push_back(Output::Close { conn, reason: CloseReason(error.to_string()) });
    }
}
