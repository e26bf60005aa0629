//! `MessagingService`: each RPC decoded, translated by the core (`keel_core::grpc`) into the
//! remoting requests the broker serves, sent on the client's session connection, and the
//! answers translated back. Nothing here decides anything about messages.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use keel_core::broker::Broker;
use keel_core::grpc::proto::{self, telemetry_command::Command, Code};
use keel_core::grpc::status::{from_remoting, ok, status};
use keel_core::grpc::{receive, route, send, session as core_session};
use keel_core::protocol::body::{SubscriptionGroupConfig, TopicConfig, TopicRouteData};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader, SendMessageResponseHeader};
use keel_core::protocol::json;
use keel_core::protocol::message::message_id::decode_offset_message_id;
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response};

use super::service::messaging_service_server::MessagingService;
use super::session::{Session, Sessions};
use crate::driver::Ask;
use crate::remoting_client::RemotingClient;

/// The header every call names its client by.
pub(super) const CLIENT_ID: &str = "x-mq-client-id";
/// How long a name server has to answer a route query.
const NAMESRV_TIMEOUT: Duration = Duration::from_secs(3);
/// Server-to-client Telemetry commands waiting to be written, per client.
const TELEMETRY_QUEUE: usize = 64;

type Reply<T> = Result<Response<T>, tonic::Status>;

/// The service, shared by every connection.
#[derive(Debug, Clone)]
pub struct Messaging {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions: Sessions,
    namesrvs: Vec<SocketAddr>,
    grpc_port: u16,
    looks: mpsc::Sender<Ask<Broker>>,
    /// Topic configs recently looked up, with when: a send needs its topic's queue count,
    /// and asking the broker's loop for it on every send would cost a wake-up each.
    topics: std::sync::Mutex<std::collections::BTreeMap<String, CachedTopic>>,
    broker_name: std::sync::OnceLock<String>,
}

/// A topic's config as looked up (`None`: the broker has no such topic), with when;
/// shared with each send, not cloned.
type CachedTopic = (Instant, Option<Arc<TopicConfig>>);

/// How long a looked-up topic config is used before it is looked up again.
const TOPIC_CACHE_TTL: Duration = Duration::from_secs(3);
/// Most topic configs kept; past it the cache starts over.
const TOPIC_CACHE_MAX: usize = 10_000;

impl Messaging {
    /// A service whose routes come from `namesrvs` and name every broker's gRPC endpoint
    /// on `grpc_port`, and which asks the broker's loop through `looks` (for topics, and for
    /// each session's connection).
    pub fn new(namesrvs: Vec<SocketAddr>, grpc_port: u16, looks: mpsc::Sender<Ask<Broker>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: Sessions::new(looks.clone()),
                namesrvs,
                grpc_port,
                looks,
                topics: std::sync::Mutex::default(),
                broker_name: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The session of the client a request names.
    fn session<T>(&self, request: &Request<T>) -> Result<Arc<Session>, proto::Status> {
        let client_id = request.metadata().get(CLIENT_ID).and_then(|v| v.to_str().ok());
        self.session_of(client_id, request.remote_addr())
    }

    /// The session of client `client_id` (the `x-mq-client-id` header) at `peer`.
    pub(super) fn session_of(
        &self,
        client_id: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<Arc<Session>, proto::Status> {
        let client_id = client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| status(Code::ClientIdRequired, format!("the {CLIENT_ID} header is required")))?;
        let peer = peer.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        self.inner.sessions.get_or_open(client_id, peer)
    }

    /// SendMessage for `session`: the messages planned into a remoting send on a queue of
    /// the topic in turn, and the broker's answer translated back.
    pub(super) async fn send(
        &self,
        session: Result<Arc<Session>, proto::Status>,
        request: &proto::SendMessageRequest,
    ) -> proto::SendMessageResponse {
        let refused = |status| proto::SendMessageResponse { status: Some(status), entries: Vec::new() };
        let session = match session {
            Ok(session) => session,
            Err(status) => return refused(status),
        };
        let plan = match send::plan(request, now_ms) {
            Ok(plan) => plan,
            Err(status) => return refused(status),
        };
        let queues = self.topic_config(&plan.topic).await.map_or(4, |c| c.write_queue_nums);
        let queue = plan.queue(queues, session.next_turn());
        let reply = match session.call(plan.command(queue)).await {
            Ok(reply) => reply,
            Err(status) => return refused(status),
        };
        if plan.transactional && reply.response_code() == ResponseCode::SUCCESS {
            let header = SendMessageResponseHeader::decode(&reply.ext_fields).unwrap_or_default();
            if let (Some((_, phys)), Some(id)) = (
                decode_offset_message_id(header.msg_id.split(',').next().unwrap_or_default()),
                plan.message_ids.first(),
            ) {
                let half = core_session::HalfMessage { phys, queue_offset: header.queue_offset };
                session.transactions.lock().unwrap_or_else(PoisonError::into_inner).insert(id, half);
            }
        }
        plan.response(&reply)
    }

    /// The route of `topic` from the first name server that answers.
    async fn route(&self, topic: &str) -> Result<TopicRouteData, proto::Status> {
        let header =
            GetRouteInfoRequestHeader { topic: topic.to_owned(), accept_standard_json_only: Some(true) };
        let mut last = status(Code::InternalError, "the broker has no name server (namesrvAddr)");
        for addr in &self.inner.namesrvs {
            let request =
                RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 0, header.to_ext_fields());
            let answer = tokio::time::timeout(NAMESRV_TIMEOUT, async {
                RemotingClient::connect(*addr).await?.call(request).await
            })
            .await;
            match answer {
                Ok(Ok(reply)) if reply.response_code() == ResponseCode::SUCCESS => {
                    return json::from_slice(&reply.body)
                        .map_err(|e| status(Code::InternalError, format!("the route does not decode: {e}")));
                }
                Ok(Ok(reply)) if reply.response_code() == ResponseCode::TOPIC_NOT_EXIST => {
                    return Err(status(Code::TopicNotFound, format!("topic {topic} not found")));
                }
                Ok(Ok(reply)) => last = from_remoting(reply.response_code(), reply.remark.as_deref()),
                Ok(Err(error)) => last = status(Code::InternalError, format!("name server {addr}: {error}")),
                Err(_) => last = status(Code::InternalError, format!("name server {addr} did not answer")),
            }
        }
        Err(last)
    }

    /// This broker's config of `topic`, if it has the topic, as of at most
    /// `TOPIC_CACHE_TTL` ago.
    async fn topic_config(&self, topic: &str) -> Option<Arc<TopicConfig>> {
        let now = Instant::now();
        if let Some((at, config)) =
            self.inner.topics.lock().unwrap_or_else(PoisonError::into_inner).get(topic)
        {
            if now.duration_since(*at) < TOPIC_CACHE_TTL {
                return config.clone();
            }
        }
        let config = self.look_up_topic(topic).await.map(Arc::new);
        let mut cache = self.inner.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= TOPIC_CACHE_MAX {
            cache.clear();
        }
        cache.insert(topic.to_owned(), (now, config.clone()));
        config
    }

    /// The queues of `topic`, each broker at its gRPC endpoint, with the message types the
    /// topic accepts (its `message.type` as this broker keeps it; NORMAL without one).
    async fn queues(&self, topic: &proto::Resource) -> Result<Vec<proto::MessageQueue>, proto::Status> {
        let route = self.route(&topic.name).await?;
        let port = self.inner.grpc_port;
        let endpoint = |addr: &str| addr.rsplit_once(':').map(|(host, _)| route::endpoints(host, port));
        let config = self.topic_config(&topic.name).await;
        let kind = config.as_ref().and_then(|c| c.attributes.get(keel_core::broker::topics::MESSAGE_TYPE));
        let accepted = route::accepted_types(kind.map(String::as_str));
        Ok(route::message_queues(topic, &route, &accepted, &endpoint))
    }

    /// This broker's settings of consumer group `group`, if it has the group.
    async fn group_config(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        let group = group.to_owned();
        crate::driver::look(&self.inner.looks, move |broker: &Broker, _| broker.group_config(&group))
            .await
            .ok()
            .flatten()
    }

    /// This broker's name, for the receipt handles it gives.
    async fn broker_name(&self) -> String {
        if let Some(name) = self.inner.broker_name.get() {
            return name.clone();
        }
        let name =
            crate::driver::look(&self.inner.looks, |broker: &Broker, _| broker.config().broker_name.clone())
                .await
                .unwrap_or_default();
        self.inner.broker_name.get_or_init(|| name).clone()
    }

    /// Ask the broker's loop for its config of `topic`.
    async fn look_up_topic(&self, topic: &str) -> Option<TopicConfig> {
        let topic = topic.to_owned();
        crate::driver::look(&self.inner.looks, move |broker: &Broker, _| broker.topics().get(&topic).cloned())
            .await
            .ok()
            .flatten()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A reply of `status` only, for RPCs Keel does not serve (yet).
fn not_served(what: &str) -> proto::Status {
    status(Code::NotImplemented, format!("{what} is not served by Keel"))
}

#[tonic::async_trait]
impl MessagingService for Messaging {
    async fn query_route(
        &self,
        request: Request<proto::QueryRouteRequest>,
    ) -> Reply<proto::QueryRouteResponse> {
        if let Err(refused) = self.session(&request) {
            return Ok(Response::new(proto::QueryRouteResponse {
                status: Some(refused),
                message_queues: Vec::new(),
            }));
        }
        let topic = request.into_inner().topic.unwrap_or_default();
        let reply = match self.queues(&topic).await {
            Ok(message_queues) => proto::QueryRouteResponse { status: Some(ok()), message_queues },
            Err(refused) => proto::QueryRouteResponse { status: Some(refused), message_queues: Vec::new() },
        };
        Ok(Response::new(reply))
    }

    async fn heartbeat(&self, request: Request<proto::HeartbeatRequest>) -> Reply<proto::HeartbeatResponse> {
        let answer = async {
            let session = self.session(&request)?;
            let settings = session.settings().ok_or_else(|| {
                status(Code::UnrecognizedClientType, "settings must come first, on Telemetry")
            })?;
            let reply = session.call(core_session::heartbeat(&session.client_id, &settings)).await?;
            Ok::<_, proto::Status>(from_remoting(reply.response_code(), reply.remark.as_deref()))
        };
        let status = answer.await.unwrap_or_else(|refused| refused);
        Ok(Response::new(proto::HeartbeatResponse { status: Some(status) }))
    }

    async fn send_message(
        &self,
        request: Request<proto::SendMessageRequest>,
    ) -> Reply<proto::SendMessageResponse> {
        let session = self.session(&request);
        Ok(Response::new(self.send(session, request.get_ref()).await))
    }

    async fn query_assignment(
        &self,
        request: Request<proto::QueryAssignmentRequest>,
    ) -> Reply<proto::QueryAssignmentResponse> {
        let answer = async {
            self.session(&request)?;
            let request = request.get_ref();
            let topic = request.topic.clone().unwrap_or_default();
            let group = request.group.as_ref().map(|g| g.name.clone()).unwrap_or_default();
            let queues = self.queues(&topic).await?;
            let fifo = self.group_config(&group).await.is_some_and(|g| g.consume_message_orderly);
            let assignments = receive::assignments(&queues, fifo);
            if assignments.is_empty() {
                return Err(status(Code::Forbidden, format!("no readable queue of topic {}", topic.name)));
            }
            Ok(assignments)
        };
        let reply = match answer.await {
            Ok(assignments) => proto::QueryAssignmentResponse { status: Some(ok()), assignments },
            Err(refused) => proto::QueryAssignmentResponse { status: Some(refused), assignments: Vec::new() },
        };
        Ok(Response::new(reply))
    }

    type ReceiveMessageStream = ReceiverStream<Result<proto::ReceiveMessageResponse, tonic::Status>>;

    async fn receive_message(
        &self,
        request: Request<proto::ReceiveMessageRequest>,
    ) -> Reply<Self::ReceiveMessageStream> {
        let frames = async {
            let session = self.session(&request)?;
            let request = request.get_ref();
            let group = request.group.as_ref().map(|g| g.name.clone()).unwrap_or_default();
            let fifo = self.group_config(&group).await.is_some_and(|g| g.consume_message_orderly);
            let pop = receive::pop_of(request, fifo)?;
            let reply = session.call(receive::pop_command(&pop, now_ms())).await?;
            Ok::<_, proto::Status>(receive::receive_frames(&reply, &self.broker_name().await, now_ms()))
        };
        let frames = frames.await.unwrap_or_else(|refused| {
            vec![proto::ReceiveMessageResponse {
                content: Some(proto::receive_message_response::Content::Status(refused)),
            }]
        });
        let (tx, rx) = mpsc::channel(frames.len().max(1));
        for frame in frames {
            let _ = tx.try_send(Ok(frame));
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn ack_message(
        &self,
        request: Request<proto::AckMessageRequest>,
    ) -> Reply<proto::AckMessageResponse> {
        let session = match self.session(&request) {
            Ok(session) => session,
            Err(refused) => {
                return Ok(Response::new(proto::AckMessageResponse {
                    status: Some(refused),
                    entries: Vec::new(),
                }))
            }
        };
        let request = request.get_ref();
        let group = request.group.as_ref().map(|g| g.name.clone()).unwrap_or_default();
        let topic = request.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
        let mut entries = Vec::with_capacity(request.entries.len());
        for entry in &request.entries {
            let outcome = match receive::ack_command(&group, &topic, entry) {
                Ok(command) => session.call(command).await,
                Err(refused) => Err(refused),
            };
            entries.push(receive::ack_result(entry, outcome.as_ref().map_err(Clone::clone)));
        }
        let status = receive::ack_status(&entries);
        Ok(Response::new(proto::AckMessageResponse { status: Some(status), entries }))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<proto::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Reply<proto::ForwardMessageToDeadLetterQueueResponse> {
        let answer = async {
            let session = self.session(&request)?;
            let (to_dlq, ack) = receive::forward_to_dlq_commands(request.get_ref())?;
            let reply = session.call(to_dlq).await?;
            if reply.response_code() != ResponseCode::SUCCESS {
                return Ok(from_remoting(reply.response_code(), reply.remark.as_deref()));
            }
            let reply = session.call(ack).await?;
            Ok::<_, proto::Status>(from_remoting(reply.response_code(), reply.remark.as_deref()))
        };
        let status = answer.await.unwrap_or_else(|refused| refused);
        Ok(Response::new(proto::ForwardMessageToDeadLetterQueueResponse { status: Some(status) }))
    }

    type PullMessageStream = ReceiverStream<Result<proto::PullMessageResponse, tonic::Status>>;

    async fn pull_message(
        &self,
        _request: Request<proto::PullMessageRequest>,
    ) -> Reply<Self::PullMessageStream> {
        let (tx, rx) = mpsc::channel(1);
        let frame = proto::PullMessageResponse {
            content: Some(proto::pull_message_response::Content::Status(status(
                Code::NotImplemented,
                "PullMessage is not served: RocketMQ's proxy does not serve it either; use ReceiveMessage",
            ))),
        };
        let _ = tx.try_send(Ok(frame));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn update_offset(
        &self,
        _request: Request<proto::UpdateOffsetRequest>,
    ) -> Reply<proto::UpdateOffsetResponse> {
        Ok(Response::new(proto::UpdateOffsetResponse {
            status: Some(not_served("UpdateOffset (pull consumers)")),
        }))
    }

    async fn get_offset(
        &self,
        _request: Request<proto::GetOffsetRequest>,
    ) -> Reply<proto::GetOffsetResponse> {
        let refused = not_served("GetOffset (pull consumers)");
        Ok(Response::new(proto::GetOffsetResponse { status: Some(refused), offset: 0 }))
    }

    async fn query_offset(
        &self,
        _request: Request<proto::QueryOffsetRequest>,
    ) -> Reply<proto::QueryOffsetResponse> {
        let refused = not_served("QueryOffset (pull consumers)");
        Ok(Response::new(proto::QueryOffsetResponse { status: Some(refused), offset: 0 }))
    }

    async fn end_transaction(
        &self,
        request: Request<proto::EndTransactionRequest>,
    ) -> Reply<proto::EndTransactionResponse> {
        let answer = async {
            let session = self.session(&request)?;
            let end = request.get_ref();
            let half = session
                .transactions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(&end.transaction_id)
                .ok_or_else(|| {
                    status(
                        Code::InvalidTransactionId,
                        "no half message of this session has that transaction_id",
                    )
                })?;
            let reply = session.call(core_session::end_transaction(end, half)?).await?;
            Ok::<_, proto::Status>(from_remoting(reply.response_code(), reply.remark.as_deref()))
        };
        let status = answer.await.unwrap_or_else(|refused| refused);
        Ok(Response::new(proto::EndTransactionResponse { status: Some(status) }))
    }

    type TelemetryStream = ReceiverStream<Result<proto::TelemetryCommand, tonic::Status>>;

    async fn telemetry(
        &self,
        request: Request<tonic::Streaming<proto::TelemetryCommand>>,
    ) -> Reply<Self::TelemetryStream> {
        let session =
            self.session(&request).map_err(|refused| tonic::Status::invalid_argument(refused.message))?;
        let mut inbound = request.into_inner();
        let service = self.clone();
        let (tx, rx) = mpsc::channel(TELEMETRY_QUEUE);
        *session.telemetry.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx.clone());
        tokio::spawn(async move {
            loop {
                let command = match inbound.message().await {
                    Ok(Some(command)) => command,
                    Ok(None) | Err(_) => break,
                };
                let declared = match command.command {
                    Some(Command::Settings(declared)) => declared,
                    Some(Command::VerifyMessageResult(result)) => {
                        session.verified(&result.nonce, command.status.as_ref()).await;
                        continue;
                    }
                    _ => continue,
                };
                if !core_session::declares_a_role(&declared) {
                    let _ = tx
                        .send(Err(tonic::Status::invalid_argument(
                            "settings declare neither publishing nor subscription",
                        )))
                        .await;
                    break;
                }
                let group = match core_session::subscription_group(&declared) {
                    Some(name) => service.group_config(&name).await,
                    None => None,
                };
                let merged = core_session::merged_settings(&declared, group.as_ref());
                *session.settings.lock().unwrap_or_else(PoisonError::into_inner) = Some(declared);
                let reply =
                    proto::TelemetryCommand { status: Some(ok()), command: Some(Command::Settings(merged)) };
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn notify_client_termination(
        &self,
        request: Request<proto::NotifyClientTerminationRequest>,
    ) -> Reply<proto::NotifyClientTerminationResponse> {
        let answer = async {
            let session = self.session(&request)?;
            self.inner.sessions.close(&session.client_id);
            if let Some(settings) = session.settings() {
                for leave in core_session::unregister(&session.client_id, &settings) {
                    session.call(leave).await?;
                }
            }
            Ok::<_, proto::Status>(ok())
        };
        let status = answer.await.unwrap_or_else(|refused| refused);
        Ok(Response::new(proto::NotifyClientTerminationResponse { status: Some(status) }))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<proto::ChangeInvisibleDurationRequest>,
    ) -> Reply<proto::ChangeInvisibleDurationResponse> {
        let answer = async {
            let session = self.session(&request)?;
            let (command, handle) = receive::change_invisible_command(request.get_ref())?;
            let reply = session.call(command).await?;
            receive::changed_handle(&handle, &reply)
        };
        let reply = match answer.await {
            Ok(receipt_handle) => {
                proto::ChangeInvisibleDurationResponse { status: Some(ok()), receipt_handle }
            }
            Err(refused) => proto::ChangeInvisibleDurationResponse {
                status: Some(refused),
                receipt_handle: String::new(),
            },
        };
        Ok(Response::new(reply))
    }

    async fn recall_message(
        &self,
        request: Request<proto::RecallMessageRequest>,
    ) -> Reply<proto::RecallMessageResponse> {
        let answer = async {
            let session = self.session(&request)?;
            let reply = session.call(send::recall_command(request.get_ref())?).await?;
            Ok::<_, proto::Status>(send::recall_response(&reply))
        };
        let reply = answer.await.unwrap_or_else(|refused| proto::RecallMessageResponse {
            status: Some(refused),
            message_id: String::new(),
        });
        Ok(Response::new(reply))
    }

    async fn sync_lite_subscription(
        &self,
        _request: Request<proto::SyncLiteSubscriptionRequest>,
    ) -> Reply<proto::SyncLiteSubscriptionResponse> {
        let refused =
            not_served("SyncLiteSubscription (lite topics; RocketMQ's server does not serve it either)");
        Ok(Response::new(proto::SyncLiteSubscriptionResponse { status: Some(refused) }))
    }
}
