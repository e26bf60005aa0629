//! `mqbench producer --grpc host:port`: the same load as RocketMQ 5.x SDK producers make,
//! SendMessage over gRPC (one HTTP/2 connection per sender, `--inflight` calls multiplexed
//! on it in async mode), so gRPC and remoting sends can be compared in one run.
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
    use tonic::codegen::http;

    /// A cloneable handle on one HTTP/2 connection, as tonic's generated clients take it.
    #[derive(Clone)]
    pub struct H2Channel(http2::SendRequest<tonic::body::Body>);

    impl H2Channel {
        /// Dial `endpoint` and hand the connection, corked, to a task of its own.
        pub async fn connect(endpoint: std::net::SocketAddr) -> anyhow::Result<Self> {
            let tcp = tokio::net::TcpStream::connect(endpoint).await?;
            tcp.set_nodelay(true)?;
            let (io, cork) = keel_runtime_tokio::grpc::corked::cork(tcp);
            let (send, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(io))
                .await?;
            tokio::spawn(Deferred { connection: Box::pin(cork.drive(connection)), deferred: false });
            Ok(Self(send))
        }
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

/// One sender's `SendMessage` of a `size`-byte body to `topic`, numbered for unique ids.
fn send_request(
    worker: usize,
    n: u64,
    topic: &str,
    body: &Bytes,
) -> tonic::Request<proto::SendMessageRequest> {
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
    let mut request = tonic::Request::new(proto::SendMessageRequest { messages: vec![message] });
    if let Ok(id) = format!("mqbench-{worker}").parse() {
        request.metadata_mut().insert("x-mq-client-id", id);
    }
    request
}

/// Send until told to stop, one call at a time on `client`.
async fn call_loop(
    mut client: MessagingServiceClient<Channel>,
    (worker, caller): (usize, usize),
    args: (&str, &Bytes, Option<u64>),
    stats: &Stats,
    local: &mut Histogram<u64>,
) {
    let (topic, body, limit) = args;
    let mut n = (caller as u64) << 40;
    while more(stats, limit) {
        n += 1;
        let sent = Instant::now();
        match client.send_message(send_request(worker, n, topic, body)).await {
            Ok(reply) => {
                let status = reply.into_inner().status.unwrap_or_default();
                if status.code == Code::Ok as i32 {
                    stats.record(1, sent.elapsed(), local);
                } else {
                    stats.fail(|| format!("{}: {}", status.code, status.message));
                }
            }
            Err(error) => stats.fail(|| error.to_string()),
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
        let client = connect(endpoint).await?;
        let callers = if args.mode == Mode::Async { args.inflight.max(1) } else { 1 };
        let (stats, topic, body, limit) =
            (Arc::clone(stats), args.common.topic.clone(), body.clone(), args.common.count);
        stats.live.fetch_add(1, Ordering::Relaxed);
        workers.push(tokio::spawn(async move {
            let tasks: Vec<_> = (0..callers)
                .map(|caller| {
                    let (client, stats, topic, body) =
                        (client.clone(), Arc::clone(&stats), topic.clone(), body.clone());
                    tokio::spawn(async move {
                        let mut local = new_histogram();
                        call_loop(client, (worker, caller), (&topic, &body, limit), &stats, &mut local).await;
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
