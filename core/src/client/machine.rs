//! The client state machine (`MQClientInstance`): one per process, shared by its producers
//! and consumers. It keeps topic routes fresh from the name servers, heartbeats every
//! broker, and carries the producer's sends and the push consumers' rebalancing, pulls,
//! deliveries, retries and offset commits (in `producer.rs` and `push_consumer.rs`).
//!
//! Like every Keel machine it does no IO: the runtime feeds it connections, bytes and
//! timeouts and carries out its outputs. The application talks to it through methods
//! (`send`, `start_consumer`, `consumed`, `shutdown`) and hears back through
//! [`ClientEvent`]s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use core::net::SocketAddr;

use super::producer::PendingSend;
use super::push_consumer::ConsumerState;
use super::queue_choice::QueueChoice;
use super::transport::{Arrived, CallError, Transport};
use crate::io::{ConnId, Input, Machine, MonoNanos, Now, Output};
use crate::protocol::body::{HeartbeatData, MessageQueue, ProducerData, TopicRouteData};
use crate::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader, UnregisterClientRequestHeader};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::message_id::UniqueIdGenerator;
use crate::protocol::message::stored::StoredMessage;
use crate::protocol::{LanguageCode, RemotingCommand, RequestCode, ResponseCode};

/// How often routes are refreshed (`pollNameServerInterval`).
const ROUTE_REFRESH_MS: u64 = 30_000;
/// How soon a topic the name servers said has no route is asked about again, for a
/// consumer subscribed to it: the topic may be created any moment (by a producer's first
/// send), and members of a group should learn of it about together; but not once per round
/// trip, which an immediate re-ask amounts to.
const NO_ROUTE_RETRY_MS: u64 = 1_000;
/// How often every broker hears a heartbeat (`heartbeatBrokerInterval`).
const HEARTBEAT_MS: u64 = 30_000;
/// Deadline of an ordinary call.
pub(super) const CALL_TIMEOUT_MS: u64 = 3_000;
/// The topic whose route auto-created topics borrow.
pub(super) const DEFAULT_TOPIC: &str = "TBW102";

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Name servers.
    pub namesrv_addrs: Vec<SocketAddr>,
    /// `ip@instance`: how brokers and other consumers of a group know this client.
    pub client_id: String,
    /// This host's IPv4 address (for message ids).
    pub ip: core::net::Ipv4Addr,
    /// This process's id (for message ids).
    pub pid: i16,
    /// Randomness from outside: message-id seed and first queue of round robin.
    pub seed: u64,
    /// Deadline of a send attempt, ms (`sendMsgTimeout`).
    pub send_timeout_ms: u64,
    /// Retries of a failed send on another queue (`retryTimesWhenSendFailed`).
    pub send_retries: u32,
    /// Message trace (`enableMsgTrace`): the topic trace records go to
    /// (`RMQ_SYS_TRACE_TOPIC`, or a `customizedTraceTopic`); `None`: not traced.
    pub trace_topic: Option<String>,
}

impl ClientConfig {
    /// RocketMQ's defaults for a client of these name servers.
    #[must_use]
    pub fn new(namesrv_addrs: Vec<SocketAddr>, client_id: impl Into<String>) -> Self {
        Self {
            namesrv_addrs,
            client_id: client_id.into(),
            ip: core::net::Ipv4Addr::LOCALHOST,
            pid: 0,
            seed: 0,
            send_timeout_ms: 3_000,
            send_retries: 2,
            trace_topic: None,
        }
    }
}

/// A send, as the application names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SendId(pub u64);

/// A delivery to the application, to be answered with [`Client::consumed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryId(pub u64);

/// What a send achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The broker's message id (offset id).
    pub msg_id: String,
    /// The message's own id (`UNIQ_KEY`), stable across retries.
    pub unique_id: String,
    /// Where it was stored.
    pub queue: MessageQueue,
    /// Its queue offset.
    pub queue_offset: i64,
    /// How safe the broker says it is (RocketMQ's SendStatus).
    pub status: SendStatus,
}

/// How safe a stored message is, as the broker answered (RocketMQ's `SendStatus`): each is
/// stored on the broker; all but `SendOk` lack a promise the broker was asked to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Stored as promised.
    SendOk,
    /// Stored, but not fsynced in time (SYNC_FLUSH).
    FlushDiskTimeout,
    /// Stored on the master, but no slave held it in time (SYNC_MASTER).
    FlushSlaveTimeout,
    /// Stored on the master, with no slave in sync (SYNC_MASTER).
    SlaveNotAvailable,
}

impl SendStatus {
    /// The status a send reply's code means; `None` for a refusal.
    #[must_use]
    pub fn of(code: crate::protocol::ResponseCode) -> Option<Self> {
        use crate::protocol::ResponseCode;
        match code {
            ResponseCode::SUCCESS => Some(Self::SendOk),
            ResponseCode::FLUSH_DISK_TIMEOUT => Some(Self::FlushDiskTimeout),
            ResponseCode::FLUSH_SLAVE_TIMEOUT => Some(Self::FlushSlaveTimeout),
            ResponseCode::SLAVE_NOT_AVAILABLE => Some(Self::SlaveNotAvailable),
            _ => None,
        }
    }
}

/// Why a send failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No route to the topic (and no default route to auto-create it).
    #[error("no route to topic {0}")]
    NoRoute(String),
    /// Every attempt failed; the last failure.
    #[error("send failed after {attempts} attempts: {last}")]
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: String,
    },
}

/// What the application hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A send finished.
    SendDone {
        /// The send.
        id: SendId,
        /// Its outcome.
        result: Result<SendResult, SendError>,
    },
    /// Messages for a push consumer's listener; answer with [`Client::consumed`].
    Deliver {
        /// The delivery.
        id: DeliveryId,
        /// The consumer group.
        group: String,
        /// The queue they came from.
        queue: MessageQueue,
        /// The messages (retried ones carry their original topic again).
        messages: Vec<StoredMessage>,
    },
    /// A lite pull consumer has messages to poll.
    Ready {
        /// The consumer group.
        group: String,
    },
    /// The broker asks how a transaction left open ended: answer with
    /// [`Client::end_transaction`], `from_check` set.
    CheckTransaction {
        /// The half message to name in the answer.
        half: super::transaction::HalfMessage,
        /// The message, as stored (its real topic and queue).
        message: Box<StoredMessage>,
    },
    /// A broadcasting consumer's offsets changed: persist them on the client.
    SaveOffsets {
        /// The consumer group.
        group: String,
        /// The offsets file's content (RocketMQ's `offsets.json`).
        content: Vec<u8>,
    },
}

/// The caller's tag of a call: what its response means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CallTag {
    Route { topic: String, namesrv: usize, tries: usize },
    Heartbeat,
    Send { id: SendId, broker: String, started: MonoNanos },
    Consumer(super::push_consumer::ConsumerCall),
}

/// The client state machine.
#[derive(Debug)]
pub struct Client {
    pub(super) config: ClientConfig,
    pub(super) transport: Transport<CallTag>,
    pub(super) out: VecDeque<Output>,
    pub(super) events: VecDeque<ClientEvent>,
    /// Known routes by topic.
    pub(super) routes: BTreeMap<String, TopicRouteData>,
    /// Topics with a route request in flight.
    route_asked: BTreeSet<String>,
    /// When each topic's route was first learned.
    first_routed: BTreeMap<String, MonoNanos>,
    /// Topics the name servers last said have no route (TOPIC_NOT_EXIST), and when.
    pub(super) no_route: BTreeMap<String, MonoNanos>,
    pub(super) producer_groups: BTreeSet<String>,
    pub(super) consumers: BTreeMap<String, ConsumerState>,
    pub(super) sends: BTreeMap<SendId, PendingSend>,
    pub(super) queue_choice: QueueChoice,
    pub(super) unique_ids: UniqueIdGenerator,
    pub(super) next_send: u64,
    pub(super) next_delivery: u64,
    /// Consume-directly requests waiting for their listener.
    pub(super) direct: super::operator::DirectConsumes,
    /// Trace sends in flight.
    pub(super) tracer: super::tracer::Tracer,
    next_route_refresh: MonoNanos,
    next_heartbeat: MonoNanos,
    next_namesrv: usize,
    shut_down: bool,
}

impl Client {
    /// A client; it dials nothing until it has something to do.
    #[must_use]
    pub fn new(config: ClientConfig, now: Now) -> Self {
        let seed = i32::from_ne_bytes(
            config.seed.to_ne_bytes().get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]),
        );
        Self {
            transport: Transport::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            routes: BTreeMap::new(),
            route_asked: BTreeSet::new(),
            first_routed: BTreeMap::new(),
            no_route: BTreeMap::new(),
            producer_groups: BTreeSet::new(),
            consumers: BTreeMap::new(),
            sends: BTreeMap::new(),
            queue_choice: QueueChoice::new(config.seed),
            unique_ids: UniqueIdGenerator::new(config.ip, config.pid, seed),
            next_send: 0,
            next_delivery: 0,
            direct: super::operator::DirectConsumes::new(),
            tracer: super::tracer::Tracer::default(),
            next_route_refresh: now.mono.plus_millis(ROUTE_REFRESH_MS),
            next_heartbeat: now.mono.plus_millis(HEARTBEAT_MS),
            next_namesrv: 0,
            shut_down: false,
            config,
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The client's settings.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Register a producer group (heartbeats name it; transactions will need it).
    pub fn start_producer(&mut self, now: Now, group: &str) {
        if self.producer_groups.insert(group.to_owned()) {
            self.heartbeat_all(now);
        }
    }

    /// Stop: commit every consumer's offsets, release orderly locks and leave every group
    /// (all oneway). The runtime should let the outputs drain, then drop the client.
    pub fn shutdown(&mut self, now: Now) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        let groups: Vec<String> = self.consumers.keys().cloned().collect();
        for group in &groups {
            self.stop_consumer(now, group);
        }
        let brokers = self.broker_masters();
        for group in groups
            .iter()
            .map(|g| (None, Some(g.clone())))
            .chain(self.producer_groups.iter().map(|g| (Some(g.clone()), None)))
        {
            let header = UnregisterClientRequestHeader {
                client_id: self.config.client_id.clone(),
                producer_group: group.0,
                consumer_group: group.1,
            };
            for addr in &brokers {
                let request =
                    RemotingCommand::request(RequestCode::UNREGISTER_CLIENT, 0, header.to_ext_fields());
                self.transport.oneway(*addr, self.stamp(request), &mut self.out);
            }
        }
    }

    /// Mark a request as ours: the client's language and version.
    pub(super) fn stamp(&self, mut request: RemotingCommand) -> RemotingCommand {
        request.language = LanguageCode::RUST;
        request
    }

    /// The route of `topic`, asking the name servers for it if unknown (not again within
    /// `NO_ROUTE_RETRY_MS` of being told there is none).
    pub(super) fn route(&mut self, now: Now, topic: &str) -> Option<&TopicRouteData> {
        let told_none_lately =
            self.no_route.get(topic).is_some_and(|at| now.mono < at.plus_millis(NO_ROUTE_RETRY_MS));
        if !self.routes.contains_key(topic) && !told_none_lately {
            self.ask_route(now, topic);
        }
        self.routes.get(topic)
    }

    /// Topics a live consumer subscribes to that have no route, with when to ask again.
    fn consumed_topics_without_route(&self) -> impl Iterator<Item = (&String, MonoNanos)> {
        self.no_route.iter().filter_map(|(topic, told)| {
            let wanted = !self.routes.contains_key(topic)
                && !self.route_asked.contains(topic)
                && self.consumers.values().any(|c| !c.stopped && c.subscriptions.contains_key(topic));
            wanted.then(|| (topic, told.plus_millis(NO_ROUTE_RETRY_MS)))
        })
    }

    /// When this client first learned `topic`'s route. From then on it heartbeats the
    /// topic's brokers, so they count it in its consumer groups: for the rest of a group, a
    /// route learned late is a member joining late.
    #[must_use]
    pub fn first_routed_at(&self, topic: &str) -> Option<MonoNanos> {
        self.first_routed.get(topic).copied()
    }

    /// Ask a name server for `topic`'s route (one request at a time per topic).
    pub(super) fn ask_route(&mut self, now: Now, topic: &str) {
        if self.config.namesrv_addrs.is_empty() || !self.route_asked.insert(topic.to_owned()) {
            return;
        }
        let namesrv = self.next_namesrv % self.config.namesrv_addrs.len();
        self.send_route_request(now, topic, namesrv, 0);
    }

    fn send_route_request(&mut self, now: Now, topic: &str, namesrv: usize, tries: usize) {
        let Some(addr) = self.config.namesrv_addrs.get(namesrv).copied() else { return };
        let header =
            GetRouteInfoRequestHeader { topic: topic.to_owned(), accept_standard_json_only: Some(true) };
        let request = self.stamp(RemotingCommand::request(
            RequestCode::GET_ROUTEINFO_BY_TOPIC,
            0,
            header.to_ext_fields(),
        ));
        let tag = CallTag::Route { topic: topic.to_owned(), namesrv, tries };
        let deadline = now.mono.plus_millis(CALL_TIMEOUT_MS);
        if let Err((tag, error)) = self.transport.call(addr, request, deadline, tag, &mut self.out) {
            self.on_failed(now, tag, error);
        }
    }

    fn on_route(&mut self, now: Now, topic: String, response: &RemotingCommand) {
        self.route_asked.remove(&topic);
        match response.response_code() {
            ResponseCode::SUCCESS => match json::from_slice::<TopicRouteData>(&response.body) {
                Ok(route) => {
                    let new_brokers =
                        self.routes.get(&topic).is_none_or(|old| old.broker_datas != route.broker_datas);
                    tracing::debug!(topic, new_brokers, "route");
                    self.no_route.remove(&topic);
                    self.first_routed.entry(topic.clone()).or_insert(now.mono);
                    self.routes.insert(topic.clone(), route);
                    if new_brokers {
                        self.heartbeat_all(now);
                    }
                    self.route_changed(now, &topic);
                }
                Err(error) => tracing::warn!(topic, %error, "unreadable route"),
            },
            code => {
                tracing::debug!(topic, ?code, "no route");
                self.no_route.insert(topic.clone(), now.mono);
                // Sends waiting for this answer fall back to the default topic. A route
                // already known is kept (as RocketMQ does), so consumers have nothing to
                // rebalance; rebalancing here asked again at once, a request per round
                // trip for as long as a subscribed topic did not exist.
                self.retry_parked_sends(now, &topic);
            }
        }
    }

    fn route_changed(&mut self, now: Now, topic: &str) {
        self.retry_parked_sends(now, topic);
        self.consumer_route_changed(now, topic);
    }

    /// Every broker master address any route names.
    pub(super) fn broker_masters(&self) -> BTreeSet<SocketAddr> {
        self.routes
            .values()
            .flat_map(|r| r.broker_datas.iter())
            .filter_map(|b| b.broker_addrs.get(&0))
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// Tell every broker who this client is: its producer groups and consumers.
    pub(super) fn heartbeat_all(&mut self, now: Now) {
        if self.shut_down {
            return;
        }
        let data = HeartbeatData {
            client_id: self.config.client_id.clone(),
            consumer_data_set: self.consumers.values().map(ConsumerState::heartbeat_data).collect(),
            producer_data_set: self
                .producer_groups
                .iter()
                .map(|g| ProducerData { group_name: g.clone() })
                .collect(),
            ..HeartbeatData::default()
        };
        let body = json::to_body(&data, KeyStyle::Standard);
        let deadline = now.mono.plus_millis(CALL_TIMEOUT_MS);
        for addr in self.broker_masters() {
            let request = self.stamp(
                RemotingCommand::request(RequestCode::HEART_BEAT, 0, Default::default())
                    .with_body(body.clone()),
            );
            if let Err((tag, error)) =
                self.transport.call(addr, request, deadline, CallTag::Heartbeat, &mut self.out)
            {
                self.on_failed(now, tag, error);
            }
        }
    }

    fn on_arrived(&mut self, now: Now, arrived: Arrived<CallTag>) {
        match arrived {
            Arrived::Response(tag, response) => self.on_response(now, tag, &response),
            Arrived::Failed(tag, error) => self.on_failed(now, tag, error),
            Arrived::Request(conn, request) => self.on_server_request(now, conn, &request),
        }
    }

    fn on_response(&mut self, now: Now, tag: CallTag, response: &RemotingCommand) {
        match tag {
            CallTag::Route { topic, .. } => self.on_route(now, topic, response),
            CallTag::Heartbeat => {
                if response.response_code() != ResponseCode::SUCCESS {
                    tracing::warn!(code = ?response.response_code(), remark = ?response.remark, "heartbeat refused");
                }
            }
            CallTag::Send { id, broker, started } => {
                self.on_send_response(now, id, &broker, started, Ok(response))
            }
            CallTag::Consumer(call) => self.on_consumer_response(now, call, Ok(response)),
        }
    }

    pub(super) fn on_failed(&mut self, now: Now, tag: CallTag, error: CallError) {
        match tag {
            CallTag::Route { topic, namesrv, tries } => {
                // Try the next name server; give up on this round after trying them all.
                let count = self.config.namesrv_addrs.len().max(1);
                let next = (namesrv + 1) % count;
                self.next_namesrv = next;
                if tries + 1 < count {
                    self.send_route_request(now, &topic, next, tries + 1);
                } else {
                    self.route_asked.remove(&topic);
                    tracing::debug!(topic, %error, "route request failed on every name server");
                    self.route_unanswered(now, &topic);
                }
            }
            CallTag::Heartbeat => tracing::debug!(%error, "heartbeat failed"),
            CallTag::Send { id, broker, started } => {
                self.on_send_response(now, id, &broker, started, Err(error))
            }
            CallTag::Consumer(call) => self.on_consumer_response(now, call, Err(error)),
        }
    }

    fn on_server_request(&mut self, now: Now, conn: ConnId, request: &RemotingCommand) {
        match request.request_code() {
            RequestCode::NOTIFY_CONSUMER_IDS_CHANGED => {
                let group = request.ext_fields.get("consumerGroup").map(str::to_owned).unwrap_or_default();
                tracing::debug!(group, "consumer ids changed");
                self.rebalance_soon(now, &group);
            }
            RequestCode::CHECK_TRANSACTION_STATE => self.on_check_transaction(conn, request),
            RequestCode::RESET_CONSUMER_CLIENT_OFFSET => self.on_reset_offset(now, request),
            RequestCode::GET_CONSUMER_RUNNING_INFO => self.on_running_info(now, conn, request),
            RequestCode::CONSUME_MESSAGE_DIRECTLY => self.on_consume_directly(now, conn, request),
            _ => {
                let reply = crate::remoting::not_supported(request);
                if !request.is_oneway() {
                    self.transport.reply(conn, &reply, &mut self.out);
                }
            }
        }
    }

    /// When `reason`'s part next needs a timeout.
    fn deadline(&self, reason: Reason) -> Option<MonoNanos> {
        match reason {
            Reason::Calls => self.transport.poll_timeout(),
            Reason::RouteRefresh => Some(self.next_route_refresh),
            Reason::RouteRetry => self.consumed_topics_without_route().map(|(_, at)| at).min(),
            Reason::Heartbeat => Some(self.next_heartbeat),
            Reason::Sends => self.send_poll_timeout(),
            Reason::Consumers => self.consumer_poll_timeout(),
        }
    }

    /// When the client next needs a timeout, and for which part.
    #[must_use]
    pub fn soonest(&self) -> Option<(MonoNanos, Reason)> {
        crate::io::soonest(Reason::ALL, |reason| self.deadline(reason))
    }

    /// Run each part that is due, in order (a part's deadline is read when its turn comes).
    fn handle_timeout(&mut self, now: Now) {
        for reason in Reason::ALL {
            if !crate::io::is_due(self.deadline(reason), now) {
                continue;
            }
            match reason {
                Reason::Calls => {
                    for arrived in self.transport.expire(now.mono) {
                        self.on_arrived(now, arrived);
                    }
                }
                Reason::RouteRefresh => {
                    self.next_route_refresh = now.mono.plus_millis(ROUTE_REFRESH_MS);
                    let topics: Vec<String> =
                        self.routes.keys().chain(self.no_route.keys()).cloned().collect();
                    for topic in topics {
                        self.ask_route(now, &topic);
                    }
                }
                Reason::RouteRetry => {
                    let due: Vec<String> = self
                        .consumed_topics_without_route()
                        .filter(|(_, at)| *at <= now.mono)
                        .map(|(t, _)| t.clone())
                        .collect();
                    for topic in due {
                        self.ask_route(now, &topic);
                    }
                }
                Reason::Heartbeat => {
                    self.next_heartbeat = now.mono.plus_millis(HEARTBEAT_MS);
                    self.heartbeat_all(now);
                }
                Reason::Sends => self.handle_send_timeout(now),
                Reason::Consumers => self.handle_consumer_timeout(now),
            }
        }
    }
}

/// Which part of the client asked for a timeout. A timeout goes to every part whose
/// deadline has passed, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// A call's time is up (its caller hears `Timeout`).
    Calls,
    /// The periodic refresh of every known route.
    RouteRefresh,
    /// A consumed topic without a route, asked for again.
    RouteRetry,
    /// The heartbeat to every broker.
    Heartbeat,
    /// A parked send's deadline, or time to ask for its route again.
    Sends,
    /// Consumers: rebalance, offset commits, locks, pulls, deliveries.
    Consumers,
}

impl Reason {
    /// Every reason, in the order a timeout serves them.
    pub const ALL: [Self; 6] =
        [Self::Calls, Self::RouteRefresh, Self::RouteRetry, Self::Heartbeat, Self::Sends, Self::Consumers];
}

impl Machine for Client {
    fn handle(&mut self, now: Now, input: Input) {
        match input {
            Input::ConnOpened { conn, .. } => self.transport.opened(conn, &mut self.out),
            Input::ConnClosed { conn } => {
                for arrived in self.transport.closed(conn) {
                    self.on_arrived(now, arrived);
                }
            }
            Input::Bytes { conn, data, .. } => {
                for arrived in self.transport.feed(conn, &data, &mut self.out) {
                    self.on_arrived(now, arrived);
                }
            }
            // A client dials its servers; no runtime links one in process.
            Input::Command { conn, command, .. } => {
                tracing::warn!(
                    ?conn,
                    code = command.code,
                    "a client got a command passed in process; ignored"
                );
            }
            Input::DiskDone { .. } => {}
            Input::Timeout => self.handle_timeout(now),
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<MonoNanos> {
        self.soonest().map(|(at, _)| at)
    }
}
