//! A broker as a master: a slave connected on the replication port gets its CommitLog
//! streamed while producers keep sending, heartbeats while idle, and is dropped when it
//! falls silent or claims more log than the master has.

use keel_core::ha::wire::encode_report;
use keel_core::ha::MasterLink;
use keel_core::io::ConnId;
use keel_core::store::{paths, FlushMode, PhysOffset};
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use keel_runtime_sim::sim_disk::SimDisk;
use keel_runtime_sim::store_node::{read_file, StoreNode};

mod support;
use support::*;

const SLAVE: ConnId = ConnId(70);

fn master() -> BrokerNode {
    boot(config(FlushMode::Sync), SharedDisk::new(SimDisk::new()))
}

fn send_some(node: &mut BrokerNode, from: i32, count: i32) {
    for i in from..from + count {
        let body = format!("message {i} {}", "x".repeat((i as usize * 131) % 3000));
        let reply = node.call(CLIENT, &send(i, "T", i % 4, "A", &body));
        assert_eq!(reply.code, 0, "send {i}: {:?}", reply.remark);
    }
}

/// Carry what the master sent its slave to the slave, and the slave's reports back, until
/// neither has more to say.
fn exchange(master: &mut BrokerNode, slave: &mut StoreNode, link: &mut MasterLink) {
    let config = master.config().ha;
    loop {
        let sent = std::mem::take(&mut master.slaves.get_mut(&SLAVE).expect("connected").0);
        if !sent.is_empty() {
            link.on_bytes(master.now.mono, &sent, &mut slave.store).unwrap();
            slave.run_all();
        }
        match link.poll_transmit(master.now.mono, &slave.store, &config) {
            Some(report) => master.write(SLAVE, &report),
            None if sent.is_empty() => return,
            None => {}
        }
    }
}

#[test]
fn a_slave_on_the_replication_port_receives_the_masters_log_byte_for_byte() {
    let mut master = master();
    send_some(&mut master, 0, 40);
    let mut slave = StoreNode::boot(master.config().store.clone(), SimDisk::new(), start()).unwrap().0;
    master.open_replication(SLAVE, addr("10.0.0.2:50001"));
    let (mut link, hello) = MasterLink::new(master.now.mono, &slave.store);
    master.write(SLAVE, &hello);
    exchange(&mut master, &mut slave, &mut link);
    // Sends go on while the slave streams: each settles into more transfers.
    for round in 0..5 {
        send_some(&mut master, 40 + round * 10, 10);
        exchange(&mut master, &mut slave, &mut link);
    }
    let end = master.broker.store().write_pos();
    let segment = master.config().store.segment_size;
    assert!(end.0 > segment, "the log spans segments");
    assert_eq!(slave.store.write_pos(), end);
    for base in (0..=end.0 / segment).map(|i| i * segment) {
        let path = paths::segment(base);
        let ours = master.disk.with(|disk| read_file(disk, path.as_str()));
        assert_eq!(slave.read_file(path.as_str()), ours, "segment {base}");
    }
    assert_eq!(master.slaves[&SLAVE].1, None, "the connection stays open");
}

#[test]
fn an_idle_slave_gets_heartbeats_and_a_silent_one_is_dropped() {
    let mut master = master();
    master.open_replication(SLAVE, addr("10.0.0.2:50001"));
    let mut hello = Vec::new();
    encode_report(PhysOffset(0), &mut hello);
    master.write(SLAVE, &hello);
    assert!(master.slaves[&SLAVE].0.is_empty(), "an empty log: nothing to send yet");
    let ha = master.config().ha;
    master.advance(ha.heartbeat_interval_ms);
    assert_eq!(master.slaves[&SLAVE].0.len(), 12, "one empty transfer: the heartbeat");
    master.advance(ha.housekeeping_ms);
    let closed = master.slaves[&SLAVE].1.clone().expect("dropped after the housekeeping interval");
    assert!(closed.0.contains("silent"), "{closed:?}");
}

#[test]
fn a_slave_claiming_more_log_than_the_master_has_is_dropped() {
    let mut master = master();
    send_some(&mut master, 0, 3);
    master.open_replication(SLAVE, addr("10.0.0.2:50001"));
    let mut hello = Vec::new();
    encode_report(master.broker.store().write_pos() + 1, &mut hello);
    master.write(SLAVE, &hello);
    let closed = master.slaves[&SLAVE].1.clone().expect("dropped");
    assert!(closed.0.contains("past this master"), "{closed:?}");
    assert!(master.slaves[&SLAVE].0.is_empty());
}

#[test]
fn replication_connections_beyond_the_limit_are_refused() {
    let mut master = master();
    for i in 0..17u64 {
        master.open_replication(ConnId(100 + i), addr("10.0.0.2:50001"));
    }
    let refused: Vec<ConnId> =
        master.slaves.iter().filter(|(_, (_, closed))| closed.is_some()).map(|(conn, _)| *conn).collect();
    assert_eq!(refused, [ConnId(116)], "the 17th is refused, the 16 before it stay");
}
