//! One 5.x client's session (keyed by its `x-mq-client-id`): its declared settings, its own
//! remoting connection to this broker, over which it is registered and its requests go, as a
//! client of RocketMQ's proxy is to the broker behind it, and its open transactions. The
//! connection is attached straight to the broker's loop (`driver::Ask::Attach`): its
//! commands reach the broker as they are, never encoded, and the broker's replies go to
//! their callers on the loop itself, with no socket, pipe or task between.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use keel_core::grpc::proto::{self, Code};
use keel_core::grpc::relay::{running_info_reply, verify_message, verify_result_reply};
use keel_core::grpc::session::{orphaned_transaction, OpenTransactions};
use keel_core::grpc::status::status;
use keel_core::protocol::{RemotingCommand, RequestCode};
use tokio::time::Instant;

use tokio::sync::mpsc;

use keel_core::broker::Broker;

use crate::driver::Ask;
use crate::remoting_client::RemotingClient;

/// Most sessions at once; a new client past it is refused TOO_MANY_REQUESTS.
pub const MAX_SESSIONS: usize = 10_000;
/// Requests from the broker waiting to be turned into Telemetry commands, per session.
const SERVER_REQUESTS: usize = 256;
/// Messages sent to a client to verify and not answered yet, at most.
const MAX_VERIFIES: usize = 64;
/// How long a verify waits for the client's result: as long as the broker's relay does.
const VERIFY_TIMEOUT: Duration = Duration::from_millis(keel_core::broker::consumers::relay::RELAY_TIMEOUT_MS);

/// Where a session's server-to-client Telemetry commands go, once its stream is open.
pub type TelemetryOut = mpsc::Sender<Result<proto::TelemetryCommand, tonic::Status>>;

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// The client's id.
    pub client_id: String,
    /// What it declared on Telemetry, once it has.
    pub settings: Arc<Mutex<Option<proto::Settings>>>,
    /// Sends so far: the rotation for queues.
    pub turn: AtomicU64,
    /// Half messages sent, or checked by the broker, and not yet ended.
    pub transactions: Arc<Mutex<OpenTransactions>>,
    /// The client's Telemetry stream, while it is open.
    pub telemetry: Arc<Mutex<Option<TelemetryOut>>>,
    /// CONSUME_MESSAGE_DIRECTLY requests sent to the client as `verify_message_command`, by
    /// nonce, waiting for its `verify_message_result`.
    verifies: Arc<Mutex<Verifies>>,
    connection: Mutex<Option<Arc<RemotingClient>>>,
    /// Held while the connection is opened, so concurrent calls open one.
    opening: tokio::sync::Mutex<()>,
    /// The client's address: the broker sees the session's connection as coming from it.
    peer: SocketAddr,
    asks: mpsc::Sender<Ask<Broker>>,
}

impl Session {
    /// Its settings, if declared.
    pub fn settings(&self) -> Option<proto::Settings> {
        self.settings.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The next send's turn.
    pub fn next_turn(&self) -> u64 {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// Send `request` to the broker on this session's connection (opened on first use, and
    /// again after it broke) and wait for the answer.
    pub async fn call(&self, request: RemotingCommand) -> Result<RemotingCommand, proto::Status> {
        let connection = match self.current() {
            Some(connection) => connection,
            None => self.open().await?,
        };
        match connection.call(request).await {
            Ok(reply) => Ok(reply),
            Err(error) => {
                let mut slot = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &connection)) {
                    *slot = None;
                }
                Err(status(Code::InternalError, format!("the broker connection broke: {error}")))
            }
        }
    }

    /// The session's connection, if open.
    fn current(&self) -> Option<Arc<RemotingClient>> {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Open the session's connection: attached straight to the broker's loop, where it is
    /// served like an accepted socket.
    async fn open(&self) -> Result<Arc<RemotingClient>, proto::Status> {
        let _one_at_a_time = self.opening.lock().await;
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let stopping = || status(Code::InternalError, "the broker is stopping");
        let (requests, heard) = mpsc::channel(SERVER_REQUESTS);
        let (replies, waiters) = RemotingClient::link_sides(self.peer, Some(requests));
        let (link_tx, link) = tokio::sync::oneshot::channel();
        self.asks
            .send(Ask::Attach { peer: self.peer, replies, link: link_tx })
            .await
            .map_err(|_| stopping())?;
        let link = link.await.map_err(|_| stopping())?;
        let connection = Arc::new(RemotingClient::linked(link, waiters));
        tokio::spawn(serve_broker_requests(
            heard,
            BrokerAsks {
                connection: Arc::downgrade(&connection),
                transactions: Arc::clone(&self.transactions),
                telemetry: Arc::clone(&self.telemetry),
                settings: Arc::clone(&self.settings),
                verifies: Arc::clone(&self.verifies),
            },
        ));
        *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// The client's `verify_message_result` for `nonce`, sent with `status`: the broker's
    /// CONSUME_MESSAGE_DIRECTLY it answers is answered. An unknown or late nonce is ignored.
    pub async fn verified(&self, nonce: &str, status: Option<&proto::Status>) {
        let request = self.verifies.lock().unwrap_or_else(PoisonError::into_inner).take(nonce);
        let Some(request) = request else {
            tracing::debug!(client = %self.client_id, nonce, "a verify result for no waiting verify");
            return;
        };
        if let Some(connection) = self.current() {
            let _ = connection.answer(verify_result_reply(&request, status)).await;
        }
    }
}

/// Verifies sent to a client, by nonce, with when.
#[derive(Debug, Default)]
struct Verifies {
    waiting: BTreeMap<String, (RemotingCommand, Instant)>,
    next_nonce: u64,
}

impl Verifies {
    /// A nonce for `request`; `None` when too many wait (those past their time are dropped
    /// first).
    fn add(&mut self, request: RemotingCommand) -> Option<String> {
        let now = Instant::now();
        self.waiting.retain(|_, (_, at)| now.duration_since(*at) < VERIFY_TIMEOUT);
        if self.waiting.len() >= MAX_VERIFIES {
            return None;
        }
        self.next_nonce += 1;
        let nonce = format!("verify-{}", self.next_nonce);
        self.waiting.insert(nonce.clone(), (request, now));
        Some(nonce)
    }

    fn take(&mut self, nonce: &str) -> Option<RemotingCommand> {
        self.waiting.remove(nonce).map(|(request, _)| request)
    }
}

/// What serving the broker's requests to a session needs.
struct BrokerAsks {
    /// The session's connection, to answer on (weak: the connection owns this task's input).
    connection: Weak<RemotingClient>,
    transactions: Arc<Mutex<OpenTransactions>>,
    telemetry: Arc<Mutex<Option<TelemetryOut>>>,
    settings: Arc<Mutex<Option<proto::Settings>>>,
    verifies: Arc<Mutex<Verifies>>,
}

impl BrokerAsks {
    fn telemetry(&self) -> Option<TelemetryOut> {
        self.telemetry.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn answer(&self, reply: RemotingCommand) {
        if let Some(connection) = self.connection.upgrade() {
            let _ = connection.answer(reply).await;
        }
    }
}

/// Serve what the broker asks on a session's connection, as RocketMQ's proxy does for its
/// gRPC clients. A transaction check becomes a `recover_orphaned_transaction_command` on
/// the Telemetry stream (its half message remembered for the EndTransaction that answers
/// it; with no stream open it is dropped, and the broker checks again later). A
/// CONSUME_MESSAGE_DIRECTLY becomes a `verify_message_command`, answered when the client's
/// result comes ([`Session::verified`]). GET_CONSUMER_RUNNING_INFO is answered from the
/// declared settings.
async fn serve_broker_requests(mut heard: mpsc::Receiver<RemotingCommand>, asks: BrokerAsks) {
    while let Some(request) = heard.recv().await {
        match request.request_code() {
            RequestCode::CHECK_TRANSACTION_STATE => {
                let Some((command, transaction_id, half)) = orphaned_transaction(&request) else { continue };
                let Some(out) = asks.telemetry() else { continue };
                asks.transactions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(&transaction_id, half);
                if out.try_send(Ok(command)).is_err() {
                    tracing::debug!(
                        transaction_id,
                        "a transaction check dropped: the client's stream is full or closed"
                    );
                }
            }
            RequestCode::CONSUME_MESSAGE_DIRECTLY => {
                let refused = |why: &str| {
                    RemotingCommand::response_to(
                        &request,
                        keel_core::protocol::ResponseCode::SYSTEM_ERROR,
                        Some(why.to_owned()),
                    )
                };
                let Some(out) = asks.telemetry() else {
                    asks.answer(refused("the gRPC client has no Telemetry stream open")).await;
                    continue;
                };
                let nonce = asks.verifies.lock().unwrap_or_else(PoisonError::into_inner).add(request.clone());
                let Some(nonce) = nonce else {
                    asks.answer(refused("too many messages waiting for this client to verify")).await;
                    continue;
                };
                let Some(command) = verify_message(&request, &nonce) else {
                    asks.verifies.lock().unwrap_or_else(PoisonError::into_inner).take(&nonce);
                    asks.answer(refused("the request carries no readable message")).await;
                    continue;
                };
                if out.try_send(Ok(command)).is_err() {
                    asks.verifies.lock().unwrap_or_else(PoisonError::into_inner).take(&nonce);
                    asks.answer(refused("the client's Telemetry stream is full or closed")).await;
                }
            }
            RequestCode::GET_CONSUMER_RUNNING_INFO => {
                let settings = asks.settings.lock().unwrap_or_else(PoisonError::into_inner).clone();
                asks.answer(running_info_reply(&request, settings.as_ref())).await;
            }
            code => tracing::debug!(code = code.0, "a broker request a gRPC session does not serve; ignored"),
        }
    }
}

/// Every session, by client id.
#[derive(Debug)]
pub struct Sessions {
    by_client: Mutex<BTreeMap<String, Arc<Session>>>,
    asks: mpsc::Sender<Ask<Broker>>,
}

impl Sessions {
    /// No sessions yet; each will ask the broker's loop through `asks` for its connection.
    pub fn new(asks: mpsc::Sender<Ask<Broker>>) -> Self {
        Self { by_client: Mutex::default(), asks }
    }

    /// The session of `client_id`, made if new for a client at `peer`.
    pub fn get_or_open(&self, client_id: &str, peer: SocketAddr) -> Result<Arc<Session>, proto::Status> {
        let mut sessions = self.by_client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(session) = sessions.get(client_id) {
            return Ok(Arc::clone(session));
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(status(Code::TooManyRequests, "too many clients"));
        }
        let session = Arc::new(Session {
            client_id: client_id.to_owned(),
            settings: Arc::default(),
            turn: AtomicU64::new(0),
            transactions: Arc::default(),
            telemetry: Arc::default(),
            verifies: Arc::default(),
            connection: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            peer,
            asks: self.asks.clone(),
        });
        sessions.insert(client_id.to_owned(), Arc::clone(&session));
        Ok(session)
    }

    /// End `client_id`'s session, returning it.
    pub fn close(&self, client_id: &str) -> Option<Arc<Session>> {
        self.by_client.lock().unwrap_or_else(PoisonError::into_inner).remove(client_id)
    }
}
