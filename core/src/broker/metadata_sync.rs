//! Metadata a slave copies from its master (RocketMQ's SlaveSynchronize): topics, consumer
//! offsets, delay offsets, subscription groups and the timer checkpoint, fetched over the
//! master's remoting port every [`SYNC_INTERVAL_MS`] with the request codes RocketMQ's
//! slaves use. The master's remoting address is the `masterAddr` the name servers name in
//! their REGISTER_BROKER replies. A master serves the same codes to anyone (tools use them).
//!
//! The master's tables replace the slave's when their data version differs (topics,
//! groups) or their content does (delay offsets, timer checkpoint); the master's consumer
//! offsets are merged over the slave's, except offsets committed on the slave since the
//! last copy (its consumers read from it while the master was away) that are newer than
//! the master's: those stay, and the slave gives them to the master. The slave persists what it copied, so a slave that
//! takes over later starts from the master's progress.

use core::net::SocketAddr;
use std::collections::BTreeMap;

use super::consumers::ConsumerOffsets;
use super::delay::DelayOffsets;
use super::refusal::Refusal;
use super::shared::Shared;
use super::timer::TimerCheckpoint;
use crate::io::{ConnId, ConnKind, MonoNanos, Now, Output};
use crate::protocol::body::{SubscriptionGroupWrapper, TopicConfigSerializeWrapper};
use crate::protocol::headers::{CommandHeader, UpdateConsumerOffsetRequestHeader};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};

/// How often a slave copies its master's metadata (RocketMQ's slaves: every 10 s).
pub const SYNC_INTERVAL_MS: u64 = 10_000;
/// Pause before dialling the master again after a failed or lost connection.
const REDIAL_MS: u64 = 3_000;

/// What one sync round asks for, in order.
const ROUND: [RequestCode; 5] = [
    RequestCode::GET_ALL_TOPIC_CONFIG,
    RequestCode::GET_ALL_CONSUMER_OFFSET,
    RequestCode::GET_ALL_DELAY_OFFSET,
    RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    RequestCode::GET_TIMER_CHECK_POINT,
];

/// One table copied from the master.
#[derive(Debug)]
pub(super) enum Synced {
    /// GET_ALL_TOPIC_CONFIG.
    Topics(TopicConfigSerializeWrapper),
    /// GET_ALL_CONSUMER_OFFSET.
    Offsets(ConsumerOffsets),
    /// GET_ALL_DELAY_OFFSET.
    DelayOffsets(DelayOffsets),
    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG.
    Groups(SubscriptionGroupWrapper),
    /// GET_TIMER_CHECK_POINT (Keel's `timerCheckpoint.json`).
    TimerCheckpoint(TimerCheckpoint),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    NoMaster,
    ExpectRedial(MonoNanos),
    ExpectConnected(ConnId),
    Open(ConnId),
}

/// A slave's metadata copying; inactive on a master.
#[derive(Debug)]
pub(super) struct MetadataSync {
    active: bool,
    master: Option<SocketAddr>,
    state: LinkState,
    next_round: MonoNanos,
    /// Requests sent and not answered: opaque → code.
    waiting: BTreeMap<i32, RequestCode>,
}

impl MetadataSync {
    /// Copying for a slave (`active`), once a name server names the master.
    pub(super) fn new(active: bool, now: MonoNanos) -> Self {
        Self { active, master: None, state: LinkState::NoMaster, next_round: now, waiting: BTreeMap::new() }
    }

    /// Start copying (a broker turned slave) or stop (turned master: its link is closed).
    pub(super) fn set_active(&mut self, shared: &mut Shared, now: Now, active: bool) {
        if self.active == active {
            return;
        }
        self.active = active;
        if let LinkState::ExpectConnected(conn) | LinkState::Open(conn) = self.state {
            let reason = crate::io::CloseReason("this broker's role changed".into());
            shared.out.push_back(Output::Close { conn, reason });
            shared.conns.close(conn);
        }
        self.waiting.clear();
        self.master = None;
        self.state = LinkState::NoMaster;
        self.next_round = now.mono;
    }

    /// Whether `conn` is the connection to the master's remoting port.
    pub(super) fn owns(&self, conn: ConnId) -> bool {
        matches!(self.state, LinkState::ExpectConnected(c) | LinkState::Open(c) if c == conn)
    }

    /// A name server named the master's remoting address.
    pub(super) fn learned(&mut self, shared: &mut Shared, now: Now, addr: SocketAddr) {
        if !self.active || self.master == Some(addr) {
            return;
        }
        tracing::info!(master = %addr, "copying the master's metadata");
        self.master = Some(addr);
        if let LinkState::ExpectConnected(conn) | LinkState::Open(conn) = self.state {
            let reason = crate::io::CloseReason("the master's address changed".into());
            shared.out.push_back(Output::Close { conn, reason });
            shared.conns.close(conn);
            self.waiting.clear();
        }
        self.state = LinkState::ExpectRedial(now.mono);
    }

    /// The connection opened: a round starts at once.
    pub(super) fn opened(&mut self, shared: &mut Shared, now: Now, conn: ConnId) {
        if self.state == LinkState::ExpectConnected(conn) {
            self.state = LinkState::Open(conn);
            self.next_round = now.mono;
            self.round_if_due(shared, now);
        }
    }

    /// The connection closed or could not open: dial again after a pause.
    pub(super) fn closed(&mut self, now: Now, conn: ConnId) {
        if self.owns(conn) {
            tracing::warn!(master = ?self.master, "metadata link to the master lost; re-dialling");
            self.state = LinkState::ExpectRedial(now.mono.plus_millis(REDIAL_MS));
            self.waiting.clear();
        }
    }

    /// A reply from the master: the table it carries, if it decodes.
    pub(super) fn on_response(&mut self, conn: ConnId, response: &RemotingCommand) -> Option<Synced> {
        if !self.owns(conn) {
            return None;
        }
        let code = self.waiting.remove(&response.opaque)?;
        if response.response_code() != ResponseCode::SUCCESS {
            tracing::warn!(?code, remark = ?response.remark, "the master refused a metadata request");
            return None;
        }
        let body = &response.body;
        let decoded = match code {
            RequestCode::GET_ALL_TOPIC_CONFIG => json::from_slice(body).map(Synced::Topics),
            RequestCode::GET_ALL_CONSUMER_OFFSET => json::from_slice(body).map(Synced::Offsets),
            RequestCode::GET_ALL_DELAY_OFFSET => json::from_slice(body).map(Synced::DelayOffsets),
            RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => json::from_slice(body).map(Synced::Groups),
            _ => json::from_slice(body).map(Synced::TimerCheckpoint),
        };
        decoded.map_err(|error| tracing::warn!(?code, %error, "the master's metadata does not decode")).ok()
    }

    /// When a dial or a round is next due.
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        match self.state {
            LinkState::ExpectRedial(at) => Some(at),
            LinkState::Open(_) => Some(self.next_round),
            LinkState::NoMaster | LinkState::ExpectConnected(_) => None,
        }
    }

    /// Dial the master, or ask for its tables, when due.
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, now: Now) {
        match self.state {
            LinkState::ExpectRedial(at) if now.mono >= at => {
                let Some(addr) = self.master else { return };
                let conn = shared.dial_id();
                self.state = LinkState::ExpectConnected(conn);
                shared.out.push_back(Output::Connect { conn, addr, kind: ConnKind::Remoting });
            }
            LinkState::Open(_) => self.round_if_due(shared, now),
            _ => {}
        }
    }

    /// Tell the master of an offset committed here while it was away (its reply is not
    /// waited for: the next round copies the master's table back).
    pub(super) fn push_offset(
        &mut self,
        shared: &mut Shared,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) {
        let LinkState::Open(conn) = self.state else { return };
        tracing::info!(group, topic, queue_id, offset, "giving the master an offset committed on this slave");
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            commit_offset: offset,
        };
        let request = RemotingCommand::request(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            shared.opaque(),
            header.to_ext_fields(),
        );
        crate::remoting::send(&mut shared.out, conn, &request);
    }

    fn round_if_due(&mut self, shared: &mut Shared, now: Now) {
        let LinkState::Open(conn) = self.state else { return };
        if now.mono < self.next_round {
            return;
        }
        self.next_round = now.mono.plus_millis(SYNC_INTERVAL_MS);
        // A round the master never answered is not waited for forever.
        self.waiting.clear();
        for code in ROUND {
            let opaque = shared.opaque();
            self.waiting.insert(opaque, code);
            let request = RemotingCommand::request(code, opaque, ExtFields::new());
            crate::remoting::send(&mut shared.out, conn, &request);
        }
    }
}

/// A master's answer to one of the codes above: the table as its metadata file holds it.
pub(super) fn serve(
    request: &RemotingCommand,
    table: &impl serde::Serialize,
) -> Result<RemotingCommand, Refusal> {
    let body = json::to_vec(table, KeyStyle::Fastjson).map_err(|e| Refusal::SystemError(e.to_string()))?;
    Ok(RemotingCommand::response_to(request, ResponseCode::SUCCESS, None).with_body(body))
}
