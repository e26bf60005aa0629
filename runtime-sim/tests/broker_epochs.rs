//! Epochs between a master and its slave: a master that lost the tail it had streamed (a
//! power loss under ASYNC_FLUSH) begins a new epoch where its log now ends and writes other
//! records there; its slave, told the master's history when it connects again, cuts its
//! log back to where the two agree and then copies the new records, so the two logs end up
//! byte for byte equal again, and the slave keeps the master's history.

use keel_core::io::ConnId;
use keel_core::protocol::ResponseCode;
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::BrokerNode;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod support;
use support::replica_pair::*;
use support::*;

fn send_bodies(node: &mut BrokerNode, tag: &str, count: i32) {
    for i in 0..count {
        let body = format!("{tag} {i} {}", "q".repeat(200 + (i as usize * 53) % 900));
        assert_eq!(node.call(CLIENT, &send(i, "T", 0, tag, &body)).response_code(), ResponseCode::SUCCESS);
    }
}

/// The slave's link after its master went away: closed, then dialled again after the pause.
fn redial(slave: &mut BrokerNode, link: ConnId) -> ConnId {
    slave.close(link);
    slave.advance(slave.config().ha.reconnect_ms);
    take_replication_dial(slave).expect("the slave dials again").0
}

#[test]
fn a_slave_cuts_back_what_its_master_lost_and_converges_on_the_masters_new_records() {
    let master_config = config(FlushMode::Async { interval_ms: 60_000 });
    let (mut master, mut slave, link) = pair(master_config.clone());
    connect(&mut master, &mut slave, link);
    send_bodies(&mut master, "first", 12);
    exchange(&mut master, &mut slave, link);
    let copied = slave.broker.store().write_pos();
    assert_eq!(copied, master.broker.store().write_pos());

    // Power loss: the master's unsynced tail is gone. It restarts as master of epoch 2.
    let disk = master.kill();
    disk.with(|d| d.crash(&mut ChaCha8Rng::seed_from_u64(3)));
    let mut master = BrokerNode::boot(master_config, disk, start()).expect("recovers").0;
    master.open(CLIENT, addr("10.0.0.50:40000"));
    let recovered = master.broker.store().write_pos();
    assert!(recovered < copied, "the crash lost streamed records ({recovered:?} of {copied:?})");
    send_bodies(&mut master, "second", 30);
    assert!(master.broker.store().write_pos() > copied, "the master wrote past the slave's end");

    // The slave connects again: the master's history tells it to cut back to the recovered
    // end; it rebuilds its store, connects once more, and copies epoch 2.
    let again = redial(&mut slave, link);
    connect(&mut master, &mut slave, again);
    let cut = slave.slaves[&again].1.clone().expect("closed to cut back");
    assert!(cut.0.contains("cutting it back"), "{cut:?}");
    slave.run_all();
    assert_eq!(slave.broker.store().write_pos(), recovered, "cut back to where both agree");
    slave.advance(slave.config().ha.reconnect_ms);
    let last = take_replication_dial(&mut slave).expect("dials once rebuilt").0;
    master.close(FROM_SLAVE);
    master.slaves.remove(&FROM_SLAVE);
    connect(&mut master, &mut slave, last);
    assert_same_log(&master, &slave);
    assert_eq!(slave.broker.store().queue_offsets("T", 0), master.broker.store().queue_offsets("T", 0));
    let master_history = master.broker.epochs().clone();
    assert_eq!(master_history.current().epoch, 2);
    assert_eq!(master_history.current().start, recovered.0);
    assert_eq!(slave.broker.epochs(), &master_history, "the slave follows the master's epochs");
    // And it persisted them: a restart keeps them.
    let config = slave.config().clone();
    let slave = boot(config, slave.shutdown());
    assert_eq!(slave.broker.epochs(), &master_history);
    // The master recorded epoch 2 before writing in it: its next life is epoch 3, after it.
    let config = master.config().clone();
    let master = boot(config, master.kill());
    let entries: Vec<(u32, u64)> =
        master.broker.epochs().entries().iter().map(|e| (e.epoch, e.start)).collect();
    let end = master.broker.store().write_pos().0;
    assert_eq!(entries, [(0, 0), (1, 0), (2, recovered.0), (3, end)]);
}
