//! The broker's links to its name servers: one connection each, a REGISTER_BROKER on
//! connect, every `register_interval_ms` and whenever the topics change; a lost link is
//! re-dialled after a pause. Name servers never hear of each other, so each gets the same
//! registration independently.

use core::net::SocketAddr;

use super::shared::Shared;
use crate::io::{ConnId, MonoNanos, Now, Output};
use crate::protocol::body::RegisterBrokerBody;
use crate::protocol::headers::{CommandHeader, RegisterBrokerRequestHeader};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::stored::masked_crc32;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Pause before re-dialling a name server.
const RECONNECT_MS: u64 = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Waiting to dial at this time.
    ExpectRedial(MonoNanos),
    /// Dialling under this id.
    ExpectConnected(ConnId),
    /// Connected under this id.
    Open(ConnId),
}

#[derive(Debug, Clone)]
struct Link {
    addr: SocketAddr,
    state: LinkState,
}

/// The master of this broker's set, as a name server's registration reply names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NamedMaster {
    /// Its remoting address, where a slave copies metadata from.
    pub(super) remoting: Option<SocketAddr>,
    /// Its replication address (`haListenPort`).
    pub(super) replication: Option<SocketAddr>,
}

/// All name server links.
#[derive(Debug)]
pub(super) struct NamesrvLinks {
    links: Vec<Link>,
    next_register: MonoNanos,
}

impl NamesrvLinks {
    pub(super) fn new(addrs: &[SocketAddr], now: MonoNanos) -> Self {
        let links = addrs.iter().map(|&addr| Link { addr, state: LinkState::ExpectRedial(now) }).collect();
        Self { links, next_register: now }
    }

    /// When a link is due to be dialled again or the registration period is up.
    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        let redial = self.links.iter().filter_map(|l| match l.state {
            LinkState::ExpectRedial(at) => Some(at),
            _ => None,
        });
        let register = (!self.links.is_empty()).then_some(self.next_register);
        redial.chain(register).min()
    }

    pub(super) fn closed(&mut self, conn: ConnId, now: MonoNanos) {
        for link in &mut self.links {
            if matches!(link.state, LinkState::Open(c) | LinkState::ExpectConnected(c) if c == conn) {
                tracing::warn!(namesrv = %link.addr, "name server link lost; re-dialling");
                link.state = LinkState::ExpectRedial(now.plus_millis(RECONNECT_MS));
            }
        }
    }

    /// A name server answered: a refusal is logged; a registration reply names the master
    /// of this broker's set (`masterAddr`, `haServerAddr`), for a slave to follow.
    pub(super) fn on_response(&self, conn: ConnId, response: &RemotingCommand) -> NamedMaster {
        if response.response_code() != ResponseCode::SUCCESS {
            tracing::warn!(?conn, code = ?response.response_code(), remark = ?response.remark, "name server refused a request");
            return NamedMaster::default();
        }
        let addr = |key: &str| {
            let named = response.ext_fields.get(key).filter(|addr| !addr.is_empty())?;
            let parsed = named.parse().ok();
            if parsed.is_none() {
                tracing::warn!(?conn, key, value = %named, "name server named a master address that is not ip:port");
            }
            parsed
        };
        NamedMaster { remoting: addr("masterAddr"), replication: addr("haServerAddr") }
    }

    fn open_conns(&self) -> Vec<ConnId> {
        self.links
            .iter()
            .filter_map(|l| match l.state {
                LinkState::Open(conn) => Some(conn),
                _ => None,
            })
            .collect()
    }
}

/// Registration on the name servers, as part of the broker's common state: it needs the
/// topic table and the settings, and every topic change re-registers at once.
impl Shared {
    fn register_request(&mut self) -> RemotingCommand {
        let body = RegisterBrokerBody {
            topic_config_serialize_wrapper: self.topics.wrapper().clone(),
            ..RegisterBrokerBody::default()
        };
        let compressed = self.config.compressed_register;
        let body = if compressed {
            crate::protocol::body::register_compressed::encode_compressed(&body)
        } else {
            json::to_body(&body, KeyStyle::Fastjson)
        };
        let addr = self.config.advertised_addr;
        let header = RegisterBrokerRequestHeader {
            broker_name: self.config.broker_name.clone(),
            broker_addr: addr.to_string(),
            cluster_name: self.config.cluster_name.clone(),
            ha_server_addr: self.ha_addr().to_string(),
            broker_id: self.config.broker_id,
            heartbeat_timeout_millis: None,
            enable_acting_master: Some(false),
            compressed: Some(compressed),
            body_crc32: Some(masked_crc32(&body)),
        };
        RemotingCommand::request(RequestCode::REGISTER_BROKER, self.opaque(), header.to_ext_fields())
            .with_body(body)
    }

    /// A name server link opened: register on it at once.
    /// Where this broker's slaves connect: `haListenPort` on `brokerIP1`, by default the
    /// listen port + 1.
    pub(super) fn ha_addr(&self) -> SocketAddr {
        let addr = self.config.advertised_addr;
        self.config.ha_addr.unwrap_or_else(|| SocketAddr::new(addr.ip(), addr.port().wrapping_add(1)))
    }

    pub(super) fn register_now(&mut self, conn: ConnId) {
        for link in &mut self.namesrvs.links {
            if link.state == LinkState::ExpectConnected(conn) {
                tracing::info!(namesrv = %link.addr, "name server link open");
                link.state = LinkState::Open(conn);
            }
        }
        let request = self.register_request();
        crate::remoting::send(&mut self.out, conn, &request);
    }

    /// Topics changed: every name server hears of it now, and `topics.json` is rewritten.
    pub(super) fn topics_changed(&mut self) {
        self.metadata.topics.mark_dirty();
        self.reregister();
    }

    /// Register with every connected name server.
    pub(super) fn reregister(&mut self) {
        for conn in self.namesrvs.open_conns() {
            let request = self.register_request();
            crate::remoting::send(&mut self.out, conn, &request);
        }
    }

    /// Dial links that are due, and register on every open one when the period is up.
    pub(super) fn handle_registration_timeout(&mut self, now: Now) {
        for at in 0..self.namesrvs.links.len() {
            let Some(link) = self.namesrvs.links.get(at) else { continue };
            if matches!(link.state, LinkState::ExpectRedial(due) if now.mono >= due) {
                let addr = link.addr;
                let conn = self.dial_id();
                if let Some(link) = self.namesrvs.links.get_mut(at) {
                    link.state = LinkState::ExpectConnected(conn);
                }
                self.out.push_back(Output::Connect { conn, addr, kind: crate::io::ConnKind::Remoting });
            }
        }
        if now.mono >= self.namesrvs.next_register {
            self.namesrvs.next_register = now.mono.plus_millis(self.config.register_interval_ms);
            self.reregister();
        }
    }
}
