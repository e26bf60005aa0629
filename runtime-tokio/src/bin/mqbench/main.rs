//! `mqbench`: load for a RocketMQ-compatible broker, like RocketMQ's benchmark tool.
//!
//! `mqbench producer -n 127.0.0.1:9876 -t BenchTopic -w 64 -s 1024 [-b 32] [--mode sync]
//! [--duration 10 | --count N] [--grpc host:8081]`, `mqbench consumer -n … -t BenchTopic -w 4 [-g group]` and
//! `mqbench probe -n … -s 4096 --flood-conns 300 --flood-inflight 64 [--broker-pid PID]`:
//! one sync sender's latency while another mqbench process floods the broker (and the
//! broker's peak resident memory, read from /proc).
//! The route comes from the name server, as a client's would: the producer's senders are
//! spread over every broker set's write queues (a topic on two sets, `broker-a` and
//! `broker-b`, takes half its senders each), and the summary counts each set's share. A
//! line every second (TPS,
//! average and max RT), then a summary with p50, p99 and p999: of the request round trip
//! for the producer; for the consumer (a push consumer of Keel's client library, from the
//! first offset) of each message's store-to-consume delay.

mod grpc;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use keel_core::protocol::body::TopicRouteData;
use keel_core::protocol::client_requests::{send_batch, send_message, OutgoingMessage};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader};
use keel_core::protocol::json;
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use keel_runtime_tokio::remoting_client::RemotingClient;

/// Keel's load generator.
#[derive(Debug, Parser)]
#[command(name = "mqbench", version, about = "Load generator for RocketMQ-compatible brokers")]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Send messages.
    Producer(ProducerArgs),
    /// Consume the topic from its first offset with a push consumer of Keel's client library.
    Consumer(ConsumerArgs),
    /// One sync sender (p50, p99, max) while a flood of async senders runs in a child process.
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Message body size, bytes (the probe's and the flood's).
    #[arg(short = 's', long, default_value_t = 4096)]
    size: usize,
    /// Flooding connections (0: the probe alone, for its unloaded figures).
    #[arg(long, default_value_t = 300)]
    flood_conns: usize,
    /// Requests in flight on each flooding connection.
    #[arg(long, default_value_t = 64)]
    flood_inflight: usize,
    /// The broker's process id: its peak resident memory during the run is reported.
    #[arg(long)]
    broker_pid: Option<u32>,
}

#[derive(Debug, Clone, clap::Args)]
struct CommonArgs {
    /// Name server address.
    #[arg(short = 'n', long, default_value = "127.0.0.1:9876")]
    namesrv: SocketAddr,
    /// Topic.
    #[arg(short = 't', long, default_value = "BenchmarkTest")]
    topic: String,
    /// Concurrent senders or consumers (each with its own connection).
    #[arg(short = 'w', long, default_value_t = 1)]
    threads: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many messages (overrides --duration).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct ConsumerArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Consumer group (a fresh one starts from the first offset).
    #[arg(short = 'g', long, default_value = "mqbench_consumer")]
    group: String,
    /// Messages per delivery to the listener.
    #[arg(short = 'b', long, default_value_t = 1)]
    batch: usize,
    /// Print `consumed <queue id> <queue offset> <body>` for every message (for tests that
    /// check who consumed what).
    #[arg(long)]
    print: bool,
    /// Consume over gRPC from this endpoint (`keel --enable-proxy`'s) as RocketMQ 5.x simple
    /// consumers do (receive, then ack), instead of pulling over remoting.
    #[arg(long)]
    grpc: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
struct ProducerArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Message body size, bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
    /// Messages per send (a batch above 1).
    #[arg(short = 'b', long, default_value_t = 1)]
    batch: usize,
    /// How each sender sends.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// Requests in flight per sender in async mode.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Sample the broker's replication lag (GET_BROKER_HA_STATUS: bytes its furthest-behind
    /// slave lacks) every 100 ms and report it with the summary.
    #[arg(long)]
    replication_lag: bool,
    /// Send over gRPC to this endpoint (`keel --enable-proxy`'s), as RocketMQ 5.x SDKs do,
    /// instead of over remoting to the route's brokers.
    #[arg(long)]
    grpc: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Wait for each reply.
    Sync,
    /// Keep `--inflight` requests outstanding.
    Async,
    /// Never wait for a reply.
    Oneway,
}

/// Counters shared by every worker; the histogram holds round trips in microseconds.
struct Stats {
    messages: AtomicU64,
    failures: AtomicU64,
    rt_sum_us: AtomicU64,
    rt_count: AtomicU64,
    rt_max_us: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
    stop: AtomicBool,
    /// Workers still running.
    live: AtomicU64,
    /// Messages acknowledged per broker set, added as each sender ends.
    per_set: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Why the first failed request failed, for the summary.
    first_failure: Mutex<Option<String>>,
}

impl Stats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            messages: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rt_sum_us: AtomicU64::new(0),
            rt_count: AtomicU64::new(0),
            rt_max_us: AtomicU64::new(0),
            histogram: Mutex::new(new_histogram()),
            stop: AtomicBool::new(false),
            live: AtomicU64::new(0),
            per_set: Mutex::new(std::collections::BTreeMap::new()),
            first_failure: Mutex::new(None),
        })
    }

    fn record(&self, messages: u64, rt: Duration, local: &mut Histogram<u64>) {
        let us = u64::try_from(rt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.rt_sum_us.fetch_add(us, Ordering::Relaxed);
        self.rt_count.fetch_add(1, Ordering::Relaxed);
        self.rt_max_us.fetch_max(us, Ordering::Relaxed);
        let _ = local.record(us.min(60_000_000));
    }

    /// A worker ends: its round trips join the total.
    fn finish(&self, local: &Histogram<u64>) {
        let _ = self.histogram.lock().unwrap_or_else(PoisonError::into_inner).add(local);
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Messages acknowledged plus requests failed: what counts toward `--count`.
    fn tried(&self) -> u64 {
        self.messages.load(Ordering::Relaxed) + self.failures.load(Ordering::Relaxed)
    }

    /// A request failed: the first failure's reason is kept.
    fn fail(&self, why: impl FnOnce() -> String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(why());
        }
    }

    /// A sender to broker set `set` ends, having had `messages` acknowledged.
    fn count_set(&self, set: &str, messages: u64) {
        *self.per_set.lock().unwrap_or_else(PoisonError::into_inner).entry(set.to_owned()).or_default() +=
            messages;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    keel_runtime_tokio::init_logging("warn");
    let args = Args::parse();
    let stats = Arc::new(Stats::new()?);
    let mut lag = None;
    let (common, workers) = match &args.role {
        Role::Producer(p) => {
            if p.replication_lag {
                let sets = route(p.common.namesrv, &p.common.topic).await?;
                let first = sets.first().context("no broker set")?;
                lag = Some(tokio::spawn(sample_lag(first.master, Arc::clone(&stats))));
            }
            let workers = match p.grpc {
                Some(endpoint) => grpc::spawn_producers(p, endpoint, &stats).await?,
                None => spawn_producers(p, &stats).await?,
            };
            (&p.common, workers)
        }
        Role::Consumer(c) => {
            let workers = match c.grpc {
                Some(endpoint) => grpc::spawn_consumers(c, endpoint, &stats).await?,
                None => spawn_consumers(c, &stats).await?,
            };
            (&c.common, workers)
        }
        Role::Probe(p) => return probe(p, &stats).await,
    };
    let started = Instant::now();
    report_until_done(common, &stats, started).await;
    stats.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    summarize(&args.role, &stats, started.elapsed());
    if let Some(lag) = lag {
        report_lag(&lag.await??);
    }
    Ok(())
}

/// What the lag sampler saw: per sample, the most bytes any slave lacked.
struct LagSamples {
    lags: Vec<i64>,
    /// Slaves streaming at the last sample, and how many were in sync.
    slaves: usize,
    in_sync: i32,
}

/// Poll `broker`'s GET_BROKER_HA_STATUS every 100 ms until the run stops.
async fn sample_lag(broker: SocketAddr, stats: Arc<Stats>) -> anyhow::Result<LagSamples> {
    use keel_core::protocol::body::HaRuntimeInfo;
    let client =
        RemotingClient::connect(broker).await.context("connecting to the broker for its HA status")?;
    let mut samples = LagSamples { lags: Vec::new(), slaves: 0, in_sync: 0 };
    while !stats.stop.load(Ordering::Relaxed) {
        let request = RemotingCommand::request(RequestCode::GET_BROKER_HA_STATUS, 0, Default::default());
        let reply = client.call(request).await?;
        if reply.response_code() != ResponseCode::SUCCESS {
            bail!("GET_BROKER_HA_STATUS: {:?} {:?}", reply.response_code(), reply.remark);
        }
        let info: HaRuntimeInfo = json::from_slice(&reply.body)?;
        if let Some(worst) = info.ha_connection_info.iter().map(|slave| slave.diff).max() {
            samples.lags.push(worst);
        }
        samples.slaves = info.ha_connection_info.len();
        samples.in_sync = info.in_sync_slave_nums;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(samples)
}

fn report_lag(samples: &LagSamples) {
    let mut lags = samples.lags.clone();
    lags.sort_unstable();
    let Some(&max) = lags.last() else {
        println!("replication lag: no slave streamed during the run");
        return;
    };
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize] as f64 / 1024.0;
    println!(
        "replication lag: {} samples, p50 {:.1} KiB, p99 {:.1} KiB, max {:.1} KiB; {} of {} slaves in sync at the end",
        lags.len(),
        at(0.5),
        at(0.99),
        max as f64 / 1024.0,
        samples.in_sync,
        samples.slaves
    );
}

/// One broker set serving the topic: its name, its master and its write queue count.
struct SetRoute {
    name: String,
    master: SocketAddr,
    queues: i32,
}

/// The broker sets serving `topic`, by name (TBW102's if the topic does not exist yet: the
/// first send to each set creates it there, as with a Java producer). Sets without a master
/// are left out.
async fn route(namesrv: SocketAddr, topic: &str) -> anyhow::Result<Vec<SetRoute>> {
    let client = RemotingClient::connect(namesrv).await.context("connecting to the name server")?;
    for name in [topic, "TBW102"] {
        let header = GetRouteInfoRequestHeader { topic: name.into(), accept_standard_json_only: None };
        let reply = client
            .call(RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 0, header.to_ext_fields()))
            .await?;
        if reply.response_code() != ResponseCode::SUCCESS {
            continue;
        }
        let route: TopicRouteData = json::from_slice(&reply.body)?;
        let mut sets = Vec::new();
        for broker in &route.broker_datas {
            let Some(master) = broker.broker_addrs.get(&0) else { continue };
            let queues = route
                .queue_datas
                .iter()
                .find(|q| q.broker_name == broker.broker_name)
                .map_or(1, |q| q.write_queue_nums)
                .max(1);
            // A topic created by the first send gets the 4 queues the send asks for (at
            // most TBW102's).
            let queues = if name == topic { queues } else { queues.min(4) };
            sets.push(SetRoute { name: broker.broker_name.clone(), master: master.parse()?, queues });
        }
        sets.sort_by(|a, b| a.name.cmp(&b.name));
        if sets.is_empty() {
            bail!("the route of {name} names no master");
        }
        return Ok(sets);
    }
    bail!("no route for {topic} or TBW102: is a broker registered with {namesrv}?")
}

async fn spawn_producers(
    args: &ProducerArgs,
    stats: &Arc<Stats>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let sets = route(args.common.namesrv, &args.common.topic).await?;
    // Every (set, queue), the sets interleaved: sender w takes the w-th, round robin.
    let deepest = sets.iter().map(|set| set.queues).max().unwrap_or(1);
    let targets: Vec<(&SetRoute, i32)> = (0..deepest)
        .flat_map(|queue| sets.iter().filter(move |set| queue < set.queues).map(move |set| (set, queue)))
        .collect();
    let message = OutgoingMessage {
        topic: args.common.topic.clone(),
        tags: Some("TagA".into()),
        keys: None,
        user_properties: Vec::new(),
        body: Bytes::from(vec![b'k'; args.size]),
    };
    let batch: Vec<OutgoingMessage> = vec![message.clone(); args.batch.max(1)];
    let per_request = u64::try_from(batch.len()).unwrap_or(1);
    let mut workers = Vec::new();
    for worker in 0..args.common.threads {
        let Some(&(set, queue)) = targets.get(worker % targets.len().max(1)) else { break };
        let client = Arc::new(RemotingClient::connect(set.master).await?);
        let set_name = set.name.clone();
        let request = if batch.len() > 1 {
            send_batch(0, "mqbench", queue, &batch)
        } else {
            send_message(0, "mqbench", queue, &message)
        };
        let (stats, mode, inflight, limit) =
            (Arc::clone(stats), args.mode, args.inflight.max(1), args.common.count);
        stats.live.fetch_add(1, Ordering::Relaxed);
        workers.push(tokio::spawn(async move {
            let mut local = new_histogram();
            match mode {
                Mode::Sync => call_loop(&client, &request, &stats, per_request, limit, &mut local).await,
                // `inflight` callers share the connection: that many requests outstanding.
                Mode::Async => {
                    let callers: Vec<_> = (0..inflight)
                        .map(|_| {
                            let (client, request, stats) =
                                (Arc::clone(&client), request.clone(), Arc::clone(&stats));
                            tokio::spawn(async move {
                                let mut local = new_histogram();
                                call_loop(&client, &request, &stats, per_request, limit, &mut local).await;
                                local
                            })
                        })
                        .collect();
                    for caller in callers {
                        if let Ok(histogram) = caller.await {
                            let _ = local.add(&histogram);
                        }
                    }
                }
                Mode::Oneway => {
                    while more(&stats, limit) {
                        let sent = Instant::now();
                        if client.send_oneway(request.clone()).await.is_err() {
                            stats.failures.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        stats.record(per_request, sent.elapsed(), &mut local);
                    }
                }
            }
            // One value recorded per acknowledged request.
            stats.count_set(&set_name, local.len() * per_request);
            stats.finish(&local);
        }));
    }
    Ok(workers)
}

/// Round trips in microseconds, up to a minute, three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// Whether to keep sending. Failures count toward `--count` too, so a broker refusing
/// every send ends the run (with its failures reported) instead of holding it forever.
fn more(stats: &Stats, limit: Option<u64>) -> bool {
    !stats.stop.load(Ordering::Relaxed) && limit.is_none_or(|n| stats.tried() < n)
}

/// Send `request` and wait for each reply, until told to stop.
async fn call_loop(
    client: &RemotingClient,
    request: &RemotingCommand,
    stats: &Stats,
    per_request: u64,
    limit: Option<u64>,
    local: &mut Histogram<u64>,
) {
    while more(stats, limit) {
        let sent = Instant::now();
        match client.call(request.clone()).await {
            Ok(reply) if reply.response_code() == ResponseCode::SUCCESS => {
                stats.record(per_request, sent.elapsed(), local)
            }
            Ok(reply) => {
                stats.fail(|| format!("{:?}: {}", reply.response_code(), reply.remark.unwrap_or_default()))
            }
            Err(error) => stats.fail(|| error.to_string()),
        }
    }
}

/// A push consumer of the Rust client library (`-w` listener slots) reading the topic from
/// its first offset; each message's round trip is its store-to-consume delay.
async fn spawn_consumers(
    args: &ConsumerArgs,
    stats: &Arc<Stats>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use keel_runtime_tokio::client::{
        ClientConfig, ConsumeFromWhere, ConsumeResult, ConsumerConfig, KeelClient,
    };
    let client_id = format!("127.0.0.1@mqbench-{}", std::process::id());
    let client = KeelClient::start(ClientConfig::new(vec![args.common.namesrv], client_id));
    let mut config = ConsumerConfig::new(&args.group, &args.common.topic, "*");
    config.from_where = ConsumeFromWhere::FirstOffset;
    config.consume_batch_size = args.batch.max(1);
    let listener_stats = Arc::clone(stats);
    let print = args.print;
    let listener = move |queue: &keel_runtime_tokio::client::MessageQueue,
                         messages: &[keel_runtime_tokio::client::StoredMessage]| {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // Straight into the shared histogram, locked once per delivery: a fresh histogram
        // per delivery (allocated, zeroed and merged bucket by bucket) cost more than the
        // consumer it measured.
        let mut histogram = listener_stats.histogram.lock().unwrap_or_else(PoisonError::into_inner);
        for message in messages {
            if print {
                println!(
                    "consumed {} {} {}",
                    queue.queue_id,
                    message.head.queue_offset,
                    String::from_utf8_lossy(&message.body)
                );
            }
            let delay_ms = u64::try_from(now_ms - message.head.store_timestamp).unwrap_or(0);
            listener_stats.record(1, Duration::from_millis(delay_ms), &mut histogram);
        }
        ConsumeResult::Success
    };
    client.start_consumer(config, listener, args.common.threads.max(1)).await?;
    stats.live.fetch_add(1, Ordering::Relaxed);
    let stats = Arc::clone(stats);
    let keeper = tokio::spawn(async move {
        while !stats.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client.shutdown().await;
        stats.live.fetch_sub(1, Ordering::Relaxed);
    });
    Ok(vec![keeper])
}

/// Print a line every second until the duration or count is reached, or the workers end.
async fn report_until_done(args: &CommonArgs, stats: &Stats, started: Instant) {
    // The end is checked every 10 ms, so a run's elapsed time is not rounded up to a whole
    // second; a line is printed every second.
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.tick().await;
    let (mut last_messages, mut last_rt_sum, mut last_rt_count) = (0, 0, 0);
    let mut next_line = started + Duration::from_secs(1);
    loop {
        ticker.tick().await;
        let messages = stats.messages.load(Ordering::Relaxed);
        let done_by_count = args.count.is_some_and(|n| stats.tried() >= n);
        let done_by_time = args.count.is_none() && started.elapsed() >= Duration::from_secs(args.duration);
        if done_by_count || done_by_time || stats.live.load(Ordering::Relaxed) == 0 {
            return;
        }
        if Instant::now() < next_line {
            continue;
        }
        next_line += Duration::from_secs(1);
        let (rt_sum, rt_count) =
            (stats.rt_sum_us.load(Ordering::Relaxed), stats.rt_count.load(Ordering::Relaxed));
        let average_ms = (rt_sum - last_rt_sum) as f64 / (rt_count - last_rt_count).max(1) as f64 / 1000.0;
        println!(
            "TPS: {:>9} | average RT: {average_ms:>8.3} ms | max RT: {:>8.3} ms | failed: {}",
            messages - last_messages,
            stats.rt_max_us.swap(0, Ordering::Relaxed) as f64 / 1000.0,
            stats.failures.load(Ordering::Relaxed)
        );
        (last_messages, last_rt_sum, last_rt_count) = (messages, rt_sum, rt_count);
    }
}

/// The probe: start the flood (another mqbench process, so the probe's own task never waits
/// behind thousands of flood tasks), let it ramp up, run one sync sender, then report both.
async fn probe(args: &ProbeArgs, stats: &Arc<Stats>) -> anyhow::Result<()> {
    let duration = args.common.duration;
    let flood = if args.flood_conns > 0 {
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["producer", "-n", &args.common.namesrv.to_string(), "-t", &args.common.topic])
            .args(["-w", &args.flood_conns.to_string(), "-s", &args.size.to_string()])
            .args(["--mode", "async", "--inflight", &args.flood_inflight.to_string()])
            .args(["--duration", &(duration + 3).to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the flood")?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Some(child)
    } else {
        None
    };
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = args.broker_pid.map(|pid| {
        let (peak, stats) = (Arc::clone(&peak_rss), Arc::clone(stats));
        tokio::spawn(async move {
            while !stats.stop.load(Ordering::Relaxed) {
                peak.fetch_max(resident_kib(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let producer = ProducerArgs {
        common: CommonArgs { threads: 1, ..args.common.clone() },
        size: args.size,
        batch: 1,
        mode: Mode::Sync,
        inflight: 1,
        replication_lag: false,
        grpc: None,
    };
    let workers = spawn_producers(&producer, stats).await?;
    let started = Instant::now();
    report_until_done(&producer.common, stats, started).await;
    stats.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    summarize(&Role::Producer(producer), stats, elapsed);
    if let Some(child) = flood {
        let output = child.wait_with_output().context("waiting for the flood")?;
        let text = String::from_utf8_lossy(&output.stdout);
        let summary = text.lines().rev().find(|l| l.starts_with('[')).unwrap_or("(no summary)");
        println!("flood: {summary}");
        // Its steady rate while the probe ran: the median of its per-second lines from the
        // probe's start (after the 2 s ramp-up) to its end.
        let mut rates: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("TPS:")?.split('|').next()?.trim().parse().ok())
            .skip(2)
            .take(usize::try_from(duration).unwrap_or(0))
            .collect();
        rates.sort_unstable();
        if let Some(median) = rates.get(rates.len() / 2) {
            println!("flood: {median} msgs/s while the probe ran (median of {} seconds)", rates.len());
        }
    }
    if let Some(pid) = args.broker_pid {
        println!(
            "broker {pid}: peak resident memory {:.1} MiB",
            peak_rss.load(Ordering::Relaxed) as f64 / 1024.0
        );
    }
    Ok(())
}

/// A process's resident memory, KiB (`VmRSS` in /proc/PID/status).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn summarize(role: &Role, stats: &Stats, elapsed: Duration) {
    let histogram = stats.histogram.lock().unwrap_or_else(PoisonError::into_inner);
    let messages = stats.messages.load(Ordering::Relaxed);
    let what = match role {
        Role::Producer(p) => {
            // The remoting summary keeps the form scripts and tests read; gRPC says so.
            let over = if p.grpc.is_some() { " (gRPC)" } else { "" };
            format!("producer{over}: {} x {:?}, {} B, batch {}", p.common.threads, p.mode, p.size, p.batch)
        }
        Role::Consumer(c) if c.grpc.is_some() => {
            format!("simple consumer (gRPC): {} receivers, receive 32 then ack", c.common.threads)
        }
        Role::Consumer(c) => format!("push consumer: {} listener slots, batch {}", c.common.threads, c.batch),
        Role::Probe(p) => {
            format!("probe: {} B under {} x {} in flight", p.size, p.flood_conns, p.flood_inflight)
        }
    };
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "[{what}] {messages} msgs in {:.1} s = {:.0} msgs/s; failed {}; RT p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms, max {:.3} ms",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64().max(1e-9),
        stats.failures.load(Ordering::Relaxed),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1000.0
    );
    if let Some(why) = stats.first_failure.lock().unwrap_or_else(PoisonError::into_inner).as_deref() {
        println!("first failure: {why}");
    }
    let per_set = stats.per_set.lock().unwrap_or_else(PoisonError::into_inner);
    if per_set.len() > 1 {
        let shares: Vec<String> = per_set
            .iter()
            .map(|(set, n)| format!("{set} {n} ({:.0}%)", *n as f64 * 100.0 / messages.max(1) as f64))
            .collect();
        println!("per broker set: {}", shares.join(", "));
    }
}
