//! One seeded run of controller mode: three controllers in a Raft group, two broker sets
//! (`broker-a`, `broker-b`) of three brokers each, a name server, a producer and a consumer
//! built from Keel's client library, and an observer. Every broker and controller runs the
//! production loop on the simulator's network, disks and clocks.
//!
//! During the fault phase one fault at a time hits: the master of a set killed, any broker
//! killed (each kill a power loss or, half the time, a crash of the process that keeps the
//! page cache: a master's tail its slaves lacked then survives, to be cut when it rejoins
//! as a slave), a broker cut off from everything, a broker cut off from the
//! controllers, a controller cut off, a master cut off from its slaves and then killed, or
//! controllers losing power (one, or now and then all three at once: each comes back from
//! the Raft log on its disk). The observer asks each broker every 250 ms for its
//! role and epochs (GET_BROKER_HA_STATUS, GET_BROKER_EPOCH_CACHE) and writes a probe to each
//! master it finds, which times failovers; it creates the topic on each set's first master
//! (UPDATE_AND_CREATE_TOPIC, as `mqadmin updateTopic -c` does). Then the run heals, the producer stops, the
//! consumer drains, and [`crate::ha_checks`] judge what was recorded; the replicas of each
//! set must converge byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_core::broker::controller_link::HEARTBEAT_TIMEOUT_MS;
use keel_core::broker::BrokerConfig;
use keel_core::client::{
    ClientConfig, ConsumeFromWhere, ConsumeResult, ConsumerConfig, SendRequest, SendTarget,
};
use keel_core::controller::{Controller, ControllerConfig, ControllerCore, ControllerPeers, RecoveredLog};
use keel_core::ha::BrokerRole;
use keel_core::mutation::Mutation;
use keel_core::protocol::body::{EpochEntryCache, HaRuntimeInfo, MessageQueue};
use keel_core::protocol::client_requests::{send_message, OutgoingMessage};
use keel_core::protocol::headers::{CommandHeader, CreateTopicRequestHeader};
use keel_core::protocol::json;
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::message::stored::StoredMessage;
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use keel_core::store::audit::survey;
use keel_core::store::FlushMode;
use keel_runtime_tokio::client::KeelClient;
use keel_runtime_tokio::driver::{self, DriverConfig};
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use madsim::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;

use crate::cluster::TIMING_CHECKS;
use crate::cluster::{broker_main, namesrv_main, RunOutcome};
use crate::disk_plugin::{DiskProfile, DiskSimulator, LossHook, NodeDisk};
use crate::fault_spans::CLOG_RETRY_MAX_MS;
use crate::ha_checks::{
    epoch_claims, lost, observed_failovers, offset_conflicts, slow_failovers, starved_sets, Acked, Delivery,
    HaFault, RoleSample,
};
use crate::history::{Event, MASTER_CHANGED};
use crate::replica_checks::replica_divergence;
use crate::sim_clock::{SharedSkew, SimClock};
use crate::sim_conn::{ConnChaos, SimConn};
use crate::timing_checks::{check_timing, timing_pending};
use crate::timing_workload::{self, TimingEnv};
use crate::world::World;

/// The topic the producer and consumer use.
pub const HA_TOPIC: &str = "HaTopic";
/// The observer's probe topic.
const PROBE_TOPIC: &str = "HaProbe";
/// The sets.
pub const SETS: [&str; 2] = ["broker-a", "broker-b"];
/// Controllers' addresses.
const CONTROLLERS: [&str; 3] = ["10.0.5.1:9878", "10.0.5.2:9878", "10.0.5.3:9878"];

/// What one seed of the scenario decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaProfile {
    /// The seed.
    pub seed: u64,
    /// SYNC_MASTER with `allAckInSyncStateSet` (else ASYNC_MASTER, three seeds in ten).
    pub sync: bool,
    /// How long faults go on, ms.
    pub fault_ms: u64,
    /// Mean gap between faults, ms.
    pub fault_gap_ms: u64,
    /// Longest fault (a node down, a link cut), ms.
    pub max_fault_ms: u64,
    /// Gap between sends, ms.
    pub send_gap_ms: u64,
}

impl HaProfile {
    /// The profile of `seed`.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa5a5_17c0_47c0_11e5);
        Self {
            seed,
            sync: rng.gen_bool(0.7),
            fault_ms: rng.gen_range(60_000..=120_000),
            fault_gap_ms: rng.gen_range(4_000..=20_000),
            max_fault_ms: rng.gen_range(2_000..=20_000),
            send_gap_ms: rng.gen_range(20..=200),
        }
    }
}

/// Run the scenario of `profile` with `mutation` on, reported like a cluster seed.
#[must_use]
pub fn run_ha_seed(profile: &HaProfile, mutation: Option<Mutation>) -> RunOutcome {
    let mut rt = Runtime::with_seed_and_config(profile.seed, madsim::Config::default());
    rt.add_simulator::<DiskSimulator>();
    rt.set_time_limit(Duration::from_millis(profile.fault_ms + 400_000));
    rt.block_on(simulate(profile.clone(), mutation))
}

/// What the nodes record, outside every node.
#[derive(Debug, Clone, Default)]
struct Records {
    acked: Arc<Mutex<BTreeMap<u32, Acked>>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    roles: Arc<Mutex<Vec<RoleSample>>>,
    /// (set, ms) of each write a master took (the producer's and the probes).
    writes: Arc<Mutex<Vec<(String, u64)>>>,
    faults: Arc<Mutex<Vec<HaFault>>>,
    /// The first broker seen with a log copied anew (`replicaCopiedAnew` > 0).
    copied_anew: Arc<Mutex<Option<CopiedAnew>>>,
}

/// A broker seen to have copied its log anew: set, id, when (ms), how many times.
type CopiedAnew = (String, i64, u64, u64);

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Records {
    /// The broker of `set` last seen as master.
    fn master_of(&self, set: &str) -> Option<i64> {
        let roles = locked(&self.roles);
        let latest = roles.iter().rev().find(|s| s.set == set && s.master);
        latest.map(|s| s.broker)
    }
}

/// One broker: its set, id, address and node.
#[derive(Debug, Clone)]
struct BrokerSlot {
    set: &'static str,
    id: i64,
    addr: SocketAddr,
    config: BrokerConfig,
}

fn broker_slots(profile: &HaProfile, mutation: Option<Mutation>) -> Vec<BrokerSlot> {
    let mut slots = Vec::new();
    for (s, set) in SETS.iter().enumerate() {
        for id in 1..=3i64 {
            let addr: SocketAddr = format!("10.0.{}.{id}:10911", s + 1).parse().expect("address");
            let mut config = BrokerConfig::new(addr);
            config.broker_name = (*set).to_owned();
            config.broker_id = id;
            config.namesrv_addrs = vec![crate::workload::NAMESRV.parse().expect("address")];
            config.controller_addrs = CONTROLLERS.iter().map(|a| a.parse().expect("address")).collect();
            config.role = if profile.sync { BrokerRole::SyncMaster } else { BrokerRole::AsyncMaster };
            config.ha_addr = format!("10.0.{}.{id}:10912", s + 1).parse().ok();
            config.ha.all_ack_in_sync_state_set = profile.sync;
            config.default_topic_queue_nums = 4;
            config.store.segment_size = 64 * 1024;
            config.store.index = crate::profile::tiny_index(profile.seed);
            config.store.flush_mode = FlushMode::Sync;
            config.store.mutation = mutation;
            // The timing workload's check-backs, as in the cluster seeds.
            config.transaction.timeout_ms = TIMING_CHECKS.tx_timeout_ms;
            config.transaction.check_interval_ms = 2_000;
            config.transaction.check_max = TIMING_CHECKS.tx_check_max;
            slots.push(BrokerSlot { set, id, addr, config });
        }
    }
    slots
}

async fn controller_main(peers: ControllerPeers, epoch: Instant, mutation: Option<Mutation>) {
    let listener = TcpListener::bind("0.0.0.0:9878").await.expect("bind controller");
    // A few entries between compactions (each controller its own count, from its seed), so
    // runs compact, recover from snapshots and send them to controllers left behind.
    let snapshot_entries = 2 + peers.seed % 8;
    let config = ControllerConfig {
        scan_interval_ms: 1_000,
        snapshot_entries,
        mutation,
        ..ControllerConfig::default()
    };
    let (completions_tx, completions) = tokio::sync::mpsc::unbounded_channel();
    let disk = NodeDisk::start(completions_tx);
    // A log the controller wrote itself always reads back (a torn tail is cut off).
    let log = RecoveredLog::load(&disk).expect("the controller's Raft log recovers");
    let core = ControllerCore::in_group(config, peers, Some(&log)).expect("a controller group");
    let mut machine = Controller::with_core(core);
    let clock = Arc::new(SimClock::start(SharedSkew::default(), epoch));
    let config = DriverConfig { clock, ..DriverConfig::default() };
    let never = std::future::pending::<()>();
    let listeners = vec![(listener, keel_core::io::ConnKind::Remoting)];
    let disk: Arc<dyn keel_runtime_tokio::disk::Disk> = Arc::new(disk);
    let _ = driver::run(
        &mut machine,
        listeners,
        Some((disk, completions)),
        config,
        never,
        |_, _| {},
        |_| true,
        None,
    )
    .await;
}

fn key_of(message: &StoredMessage) -> Option<u32> {
    properties::find(&message.properties, keys::KEYS)
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.parse().ok())
}

fn client(name: &str, epoch: Instant) -> KeelClient {
    let namesrv = crate::workload::NAMESRV.parse().expect("address");
    let clock = Arc::new(SimClock::start(SharedSkew::default(), epoch));
    KeelClient::start_with_clock(ClientConfig::new(vec![namesrv], name), clock)
}

async fn produce(records: Records, epoch: Instant, gap_ms: u64, stop_at_ms: u64) {
    let client = client("10.0.8.1@ha-producer", epoch);
    let ms = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
    let mut key = 0u32;
    while ms() < stop_at_ms {
        let message = OutgoingMessage {
            topic: HA_TOPIC.into(),
            keys: Some(key.to_string()),
            body: format!("ha-{key}").into_bytes().into(),
            ..OutgoingMessage::default()
        };
        let request = SendRequest { group: "hpg".into(), message, target: SendTarget::Any };
        // Only SEND_OK carries the promise (FLUSH_SLAVE_TIMEOUT: stored on the master alone).
        let sent = client.send(request).await;
        if let Some(result) = sent.ok().filter(|r| r.status == keel_core::client::SendStatus::SendOk) {
            let at_ms = ms();
            let set = result.queue.broker_name.clone();
            locked(&records.writes).push((set.clone(), at_ms));
            let queue = (result.queue.queue_id, result.queue_offset);
            locked(&records.acked).insert(key, Acked { at_ms, set, queue });
        }
        key += 1;
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
    }
}

async fn consume(records: Records, epoch: Instant) {
    let client = client("10.0.8.2@ha-consumer", epoch);
    let mut config = ConsumerConfig::new("hcg", HA_TOPIC, "*");
    config.from_where = ConsumeFromWhere::FirstOffset;
    config.suspend_ms = 500;
    let deliveries = Arc::clone(&records.deliveries);
    let listener = move |queue: &MessageQueue, messages: &[StoredMessage]| {
        let at_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
        let mut seen = locked(&deliveries);
        for message in messages {
            seen.push(Delivery {
                at_ms,
                set: queue.broker_name.clone(),
                queue: queue.queue_id,
                offset: message.head.queue_offset,
                key: key_of(message).unwrap_or(u32::MAX),
            });
        }
        ConsumeResult::Success
    };
    let _ = client.start_consumer(config, listener, 4).await;
    std::future::pending::<()>().await;
}

/// Ask each broker its role and epochs every 250 ms, and write a probe to each master.
async fn observe(world: World, records: Records, epoch: Instant, slots: Vec<BrokerSlot>, profile: HaProfile) {
    let (seed, sync) = (profile.seed, profile.sync);
    let ms = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
    // Per set, the newest epoch a master was seen in: a newer one is a failover, told to
    // the timing checks (and, under ASYNC, a possible loss of the old master's tail).
    let mut newest: BTreeMap<&str, u32> = BTreeMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0b5e_77e0);
    let mut conns: Vec<SimConn> =
        slots.iter().map(|s| SimConn::new(s.addr, ConnChaos::default(), world.clone())).collect();
    let timeout = Duration::from_millis(500);
    let mut created = BTreeSet::new();
    for round in 0u64.. {
        for (slot, conn) in slots.iter().zip(&mut conns) {
            if round % 4 == 0 {
                copied_anew(&records, slot, conn, timeout, &mut rng, ms()).await;
            }
            // The role between two reads of the newest epoch that agree: a role and an epoch
            // read across a role change (master of the old epoch, then slave adopting the
            // new master's) would be a pair the broker never was.
            let Some(before) = newest_epoch(conn, timeout, &mut rng).await else { continue };
            let status = RemotingCommand::request(RequestCode::GET_BROKER_HA_STATUS, 0, Default::default());
            let Ok(status) = conn.call(status, timeout, &mut rng).await else { continue };
            let Ok(status) = json::from_slice::<HaRuntimeInfo>(&status.body) else { continue };
            let Some(newest_epoch) = newest_epoch(conn, timeout, &mut rng).await else { continue };
            if newest_epoch != before {
                continue;
            }
            let at_ms = ms();
            let newer = status.master && newest.get(slot.set).is_none_or(|seen| *seen < newest_epoch);
            // The first master seen of a set is no change.
            if newer && newest.insert(slot.set, newest_epoch).is_some() {
                let what =
                    format!("{MASTER_CHANGED}: {} broker {} in epoch {newest_epoch}", slot.set, slot.id);
                world.record(at_ms, Event::Fault { what });
                if !sync {
                    let cause = format!("ASYNC failover of {}", slot.set);
                    world.record(at_ms, Event::BrokerDataLoss { synced_end: 0, cause });
                }
            }
            locked(&records.roles).push(RoleSample {
                at_ms,
                set: slot.set.to_owned(),
                broker: slot.id,
                master: status.master,
                epoch: newest_epoch,
            });
            if status.master && !created.contains(slot.set) {
                // As an operator would (`mqadmin updateTopic -c`): the topic on every set,
                // so the producer spreads over both rather than where auto-creation put it.
                let header = CreateTopicRequestHeader {
                    topic: HA_TOPIC.into(),
                    default_topic: None,
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    perm: 6,
                    topic_filter_type: None,
                    topic_sys_flag: None,
                    order: None,
                    attributes: None,
                };
                let create =
                    RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC, 0, header.to_ext_fields());
                if conn
                    .call(create, timeout, &mut rng)
                    .await
                    .is_ok_and(|r| r.response_code() == ResponseCode::SUCCESS)
                {
                    created.insert(slot.set);
                }
            }
            if status.master {
                let probe = OutgoingMessage {
                    topic: PROBE_TOPIC.into(),
                    body: b"probe".to_vec().into(),
                    ..OutgoingMessage::default()
                };
                let reply = conn.call(send_message(0, "probe", 0, &probe), timeout, &mut rng).await;
                if reply.is_ok_and(|r| r.response_code() == ResponseCode::SUCCESS) {
                    locked(&records.writes).push((slot.set.to_owned(), ms()));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Record `slot` if its log was copied anew since it started: a slave whose log could not
/// continue its master's stream, which cut-backs on rejoining exist to prevent.
async fn copied_anew(
    records: &Records,
    slot: &BrokerSlot,
    conn: &mut SimConn,
    timeout: Duration,
    rng: &mut ChaCha8Rng,
    at_ms: u64,
) {
    let request = RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO, 0, Default::default());
    let Ok(reply) = conn.call(request, timeout, rng).await else { return };
    let Ok(table) = json::from_slice::<keel_core::protocol::body::KvTable>(&reply.body) else { return };
    let count = table.table.get("replicaCopiedAnew").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    if count > 0 {
        locked(&records.copied_anew).get_or_insert_with(|| (slot.set.to_owned(), slot.id, at_ms, count));
    }
}

/// Cut (or restore) the links both ways between `node` and each of `others`.
fn cut_links(net: &NetSim, node: NodeId, others: &[NodeId], cut: bool) {
    for other in others {
        for (from, to) in [(node, *other), (*other, node)] {
            if cut {
                net.clog_link(from, to);
            } else {
                net.unclog_link(from, to);
            }
        }
    }
}

/// A broker's newest epoch (GET_BROKER_EPOCH_CACHE), if it answered.
async fn newest_epoch(conn: &mut SimConn, timeout: Duration, rng: &mut ChaCha8Rng) -> Option<u32> {
    let epochs = RemotingCommand::request(RequestCode::GET_BROKER_EPOCH_CACHE, 0, Default::default());
    let epochs = conn.call(epochs, timeout, rng).await.ok()?;
    let epochs = json::from_slice::<EpochEntryCache>(&epochs.body).ok()?;
    epochs.epoch_list.last().map(|newest| u32::try_from(newest.epoch).unwrap_or(u32::MAX))
}

/// The fault phase: one fault at a time until `deadline`.
#[allow(clippy::too_many_arguments)]
async fn nemesis(
    world: World,
    records: Records,
    profile: HaProfile,
    epoch: Instant,
    deadline: Instant,
    brokers: Vec<(BrokerSlot, NodeId)>,
    controllers: Vec<NodeId>,
) {
    let handle = Handle::current();
    let net = NetSim::current();
    let disks = madsim::plugin::simulator::<DiskSimulator>();
    let mut rng = ChaCha8Rng::seed_from_u64(profile.seed ^ 0x4e4e_5e5e);
    let ms = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
    // Let the sets elect their first masters before anything happens.
    tokio::time::sleep(Duration::from_secs(20)).await;
    loop {
        let gap = -(profile.fault_gap_ms as f64) * (1.0 - rng.gen::<f64>()).ln();
        let at = Instant::now() + Duration::from_millis(gap as u64 + 1);
        let length = Duration::from_millis(rng.gen_range(500..=profile.max_fault_ms));
        if at + length >= deadline {
            return;
        }
        tokio::time::sleep_until(at).await;
        let kind = rng.gen_range(0..7);
        let set = SETS[rng.gen_range(0..SETS.len())];
        let masters: BTreeMap<&str, Option<i64>> = SETS.iter().map(|s| (*s, records.master_of(s))).collect();
        let pick = |rng: &mut ChaCha8Rng, master: bool| -> Option<&(BrokerSlot, NodeId)> {
            let master_id = masters.get(set).copied().flatten();
            let choices: Vec<&(BrokerSlot, NodeId)> = brokers
                .iter()
                .filter(|(b, _)| b.set == set && (!master || Some(b.id) == master_id))
                .collect();
            (!choices.is_empty()).then(|| choices[rng.gen_range(0..choices.len())])
        };
        let start = ms();
        let until = start + u64::try_from(length.as_millis()).unwrap_or(0);
        let is_master = |b: &BrokerSlot| masters.get(b.set).copied().flatten() == Some(b.id);
        match kind {
            0 | 1 => {
                let Some((slot, node)) = pick(&mut rng, kind == 0) else { continue };
                let power_loss = rng.gen_bool(0.5);
                let what = format!(
                    "kill {} broker {} (master: {}, {}) for {length:?}",
                    slot.set,
                    slot.id,
                    is_master(slot),
                    if power_loss { "power loss" } else { "process only" }
                );
                world.record(start, Event::Fault { what });
                world.bump(if is_master(slot) { "ha_master_kill" } else { "ha_slave_kill" });
                locked(&records.faults).push(HaFault {
                    at_ms: start,
                    until_ms: until,
                    set: Some(slot.set.to_owned()),
                    master_lost: is_master(slot),
                    lost_from_ms: start,
                    in_sync_survives: true,
                    back_ms: None,
                });
                disks.kill(*node, power_loss);
                tokio::time::sleep(length).await;
                handle.restart(*node);
            }
            2 | 3 => {
                let Some((slot, node)) = pick(&mut rng, false) else { continue };
                let from_controllers = kind == 3;
                let what = format!(
                    "partition {} broker {} (master: {}) from {} for {length:?}",
                    slot.set,
                    slot.id,
                    is_master(slot),
                    if from_controllers { "the controllers" } else { "everyone" }
                );
                world.record(start, Event::Fault { what });
                world.bump(if from_controllers {
                    "ha_broker_controller_partition"
                } else {
                    "ha_broker_partition"
                });
                locked(&records.faults).push(HaFault {
                    at_ms: start,
                    // A link cut holds traffic up for a while after it is lifted.
                    until_ms: until + CLOG_RETRY_MAX_MS,
                    set: Some(slot.set.to_owned()),
                    master_lost: is_master(slot) && !from_controllers,
                    lost_from_ms: start,
                    in_sync_survives: true,
                    // Shorter than the controller's heartbeat timeout: the master is not
                    // replaced, and serves again once the network's retries get through.
                    back_ms: (length < Duration::from_millis(HEARTBEAT_TIMEOUT_MS))
                        .then_some(until + CLOG_RETRY_MAX_MS),
                });
                if from_controllers {
                    cut_links(&net, *node, &controllers, true);
                } else {
                    net.clog_node(*node);
                }
                tokio::time::sleep(length).await;
                if from_controllers {
                    cut_links(&net, *node, &controllers, false);
                } else {
                    net.unclog_node(*node);
                }
            }
            5 => {
                // The master cut off from its slaves, then killed: a slave must not take
                // over with less than the master acknowledged.
                let Some((slot, node)) = pick(&mut rng, true) else { continue };
                // Half the time long enough for the master to drop its slaves from the
                // SyncStateSet (15 s without catching up) and go on alone; else short, so a
                // slave still in the set takes over.
                let length = Duration::from_millis(if rng.gen_bool(0.5) {
                    rng.gen_range(16_000..=25_000)
                } else {
                    rng.gen_range(1_000..=10_000)
                });
                let slaves: Vec<NodeId> = brokers
                    .iter()
                    .filter(|(b, _)| b.set == slot.set && b.id != slot.id)
                    .map(|(_, n)| *n)
                    .collect();
                // The length last: the checkers read a fault's span from its " for …" tail.
                let what = format!(
                    "partition {} broker {} (master: true) from its slaves, to be killed after, for {length:?}",
                    slot.set, slot.id
                );
                world.record(start, Event::Fault { what });
                world.bump("ha_master_isolated_then_killed");
                cut_links(&net, *node, &slaves, true);
                tokio::time::sleep(length).await;
                let killed_at = ms();
                // The partition itself disturbs the set: a SYNC master takes no write until
                // it drops its slaves from the SyncStateSet (seed 15837458994707953299: a
                // failover that began 8 s before was still slow because of it).
                locked(&records.faults).push(HaFault {
                    at_ms: start,
                    until_ms: killed_at + CLOG_RETRY_MAX_MS,
                    set: Some(slot.set.to_owned()),
                    master_lost: false,
                    lost_from_ms: start,
                    in_sync_survives: true,
                    back_ms: None,
                });
                locked(&records.faults).push(HaFault {
                    at_ms: killed_at,
                    until_ms: killed_at + profile.max_fault_ms,
                    set: Some(slot.set.to_owned()),
                    master_lost: true,
                    // An ASYNC master acknowledged alone from the partition on.
                    lost_from_ms: start,
                    // No replica is sure to be in sync: the set may wait for this one.
                    in_sync_survives: false,
                    back_ms: None,
                });
                world.record(
                    killed_at,
                    Event::Fault {
                        what: format!("kill {} broker {} (the isolated master)", slot.set, slot.id),
                    },
                );
                disks.kill(*node, true);
                cut_links(&net, *node, &slaves, false);
                tokio::time::sleep(length).await;
                handle.restart(*node);
            }
            6 => {
                // Controllers lose power: one, or (one time in four) all three at once, so
                // the group can only go on from what its members hold on disk.
                let all = rng.gen_bool(0.25);
                let hit: Vec<usize> = if all {
                    (0..controllers.len()).collect()
                } else {
                    vec![rng.gen_range(0..controllers.len())]
                };
                let names: Vec<String> = hit.iter().map(|i| format!("n{i}")).collect();
                world.record(
                    start,
                    Event::Fault {
                        what: format!("power loss of controller {} for {length:?}", names.join(", ")),
                    },
                );
                world.bump(if all { "ha_controller_group_power_loss" } else { "ha_controller_power_loss" });
                locked(&records.faults).push(HaFault {
                    at_ms: start,
                    // The group elects a leader and hears the brokers for a heartbeat
                    // timeout before it judges any master.
                    until_ms: until + HEARTBEAT_TIMEOUT_MS,
                    set: None,
                    master_lost: false,
                    lost_from_ms: start,
                    in_sync_survives: true,
                    back_ms: None,
                });
                for index in &hit {
                    disks.kill(controllers[*index], true);
                }
                tokio::time::sleep(length).await;
                for index in &hit {
                    handle.restart(controllers[*index]);
                }
            }
            _ => {
                let index = rng.gen_range(0..controllers.len());
                world.record(
                    start,
                    Event::Fault { what: format!("partition controller n{index} for {length:?}") },
                );
                world.bump("ha_controller_partition");
                locked(&records.faults).push(HaFault {
                    at_ms: start,
                    until_ms: until + CLOG_RETRY_MAX_MS,
                    set: None,
                    master_lost: false,
                    lost_from_ms: start,
                    in_sync_survives: true,
                    back_ms: None,
                });
                net.clog_node(controllers[index]);
                tokio::time::sleep(length).await;
                net.unclog_node(controllers[index]);
            }
        }
    }
}

async fn simulate(profile: HaProfile, mutation: Option<Mutation>) -> RunOutcome {
    let epoch = Instant::now();
    let world = World::default();
    let handle = Handle::current();
    let records = Records::default();
    let ms = move || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
    let disks = madsim::plugin::simulator::<DiskSimulator>();

    let namesrv = handle
        .create_node()
        .name("namesrv")
        .ip("10.0.0.1".parse().expect("ip"))
        .init(move || namesrv_main(SharedSkew::default(), epoch))
        .build();
    let peer_list: Vec<String> = CONTROLLERS.iter().enumerate().map(|(i, a)| format!("n{i}-{a}")).collect();
    let peer_list = peer_list.join(";");
    let mut controllers = Vec::new();
    for (i, addr) in CONTROLLERS.iter().enumerate() {
        let peers = ControllerPeers::parse("ha", &peer_list, &format!("n{i}"), profile.seed ^ i as u64)
            .expect("controller peers");
        let ip = addr.split(':').next().expect("ip");
        let node = handle
            .create_node()
            .name(format!("controller-n{i}"))
            .ip(ip.parse().expect("ip"))
            .init(move || controller_main(peers.clone(), epoch, mutation))
            .build();
        let never: LossHook = Arc::new(|_, _| {});
        disks.attach(node.id(), profile.seed ^ 0xc0c0 ^ i as u64, DiskProfile::default(), never);
        controllers.push(node.id());
    }
    let slots = broker_slots(&profile, mutation);
    let mut brokers = Vec::new();
    for slot in &slots {
        let (broker_world, config) = (world.clone(), slot.config.clone());
        let node = handle
            .create_node()
            .name(format!("{}-{}", slot.set, slot.id))
            .ip(slot.addr.ip())
            .init(move || broker_main(broker_world.clone(), config.clone(), SharedSkew::default(), epoch))
            .build();
        let never: LossHook = Arc::new(|_, _| {});
        disks.attach(
            node.id(),
            profile.seed ^ (slot.id as u64) << 8 ^ slot.addr.port() as u64,
            DiskProfile::default(),
            never,
        );
        brokers.push((slot.clone(), node.id()));
    }

    // Producers go on 75 s past the healing: clients refresh routes every 30 s, and a set
    // whose new master registered just after one refresh is missing until the next.
    let stop_at_ms = profile.fault_ms + 75_000;
    let producer = handle.create_node().name("ha-producer").ip("10.0.8.1".parse().expect("ip")).build();
    producer.spawn(produce(records.clone(), epoch, profile.send_gap_ms, stop_at_ms));
    let consumer = handle.create_node().name("ha-consumer").ip("10.0.8.2".parse().expect("ip")).build();
    consumer.spawn(consume(records.clone(), epoch));
    let observer = handle.create_node().name("ha-observer").ip("10.0.8.3".parse().expect("ip")).build();
    observer.spawn(observe(world.clone(), records.clone(), epoch, slots.clone(), profile.clone()));
    // The cluster seeds' timing workload (delay levels, timers, transactions) on the sets.
    let timing_env =
        TimingEnv { world: world.clone(), epoch, broker_skew: SharedSkew::default(), seed: profile.seed };
    let timing_init = timing_env.clone();
    let timing = handle
        .create_node()
        .name("timing")
        .ip("10.0.8.4".parse().expect("ip"))
        .init(move || timing_workload::run(timing_init.clone()))
        .build();

    let deadline = epoch + Duration::from_millis(profile.fault_ms);
    nemesis(
        world.clone(),
        records.clone(),
        profile.clone(),
        epoch,
        deadline,
        brokers.clone(),
        controllers.clone(),
    )
    .await;
    world.heal(ms());

    // Drain: every acknowledged message consumed, or the patience spent.
    tokio::time::sleep_until(epoch + Duration::from_millis(stop_at_ms)).await;
    world.stop_producers();
    let drain_until = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let consumed: BTreeSet<u32> = locked(&records.deliveries).iter().map(|d| d.key).collect();
        let missing = locked(&records.acked).keys().filter(|k| !consumed.contains(k)).count();
        let (clock, high) = (timing_env.broker_wall_ms(), timing_env.broker_high_ms());
        let timing_missing = world.read_history(|h| timing_pending(h, clock, high, &TIMING_CHECKS));
        if missing + timing_missing == 0 || Instant::now() >= drain_until {
            break;
        }
    }
    let converged = converge(&brokers).await;
    let end_ms = ms();

    let acked = locked(&records.acked).clone();
    let deliveries = locked(&records.deliveries).clone();
    let roles = locked(&records.roles).clone();
    let writes = locked(&records.writes).clone();
    let faults = locked(&records.faults).clone();
    let consumed: BTreeSet<u32> = deliveries.iter().map(|d| d.key).collect();
    let losses: Vec<HaFault> = faults.iter().cloned().chain(observed_failovers(&roles)).collect();
    let (mut violations, tail_lost) = lost(&acked, &consumed, &losses, profile.sync);
    violations.truncate(6);
    violations.extend(offset_conflicts(&deliveries).into_iter().take(3));
    violations.extend(epoch_claims(&roles).into_iter().take(3));
    violations.extend(starved_sets(&acked, &SETS, stop_at_ms.saturating_sub(15_000), stop_at_ms));
    let (slow, failovers) = slow_failovers(&faults, &writes, end_ms);
    violations.extend(slow.into_iter().take(3));
    violations.extend(converged);
    let anew = locked(&records.copied_anew).clone();
    violations.extend(anew.map(|(set, id, at_ms, count)| {
        format!("{set} broker {id} copied its log anew {count} time(s) by {at_ms} ms: it could not continue its master's stream (a cut-back missed)")
    }));
    let (wall_ms, high_ms) = (timing_env.broker_wall_ms(), timing_env.broker_high_ms());
    world.record(end_ms, Event::BrokerClock { wall_ms, high_ms });
    violations.extend(check_timing(&world.history(), &TIMING_CHECKS, 6));
    violations.truncate(12);

    let mut coverage = world.coverage();
    coverage.bump(if profile.sync { "ha_sync_run" } else { "ha_async_run" });
    coverage.add("ha_async_tail_lost", tail_lost);
    coverage.add("ha_failover", failovers.len() as u64);
    coverage.add("ha_failover_over_10s", failovers.iter().filter(|t| **t > 10_000).count() as u64);
    let epochs: BTreeSet<(String, u32)> =
        roles.iter().filter(|r| r.master).map(|r| (r.set.clone(), r.epoch)).collect();
    coverage.add("ha_master_epoch", epochs.len() as u64);
    let history = world.history();
    let trace = history
        .entries()
        .iter()
        .map(ToString::to_string)
        .chain(roles.iter().map(|r| format!("{r:?}")))
        .chain(deliveries.iter().map(|d| format!("{d:?}")));
    let trace_hash = crate::history::trace_hash(trace);
    let keep = if std::env::var_os("DST_TRACE").is_some() { usize::MAX } else { 20 };
    let mut tail: Vec<String> = history.tail(keep).iter().map(ToString::to_string).collect();
    tail.extend(roles.iter().rev().take(12).rev().map(|r| format!("{r:?}")));
    tail.push(format!("failovers (ms): {failovers:?}"));
    let mut last: BTreeMap<(&str, i32), &Delivery> = BTreeMap::new();
    for delivery in &deliveries {
        last.insert((delivery.set.as_str(), delivery.queue), delivery);
    }
    tail.extend(last.values().map(|d| format!("last delivery: {d:?}")));

    let all = [namesrv.id(), producer.id(), consumer.id(), observer.id(), timing.id()]
        .into_iter()
        .chain(controllers.iter().copied())
        .chain(brokers.iter().map(|(_, n)| *n));
    for (_, node) in &brokers {
        disks.detach(*node);
    }
    crate::cluster::tear_down(&handle, all, None).await;
    coverage.bump("ha_run");
    RunOutcome {
        violations,
        trace_hash,
        coverage,
        simulated_ms: end_ms,
        tail,
        acked: acked.len() as u64,
        faults: Vec::new(),
    }
}

/// Each set's replicas hold the same log from where the shortest begins, within a minute
/// of healing; the violations otherwise.
async fn converge(brokers: &[(BrokerSlot, NodeId)]) -> Vec<String> {
    let disks = madsim::plugin::simulator::<DiskSimulator>();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mut problems = Vec::new();
        for set in SETS {
            let reports: Vec<(i64, keel_core::store::audit::AuditReport)> = brokers
                .iter()
                .filter(|(b, _)| b.set == set)
                .filter_map(|(b, node)| {
                    disks.disk(*node).map(|d| (b.id, d.with(|d| survey(&b.config.store, &*d).0)))
                })
                .collect();
            let Some((reference, longest)) = reports.iter().max_by_key(|(id, r)| (r.end, -id)) else {
                continue;
            };
            for (id, report) in &reports {
                if let Some(problem) = replica_divergence(longest, report) {
                    problems.push(format!("{set}: broker {id} against broker {reference}: {problem}"));
                }
            }
        }
        if problems.is_empty() || Instant::now() >= until {
            return problems;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
