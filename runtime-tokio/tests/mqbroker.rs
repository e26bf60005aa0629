//! The `mqbroker` and `keel` binaries on loopback: hostile peers throw garbage at a running
//! broker while well-behaved clients send and long-poll; the process stays up, the good
//! clients are unaffected and what was stored is unchanged, also after a restart. Real
//! sockets and processes: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use bytes::Bytes;
use keel_core::protocol::body::TopicRouteData;
use keel_core::protocol::client_requests::{
    pull_message, pulled_records, send_batch, send_message, OutgoingMessage, PullRequest,
};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader};
use keel_core::protocol::json;
use keel_core::protocol::{encode_to_bytes, ExtFields, RemotingCommand, RequestCode, ResponseCode};
use support::{hostile_streams, scratch_dir, Client, ServerProcess};

fn start_broker(store: &Path) -> (ServerProcess, SocketAddr) {
    let conf = store.with_extension("conf");
    let text = format!(
        "listenPort=0\nstorePathRootDir={}\nflushDiskType=SYNC_FLUSH\nmappedFileSizeCommitLog=1048576\nbrokerNmae=typo\n",
        store.display()
    );
    std::fs::write(&conf, text).unwrap();
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_mqbroker"), &["-c", conf.to_str().unwrap()]);
    assert!(server.boot_line.contains("boot success"), "{}", server.boot_line);
    let addr = server.addr_in_boot_line(0);
    (server, addr)
}

fn message(topic: &str, i: usize) -> OutgoingMessage {
    OutgoingMessage {
        topic: topic.into(),
        tags: Some("TagA".into()),
        keys: Some(format!("key-{i}")),
        user_properties: vec![("seq".into(), i.to_string())],
        body: Bytes::from(format!("body-{i}-{}", "x".repeat(i % 7))),
    }
}

fn pull(opaque: i32, topic: &str, queue_id: i32, offset: i64, suspend_ms: i64) -> RemotingCommand {
    let request = PullRequest {
        group: "cg".into(),
        topic: topic.into(),
        queue_id,
        offset,
        max_messages: 64,
        expression: "*".into(),
        suspend_ms,
    };
    pull_message(opaque, &request)
}

/// The bodies stored in `topic`'s queue 0.
fn stored_bodies(client: &mut Client, topic: &str) -> Vec<Bytes> {
    let reply = client.call(&pull(900, topic, 0, 0, 0));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    pulled_records(&reply.body).unwrap().iter().map(|r| Bytes::copy_from_slice(r.record.body)).collect()
}

#[test]
fn hostile_peers_only_hurt_themselves_and_stored_data_is_unchanged() {
    let store = scratch_dir("mqbroker").join("store");
    let (mut server, addr) = start_broker(&store);
    let mut producer = Client::connect(addr);
    for i in 0..20 {
        let reply = producer.call(&send_message(i32::try_from(i).unwrap() + 1, "pg", 0, &message("Safe", i)));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }
    let sent: Vec<Bytes> = (0..20).map(|i| message("Safe", i).body).collect();

    // A well-behaved consumer long-polls queue 1 the whole time.
    let mut consumer = Client::connect(addr);
    let held = pull(500, "Safe", 1, 0, 20_000);
    consumer.stream.write_all(&encode_to_bytes(&held)).unwrap();

    for (what, bytes) in hostile_streams() {
        let mut peer = Client::connect(addr);
        assert!(peer.send_raw_and_expect_close(&bytes), "{what}: the connection stays open");
    }
    let mut half = TcpStream::connect(addr).unwrap();
    let frame = encode_to_bytes(&send_message(77, "pg", 0, &message("Safe", 99)));
    half.write_all(&frame[..frame.len() - 3]).unwrap();
    drop(half);

    // Well-framed nonsense gets an error reply and the connection stays usable.
    let mut odd = Client::connect(addr);
    let mut wrong_type = send_message(30, "pg", 0, &message("Safe", 98));
    wrong_type.ext_fields.insert("e", "not-a-number");
    let reply = odd.call(&wrong_type);
    assert_ne!(reply.response_code(), ResponseCode::SUCCESS, "a send with queueId=not-a-number was accepted");
    let mut bad_batch = send_batch(31, "pg", 0, &[message("Safe", 97)]);
    bad_batch.body = Bytes::from_static(b"\x00\x00\x00\x40not a batch body");
    assert_ne!(odd.call(&bad_batch).response_code(), ResponseCode::SUCCESS);
    let mut missing = pull(32, "Safe", 0, 0, 0);
    missing.ext_fields = [("topic", "Safe")].into_iter().collect::<ExtFields>();
    assert_ne!(odd.call(&missing).response_code(), ResponseCode::SUCCESS);
    let unknown = RemotingCommand::request(RequestCode(31_337), 33, ExtFields::new());
    assert_eq!(odd.call(&unknown).response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    let invalid_topic = send_message(34, "pg", 0, &message("bad topic!", 0));
    assert_ne!(odd.call(&invalid_topic).response_code(), ResponseCode::SUCCESS);

    // The good clients are unaffected: the held pull is answered by the next arrival.
    assert!(server.is_running());
    let reply = producer.call(&send_message(40, "pg", 1, &message("Safe", 20)));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    let answered = consumer.call(&held);
    assert_eq!(answered.response_code(), ResponseCode::SUCCESS);
    let got = pulled_records(&answered.body).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record.body, &message("Safe", 20).body[..]);
    assert_eq!(stored_bodies(&mut producer, "Safe"), sent, "stored data changed");

    let (clean, stderr) = server.terminate();
    assert!(clean, "mqbroker did not exit cleanly: {stderr}");
    assert!(!store.join("abort").exists(), "abort marker left after SIGTERM");
    assert!(stderr.contains("malformed stream"), "closed connections are logged with a reason: {stderr}");
    assert!(stderr.contains("brokerNmae"), "unknown keys are named: {stderr}");

    // And after a restart.
    let (_server, addr) = start_broker(&store);
    assert_eq!(
        stored_bodies(&mut Client::connect(addr), "Safe"),
        sent,
        "stored data changed across a restart"
    );
}

#[test]
fn the_all_in_one_command_serves_routes_and_messages_and_stops_cleanly() {
    let data = scratch_dir("keel-all-in-one").join("data");
    let mut keel = ServerProcess::start(
        env!("CARGO_BIN_EXE_keel"),
        &["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"],
    );
    assert!(keel.boot_line.starts_with("Keel is up."), "{}", keel.boot_line);
    let (namesrv, broker) = (keel.addr_in_boot_line(0), keel.addr_in_boot_line(1));
    // Once it says it is up, the name server already knows the broker: a client started on
    // the announcement is routed at its first ask.
    let mut client = Client::connect(namesrv);
    let header = GetRouteInfoRequestHeader { topic: "TBW102".into(), accept_standard_json_only: None };
    let route = client.call(&RemotingCommand::request(
        RequestCode::GET_ROUTEINFO_BY_TOPIC,
        1,
        header.to_ext_fields(),
    ));
    assert_eq!(route.response_code(), ResponseCode::SUCCESS, "{:?}", route.remark);

    let mut producer = Client::connect(broker);
    let reply = producer.call(&send_message(1, "pg", 0, &message("AllInOne", 1)));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    // The new topic reaches the in-process name server.
    let header = GetRouteInfoRequestHeader { topic: "AllInOne".into(), accept_standard_json_only: None };
    let route_request =
        RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 2, header.to_ext_fields());
    let mut route = client.call(&route_request);
    for attempt in 3..50 {
        if route.response_code() == ResponseCode::SUCCESS {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        route = client.call(&RemotingCommand { opaque: attempt, ..route_request.clone() });
    }
    assert_eq!(route.response_code(), ResponseCode::SUCCESS, "{:?}", route.remark);
    let route: TopicRouteData = json::from_slice(&route.body).unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs[&0], broker.to_string());

    let (clean, stderr) = keel.terminate();
    assert!(clean, "keel did not exit cleanly: {stderr}");
    assert!(data.join("commitlog").is_dir() && !data.join("abort").exists(), "{stderr}");
}

/// `mqbench --grpc`: senders on straight h2 (sync, and async with calls in flight) and
/// simple consumers that receive and ack, each message counted once.
#[test]
fn mqbench_produces_and_consumes_over_grpc() {
    let dir = scratch_dir("mqbench-grpc");
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, "enableProxy=true\ngrpcServerPort=0\n").unwrap();
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &dir.join("data"), Some(&conf));
    assert!(keel.boot_line.contains("; gRPC at 127.0.0.1:"), "{}", keel.boot_line);
    let (namesrv, grpc) = (keel.addr_in_boot_line(0).to_string(), keel.addr_in_boot_line(2).to_string());
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mqbench")).args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    // "[...] N msgs in ...; failed 0; ...": N, once nothing failed.
    let counted = |report: &str| -> u64 {
        assert!(report.contains("failed 0;"), "{report}");
        let count = report.split("] ").nth(1).and_then(|rest| rest.split(' ').next());
        count.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count in {report}"))
    };
    let common = ["-n", &namesrv, "-t", "BenchGrpc", "--grpc", &grpc];
    let synced = run(&[&["producer", "-w", "2", "-s", "2000", "--count", "200"], &common[..]].concat());
    assert!(synced.contains("[producer (gRPC): 2 x Sync, 2000 B"), "{synced}");
    // Calls already in flight when the count is reached still land: one per sender at most.
    let synced_count = counted(&synced);
    assert!((200..202).contains(&synced_count), "{synced}");
    let async_args = ["producer", "-w", "2", "--mode", "async", "--inflight", "16", "--count", "300"];
    let pipelined = run(&[&async_args[..], &common[..]].concat());
    let pipelined_count = counted(&pipelined);
    assert!((300..300 + 32).contains(&pipelined_count), "{pipelined}");
    let stored = synced_count + pipelined_count;
    let consumed = run(&[
        &["consumer", "-w", "2", "-g", "bench-grpc", "--count", &stored.to_string(), "--duration", "30"],
        &common[..],
    ]
    .concat());
    assert_eq!(counted(&consumed), stored, "{consumed}");
}

#[test]
fn mqbench_produces_and_consumes_against_the_all_in_one_command() {
    let data = scratch_dir("mqbench").join("data");
    let keel = ServerProcess::start(
        env!("CARGO_BIN_EXE_keel"),
        &["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"],
    );
    let namesrv = keel.addr_in_boot_line(0).to_string();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mqbench")).args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let produced =
        run(&["producer", "-n", &namesrv, "-t", "Bench", "-w", "1", "-s", "100", "--count", "300"]);
    assert!(produced.contains("] 300 msgs in") && produced.contains("failed 0;"), "{produced}");
    assert!(produced.contains("p999"), "{produced}");
    let batched = run(&["producer", "-n", &namesrv, "-t", "Bench", "-w", "1", "-b", "10", "--count", "100"]);
    assert!(batched.contains("] 100 msgs in") && batched.contains("failed 0;"), "{batched}");
    let consumed = run(&["consumer", "-n", &namesrv, "-t", "Bench", "-w", "2", "--duration", "30"]);
    assert!(consumed.contains("] 400 msgs in") && consumed.contains("failed 0;"), "{consumed}");
    // The probe: one sync sender's latency while a small flood runs in a child process.
    let probed = run(&[
        "probe",
        "-n",
        &namesrv,
        "-t",
        "Bench",
        "--flood-conns",
        "4",
        "--flood-inflight",
        "4",
        "--duration",
        "2",
    ]);
    assert!(probed.contains("[producer: 1 x Sync, 4096 B") && probed.contains("failed 0;"), "{probed}");
    assert!(
        probed.contains("flood: [producer: 4 x Async") && probed.contains("while the probe ran"),
        "{probed}"
    );
}
