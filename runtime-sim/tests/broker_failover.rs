//! Roles changed at run time, as a controller decides: a slave made master takes writes in
//! the controller's epoch once it is recorded, continuing its copied queues; the old master,
//! made its slave, cuts back the tail the new master never had and copies the new master's
//! records, so the two logs end byte for byte equal under the new master's history.

use keel_core::broker::role::{epoch_floor, RoleChange};
use keel_core::io::ConnId;
use keel_core::protocol::ResponseCode;
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::BrokerNode;

mod support;
use support::replica_pair::*;
use support::*;

fn send_bodies(node: &mut BrokerNode, tag: &str, from: i32, count: i32) -> Vec<i64> {
    (from..from + count)
        .map(|i| {
            let body = format!("{tag} {i} {}", "f".repeat(150 + (i as usize * 71) % 800));
            let reply = node.call(CLIENT, &send(i, "T", 0, tag, &body));
            assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
            reply.ext_fields.get("queueOffset").unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn a_promoted_slave_takes_writes_and_the_demoted_master_converges_on_its_log() {
    let (mut old, mut new, link) = pair(config(FlushMode::Sync));
    connect(&mut old, &mut new, link);
    send_bodies(&mut old, "before", 0, 20);
    exchange(&mut old, &mut new, link);
    let shared_end = new.broker.store().write_pos();
    assert_eq!(shared_end, old.broker.store().write_pos());
    // The old master goes on writing, cut off from its slave: a tail the slave never gets.
    send_bodies(&mut old, "lost", 20, 5);
    assert!(old.broker.store().write_pos() > shared_end);

    // The controller elects the slave in master epoch 2.
    new.broker.change_role(new.now, RoleChange::Master { master_epoch: 2 });
    new.run_all();
    let epoch = new.broker.epochs().current();
    assert_eq!((epoch.epoch, epoch.start), (epoch_floor(2), shared_end.0));
    let offsets = send_bodies(&mut new, "after", 100, 10);
    assert_eq!(offsets.first(), Some(&20), "the new master continues the copied queue");
    // Asked again, nothing changes.
    new.broker.change_role(new.now, RoleChange::Master { master_epoch: 2 });
    assert_eq!(new.broker.epochs().current(), epoch);

    // The old master is told to follow the new one, on the new master's replication port.
    let new_ha = addr("10.0.0.2:10912");
    old.broker.change_role(old.now, RoleChange::Slave { master_ha: Some(new_ha), master: None });
    old.run_all();
    let reply = old.call(CLIENT, &send(900, "T", 0, "late", "refused"));
    assert_eq!(reply.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE, "a slave refuses sends");
    let (dial, to) = take_replication_dial(&mut old).expect("the demoted master dials the new one");
    assert_eq!(to, new_ha);
    connect(&mut new, &mut old, dial);
    let closed = old.slaves[&dial].1.clone().expect("closed to cut back");
    assert!(closed.0.contains("cutting it back"), "{closed:?}");
    old.run_all();
    assert_eq!(old.broker.store().write_pos(), shared_end, "the lost tail is cut");
    old.advance(old.config().ha.reconnect_ms);
    let again = take_replication_dial(&mut old).expect("dials again once cut back").0;
    new.close(FROM_SLAVE);
    new.slaves.remove(&FROM_SLAVE);
    connect(&mut new, &mut old, again);
    assert_same_log(&new, &old);
    assert_eq!(old.broker.store().queue_offsets("T", 0), new.broker.store().queue_offsets("T", 0));
    assert_eq!(old.broker.epochs(), new.broker.epochs(), "it follows the new master's epochs");
}

#[test]
fn a_master_that_begins_an_epoch_ends_its_slaves_sessions_and_a_slave_serves_no_replication() {
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    connect(&mut master, &mut slave, link);
    send_bodies(&mut master, "first", 0, 5);
    exchange(&mut master, &mut slave, link);
    assert_eq!(master.slaves[&FROM_SLAVE].1, None, "streaming");
    // Elected again in a newer master epoch (a controller's): the slave was sent the old
    // history, and would take the new epoch's records under it.
    master.broker.change_role(master.now, RoleChange::Master { master_epoch: 5 });
    master.run_all();
    let closed = master.slaves[&FROM_SLAVE].1.clone().expect("the session ends");
    assert!(closed.0.contains("began epoch"), "{closed:?}");
    // A slave dialled as if it were a master (a role change not yet heard of) refuses.
    slave.open_replication(ConnId(77), addr("10.0.0.3:50002"));
    slave.run_all();
    let refused = slave.slaves[&ConnId(77)].1.clone().expect("refused");
    assert!(refused.0.contains("not a master"), "{refused:?}");
}
