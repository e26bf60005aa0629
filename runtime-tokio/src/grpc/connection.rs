//! One HTTP/2 connection of the gRPC port, served with h2 itself. SendMessage, the busiest
//! call, is served inside the connection's own task (`direct`): its body read, the broker
//! asked, its answer written, with no task, body channel or pipe per call. Every other call
//! goes to the generated tonic server in a task of its own, its request body read from h2
//! as an `http_body::Body` and its response body written back under HTTP/2 flow control.
//! hyper's server, which this replaces, spawned a task and a response pipe for every call:
//! about a tenth of the broker's CPU per message under pipelined sends.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::codegen::http;
use tonic::codegen::Service as _;
use tonic::transport::server::TcpConnectInfo;

use super::service::messaging_service_server::MessagingServiceServer;
use super::{direct, Messaging};

/// Calls in flight on one connection at most (hyper's default, which this port had).
const MAX_STREAMS: u32 = 200;
/// What a client may send before the broker has read it, per call and per connection
/// (hyper's defaults, which this port had): room for a whole 1 MiB batch in one go.
const RECEIVE_WINDOW: u32 = 1024 * 1024;
/// The largest header block a call may carry: gRPC's metadata is a few hundred bytes, and
/// a hostile client's is not kept in memory at h2's default of 16 MiB.
const MAX_HEADERS: u32 = 64 * 1024;

/// What a connection's calls are served by.
#[derive(Clone)]
pub struct Services {
    /// SendMessage, served in the connection's task.
    pub messaging: Messaging,
    /// Every other call.
    pub server: MessagingServiceServer<Messaging>,
    /// The connection's addresses, as tonic's transport gives them to a call.
    pub info: TcpConnectInfo,
}

/// Serve the HTTP/2 connection on `io` until it closes or breaks.
pub async fn serve<T>(io: T, services: Services) -> Result<(), h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .initial_window_size(RECEIVE_WINDOW)
        .initial_connection_window_size(RECEIVE_WINDOW)
        .max_header_list_size(MAX_HEADERS)
        .handshake::<_, Bytes>(io)
        .await?;
    let peer: Option<SocketAddr> = services.info.remote_addr;
    let mut sends = FuturesUnordered::new();
    loop {
        // The connection is polled on every turn, answers or not: that drives its reading,
        // its writing and every call's flow control.
        let step = poll_fn(|cx| {
            while let Poll::Ready(Some(())) = sends.poll_next_unpin(cx) {}
            connection.poll_accept(cx)
        })
        .await;
        match step {
            Some(Ok((request, respond))) => {
                if direct::serves(&request) {
                    sends.push(direct::send_message(services.messaging.clone(), request, respond, peer));
                } else {
                    let (server, info) = (services.server.clone(), services.info.clone());
                    tokio::spawn(call(server, info, request, respond));
                }
            }
            Some(Err(error)) => return Err(error),
            None => return Ok(()),
        }
    }
}

/// Serve one call with the tonic server: its answer's head, then its body under flow
/// control. A client that resets the call ends it here too (a long-polling receive, say).
async fn call(
    mut server: MessagingServiceServer<Messaging>,
    info: TcpConnectInfo,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, body) = request.into_parts();
    let mut request = http::Request::from_parts(parts, RequestBody::new(body));
    request.extensions_mut().insert(info);
    let response = tokio::select! {
        // Always ready: a generated server's readiness is its inner service's, ours.
        response = server.call(request) => match response {
            Ok(response) => response,
            Err(never) => match never {},
        },
        _ = poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let (parts, body) = response.into_parts();
    let end = hyper::body::Body::is_end_stream(&body);
    let Ok(send) = respond.send_response(http::Response::from_parts(parts, ()), end) else { return };
    if !end {
        pump(body, send).await;
    }
}

/// Write `body` to `send`: its data as the client's window allows, then its trailers (or an
/// empty end of stream).
async fn pump(mut body: tonic::body::Body, mut send: SendStream<Bytes>) {
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = poll_fn(|cx| send.poll_reset(cx)) => return,
        };
        match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "a gRPC response body broke");
                send.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if send_all(&mut send, data).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                        return;
                    }
                }
            },
        }
    }
}

/// Send `data`, each piece once the client's window has room for it.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let room = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(room) => room?,
            None => return Err(h2::Error::from(Reason::CANCEL)),
        };
        let piece = data.split_to(room.min(data.len()));
        send.send_data(piece, false)?;
    }
    Ok(())
}

/// A call's request body as tonic reads it: h2's data, each piece's window given back to
/// the client as it is read, then the trailers.
pub struct RequestBody {
    recv: RecvStream,
    data_done: bool,
    done: bool,
}

impl RequestBody {
    /// The body `recv` receives.
    #[must_use]
    pub fn new(recv: RecvStream) -> Self {
        Self { recv, data_done: false, done: false }
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read: the client may send as much again.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => self.data_done = true,
            }
        }
        let trailers = ready!(self.recv.poll_trailers(cx));
        self.done = true;
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::StreamBody;

    use super::*;

    /// A client and a server on the two ends of an in-memory pipe: the client's sender
    /// (its connection driven by a task) and the server's connection.
    async fn pair(
        client_window: u32,
    ) -> (h2::client::SendRequest<Bytes>, h2::server::Connection<tokio::io::DuplexStream, Bytes>) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let client = async {
            let (sender, connection) = h2::client::Builder::new()
                .initial_window_size(client_window)
                .initial_connection_window_size(client_window)
                .handshake::<_, Bytes>(client_io)
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender
        };
        let server = async { h2::server::handshake(server_io).await.unwrap() };
        tokio::join!(client, server)
    }

    fn request() -> http::Request<()> {
        http::Request::post("http://keel/apache.rocketmq.v2.MessagingService/ReceiveMessage")
            .body(())
            .unwrap()
    }

    /// A response body far larger than the client's window reaches it whole, in order, as
    /// the client reads, then its trailers.
    #[tokio::test]
    async fn a_body_larger_than_the_window_is_sent_as_the_client_reads_then_its_trailers() {
        let (sender, mut server) = pair(16 * 1024).await;
        let pieces: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; 10_000])).collect();
        let expected: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = pieces
            .into_iter()
            .map(|p| Ok(Frame::data(p)))
            .chain(std::iter::once(Ok(Frame::trailers(trailers))))
            .collect();
        let body = tonic::body::Body::new(StreamBody::new(futures_util::stream::iter(frames)));
        let serving = tokio::spawn(async move {
            let (_request, mut respond) = server.accept().await.unwrap().unwrap();
            let send = respond.send_response(http::Response::new(()), false).unwrap();
            tokio::join!(pump(body, send), async {
                // The connection is driven until the client has everything.
                poll_fn(|cx| server.poll_closed(cx)).await
            })
        });
        let mut sender = sender.ready().await.unwrap();
        let (response, _) = sender.send_request(request(), true).unwrap();
        let mut body = response.await.unwrap().into_body();
        let mut received = Vec::new();
        while let Some(piece) = body.data().await {
            let piece = piece.unwrap();
            body.flow_control().release_capacity(piece.len()).unwrap();
            received.extend_from_slice(&piece);
        }
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the body arrives whole and in order");
        let trailers = body.trailers().await.unwrap().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        drop((body, sender));
        serving.abort();
    }

    /// A request body is read piece by piece, each piece's window given back (so a body
    /// larger than the window gets through), then its trailers; then it is at its end.
    #[tokio::test]
    async fn a_request_body_gives_back_its_window_as_it_is_read() {
        let (sender, mut server) = pair(65_535).await;
        let sending = tokio::spawn(async move {
            let mut sender = sender.ready().await.unwrap();
            let (response, mut stream) = sender.send_request(request(), false).unwrap();
            // 3 MiB: 48 times the server's window of 64 KiB.
            for _ in 0..48 {
                stream.reserve_capacity(65_536);
                let mut left = Bytes::from(vec![7u8; 65_536]);
                while !left.is_empty() {
                    let room = poll_fn(|cx| stream.poll_capacity(cx)).await.unwrap().unwrap();
                    stream.send_data(left.split_to(room.min(left.len())), false).unwrap();
                }
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-end", http::HeaderValue::from_static("yes"));
            stream.send_trailers(trailers).unwrap();
            // Kept: dropping the call's response would reset it.
            (sender, response)
        });
        let (request, _respond) = server.accept().await.unwrap().unwrap();
        let mut body = RequestBody::new(request.into_body());
        let reading = async {
            let mut read = 0;
            let mut trailers = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.unwrap();
                match frame.into_data() {
                    Ok(data) => read += data.len(),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                }
            }
            (read, trailers)
        };
        let ((read, trailers), _) = tokio::join!(
            reading,
            poll_fn(|cx| match server.poll_closed(cx) {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending if sending.is_finished() => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            })
        );
        assert_eq!(read, 48 * 65_536);
        assert_eq!(trailers.unwrap()["x-end"], "yes");
        assert!(hyper::body::Body::is_end_stream(&body));
    }

    /// A client that resets its call ends the response's pump: the body (a long-polling
    /// receive, say) is dropped rather than kept waiting. The connection stays open.
    #[tokio::test]
    async fn a_reset_call_stops_its_pump() {
        let (sender, mut server) = pair(65_535).await;
        let mut sender = sender.ready().await.unwrap();
        let (response, _) = sender.send_request(request(), true).unwrap();
        let (_request, mut respond) = server.accept().await.unwrap().unwrap();
        let send = respond.send_response(http::Response::new(()), false).unwrap();
        // A body that never yields: only the client's reset can end the pump.
        let body = tonic::body::Body::new(StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, Infallible>,
        >()));
        let mut pumping = tokio::spawn(pump(body, send));
        let response = tokio::select! {
            response = response => response.unwrap(),
            _ = poll_fn(|cx| server.poll_closed(cx)) => panic!("the connection closed"),
        };
        // Nothing ends the pump yet.
        tokio::select! {
            _ = &mut pumping => panic!("the pump ended with the call still open"),
            _ = poll_fn(|cx| server.poll_closed(cx)) => panic!("the connection closed"),
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        drop(response); // the client gives up the call: h2 resets its stream
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::select! {
                _ = &mut pumping => true,
                _ = poll_fn(|cx| server.poll_closed(cx)) => false,
            }
        })
        .await;
        assert_eq!(ended, Ok(true), "the pump ended on the reset, the connection still open");
        drop(sender);
    }
}
