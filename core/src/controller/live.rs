//! Which brokers are alive, as the controller last heard from them (BROKER_HEARTBEAT and
//! CONTROLLER_REGISTER_BROKER), with what elections are ordered by: the newest epoch in
//! each one's log, its CommitLog end and its election priority.
//!
//! Not replicated: each controller keeps its own from the heartbeats it receives, and only
//! the leader acts on it (a new leader waits a heartbeat timeout before it calls anyone
//! dead).

use std::collections::BTreeMap;

use crate::io::{ConnId, MonoNanos};

/// What a broker's last heartbeat said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInfo {
    /// Its remoting address.
    pub addr: String,
    /// The connection it last spoke on (where role changes are sent).
    pub conn: ConnId,
    /// When it was last heard.
    pub last_seen: MonoNanos,
    /// Dead after this long unheard.
    pub timeout_ms: u64,
    /// The newest epoch in its log.
    pub epoch: i32,
    /// Its CommitLog end.
    pub max_offset: i64,
    /// What its set has confirmed.
    pub confirm_offset: i64,
    /// Lower wins among equals.
    pub priority: i32,
}

/// Brokers by (set, id).
#[derive(Debug, Default)]
pub struct LiveTable {
    brokers: BTreeMap<(String, u64), LiveInfo>,
}

impl LiveTable {
    /// A broker was heard.
    pub fn heard(&mut self, broker_name: &str, id: u64, info: LiveInfo) {
        self.brokers.insert((broker_name.to_owned(), id), info);
    }

    /// A broker's last heartbeat, alive or not.
    #[must_use]
    pub fn get(&self, broker_name: &str, id: u64) -> Option<&LiveInfo> {
        self.brokers.get(&(broker_name.to_owned(), id))
    }

    /// Whether a broker was heard within its timeout.
    #[must_use]
    pub fn is_alive(&self, broker_name: &str, id: u64, now: MonoNanos) -> bool {
        self.get(broker_name, id).is_some_and(|info| now.millis_since(info.last_seen) <= info.timeout_ms)
    }

    /// A connection closed: its brokers count as gone at once (RocketMQ's controller does the
    /// same on a channel's close).
    pub fn connection_closed(&mut self, conn: ConnId) {
        self.brokers.retain(|_, info| info.conn != conn);
    }

    /// Forget the brokers unheard for long past their timeout.
    pub fn expire(&mut self, now: MonoNanos) {
        self.brokers.retain(|_, info| now.millis_since(info.last_seen) <= info.timeout_ms.saturating_mul(10));
    }
}
