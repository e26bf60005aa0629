//! The fault scheduler: one task per fault family the seed switched on, each striking at
//! exponential intervals until the fault phase ends and then undoing its last strike; plus
//! the broker's keeper, which restarts a broker that stopped on its own (a fatal disk
//! error) for the whole run, as a process supervisor would.

use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;

use crate::disk_plugin::DiskSimulator;
use crate::history::Event;
use crate::profile::{Recurring, Scripted, SimProfile};
use crate::sim_clock::SharedSkew;
use crate::world::World;
use keel_runtime_tokio::clock::Clock;

/// The cluster's nodes, by role.
#[derive(Debug, Clone)]
pub struct Nodes {
    /// The name server.
    pub namesrv: NodeId,
    /// The broker.
    pub broker: NodeId,
    /// Producer nodes.
    pub producers: Vec<NodeId>,
    /// Consumer nodes (one per group).
    pub consumers: Vec<NodeId>,
}

/// Shared by every task that kills or restarts the broker, so one never restarts a node
/// the other is bringing up (a restart without a kill would find its port taken).
type BrokerLock = Arc<tokio::sync::Mutex<()>>;

struct Ctx {
    world: World,
    epoch: Instant,
    deadline: Instant,
    rng: ChaCha8Rng,
}

impl Ctx {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fault(&self, what: String) {
        self.world.record(self.now_ms(), Event::Fault { what });
    }

    /// Sleep until the next strike of `r`; false when the fault phase is over.
    async fn next(&mut self, r: &Recurring) -> bool {
        let gap = -(r.mean_interval_ms as f64) * (1.0 - self.rng.gen::<f64>()).ln();
        let at = Instant::now() + Duration::from_millis(gap as u64 + 1);
        if at >= self.deadline {
            tokio::time::sleep_until(self.deadline).await;
            return false;
        }
        tokio::time::sleep_until(at).await;
        true
    }

    fn duration(&mut self, r: &Recurring) -> Duration {
        Duration::from_millis(self.rng.gen_range(1..=r.max_duration_ms.max(1)))
    }
}

/// The running nemesis: fault tasks that end with the fault phase, and the broker's keeper,
/// which runs until the run is torn down.
pub struct Nemesis {
    /// The fault tasks; each ends at the fault phase's deadline.
    pub faults: Vec<JoinHandle<()>>,
    /// Restarts the broker whenever it stops; aborted at tear-down.
    pub keeper: JoinHandle<()>,
}

/// Start the fault tasks for `profile`; they end with the fault phase (at `deadline`).
/// The broker's keeper is started too and runs to the end of the run.
pub fn start(
    profile: &SimProfile,
    world: &World,
    nodes: &Nodes,
    skew: &SharedSkew,
    epoch: Instant,
    deadline: Instant,
) -> Nemesis {
    let lock: BrokerLock = Arc::default();
    let ctx = |label: u64| Ctx {
        world: world.clone(),
        epoch,
        deadline,
        rng: ChaCha8Rng::seed_from_u64(profile.seed ^ label.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    };
    let keeper = tokio::spawn(keep_broker(ctx(1), nodes.broker, Arc::clone(&lock)));
    let mut tasks = Vec::new();
    if profile.broker_kills.is_some() || profile.broker_pauses.is_some() {
        tasks.push(tokio::spawn(broker_faults(ctx(2), profile.clone(), nodes.broker, Arc::clone(&lock))));
    }
    if let Some(r) = profile.consumer_kills {
        tasks.push(tokio::spawn(kill_loop(ctx(3), r, nodes.consumers.clone(), "consumer_kill")));
    }
    if let Some(r) = profile.namesrv_kills {
        tasks.push(tokio::spawn(kill_loop(ctx(4), r, vec![nodes.namesrv], "namesrv_kill")));
    }
    if profile.partitions.is_some() || profile.one_way_partitions.is_some() {
        tasks.push(tokio::spawn(partitions(ctx(5), profile.clone(), nodes.clone())));
    }
    if let Some(r) = profile.clock_steps {
        tasks.push(tokio::spawn(clock_steps(ctx(6), r, skew.clone())));
    }
    for (i, step) in profile.script.iter().enumerate() {
        let label = 100 + u64::try_from(i).unwrap_or(0);
        tasks.push(tokio::spawn(scripted(ctx(label), *step, nodes.clone(), Arc::clone(&lock))));
    }
    Nemesis { faults: tasks, keeper }
}

async fn scripted(ctx: Ctx, step: Scripted, nodes: Nodes, lock: BrokerLock) {
    let handle = Handle::current();
    match step {
        Scripted::KillNamesrv { at_ms, down_ms } => {
            tokio::time::sleep_until(ctx.epoch + Duration::from_millis(at_ms)).await;
            ctx.fault(format!("scripted: kill name server for {down_ms} ms"));
            ctx.world.bump("namesrv_kill");
            handle.kill(nodes.namesrv);
            tokio::time::sleep(Duration::from_millis(down_ms)).await;
            handle.restart(nodes.namesrv);
        }
        Scripted::KillBroker { at_ms, down_ms, power_loss } => {
            tokio::time::sleep_until(ctx.epoch + Duration::from_millis(at_ms)).await;
            let _guard = lock.lock().await;
            let disks = madsim::plugin::simulator::<DiskSimulator>();
            ctx.fault(format!("scripted: kill broker (power loss: {power_loss}) for {down_ms} ms"));
            ctx.world.bump("broker_kill");
            disks.kill(nodes.broker, power_loss);
            tokio::time::sleep(Duration::from_millis(down_ms)).await;
            handle.restart(nodes.broker);
        }
    }
}

/// Undo whatever a fault could have left behind, and stop the broker clock's drift.
pub fn heal(nodes: &Nodes, skew: &SharedSkew, now_ms: u64) {
    let net = NetSim::current();
    net.unclog_node(nodes.broker);
    for other in nodes.producers.iter().chain(&nodes.consumers).chain([&nodes.namesrv]) {
        net.unclog_link(nodes.broker, *other);
        net.unclog_link(*other, nodes.broker);
    }
    skew.freeze_drift(i64::try_from(now_ms).unwrap_or(i64::MAX));
}

async fn keep_broker(ctx: Ctx, broker: NodeId, lock: BrokerLock) {
    let handle = Handle::current();
    let disks = madsim::plugin::simulator::<DiskSimulator>();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(why) = ctx.world.take_broker_down() else { continue };
        let _guard = lock.lock().await;
        ctx.fault(format!("broker stopped ({why}); restarting it"));
        ctx.world.bump("fatal_restart");
        // The process died; the machine did not: its page cache survives.
        disks.kill(broker, false);
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.restart(broker);
    }
}

async fn broker_faults(mut ctx: Ctx, profile: SimProfile, broker: NodeId, lock: BrokerLock) {
    let handle = Handle::current();
    let disks = madsim::plugin::simulator::<DiskSimulator>();
    let kinds: Vec<(bool, Recurring)> = [(true, profile.broker_kills), (false, profile.broker_pauses)]
        .into_iter()
        .filter_map(|(kill, r)| r.map(|r| (kill, r)))
        .collect();
    loop {
        let (kill, r) = kinds[ctx.rng.gen_range(0..kinds.len())];
        if !ctx.next(&r).await {
            return;
        }
        let down = ctx.duration(&r);
        let _guard = lock.lock().await;
        if !kill {
            ctx.fault(format!("pause broker for {down:?}"));
            ctx.world.bump("broker_pause");
            handle.pause(broker);
            tokio::time::sleep(down).await;
            handle.resume(broker);
            continue;
        }
        // Crashes are far likelier while IO is in flight: wait a little for some.
        if ctx.rng.gen_bool(0.9) {
            for _ in 0..200 {
                if disks.in_flight(broker) > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let in_flight = disks.in_flight(broker);
        let power_loss = !profile.process_kills_only;
        disks.kill(broker, power_loss);
        ctx.world.bump("broker_kill");
        if in_flight > 0 {
            ctx.world.bump("broker_kill_with_io_in_flight");
        }
        if power_loss {
            if let Some(crash) = disks.crashes(broker).last() {
                ctx.world.add("power_loss_torn_page", crash.stats.pages_torn);
                ctx.world.add("power_loss_lost_page", crash.stats.pages_lost);
                ctx.world.add("power_loss_corrupt_page", crash.stats.pages_corrupted);
                ctx.fault(format!("broker power loss with {in_flight} IOs in flight: {:?}", crash.stats));
            }
        } else {
            ctx.world.bump("process_kill");
            ctx.fault(format!("broker process killed with {in_flight} IOs in flight"));
        }
        // A fatal stop just before the kill is moot now.
        let _ = ctx.world.take_broker_down();
        tokio::time::sleep(down).await;
        handle.restart(broker);
    }
}

async fn kill_loop(mut ctx: Ctx, r: Recurring, targets: Vec<NodeId>, what: &'static str) {
    let handle = Handle::current();
    while ctx.next(&r).await {
        let target = targets[ctx.rng.gen_range(0..targets.len())];
        let down = ctx.duration(&r);
        ctx.fault(format!("{what} {target} for {down:?}"));
        ctx.world.bump(what);
        handle.kill(target);
        tokio::time::sleep(down).await;
        handle.restart(target);
    }
}

async fn partitions(mut ctx: Ctx, profile: SimProfile, nodes: Nodes) {
    let net = NetSim::current();
    let kinds: Vec<(bool, Recurring)> = [(true, profile.partitions), (false, profile.one_way_partitions)]
        .into_iter()
        .filter_map(|(symmetric, r)| r.map(|r| (symmetric, r)))
        .collect();
    let peers: Vec<NodeId> =
        nodes.producers.iter().chain(&nodes.consumers).chain([&nodes.namesrv]).copied().collect();
    loop {
        let (symmetric, r) = kinds[ctx.rng.gen_range(0..kinds.len())];
        if !ctx.next(&r).await {
            return;
        }
        let length = ctx.duration(&r);
        if symmetric {
            let peer = peers[ctx.rng.gen_range(0..peers.len())];
            ctx.fault(format!("partition broker | {peer} for {length:?}"));
            ctx.world.bump("partition");
            net.clog_link(nodes.broker, peer);
            net.clog_link(peer, nodes.broker);
            tokio::time::sleep(length).await;
            net.unclog_link(nodes.broker, peer);
            net.unclog_link(peer, nodes.broker);
        } else {
            let inbound = ctx.rng.gen_bool(0.5);
            ctx.fault(format!(
                "one-way partition: broker {} for {length:?}",
                if inbound { "in" } else { "out" }
            ));
            ctx.world.bump("one_way_partition");
            if inbound {
                net.clog_node_in(nodes.broker);
            } else {
                net.clog_node_out(nodes.broker);
            }
            tokio::time::sleep(length).await;
            if inbound {
                net.unclog_node_in(nodes.broker);
            } else {
                net.unclog_node_out(nodes.broker);
            }
        }
    }
}

async fn clock_steps(mut ctx: Ctx, r: Recurring, skew: SharedSkew) {
    while ctx.next(&r).await {
        let size = i64::try_from(ctx.rng.gen_range(1_000..=r.max_duration_ms.max(1_000))).unwrap_or(1_000);
        let delta = if ctx.rng.gen_bool(0.5) { size } else { -size };
        ctx.fault(format!("broker wall clock steps {delta} ms"));
        ctx.world.bump(if delta > 0 { "clock_step_forward" } else { "clock_step_backward" });
        let reading = crate::sim_clock::SimClock::start(skew.clone(), ctx.epoch).now().wall.0;
        skew.step(delta, reading);
        let step = Event::BrokerClockStep { from_ms: reading, to_ms: reading + delta };
        ctx.world.record(ctx.now_ms(), step);
    }
}
