//! The name server: RocketMQ's route registry as a sans-IO state machine.
//!
//! Brokers register every 30 s (REGISTER_BROKER) and expire after their timeout (120 s by
//! default) without one, or at once when the connection they registered through closes.
//! Clients ask where a topic lives (GET_ROUTEINFO_BY_TOPIC) and admin tools list clusters
//! and topics, and keep KV config ([`kv_config`]). Name servers never talk to each other.
//! With `enableControllerInNamesrv` the
//! name server also answers the controller's requests ([`crate::controller`]). Anything
//! else is answered REQUEST_CODE_NOT_SUPPORTED; a malformed stream closes that connection
//! only.

pub mod kv_config;
pub mod route_table;

use std::collections::VecDeque;

use crate::io::{ConnId, Input, Machine, MonoNanos, Now, Output};
use crate::protocol::body::RegisterBrokerBody;
use crate::protocol::headers::{
    BrokerHeartbeatRequestHeader, CommandHeader, DeleteTopicFromNamesrvRequestHeader,
    GetKvConfigResponseHeader, GetKvListByNamespaceRequestHeader, GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader, HeaderError, KvConfigKeyRequestHeader, PutKvConfigRequestHeader,
    QueryDataVersionRequestHeader, RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::stored::masked_crc32;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_LEN};
use crate::remoting::{self, ConnectionTable, Received};
use kv_config::KvConfig;
use route_table::{Registration, RouteTable};

/// Name server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServerConfig {
    /// Largest frame accepted.
    pub max_frame_len: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How often expired brokers are looked for (RocketMQ: 5 s).
    pub scan_interval_ms: u64,
    /// Expiry for brokers that do not say (RocketMQ: 120 s).
    pub default_broker_timeout_ms: u64,
    /// A controller served on the same port (`enableControllerInNamesrv`).
    pub controller: Option<crate::controller::ControllerConfig>,
}

impl Default for NameServerConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_connections: 10_000,
            scan_interval_ms: 5_000,
            default_broker_timeout_ms: 120_000,
            controller: None,
        }
    }
}

/// The name server state machine.
#[derive(Debug)]
pub struct NameServer {
    config: NameServerConfig,
    conns: ConnectionTable,
    routes: RouteTable,
    out: VecDeque<Output>,
    next_scan: Option<MonoNanos>,
    /// The embedded controller, with `enableControllerInNamesrv`.
    controller: Option<crate::controller::ControllerCore>,
    /// KV config.
    kv: KvConfig,
}

impl NameServer {
    /// A name server with no brokers yet.
    #[must_use]
    pub fn new(config: NameServerConfig) -> Self {
        let controller = config.controller;
        Self {
            conns: ConnectionTable::new(config.max_frame_len, config.max_connections),
            config,
            routes: RouteTable::default(),
            out: VecDeque::new(),
            next_scan: None,
            controller: controller.map(crate::controller::ControllerCore::new),
            kv: KvConfig::default(),
        }
    }

    /// This name server keeping the KV config `kv` (loaded from its file).
    #[must_use]
    pub fn with_kv_config(mut self, kv: KvConfig) -> Self {
        self.kv = kv;
        self
    }

    /// The KV config.
    #[must_use]
    pub fn kv_config(&self) -> &KvConfig {
        &self.kv
    }

    /// This name server embedding `controller` (a member of a controller group, say).
    #[must_use]
    pub fn with_controller(mut self, controller: crate::controller::ControllerCore) -> Self {
        self.controller = Some(controller);
        self
    }

    /// The embedded controller, if enabled.
    #[must_use]
    pub fn controller(&self) -> Option<&crate::controller::ControllerCore> {
        self.controller.as_ref()
    }

    /// The route tables (for tests and admin views).
    #[must_use]
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    fn on_command(&mut self, now: Now, conn: ConnId, request: RemotingCommand) {
        if request.is_response() {
            // The name server sends no requests, so it expects no responses.
            tracing::debug!(?conn, opaque = request.opaque, "ignoring an unexpected response");
            return;
        }
        if let Some(controller) = &mut self.controller {
            // A heartbeat keeps the broker's route alive too, then the controller answers it.
            if request.request_code() == RequestCode::BROKER_HEARTBEAT {
                if let Ok(header) = BrokerHeartbeatRequestHeader::decode(&request.ext_fields) {
                    self.routes.heartbeat(now.mono, &header.broker_addr);
                }
            }
            if controller.on_request(now, conn, &request, &mut self.out) {
                return;
            }
        }
        let response = match self.answer(now, conn, &request) {
            Ok(response) => response,
            Err(error) => {
                RemotingCommand::response_to(&request, ResponseCode::SYSTEM_ERROR, Some(error.to_string()))
            }
        };
        remoting::reply(&mut self.out, conn, &request, &response);
    }

    fn answer(
        &mut self,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let ok =
            |request: &RemotingCommand| RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        Ok(match request.request_code() {
            RequestCode::REGISTER_BROKER => self.register(now, conn, request)?,
            RequestCode::UNREGISTER_BROKER => {
                let header = UnregisterBrokerRequestHeader::decode(&request.ext_fields)?;
                self.routes.unregister(&header.broker_addr);
                ok(request)
            }
            RequestCode::BROKER_HEARTBEAT => {
                let header = BrokerHeartbeatRequestHeader::decode(&request.ext_fields)?;
                self.routes.heartbeat(now.mono, &header.broker_addr);
                ok(request)
            }
            RequestCode::QUERY_DATA_VERSION => {
                let header = QueryDataVersionRequestHeader::decode(&request.ext_fields)?;
                let theirs = json::from_slice(&request.body).unwrap_or_default();
                let changed = self.routes.data_version_changed(&header.broker_addr, &theirs);
                self.routes.heartbeat(now.mono, &header.broker_addr);
                let mut response = ok(request);
                response.ext_fields.insert("changed", changed.to_string());
                if let Some(ours) = self.routes.data_version(&header.broker_addr) {
                    response.body = json::to_body(&ours, KeyStyle::Fastjson).into();
                }
                response
            }
            RequestCode::GET_ROUTEINFO_BY_TOPIC => {
                let header = GetRouteInfoRequestHeader::decode(&request.ext_fields)?;
                match self.routes.route(&header.topic) {
                    // Standard JSON (quoted integer keys): every client reads it. An ordered
                    // topic's queues per broker come from the KV config, as in RocketMQ.
                    Some(mut route) => {
                        route.order_topic_conf =
                            self.kv.get(kv_config::ORDER_TOPIC_CONFIG, &header.topic).map(str::to_owned);
                        ok(request).with_body(json::to_body(&route, KeyStyle::Standard))
                    }
                    None => RemotingCommand::response_to(
                        request,
                        ResponseCode::TOPIC_NOT_EXIST,
                        Some(format!("No topic route info in name server for the topic: {}", header.topic)),
                    ),
                }
            }
            RequestCode::GET_BROKER_CLUSTER_INFO => {
                ok(request).with_body(json::to_body(&self.routes.cluster_info(), KeyStyle::Standard))
            }
            RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                ok(request).with_body(json::to_body(&self.routes.topics(), KeyStyle::Standard))
            }
            RequestCode::GET_TOPICS_BY_CLUSTER => {
                let header = GetTopicsByClusterRequestHeader::decode(&request.ext_fields)?;
                let topics = self.routes.topics_of_cluster(&header.cluster);
                ok(request).with_body(json::to_body(&topics, KeyStyle::Standard))
            }
            RequestCode::PUT_KV_CONFIG => {
                let header = PutKvConfigRequestHeader::decode(&request.ext_fields)?;
                self.kv.put(&header.namespace, &header.key, &header.value, &mut self.out);
                ok(request)
            }
            RequestCode::GET_KV_CONFIG => {
                let header = KvConfigKeyRequestHeader::decode(&request.ext_fields)?;
                match self.kv.get(&header.namespace, &header.key) {
                    Some(value) => {
                        let mut response = ok(request);
                        response.ext_fields =
                            GetKvConfigResponseHeader { value: Some(value.to_owned()) }.to_ext_fields();
                        response
                    }
                    None => RemotingCommand::response_to(
                        request,
                        ResponseCode::QUERY_NOT_FOUND,
                        Some(format!("No config item, Namespace: {} Key: {}", header.namespace, header.key)),
                    ),
                }
            }
            RequestCode::DELETE_KV_CONFIG => {
                let header = KvConfigKeyRequestHeader::decode(&request.ext_fields)?;
                self.kv.delete(&header.namespace, &header.key, &mut self.out);
                ok(request)
            }
            RequestCode::GET_KVLIST_BY_NAMESPACE => {
                let header = GetKvListByNamespaceRequestHeader::decode(&request.ext_fields)?;
                match self.kv.namespace(&header.namespace) {
                    Some(table) => {
                        let body = crate::protocol::body::KvTable { table: table.clone() };
                        ok(request).with_body(json::to_body(&body, KeyStyle::Standard))
                    }
                    None => RemotingCommand::response_to(
                        request,
                        ResponseCode::QUERY_NOT_FOUND,
                        Some(format!("No config item, Namespace: {}", header.namespace)),
                    ),
                }
            }
            RequestCode::DELETE_TOPIC_IN_NAMESRV => {
                let header = DeleteTopicFromNamesrvRequestHeader::decode(&request.ext_fields)?;
                self.routes.delete_topic(&header.topic, header.cluster_name.as_deref());
                ok(request)
            }
            _ => remoting::not_supported(request),
        })
    }

    fn register(
        &mut self,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let header = RegisterBrokerRequestHeader::decode(&request.ext_fields)?;
        let error =
            |remark: String| RemotingCommand::response_to(request, ResponseCode::SYSTEM_ERROR, Some(remark));
        if let Some(expected) = header.body_crc32.filter(|crc| *crc != 0) {
            if masked_crc32(&request.body) != expected {
                return Ok(error("crc32 not match".into()));
            }
        }
        let body: RegisterBrokerBody = if header.compressed == Some(true) {
            match crate::protocol::body::register_compressed::decode_compressed(&request.body) {
                Ok(body) => body,
                Err(e) => return Ok(error(e.to_string())),
            }
        } else if request.body.is_empty() {
            RegisterBrokerBody::default()
        } else {
            match json::from_slice(&request.body) {
                Ok(body) => body,
                Err(e) => return Ok(error(format!("bad REGISTER_BROKER body: {e}"))),
            }
        };
        let registration = Registration {
            cluster: header.cluster_name,
            broker_name: header.broker_name,
            broker_addr: header.broker_addr,
            broker_id: header.broker_id,
            ha_server_addr: header.ha_server_addr,
            timeout_ms: header
                .heartbeat_timeout_millis
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(self.config.default_broker_timeout_ms),
            enable_acting_master: header.enable_acting_master.unwrap_or(false),
            topics: body.topic_config_serialize_wrapper,
        };
        let result = self.routes.register(now.mono, Some(conn), registration);
        let mut response = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
        if let Some(master) = result.master_addr {
            response.ext_fields.insert("masterAddr", master);
        }
        if let Some(ha) = result.ha_server_addr {
            response.ext_fields.insert("haServerAddr", ha);
        }
        Ok(response)
    }
}

impl NameServer {
    /// A timeout: expire brokers whose last registration is older than their timeout, when
    /// the scan is due (the name server's one deadline).
    fn handle_timeout(&mut self, now: Now) {
        if self.next_scan.is_some_and(|at| now.mono >= at) {
            self.routes.expire(now.mono);
            self.next_scan = Some(now.mono.plus_millis(self.config.scan_interval_ms));
        }
        if let Some(controller) = &mut self.controller {
            controller.handle_timeout(now, &mut self.out);
        }
    }

    /// Serve what came on `conn`: commands, or the stream's end.
    fn on_received(&mut self, now: Now, conn: ConnId, received: impl IntoIterator<Item = Received>) {
        for received in received {
            match received {
                Received::Command(cmd) => self.on_command(now, conn, cmd),
                Received::Closed(_) => {
                    self.routes.connection_closed(conn);
                    if let Some(controller) = &mut self.controller {
                        controller.connection_closed(now, conn);
                    }
                }
            }
        }
    }
}

impl Machine for NameServer {
    fn handle(&mut self, now: Now, input: Input) {
        if self.next_scan.is_none() {
            self.next_scan = Some(now.mono.plus_millis(self.config.scan_interval_ms));
        }
        match input {
            // A name server has one port: every connection carries remoting.
            Input::ConnOpened { conn, peer, .. } => {
                self.conns.open(conn, peer, &mut self.out);
                if let Some(controller) = &mut self.controller {
                    controller.connection_opened(conn);
                }
            }
            Input::ConnClosed { conn } => {
                self.conns.close(conn);
                self.routes.connection_closed(conn);
                if let Some(controller) = &mut self.controller {
                    controller.connection_closed(now, conn);
                }
            }
            Input::Bytes { conn, data, .. } => {
                let received = self.conns.feed(conn, &data, &mut self.out);
                self.on_received(now, conn, received);
            }
            Input::Command { conn, command, .. } => {
                let received = self.conns.take_command(conn, command);
                self.on_received(now, conn, received);
            }
            Input::DiskDone { io, result } if KvConfig::owns(io) => self.kv.disk_done(&result, &mut self.out),
            Input::DiskDone { io, result } => match &mut self.controller {
                Some(controller) => controller.disk_done(now, io, &result, &mut self.out),
                None => tracing::warn!(?io, "name server got a disk completion it never asked for"),
            },
            Input::Timeout => self.handle_timeout(now),
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<MonoNanos> {
        let controller = self.controller.as_ref().and_then(crate::controller::ControllerCore::poll_timeout);
        [self.next_scan, controller].into_iter().flatten().min()
    }
}
