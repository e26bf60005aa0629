//! A master and a slave broker side by side, with the replication link between them
//! carried by hand.

use keel_core::broker::BrokerConfig;
use keel_core::ha::BrokerRole;
use keel_core::io::{ConnId, ConnKind};
use keel_core::store::{paths, FlushMode};
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use keel_runtime_sim::sim_disk::SimDisk;
use keel_runtime_sim::store_node::read_file;

use super::{addr, boot};

/// The slave's connection as the master sees it.
pub const FROM_SLAVE: ConnId = ConnId(70);

pub fn master_ha() -> std::net::SocketAddr {
    addr("10.0.0.1:10912")
}

pub fn slave_config(master: Option<std::net::SocketAddr>) -> BrokerConfig {
    let mut config = super::config(FlushMode::Sync);
    config.advertised_addr = addr("10.0.0.2:10911");
    config.role = BrokerRole::Slave;
    config.broker_id = 1;
    config.ha_master_addr = master;
    config.slave_read_enable = true;
    config
}

/// Boot a master (of `master`'s settings) and a slave, and open the link the slave dialled. Returns the slave's id
/// for it.
pub fn pair(master: BrokerConfig) -> (BrokerNode, BrokerNode, ConnId) {
    let master = boot(master, SharedDisk::new(SimDisk::new()));
    let mut slave = boot(slave_config(Some(master_ha())), SharedDisk::new(SimDisk::new()));
    let (link, to) =
        take_replication_dial(&mut slave).expect("the slave dials its master once its store is ready");
    assert_eq!(to, master_ha());
    (master, slave, link)
}

pub fn take_replication_dial(node: &mut BrokerNode) -> Option<(ConnId, std::net::SocketAddr)> {
    let at = node.dials.iter().position(|(_, _, kind)| *kind == ConnKind::Replication)?;
    let (conn, addr, _) = node.dials.remove(at);
    Some((conn, addr))
}

/// Connect the slave's dialled link to the master, then carry bytes both ways until
/// neither side has more to say.
pub fn connect(master: &mut BrokerNode, slave: &mut BrokerNode, link: ConnId) {
    master.open_replication(FROM_SLAVE, addr("10.0.0.2:50001"));
    slave.open_replication(link, master_ha());
    exchange(master, slave, link);
}

pub fn exchange(master: &mut BrokerNode, slave: &mut BrokerNode, link: ConnId) {
    loop {
        let reports = std::mem::take(&mut slave.slaves.get_mut(&link).expect("dialled").0);
        if !reports.is_empty() {
            master.write(FROM_SLAVE, &reports);
            master.run_all();
        }
        let transfers = std::mem::take(&mut master.slaves.get_mut(&FROM_SLAVE).expect("connected").0);
        if !transfers.is_empty() {
            slave.write(link, &transfers);
            slave.run_all();
        }
        if reports.is_empty() && transfers.is_empty() {
            return;
        }
    }
}

pub fn assert_same_log(master: &BrokerNode, slave: &BrokerNode) {
    let end = master.broker.store().write_pos();
    assert_eq!(slave.broker.store().write_pos(), end);
    let segment = master.config().store.segment_size;
    let first = slave.broker.store().min_phys().0;
    for base in (first / segment..=end.0 / segment).map(|i| i * segment) {
        let path = paths::segment(base);
        let ours = master.disk.with(|disk| read_file(disk, path.as_str()));
        let theirs = slave.disk.with(|disk| read_file(disk, path.as_str()));
        assert!(theirs == ours, "segment {base} differs");
    }
}
