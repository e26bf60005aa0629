//! The client's driver task: the same connection plumbing as the server loop
//! ([`crate::driver`]), plus the application's commands in and the client's events out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_core::client::{
    Client, ClientConfig, ClientEvent, ConsumeResult, ConsumerConfig, DeliveryId, HalfMessage, MessageModel,
    SendError, SendRequest, SendResult, TransactionState,
};
use keel_core::io::{Input, Machine};
use keel_core::protocol::body::MessageQueue;
use keel_core::protocol::message::stored::StoredMessage;
use tokio::sync::{mpsc, oneshot};

use super::lite_pull::{LiteOp, PollReply, PollWaiters};
use super::{MessageListener, TransactionListener};
use crate::driver::{ConnLimits, Connections, DriverConfig, Event};

/// How long a shutdown waits for its last oneway requests to be written.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(200);

/// What the application asks of the driver.
pub(super) enum Command {
    Send {
        request: SendRequest,
        reply: oneshot::Sender<Result<SendResult, keel_core::client::SendError>>,
    },
    Subscribe {
        config: ConsumerConfig,
        listener: Arc<dyn MessageListener>,
        workers: usize,
    },
    Consumed {
        id: DeliveryId,
        result: ConsumeResult,
    },
    SendHalf {
        request: SendRequest,
        reply: oneshot::Sender<Result<(SendResult, Option<HalfMessage>), SendError>>,
    },
    EndTransaction {
        half: HalfMessage,
        state: TransactionState,
        from_check: bool,
    },
    CheckWith {
        group: String,
        listener: Arc<dyn TransactionListener>,
    },
    StartLitePull {
        config: ConsumerConfig,
    },
    Poll {
        group: String,
        max: usize,
        timeout: Duration,
        reply: PollReply,
    },
    Lite {
        group: String,
        op: LiteOp,
        reply: oneshot::Sender<Result<(), keel_core::client::LitePullError>>,
    },
    Assignment {
        group: String,
        reply: oneshot::Sender<Vec<MessageQueue>>,
    },
    FirstRouted {
        topic: String,
        reply: oneshot::Sender<Option<tokio::time::Instant>>,
    },
    StopConsumer {
        group: String,
        done: oneshot::Sender<()>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Who waits for a send: a plain send, or a half message (with what ending it needs).
enum SendReply {
    Plain(oneshot::Sender<Result<SendResult, SendError>>),
    Half(String, oneshot::Sender<Result<(SendResult, Option<HalfMessage>), SendError>>),
}

/// One delivery for a listener.
type Delivery = (DeliveryId, MessageQueue, Vec<StoredMessage>);

/// Broadcasting consumers' offsets files (`<dir>/<clientId>/<group>/offsets.json`).
#[derive(Debug)]
pub(super) struct LocalOffsets {
    dir: PathBuf,
}

impl LocalOffsets {
    pub(super) fn new(root: PathBuf, client_id: &str) -> Self {
        Self { dir: root.join(client_id.replace(['/', '\\'], "_")) }
    }

    fn path(&self, group: &str) -> PathBuf {
        self.dir.join(group.replace(['/', '\\'], "_")).join("offsets.json")
    }

    /// The group's file, if there is one.
    fn load(&self, group: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(group)).ok()
    }

    /// Replace the group's file atomically (write a temporary file, rename it over). Small
    /// and every few seconds at most, so it is written from the driver task directly.
    fn save(&self, group: &str, content: &[u8]) -> std::io::Result<()> {
        let path = self.path(group);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, &path)
    }
}

/// Commands handled in one turn of the loop before the outputs are carried out: the
/// listeners' results arrive one per delivery, and a turn per result would cost a timer
/// registration and an output pass each.
const COMMAND_BATCH: usize = 256;

/// The driver's state beside the connections.
struct ClientDriver {
    client: Client,
    clock: Arc<dyn crate::clock::Clock>,
    sends: BTreeMap<keel_core::client::SendId, SendReply>,
    /// Transaction listeners by producer group, asked when the broker checks back.
    checkers: BTreeMap<String, Arc<dyn TransactionListener>>,
    // Unbounded, but bounded in effect: the core delivers only what flow control let it
    // pull (pullThresholdForQueue per owned queue).
    listeners: BTreeMap<String, Listeners>,
    polls: PollWaiters,
    shutdown: Option<oneshot::Sender<()>>,
    offsets: Option<LocalOffsets>,
    results: mpsc::WeakSender<Command>,
}

impl ClientDriver {
    /// Carry out one command (`None`: every handle is gone).
    fn on_command(&mut self, command: Option<Command>) {
        let now = self.clock.now();
        let client = &mut self.client;
        match command {
            Some(Command::Send { request, reply }) => {
                let id = client.send(now, request);
                self.sends.insert(id, SendReply::Plain(reply));
            }
            Some(Command::SendHalf { request, reply }) => {
                let group = request.group.clone();
                let id = client.send_half(now, request);
                self.sends.insert(id, SendReply::Half(group, reply));
            }
            Some(Command::EndTransaction { half, state, from_check }) => {
                client.end_transaction(&half, state, from_check);
            }
            Some(Command::CheckWith { group, listener }) => {
                client.start_producer(now, &group);
                self.checkers.insert(group, listener);
            }
            Some(Command::Subscribe { mut config, listener, workers }) => {
                let listener = Listeners::start(listener, workers, self.results.clone());
                self.listeners.insert(config.group.clone(), listener);
                load_offsets(&mut config, self.offsets.as_ref());
                client.start_consumer(now, config);
            }
            Some(Command::StartLitePull { mut config }) => {
                load_offsets(&mut config, self.offsets.as_ref());
                client.start_consumer(now, config);
            }
            Some(Command::Poll { group, max, timeout, reply }) => {
                let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                self.polls.poll(client, now, group, max, now.mono.plus_millis(millis), reply);
            }
            Some(Command::Lite { group, op, reply }) => {
                let _ = reply.send(op.apply(client, now, &group));
            }
            Some(Command::Assignment { group, reply }) => {
                let _ = reply.send(client.assignment(&group));
            }
            Some(Command::FirstRouted { topic, reply }) => {
                let _ = reply.send(client.first_routed_at(&topic).map(|at| self.clock.instant(at)));
            }
            Some(Command::Consumed { id, result }) => client.consumed(now, id, result),
            Some(Command::StopConsumer { group, done }) => {
                client.stop_consumer(now, &group);
                self.listeners.remove(&group);
                self.polls.close(&group);
                let _ = done.send(());
            }
            Some(Command::Shutdown { done }) => {
                client.shutdown(now);
                self.listeners.clear();
                self.shutdown = Some(done);
            }
            None => {
                client.shutdown(now);
                self.shutdown = Some(oneshot::channel().0);
            }
        }
    }

    /// Hand the client's events to the application.
    fn on_events(&mut self) {
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::SendDone { id, result } => match self.sends.remove(&id) {
                    Some(SendReply::Plain(reply)) => {
                        let _ = reply.send(result);
                    }
                    Some(SendReply::Half(group, reply)) => {
                        let result = result.map(|r| {
                            let half = self.client.half_of(&group, &r);
                            (r, half)
                        });
                        let _ = reply.send(result);
                    }
                    None => {}
                },
                ClientEvent::CheckTransaction { half, message } => match self.checkers.get(&half.group) {
                    Some(listener) => check_later(Arc::clone(listener), half, message, self.results.clone()),
                    None => tracing::warn!(group = half.group, "transaction check without a listener"),
                },
                ClientEvent::Deliver { id, group, queue, messages } => match self.listeners.get(&group) {
                    Some(listener) => listener.deliver((id, queue, messages)),
                    None => self.client.consumed(self.clock.now(), id, ConsumeResult::Later),
                },
                // Waiting polls are served after every turn.
                ClientEvent::Ready { .. } => {}
                ClientEvent::SaveOffsets { group, content } => {
                    if let Some(Err(error)) = self.offsets.as_ref().map(|o| o.save(&group, &content)) {
                        tracing::warn!(group, %error, "cannot save broadcast offsets");
                    }
                }
            }
        }
        self.polls.serve(&mut self.client, self.clock.now());
    }
}

pub(super) async fn run(
    config: ClientConfig,
    mut commands: mpsc::Receiver<Command>,
    results: mpsc::WeakSender<Command>,
    driver: DriverConfig,
    offsets: Option<LocalOffsets>,
) {
    let clock = Arc::clone(&driver.clock);
    let limits = ConnLimits::of(&driver);
    let (events_tx, mut events) = mpsc::channel::<Event>(driver.event_queue);
    let mut conns = Connections::default();
    let mut state = ClientDriver {
        client: Client::new(config, clock.now()),
        clock: Arc::clone(&clock),
        sends: BTreeMap::new(),
        checkers: BTreeMap::new(),
        listeners: BTreeMap::new(),
        polls: PollWaiters::default(),
        shutdown: None,
        offsets,
        results,
    };
    loop {
        let deadline = state
            .client
            .poll_timeout()
            .into_iter()
            .chain(state.polls.deadline())
            .min()
            .map(|at| clock.instant(at));
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // `biased` for determinism under the simulator (see the server loop).
        tokio::select! {
            biased;
            () = sleep => state.client.handle(clock.now(), Input::Timeout),
            event = events.recv() => match event {
                Some(event) => conns.on_event(&mut state.client, clock.now(), event),
                None => break,
            },
            command = commands.recv(), if state.shutdown.is_none() => {
                state.on_command(command);
                for _ in 1..COMMAND_BATCH {
                    let Ok(command) = commands.try_recv() else { break };
                    state.on_command(Some(command));
                    if state.shutdown.is_some() {
                        break;
                    }
                }
            }
        }
        // Work the turn made due now (a pull right after its answer) runs now: a sleep until
        // an instant already past would wait for the next tick of tokio's timer (1 ms), once
        // per pull per queue.
        let now = clock.now();
        if state.client.poll_timeout().is_some_and(|at| at <= now.mono) {
            state.client.handle(now, Input::Timeout);
        }
        if let Err(error) = conns.carry_out_all(&mut state.client, &*clock, None, &events_tx, &limits) {
            tracing::error!(%error, "client driver stopped");
            break;
        }
        state.on_events();
        if let Some(done) = state.shutdown.take() {
            // Give the writers a moment to put the last commits and unregistrations on the wire.
            tokio::time::sleep(SHUTDOWN_DRAIN).await;
            let _ = done.send(());
            break;
        }
    }
    conns.abort_all();
}

/// Ask a transaction listener about a checked transaction away from the driver (it is the
/// application's code and may block), then answer the broker.
fn check_later(
    listener: Arc<dyn TransactionListener>,
    half: HalfMessage,
    message: Box<StoredMessage>,
    results: mpsc::WeakSender<Command>,
) {
    #[cfg(not(madsim))]
    tokio::task::spawn_blocking(move || {
        let state = listener.check(&message);
        if let Some(results) = results.upgrade() {
            let _ = results.blocking_send(Command::EndTransaction { half, state, from_check: true });
        }
    });
    #[cfg(madsim)]
    tokio::spawn(async move {
        let state = listener.check(&message);
        if let Some(results) = results.upgrade() {
            let _ = results.send(Command::EndTransaction { half, state, from_check: true }).await;
        }
    });
}

/// A broadcasting consumer starts from its offsets file, if it has one.
fn load_offsets(config: &mut ConsumerConfig, offsets: Option<&LocalOffsets>) {
    if config.model == MessageModel::Broadcasting && config.local_offsets.is_none() {
        config.local_offsets = offsets.and_then(|o| o.load(&config.group));
    }
}

/// A consumer's listener workers: `workers` OS threads in production (a listener is the
/// application's code and may block), tasks under the simulator (which runs every node on
/// one thread and has no blocking pool).
struct Listeners {
    #[cfg(not(madsim))]
    queue: std::sync::mpsc::Sender<Delivery>,
    #[cfg(madsim)]
    queue: mpsc::UnboundedSender<Delivery>,
}

impl Listeners {
    #[cfg(not(madsim))]
    fn start(listener: Arc<dyn MessageListener>, workers: usize, results: mpsc::WeakSender<Command>) -> Self {
        let (queue, deliveries) = std::sync::mpsc::channel::<Delivery>();
        let deliveries = Arc::new(std::sync::Mutex::new(deliveries));
        for worker in 0..workers {
            let (listener, deliveries, results) =
                (Arc::clone(&listener), Arc::clone(&deliveries), results.clone());
            let spawned =
                std::thread::Builder::new().name(format!("keel-listener-{worker}")).spawn(move || loop {
                    let next = deliveries.lock().map(|d| d.recv());
                    let Ok(Ok((id, queue, messages))) = next else { return };
                    let result = listener.consume(&queue, &messages);
                    let Some(results) = results.upgrade() else { return };
                    if results.blocking_send(Command::Consumed { id, result }).is_err() {
                        return;
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a listener thread");
            }
        }
        Self { queue }
    }

    #[cfg(madsim)]
    fn start(listener: Arc<dyn MessageListener>, workers: usize, results: mpsc::WeakSender<Command>) -> Self {
        let (queue, mut deliveries) = mpsc::unbounded_channel::<Delivery>();
        let _ = workers; // one task: simulated listeners take no time
        tokio::spawn(async move {
            while let Some((id, queue, messages)) = deliveries.recv().await {
                let result = listener.consume(&queue, &messages);
                let Some(results) = results.upgrade() else { return };
                if results.send(Command::Consumed { id, result }).await.is_err() {
                    return;
                }
            }
        });
        Self { queue }
    }

    fn deliver(&self, delivery: Delivery) {
        let _ = self.queue.send(delivery);
    }
}
