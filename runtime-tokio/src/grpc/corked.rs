//! An HTTP/2 connection whose writes are held until the connection has done all it can in
//! one poll, then go out in one write, as grpc-java's and Netty's write queues flush once
//! per event-loop turn.
//!
//! h2 hands its socket each DATA frame of 256 bytes or more as a write of its own and
//! flushes after it, so a connection with many calls in flight, each carrying a message of
//! a kilobyte, made one `writev` per message: on loopback each costs the sender the
//! receiver's TCP work too. Here a connection's writes gather in a buffer, and its driver
//! ([`Corked`]) writes the buffer out once after each poll of the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held at most before a write goes out at once, whatever the poll is doing.
const HOLD_MAX: usize = 256 * 1024;

/// The socket and what is held for it, shared by the connection's I/O handle and driver.
#[derive(Debug)]
struct Held<T> {
    io: T,
    out: BytesMut,
    /// Why a push failed: told to the connection on its next write or flush, so it ends.
    broken: Option<io::ErrorKind>,
}

impl<T: AsyncWrite + Unpin> Held<T> {
    /// Write out what is held and flush the socket (a TLS stream keeps records of its own
    /// until flushed); `Pending` (with the waker registered) while the socket is full.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let written = match Pin::new(&mut self.io).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return self.broke(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(error)) => return self.broke(error),
                Poll::Pending => return Poll::Pending,
            };
            self.out.advance(written);
        }
        match ready!(Pin::new(&mut self.io).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(error) => self.broke(error),
        }
    }

    fn broke(&mut self, error: io::Error) -> Poll<io::Result<()>> {
        self.broken = Some(error.kind());
        self.out.clear();
        Poll::Ready(Err(error))
    }

    /// Ready to hold more: what is held is pushed first if it is `HOLD_MAX` or more.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.broken {
            return Poll::Ready(Err(kind.into()));
        }
        if self.out.len() >= HOLD_MAX {
            ready!(self.poll_push(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

/// The I/O handle an HTTP/2 connection is given: reads go straight to the socket, writes
/// are held until [`Corked`] pushes them (or `HOLD_MAX` bytes are held).
#[derive(Debug)]
pub struct CorkedIo<T> {
    held: Arc<Mutex<Held<T>>>,
}

/// Wrap `io`: the handle to give the connection, and a holder to make its driver with.
pub fn cork<T>(io: T) -> (CorkedIo<T>, Cork<T>) {
    let held = Arc::new(Mutex::new(Held { io, out: BytesMut::with_capacity(16 * 1024), broken: None }));
    (CorkedIo { held: Arc::clone(&held) }, Cork { held })
}

/// The other end of a [`CorkedIo`], for its connection's driver.
#[derive(Debug)]
pub struct Cork<T> {
    held: Arc<Mutex<Held<T>>>,
}

impl<T> Cork<T> {
    /// Drive `connection` (built on this cork's I/O handle), pushing its writes out after
    /// each poll.
    pub fn drive<F: Future<Output = O>, O>(self, connection: F) -> Corked<T, F, O> {
        Corked { held: self.held, connection: Box::pin(connection), ended: None }
    }
}

impl<T> CorkedIo<T> {
    fn held(&self) -> std::sync::MutexGuard<'_, Held<T>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CorkedIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.held().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CorkedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut held = self.held();
        ready!(held.poll_room(cx))?;
        held.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut held = self.held();
        ready!(held.poll_room(cx))?;
        let mut taken = 0;
        for buf in bufs {
            held.out.extend_from_slice(buf);
            taken += buf.len();
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        // Each slice is copied into the held buffer either way; h2 copies less when told so.
        true
    }

    /// Nothing goes out here: the driver pushes once the connection's poll is over.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.held().broken {
            Some(kind) => Poll::Ready(Err(kind.into())),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut held = self.held();
        ready!(held.poll_push(cx))?;
        Pin::new(&mut held.io).poll_shutdown(cx)
    }
}

/// A connection driven so that whatever it wrote in a poll goes out in one write after it.
pub struct Corked<T, F, O> {
    held: Arc<Mutex<Held<T>>>,
    connection: Pin<Box<F>>,
    /// The connection's end, once it has ended, while its last writes go out.
    ended: Option<O>,
}

// The connection is pinned in its box; nothing else of a `Corked` is ever pinned.
impl<T, F, O> Unpin for Corked<T, F, O> {}

impl<T: AsyncWrite + Unpin, F: Future<Output = O>, O> Future for Corked<T, F, O> {
    type Output = O;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let this = self.get_mut();
        if this.ended.is_none() {
            if let Poll::Ready(end) = this.connection.as_mut().poll(cx) {
                this.ended = Some(end);
            }
        }
        let pushed = this.held.lock().unwrap_or_else(PoisonError::into_inner).poll_push(cx);
        match pushed {
            Poll::Pending if this.ended.is_some() => Poll::Pending,
            Poll::Ready(Err(error)) if this.ended.is_none() => {
                // The connection learns of it on its next write or flush, and ends.
                tracing::debug!(%error, "an HTTP/2 connection's write failed");
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            _ => this.ended.take().map_or(Poll::Pending, Poll::Ready),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes and flushes are held until the driver's poll, then arrive whole and in order.
    #[tokio::test]
    async fn writes_go_out_after_the_poll_in_order() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let (mut io, cork) = cork(near);
        let (wrote_tx, wrote_rx) = tokio::sync::oneshot::channel::<()>();
        let connection = async move {
            io.write_all(b"first ").await.unwrap();
            io.flush().await.unwrap();
            io.write_all(b"second").await.unwrap();
            io.flush().await.unwrap();
            let _ = wrote_tx.send(());
            std::future::pending::<()>().await;
        };
        let driver = tokio::spawn(cork.drive(connection));
        wrote_rx.await.unwrap();
        let mut got = [0u8; 12];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"first second");
        driver.abort();
    }

    /// More than `HOLD_MAX` bytes wait for the socket to take them, and arrive whole.
    #[tokio::test]
    async fn a_long_write_waits_for_the_socket() {
        let (near, mut far) = tokio::io::duplex(4096);
        let (mut io, cork) = cork(near);
        let sent: Vec<u8> = (0..3 * HOLD_MAX).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let driver = tokio::spawn(cork.drive(async move {
            for chunk in sent.chunks(1000) {
                io.write_all(chunk).await.unwrap();
            }
            io.shutdown().await.unwrap();
        }));
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrived out of order");
        driver.await.unwrap();
    }

    /// A write that fails is told to the connection on its next write.
    #[tokio::test]
    async fn a_broken_socket_is_told_to_the_connection() {
        let (near, far) = tokio::io::duplex(64);
        drop(far);
        let (mut io, cork) = cork(near);
        let driver = cork.drive(async move {
            io.write_all(b"lost").await.unwrap();
            tokio::task::yield_now().await;
            io.write_all(b"more").await
        });
        let written = driver.await;
        assert!(written.is_err(), "the second write should fail: {written:?}");
    }

    /// Nothing written reaches the socket before the driver's poll ends.
    #[test]
    fn a_write_is_held_until_pushed() {
        let (near, _far) = tokio::io::duplex(1024);
        let (mut io, cork) = cork(near);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(Pin::new(&mut io).poll_write(&mut cx, b"abc"), Poll::Ready(Ok(3))));
        assert_eq!(cork.held.lock().unwrap().out.len(), 3);
        let mut driver = cork.drive(std::future::pending::<()>());
        assert!(Pin::new(&mut driver).poll(&mut cx).is_pending());
        assert!(driver.held.lock().unwrap().out.is_empty());
    }
}
