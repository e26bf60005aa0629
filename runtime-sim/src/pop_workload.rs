//! The pop workload of a cluster seed: one node sends keyed messages to a normal topic and
//! a FIFO topic, and pops both as 5.x consumers do (POP_MESSAGE, ACK_MESSAGE), over the
//! remoting codes. Normal pops leave some messages unacknowledged on purpose (they must come
//! back after their invisible time) and never acknowledge poison messages (they must end in
//! the group's dead-letter queue after `retryMaxTimes` retries); FIFO pops acknowledge in
//! order, sometimes stopping part-way through a batch. Everything goes into the history for
//! `pop_checks`. The node is never killed nor partitioned.

use std::time::Duration;

use bytes::Bytes;
use keel_core::protocol::body::SubscriptionGroupConfig;
use keel_core::protocol::client_requests::{
    ack_message, pop_message, popped_messages, pull_message, pulled_records, send_message, OutgoingMessage,
    PopRequest, PullRequest,
};
use keel_core::protocol::headers::{CommandHeader, SendMessageResponseHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Event, Key};
use crate::pop_checks::{is_poison, POP_RETRY_MAX};
use crate::sim_conn::SimConn;
use crate::workload::{resolve, ClientEnv, NAMESRV};

/// The normal topic and its group.
pub const POP_TOPIC: &str = "PopTopic";
const POP_GROUP: &str = "pop-cg";
/// The FIFO topic and its group.
pub const POP_FIFO_TOPIC: &str = "PopFifo";
const POP_FIFO_GROUP: &str = "pop-fifo";
/// Its keys start here (apart from the other workloads').
const KEY_BASE: Key = 0x7200_0000_0000;
/// Invisible times, ms.
const INVISIBLE_MS: u64 = 4_000;
const FIFO_INVISIBLE_MS: u64 = 3_000;
/// The broker set's name (the cluster seeds' one).
const BROKER_NAME: &str = "broker-a";

fn key_of(props: &[u8]) -> Option<Key> {
    properties::find(props, keys::KEYS)
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| u64::from_str_radix(k, 16).ok())
}

/// Run the node: set the groups up, then send and pop until the run ends.
pub async fn run(env: ClientEnv, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut namesrv = env.conn(NAMESRV.parse().expect("address"));
    let broker = resolve(&env, &mut namesrv, &mut rng).await;
    let mut admin = env.conn(broker);
    // The normal group retries twice before the DLQ; the FIFO group is orderly.
    for group in [
        SubscriptionGroupConfig {
            group_name: POP_GROUP.into(),
            retry_max_times: i32::try_from(POP_RETRY_MAX).unwrap_or(2),
            ..Default::default()
        },
        SubscriptionGroupConfig {
            group_name: POP_FIFO_GROUP.into(),
            consume_message_orderly: true,
            ..Default::default()
        },
    ] {
        loop {
            let request = RemotingCommand::request(
                RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                0,
                ExtFields::new(),
            )
            .with_body(json::to_vec(&group, KeyStyle::Fastjson).unwrap_or_default());
            match admin.call(request, Duration::from_secs(3), &mut rng).await {
                Ok(reply) if reply.response_code() == ResponseCode::SUCCESS => break,
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    let sender = tokio::spawn(send(env.clone(), seed ^ 0x5e4d, broker));
    let normal = tokio::spawn(pop_normal(env.clone(), seed ^ 0x9090, broker));
    let fifo = tokio::spawn(pop_fifo(env.clone(), seed ^ 0xf1f0, broker));
    let _ = sender.await;
    let _ = normal.await;
    let _ = fifo.await;
}

async fn send(env: ClientEnv, seed: u64, broker: std::net::SocketAddr) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut conn = env.conn(broker);
    let mut seq = 0u64;
    while !env.world.producers_stopped() {
        seq += 1;
        let key = KEY_BASE | seq;
        let fifo = seq.is_multiple_of(3);
        let (topic, queue) =
            if fifo { (POP_FIFO_TOPIC, i32::try_from(seq % 2).unwrap_or(0)) } else { (POP_TOPIC, -1) };
        let message = OutgoingMessage {
            topic: topic.into(),
            tags: Some("TagP".into()),
            keys: Some(format!("{key:x}")),
            user_properties: Vec::new(),
            body: Bytes::from(format!("pop {key:x}")),
        };
        let queue = if queue < 0 { i32::try_from(seq % 4).unwrap_or(0) } else { queue };
        // One attempt: a send whose outcome is unknown may be stored or not, and is then
        // owed nothing (the checker only counts what was acknowledged).
        let attempt_ms = env.now_ms();
        if let Ok(reply) = conn
            .call(send_message(0, "pop-producer", queue, &message), Duration::from_secs(3), &mut rng)
            .await
        {
            if reply.response_code() == ResponseCode::SUCCESS {
                if let Ok(header) = SendMessageResponseHeader::decode(&reply.ext_fields) {
                    let phys = header
                        .msg_id
                        .get(header.msg_id.len().saturating_sub(16)..)
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                        .unwrap_or(u64::MAX);
                    let event = Event::PopSent {
                        key,
                        fifo,
                        queue: header.queue_id,
                        offset: header.queue_offset,
                        phys,
                        attempt_ms,
                    };
                    env.world.record(env.now_ms(), event);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..400))).await;
    }
}

/// Pop one batch: the messages with their handles, or nothing (a refusal or an error).
async fn pop_once(
    env: &ClientEnv,
    conn: &mut SimConn,
    rng: &mut ChaCha8Rng,
    request: &PopRequest,
    fifo: bool,
) -> Vec<(Key, i32, i64, u32, keel_core::broker::pop::receipt::ReceiptHandle, u64)> {
    let asked = env.now_ms();
    let command = pop_message(0, request, i64::try_from(asked).unwrap_or(0));
    let Ok(reply) = conn.call(command, Duration::from_secs(5), rng).await else { return Vec::new() };
    if reply.response_code() != ResponseCode::SUCCESS {
        return Vec::new();
    }
    let Ok(popped) = popped_messages(&reply, BROKER_NAME) else { return Vec::new() };
    let mut out = Vec::new();
    for message in popped {
        let Some(key) = key_of(message.record.record.properties) else { continue };
        let head = message.record.head();
        let attempt = message.attempts_before + 1;
        env.world.record(
            env.now_ms(),
            Event::PopDelivered {
                key,
                fifo,
                queue: head.queue_id,
                offset: head.queue_offset,
                attempt,
                invisible_ms: u64::try_from(request.invisible_ms).unwrap_or(0),
                asked_ms: asked,
            },
        );
        out.push((key, head.queue_id, head.queue_offset, attempt, message.handle, asked));
    }
    out
}

/// Which of the workload's two topics, with its group.
struct Target {
    topic: &'static str,
    group: &'static str,
    fifo: bool,
}

const NORMAL: Target = Target { topic: POP_TOPIC, group: POP_GROUP, fifo: false };
const FIFO: Target = Target { topic: POP_FIFO_TOPIC, group: POP_FIFO_GROUP, fifo: true };

/// Ack `key` by `handle` (from the pop asked at `popped_ms`); an ack whose answer is lost is
/// sent again, a few times (acks are idempotent).
async fn ack(
    env: &ClientEnv,
    conn: &mut SimConn,
    rng: &mut ChaCha8Rng,
    target: &Target,
    (key, handle, popped_ms): (Key, &keel_core::broker::pop::receipt::ReceiptHandle, u64),
) -> bool {
    env.world.record(env.now_ms(), Event::PopAckSent { key });
    for _ in 0..3 {
        let request = ack_message(0, target.group, target.topic, handle);
        match conn.call(request, Duration::from_secs(3), rng).await {
            Ok(reply) if reply.response_code() == ResponseCode::SUCCESS => {
                env.world.record(env.now_ms(), Event::PopAcked { key, fifo: target.fifo, popped_ms });
                return true;
            }
            Ok(_) => return false,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

async fn pop_normal(env: ClientEnv, seed: u64, broker: std::net::SocketAddr) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut conn = env.conn(broker);
    let request = PopRequest {
        group: POP_GROUP.into(),
        topic: POP_TOPIC.into(),
        queue_id: -1,
        max_messages: 8,
        invisible_ms: i64::try_from(INVISIBLE_MS).unwrap_or(0),
        poll_ms: 1_000,
        expression: "*".into(),
        order: None,
        init_mode: 0,
    };
    loop {
        let batch = pop_once(&env, &mut conn, &mut rng, &request, false).await;
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
            continue;
        }
        for (key, _, _, _, handle, asked) in batch {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
            // Poison never, one in seven left to come back.
            if is_poison(key, false) || rng.gen_bool(1.0 / 7.0) {
                env.world.bump("pop_left_unacked");
                continue;
            }
            ack(&env, &mut conn, &mut rng, &NORMAL, (key, &handle, asked)).await;
        }
        env.world.bump("pop_batch");
    }
}

async fn pop_fifo(env: ClientEnv, seed: u64, broker: std::net::SocketAddr) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut conn = env.conn(broker);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let request = PopRequest {
            group: POP_FIFO_GROUP.into(),
            topic: POP_FIFO_TOPIC.into(),
            queue_id: -1,
            max_messages: 4,
            invisible_ms: i64::try_from(FIFO_INVISIBLE_MS).unwrap_or(0),
            poll_ms: 1_000,
            expression: "*".into(),
            order: Some(format!("fifo-{seed:x}-{attempt}")),
            init_mode: 0,
        };
        let batch = pop_once(&env, &mut conn, &mut rng, &request, true).await;
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
            continue;
        }
        // In order; one batch in ten stops part-way, and the rest must come back first.
        let stop_at = if rng.gen_bool(0.1) { rng.gen_range(0..batch.len()) } else { batch.len() };
        for (i, (key, _, _, _, handle, asked)) in batch.into_iter().enumerate() {
            if i >= stop_at {
                env.world.bump("pop_fifo_left_out");
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
            if !ack(&env, &mut conn, &mut rng, &FIFO, (key, &handle, asked)).await {
                break;
            }
        }
        env.world.bump("pop_fifo_batch");
    }
}

/// The end-of-run read-back of the normal group's dead-letter queue.
pub async fn probe_dead_letters(env: ClientEnv, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut namesrv = env.conn(NAMESRV.parse().expect("address"));
    let broker = resolve(&env, &mut namesrv, &mut rng).await;
    let mut conn = env.conn(broker);
    let mut offset = 0i64;
    for _ in 0..1_000 {
        let request = PullRequest {
            group: "pop-dlq-probe".into(),
            topic: format!("%DLQ%{POP_GROUP}"),
            queue_id: 0,
            offset,
            max_messages: 32,
            expression: "*".into(),
            suspend_ms: 0,
        };
        let Ok(reply) = conn.call(pull_message(0, &request), Duration::from_secs(3), &mut rng).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if reply.response_code() != ResponseCode::SUCCESS {
            return;
        }
        let Ok(records) = pulled_records(&reply.body) else { return };
        for record in &records {
            if let Some(key) = key_of(record.record.properties) {
                env.world.record(env.now_ms(), Event::PopDeadLettered { key });
                env.world.bump("pop_dead_lettered");
            }
        }
        offset += i64::try_from(records.len()).unwrap_or(0).max(1);
    }
}
