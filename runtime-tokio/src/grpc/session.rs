//! One 5.x client's session (keyed by its `x-mq-client-id`): its declared settings, its own
//! remoting connection to this broker, over which it is registered and its requests go, as a
//! client of RocketMQ's proxy is to the broker behind it, and its open transactions. The
//! connection is a pipe in memory into the broker's loop, served like an accepted socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::grpc::proto::{self, Code};
use keel_core::grpc::session::{orphaned_transaction, OpenTransactions};
use keel_core::grpc::status::status;
use keel_core::protocol::RemotingCommand;

use tokio::sync::mpsc;

use keel_core::broker::Broker;

use crate::driver::Ask;
use crate::remoting_client::RemotingClient;

/// Most sessions at once; a new client past it is refused TOO_MANY_REQUESTS.
pub const MAX_SESSIONS: usize = 10_000;
/// Requests from the broker waiting to be turned into Telemetry commands, per session.
const SERVER_REQUESTS: usize = 256;
/// Bytes a session's pipe to the broker holds in each direction.
const PIPE_BYTES: usize = 1 << 20;

/// Where a session's server-to-client Telemetry commands go, once its stream is open.
pub type TelemetryOut = mpsc::Sender<Result<proto::TelemetryCommand, tonic::Status>>;

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// The client's id.
    pub client_id: String,
    /// What it declared on Telemetry, once it has.
    pub settings: Mutex<Option<proto::Settings>>,
    /// Sends so far: the rotation for queues.
    pub turn: AtomicU64,
    /// Half messages sent, or checked by the broker, and not yet ended.
    pub transactions: Arc<Mutex<OpenTransactions>>,
    /// The client's Telemetry stream, while it is open.
    pub telemetry: Arc<Mutex<Option<TelemetryOut>>>,
    connection: tokio::sync::Mutex<Option<Arc<RemotingClient>>>,
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
    pub async fn call(&self, mut request: RemotingCommand) -> Result<RemotingCommand, proto::Status> {
        // RocketMQ's binary header: cheaper than JSON both ways, and only Keel reads it here.
        request.serialize_type = keel_core::protocol::SerializeType::RocketMq;
        let connection = {
            let mut slot = self.connection.lock().await;
            match slot.as_ref() {
                Some(connection) => Arc::clone(connection),
                None => {
                    let (requests, heard) = mpsc::channel(SERVER_REQUESTS);
                    let (ours, brokers) = tokio::io::duplex(PIPE_BYTES);
                    self.asks
                        .send(Ask::Connect { stream: brokers, peer: self.peer })
                        .await
                        .map_err(|_| status(Code::InternalError, "the broker is stopping"))?;
                    let connection = Arc::new(RemotingClient::over(ours, self.peer, Some(requests)));
                    tokio::spawn(relay_checks(
                        heard,
                        Arc::clone(&self.transactions),
                        Arc::clone(&self.telemetry),
                    ));
                    *slot = Some(Arc::clone(&connection));
                    connection
                }
            }
        };
        match connection.call(request).await {
            Ok(reply) => Ok(reply),
            Err(error) => {
                *self.connection.lock().await = None;
                Err(status(Code::InternalError, format!("the broker connection broke: {error}")))
            }
        }
    }
}

/// Turn the broker's transaction checks on a session's connection into
/// `recover_orphaned_transaction_command`s on its Telemetry stream, remembering each half
/// message for the EndTransaction that answers it. A check with no stream open is dropped:
/// the broker checks again later.
async fn relay_checks(
    mut heard: mpsc::Receiver<RemotingCommand>,
    transactions: Arc<Mutex<OpenTransactions>>,
    telemetry: Arc<Mutex<Option<TelemetryOut>>>,
) {
    while let Some(request) = heard.recv().await {
        let Some((command, transaction_id, half)) = orphaned_transaction(&request) else { continue };
        let out = telemetry.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(out) = out else { continue };
        transactions.lock().unwrap_or_else(PoisonError::into_inner).insert(&transaction_id, half);
        if out.try_send(Ok(command)).is_err() {
            tracing::debug!(
                transaction_id,
                "a transaction check dropped: the client's stream is full or closed"
            );
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
            settings: Mutex::new(None),
            turn: AtomicU64::new(0),
            transactions: Arc::default(),
            telemetry: Arc::default(),
            connection: tokio::sync::Mutex::new(None),
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
