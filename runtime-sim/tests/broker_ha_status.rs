//! GET_BROKER_HA_STATUS (`mqadmin haStatus`): a master lists each streaming slave with what
//! it acknowledged, how far behind it is and whether that is within `haMaxGapNotInSync`;
//! a slave shows its link to the master.

use keel_core::protocol::body::HaRuntimeInfo;
use keel_core::protocol::json;
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::BrokerNode;

mod support;
use support::replica_pair::*;
use support::*;

fn ha_status(node: &mut BrokerNode, opaque: i32) -> HaRuntimeInfo {
    let request = RemotingCommand::request(RequestCode::GET_BROKER_HA_STATUS, opaque, Default::default());
    let reply = node.call(CLIENT, &request);
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    json::from_slice(&reply.body).unwrap()
}

fn send_some(node: &mut BrokerNode, from: i32, count: i32) {
    for i in from..from + count {
        let reply = node.call(CLIENT, &send(i, "T", 0, "A", &format!("message {i} {}", "z".repeat(300))));
        assert_eq!(reply.code, 0, "send {i}: {:?}", reply.remark);
    }
}

#[test]
fn a_master_reports_each_slave_with_its_lag_and_a_slave_its_link() {
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    let alone = ha_status(&mut master, 1);
    assert!(alone.master);
    assert!(alone.ha_connection_info.is_empty());
    assert_eq!(alone.in_sync_slave_nums, 0);

    connect(&mut master, &mut slave, link);
    send_some(&mut master, 0, 20);
    exchange(&mut master, &mut slave, link);
    let end = master.broker.store().write_pos().0 as i64;
    let caught_up = ha_status(&mut master, 2);
    assert_eq!(caught_up.master_commit_log_max_offset, end);
    assert_eq!(caught_up.in_sync_slave_nums, 1);
    let [one] = caught_up.ha_connection_info.as_slice() else { panic!("{caught_up:?}") };
    assert_eq!(one.addr, "10.0.0.2:50001");
    assert_eq!((one.slave_ack_offset, one.diff, one.in_sync), (end, 0, true));
    assert_eq!(one.transfer_from_where, 0, "a fresh slave of a one-segment log streams from 0");

    // The bytes streamed show as the rate of the second they went in, then fade.
    master.advance(1_000);
    let rate = ha_status(&mut master, 3).ha_connection_info[0].transferred_byte_in_second;
    assert!(rate >= end, "streamed {end} bytes, rate {rate}");
    master.advance(2_000);
    assert_eq!(ha_status(&mut master, 4).ha_connection_info[0].transferred_byte_in_second, 0);

    // Sends the slave has not yet been given: the gap is the lag.
    let before = master.broker.store().write_pos().0 as i64;
    send_some(&mut master, 20, 5);
    let behind = ha_status(&mut master, 5);
    let one = &behind.ha_connection_info[0];
    assert_eq!(one.slave_ack_offset, end);
    assert_eq!(one.diff, master.broker.store().write_pos().0 as i64 - end);
    assert!(one.diff > 0 && before == end);
    assert!(one.in_sync, "within haMaxGapNotInSync");

    let from_slave = ha_status(&mut slave, 6);
    assert!(!from_slave.master);
    assert!(from_slave.ha_connection_info.is_empty());
    let client = &from_slave.ha_client_runtime_info;
    assert_eq!(client.master_addr, master_ha().to_string());
    assert!(client.activated);
    assert_eq!(client.max_offset, end);
    assert!(client.last_read_timestamp > 0 && client.last_write_timestamp > 0, "{client:?}");

    // A lost link shows as not activated.
    slave.close(link);
    assert!(!ha_status(&mut slave, 7).ha_client_runtime_info.activated);
}

#[test]
fn both_brokers_report_the_same_epochs_with_ends_and_their_log_end() {
    use keel_core::protocol::body::EpochEntryCache;
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    connect(&mut master, &mut slave, link);
    send_some(&mut master, 0, 5);
    exchange(&mut master, &mut slave, link);
    let ask = |node: &mut BrokerNode| -> EpochEntryCache {
        let request = RemotingCommand::request(RequestCode::GET_BROKER_EPOCH_CACHE, 9, Default::default());
        let reply = node.call(CLIENT, &request);
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
        json::from_slice(&reply.body).unwrap()
    };
    let (ours, theirs) = (ask(&mut master), ask(&mut slave));
    let ranges = |cache: &EpochEntryCache| {
        cache.epoch_list.iter().map(|e| (e.epoch, e.start_offset, e.end_offset)).collect::<Vec<_>>()
    };
    let history = master.broker.epochs().entries().to_vec();
    assert_eq!(ranges(&ours).len(), history.len());
    assert_eq!(
        ranges(&ours).last().map(|r| (r.0, r.2)),
        Some((i64::from(history.last().unwrap().epoch), i64::MAX))
    );
    for pair in ranges(&ours).windows(2) {
        assert_eq!(pair[0].2, pair[1].1, "each epoch ends where the next began");
    }
    assert_eq!(ranges(&theirs), ranges(&ours), "the slave follows the master's epochs");
    let end = master.broker.store().write_pos().0 as i64;
    assert_eq!((ours.max_offset, theirs.max_offset), (end, end));
    assert_eq!((ours.broker_id, theirs.broker_id), (0, 1));
}
