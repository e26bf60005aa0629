//! One seeded run of a whole cluster on madsim: a name server, a broker, producers,
//! consumers and a read-back client, each a madsim node. The broker and the name server run
//! the production driver loop (`keel_runtime_tokio`) unchanged; only their disk
//! ([`NodeDisk`]) and clock ([`SimClock`]) are the simulator's.
//!
//! A run has a fault phase, where the [`nemesis`](crate::nemesis) injects what the seed's
//! [`SimProfile`] switched on, then a healing phase: faults stop, producers stop, and every
//! acknowledged message must reach every group; then the read-back, then the checkers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_core::broker::BrokerConfig;
use keel_core::mutation::Mutation;
use keel_core::namesrv::{NameServer, NameServerConfig};
use keel_core::store::FlushMode;
use keel_runtime_tokio::clock::Clock;
use keel_runtime_tokio::disk::Disk;
use keel_runtime_tokio::driver::{self, DriverConfig};
use keel_runtime_tokio::server::BrokerServer;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use madsim::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::checker::{check, undelivered, CheckConfig};
use crate::coverage::Coverage;
use crate::disk_plugin::{DiskProfile, DiskSimulator, LossHook, NodeDisk};
use crate::history::Event;
use crate::nemesis::{self, Nodes};
use crate::profile::SimProfile;
use crate::sim_clock::{ClockSkew, SharedSkew, SimClock};
use crate::sim_conn::ConnChaos;
use crate::sim_disk::SimDiskFaults;
use crate::timing_checks::{check_timing, timing_pending, TimingCheckConfig};
use crate::timing_workload::{self, TimingEnv};
use crate::workload::{self, ClientEnv, QUEUES};
use crate::world::World;

/// The broker's address.
pub const BROKER: &str = "10.0.0.2:10911";
/// The consumer groups (each one consumer owning every queue).
pub const GROUPS: [u8; 2] = [1, 2];
/// How many violations a run reports at most.
const MAX_VIOLATIONS: usize = 12;

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Checker violations (empty: the run passed).
    pub violations: Vec<String>,
    /// The trace hash (equal for two runs of one seed, or the simulator is not deterministic).
    pub trace_hash: u64,
    /// Fault and state counters.
    pub coverage: Coverage,
    /// Simulated time the run took, milliseconds.
    pub simulated_ms: u64,
    /// The last events of the history, for a failure report.
    pub tail: Vec<String>,
    /// Messages acknowledged.
    pub acked: u64,
    /// Every fault injected, in order (what a scripted scenario's snapshot shows).
    pub faults: Vec<String>,
}

/// Run `profile` (with `mutation` switched on, if any) to the end.
#[must_use]
pub fn run_seed(profile: &SimProfile, mutation: Option<Mutation>) -> RunOutcome {
    if profile.groups {
        return run_groups(profile.seed, mutation);
    }
    if profile.ha {
        return crate::ha_scenario::run_ha_seed(
            &crate::ha_scenario::HaProfile::from_seed(profile.seed),
            mutation,
        );
    }
    let mut rt = Runtime::with_seed_and_config(profile.seed, madsim::Config::default());
    rt.add_simulator::<DiskSimulator>();
    rt.set_time_limit(Duration::from_millis(profile.fault_ms + profile.heal_ms + 120_000));
    rt.block_on(simulate(profile.clone(), mutation))
}

/// A consumer-group seed, reported like a cluster seed.
fn run_groups(seed: u64, mutation: Option<Mutation>) -> RunOutcome {
    let outcome = crate::group_scenario::run_group_seed(
        &crate::group_scenario::GroupProfile::from_seed(seed),
        mutation,
    );
    let mut coverage = outcome.coverage;
    coverage.bump("group_run");
    RunOutcome {
        violations: outcome.violations,
        trace_hash: outcome.trace_hash,
        coverage,
        simulated_ms: outcome.simulated_ms,
        tail: outcome.tail,
        acked: outcome.acked,
        faults: Vec::new(),
    }
}

fn broker_config(profile: &SimProfile, mutation: Option<Mutation>) -> BrokerConfig {
    let addr: SocketAddr = BROKER.parse().expect("address");
    let mut config = BrokerConfig::new(addr);
    config.namesrv_addrs = vec![workload::NAMESRV.parse().expect("address")];
    config.default_topic_queue_nums = QUEUES;
    config.store.segment_size = profile.segment_size;
    config.store.queue_file_entries = profile.queue_file_entries;
    config.store.index = profile.index;
    config.store.max_message_size = 4096;
    config.store.checkpoint_interval_ms = profile.checkpoint_interval_ms;
    config.store.flush_mode = if profile.sync_flush {
        FlushMode::Sync
    } else {
        FlushMode::Async { interval_ms: profile.flush_interval_ms }
    };
    config.store.mutation = mutation.filter(|m| *m != Mutation::CommitBeforeProcess);
    // The checkers require every acknowledged message, so no forcible deletion. The
    // disk-full guard is on: a small disk refuses writes above the warning level, and a
    // write past capacity still ends in ENOSPC.
    config.store.retention.clean_forcibly = false;
    if let Some(r) = profile.retention {
        // Seconds instead of days, at every hour of the day: segments expire within a run.
        config.store.retention.file_reserved_ms = r.reserved_ms;
        config.store.retention.delete_hours = (0..24).collect();
        config.store.retention.check_interval_ms = r.check_interval_ms;
        config.store.retention.delete_interval_ms = r.delete_interval_ms;
    }
    // Quick check-backs, so transactions are checked, answered and discarded within a run.
    config.transaction.timeout_ms = TIMING_CHECKS.tx_timeout_ms;
    config.transaction.check_interval_ms = 2_000;
    config.transaction.check_max = TIMING_CHECKS.tx_check_max;
    config
}

/// The timing workload's checks, and the broker settings they assume.
pub const TIMING_CHECKS: TimingCheckConfig = TimingCheckConfig {
    tx_timeout_ms: 3_000,
    tx_check_max: 4,
    // The client library's send attempts (2 retries): each may store a half message.
    send_attempts: 3,
    // ClientConfig's default.
    send_timeout_ms: 3_000,
    late_bound_ms: 2_500,
    slack_ms: 5_000,
    reserved_ms: None,
};

fn disk_profile(profile: &SimProfile) -> DiskProfile {
    DiskProfile {
        faults: SimDiskFaults {
            sync_failure: profile.fsync_failures,
            write_error: profile.write_errors,
            capacity: profile.capacity,
            commitlog_read_flip_every: None,
        },
        mean_latency_us: profile.disk_latency_us,
        read_flip: profile.bit_rot,
    }
}

pub(crate) async fn namesrv_main(skew: SharedSkew, epoch: Instant) {
    let listener = TcpListener::bind("0.0.0.0:9876").await.expect("bind name server");
    let mut machine = NameServer::new(NameServerConfig::default());
    let clock: Arc<dyn Clock> = Arc::new(SimClock::start(skew, epoch));
    let config = DriverConfig { clock, ..DriverConfig::default() };
    let never = std::future::pending::<()>();
    let _ = driver::run(
        &mut machine,
        vec![(listener, keel_core::io::ConnKind::Remoting)],
        None,
        config,
        never,
        |_, _| {},
        |_| true,
        None,
    )
    .await;
}

pub(crate) async fn broker_main(world: World, config: BrokerConfig, skew: SharedSkew, epoch: Instant) {
    let listener = TcpListener::bind("0.0.0.0:10911").await.expect("bind broker");
    let replication = match config.ha_addr {
        Some(addr) => Some(TcpListener::bind(("0.0.0.0", addr.port())).await.expect("bind replication")),
        None => None,
    };
    let (completions_tx, completions) = mpsc::unbounded_channel();
    let disk: Arc<dyn Disk> = Arc::new(NodeDisk::start(completions_tx));
    let clock: Arc<dyn Clock> = Arc::new(SimClock::start(skew, epoch));
    let server = match BrokerServer::from_parts(config, listener, disk, completions, clock) {
        Ok(server) => server,
        Err(error) => {
            let at = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
            world.record(at, Event::Alarm { what: format!("broker recovery failed: {error:#}") });
            world.broker_down(format!("recovery: {error:#}"));
            return;
        }
    };
    let server = match replication {
        Some(listener) => server.with_replication_listener(listener),
        None => server,
    };
    madsim::plugin::simulator::<DiskSimulator>().arm_read_faults(madsim::plugin::node());
    if let Err(error) = server.run(std::future::pending()).await {
        world.broker_down(format!("{error:#}"));
    }
}

async fn simulate(profile: SimProfile, mutation: Option<Mutation>) -> RunOutcome {
    let world = World::default();
    if profile.fault_free {
        world.set_fault_free();
    }
    let epoch = Instant::now();
    let handle = Handle::current();
    let net = madsim::net::NetSim::current();
    if let Some((low, high)) = profile.latency_us {
        net.update_config(|c| c.send_latency = Duration::from_micros(low)..Duration::from_micros(high));
        world.bump("network_latency");
    }
    let chaos = ConnChaos {
        resets: profile.resets,
        split_writes: profile.split_writes,
        coalesce_writes: profile.coalesce_writes,
    };
    let broker_skew = SharedSkew::new(ClockSkew {
        offset_ms: profile.clock_offset_ms,
        wall_drift_ppm: profile.clock_drift_ppm,
        mono_drift_ppm: profile.mono_drift_ppm,
        stepped_ms: 0,
        peak_ms: None,
    });
    let env = ClientEnv {
        world: world.clone(),
        epoch,
        chaos,
        commit_before_process: mutation == Some(Mutation::CommitBeforeProcess),
        broker_skew: broker_skew.clone(),
    };

    let namesrv_skew = SharedSkew::default();
    let namesrv = handle
        .create_node()
        .name("namesrv")
        .ip("10.0.0.1".parse().expect("ip"))
        .init(move || namesrv_main(namesrv_skew.clone(), epoch))
        .build();

    if profile.clock_offset_ms != 0 {
        world.bump("clock_offset");
    }
    if profile.clock_drift_ppm != 0 || profile.mono_drift_ppm != 0 {
        world.bump("clock_drift");
    }
    let mut config = broker_config(&profile, mutation);
    if let Some(replica) = &profile.replica {
        crate::replica::make_master(&mut config, replica);
        world.bump(if replica.sync_master { "sync_master_run" } else { "async_master_run" });
    }
    let master_config = config.clone();
    let (broker_world, skew) = (world.clone(), broker_skew.clone());
    let broker = handle
        .create_node()
        .name("broker")
        .ip("10.0.0.2".parse().expect("ip"))
        .init(move || broker_main(broker_world.clone(), config.clone(), skew.clone(), epoch))
        .build();
    let disks = madsim::plugin::simulator::<DiskSimulator>();
    let ledger = world.clone();
    let on_loss: LossHook = Arc::new(move |synced_end, cause| {
        let at = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
        if let Some(synced_end) = synced_end {
            ledger.record(at, Event::BrokerDataLoss { synced_end, cause: cause.to_owned() });
        }
        if cause != "power loss" {
            // The broker refuses writes, drains and rebuilds its store in place.
            ledger.record(
                at,
                Event::Fault { what: format!("{} ({cause})", crate::history::DISK_ERROR_REPAIR) },
            );
        }
    });
    disks.attach(broker.id(), profile.seed ^ 0xd15c, disk_profile(&profile), on_loss);
    if let Some(capacity) = profile.capacity {
        // A small disk fills and refuses writes for as long as the fault phase lasts.
        world.record(
            0,
            Event::Fault {
                what: format!("broker disk holds {capacity} bytes {}", crate::history::UNTIL_HEALED),
            },
        );
    }
    if profile.disk_latency_us > 0 {
        world.bump("disk_latency");
    }
    let slave =
        profile.replica.map(|_| crate::replica::start_slave(&world, &master_config, profile.seed, epoch));

    let mut producers: Vec<NodeId> = Vec::new();
    for id in 0..profile.producers {
        let (env, gap, body) = (env.clone(), profile.send_gap_ms, profile.max_body);
        let seed = profile.seed.wrapping_mul(31).wrapping_add(u64::from(id));
        let node = handle
            .create_node()
            .name(format!("producer-{id}"))
            .ip(format!("10.0.1.{}", id + 1).parse().expect("ip"))
            .init(move || workload::producer(env.clone(), id, seed, gap, body))
            .build();
        producers.push(node.id());
    }
    let mut consumers: Vec<NodeId> = Vec::new();
    for group in GROUPS {
        let (env, process) = (env.clone(), profile.max_process_ms);
        let seed = profile.seed.wrapping_mul(17).wrapping_add(u64::from(group));
        let node = handle
            .create_node()
            .name(format!("consumer-{group}"))
            .ip(format!("10.0.2.{group}").parse().expect("ip"))
            .init(move || workload::consumer(env.clone(), group, seed, process))
            .build();
        consumers.push(node.id());
    }
    let prober = handle.create_node().name("probe").ip("10.0.3.1".parse().expect("ip")).build();
    let timing_env =
        TimingEnv { world: world.clone(), epoch, broker_skew: broker_skew.clone(), seed: profile.seed };
    let timing_init = timing_env.clone();
    let timing = handle
        .create_node()
        .name("timing")
        .ip("10.0.4.1".parse().expect("ip"))
        .init(move || timing_workload::run(timing_init.clone()))
        .build();

    let pop_env = env.clone();
    let pop_seed = profile.seed ^ 0x9090_0505;
    let pop = handle
        .create_node()
        .name("pop")
        .ip("10.0.5.1".parse().expect("ip"))
        .init(move || crate::pop_workload::run(pop_env.clone(), pop_seed))
        .build();

    let nodes = Nodes { namesrv: namesrv.id(), broker: broker.id(), producers, consumers };
    let deadline = epoch + Duration::from_millis(profile.fault_ms);
    let nemesis_tasks = nemesis::start(&profile, &world, &nodes, &broker_skew, epoch, deadline);
    let replica_faults = match (&slave, profile.replica.and_then(|r| r.partitions)) {
        (Some((slave, _)), Some(r)) => Some(tokio::spawn(crate::replica::partitions(
            world.clone(),
            r,
            profile.seed,
            (broker.id(), *slave),
            epoch,
            deadline,
        ))),
        _ => None,
    };
    tokio::time::sleep_until(deadline).await;
    for task in nemesis_tasks.faults.into_iter().chain(replica_faults) {
        let _ = task.await;
    }
    if let Some((slave, _)) = &slave {
        crate::replica::heal(broker.id(), *slave);
    }
    // Heal: every fault off, the network whole, the disk sound, the clock steady.
    let now_ms = env.now_ms();
    world.heal(now_ms);
    nemesis::heal(&nodes, &broker_skew, now_ms);
    net.update_config(|c| c.send_latency = Duration::from_millis(1)..Duration::from_millis(10));
    disks.set_profile(broker.id(), DiskProfile::default());

    let check_config = CheckConfig {
        sync_flush: profile.sync_flush,
        fault_free: profile.fault_free,
        groups: GROUPS.to_vec(),
        record_bound: profile.max_body as u64 + 512,
        reserved_ms: profile.retention.map(|r| r.reserved_ms),
    };
    let timing_checks =
        TimingCheckConfig { reserved_ms: profile.retention.map(|r| r.reserved_ms), ..TIMING_CHECKS };
    // Producers go on into the healed period, so requests that must succeed meet fresh
    // messages (a held pull answered, or not, when one arrives).
    tokio::time::sleep(Duration::from_secs(30)).await;
    world.stop_producers();
    let heal_deadline = Instant::now() + Duration::from_millis(profile.heal_ms);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (clock, high) = (timing_env.broker_wall_ms(), timing_env.broker_high_ms());
        let pending = world.read_history(|h| {
            undelivered(h, &check_config, high)
                + timing_pending(h, clock, high, &timing_checks)
                + if profile.retention.is_some() {
                    0
                } else {
                    crate::pop_checks::pop_pending(h, env.now_ms())
                }
        });
        if pending == 0 || Instant::now() >= heal_deadline {
            break;
        }
    }
    let probe = prober.spawn(workload::probe(env.clone(), profile.seed));
    if tokio::time::timeout(Duration::from_secs(60), probe).await.is_err() {
        world.record(env.now_ms(), Event::Alarm { what: "the read-back did not finish within 60 s".into() });
    }
    let probe = prober.spawn(timing_workload::probe(env.clone(), profile.seed ^ 0x7137));
    if tokio::time::timeout(Duration::from_secs(60), probe).await.is_err() {
        world.record(
            env.now_ms(),
            Event::Alarm { what: "the timing read-back did not finish within 60 s".into() },
        );
    }

    let probe = prober.spawn(crate::pop_workload::probe_dead_letters(env.clone(), profile.seed ^ 0xd1a));
    if tokio::time::timeout(Duration::from_secs(60), probe).await.is_err() {
        world.record(
            env.now_ms(),
            Event::Alarm { what: "the pop read-back did not finish within 60 s".into() },
        );
    }

    let mut replica_violation = None;
    if let Some((slave, slave_config)) = &slave {
        let nodes = (broker.id(), *slave);
        let patience = Duration::from_secs(60);
        replica_violation =
            crate::replica::check_converged(nodes, (&master_config, slave_config), patience).await;
        world.bump(if replica_violation.is_none() { "replica_converged" } else { "replica_diverged" });
    }
    let mut coverage = world.coverage();
    if let Some(disk) = disks.disk(broker.id()) {
        let counts = disk.with(|d| d.fault_counts());
        coverage.add("disk_write_eio", counts.write_errors);
        coverage.add("disk_enospc", counts.no_space);
        coverage.add("fsync_failure", counts.sync_failures);
    }
    coverage.add("bit_rot_read", disks.read_flips(broker.id()));
    if profile.fault_free {
        coverage.bump("fault_free_run");
    }
    let (wall_ms, high_ms) = (timing_env.broker_wall_ms(), timing_env.broker_high_ms());
    world.record(env.now_ms(), Event::BrokerClock { wall_ms, high_ms });
    let history = world.history();
    let mut violations = check(&history, &check_config, MAX_VIOLATIONS);
    violations.extend(replica_violation);
    violations.extend(check_timing(
        &history,
        &timing_checks,
        MAX_VIOLATIONS.saturating_sub(violations.len()),
    ));
    violations.extend(crate::pop_checks::check_pop(
        &history,
        profile.retention.is_some(),
        MAX_VIOLATIONS.saturating_sub(violations.len()),
    ));
    let outcome = RunOutcome {
        violations,
        trace_hash: history.trace_hash(),
        coverage,
        simulated_ms: env.now_ms(),
        tail: history
            .tail(if std::env::var_os("DST_TRACE").is_some() { usize::MAX } else { 40 })
            .iter()
            .map(ToString::to_string)
            .collect(),
        acked: history.entries().iter().filter(|e| matches!(e.event, Event::SendAcked { .. })).count() as u64,
        faults: history
            .entries()
            .iter()
            .filter_map(|e| match &e.event {
                Event::Fault { what } => Some(what.clone()),
                _ => None,
            })
            .collect(),
    };
    nemesis_tasks.keeper.abort();
    let all = [nodes.namesrv, nodes.broker, prober.id(), timing.id(), pop.id()]
        .into_iter()
        .chain(nodes.producers.iter().copied())
        .chain(slave.iter().map(|(node, _)| *node));
    if let Some((slave, _)) = &slave {
        disks.detach(*slave);
    }
    tear_down(&handle, all.chain(nodes.consumers.iter().copied()), Some(broker.id())).await;
    outcome
}

/// Kill every node and let the executor drop their tasks. A task still pending when
/// `block_on` returns is never freed: when the runtime drops its waker, async-task queues it
/// on madsim's run queue, which the task's own scheduler keeps alive, so the task, and
/// through it the run's whole state, leak. A batch of seeds in one process grew by
/// megabytes a seed until the machine ran out of memory.
/// `disk_node`'s disk is detached first, so its kill is not a power loss.
pub(crate) async fn tear_down(
    handle: &Handle,
    nodes: impl IntoIterator<Item = NodeId>,
    disk_node: Option<NodeId>,
) {
    if let Some(node) = disk_node {
        madsim::plugin::simulator::<DiskSimulator>().detach(node);
    }
    for node in nodes {
        handle.kill(node);
    }
    // A killed task is dropped the next time the executor picks it up; one tick is enough.
    tokio::time::sleep(Duration::from_millis(1)).await;
}
