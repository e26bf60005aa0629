//! The Rust client library against the `keel` binary on loopback: sends with retries and
//! routes, two push consumers of one group splitting the queues and one taking over when the
//! other stops, failed deliveries coming back with rising `reconsumeTimes` and ending in the
//! dead-letter queue, orderly consumption keeping FIFO, lite pull consumers (poll, commit,
//! assign, seek, pause), the consume timeout and starting from a timestamp. Real sockets: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_runtime_tokio::client::{
    ClientConfig, ConsumeFromWhere, ConsumeResult, ConsumerConfig, KeelClient, LitePullConsumer,
    MessageQueue, OutgoingMessage, SendRequest, SendTarget, StoredMessage,
};
use support::{scratch_dir, ServerProcess};

fn start_keel(name: &str) -> (ServerProcess, std::net::SocketAddr) {
    let data = scratch_dir(name).join("data");
    let keel = ServerProcess::start(
        env!("CARGO_BIN_EXE_keel"),
        &["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"],
    );
    assert!(keel.boot_line.starts_with("Keel is up."), "{}", keel.boot_line);
    let namesrv = keel.addr_in_boot_line(0);
    (keel, namesrv)
}

fn client(namesrv: std::net::SocketAddr, instance: &str) -> KeelClient {
    KeelClient::start(ClientConfig::new(vec![namesrv], format!("127.0.0.1@{instance}")))
}

fn message(topic: &str, i: usize) -> OutgoingMessage {
    OutgoingMessage {
        topic: topic.into(),
        tags: Some("TagA".into()),
        body: Bytes::from(format!("body-{i}")),
        ..OutgoingMessage::default()
    }
}

/// Everything a listener saw: (instance, queue id, queue offset, reconsume times, body).
type Seen = Arc<Mutex<Vec<(String, i32, i64, i32, String)>>>;

fn recorder(
    seen: &Seen,
    instance: &str,
    fail: impl Fn(&StoredMessage) -> bool + Send + Sync + 'static,
) -> impl Fn(&MessageQueue, &[StoredMessage]) -> ConsumeResult {
    let (seen, instance) = (Arc::clone(seen), instance.to_owned());
    move |queue: &MessageQueue, messages: &[StoredMessage]| {
        let mut failed = false;
        for m in messages {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            seen.lock().unwrap().push((
                instance.clone(),
                queue.queue_id,
                m.head.queue_offset,
                m.head.reconsume_times,
                body,
            ));
            failed |= fail(m);
        }
        if failed {
            ConsumeResult::Later
        } else {
            ConsumeResult::Success
        }
    }
}

/// Send `message(topic, i)` for each `i` of `keys`, each acknowledged.
async fn send_all(producer: &KeelClient, topic: &str, keys: std::ops::Range<usize>) {
    for i in keys {
        let request = SendRequest { group: "pg".into(), message: message(topic, i), target: SendTarget::Any };
        producer.send(request).await.expect("send");
    }
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn consumer_config(group: &str, topic: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(group, topic, "*");
    config.from_where = ConsumeFromWhere::FirstOffset;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_are_stored_and_two_consumers_split_then_one_takes_over() {
    let (_keel, namesrv) = start_keel("client-split");
    let producer = client(namesrv, "producer");
    let mut queues_used = BTreeSet::new();
    for i in 0..40 {
        let sent = producer
            .send(SendRequest {
                group: "pg".into(),
                message: message("LibSplit", i),
                target: SendTarget::Any,
            })
            .await
            .expect("send");
        queues_used.insert(sent.queue.queue_id);
    }
    assert_eq!(queues_used.len(), 4, "round robin over the auto-created topic's 4 queues");

    let seen: Seen = Arc::default();
    let a = client(namesrv, "consumer-a");
    let b = client(namesrv, "consumer-b");
    a.start_consumer(consumer_config("cg_split", "LibSplit"), recorder(&seen, "a", |_| false), 4)
        .await
        .unwrap();
    b.start_consumer(consumer_config("cg_split", "LibSplit"), recorder(&seen, "b", |_| false), 4)
        .await
        .unwrap();
    // Both join; rebalancing settles; then every queue has exactly one owner.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = seen.lock().unwrap().len();
    send_all(&producer, "LibSplit", 100..140).await;
    wait_until("80 messages", Duration::from_secs(30), || seen.lock().unwrap().len() >= before + 40).await;
    let owners: BTreeMap<i32, BTreeSet<String>> =
        seen.lock().unwrap()[before..].iter().fold(BTreeMap::new(), |mut map, s| {
            map.entry(s.1).or_default().insert(s.0.clone());
            map
        });
    assert!(owners.values().all(|o| o.len() == 1), "a queue consumed by both: {owners:?}");
    let instances: BTreeSet<&String> = owners.values().flatten().collect();
    assert_eq!(instances.len(), 2, "both consumers got queues: {owners:?}");
    let bodies: BTreeSet<String> = seen.lock().unwrap().iter().map(|s| s.4.clone()).collect();
    assert_eq!(bodies.len(), 80, "every message consumed");

    // a stops: b takes over every queue.
    a.shutdown().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = seen.lock().unwrap().len();
    send_all(&producer, "LibSplit", 200..240).await;
    wait_until("b takes over", Duration::from_secs(30), || seen.lock().unwrap().len() >= before + 40).await;
    let late: BTreeSet<(String, i32)> =
        seen.lock().unwrap()[before..].iter().map(|s| (s.0.clone(), s.1)).collect();
    assert_eq!(late, (0..4).map(|q| ("b".to_owned(), q)).collect(), "b owns every queue");
    b.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_retried_with_rising_reconsume_times_then_dead_lettered() {
    let (_keel, namesrv) = start_keel("client-retry");
    let producer = client(namesrv, "producer");
    producer
        .send(SendRequest { group: "pg".into(), message: message("LibRetry", 1), target: SendTarget::Any })
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let consumer = client(namesrv, "retry");
    let mut config = consumer_config("cg_retry", "LibRetry");
    config.max_reconsume_times = 1; // one retry: level 3 (10 s), then the DLQ
    consumer.start_consumer(config, recorder(&seen, "c", |_| true), 2).await.unwrap();
    wait_until("two deliveries", Duration::from_secs(40), || seen.lock().unwrap().len() >= 2).await;
    let tries: Vec<i32> = seen.lock().unwrap().iter().map(|s| s.3).collect();
    assert_eq!(tries, [0, 1]);

    // The DLQ now holds it once; a consumer of the DLQ topic reads it.
    let dead: Seen = Arc::default();
    let reader = client(namesrv, "dlq-reader");
    reader
        .start_consumer(consumer_config("cg_dlq_reader", "%DLQ%cg_retry"), recorder(&dead, "d", |_| false), 1)
        .await
        .unwrap();
    wait_until("the dead letter", Duration::from_secs(20), || !dead.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dead = dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].3, dead[0].4.as_str()), (2, "body-1"));
    assert_eq!(seen.lock().unwrap().len(), 2, "never delivered to its group again");
    for c in [producer, consumer, reader] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_consumer_keeps_fifo_and_retries_the_same_message_first() {
    let (_keel, namesrv) = start_keel("client-orderly");
    let producer = client(namesrv, "producer");
    for i in 0..30 {
        let target = SendTarget::Key(i32::try_from(i % 3).unwrap());
        producer
            .send(SendRequest { group: "pg".into(), message: message("LibOrderly", i), target })
            .await
            .unwrap();
    }
    let seen: Seen = Arc::default();
    let consumer = client(namesrv, "orderly");
    let mut config = consumer_config("cg_orderly", "LibOrderly");
    config.orderly = true;
    config.suspend_ms = 100;
    // body-4 fails twice before it is consumed: it comes back before anything after it.
    let failures = Arc::new(Mutex::new(0));
    let fail = {
        let failures = Arc::clone(&failures);
        move |m: &StoredMessage| {
            let mut f = failures.lock().unwrap();
            if &m.body[..] == b"body-4" && *f < 2 {
                *f += 1;
                return true;
            }
            false
        }
    };
    consumer.start_consumer(config, recorder(&seen, "o", fail), 4).await.unwrap();
    wait_until("32 deliveries", Duration::from_secs(30), || seen.lock().unwrap().len() >= 32).await;
    let seen = seen.lock().unwrap().clone();
    let mut per_queue: BTreeMap<i32, Vec<(i64, i32)>> = BTreeMap::new();
    for s in &seen {
        per_queue.entry(s.1).or_default().push((s.2, s.3));
    }
    for (queue, deliveries) in &per_queue {
        let offsets: Vec<i64> = deliveries.iter().map(|d| d.0).collect();
        let mut expected: Vec<i64> = Vec::new();
        for o in 0..10 {
            expected.push(o);
            if *queue == 1 && o == 1 {
                expected.extend([1, 1]); // body-4 is queue 1's second message
            }
        }
        assert_eq!(offsets, expected, "queue {queue} out of order");
    }
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcasting_consumer_resumes_from_its_local_offsets_file() {
    use keel_runtime_tokio::client::{ClientOptions, MessageModel};
    let (_keel, namesrv) = start_keel("client-broadcast");
    let dir = scratch_dir("client-broadcast-offsets");
    let producer = client(namesrv, "producer");
    send_all(&producer, "LibBroadcast", 0..10).await;
    let start = |seen: &Seen| {
        let options = ClientOptions { offsets_dir: Some(dir.clone()), ..ClientOptions::default() };
        let client = KeelClient::start_with(ClientConfig::new(vec![namesrv], "127.0.0.1@bc"), options);
        let mut config = consumer_config("cg_broadcast", "LibBroadcast");
        config.model = MessageModel::Broadcasting;
        (client, config, recorder(seen, "bc", |_| false))
    };
    let first: Seen = Arc::default();
    let (consumer, config, listener) = start(&first);
    consumer.start_consumer(config, listener, 2).await.unwrap();
    wait_until("the first ten", Duration::from_secs(20), || first.lock().unwrap().len() >= 10).await;
    consumer.shutdown().await;
    let file = dir.join("127.0.0.1@bc").join("cg_broadcast").join("offsets.json");
    assert!(file.exists(), "no offsets file at {}", file.display());

    send_all(&producer, "LibBroadcast", 10..15).await;
    let second: Seen = Arc::default();
    let (consumer, config, listener) = start(&second);
    consumer.start_consumer(config, listener, 2).await.unwrap();
    wait_until("the next five", Duration::from_secs(20), || second.lock().unwrap().len() >= 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bodies: BTreeSet<String> = second.lock().unwrap().iter().map(|s| s.4.clone()).collect();
    let want: BTreeSet<String> = (10..15).map(|i| format!("body-{i}")).collect();
    assert_eq!(bodies, want, "the restarted consumer resumed where it stopped");
    assert_eq!(second.lock().unwrap().len(), 5, "nothing consumed twice");
    consumer.shutdown().await;
    producer.shutdown().await;
}

/// Poll `consumer` until `count` messages came or `timeout` passed; (queue id, offset, body).
async fn poll_until(consumer: &LitePullConsumer, count: usize, timeout: Duration) -> Vec<(i32, i64, String)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        for m in consumer.poll(16, Duration::from_millis(500)).await.expect("poll") {
            got.push((m.head.queue_id, m.head.queue_offset, String::from_utf8_lossy(&m.body).into_owned()));
        }
    }
    got
}

fn lite_config(group: &str, topic: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::lite_pull(group, topic, "*");
    config.from_where = ConsumeFromWhere::FirstOffset;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lite_pull_consumer_polls_everything_once_and_a_new_instance_resumes_after_it() {
    let (_keel, namesrv) = start_keel("client-lite");
    let producer = client(namesrv, "producer");
    send_all(&producer, "LibLite", 0..40).await;

    let first = client(namesrv, "lite-1");
    let consumer = first.start_lite_pull_consumer(lite_config("cg_lite", "LibLite")).await.unwrap();
    let got = poll_until(&consumer, 40, Duration::from_secs(30)).await;
    let bodies: BTreeSet<String> = got.iter().map(|g| g.2.clone()).collect();
    assert_eq!(bodies, (0..40).map(|i| format!("body-{i}")).collect::<BTreeSet<_>>());
    assert_eq!(got.len(), 40, "nothing polled twice");
    assert_eq!(consumer.assignment().await.unwrap().len(), 4, "one consumer reads every queue");
    // Shutting down with autoCommit says the last poll is done: its offsets are committed.
    consumer.shutdown().await.unwrap();
    first.shutdown().await;

    send_all(&producer, "LibLite", 40..50).await;
    let second = client(namesrv, "lite-2");
    let consumer = second.start_lite_pull_consumer(lite_config("cg_lite", "LibLite")).await.unwrap();
    let mut got = poll_until(&consumer, 10, Duration::from_secs(30)).await;
    got.extend(poll_until(&consumer, 1, Duration::from_secs(2)).await);
    let bodies: Vec<String> = got.iter().map(|g| g.2.clone()).collect();
    let mut sorted = bodies.clone();
    sorted.sort_by_key(|b| b.trim_start_matches("body-").parse::<u32>().unwrap());
    assert_eq!(sorted, (40..50).map(|i| format!("body-{i}")).collect::<Vec<_>>(), "resumed after {bodies:?}");
    second.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lite_pull_consumer_assigns_seeks_pauses_and_commits_by_hand() {
    let (_keel, namesrv) = start_keel("client-lite-assign");
    let producer = client(namesrv, "producer");
    // Messages on every queue; the consumer is assigned queue 2 only.
    let mut on_queue = Vec::new();
    for i in 0..24 {
        let request =
            SendRequest { group: "pg".into(), message: message("LibAssign", i), target: SendTarget::Any };
        let sent = producer.send(request).await.expect("send");
        if sent.queue.queue_id == 2 {
            on_queue.push((sent.queue.clone(), sent.queue_offset, format!("body-{i}")));
        }
    }
    let mq = on_queue[0].0.clone();
    let n = on_queue.len();
    let expected: Vec<(i32, i64, String)> =
        on_queue.iter().map(|(q, o, b)| (q.queue_id, *o, b.clone())).collect();

    let start = |instance: &'static str| {
        let client = client(namesrv, instance);
        let mut config = lite_config("cg_assign", "");
        config.auto_commit = false;
        (client, config)
    };
    let (first, config) = start("assign-1");
    let consumer = first.start_lite_pull_consumer(config).await.unwrap();
    consumer.assign(vec![mq.clone()]).await.unwrap();
    let got = poll_until(&consumer, n, Duration::from_secs(30)).await;
    assert_eq!(got, expected, "only the assigned queue, in order");

    // Seek back to offset 1: everything from there comes again.
    consumer.seek(mq.clone(), 1).await.unwrap();
    let again = poll_until(&consumer, n - 1, Duration::from_secs(30)).await;
    assert_eq!(again, expected[1..].to_vec());

    // Paused, a new message is not pulled; resumed, it is.
    consumer.pause(vec![mq.clone()]).await.unwrap();
    let extra = SendRequest {
        group: "pg".into(),
        message: message("LibAssign", 100),
        target: SendTarget::Queue(mq.clone()),
    };
    producer.send(extra).await.unwrap();
    assert!(poll_until(&consumer, 1, Duration::from_secs(2)).await.is_empty(), "paused queue pulled");
    consumer.resume(vec![mq.clone()]).await.unwrap();
    let resumed = poll_until(&consumer, 1, Duration::from_secs(20)).await;
    assert_eq!(resumed.iter().map(|g| g.2.as_str()).collect::<Vec<_>>(), ["body-100"]);
    consumer.commit().await.unwrap();
    first.shutdown().await;

    // Committed by hand: a new instance starts after body-100. It polls two more and stops
    // without committing, so a third instance gets those two again.
    for i in [101, 102] {
        let more = SendRequest {
            group: "pg".into(),
            message: message("LibAssign", i),
            target: SendTarget::Queue(mq.clone()),
        };
        producer.send(more).await.unwrap();
    }
    for instance in ["assign-2", "assign-3"] {
        let (client, config) = start(instance);
        let consumer = client.start_lite_pull_consumer(config).await.unwrap();
        consumer.assign(vec![mq.clone()]).await.unwrap();
        let mut got = poll_until(&consumer, 2, Duration::from_secs(30)).await;
        got.extend(poll_until(&consumer, 1, Duration::from_secs(2)).await);
        let bodies: Vec<&str> = got.iter().map(|g| g.2.as_str()).collect();
        assert_eq!(bodies, ["body-101", "body-102"], "{instance}");
        client.shutdown().await;
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_past_its_consume_timeout_is_sent_back_and_comes_again() {
    let (_keel, namesrv) = start_keel("client-timeout");
    let producer = client(namesrv, "producer");
    send_all(&producer, "LibTimeout", 0..1).await;
    let seen: Seen = Arc::default();
    let consumer = client(namesrv, "timeout");
    let mut config = consumer_config("cg_timeout", "LibTimeout");
    config.consume_timeout_ms = 1_000;
    let record = recorder(&seen, "t", |_| false);
    // The first delivery takes 2.5 s, past the timeout; its late success is ignored.
    let slow = move |queue: &MessageQueue, messages: &[StoredMessage]| {
        if messages.iter().any(|m| m.head.reconsume_times == 0) {
            std::thread::sleep(Duration::from_millis(2_500));
        }
        record(queue, messages)
    };
    consumer.start_consumer(config, slow, 2).await.unwrap();
    // Sent back at level 3 (10 s by default).
    wait_until("the second delivery", Duration::from_secs(40), || seen.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tries: Vec<i32> = seen.lock().unwrap().iter().map(|s| s.3).collect();
    assert_eq!(tries, [0, 1]);
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_consuming_from_a_timestamp_starts_at_the_first_message_stored_after_it() {
    let (_keel, namesrv) = start_keel("client-timestamp");
    let producer = client(namesrv, "producer");
    send_all(&producer, "LibTimestamp", 0..8).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    send_all(&producer, "LibTimestamp", 8..16).await;
    let seen: Seen = Arc::default();
    let consumer = client(namesrv, "timestamp");
    let mut config = ConsumerConfig::new("cg_timestamp", "LibTimestamp", "*");
    config.from_where = ConsumeFromWhere::Timestamp(since);
    consumer.start_consumer(config, recorder(&seen, "ts", |_| false), 2).await.unwrap();
    wait_until("eight messages", Duration::from_secs(20), || seen.lock().unwrap().len() >= 8).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bodies: BTreeSet<String> = seen.lock().unwrap().iter().map(|s| s.4.clone()).collect();
    assert_eq!(bodies, (8..16).map(|i| format!("body-{i}")).collect::<BTreeSet<_>>());
    assert_eq!(seen.lock().unwrap().len(), 8);
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_obeys_an_operator_reset_and_consumes_again_from_there() {
    let (_keel, namesrv) = start_keel("client-reset");
    let producer = client(namesrv, "producer");
    send_all(&producer, "LibReset", 0..20).await;
    let seen: Seen = Arc::default();
    let consumer = client(namesrv, "consumer");
    let mut config = consumer_config("cg_reset", "LibReset");
    // Caught up, its pulls wait at the broker as long as the broker allows (20 s): a reset
    // seen within less than that came by the push, not by a held pull's return.
    config.pull_hold_ms = 60_000;
    consumer.start_consumer(config, recorder(&seen, "c", |_| false), 4).await.unwrap();
    wait_until("20 messages", Duration::from_secs(30), || seen.lock().unwrap().len() >= 20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = seen.lock().unwrap().len();

    let namesrv_text = namesrv.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mqadmin"))
            .args(["resetOffsetByTime", "-n", &namesrv_text, "-g", "cg_reset", "-t", "LibReset", "-s", "0"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        stdout.lines().skip(2).filter(|l| l.split_whitespace().nth(2) == Some("0")).count(),
        4,
        "every queue back to 0: {stdout}"
    );

    wait_until("the 20 again", Duration::from_secs(12), || seen.lock().unwrap().len() >= before + 20).await;
    let again: BTreeSet<String> = seen.lock().unwrap()[before..].iter().map(|s| s.4.clone()).collect();
    assert_eq!(again.len(), 20, "each message once more: {again:?}");
    consumer.shutdown().await;
    producer.shutdown().await;
}

/// Run mqadmin with `args` off the async runtime; its stdout, or its stderr if it failed.
async fn mqadmin(args: Vec<String>) -> Result<String, String> {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mqadmin")).args(&args).output().unwrap()
    })
    .await
    .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_what_a_consumer_holds_and_has_it_consume_a_message_directly() {
    let (_keel, namesrv) = start_keel("client-status");
    let producer = client(namesrv, "producer");
    let mut ids = Vec::new();
    for i in 0..8 {
        let request =
            SendRequest { group: "pg".into(), message: message("LibStatus", i), target: SendTarget::Any };
        ids.push(producer.send(request).await.expect("send").msg_id);
    }
    let seen: Seen = Arc::default();
    let consumer = client(namesrv, "status-consumer");
    consumer
        .start_consumer(consumer_config("cg_status", "LibStatus"), recorder(&seen, "c", |_| false), 4)
        .await
        .unwrap();
    wait_until("8 messages", Duration::from_secs(30), || seen.lock().unwrap().len() >= 8).await;
    let n = namesrv.to_string();
    let args = |list: &[&str]| -> Vec<String> { list.iter().map(|s| (*s).to_owned()).collect() };

    let members = mqadmin(args(&["consumerStatus", "-n", &n, "-g", "cg_status"])).await.unwrap();
    assert!(
        members.starts_with("001  127.0.0.1@status-consumer") && members.contains("4 queues"),
        "{members}"
    );
    // Each queue's commit point reaches the 2 messages it had once they are finished.
    let mut detail = String::new();
    wait_until("commit points at 2", Duration::from_secs(10), || {
        detail = std::process::Command::new(env!("CARGO_BIN_EXE_mqadmin"))
            .args(["consumerStatus", "-n", &n, "-g", "cg_status", "-i", "127.0.0.1@status-consumer"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        detail.matches("ProcessQueueInfo [commitOffset=2,").count() == 4
    })
    .await;
    assert!(detail.contains("PROP_CONSUME_TYPE                       : CONSUME_PASSIVELY"), "{detail}");
    assert!(detail.contains("Topic: LibStatus"), "{detail}");
    let progress = mqadmin(args(&["consumerProgress", "-n", &n, "-g", "cg_status"])).await.unwrap();
    let holders: Vec<&str> = progress
        .lines()
        .filter(|l| l.starts_with("LibStatus"))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert_eq!(holders, ["127.0.0.1"; 4], "the Client IP column names the holder: {progress}");

    // The listener runs on the message once more, and the answer comes back.
    let before = seen.lock().unwrap().len();
    let direct = mqadmin(args(&[
        "queryMsgById",
        "-n",
        &n,
        "-i",
        &ids[3],
        "-g",
        "cg_status",
        "-d",
        "127.0.0.1@status-consumer",
    ]))
    .await
    .unwrap();
    assert!(direct.contains("consumeResult=CR_SUCCESS"), "{direct}");
    let again: Vec<String> = seen.lock().unwrap()[before..].iter().map(|s| s.4.clone()).collect();
    assert_eq!(again, ["body-3"], "{direct}");
    let refused = mqadmin(args(&[
        "queryMsgById",
        "-n",
        &n,
        "-i",
        &ids[3],
        "-g",
        "cg_status",
        "-d",
        "127.0.0.1@nobody",
    ]))
    .await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("not online")), "{refused:?}");
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_message_trace_on_a_send_and_its_consumption_are_traced_and_mqadmin_shows_them() {
    let (_keel, namesrv) = start_keel("client-trace");
    let traced = |instance: &str| {
        let mut config = ClientConfig::new(vec![namesrv], format!("127.0.0.1@{instance}"));
        config.trace_topic = Some("RMQ_SYS_TRACE_TOPIC".into());
        KeelClient::start(config)
    };
    let producer = traced("trace-producer");
    let request = SendRequest {
        group: "pg-traced".into(),
        message: OutgoingMessage { keys: Some("order-7".into()), ..message("LibTraced", 0) },
        target: SendTarget::Any,
    };
    let id = producer.send(request).await.expect("send").unique_id;
    let seen: Seen = Arc::default();
    let consumer = traced("trace-consumer");
    consumer
        .start_consumer(consumer_config("cg_traced", "LibTraced"), recorder(&seen, "c", |_| false), 1)
        .await
        .unwrap();
    wait_until("the message", Duration::from_secs(30), || !seen.lock().unwrap().is_empty()).await;

    let n = namesrv.to_string();
    let mut trace = String::new();
    wait_until("a Pub and a Sub in the trace", Duration::from_secs(20), || {
        trace = std::process::Command::new(env!("CARGO_BIN_EXE_mqadmin"))
            .args(["queryMsgTraceById", "-n", &n, "-i", &id])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        trace.contains("\nPub ") && trace.contains("\nSub ")
    })
    .await;
    let row = |kind: &str| -> Vec<String> {
        trace
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let published = row("Pub ");
    assert_eq!(
        (published[1].as_str(), published[2].as_str(), published[6].as_str()),
        ("pg-traced", "127.0.0.1", "success"),
        "{trace}"
    );
    let consumed = row("Sub ");
    assert_eq!((consumed[1].as_str(), consumed[6].as_str()), ("cg_traced", "success"), "{trace}");
    // The trace messages themselves are not traced, and a key query of the topic still
    // finds only the message.
    let by_key =
        mqadmin(["queryMsgByKey", "-n", &n, "-t", "LibTraced", "-k", "order-7"].map(str::to_owned).to_vec())
            .await
            .unwrap();
    assert_eq!(by_key.lines().count(), 2, "{by_key}");
    producer.shutdown().await;
    consumer.shutdown().await;
}
