//! A pipelined remoting client over one TCP connection: many requests in flight, replies
//! matched by opaque. Keel's own tools (`mqbench`) use it to play a RocketMQ client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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
    writer: mpsc::Sender<Bytes>,
    waiters: Waiters,
    next_opaque: std::sync::atomic::AtomicI32,
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
        Ok(Self::over(stream, addr, requests))
    }

    /// A client over `stream`, a connection to `peer` already open (a pipe to a broker in
    /// the same process); requests the server sends go to `requests`, as with
    /// [`Self::connect_hearing`].
    pub fn over<S>(stream: S, peer: SocketAddr, requests: Option<mpsc::Sender<RemotingCommand>>) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let addr = peer;
        let (mut read_half, mut write_half) = tokio::io::split(stream);
        let waiters: Waiters = Arc::default();
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
        let reader_waiters = Arc::clone(&waiters);
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => decoder.push(buf.get(..n).unwrap_or_default()),
                }
                while let Some(frame) = decoder.next_frame() {
                    let Ok(cmd) = frame else { break };
                    if !cmd.is_response() {
                        // Requests from the broker (a transaction check; ids changed).
                        if let Some(requests) = &requests {
                            if requests.try_send(cmd).is_err() {
                                tracing::warn!(%addr, "a request from the server dropped: its queue is full");
                            }
                        }
                        continue;
                    }
                    let waiter =
                        reader_waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&cmd.opaque);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(cmd);
                    }
                }
            }
            // Dropping the senders fails every call still waiting.
            reader_waiters.lock().unwrap_or_else(PoisonError::into_inner).clear();
        });
        Self { writer, waiters, next_opaque: std::sync::atomic::AtomicI32::new(1) }
    }

    fn opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & i32::MAX
    }

    /// Send `request` (its opaque is replaced) and wait for the reply.
    pub async fn call(&self, mut request: RemotingCommand) -> Result<RemotingCommand, ClientError> {
        request.opaque = self.opaque();
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner).insert(request.opaque, tx);
        self.writer.send(encode_to_bytes(&request)).await.map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Send `request` as oneway: no reply is expected.
    pub async fn send_oneway(&self, mut request: RemotingCommand) -> Result<(), ClientError> {
        request.opaque = self.opaque();
        request.flag |= FLAG_ONEWAY;
        self.writer.send(encode_to_bytes(&request)).await.map_err(|_| ClientError::Closed)
    }
}
