//! The driver loop: one task owns a core state machine and feeds it everything — accepted
//! connections, bytes, disk completions, deadlines — then carries its outputs out.
//!
//! Each connection has a reader task that forwards raw chunks into one queue and a writer
//! task with a bounded queue of its own (a client that does not read its replies is
//! disconnected rather than buffered without limit). A reader has at most one chunk waiting
//! in the queue or being handled, and all readers together at most `queued_bytes`: it reads
//! its next chunk only once the machine has handled the last. So memory for requests is
//! bounded per connection and in total, a client flooding the server is slowed by TCP
//! backpressure, and the queue serves connections in turn (a well-behaved connection waits
//! behind at most one chunk of each other, never behind a flood's backlog). The loop never
//! interprets a request: it only moves bytes, completions and time. The same loop runs on
//! madsim's simulated network and time under `--cfg madsim`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keel_core::io::{CloseReason, ConnId, ConnKind, Input, Machine, MonoNanos, Now, Output};
use keel_core::protocol::{decode_one, encode_to_bytes, RemotingCommand, DEFAULT_MAX_FRAME_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::disk::{Completion, Disk};

/// Driver limits, and the clock the machine's deadlines were taken from.
#[derive(Clone)]
pub struct DriverConfig {
    /// The clock: the one the machine was built with, as its deadlines count from its zero.
    pub clock: Arc<dyn Clock>,
    /// Events (connections, chunks) waiting for the state machine.
    pub event_queue: usize,
    /// Replies waiting to be written, per connection.
    pub write_queue: usize,
    /// Bytes read from a socket at once: also what one connection may have waiting for the
    /// machine (the finer, the fairer under a flood).
    pub read_chunk: usize,
    /// Bytes every connection together may have waiting for the machine.
    pub queued_bytes: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock::start()),
            event_queue: 4096,
            write_queue: 4096,
            read_chunk: 16 * 1024,
            queued_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What a spawned connection task needs to know.
#[derive(Clone)]
pub(crate) struct ConnLimits {
    write_queue: usize,
    read_chunk: usize,
    /// Bytes read and not yet handled, over every connection (in KiB permits).
    queued: Arc<Semaphore>,
    /// To stamp chunks with when they were read, on the machine's clock.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ConnLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnLimits").field("read_chunk", &self.read_chunk).finish_non_exhaustive()
    }
}

impl ConnLimits {
    pub(crate) fn of(config: &DriverConfig) -> Self {
        // Never below one chunk, or a reader could wait for more than there is.
        let kib = (config.queued_bytes / 1024)
            .max(config.read_chunk.div_ceil(1024))
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            write_queue: config.write_queue,
            read_chunk: config.read_chunk,
            queued: Arc::new(Semaphore::new(kib)),
            clock: Arc::clone(&config.clock),
        }
    }
}

/// What a chunk of bytes holds until the machine has handled it: its connection's turn to
/// read again, and its share of the bytes all connections may have waiting.
pub(crate) struct ReadCredit {
    _turn: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The state machine asked to stop the process (e.g. a failed fsync).
    #[error("fatal: {0}")]
    Fatal(String),
    /// Accepting connections failed.
    #[error("listener failed: {0}")]
    Listener(#[from] std::io::Error),
}

/// What a connection's tasks tell the loop.
pub(crate) enum Event {
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        kind: ConnKind,
        writer: ConnWriter,
        /// The task reading the socket; none for an attached link, which sends its frames.
        reader: Option<JoinHandle<()>>,
    },
    Bytes {
        conn: ConnId,
        data: Bytes,
        received: MonoNanos,
        _credit: ReadCredit,
    },
    /// A whole command from an attached link.
    Command {
        conn: ConnId,
        command: RemotingCommand,
        received: MonoNanos,
        _credit: ReadCredit,
    },
    Closed {
        conn: ConnId,
    },
}

pub(crate) struct Connection {
    writer: ConnWriter,
    reader: Option<JoinHandle<()>>,
}

/// Where the machine's writes to a connection go.
pub(crate) enum ConnWriter {
    /// To the task writing its socket, through a bounded queue.
    Socket(mpsc::Sender<Bytes>),
    /// Straight to the in-process client of an attached link, on the loop.
    Deliver(LinkReplies),
}

/// What takes an attached connection's replies, called on the loop with each command the
/// machine writes to it: `false` closes the connection. Dropping it tells the client the
/// connection ended.
pub type LinkReplies = Box<dyn FnMut(RemotingCommand) -> bool + Send>;

/// The connections a loop drives: open ones, and outbound ones being dialled (a failed
/// dial must reach the machine as a close, or it would wait for that connection forever).
#[derive(Default)]
pub(crate) struct Connections {
    open: BTreeMap<ConnId, Connection>,
    dialing: BTreeSet<ConnId>,
}

impl Connections {
    /// Feed a connection event to `machine`.
    pub(crate) fn on_event<M: Machine>(&mut self, machine: &mut M, now: Now, event: Event) {
        match event {
            Event::Opened { conn, peer, kind, writer, reader } => {
                self.dialing.remove(&conn);
                self.open.insert(conn, Connection { writer, reader });
                machine.handle(now, Input::ConnOpened { conn, peer, kind });
            }
            Event::Bytes { conn, data, received, _credit } => {
                machine.handle(now, Input::Bytes { conn, data, received });
            }
            Event::Command { conn, command, received, _credit } => {
                machine.handle(now, Input::Command { conn, command, received });
            }
            Event::Closed { conn } => {
                if self.open.remove(&conn).is_some() || self.dialing.remove(&conn) {
                    machine.handle(now, Input::ConnClosed { conn });
                }
            }
        }
    }

    /// Carry out every output of `machine` (connections dropped for a full write queue are
    /// reported back to it).
    pub(crate) fn carry_out_all<M: Machine>(
        &mut self,
        machine: &mut M,
        clock: &dyn Clock,
        disk: Option<&Arc<dyn Disk>>,
        events: &mpsc::Sender<Event>,
        limits: &ConnLimits,
    ) -> Result<(), DriverError> {
        loop {
            let dropped = carry_out(machine, &mut self.open, &mut self.dialing, disk, events, limits)?;
            if dropped.is_empty() {
                return Ok(());
            }
            for conn in dropped {
                machine.handle(clock.now(), Input::ConnClosed { conn });
            }
        }
    }

    /// Stop every connection's reader.
    pub(crate) fn abort_all(self) {
        for reader in self.open.into_values().filter_map(|conn| conn.reader) {
            reader.abort();
        }
    }
}

/// A look at the machine between two inputs (a metrics scrape): run on the loop, with the
/// machine and the time, never changing it.
pub type Inspect<M> = Box<dyn FnOnce(&M, Now) + Send>;

/// What a helper in the same process (the HTTP endpoints, the gRPC endpoint) asks of the loop.
pub enum Ask<M> {
    /// A look at the machine between two inputs.
    Look(Inspect<M>),
    /// Serve an in-process remoting connection from `peer` (a gRPC session's): the commands
    /// sent on the [`Link`] that comes back on `link` reach the machine as they are
    /// (`Input::Command`), and what the machine writes to it is handed to `replies` on the
    /// loop, with no socket, encoding, copy or task between.
    Attach {
        /// Whom the connection stands for (the gRPC client's address).
        peer: SocketAddr,
        /// What takes the machine's writes to the connection.
        replies: LinkReplies,
        /// Where the link is handed back once the machine knows the connection.
        link: tokio::sync::oneshot::Sender<Link>,
    },
}

/// Commands a [`Link`] may have waiting for the loop at once.
const LINK_IN_FLIGHT: usize = 1_024;
/// Connection events handled in one turn of the loop at most, before its outputs are
/// carried out.
const TURN_EVENTS: usize = 64;

/// The sending side of an in-process connection ([`Ask::Attach`]). Dropping it closes the
/// connection.
pub struct Link {
    conn: ConnId,
    events: mpsc::Sender<Event>,
    limits: ConnLimits,
    /// Commands waiting for the loop, bounded like a socket's chunks.
    turns: Arc<Semaphore>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("conn", &self.conn).finish_non_exhaustive()
    }
}

impl Link {
    /// Hand a whole command to the machine once there is room (its body counts against
    /// the budget of waiting bytes every connection shares). `false` once the loop has
    /// stopped.
    pub async fn send(&self, command: RemotingCommand) -> bool {
        let Ok(turn) = Arc::clone(&self.turns).acquire_owned().await else { return false };
        let kib = u32::try_from(command.body.len().div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let Ok(bytes) = Arc::clone(&self.limits.queued).acquire_many_owned(kib).await else { return false };
        let received = self.limits.clock.mono();
        let _credit = ReadCredit { _turn: turn, _bytes: bytes };
        self.events.send(Event::Command { conn: self.conn, command, received, _credit }).await.is_ok()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let (events, conn) = (self.events.clone(), self.conn);
        if let Err(mpsc::error::TrySendError::Full(closed)) = events.try_send(Event::Closed { conn }) {
            // The loop's queue is full: the close waits its turn rather than be lost (with
            // no runtime left, the loop is gone too and nothing waits for it).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = events.send(closed).await;
                });
            }
        }
    }
}

/// Why a look was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookRefused {
    /// Too many asks are already waiting for the loop.
    Busy,
    /// The loop has stopped.
    Stopped,
}

/// Ask the loop behind `asks` for `what` of its machine, between two inputs.
pub async fn look<M: 'static, T: Send + 'static>(
    asks: &mpsc::Sender<Ask<M>>,
    what: impl FnOnce(&M, Now) -> T + Send + 'static,
) -> Result<T, LookRefused> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let inspect: Inspect<M> = Box::new(move |machine: &M, now| {
        let _ = tx.send(what(machine, now));
    });
    asks.try_send(Ask::Look(inspect)).map_err(|_| LookRefused::Busy)?;
    rx.await.map_err(|_| LookRefused::Stopped)
}

/// Run `machine` on connections accepted from `listener` (and `disk`, if it has one) until
/// `shutdown` resolves; then `on_shutdown` is called and the loop keeps running until
/// `done` says the machine has finished (e.g. its store has flushed and removed the abort
/// marker). What `asks` asks is done between inputs.
#[allow(clippy::too_many_arguments)] // one loop, configured in one call
pub async fn run<M: Machine>(
    machine: &mut M,
    listeners: Vec<(TcpListener, ConnKind)>,
    mut disk: Option<(Arc<dyn Disk>, mpsc::UnboundedReceiver<Completion>)>,
    config: DriverConfig,
    shutdown: impl Future<Output = ()>,
    mut on_shutdown: impl FnMut(&mut M, Now),
    mut done: impl FnMut(&M) -> bool,
    mut asks: Option<mpsc::Receiver<Ask<M>>>,
) -> Result<(), DriverError> {
    let clock = Arc::clone(&config.clock);
    let limits = ConnLimits::of(&config);
    let (events_tx, mut events) = mpsc::channel::<Event>(config.event_queue);
    // Accepted connections are numbered from one counter, whichever port they came in on.
    let numbers = Arc::new(AtomicU64::new(0));
    // Attached links are numbered apart (`ConnId::LINKED` up): the machine passes commands
    // on them as values.
    let mut links = 0u64;
    let acceptors: Vec<JoinHandle<()>> = listeners
        .into_iter()
        .map(|(listener, kind)| {
            let accepted = Accepted { kind, numbers: Arc::clone(&numbers) };
            tokio::spawn(accept_loop(listener, accepted, events_tx.clone(), limits.clone()))
        })
        .collect();
    let mut conns = Connections::default();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut shutting_down = false;
    let result = loop {
        if shutting_down && done(machine) {
            break Ok(());
        }
        let deadline = machine.poll_timeout().map(|at| clock.instant(at));
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let completion = async {
            match disk.as_mut() {
                Some((_, completions)) => completions.recv().await,
                None => std::future::pending().await,
            }
        };
        let ask = async {
            match asks.as_mut() {
                Some(asks) => asks.recv().await,
                None => std::future::pending().await,
            }
        };
        // `biased`: a fixed order, because tokio's random branch order draws from a
        // process-wide counter, which would make a simulated run depend on what else ran in
        // the process. Completions and deadlines come first: they are bounded, while a
        // flood of requests is not, and an fsync completion is what releases SYNC acks.
        tokio::select! {
            biased;
            () = &mut shutdown, if !shutting_down => {
                shutting_down = true;
                on_shutdown(machine, clock.now());
            }
            Some((io, result)) = completion => machine.handle(clock.now(), Input::DiskDone { io, result }),
            () = sleep => machine.handle(clock.now(), Input::Timeout),
            // Before requests, so a flood of them does not starve a scrape.
            ask = ask => match ask {
                Some(Ask::Look(look)) => look(machine, clock.now()),
                Some(Ask::Attach { peer, replies, link }) => {
                    let conn = ConnId(ConnId::LINKED + links);
                    links += 1;
                    let (events, limits) = (events_tx.clone(), limits.clone());
                    tokio::spawn(async move {
                        let writer = ConnWriter::Deliver(replies);
                        let opened = Event::Opened { conn, peer, kind: ConnKind::Remoting, writer, reader: None };
                        if events.send(opened).await.is_ok() {
                            let turns = Arc::new(Semaphore::new(LINK_IN_FLIGHT));
                            let _ = link.send(Link { conn, events, limits, turns });
                        }
                    });
                }
                None => asks = None,
            },
            event = events.recv() => match event {
                Some(event) => conns.on_event(machine, clock.now(), event),
                None => break Ok(()),
            },
        }
        // What else is ready joins this turn: the machine's outputs for all of it are then
        // carried out at once (one write of the log for many sends, not one each), and the
        // turn's fixed costs (the next deadline, the select) are paid once.
        for _ in 1..TURN_EVENTS {
            match events.try_recv() {
                Ok(event) => conns.on_event(machine, clock.now(), event),
                Err(_) => break,
            }
        }
        if let Err(error) =
            conns.carry_out_all(machine, &*clock, disk.as_ref().map(|(d, _)| d), &events_tx, &limits)
        {
            break Err(error);
        }
    };
    for acceptor in acceptors {
        acceptor.abort();
    }
    conns.abort_all();
    result
}

/// Carry out every output the machine has, in order. Returns the connections dropped
/// because their write queue was full, which the machine must be told about.
fn carry_out<M: Machine>(
    machine: &mut M,
    conns: &mut BTreeMap<ConnId, Connection>,
    dialing: &mut BTreeSet<ConnId>,
    disk: Option<&Arc<dyn Disk>>,
    events: &mpsc::Sender<Event>,
    limits: &ConnLimits,
) -> Result<Vec<ConnId>, DriverError> {
    let mut dropped = Vec::new();
    while let Some(output) = machine.poll_output() {
        match output {
            Output::Send { conn, data } => {
                let Some(connection) = conns.get_mut(&conn) else { continue };
                let taken = match &mut connection.writer {
                    ConnWriter::Socket(writer) => writer.try_send(data).is_ok(),
                    // Commands to a link come as `Output::Command`; a frame is read as one.
                    ConnWriter::Deliver(replies) => {
                        decode_one(&data, DEFAULT_MAX_FRAME_LEN).is_ok_and(replies)
                    }
                };
                if !taken {
                    drop_unread(conns, conn, &mut dropped);
                }
            }
            Output::Command { conn, command } => {
                let Some(connection) = conns.get_mut(&conn) else { continue };
                let taken = match &mut connection.writer {
                    ConnWriter::Socket(writer) => writer.try_send(encode_to_bytes(&command)).is_ok(),
                    ConnWriter::Deliver(replies) => replies(command),
                };
                if !taken {
                    drop_unread(conns, conn, &mut dropped);
                }
            }
            Output::Connect { conn, addr, kind } => {
                dialing.insert(conn);
                tokio::spawn(connect(conn, addr, kind, events.clone(), limits.clone()));
            }
            Output::Close { conn, reason: CloseReason(reason) } => {
                tracing::info!(?conn, %reason, "closing connection");
                close(conns, conn);
            }
            Output::Disk { io, op } => match disk {
                Some(disk) => disk.submit(io, op),
                None => tracing::error!(?io, ?op, "machine asked for disk IO but has no disk"),
            },
            Output::Fatal { reason } => return Err(DriverError::Fatal(reason)),
        }
    }
    Ok(dropped)
}

/// Drop `conn`, whose peer is not reading its replies (or is gone, or its in-process client
/// refused them), rather than buffer without limit; the machine is told (`dropped`).
fn drop_unread(conns: &mut BTreeMap<ConnId, Connection>, conn: ConnId, dropped: &mut Vec<ConnId>) {
    tracing::warn!(?conn, "closing connection: write queue full");
    close(conns, conn);
    dropped.push(conn);
}

/// Drop a connection: its writer finishes what is queued and closes the socket; its reader
/// stops at once.
fn close(conns: &mut BTreeMap<ConnId, Connection>, conn: ConnId) {
    if let Some(reader) = conns.remove(&conn).and_then(|connection| connection.reader) {
        reader.abort();
    }
}

/// Open an outbound connection; report it like an accepted one, or as closed on failure.
pub(crate) async fn connect(
    conn: ConnId,
    addr: SocketAddr,
    kind: ConnKind,
    events: mpsc::Sender<Event>,
    limits: ConnLimits,
) {
    match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            start_connection(conn, addr, kind, stream, &events, &limits).await;
        }
        Ok(Err(error)) => {
            tracing::debug!(?conn, %addr, %error, "connect failed");
            let _ = events.send(Event::Closed { conn }).await;
        }
        Err(_) => {
            tracing::debug!(?conn, %addr, "connect timed out");
            let _ = events.send(Event::Closed { conn }).await;
        }
    }
}

/// Spawn a connection's reader and writer and announce it to the loop.
async fn start_connection<S>(
    conn: ConnId,
    peer: SocketAddr,
    kind: ConnKind,
    stream: S,
    events: &mpsc::Sender<Event>,
    limits: &ConnLimits,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(stream);
    let (writer, queue) = mpsc::channel::<Bytes>(limits.write_queue);
    tokio::spawn(write_loop(write_half, queue));
    let reader = tokio::spawn(read_loop(conn, read_half, events.clone(), limits.clone()));
    let writer = ConnWriter::Socket(writer);
    events.send(Event::Opened { conn, peer, kind, writer, reader: Some(reader) }).await.is_ok()
}

/// What an accept loop stamps on its connections: what they carry, and their numbers
/// (shared by every loop of a driver, so no two connections get the same).
struct Accepted {
    kind: ConnKind,
    numbers: Arc<AtomicU64>,
}

async fn accept_loop(
    listener: TcpListener,
    accepted: Accepted,
    events: mpsc::Sender<Event>,
    limits: ConnLimits,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let conn = ConnId(accepted.numbers.fetch_add(1, Ordering::Relaxed) + 1);
        let _ = stream.set_nodelay(true);
        if !start_connection(conn, peer, accepted.kind, stream, &events, &limits).await {
            return;
        }
    }
}

async fn read_loop<S: tokio::io::AsyncRead>(
    conn: ConnId,
    mut stream: tokio::io::ReadHalf<S>,
    events: mpsc::Sender<Event>,
    limits: ConnLimits,
) {
    // One buffer for the connection's life; each chunk read is copied out at its own size.
    // (Handing out slices of a fresh `chunk`-sized allocation per read made every small
    // request cost a 64 KiB malloc and free: a fifth of the broker's time with 64 senders.)
    let mut buf = vec![0u8; limits.read_chunk.max(1)];
    // This connection's turn: one chunk waiting or being handled at a time.
    let turns = Arc::new(Semaphore::new(1));
    loop {
        let Ok(turn) = Arc::clone(&turns).acquire_owned().await else { break };
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // The shared budget is taken after the read: an idle connection waiting in
                // `read` holds none of it.
                let kib = u32::try_from(n.div_ceil(1024)).unwrap_or(u32::MAX);
                let Ok(bytes) = Arc::clone(&limits.queued).acquire_many_owned(kib).await else { break };
                let received = limits.clock.mono();
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                let _credit = ReadCredit { _turn: turn, _bytes: bytes };
                if events.send(Event::Bytes { conn, data, received, _credit }).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = events.send(Event::Closed { conn }).await;
}

/// Frames a writer gathers into one vectored write at most, and their bytes.
const WRITE_BATCH: usize = 64;
const WRITE_BATCH_BYTES: usize = 1 << 20;

async fn write_loop<S: tokio::io::AsyncWrite>(
    mut stream: tokio::io::WriteHalf<S>,
    mut queue: mpsc::Receiver<Bytes>,
) {
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
    while let Some(data) = queue.recv().await {
        // Whatever else is already queued goes in the same write: a master's transfer
        // frames, or replies, cost one system call (and one loopback packet) instead of
        // one each.
        let mut size = data.len();
        batch.push(data);
        while batch.len() < WRITE_BATCH && size < WRITE_BATCH_BYTES {
            let Ok(more) = queue.try_recv() else { break };
            size += more.len();
            batch.push(more);
        }
        if write_all_vectored(&mut stream, &mut batch).await.is_err() || stream.flush().await.is_err() {
            break;
        }
    }
    let _ = stream.shutdown().await;
}

/// Write every buffer of `batch`, in order, with as few vectored writes as the socket
/// takes; `batch` is empty afterwards.
async fn write_all_vectored<S: tokio::io::AsyncWrite>(
    stream: &mut tokio::io::WriteHalf<S>,
    batch: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let mut first = 0;
    loop {
        // Empty buffers write nothing (and an all-empty write would look like a closed peer).
        while batch.get(first).is_some_and(Bytes::is_empty) {
            first += 1;
        }
        if first >= batch.len() {
            break;
        }
        let slices: Vec<std::io::IoSlice<'_>> =
            batch.iter().skip(first).map(|b| std::io::IoSlice::new(b)).collect();
        let mut written = stream.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Past the buffers written whole; into the one written in part.
        while let Some(buf) = batch.get_mut(first) {
            if written < buf.len() {
                bytes::Buf::advance(buf, written);
                break;
            }
            written -= buf.len();
            first += 1;
        }
    }
    batch.clear();
    Ok(())
}

// Real sockets: madsim's simulated TCP is exercised by the seeds instead.
#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// Buffers larger than a socket takes at once (so writes land in part), empty ones among
    /// them: the peer reads every byte, in order.
    #[tokio::test]
    async fn a_vectored_batch_arrives_whole_and_in_order_through_partial_writes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_read_half, mut write) = tokio::io::split(client.unwrap());
        let mut read = accepted.unwrap().0;
        let mut batch: Vec<Bytes> = (0u8..40)
            .map(
                |i| if i % 7 == 3 { Bytes::new() } else { Bytes::from(vec![i; 1 + usize::from(i) * 40_000]) },
            )
            .collect();
        let want: Vec<u8> = batch.iter().flat_map(|b| b.iter().copied()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            read.read_to_end(&mut got).await.unwrap();
            got
        });
        write_all_vectored(&mut write, &mut batch).await.unwrap();
        assert!(batch.is_empty());
        write.shutdown().await.unwrap();
        drop(write);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes out of order");
    }
}
