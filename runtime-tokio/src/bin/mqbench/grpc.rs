//! `mqbench producer --grpc host:port`: the same load as RocketMQ 5.x SDK producers make,
//! SendMessage over gRPC (one HTTP/2 connection per sender, `--inflight` calls multiplexed
//! on it in async mode), so gRPC and remoting sends can be compared in one run. Each call
//! goes straight onto h2 (a unary call framed by `grpc::direct`), as the remoting load goes
//! straight onto its socket: the load measures the broker, not a client library's layers.
//! `mqbench consumer --grpc host:port`: simple consumers, ReceiveMessage of up to 32 then one
//! AckMessage of them all, each message counted once its ack is answered.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use keel_core::grpc::proto::{self, Code};
use keel_runtime_tokio::grpc::service::messaging_service_client::MessagingServiceClient;

#[cfg(madsim)]
type Channel = tonic::transport::Channel;
#[cfg(not(madsim))]
type Channel = h2_channel::H2Channel;

/// A client on one new HTTP/2 connection to `endpoint`.
async fn connect(endpoint: std::net::SocketAddr) -> anyhow::Result<MessagingServiceClient<Channel>> {
    #[cfg(madsim)]
    let client = MessagingServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))?.connect().await?,
    );
    #[cfg(not(madsim))]
    let client = MessagingServiceClient::with_origin(
        h2_channel::H2Channel::connect(endpoint).await?,
        format!("http://{endpoint}").parse()?,
    );
    Ok(client)
}

/// The load's own HTTP/2 connection: hyper's client, each call straight on the connection.
/// tonic's `Channel` queues every call through a worker task and a stack of layers
/// (reconnection, buffering), which on this machine's two cores took CPU from the broker
/// under test; an SDK runs on the client's machine, not the broker's.
#[cfg(not(madsim))]
mod h2_channel {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::client::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use keel_core::grpc::proto;
    use keel_runtime_tokio::grpc::corked::{self, Cork, CorkedIo};
    use tokio::net::TcpStream;
    use tonic::codegen::http;

    /// A cloneable handle on one HTTP/2 connection, as tonic's generated clients take it.
    #[derive(Clone)]
    pub struct H2Channel(http2::SendRequest<tonic::body::Body>);

    impl H2Channel {
        /// Dial `endpoint` and hand the connection, corked, to a task of its own.
        pub async fn connect(endpoint: std::net::SocketAddr) -> anyhow::Result<Self> {
            let (io, cork) = dial(endpoint).await?;
            let (send, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(io))
                .await?;
            drive(cork, connection);
            Ok(Self(send))
        }
    }

    /// A new TCP connection to `endpoint`, corked: the I/O to build an HTTP/2 connection
    /// on, and the cork to [`drive`] it with.
    async fn dial(endpoint: std::net::SocketAddr) -> anyhow::Result<(CorkedIo<TcpStream>, Cork<TcpStream>)> {
        let tcp = TcpStream::connect(endpoint).await?;
        tcp.set_nodelay(true)?;
        Ok(corked::cork(tcp))
    }

    /// Drive `connection`, built on `cork`'s I/O, in a task of its own.
    fn drive<F>(cork: Cork<TcpStream>, connection: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(Deferred { connection: Box::pin(cork.drive(connection)), deferred: false });
    }

    /// A connection driven one scheduler round after it is woken: the calls that woke it
    /// (replies reach many at once) have all queued their frames by then, and its cork
    /// (`grpc::corked`, as the broker's side has) sends them in one write.
    struct Deferred<F> {
        connection: Pin<Box<F>>,
        deferred: bool,
    }

    impl<F: Future> Future for Deferred<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            if !self.deferred {
                self.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.deferred = false;
            self.connection.as_mut().poll(cx)
        }
    }

    /// SendMessage calls straight on one h2 connection: the request framed with
    /// `grpc::direct`, sent as HEADERS and one DATA frame, its answer read whole.
    /// tonic's client and hyper's spawn a task to pipe each request's body and stream
    /// both ways through boxed codecs, which took the cores the broker under test needs.
    #[derive(Clone)]
    pub struct UnarySender {
        send: h2::client::SendRequest<bytes::Bytes>,
        uri: http::Uri,
        client_id: http::HeaderValue,
    }

    impl UnarySender {
        /// Dial `endpoint` as client `client_id` and hand the connection, corked, to a task
        /// of its own.
        pub async fn connect(endpoint: std::net::SocketAddr, client_id: &str) -> anyhow::Result<Self> {
            let (io, cork) = dial(endpoint).await?;
            let (send, connection) = h2::client::Builder::new()
                .initial_window_size(1 << 20)
                .initial_connection_window_size(1 << 20)
                .handshake(io)
                .await?;
            drive(cork, connection);
            Ok(Self {
                send,
                uri: format!("http://{endpoint}{}", keel_runtime_tokio::grpc::direct::SEND_MESSAGE)
                    .parse()?,
                client_id: client_id.parse()?,
            })
        }

        /// One SendMessage call: its answer, or why the call itself failed.
        pub async fn send_message(
            &self,
            request: &proto::SendMessageRequest,
        ) -> anyhow::Result<proto::SendMessageResponse> {
            use prost::Message as _;
            let mut send = self.send.clone();
            std::future::poll_fn(|cx| send.poll_ready(cx)).await?;
            let head = http::Request::post(self.uri.clone())
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header("te", "trailers")
                .header("x-mq-client-id", self.client_id.clone())
                .body(())?;
            let (response, mut stream) = send.send_request(head, false)?;
            stream.send_data(keel_runtime_tokio::grpc::direct::frame(request), true)?;
            let response = response.await?;
            anyhow::ensure!(response.status() == http::StatusCode::OK, "HTTP status {}", response.status());
            grpc_status(response.headers())?;
            let mut body = response.into_body();
            let mut data = bytes::BytesMut::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            match body.trailers().await? {
                Some(trailers) => grpc_status(&trailers)?,
                None => anyhow::bail!("the answer has no grpc-status"),
            }
            let message = keel_runtime_tokio::grpc::direct::unframe(data.freeze())?;
            Ok(proto::SendMessageResponse::decode(message)?)
        }
    }

    /// A failed call's `grpc-status` in `headers` as an error (none there: not failed).
    fn grpc_status(headers: &http::HeaderMap) -> anyhow::Result<()> {
        match headers.get("grpc-status").map(http::HeaderValue::as_bytes) {
            None | Some(b"0") => Ok(()),
            Some(code) => {
                let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default();
                anyhow::bail!("grpc-status {}: {message}", String::from_utf8_lossy(code))
            }
        }
    }

    type Reply = http::Response<hyper::body::Incoming>;

    impl tonic::codegen::Service<http::Request<tonic::body::Body>> for H2Channel {
        type Response = Reply;
        type Error = hyper::Error;
        type Future = Pin<Box<dyn Future<Output = Result<Reply, hyper::Error>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
            self.0.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(self.0.send_request(request))
        }
    }
}

use super::{more, new_histogram, ConsumerArgs, Mode, ProducerArgs, Stats};

/// What one sender's calls go on: straight h2 (under the simulator, tonic's client).
#[cfg(not(madsim))]
type Sender = h2_channel::UnarySender;
/// What one sender's calls go on: straight h2 (under the simulator, tonic's client).
#[cfg(madsim)]
type Sender = MessagingServiceClient<Channel>;

/// A sender on a new connection to `endpoint`, as client `client_id`.
async fn connect_sender(endpoint: std::net::SocketAddr, client_id: &str) -> anyhow::Result<Sender> {
    #[cfg(not(madsim))]
    return h2_channel::UnarySender::connect(endpoint, client_id).await;
    #[cfg(madsim)]
    {
        let _ = client_id;
        connect(endpoint).await
    }
}

/// One SendMessage call on `sender` as client `client_id`: the answer, or why the call failed.
async fn send_message(
    sender: &mut Sender,
    request: proto::SendMessageRequest,
    client_id: &str,
) -> Result<proto::SendMessageResponse, String> {
    #[cfg(not(madsim))]
    {
        let _ = client_id;
        sender.send_message(&request).await.map_err(|e| e.to_string())
    }
    #[cfg(madsim)]
    {
        let mut request = tonic::Request::new(request);
        if let Ok(id) = client_id.parse() {
            request.metadata_mut().insert("x-mq-client-id", id);
        }
        sender.send_message(request).await.map(tonic::Response::into_inner).map_err(|e| e.to_string())
    }
}

/// One sender's `SendMessage` of a `size`-byte body to `topic`, numbered for unique ids.
fn send_request(worker: usize, n: u64, topic: &str, body: &Bytes) -> proto::SendMessageRequest {
    let message = proto::Message {
        topic: Some(proto::Resource { resource_namespace: String::new(), name: topic.to_owned() }),
        user_properties: std::collections::BTreeMap::new(),
        system_properties: Some(proto::SystemProperties {
            tag: Some("TagA".into()),
            message_id: format!("01{worker:08X}{n:016X}"),
            message_type: proto::MessageType::Normal as i32,
            ..proto::SystemProperties::default()
        }),
        body: body.clone(),
    };
    proto::SendMessageRequest { messages: vec![message] }
}

/// Send until told to stop, one call at a time on `sender`.
async fn call_loop(
    mut sender: Sender,
    (worker, caller): (usize, usize),
    args: (&str, &Bytes, Option<u64>),
    stats: &Stats,
    local: &mut Histogram<u64>,
) {
    let (topic, body, limit) = args;
    let client_id = format!("mqbench-{worker}");
    let mut n = (caller as u64) << 40;
    while more(stats, limit) {
        n += 1;
        let sent = Instant::now();
        match send_message(&mut sender, send_request(worker, n, topic, body), &client_id).await {
            Ok(reply) => {
                let status = reply.status.unwrap_or_default();
                if status.code == Code::Ok as i32 {
                    stats.record(1, sent.elapsed(), local);
                } else {
                    stats.fail(|| format!("{}: {}", status.code, status.message));
                }
            }
            Err(error) => stats.fail(|| error),
        }
    }
}

/// The gRPC senders of `args`, against the endpoint at `endpoint`.
pub async fn spawn_producers(
    args: &ProducerArgs,
    endpoint: std::net::SocketAddr,
    stats: &Arc<Stats>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    anyhow::ensure!(args.batch <= 1, "--grpc sends one message per call (no --batch)");
    anyhow::ensure!(args.mode != Mode::Oneway, "gRPC has no oneway send");
    let body = Bytes::from(vec![b'k'; args.size]);
    let mut workers = Vec::new();
    for worker in 0..args.common.threads {
        let sender = connect_sender(endpoint, &format!("mqbench-{worker}")).await?;
        let callers = if args.mode == Mode::Async { args.inflight.max(1) } else { 1 };
        let (stats, topic, body, limit) =
            (Arc::clone(stats), args.common.topic.clone(), body.clone(), args.common.count);
        stats.live.fetch_add(1, Ordering::Relaxed);
        workers.push(tokio::spawn(async move {
            let tasks: Vec<_> = (0..callers)
                .map(|caller| {
                    let (sender, stats, topic, body) =
                        (sender.clone(), Arc::clone(&stats), topic.clone(), body.clone());
                    tokio::spawn(async move {
                        let mut local = new_histogram();
                        call_loop(sender, (worker, caller), (&topic, &body, limit), &stats, &mut local).await;
                        local
                    })
                })
                .collect();
            let mut local = new_histogram();
            for task in tasks {
                if let Ok(histogram) = task.await {
                    let _ = local.add(&histogram);
                }
            }
            stats.finish(&local);
        }));
    }
    Ok(workers)
}

fn with_client_id<T>(message: T, worker: usize) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(id) = format!("mqbench-consumer-{worker}").parse() {
        request.metadata_mut().insert("x-mq-client-id", id);
    }
    request
}

fn resource(name: &str) -> Option<proto::Resource> {
    Some(proto::Resource { resource_namespace: String::new(), name: name.to_owned() })
}

/// Receive and ack until told to stop: each round trip is a receive plus its ack.
async fn receive_loop(
    mut client: MessagingServiceClient<Channel>,
    worker: usize,
    (topic, group, limit): (&str, &str, Option<u64>),
    stats: &Stats,
    local: &mut Histogram<u64>,
) {
    let seconds = |s| Some(prost_types::Duration { seconds: s, nanos: 0 });
    while more(stats, limit) {
        let started = Instant::now();
        let request = proto::ReceiveMessageRequest {
            group: resource(group),
            message_queue: Some(proto::MessageQueue { topic: resource(topic), id: -1, ..Default::default() }),
            filter_expression: Some(proto::FilterExpression {
                r#type: proto::FilterType::Tag as i32,
                expression: "*".into(),
            }),
            batch_size: 32,
            invisible_duration: seconds(30),
            auto_renew: false,
            long_polling_timeout: seconds(5),
            attempt_id: None,
        };
        let mut stream = match client.receive_message(with_client_id(request, worker)).await {
            Ok(reply) => reply.into_inner(),
            Err(error) => {
                stats.fail(|| error.to_string());
                continue;
            }
        };
        let mut entries = Vec::new();
        while let Ok(Some(frame)) = stream.message().await {
            if let Some(proto::receive_message_response::Content::Message(message)) = frame.content {
                let system = message.system_properties.unwrap_or_default();
                entries.push(proto::AckMessageEntry {
                    message_id: system.message_id,
                    receipt_handle: system.receipt_handle.unwrap_or_default(),
                    lite_topic: None,
                });
            }
        }
        if entries.is_empty() {
            continue;
        }
        let count = entries.len() as u64;
        let ack = proto::AckMessageRequest { group: resource(group), topic: resource(topic), entries };
        match client.ack_message(with_client_id(ack, worker)).await {
            Ok(reply) => {
                let status = reply.into_inner().status.unwrap_or_default();
                if status.code == Code::Ok as i32 {
                    stats.record(count, started.elapsed(), local);
                } else {
                    stats.fail(|| format!("ack {}: {}", status.code, status.message));
                }
            }
            Err(error) => stats.fail(|| error.to_string()),
        }
    }
}

/// The gRPC simple consumers of `args`, against the endpoint at `endpoint`.
pub async fn spawn_consumers(
    args: &ConsumerArgs,
    endpoint: std::net::SocketAddr,
    stats: &Arc<Stats>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut workers = Vec::new();
    for worker in 0..args.common.threads {
        let client = connect(endpoint).await?;
        let (stats, topic, group, limit) =
            (Arc::clone(stats), args.common.topic.clone(), args.group.clone(), args.common.count);
        stats.live.fetch_add(1, Ordering::Relaxed);
        workers.push(tokio::spawn(async move {
            let mut local = new_histogram();
            receive_loop(client, worker, (&topic, &group, limit), &stats, &mut local).await;
            stats.finish(&local);
        }));
    }
    Ok(workers)
}
