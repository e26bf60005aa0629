//! Keel's Rust client library: a producer, push consumers and lite pull consumers over the core's client state
//! machine ([`keel_core::client::Client`]), carried out on tokio (or, under `--cfg madsim`,
//! on the simulator, so the simulated clients are this library).
//!
//! One [`KeelClient`] is one client instance (`MQClientInstance`): one driver task owns the
//! state machine and its connections; sends and listener results reach it over a bounded
//! command queue. A push consumer's listener runs on the blocking pool, at most `workers`
//! deliveries at a time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keel_runtime_tokio::client::ClientError> {
//! use keel_runtime_tokio::client::*;
//! let client = KeelClient::start(ClientConfig::new(vec!["127.0.0.1:9876".parse().unwrap()], "10.0.0.1@app"));
//! let message = OutgoingMessage { topic: "Orders".into(), body: "hello".into(), ..OutgoingMessage::default() };
//! let sent = client.send(SendRequest { group: "pg".into(), message, target: SendTarget::Any }).await?;
//! println!("stored at {} offset {}", sent.queue.queue_id, sent.queue_offset);
//! let listener = |_queue: &MessageQueue, messages: &[StoredMessage]| {
//!     println!("got {} messages", messages.len());
//!     ConsumeResult::Success
//! };
//! client.start_consumer(ConsumerConfig::new("cg", "Orders", "*"), listener, 20).await?;
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod driver;
mod lite_pull;

use std::path::PathBuf;
use std::sync::Arc;

pub use keel_core::client::{
    AllocateStrategy, ClientConfig, ConsumeFromWhere, ConsumeResult, ConsumerConfig, ConsumerKind,
    HalfMessage, LitePullError, MessageModel, SendError, SendRequest, SendResult, SendTarget,
    TransactionState,
};
pub use keel_core::protocol::body::MessageQueue;
pub use keel_core::protocol::client_requests::OutgoingMessage;
pub use keel_core::protocol::message::stored::StoredMessage;
pub use lite_pull::LitePullConsumer;
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, SystemClock};
use crate::driver::DriverConfig;
use driver::Command;

/// Commands waiting for the driver; a caller beyond it waits (backpressure).
const COMMAND_QUEUE: usize = 4_096;

/// What a push consumer's listener does with a delivery.
pub trait MessageListener: Send + Sync + 'static {
    /// Consume `messages` of `queue`; `Later` asks for them again later.
    fn consume(&self, queue: &MessageQueue, messages: &[StoredMessage]) -> ConsumeResult;
}

impl<F> MessageListener for F
where
    F: Fn(&MessageQueue, &[StoredMessage]) -> ConsumeResult + Send + Sync + 'static,
{
    fn consume(&self, queue: &MessageQueue, messages: &[StoredMessage]) -> ConsumeResult {
        self(queue, messages)
    }
}

/// The application's side of transactions (`TransactionListener`).
pub trait TransactionListener: Send + Sync + 'static {
    /// Run the local transaction of a half message just stored (on the sender's task, as
    /// RocketMQ runs it on the sending thread).
    fn execute(&self, message: &OutgoingMessage, result: &SendResult) -> TransactionState;
    /// The broker asks how a transaction left open ended (on a blocking thread).
    fn check(&self, message: &StoredMessage) -> TransactionState;
}

/// A transactional producer: each send stores a half message, runs the local transaction
/// and commits or rolls back by its answer.
#[derive(Clone)]
pub struct TransactionProducer {
    group: String,
    listener: Arc<dyn TransactionListener>,
    commands: mpsc::Sender<Command>,
}

impl core::fmt::Debug for TransactionProducer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TransactionProducer").field("group", &self.group).finish_non_exhaustive()
    }
}

/// What a transactional send achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// Where the half message was stored.
    pub send: SendResult,
    /// What the local transaction answered (and the broker was told, unless `Unknown`).
    pub state: TransactionState,
}

impl TransactionProducer {
    /// Send `message` in a transaction: store the half message, run the listener's
    /// `execute`, and end the transaction by its answer (oneway; a lost end is checked
    /// back). A failed send runs nothing.
    pub async fn send(&self, message: OutgoingMessage) -> Result<TransactionSendResult, ClientError> {
        let request =
            SendRequest { group: self.group.clone(), message: message.clone(), target: SendTarget::Any };
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::SendHalf { request, reply }).await.map_err(|_| ClientError::ShutDown)?;
        let (send, half) = answer.await.map_err(|_| ClientError::ShutDown)??;
        let state = self.listener.execute(&message, &send);
        match half {
            Some(half) if state != TransactionState::Unknown => {
                let command = Command::EndTransaction { half, state, from_check: false };
                self.commands.send(command).await.map_err(|_| ClientError::ShutDown)?;
            }
            Some(_) => {}
            None => tracing::warn!(msg_id = send.msg_id, "half message's broker unknown; left to its check"),
        }
        Ok(TransactionSendResult { send, state })
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The send failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A lite pull consumer refused the call.
    #[error(transparent)]
    LitePull(#[from] LitePullError),
    /// The client was shut down (or its driver stopped).
    #[error("the client is shut down")]
    ShutDown,
}

/// A running client instance.
#[derive(Debug, Clone)]
pub struct KeelClient {
    commands: mpsc::Sender<Command>,
}

/// How a client runs, beyond the core's settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The clock (the simulator gives each node its own).
    pub clock: Arc<dyn Clock>,
    /// Where broadcasting consumers keep their offsets (`<dir>/<clientId>/<group>/offsets.json`,
    /// RocketMQ's `LocalFileOffsetStore` layout); `None` keeps them in memory only.
    pub offsets_dir: Option<PathBuf>,
}

impl Default for ClientOptions {
    /// The system clock; offsets under `~/.rocketmq_offsets` (RocketMQ's default).
    fn default() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self { clock: Arc::new(SystemClock::start()), offsets_dir: home.map(|h| h.join(".rocketmq_offsets")) }
    }
}

impl KeelClient {
    /// Start a client on the current tokio runtime, with the default options.
    #[must_use]
    pub fn start(config: ClientConfig) -> Self {
        Self::start_with(config, ClientOptions::default())
    }

    /// Start a client reading `clock`, keeping broadcast offsets in memory (the simulator's
    /// clients).
    #[must_use]
    pub fn start_with_clock(config: ClientConfig, clock: Arc<dyn Clock>) -> Self {
        Self::start_with(config, ClientOptions { clock, offsets_dir: None })
    }

    /// Start a client with `options`.
    #[must_use]
    pub fn start_with(config: ClientConfig, options: ClientOptions) -> Self {
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
        let driver_config = DriverConfig { clock: options.clock, ..DriverConfig::default() };
        let offsets = options.offsets_dir.map(|dir| driver::LocalOffsets::new(dir, &config.client_id));
        tokio::spawn(driver::run(config, queue, commands.downgrade(), driver_config, offsets));
        Self { commands }
    }

    /// Send a message and wait for the broker's answer (retried on other brokers as the
    /// client's `send_retries` allow).
    pub async fn send(&self, request: SendRequest) -> Result<SendResult, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Send { request, reply }).await.map_err(|_| ClientError::ShutDown)?;
        Ok(answer.await.map_err(|_| ClientError::ShutDown)??)
    }

    /// Start a push consumer whose `listener` runs at most `workers` deliveries at a time.
    pub async fn start_consumer(
        &self,
        config: ConsumerConfig,
        listener: impl MessageListener,
        workers: usize,
    ) -> Result<(), ClientError> {
        let command = Command::Subscribe { config, listener: Arc::new(listener), workers: workers.max(1) };
        self.commands.send(command).await.map_err(|_| ClientError::ShutDown)
    }

    /// Start a lite pull consumer (`config.kind` is set to [`ConsumerKind::LitePull`]): the
    /// application polls it for messages.
    pub async fn start_lite_pull_consumer(
        &self,
        mut config: ConsumerConfig,
    ) -> Result<LitePullConsumer, ClientError> {
        config.kind = ConsumerKind::LitePull;
        let group = config.group.clone();
        self.commands.send(Command::StartLitePull { config }).await.map_err(|_| ClientError::ShutDown)?;
        Ok(LitePullConsumer { group, commands: self.commands.clone() })
    }

    /// Start a transactional producer of `group`; `listener` runs local transactions and
    /// answers the broker's checks.
    pub async fn start_transaction_producer(
        &self,
        group: &str,
        listener: impl TransactionListener,
    ) -> Result<TransactionProducer, ClientError> {
        let listener: Arc<dyn TransactionListener> = Arc::new(listener);
        let command = Command::CheckWith { group: group.to_owned(), listener: Arc::clone(&listener) };
        self.commands.send(command).await.map_err(|_| ClientError::ShutDown)?;
        Ok(TransactionProducer { group: group.to_owned(), listener, commands: self.commands.clone() })
    }

    /// When this client first learned `topic`'s route (from then on its brokers count it in
    /// its consumer groups); `None` if it has not yet.
    pub async fn first_routed_at(&self, topic: &str) -> Result<Option<tokio::time::Instant>, ClientError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::FirstRouted { topic: topic.to_owned(), reply };
        self.commands.send(command).await.map_err(|_| ClientError::ShutDown)?;
        answer.await.map_err(|_| ClientError::ShutDown)
    }

    /// Stop one consumer: its offsets are committed and its queues released.
    pub async fn stop_consumer(&self, group: &str) -> Result<(), ClientError> {
        let (done, finished) = oneshot::channel();
        self.commands
            .send(Command::StopConsumer { group: group.to_owned(), done })
            .await
            .map_err(|_| ClientError::ShutDown)?;
        finished.await.map_err(|_| ClientError::ShutDown)
    }

    /// Shut down: commit offsets, release locks, leave every group, close connections.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}
