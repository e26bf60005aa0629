//! A broker as a master: a slave connected on the replication port gets its CommitLog
//! streamed (a fresh one from the newest segment) while producers keep sending, heartbeats
//! while idle, and is dropped when it falls silent or claims more log than the master has.

use keel_core::ha::epoch::EpochHistory;
use keel_core::ha::wire::encode_report;
use keel_core::ha::wire::{MasterFrame, TransferDecoder, MAX_TRANSFER_LEN};
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
        // The master's epochs are written before it streams anything.
        master.run_all();
        let sent = std::mem::take(&mut master.slaves.get_mut(&SLAVE).expect("connected").0);
        if !sent.is_empty() {
            link.on_bytes(master.now.mono, &sent, &mut slave.store, &EpochHistory::default()).unwrap();
            slave.run_all();
        }
        match link.poll_transmit(master.now.mono, &slave.store, &config, false) {
            Some(report) => master.write(SLAVE, &report),
            None if sent.is_empty() => return,
            None => {}
        }
    }
}

#[test]
fn a_fresh_slave_on_the_replication_port_receives_the_masters_log_from_its_newest_segment() {
    let mut master = master();
    send_some(&mut master, 0, 40);
    let mut slave = StoreNode::boot(master.config().store.clone(), SimDisk::new(), start()).unwrap().0;
    let segment = master.config().store.segment_size;
    let newest = master.broker.store().write_pos().0 / segment * segment;
    assert!(newest > 0, "the master's log spans segments before the slave connects");
    master.open_replication(SLAVE, addr("10.0.0.2:50001"));
    let (mut link, hello) = MasterLink::new(master.now.mono, &slave.store, None);
    master.write(SLAVE, &hello);
    exchange(&mut master, &mut slave, &mut link);
    // Sends go on while the slave streams: each settles into more transfers.
    for round in 0..5 {
        send_some(&mut master, 40 + round * 10, 10);
        exchange(&mut master, &mut slave, &mut link);
    }
    let end = master.broker.store().write_pos();
    assert!(end.0 > newest + segment, "the slave's copy spans segments");
    assert_eq!(slave.store.write_pos(), end);
    // A slave with nothing is streamed from the master's newest segment, as RocketMQ's is.
    assert_eq!(slave.store.min_phys().0, newest);
    assert!(slave.read_file(paths::segment(0).as_str()).is_empty(), "nothing below it");
    for base in (newest / segment..=end.0 / segment).map(|i| i * segment) {
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
    master.run_all();
    let history = std::mem::take(&mut master.slaves.get_mut(&SLAVE).unwrap().0);
    let mut expected = EpochHistory::default();
    expected.begin(PhysOffset(0));
    assert_eq!(history_of(&history), Some(expected), "then its epochs: epoch 1 from its empty log");
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
    master.run_all();
    let closed = master.slaves[&SLAVE].1.clone().expect("dropped");
    assert!(closed.0.contains("past this master"), "{closed:?}");
    // It was sent the master's epochs first, to cut its log back by.
    assert!(history_of(&master.slaves[&SLAVE].0).is_some(), "the history before the close");
}

/// The epoch history a stream from the master begins with, if it does.
fn history_of(stream: &[u8]) -> Option<EpochHistory> {
    let mut decoder = TransferDecoder::new(MAX_TRANSFER_LEN);
    decoder.push(stream);
    match decoder.next_frame()? {
        Ok(MasterFrame::Epochs(history, _)) => Some(history),
        _ => None,
    }
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
