//! The timing workload of a cluster seed, built from Keel's client library: one node sends
//! delay-level, timed (`TIMER_DELAY_MS`) and transactional messages to [`TIMING_TOPIC`],
//! answers the broker's transaction checks, and consumes the topic and the discard topic.
//! Everything goes into the history for `timing_checks`. The node is never killed nor
//! partitioned: what it sees of the broker's faults is the broker's doing.

use std::sync::Arc;
use std::time::Duration;

use keel_core::broker::transaction::CHECK_MAX_TOPIC;
use keel_core::client::{
    ClientConfig, ConsumeFromWhere, ConsumeResult, ConsumerConfig, SendRequest, SendResult, SendTarget,
    TransactionState,
};
use keel_core::protocol::body::MessageQueue;
use keel_core::protocol::client_requests::OutgoingMessage;
use keel_core::protocol::message::message_id::decode_offset_message_id;
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::message::stored::StoredMessage;
use keel_runtime_tokio::client::{KeelClient, TransactionListener};
use madsim::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Event, Key, Timing, TxDecision};
use crate::sim_clock::{SharedSkew, SimClock};
use crate::workload::{read_back, resolve, ClientEnv, NAMESRV, QUEUES};
use crate::world::World;

/// The topic of the timing workload.
pub const TIMING_TOPIC: &str = "TimingTopic";
/// Its keys start here (apart from the plain producers').
const KEY_BASE: Key = 0x7100_0000_0000;
/// The cluster seeds' one broker set (`BrokerConfig`'s default name), which the read-back
/// reads.
const CLUSTER_BROKER: &str = "broker-a";
/// The delay levels it uses: RocketMQ's default levels 1..=3 (1 s, 5 s, 10 s).
const LEVELS: [(i32, u64); 3] = [(1, 1_000), (2, 5_000), (3, 10_000)];

/// What the node needs from the run.
#[derive(Debug, Clone)]
pub struct TimingEnv {
    /// The world.
    pub world: World,
    /// When the run started.
    pub epoch: Instant,
    /// The broker's clock skew (to note its wall clock at each acknowledgement).
    pub broker_skew: SharedSkew,
    /// The seed of this node's choices.
    pub seed: u64,
}

impl TimingEnv {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn record(&self, event: Event) {
        self.world.record(self.now_ms(), event);
    }

    /// The broker's wall clock now.
    #[must_use]
    pub fn broker_wall_ms(&self) -> i64 {
        self.broker_skew.wall_ms(self.epoch)
    }

    /// The highest the broker's wall clock has read so far.
    #[must_use]
    pub fn broker_high_ms(&self) -> i64 {
        self.broker_skew.high_ms(self.epoch)
    }
}

/// The workload's key of a message, from its properties' `KEYS`.
fn key_of(message_properties: &[u8]) -> Option<Key> {
    properties::find(message_properties, keys::KEYS)
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.parse().ok())
}

/// The transaction producer's listener: decides by key, and notes every check.
struct Decider {
    env: TimingEnv,
}

impl TransactionListener for Decider {
    fn execute(&self, message: &OutgoingMessage, _result: &SendResult) -> TransactionState {
        let key = message.keys.as_deref().and_then(|k| k.parse().ok()).unwrap_or(0);
        match TxDecision::of(key) {
            TxDecision::Commit => TransactionState::Commit,
            TxDecision::Rollback => TransactionState::Rollback,
            TxDecision::CommitOnCheck | TxDecision::NeverDecided => TransactionState::Unknown,
        }
    }

    fn check(&self, message: &StoredMessage) -> TransactionState {
        let Some(key) = key_of(&message.properties) else { return TransactionState::Unknown };
        self.env.record(Event::TxChecked { key });
        self.env.world.bump("tx_check");
        match TxDecision::of(key) {
            TxDecision::Commit | TxDecision::CommitOnCheck => TransactionState::Commit,
            TxDecision::Rollback => TransactionState::Rollback,
            TxDecision::NeverDecided => TransactionState::Unknown,
        }
    }
}

/// Record what the timing consumer got.
fn on_delivery(env: &TimingEnv, queue: &MessageQueue, messages: &[StoredMessage]) -> ConsumeResult {
    for message in messages {
        let Some(key) = key_of(&message.properties) else { continue };
        if queue.topic == CHECK_MAX_TOPIC {
            env.record(Event::TxDiscarded { key });
            env.world.bump("tx_discard");
            continue;
        }
        let due_ms = properties::find(&message.properties, keys::TIMER_OUT_MS)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok());
        let what = if properties::find(&message.properties, keys::TRAN_MSG).is_some() {
            "tx_commit_delivered"
        } else if properties::find(&message.properties, keys::DELAY).is_some() {
            "timing_delay_delivered"
        } else {
            "timing_timer_delivered"
        };
        env.world.bump(what);
        env.record(Event::TimingDelivered {
            key,
            broker: queue.broker_name.clone(),
            queue: message.head.queue_id,
            offset: message.head.queue_offset,
            store_ms: message.head.store_timestamp,
            due_ms,
            broker_wall_ms: env.broker_wall_ms(),
        });
    }
    ConsumeResult::Success
}

/// The timing node: consume, and send until the producers stop.
pub async fn run(env: TimingEnv) {
    let namesrv = crate::workload::NAMESRV.parse().expect("address");
    let clock = Arc::new(SimClock::start(SharedSkew::default(), env.epoch));
    let client = KeelClient::start_with_clock(ClientConfig::new(vec![namesrv], "10.0.4.1@timing"), clock);
    let mut config = ConsumerConfig::new("timing-cg", TIMING_TOPIC, "*");
    config.subscriptions.push((CHECK_MAX_TOPIC.to_owned(), "*".to_owned()));
    config.from_where = ConsumeFromWhere::FirstOffset;
    config.suspend_ms = 1_000;
    let listener_env = env.clone();
    let listener =
        move |queue: &MessageQueue, messages: &[StoredMessage]| on_delivery(&listener_env, queue, messages);
    if client.start_consumer(config, listener, 2).await.is_err() {
        return;
    }
    let Ok(transactions) = client.start_transaction_producer("timing-tx", Decider { env: env.clone() }).await
    else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(env.seed ^ 0x7469_6d69_6e67);
    let mut next: Key = KEY_BASE;
    while !env.world.producers_stopped() {
        let key = next;
        next += 1;
        let timing = match rng.gen_range(0..3) {
            0 => {
                let (level, delay_ms) = LEVELS[rng.gen_range(0..LEVELS.len())];
                Timing::Delay { level, delay_ms }
            }
            1 => Timing::Timer { delay_ms: rng.gen_range(200..20_000) },
            _ => Timing::Tx(TxDecision::of(key)),
        };
        let mut message = OutgoingMessage {
            topic: TIMING_TOPIC.into(),
            tags: Some("timing".into()),
            keys: Some(key.to_string()),
            body: format!("timing-{key}").into_bytes().into(),
            ..OutgoingMessage::default()
        };
        env.record(Event::TimingSent { key, timing, broker_wall_ms: env.broker_wall_ms() });
        let sent = match timing {
            Timing::Delay { level, .. } => {
                message.user_properties.push((keys::DELAY.into(), level.to_string()));
                let request = SendRequest { group: "timing-pg".into(), message, target: SendTarget::Any };
                client.send(request).await.ok()
            }
            Timing::Timer { delay_ms } => {
                message.user_properties.push((keys::TIMER_DELAY_MS.into(), delay_ms.to_string()));
                let request = SendRequest { group: "timing-pg".into(), message, target: SendTarget::Any };
                client.send(request).await.ok()
            }
            Timing::Tx(_) => transactions.send(message).await.ok().map(|r| r.send),
        };
        if let Some(result) = sent {
            let phys =
                decode_offset_message_id(&result.msg_id).map_or(0, |(_, p)| u64::try_from(p).unwrap_or(0));
            let (broker_wall_ms, broker_high_ms) = (env.broker_wall_ms(), env.broker_high_ms());
            env.record(Event::TimingAcked { key, phys, broker_wall_ms, broker_high_ms });
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
    }
    std::future::pending::<()>().await;
}

/// The end-of-run read-back of the timing topics: every copy stored in [`TIMING_TOPIC`]
/// (`TimingProbed`) and every discard in `TRANS_CHECK_MAX_TIME_TOPIC` (`TxDiscarded`), read
/// as a fresh group. What the broker stored counts even where the consumer's position
/// skipped it (a position from before a data loss can lie beyond a queue's new end).
pub async fn probe(env: ClientEnv, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut namesrv = env.conn(NAMESRV.parse().expect("address"));
    let broker = resolve(&env, &mut namesrv, &mut rng).await;
    let mut conn = env.conn(broker);
    for queue in 0..QUEUES {
        // A queue that cannot be read back leaves the check to what the consumer saw.
        let _ = read_back(&env, &mut conn, &mut rng, TIMING_TOPIC, queue, |at, record| {
            let Some(key) = key_of(record.record.properties) else { return };
            let due_ms = properties::find(record.record.properties, keys::TIMER_OUT_MS)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok());
            let event = Event::TimingProbed {
                key,
                broker: CLUSTER_BROKER.to_owned(),
                queue,
                offset: record.head().queue_offset,
                store_ms: record.head().store_timestamp,
                due_ms,
            };
            env.world.record(at, event);
        })
        .await;
    }
    let _ = read_back(&env, &mut conn, &mut rng, CHECK_MAX_TOPIC, 0, |at, record| {
        if let Some(key) = key_of(record.record.properties) {
            env.world.record(at, Event::TxDiscarded { key });
        }
    })
    .await;
}
