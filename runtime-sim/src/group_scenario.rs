//! One seeded run of consumer groups built from Keel's client library ([`KeelClient`] on
//! madsim): rebalancing while consumers join, leave and crash; orderly consumption under
//! queue locks; retries ending in the dead-letter queue; broadcasting.
//!
//! A producer (also the library) sends keyed messages. Four groups consume them:
//! - `cg` (clustering, concurrent): two instances start, a third joins, one crashes, one
//!   leaves cleanly; the listener fails some deliveries. Every acknowledged message must be
//!   consumed, and a message consumed twice only around a membership change.
//! - `og` (clustering, orderly): two instances, one of them claiming every queue (a fixed
//!   allocation), so only the broker's locks keep a queue with one consumer; it crashes
//!   later. Failures are retried locally. Per queue, consumption never skips, retries the
//!   failed message first, and changes hands only after a membership change.
//! - `dg`: every tenth message always fails: it is delivered exactly `max + 1` times with
//!   `reconsumeTimes` 0..=max, then sits in `%DLQ%dg` exactly once, never delivered again.
//! - `bg` (broadcasting): each of two instances consumes everything.
//!
//! In half the seeds the broker is a master with a slave (`GroupProfile::replica`): the
//! groups run on a replicated set, and the slave's log must end equal to the master's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_core::broker::delay::DelayLevels;
use keel_core::broker::BrokerConfig;
use keel_core::client::{
    ClientConfig, ConsumeFromWhere, ConsumeResult, ConsumerConfig, MessageModel, SendRequest, SendTarget,
};
use keel_core::mutation::Mutation;
use keel_core::protocol::body::MessageQueue;
use keel_core::protocol::client_requests::OutgoingMessage;
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::message::stored::StoredMessage;
use keel_core::store::FlushMode;
use keel_runtime_tokio::client::KeelClient;
use madsim::runtime::{Handle, Runtime};
use madsim::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::{broker_main, namesrv_main, BROKER};
use crate::coverage::Coverage;
use crate::disk_plugin::{DiskProfile, DiskSimulator, LossHook};
use crate::group_checks::{
    check_broadcast, check_clustering, check_dead_letters, check_orderly, check_ownership, OwnerSample,
};
pub use crate::group_checks::{Membership, Seen, GROUP_TOPIC};
use crate::profile::ReplicaProfile;
use crate::sim_clock::{SharedSkew, SimClock};
use crate::world::World;

/// What one seed of the group scenario decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupProfile {
    /// The seed.
    pub seed: u64,
    /// SYNC or ASYNC flush.
    pub sync_flush: bool,
    /// Messages sent.
    pub messages: u32,
    /// Gap between sends, ms.
    pub send_gap_ms: u64,
    /// When `cg`'s third instance joins, ms.
    pub join_at_ms: u64,
    /// When `cg`'s first instance crashes, ms.
    pub crash_at_ms: u64,
    /// When `cg`'s second instance leaves cleanly, ms.
    pub leave_at_ms: u64,
    /// When `og`'s first instance crashes, ms.
    pub orderly_crash_at_ms: u64,
    /// Percent of deliveries `cg` and `og` fail (once per message and retry count).
    pub fail_percent: u32,
    /// `dg`'s `maxReconsumeTimes`.
    pub max_reconsume: i32,
    /// How long the run goes on after the last send, ms.
    pub settle_ms: u64,
    /// Half the seeds: the broker is a master with a slave (no partitions: the groups'
    /// checks allow no broker fault), whose log must end equal to the master's.
    pub replica: Option<ReplicaProfile>,
}

impl GroupProfile {
    /// The profile of `seed`.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6a09_e667_f3bc_c908);
        Self {
            seed,
            sync_flush: rng.gen_bool(0.5),
            messages: rng.gen_range(40..=160),
            send_gap_ms: rng.gen_range(20..=300),
            join_at_ms: rng.gen_range(1_000..=30_000),
            crash_at_ms: rng.gen_range(5_000..=40_000),
            leave_at_ms: rng.gen_range(5_000..=40_000),
            orderly_crash_at_ms: rng.gen_range(3_000..=40_000),
            fail_percent: rng.gen_range(0..=30),
            max_reconsume: rng.gen_range(1..=3),
            settle_ms: 150_000,
            replica: rng
                .gen_bool(0.5)
                .then(|| ReplicaProfile { sync_master: rng.gen_bool(0.5), partitions: None }),
        }
    }
}

/// What a group seed found.
#[derive(Debug, Clone, Default)]
pub struct GroupOutcome {
    /// Checker violations.
    pub violations: Vec<String>,
    /// Deliveries seen.
    pub deliveries: usize,
    /// Messages acknowledged.
    pub acked: u64,
    /// Simulated time, ms.
    pub simulated_ms: u64,
    /// A hash of everything seen, in order.
    pub trace_hash: u64,
    /// What happened (for coverage).
    pub coverage: Coverage,
    /// The last deliveries, for a failure report.
    pub tail: Vec<String>,
}

/// Run the group scenario of `profile` with `mutation` on.
#[must_use]
pub fn run_group_seed(profile: &GroupProfile, mutation: Option<Mutation>) -> GroupOutcome {
    let mut rt = Runtime::with_seed_and_config(profile.seed, madsim::Config::default());
    rt.add_simulator::<DiskSimulator>();
    rt.set_time_limit(Duration::from_millis(600_000));
    rt.block_on(simulate(profile.clone(), mutation))
}

/// Shared records, outside every node.
#[derive(Debug, Clone, Default)]
struct Records {
    seen: Arc<Mutex<Vec<Seen>>>,
    membership: Arc<Mutex<Membership>>,
    acked: Arc<Mutex<BTreeMap<u32, MessageQueue>>>,
    owners: Arc<Mutex<Vec<OwnerSample>>>,
    /// When each instance's client first learned the group topic's route: only then does
    /// the broker count it in its group, so for the others it joins then.
    routed: Arc<Mutex<Membership>>,
}

impl Records {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn member(&self, at_ms: u64, group: &'static str, instance: &str, joined: bool) {
        self.membership.lock().unwrap_or_else(PoisonError::into_inner).push((
            at_ms,
            group,
            instance.to_owned(),
            joined,
        ));
    }
}

fn key_of(message: &StoredMessage) -> Option<u32> {
    properties::find(&message.properties, keys::KEYS)
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.parse().ok())
}

/// Whether `cg`/`og` fail this delivery: a fixed coin per (seed, key, attempt).
fn coin(seed: u64, key: u32, attempt: i32, percent: u32) -> bool {
    let mut h =
        seed ^ u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(attempt.unsigned_abs()) << 40);
    h ^= h >> 31;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h >> 33) % 100 < u64::from(percent)
}

/// Whether a listener consumes message `key` on its `attempt`-th retry.
type Decide = Arc<dyn Fn(u32, i32) -> bool + Send + Sync>;

/// One consumer instance: a node at `ip`, client id `ip@tag`.
struct Instance {
    group: &'static str,
    ip: &'static str,
    name: String,
    config: ConsumerConfig,
    decide: Decide,
}

impl Instance {
    fn new(group: &'static str, ip: &'static str, tag: &str, config: ConsumerConfig, decide: Decide) -> Self {
        Self { group, ip, name: format!("{ip}@{tag}"), config, decide }
    }
}

fn start_instance(records: &Records, epoch: Instant, instance: &Instance) -> KeelClient {
    let namesrv = crate::workload::NAMESRV.parse().expect("address");
    let config = ClientConfig::new(vec![namesrv], instance.name.clone());
    let clock = Arc::new(SimClock::start(SharedSkew::default(), epoch));
    let client = KeelClient::start_with_clock(config, clock);
    if instance.config.is_lite_pull() {
        tokio::spawn(poll_forever(
            client.clone(),
            records.clone(),
            epoch,
            instance.name.clone(),
            instance.config.clone(),
        ));
        return client;
    }
    let (seen, group, name, decide) =
        (Arc::clone(&records.seen), instance.group, instance.name.clone(), Arc::clone(&instance.decide));
    let listener = move |queue: &MessageQueue, messages: &[StoredMessage]| {
        let at_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
        let mut result = ConsumeResult::Success;
        for message in messages {
            let key = key_of(message).unwrap_or(u32::MAX);
            let ok = decide(key, message.head.reconsume_times);
            if !ok {
                result = ConsumeResult::Later;
            }
            seen.lock().unwrap_or_else(PoisonError::into_inner).push(Seen {
                at_ms,
                group,
                instance: name.clone(),
                queue: queue.clone(),
                offset: message.head.queue_offset,
                key,
                reconsume_times: message.head.reconsume_times,
                topic: message.topic.clone(),
                ok,
            });
        }
        result
    };
    let (client2, config) = (client.clone(), instance.config.clone());
    tokio::spawn(async move {
        let _ = client2.start_consumer(config, listener, 4).await;
    });
    client
}

/// A lite pull instance: poll, record what came, and sample the queues it owns every
/// second, until its client stops.
async fn poll_forever(
    client: KeelClient,
    records: Records,
    epoch: Instant,
    name: String,
    config: ConsumerConfig,
) {
    let Ok(consumer) = client.start_lite_pull_consumer(config).await else { return };
    let ms = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
    let mut next_sample = 0;
    loop {
        let Ok(messages) = consumer.poll(16, Duration::from_millis(500)).await else { return };
        let at_ms = ms();
        {
            let mut seen = records.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.extend(messages.iter().map(|message| Seen {
                at_ms,
                group: "lg",
                instance: name.clone(),
                queue: MessageQueue::new(&message.topic, "broker-a", message.head.queue_id),
                offset: message.head.queue_offset,
                key: key_of(message).unwrap_or(u32::MAX),
                reconsume_times: message.head.reconsume_times,
                topic: message.topic.clone(),
                ok: true,
            }));
        }
        if at_ms >= next_sample {
            next_sample = at_ms + 1_000;
            let Ok(queues) = consumer.assignment().await else { return };
            let ids = queues.iter().map(|q| q.queue_id).collect();
            records.owners.lock().unwrap_or_else(PoisonError::into_inner).push((ms(), name.clone(), ids));
        }
    }
}

fn consumer(group: &str, model: MessageModel, orderly: bool, max_reconsume: i32) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(group, GROUP_TOPIC, "*");
    config.model = model;
    config.orderly = orderly;
    config.from_where = ConsumeFromWhere::FirstOffset;
    config.max_reconsume_times = max_reconsume;
    config.suspend_ms = 200;
    config
}

async fn simulate(profile: GroupProfile, mutation: Option<Mutation>) -> GroupOutcome {
    let epoch = Instant::now();
    let world = World::default();
    let handle = Handle::current();
    let records = Records::default();
    let now_ms = move || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);

    let namesrv = handle
        .create_node()
        .name("namesrv")
        .ip("10.0.0.1".parse().expect("ip"))
        .init(move || namesrv_main(SharedSkew::default(), epoch))
        .build();
    let mut config = BrokerConfig::new(BROKER.parse().expect("address"));
    config.namesrv_addrs = vec![crate::workload::NAMESRV.parse().expect("address")];
    config.default_topic_queue_nums = 4;
    config.store.segment_size = 64 * 1024;
    config.store.index = crate::profile::tiny_index(profile.seed);
    config.store.flush_mode =
        if profile.sync_flush { FlushMode::Sync } else { FlushMode::Async { interval_ms: 100 } };
    config.store.mutation = mutation;
    // Short delay levels: a retry chain finishes within the run.
    config.delay_levels = DelayLevels::parse(&["1s"; 18].join(" ")).expect("levels");
    if let Some(replica) = &profile.replica {
        crate::replica::make_master(&mut config, replica);
    }
    let master_config = config.clone();
    let broker_world = world.clone();
    let broker = handle
        .create_node()
        .name("broker")
        .ip("10.0.0.2".parse().expect("ip"))
        .init(move || broker_main(broker_world.clone(), config.clone(), SharedSkew::default(), epoch))
        .build();
    let on_loss: LossHook = Arc::new(|_, _| {});
    madsim::plugin::simulator::<DiskSimulator>().attach(
        broker.id(),
        profile.seed,
        DiskProfile::default(),
        on_loss,
    );
    let slave =
        profile.replica.map(|_| crate::replica::start_slave(&world, &master_config, profile.seed, epoch));

    let seed = profile.seed;
    let percent = profile.fail_percent;
    let max_dead = profile.max_reconsume;
    let flaky: Arc<dyn Fn(u32, i32) -> bool + Send + Sync> =
        Arc::new(move |key, attempt| !coin(seed, key, attempt, percent));
    let dead: Arc<dyn Fn(u32, i32) -> bool + Send + Sync> = Arc::new(|key, _| key % 10 != 0);
    let always: Arc<dyn Fn(u32, i32) -> bool + Send + Sync> = Arc::new(|_, _| true);
    // og's first instance claims every queue whatever the others think (a fixed CONFIG
    // allocation, as in a rolling upgrade between strategies): only the broker's locks keep
    // each queue with one consumer at a time.
    let mut greedy = consumer("og", MessageModel::Clustering, true, -1);
    greedy.strategy = keel_core::client::AllocateStrategy::ByConfig(
        (0..4).map(|q| MessageQueue::new(GROUP_TOPIC, "broker-a", q)).collect(),
    );
    let cg = || consumer("cg", MessageModel::Clustering, false, -1);
    let og = consumer("og", MessageModel::Clustering, true, -1);
    let dg = consumer("dg", MessageModel::Clustering, false, max_dead);
    let bg = || consumer("bg", MessageModel::Broadcasting, false, -1);
    let lg = || {
        let mut config = ConsumerConfig::lite_pull("lg", GROUP_TOPIC, "*");
        config.from_where = ConsumeFromWhere::FirstOffset;
        config
    };
    let instances = vec![
        Instance::new("cg", "10.0.2.1", "cg-a", cg(), Arc::clone(&flaky)),
        Instance::new("cg", "10.0.2.2", "cg-b", cg(), Arc::clone(&flaky)),
        Instance::new("cg", "10.0.2.3", "cg-c", cg(), Arc::clone(&flaky)),
        Instance::new("og", "10.0.3.1", "og-a", greedy, Arc::clone(&flaky)),
        Instance::new("og", "10.0.3.2", "og-b", og, Arc::clone(&flaky)),
        Instance::new("dg", "10.0.4.1", "dg", dg, dead),
        Instance::new("bg", "10.0.5.1", "bg-a", bg(), Arc::clone(&always)),
        Instance::new("bg", "10.0.5.2", "bg-b", bg(), Arc::clone(&always)),
        Instance::new("lg", "10.0.7.1", "lg-a", lg(), Arc::clone(&always)),
        Instance::new("lg", "10.0.7.2", "lg-b", lg(), Arc::clone(&always)),
        Instance::new("lg", "10.0.7.3", "lg-c", lg(), always),
    ];
    // Each instance is a node; its client lives in the node's task, so killing the node
    // crashes the client (no commits, no unregistration).
    let mut nodes = BTreeMap::new();
    let mut clients: BTreeMap<String, Arc<Mutex<Option<KeelClient>>>> = BTreeMap::new();
    for instance in instances {
        let ip = instance.ip;
        let slot: Arc<Mutex<Option<KeelClient>>> = Arc::default();
        let (records2, slot2, name) = (records.clone(), Arc::clone(&slot), instance.name.clone());
        let instance = Arc::new(instance);
        let starts_late = instance.name == "10.0.2.3@cg-c" || instance.name == "10.0.7.3@lg-c";
        let node = handle.create_node().name(name.clone()).ip(ip.parse().expect("ip")).build();
        clients.insert(name.clone(), slot);
        let delay = if starts_late { profile.join_at_ms } else { 0 };
        node.spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            records2.member(
                u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0),
                instance.group,
                &instance.name,
                true,
            );
            let client = start_instance(&records2, epoch, &instance);
            *slot2.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
            // The topic may not exist yet (the producer's first send creates it): the
            // broker sees this member once its client has the route.
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(Some(at)) = client.first_routed_at(GROUP_TOPIC).await {
                    let at_ms = u64::try_from(at.duration_since(epoch).as_millis()).unwrap_or(0);
                    records2.routed.lock().unwrap_or_else(PoisonError::into_inner).push((
                        at_ms,
                        instance.group,
                        instance.name.clone(),
                        true,
                    ));
                    break;
                }
            }
            std::future::pending::<()>().await;
        });
        nodes.insert(name, node.id());
    }

    // The producer.
    let producer_node = handle.create_node().name("producer").ip("10.0.1.1".parse().expect("ip")).build();
    let (acked, messages, gap) = (Arc::clone(&records.acked), profile.messages, profile.send_gap_ms);
    producer_node.spawn(async move {
        let namesrv = crate::workload::NAMESRV.parse().expect("address");
        let clock = Arc::new(SimClock::start(SharedSkew::default(), epoch));
        let client =
            KeelClient::start_with_clock(ClientConfig::new(vec![namesrv], "10.0.1.1@producer"), clock);
        for key in 0..messages {
            let message = OutgoingMessage {
                topic: GROUP_TOPIC.into(),
                keys: Some(key.to_string()),
                body: format!("body-{key}").into_bytes().into(),
                ..OutgoingMessage::default()
            };
            // Retry a failed send with the same key: the checkers count a key once.
            for _ in 0..5 {
                let request =
                    SendRequest { group: "pg".into(), message: message.clone(), target: SendTarget::Any };
                if let Ok(result) = client.send(request).await {
                    acked.lock().unwrap_or_else(PoisonError::into_inner).insert(key, result.queue);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(gap)).await;
        }
    });

    // Membership changes.
    let mut events: Vec<(u64, &'static str, &str, bool)> = vec![
        (profile.crash_at_ms, "cg", "10.0.2.1@cg-a", true),
        (profile.leave_at_ms, "cg", "10.0.2.2@cg-b", false),
        (profile.orderly_crash_at_ms, "og", "10.0.3.1@og-a", true),
        (profile.crash_at_ms, "lg", "10.0.7.1@lg-a", true),
        (profile.leave_at_ms, "lg", "10.0.7.2@lg-b", false),
    ];
    events.sort_unstable();
    for (at, group, name, crash) in events {
        tokio::time::sleep_until(epoch + Duration::from_millis(at)).await;
        records.member(now_ms(), group, name, false);
        if crash {
            if let Some(node) = nodes.get(name) {
                handle.kill(*node);
            }
        } else if let Some(client) =
            clients.get(name).and_then(|c| c.lock().unwrap_or_else(PoisonError::into_inner).clone())
        {
            client.shutdown().await;
            if let Some(node) = nodes.get(name) {
                handle.kill(*node);
            }
        }
    }
    let sending_ms = u64::from(profile.messages) * (profile.send_gap_ms + 5);
    tokio::time::sleep_until(epoch + Duration::from_millis(sending_ms.max(45_000) + profile.settle_ms)).await;

    // Read the dead-letter queue with a fresh group.
    let reader = handle.create_node().name("dlq-reader").ip("10.0.6.1".parse().expect("ip")).build();
    let dlq_seen = Arc::new(Mutex::new(Vec::<u32>::new()));
    let dlq_seen2 = Arc::clone(&dlq_seen);
    let reading = reader.spawn(async move {
        let namesrv = crate::workload::NAMESRV.parse().expect("address");
        let clock = Arc::new(SimClock::start(SharedSkew::default(), epoch));
        let client = KeelClient::start_with_clock(ClientConfig::new(vec![namesrv], "10.0.6.1@dlq"), clock);
        let mut config = ConsumerConfig::new("dlq_reader", "%DLQ%dg", "*");
        config.from_where = ConsumeFromWhere::FirstOffset;
        let listener = move |_: &MessageQueue, messages: &[StoredMessage]| {
            let mut seen = dlq_seen2.lock().unwrap_or_else(PoisonError::into_inner);
            seen.extend(messages.iter().filter_map(key_of));
            ConsumeResult::Success
        };
        let _ = client.start_consumer(config, listener, 1).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.shutdown().await;
    });
    let _ = reading.await;

    let seen = records.seen();
    let acked = records.acked.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let started_and_stopped = records.membership.lock().unwrap_or_else(PoisonError::into_inner).clone();
    // What the checks judge by is membership as the broker sees it: an instance also joins
    // when its client first has the topic's route (members learn a new topic's route at
    // different times, and the first to learn takes every queue until the others appear).
    let mut membership = started_and_stopped.clone();
    membership.extend(records.routed.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned());
    membership.sort_by_key(|m| m.0);
    let dlq = dlq_seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut violations = Vec::new();
    let owners = records.owners.lock().unwrap_or_else(PoisonError::into_inner).clone();
    check_clustering("cg", &seen, &acked, &membership, &mut violations);
    check_clustering("lg", &seen, &acked, &membership, &mut violations);
    check_ownership("lg", &owners, &membership, 4, &mut violations);
    check_orderly(&seen, &acked, &membership, &mut violations);
    check_dead_letters(&seen, &acked, &dlq, profile.max_reconsume, &mut violations);
    check_broadcast(&seen, &acked, &mut violations);
    if let Some((slave, slave_config)) = &slave {
        let nodes = (broker.id(), *slave);
        let patience = Duration::from_secs(60);
        violations
            .extend(crate::replica::check_converged(nodes, (&master_config, slave_config), patience).await);
    }
    violations.truncate(12);

    let mut coverage = Coverage::default();
    coverage.add("group_consumer_join", started_and_stopped.iter().filter(|m| m.3).count() as u64);
    coverage.add("group_consumer_leave", started_and_stopped.iter().filter(|m| !m.3).count() as u64);
    coverage.add("group_retry_delivery", seen.iter().filter(|s| s.reconsume_times > 0).count() as u64);
    coverage.add("group_dead_letter", dlq.len() as u64);
    coverage.add("group_lite_poll", seen.iter().filter(|s| s.group == "lg").count() as u64);
    coverage.add("group_owner_sample", owners.len() as u64);
    if profile.replica.is_some() {
        coverage.bump("group_replicated");
    }
    let hash = crate::history::trace_hash(seen.iter().map(|s| format!("{s:?}")));
    if let Some((slave, _)) = &slave {
        madsim::plugin::simulator::<DiskSimulator>().detach(*slave);
    }
    let others = [namesrv.id(), broker.id(), producer_node.id(), reader.id()]
        .into_iter()
        .chain(slave.iter().map(|(n, _)| *n));
    crate::cluster::tear_down(&handle, nodes.into_values().chain(others), Some(broker.id())).await;
    GroupOutcome {
        violations,
        deliveries: seen.len(),
        acked: acked.len() as u64,
        simulated_ms: now_ms(),
        trace_hash: hash,
        coverage,
        tail: seen.iter().rev().take(40).rev().map(|s| format!("{s:?}")).collect(),
    }
}
