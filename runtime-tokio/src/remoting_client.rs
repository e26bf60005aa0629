//! A pipelined remoting client over one TCP connection: many requests in flight, replies
//! matched by opaque. Keel's own tools (`mqbench`) use it to play a RocketMQ client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use keel_core::protocol::{
    encode_to_bytes, FrameDecoder, RemotingCommand, DEFAULT_MAX_FRAME_LEN, FLAG_ONEWAY,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or the connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before the reply came.
    #[error("connection closed")]
    Closed,
}

type Waiters = Arc<Mutex<BTreeMap<i32, oneshot::Sender<RemotingCommand>>>>;

/// One connection; clone-free, share it behind an `Arc` to call from many tasks.
#[derive(Debug)]
pub struct RemotingClient {
    writer: Writer,
    pending: Pending,
    next_opaque: std::sync::atomic::AtomicI32,
}

/// The calls waiting for their replies, shared by a client and its reading side.
#[derive(Debug, Default, Clone)]
struct Pending {
    waiters: Waiters,
    /// Set once the reading side has ended: a call then fails at once rather than wait for
    /// a reply that cannot come.
    closed: Arc<AtomicBool>,
}

impl Pending {
    fn waiters(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, oneshot::Sender<RemotingCommand>>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reading side ended (the peer closed, or spoke nonsense): no reply comes any more.
    /// Dropping the senders fails every call still waiting.
    fn end(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waiters().clear();
    }
}

/// The calls of a linked client waiting for the broker loop's replies.
#[derive(Debug)]
pub struct LinkWaiters(Pending);

/// A client's reading side: the server's commands handed to their callers (replies to
/// their waiters, requests from the server to `requests`). Dropped when the connection
/// ends: no reply comes any more.
struct Reading {
    pending: Pending,
    requests: Option<mpsc::Sender<RemotingCommand>>,
    peer: SocketAddr,
}

impl Reading {
    /// Hand `cmd` from the server on: a reply to its waiter, a request to `requests`.
    fn deliver(&self, cmd: RemotingCommand) {
        if !cmd.is_response() {
            // Requests from the broker (a transaction check; ids changed).
            if let Some(requests) = &self.requests {
                if requests.try_send(cmd).is_err() {
                    tracing::warn!(addr = %self.peer, "a request from the server dropped: its queue is full");
                }
            }
            return;
        }
        let waiter = self.pending.waiters().remove(&cmd.opaque);
        if let Some(waiter) = waiter {
            let _ = waiter.send(cmd);
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.pending.end();
    }
}

/// Where a client's commands go.
#[derive(Debug)]
enum Writer {
    /// Encoded, to a task that writes them to the stream, gathering what is queued into one
    /// write.
    Stream(mpsc::Sender<Bytes>),
    /// As they are, straight into the broker loop of this process.
    Link(crate::driver::Link),
}

impl Writer {
    async fn write(&self, command: RemotingCommand) -> Result<(), ClientError> {
        let sent = match self {
            Self::Stream(writer) => writer.send(encode_to_bytes(&command)).await.is_ok(),
            Self::Link(link) => link.send(command).await,
        };
        if sent {
            Ok(())
        } else {
            Err(ClientError::Closed)
        }
    }
}

impl RemotingClient {
    /// Connect to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        Self::connect_hearing(addr, None).await
    }

    /// Connect to `addr`; requests the server sends (a transaction check) go to `requests`
    /// (dropped, with a warning, while it is full).
    pub async fn connect_hearing(
        addr: SocketAddr,
        requests: Option<mpsc::Sender<RemotingCommand>>,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut read_half, mut write_half) = tokio::io::split(stream);
        let (writer, mut outgoing) = mpsc::channel::<Bytes>(1024);
        tokio::spawn(async move {
            // Coalesce whatever is queued into one write.
            let mut buf = BytesMut::new();
            while let Some(first) = outgoing.recv().await {
                buf.extend_from_slice(&first);
                while buf.len() < 256 * 1024 {
                    match outgoing.try_recv() {
                        Ok(more) => buf.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if write_half.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        });
        let pending = Pending::default();
        let reading = Reading { pending: pending.clone(), requests, peer: addr };
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
            let mut buf = vec![0u8; 256 * 1024];
            // Until the stream ends or speaks nonsense; then `reading` drops and every call
            // still waiting fails.
            'reading: loop {
                match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => decoder.push(buf.get(..n).unwrap_or_default()),
                }
                while let Some(frame) = decoder.next_frame() {
                    let Ok(cmd) = frame else { break 'reading };
                    reading.deliver(cmd);
                }
            }
        });
        Ok(Self::new(Writer::Stream(writer), pending))
    }

    fn new(writer: Writer, pending: Pending) -> Self {
        Self { writer, pending, next_opaque: std::sync::atomic::AtomicI32::new(1) }
    }

    /// The two sides of a client attached straight to this process's broker loop (a gRPC
    /// session's connection, `driver::Ask::Attach`): what the loop hands the broker's
    /// writes to (replies go to their callers there and then; requests the broker sends go
    /// to `requests`), and what [`RemotingClient::linked`] makes the client of.
    pub fn link_sides(
        peer: SocketAddr,
        requests: Option<mpsc::Sender<RemotingCommand>>,
    ) -> (crate::driver::LinkReplies, LinkWaiters) {
        let pending = Pending::default();
        let waiters = LinkWaiters(pending.clone());
        let reading = Reading { pending, requests, peer };
        let replies = move |command: RemotingCommand| {
            reading.deliver(command);
            true
        };
        (Box::new(replies), waiters)
    }

    /// The client whose commands go into the broker loop through `link`, its replies coming
    /// to `waiters` (from [`RemotingClient::link_sides`]).
    #[must_use]
    pub fn linked(link: crate::driver::Link, waiters: LinkWaiters) -> Self {
        Self::new(Writer::Link(link), waiters.0)
    }

    fn opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & i32::MAX
    }

    /// Send `request` (its opaque is replaced) and wait for the reply.
    pub async fn call(&self, mut request: RemotingCommand) -> Result<RemotingCommand, ClientError> {
        request.opaque = self.opaque();
        let (tx, rx) = oneshot::channel();
        self.pending.waiters().insert(request.opaque, tx);
        // After the insert: a reader ending now either sees this waiter or is seen here.
        if self.pending.closed.load(Ordering::SeqCst) {
            self.pending.waiters().remove(&request.opaque);
            return Err(ClientError::Closed);
        }
        let opaque = request.opaque;
        if let Err(error) = self.writer.write(request).await {
            self.pending.waiters().remove(&opaque);
            return Err(error);
        }
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Answer a request the server sent on this connection (`reply` keeps its opaque).
    pub async fn answer(&self, reply: RemotingCommand) -> Result<(), ClientError> {
        self.writer.write(reply).await
    }

    /// Send `request` as oneway: no reply is expected.
    pub async fn send_oneway(&self, mut request: RemotingCommand) -> Result<(), ClientError> {
        request.opaque = self.opaque();
        request.flag |= FLAG_ONEWAY;
        self.writer.write(request).await
    }
}
