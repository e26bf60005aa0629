//! A slave beside the cluster's broker, for seeds with a [`ReplicaProfile`]: the broker is
//! a master (SYNC_MASTER or ASYNC_MASTER) serving replication on 10.0.0.2:10912, and a
//! slave on its own node and disk copies it through the production loop. Partitions
//! between the two come and go with the fault phase, on top of every fault the master
//! already suffers (its kills and power losses make it begin new epochs; the slave cuts
//! back). After healing, [`check_converged`] compares the two logs record for record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_core::broker::BrokerConfig;
use keel_core::ha::BrokerRole;
use keel_core::store::audit::survey;
use keel_runtime_tokio::clock::Clock;
use keel_runtime_tokio::disk::Disk;
use keel_runtime_tokio::server::BrokerServer;
use madsim::net::NetSim;
use madsim::task::NodeId;
use madsim::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::disk_plugin::{DiskSimulator, NodeDisk};
use crate::history::Event;
use crate::profile::{Recurring, ReplicaProfile};
use crate::replica_checks::replica_divergence;
use crate::sim_clock::{SharedSkew, SimClock};
use crate::world::World;

/// The slave's node address.
pub const SLAVE_IP: &str = "10.0.0.3";
/// The master's replication address.
pub const MASTER_HA: &str = "10.0.0.2:10912";

/// Make `config` (the broker's) a master of `replica`'s kind.
pub fn make_master(config: &mut BrokerConfig, replica: &ReplicaProfile) {
    config.role = if replica.sync_master { BrokerRole::SyncMaster } else { BrokerRole::AsyncMaster };
    config.ha_addr = MASTER_HA.parse().ok();
}

/// The slave's settings: the master's store settings, its own address, no mutation (the
/// gate's mutations are the master's).
#[must_use]
pub fn slave_config(master: &BrokerConfig) -> BrokerConfig {
    let addr: SocketAddr = format!("{SLAVE_IP}:10911").parse().expect("address");
    let mut config = BrokerConfig::new(addr);
    config.namesrv_addrs.clone_from(&master.namesrv_addrs);
    config.default_topic_queue_nums = master.default_topic_queue_nums;
    config.store = keel_core::store::StoreConfig { store_host: addr, mutation: None, ..master.store.clone() };
    config.role = BrokerRole::Slave;
    config.broker_id = 1;
    config.ha_master_addr = MASTER_HA.parse().ok();
    config
}

/// Start the slave of the master configured `master` on its own node and disk (its disk
/// faultless, seeded from `seed`); returns the node and the slave's settings.
pub fn start_slave(
    world: &World,
    master: &BrokerConfig,
    seed: u64,
    epoch: Instant,
) -> (NodeId, BrokerConfig) {
    let config = slave_config(master);
    let (slave_world, init_config) = (world.clone(), config.clone());
    let node = madsim::runtime::Handle::current()
        .create_node()
        .name("slave")
        .ip(SLAVE_IP.parse().expect("ip"))
        .init(move || slave_main(slave_world.clone(), init_config.clone(), epoch))
        .build();
    let never: crate::disk_plugin::LossHook = Arc::new(|_, _| {});
    let disks = madsim::plugin::simulator::<DiskSimulator>();
    disks.attach(node.id(), seed ^ 0x51a7e, crate::disk_plugin::DiskProfile::default(), never);
    (node.id(), config)
}

/// The slave node's main: the production broker loop on the simulator's disk and clock.
pub async fn slave_main(world: World, config: BrokerConfig, epoch: Instant) {
    let listener = TcpListener::bind("0.0.0.0:10911").await.expect("bind slave");
    let (completions_tx, completions) = mpsc::unbounded_channel();
    let disk: Arc<dyn Disk> = Arc::new(NodeDisk::start(completions_tx));
    let clock: Arc<dyn Clock> = Arc::new(SimClock::start(SharedSkew::default(), epoch));
    let at = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
    let server = match BrokerServer::from_parts(config, listener, disk, completions, clock) {
        Ok(server) => server,
        Err(error) => {
            world.record(at(), Event::Alarm { what: format!("slave recovery failed: {error:#}") });
            return;
        }
    };
    if let Err(error) = server.run(std::future::pending()).await {
        world.record(at(), Event::Alarm { what: format!("slave stopped: {error:#}") });
    }
}

/// Partitions between the master and the slave until `deadline`.
pub async fn partitions(
    world: World,
    r: Recurring,
    seed: u64,
    (master, slave): (NodeId, NodeId),
    epoch: Instant,
    deadline: Instant,
) {
    let net = NetSim::current();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0F5A);
    loop {
        let gap = -(r.mean_interval_ms as f64) * (1.0 - rng.gen::<f64>()).ln();
        let at = Instant::now() + Duration::from_millis(gap as u64 + 1);
        if at >= deadline {
            return;
        }
        tokio::time::sleep_until(at).await;
        let length = Duration::from_millis(rng.gen_range(1..=r.max_duration_ms.max(1)));
        let now_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(0);
        world.record(now_ms, Event::Fault { what: format!("partition master | slave for {length:?}") });
        world.bump("replica_partition");
        clog(&net, master, slave, true);
        tokio::time::sleep(length).await;
        clog(&net, master, slave, false);
    }
}

fn clog(net: &NetSim, a: NodeId, b: NodeId, on: bool) {
    if on {
        net.clog_link(a, b);
        net.clog_link(b, a);
    } else {
        net.unclog_link(a, b);
        net.unclog_link(b, a);
    }
}

/// Undo a partition the fault phase left.
pub fn heal(master: NodeId, slave: NodeId) {
    clog(&NetSim::current(), master, slave, false);
}

/// Wait up to `patience` for the slave's log to equal the master's from where it begins;
/// the violation if it never does.
pub async fn check_converged(
    (master, slave): (NodeId, NodeId),
    (master_config, slave_config): (&BrokerConfig, &BrokerConfig),
    patience: Duration,
) -> Option<String> {
    let disks = madsim::plugin::simulator::<DiskSimulator>();
    let until = Instant::now() + patience;
    loop {
        // The logs alone: queue files trimmed by retention file by file are no concern here.
        let read = |node, config: &BrokerConfig| {
            disks.disk(node).map(|disk| disk.with(|d| survey(&config.store, &*d).0))
        };
        let verdict = match (read(master, master_config), read(slave, slave_config)) {
            (Some(ours), Some(theirs)) => replica_divergence(&ours, &theirs),
            _ => Some("a disk is gone".to_owned()),
        };
        match verdict {
            None => return None,
            Some(problem) if Instant::now() >= until => return Some(format!("replica: {problem}")),
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
