//! Benchmark: a broker holding many topics, each queue with one message. It measures what
//! an operator waits for: restart time after a clean stop and after `kill -9`, resident
//! memory once serving, and the name-server registration (body size, compressed or not,
//! and when it arrives after a start).
//!
//! ```sh
//! cargo build --release -p keel-runtime-tokio --bins --examples
//! target/release/examples/many_topics --topics 10000 --queues 8
//! target/release/examples/many_topics --topics 10000 --queues 8 --set compressedRegister=true
//! target/release/examples/many_topics --dir /tmp/mt --reuse   # restarts only, after one fill
//! ```
//!
//! The broker is the real `mqbroker` (next to this example's directory by default); the
//! name server is a stand-in inside this process that records each REGISTER_BROKER and
//! answers SUCCESS.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use keel_core::protocol::client_requests::{send_message, OutgoingMessage};
use keel_core::protocol::headers::{CommandHeader, CreateTopicRequestHeader};
use keel_core::protocol::{
    encode_to_bytes, ExtFields, FrameDecoder, RemotingCommand, RequestCode, ResponseCode,
    DEFAULT_MAX_FRAME_LEN,
};
use keel_runtime_tokio::remoting_client::RemotingClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Many topics: restart time, memory, registration.
#[derive(Debug, Parser)]
struct Args {
    /// Topics to create.
    #[arg(long, default_value_t = 10_000)]
    topics: usize,
    /// Queues per topic (one message each).
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// The broker binary (default: `mqbroker` beside the directory of this example).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Where the store goes (default: a fresh directory under the system's temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Extra broker.conf lines, `key=value`.
    #[arg(long = "set")]
    set: Vec<String>,
    /// With `--dir`: restart the store a previous run filled there instead of filling
    /// again (the fill takes minutes; restarts are what is measured).
    #[arg(long, requires = "dir")]
    reuse: bool,
}

/// What the stand-in name server saw: (ms since the broker started, body bytes, compressed).
type Registrations = Arc<Mutex<Vec<(Instant, usize, bool)>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = args.broker_bin.clone().unwrap_or_else(default_broker_bin);
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("keel-many-topics-{}", std::process::id())));
    let reuse = args.reuse && dir.join("store").exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir)?;
    let registrations: Registrations = Arc::default();
    let namesrv = stand_in_namesrv(Arc::clone(&registrations)).await?;
    let conf = dir.join("broker.conf");
    let mut text = format!(
        "listenPort=0\nstorePathRootDir={}\nnamesrvAddr={namesrv}\ndefaultTopicQueueNums={}\nflushDiskType=ASYNC_FLUSH\n",
        dir.join("store").display(),
        args.queues
    );
    for line in &args.set {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&conf, text)?;

    let last_topic = format!("T{:05}", args.topics - 1);
    if !reuse {
        let (mut broker, addr, _) = start(&bin, &conf)?;
        let filled = Instant::now();
        if let Err(error) = fill(addr, args.topics, args.queues).await {
            let _ = broker.kill();
            return Err(error);
        }
        println!(
            "stored one message in each of {} queues ({} topics x {}) in {:.1} s",
            args.topics * usize::try_from(args.queues)?,
            args.topics,
            args.queues,
            filled.elapsed().as_secs_f64()
        );
        stop(&mut broker, "TERM")?;
    }

    registrations.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clear();
    let (mut broker, addr, started) = start(&bin, &conf)?;
    let clean = ready_after(addr, &last_topic, started).await?;
    let rss = resident_mib(broker.id());
    let registration = first_registration(&registrations, started).await;
    println!("restart after a clean stop: serving after {:.2} s; resident {rss:.0} MiB", clean.as_secs_f64());
    if let Some((after, bytes, compressed)) = registration {
        println!(
            "registration: {bytes} bytes (compressed={compressed}), received {:.2} s after the start",
            after.as_secs_f64()
        );
    }
    stop(&mut broker, "KILL")?;

    let (mut broker, addr, started) = start(&bin, &conf)?;
    let crashed = ready_after(addr, &last_topic, started).await?;
    let rss = resident_mib(broker.id());
    println!("restart after kill -9: serving after {:.2} s; resident {rss:.0} MiB", crashed.as_secs_f64());
    stop(&mut broker, "TERM")?;
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn default_broker_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/examples/many_topics -> target/<profile>/mqbroker
    exe.parent().and_then(Path::parent).map_or_else(|| PathBuf::from("mqbroker"), |p| p.join("mqbroker"))
}

/// Start the broker; its address from the boot line, and when it was started.
fn start(bin: &Path, conf: &Path) -> anyhow::Result<(Child, SocketAddr, Instant)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).read_line(&mut line)?;
    let port = line
        .split(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
        .find_map(|w| w.strip_prefix("127.0.0.1:"))
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| anyhow::anyhow!("no address in the boot line {line:?}"))?;
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port)), started))
}

fn stop(child: &mut Child, signal: &str) -> anyhow::Result<()> {
    Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status()?;
    child.wait()?;
    Ok(())
}

/// Create every topic with `queues` queues (as `mqadmin updateTopic` does), then store one
/// message in each queue, 512 requests in flight.
async fn fill(addr: SocketAddr, topics: usize, queues: i32) -> anyhow::Result<()> {
    let client = Arc::new(RemotingClient::connect(addr).await?);
    for topic in 0..topics {
        let header = CreateTopicRequestHeader {
            topic: format!("T{topic:05}"),
            default_topic: Some("TBW102".into()),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: 6,
            topic_filter_type: None,
            topic_sys_flag: None,
            order: None,
            attributes: None,
        };
        let request =
            RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC, 0, header.to_ext_fields());
        let reply = client.call(request).await?;
        anyhow::ensure!(reply.response_code() == ResponseCode::SUCCESS, "topic refused: {:?}", reply.remark);
    }
    let mut tasks: std::collections::VecDeque<tokio::task::JoinHandle<anyhow::Result<()>>> =
        std::collections::VecDeque::new();
    for topic in 0..topics {
        for queue in 0..queues {
            if tasks.len() >= 512 {
                if let Some(oldest) = tasks.pop_front() {
                    oldest.await??;
                }
            }
            let client = Arc::clone(&client);
            tasks.push_back(tokio::spawn(async move {
                let message = OutgoingMessage {
                    topic: format!("T{topic:05}"),
                    body: Bytes::from_static(b"one message per queue"),
                    ..OutgoingMessage::default()
                };
                let reply = client.call(send_message(0, "bench", queue, &message)).await?;
                anyhow::ensure!(
                    reply.response_code() == ResponseCode::SUCCESS,
                    "send refused: {:?}",
                    reply.remark
                );
                Ok(())
            }));
        }
    }
    for done in tasks {
        done.await??;
    }
    Ok(())
}

/// How long after `started` the broker answers GET_MAX_OFFSET for `topic` with 1 (its
/// store recovered and serving).
async fn ready_after(addr: SocketAddr, topic: &str, started: Instant) -> anyhow::Result<Duration> {
    loop {
        if let Ok(client) = RemotingClient::connect(addr).await {
            let ext: ExtFields = [("topic", topic), ("queueId", "0")].into_iter().collect();
            let request = RemotingCommand::request(RequestCode::GET_MAX_OFFSET, 0, ext);
            if let Ok(reply) = client.call(request).await {
                if reply.ext_fields.get("offset") == Some("1") {
                    return Ok(started.elapsed());
                }
            }
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not serving after 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// VmRSS of process `pid`, MiB.
fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn first_registration(
    registrations: &Registrations,
    started: Instant,
) -> Option<(Duration, usize, bool)> {
    for _ in 0..2_000 {
        if let Some(&(at, bytes, compressed)) = registrations.lock().ok()?.first() {
            return Some((at.duration_since(started), bytes, compressed));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A name server that records every REGISTER_BROKER and answers every request SUCCESS.
async fn stand_in_namesrv(registrations: Registrations) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let registrations = Arc::clone(&registrations);
            tokio::spawn(async move {
                let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => decoder.push(buf.get(..n).unwrap_or_default()),
                    }
                    while let Some(Ok(cmd)) = decoder.next_frame() {
                        if cmd.request_code() == RequestCode::REGISTER_BROKER {
                            let compressed = cmd.ext_fields.get("compressed") == Some("true");
                            if let Ok(mut seen) = registrations.lock() {
                                seen.push((Instant::now(), cmd.body.len(), compressed));
                            }
                        }
                        if cmd.is_oneway() {
                            continue;
                        }
                        let reply = RemotingCommand::response_to(&cmd, ResponseCode::SUCCESS, None);
                        if stream.write_all(&encode_to_bytes(&reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}
