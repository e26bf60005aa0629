//! The Rust client library's transaction producer against the `keel` binary on loopback:
//! committed messages are delivered once, rolled-back ones never, and transactions left
//! unknown are checked back, resolved by the check listener, or discarded after
//! `transactionCheckMax` checks. Real sockets: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_runtime_tokio::client::{
    ClientConfig, ConsumeFromWhere, ConsumeResult, ConsumerConfig, KeelClient, MessageQueue, OutgoingMessage,
    SendResult, StoredMessage, TransactionListener, TransactionState,
};
use support::{scratch_dir, ServerProcess};

/// Checks are fast here: every second, after one second, at most three.
const BROKER_CONF: &str = "transactionTimeOut=1000\ntransactionCheckInterval=1000\ntransactionCheckMax=3\n";

/// Answers by the body's prefix, and records every check (body, when).
struct Decider {
    checks: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl TransactionListener for Decider {
    fn execute(&self, message: &OutgoingMessage, _result: &SendResult) -> TransactionState {
        let body = String::from_utf8_lossy(&message.body);
        if body.starts_with("commit") {
            TransactionState::Commit
        } else if body.starts_with("rollback") {
            TransactionState::Rollback
        } else {
            TransactionState::Unknown
        }
    }

    fn check(&self, message: &StoredMessage) -> TransactionState {
        let body = String::from_utf8_lossy(&message.body).into_owned();
        self.checks.lock().unwrap().push((body.clone(), Instant::now()));
        match body.as_str() {
            "unknown-then-commit" => TransactionState::Commit,
            "unknown-then-rollback" => TransactionState::Rollback,
            _ => TransactionState::Unknown,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_delivered_once_rollbacks_never_and_unknowns_are_checked_back() {
    let dir = scratch_dir("tx-producer");
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, BROKER_CONF).unwrap();
    let data = dir.join("data");
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &data, Some(&conf));
    assert!(keel.boot_line.starts_with("Keel is up."), "{}", keel.boot_line);
    let namesrv = keel.addr_in_boot_line(0);

    let checks: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let client = KeelClient::start(ClientConfig::new(vec![namesrv], "127.0.0.1@tx-producer"));
    let producer =
        client.start_transaction_producer("tx-pg", Decider { checks: Arc::clone(&checks) }).await.unwrap();
    let mut sent_at = BTreeMap::new();
    for body in ["commit-1", "rollback-1", "unknown-then-commit", "unknown-then-rollback", "unknown-forever"]
    {
        let message = OutgoingMessage {
            topic: "TxTopic".into(),
            tags: Some("T".into()),
            body: Bytes::from(body),
            ..OutgoingMessage::default()
        };
        let result = producer.send(message).await.expect("half message stored");
        assert_eq!(result.send.queue.topic, "TxTopic");
        sent_at.insert(body.to_owned(), Instant::now());
    }

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut config = ConsumerConfig::new("tx-cg", "TxTopic", "*");
    config.from_where = ConsumeFromWhere::FirstOffset;
    let consumer = KeelClient::start(ClientConfig::new(vec![namesrv], "127.0.0.1@tx-consumer"));
    let record = Arc::clone(&seen);
    consumer
        .start_consumer(
            config,
            move |_: &MessageQueue, messages: &[StoredMessage]| {
                for m in messages {
                    record.lock().unwrap().push(String::from_utf8_lossy(&m.body).into_owned());
                }
                ConsumeResult::Success
            },
            2,
        )
        .await
        .unwrap();

    // The forgotten one is checked three times, then discarded; give the rest time to land.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let forever = checks.lock().unwrap().iter().filter(|(b, _)| b == "unknown-forever").count();
        let delivered = seen.lock().unwrap().len();
        if forever >= 3 && delivered >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "checks {:?}, delivered {:?}",
            checks.lock().unwrap(),
            seen.lock()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut delivered = seen.lock().unwrap().clone();
    delivered.sort();
    assert_eq!(delivered, ["commit-1", "unknown-then-commit"], "each commit once, no rollback");
    let checks = checks.lock().unwrap().clone();
    let count = |body: &str| checks.iter().filter(|(b, _)| b == body).count();
    assert_eq!(count("unknown-forever"), 3, "transactionCheckMax checks: {checks:?}");
    assert_eq!(count("commit-1") + count("rollback-1"), 0, "an ended transaction was checked");
    assert!(count("unknown-then-commit") >= 1 && count("unknown-then-rollback") >= 1);
    for (body, at) in &checks {
        let sent = sent_at[body];
        assert!(at.duration_since(sent) >= Duration::from_millis(900), "{body} checked before the timeout");
    }
    consumer.shutdown().await;
    client.shutdown().await;
    drop(keel);
}
