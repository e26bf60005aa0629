//! The Prometheus endpoint of a running `keel` (`metricsExporterType=PROM`): traffic of
//! known shape goes in (sends of each message type, pulls, a held pull, a commit, a
//! dead-letter send-back, a committed and a rolled-back transaction) and a scrape of
//! `/metrics` shows exactly that under RocketMQ 5's names and labels. Real processes:
//! normal builds only.
#![cfg(not(madsim))]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_core::protocol::client_requests::{
    pull_message, send_message, send_message_back, OutgoingMessage, PullRequest,
};
use keel_core::protocol::headers::{CommandHeader, UpdateConsumerOffsetRequestHeader};
use keel_core::protocol::message::stored::{parse_record, Parsed};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use keel_runtime_tokio::client::{
    ClientConfig, KeelClient, OutgoingMessage as ClientMessage, SendResult, StoredMessage,
    TransactionListener, TransactionState,
};
use support::{http_get, scratch_dir, Client, ServerProcess};

const CONF: &str = "metricsExporterType=PROM\nmetricsPromExporterPort=0\nmetricsPromExporterHost=127.0.0.1\n";

/// The value of the sample `name{…}` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.rsplit_once("} ")?;
        labels.iter().all(|(k, v)| set.contains(&format!("{k}=\"{v}\""))).then(|| value.parse().ok())?
    })
}

fn message(topic: &str, body: &str, properties: &[(&str, &str)]) -> OutgoingMessage {
    OutgoingMessage {
        topic: topic.into(),
        tags: Some("T".into()),
        keys: None,
        user_properties: properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        body: Bytes::from(body.to_owned()),
    }
}

fn pull(group: &str, queue_id: i32, offset: i64, max_messages: i32, suspend_ms: i64) -> RemotingCommand {
    let request = PullRequest {
        group: group.into(),
        topic: "MetricsT".into(),
        queue_id,
        offset,
        max_messages,
        expression: "*".into(),
        suspend_ms,
    };
    pull_message(offset as i32 + 1000, &request)
}

/// Commits `commit-…` bodies and rolls back the rest.
struct ByBody;

impl TransactionListener for ByBody {
    fn execute(&self, message: &ClientMessage, _result: &SendResult) -> TransactionState {
        if message.body.starts_with(b"commit") {
            TransactionState::Commit
        } else {
            TransactionState::Rollback
        }
    }

    fn check(&self, _message: &StoredMessage) -> TransactionState {
        TransactionState::Rollback
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_the_traffic_that_was_made_under_rocketmqs_names() {
    let dir = scratch_dir("metrics");
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, CONF).unwrap();
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &dir.join("data"), Some(&conf));
    assert!(keel.boot_line.contains("metrics at http://127.0.0.1:"), "{}", keel.boot_line);
    let (namesrv, broker, metrics) =
        (keel.addr_in_boot_line(0), keel.addr_in_boot_line(1), keel.addr_in_boot_line(2));

    // Five 100-byte normal messages to queue 0; one each of delay and FIFO elsewhere.
    let mut client = Client::connect(broker);
    let body = "x".repeat(100);
    for i in 0..5 {
        let reply = client.call(&send_message(i + 1, "pg-metrics", 0, &message("MetricsT", &body, &[])));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }
    let delayed = message("MetricsDelay", "later", &[("DELAY", "1")]);
    assert_eq!(
        client.call(&send_message(10, "pg-metrics", 0, &delayed)).response_code(),
        ResponseCode::SUCCESS
    );
    let fifo = message("MetricsFifo", "in order", &[("__SHARDINGKEY", "order-7")]);
    assert_eq!(client.call(&send_message(11, "pg-metrics", 0, &fifo)).response_code(), ResponseCode::SUCCESS);

    // cg-metrics pulls three of queue 0's five and commits two; a pull of empty queue 1
    // is held until its 200 ms are up.
    let pulled = client.call(&pull("cg-metrics", 0, 0, 3, 0));
    assert_eq!(pulled.response_code(), ResponseCode::SUCCESS, "{:?}", pulled.remark);
    let pulled_bytes = pulled.body.len();
    let Ok(Parsed::Message(first)) = parse_record(&pulled.body) else { panic!("a stored record") };
    let first_phys = first.head().physical_offset;
    let held = client.call(&pull("cg-metrics", 1, 0, 32, 200));
    assert_eq!(held.response_code(), ResponseCode::PULL_NOT_FOUND, "{:?}", held.remark);
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "cg-metrics".into(),
        topic: "MetricsT".into(),
        queue_id: 0,
        commit_offset: 2,
    };
    let reply = client.call(&RemotingCommand::request(
        RequestCode::UPDATE_CONSUMER_OFFSET,
        20,
        commit.to_ext_fields(),
    ));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    // The first message goes straight to the dead-letter queue.
    let reply = client.call(&send_message_back(21, "cg-metrics", first_phys, -1, 16));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);

    let (status, text) = http_get(metrics, "/metrics");
    assert_eq!(status, 200, "{text}");
    if std::env::var_os("KEEL_PRINT_METRICS").is_some() {
        eprintln!("{text}");
    }
    let base = [("cluster", "DefaultCluster"), ("node_type", "broker"), ("node_id", "broker-a")];
    let with = |more: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        base.iter().chain(more).copied().collect()
    };
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    let normal = with(&[("topic", "MetricsT"), ("message_type", "Normal")]);
    assert_eq!(value("rocketmq_messages_in_total", &normal), 5.0);
    assert_eq!(value("rocketmq_throughput_in_total", &normal), 500.0);
    assert_eq!(value("rocketmq_message_size_count", &normal), 5.0);
    assert_eq!(value("rocketmq_message_size_bucket", &[("topic", "MetricsT"), ("le", "1024.0")]), 5.0);
    let delay = [("topic", "MetricsDelay"), ("message_type", "Delay")];
    assert_eq!(value("rocketmq_messages_in_total", &delay), 1.0);
    let fifo = [("topic", "MetricsFifo"), ("message_type", "FIFO")];
    assert_eq!(value("rocketmq_messages_in_total", &fifo), 1.0);

    let group = with(&[("topic", "MetricsT"), ("consumer_group", "cg-metrics")]);
    assert_eq!(value("rocketmq_messages_out_total", &group), 3.0);
    assert_eq!(value("rocketmq_throughput_out_total", &group), pulled_bytes as f64);
    // Five stored, three pulled, two committed.
    assert_eq!(value("rocketmq_consumer_lag_messages", &group), 3.0);
    assert_eq!(value("rocketmq_consumer_inflight_messages", &group), 1.0);
    assert_eq!(value("rocketmq_consumer_ready_messages", &group), 2.0);
    assert!(value("rocketmq_consumer_lag_latency", &group) >= 0.0);
    assert_eq!(value("rocketmq_send_to_dlq_messages_total", &group), 1.0);

    let send = [("protocol_type", "remoting"), ("request_code", "310"), ("response_code", "0")];
    assert_eq!(value("rocketmq_rpc_latency_count", &send), 7.0);
    let held = [("request_code", "11"), ("response_code", "19"), ("is_long_polling", "true")];
    assert_eq!(value("rocketmq_rpc_latency_count", &held), 1.0);
    // Held 200 ms: past the 100 ms bucket, within the 1 s one.
    let held_within = |le| value("rocketmq_rpc_latency_bucket", &[("is_long_polling", "true"), ("le", le)]);
    assert_eq!(held_within("100.0"), 0.0);
    assert_eq!(held_within("1000.0"), 1.0);
    let pulls = [("request_code", "11"), ("response_code", "0"), ("is_long_polling", "false")];
    assert_eq!(value("rocketmq_rpc_latency_count", &pulls), 1.0);

    assert!(value("rocketmq_storage_size", &base) > 0.0);
    assert!(value("rocketmq_storage_message_reserve_time", &base) >= 0.0);
    assert!(value("rocketmq_topic_number", &base) >= 4.0, "MetricsT, MetricsDelay, MetricsFifo, the DLQ");
    assert_eq!(value("rocketmq_delay_message_lag", &[("delay_level", "2")]), 0.0);
    assert!(text.contains("# TYPE rocketmq_timing_messages gauge"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    // A committed and a rolled-back transaction, from Keel's client library.
    let tx = KeelClient::start(ClientConfig::new(vec![namesrv], "127.0.0.1@metrics-tx"));
    let producer = tx.start_transaction_producer("pg-tx", ByBody).await.unwrap();
    for body in ["commit-1", "rollback-1"] {
        let message =
            ClientMessage { topic: "MetricsTx".into(), body: Bytes::from(body), ..ClientMessage::default() };
        producer.send(message).await.expect("half message stored");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (_, text) = http_get(metrics, "/metrics");
        let ended = |name| sample(&text, name, &[("topic", "MetricsTx")]) == Some(1.0);
        if ended("rocketmq_commit_messages_total") && ended("rocketmq_rollback_messages_total") {
            break text;
        }
        assert!(Instant::now() < deadline, "no commit and rollback in:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tx_in = [("topic", "MetricsTx"), ("message_type", "Transaction")];
    assert_eq!(sample(&text, "rocketmq_messages_in_total", &tx_in), Some(2.0), "{text}");
    assert_eq!(sample(&text, "rocketmq_half_messages", &base), Some(0.0), "{text}");
    tx.shutdown().await;

    let (status, _) = http_get(metrics, "/nothing");
    assert_eq!(status, 404);
    drop(client);
}
