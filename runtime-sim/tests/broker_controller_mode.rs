//! A broker in controller mode, its controller played by the test: it claims its id,
//! registers, and becomes master when the controller names it. As a SYNC_MASTER with
//! `allAckInSyncStateSet` a send is answered once every member of the SyncStateSet holds
//! it (FLUSH_SLAVE_TIMEOUT otherwise), and with `minInSyncReplicas` above the set's size
//! sends are refused and nothing is stored.

use keel_core::broker::role::epoch_floor;
use keel_core::broker::BrokerConfig;
use keel_core::ha::wire::{encode_identity, encode_report};
use keel_core::ha::BrokerRole;
use keel_core::io::{ConnId, ConnKind};
use keel_core::protocol::body::SyncStateSet;
use keel_core::protocol::headers::{CommandHeader, MasterInfoHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use keel_core::store::{FlushMode, PhysOffset};
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use keel_runtime_sim::sim_disk::SimDisk;

mod support;
use support::*;

const CONTROLLER: &str = "10.0.0.9:9878";

fn controller_mode(min_in_sync: u32) -> BrokerConfig {
    let mut config = config(FlushMode::Sync);
    config.role = BrokerRole::SyncMaster;
    config.broker_id = 1;
    config.controller_addrs = vec![addr(CONTROLLER)];
    config.ha.all_ack_in_sync_state_set = true;
    config.ha.min_in_sync_replicas = min_in_sync;
    config
}

/// The broker's requests to the controller so far.
fn to_controller(node: &mut BrokerNode, conn: ConnId) -> Vec<RemotingCommand> {
    std::mem::take(&mut node.peers.get_mut(&conn).unwrap().inbox)
}

fn master_info(members: &[i64], sync_state_set_epoch: i32) -> (MasterInfoHeader, Vec<u8>) {
    let header = MasterInfoHeader {
        master_broker_id: Some(1),
        master_address: Some("10.0.0.1:10911".into()),
        master_epoch: Some(1),
        sync_state_set_epoch: Some(sync_state_set_epoch),
        master_ha_address: Some("10.0.0.1:10912".into()),
    };
    let body = SyncStateSet { sync_state_set: members.iter().copied().collect(), sync_state_set_epoch };
    (header, json::to_vec(&body, KeyStyle::Fastjson).unwrap())
}

/// Boot the broker and play the controller until it is master with SyncStateSet `members`.
fn elected(min_in_sync: u32, members: &[i64]) -> (BrokerNode, ConnId) {
    let mut node = boot(controller_mode(min_in_sync), SharedDisk::new(SimDisk::new()));
    assert_eq!(
        node.call(CLIENT, &send(1, "T", 0, "A", "too early")).response_code(),
        ResponseCode::SERVICE_NOT_AVAILABLE,
        "a controller-mode broker starts as a slave"
    );
    node.advance(0);
    let at =
        node.dials.iter().position(|(_, to, kind)| *to == addr(CONTROLLER) && *kind == ConnKind::Remoting);
    let (conn, _, _) = node.dials.remove(at.expect("dials its controller"));
    node.open(conn, addr(CONTROLLER));
    let apply = to_controller(&mut node, conn);
    assert_eq!(
        apply.iter().map(|c| c.request_code()).collect::<Vec<_>>(),
        vec![RequestCode::CONTROLLER_APPLY_BROKER_ID]
    );
    assert_eq!(apply[0].ext_fields.get("appliedBrokerId"), Some("1"));
    node.send(conn, &RemotingCommand::response_to(&apply[0], ResponseCode::SUCCESS, None));
    node.run_all();
    let register = to_controller(&mut node, conn);
    assert_eq!(register[0].request_code(), RequestCode::CONTROLLER_REGISTER_BROKER);
    assert_eq!(register[0].ext_fields.get("haAddress"), Some("10.0.0.1:10912"));
    let (header, body) = master_info(members, 1);
    let mut reply = RemotingCommand::response_to(&register[0], ResponseCode::SUCCESS, None).with_body(body);
    header.encode(&mut reply.ext_fields);
    node.send(conn, &reply);
    node.run_all();
    assert_eq!(node.broker.epochs().current().epoch, epoch_floor(1), "master in the controller's epoch");
    (node, conn)
}

/// A slave with id `id` connects on `conn` and reports holding `end`.
fn slave_reports(node: &mut BrokerNode, conn: ConnId, id: Option<i64>, end: PhysOffset) {
    let mut bytes = Vec::new();
    if let Some(id) = id {
        node.open_replication(conn, addr(&format!("10.0.0.{}:5000{id}", 1 + id)));
        encode_identity(id, &mut bytes);
    }
    encode_report(end, &mut bytes);
    node.write(conn, &bytes);
    node.run_all();
}

#[test]
fn with_all_ack_a_send_waits_for_every_member_of_the_sync_state_set() {
    let (mut node, _) = elected(1, &[1, 2, 3]);
    let (two, three) = (ConnId(72), ConnId(73));
    slave_reports(&mut node, two, Some(2), PhysOffset(0));
    slave_reports(&mut node, three, Some(3), PhysOffset(0));
    let request = send(5, "T", 0, "A", "everyone");
    node.send(CLIENT, &request);
    node.run_all();
    let end = node.broker.store().write_pos();
    assert!(node.take_reply(CLIENT, 5).is_none(), "held for the set");
    slave_reports(&mut node, two, None, end);
    assert!(node.take_reply(CLIENT, 5).is_none(), "slave 3 of the set lacks it");
    slave_reports(&mut node, three, None, end);
    assert_eq!(node.take_reply(CLIENT, 5).map(|r| r.response_code()), Some(ResponseCode::SUCCESS));

    // Without member 3's report, the send times out: stored, not acknowledged by the set.
    node.send(CLIENT, &send(6, "T", 0, "A", "not everyone"));
    node.run_all();
    let end = node.broker.store().write_pos();
    slave_reports(&mut node, two, None, end);
    let wait = node.config().ha.sync_flush_timeout_ms;
    node.advance(wait);
    assert_eq!(
        node.take_reply(CLIENT, 6).map(|r| r.response_code()),
        Some(ResponseCode::FLUSH_SLAVE_TIMEOUT)
    );
}

#[test]
fn with_fewer_in_sync_replicas_than_the_minimum_sends_are_refused_and_nothing_is_stored() {
    let (mut node, controller) = elected(2, &[1]);
    let before = node.broker.store().write_pos();
    let reply = node.call(CLIENT, &send(7, "T", 0, "A", "alone"));
    assert_eq!(reply.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(reply.remark.unwrap_or_default().contains("in-sync replicas not enough"));
    assert_eq!(node.broker.store().write_pos(), before);
    // The controller adds a slave to the set (a notice): sends are taken again.
    let two = ConnId(72);
    slave_reports(&mut node, two, Some(2), before);
    let (header, body) = master_info(&[1, 2], 2);
    let notice = RemotingCommand::request(RequestCode::NOTIFY_BROKER_ROLE_CHANGED, 0, header.to_ext_fields())
        .with_body(body);
    node.send(controller, &notice);
    node.run_all();
    node.send(CLIENT, &send(8, "T", 0, "A", "with a friend"));
    node.run_all();
    let end = node.broker.store().write_pos();
    slave_reports(&mut node, two, None, end);
    assert_eq!(node.take_reply(CLIENT, 8).map(|r| r.response_code()), Some(ResponseCode::SUCCESS));
}

#[test]
fn consumers_read_only_what_every_member_of_the_sync_state_set_holds() {
    let (mut node, _) = elected(1, &[1, 2]);
    let two = ConnId(72);
    slave_reports(&mut node, two, Some(2), PhysOffset(0));
    node.send(CLIENT, &send(5, "T", 0, "A", "held"));
    node.run_all();
    let end = node.broker.store().write_pos();
    // Stored on the master, not yet on member 2: no consumer sees it (a failover now would
    // elect a master without it, which would write another message at its offset).
    let early = node.call(CLIENT, &pull(6, "T", 0, 0, "*", false));
    assert!(messages(&early).is_empty(), "{:?}", early.response_code());
    slave_reports(&mut node, two, None, end);
    let later = node.call(CLIENT, &pull(7, "T", 0, 0, "*", false));
    assert_eq!(messages(&later).iter().map(|m| m.2.as_str()).collect::<Vec<_>>(), vec!["held"]);
}

#[test]
fn a_master_its_controller_stops_answering_takes_no_writes_until_it_answers_again() {
    let (mut node, controller) = elected(1, &[1]);
    assert_eq!(node.call(CLIENT, &send(5, "T", 0, "A", "fine")).response_code(), ResponseCode::SUCCESS);
    // Heartbeats go out every second; nobody answers them for the lease (8 s).
    node.advance(keel_core::broker::controller_link::LEASE_MS + 1_000);
    let refused = node.call(CLIENT, &send(6, "T", 0, "A", "deposed?"));
    assert_eq!(refused.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE);
    assert!(refused.remark.unwrap_or_default().contains("not heard from its controller"));
    // An answer that names no master (a follower's) vouches for nothing.
    let heartbeat = next_heartbeat(&mut node, controller);
    node.send(controller, &RemotingCommand::response_to(&heartbeat, ResponseCode::SUCCESS, None));
    node.run_all();
    let still = node.call(CLIENT, &send(7, "T", 0, "A", "still?"));
    assert_eq!(still.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE);
    // The controller answers a heartbeat naming this broker master: writes resume.
    let heartbeat = next_heartbeat(&mut node, controller);
    let (header, _) = master_info(&[1], 1);
    let answer = RemotingCommand::response_to(&heartbeat, ResponseCode::SUCCESS, None);
    node.send(controller, &with_fields(answer, &header));
    node.run_all();
    assert_eq!(node.call(CLIENT, &send(8, "T", 0, "A", "back")).response_code(), ResponseCode::SUCCESS);
}

#[test]
fn a_master_told_of_a_newer_epoch_without_it_steps_down_and_a_stale_answer_is_ignored() {
    let (mut node, controller) = elected(1, &[1]);
    // An answer from before this broker's epoch (epoch 0, naming nobody) changes nothing.
    let (mut header, _) = master_info(&[1], 1);
    header.master_broker_id = None;
    header.master_epoch = Some(0);
    let request = next_heartbeat(&mut node, controller);
    let answer = RemotingCommand::response_to(&request, ResponseCode::SUCCESS, None);
    node.send(controller, &with_fields(answer, &header));
    node.run_all();
    assert_eq!(
        node.call(CLIENT, &send(5, "T", 0, "A", "still master")).response_code(),
        ResponseCode::SUCCESS
    );
    // Epoch 2 has no master (this one was counted dead while cut off): it steps down.
    header.master_epoch = Some(2);
    let request = next_heartbeat(&mut node, controller);
    let answer = RemotingCommand::response_to(&request, ResponseCode::SUCCESS, None);
    node.send(controller, &with_fields(answer, &header));
    node.run_all();
    let refused = node.call(CLIENT, &send(6, "T", 0, "A", "deposed"));
    assert_eq!(refused.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE, "{:?}", refused.remark);
}

/// A heartbeat interval later: the newest heartbeat the broker sent its controller.
fn next_heartbeat(node: &mut BrokerNode, controller: ConnId) -> RemotingCommand {
    node.advance(keel_core::broker::controller_link::HEARTBEAT_INTERVAL_MS);
    to_controller(node, controller)
        .into_iter()
        .rev()
        .find(|c| c.request_code() == RequestCode::BROKER_HEARTBEAT)
        .expect("heartbeats went out")
}

fn with_fields(mut command: RemotingCommand, header: &MasterInfoHeader) -> RemotingCommand {
    header.encode(&mut command.ext_fields);
    command
}

#[test]
fn a_delayed_delivery_becomes_progress_only_once_every_member_holds_its_copy() {
    let (mut node, _) = elected(1, &[1, 2]);
    let two = ConnId(72);
    slave_reports(&mut node, two, Some(2), PhysOffset(0));
    node.send(CLIENT, &timed(5, "Later", "DELAY", "1", "in a second"));
    node.run_all();
    let stored = node.broker.store().write_pos();
    slave_reports(&mut node, two, None, stored);
    assert_eq!(node.take_reply(CLIENT, 5).map(|r| r.response_code()), Some(ResponseCode::SUCCESS));
    let offsets = |node: &mut BrokerNode| {
        let request = RemotingCommand::request(RequestCode::GET_ALL_DELAY_OFFSET, 50, Default::default());
        node.call(CLIENT, &request).body
    };
    let before = offsets(&mut node);
    // The level delivers its copy; member 2 does not hold it yet. A slave copying this
    // progress now, then elected, would count the copy delivered though it never got it.
    node.advance(2_000);
    let delivered = node.broker.store().write_pos();
    assert!(delivered > stored, "the copy is stored");
    assert_eq!(offsets(&mut node), before, "no progress while a member lacks the copy");
    slave_reports(&mut node, two, None, delivered);
    assert_ne!(offsets(&mut node), before, "progress once every member holds it");
}

/// The SyncStateSets the broker asked its controller for so far.
fn alter_requests(node: &mut BrokerNode, controller: ConnId) -> Vec<Vec<i64>> {
    to_controller(node, controller)
        .into_iter()
        .filter(|c| c.request_code() == RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET)
        .map(|c| {
            let body: SyncStateSet = json::from_slice(&c.body).unwrap();
            body.sync_state_set.into_iter().collect()
        })
        .collect()
}

#[test]
fn a_caught_up_slave_joins_the_sync_state_set_only_once_it_holds_all_the_master_confirmed() {
    use keel_core::broker::controller_link::SYNC_STATE_CHECK_MS;
    let (mut node, controller) = elected(1, &[1]);
    let two = ConnId(72);
    // Slave 2 holds the whole (empty) log: caught up.
    slave_reports(&mut node, two, Some(2), PhysOffset(0));
    slave_reports(&mut node, two, None, PhysOffset(0));
    // The set is this master alone: a send is acknowledged (and served) with only its copy.
    assert_eq!(node.call(CLIENT, &send(5, "T", 0, "A", "alone")).response_code(), ResponseCode::SUCCESS);
    let alone = node.broker.store().write_pos();
    // Slave 2 is in sync by time but lacks that message: made a member now, then elected,
    // it would lose an acknowledged message and write another at its offset. It is not
    // proposed yet; it counts as a member meanwhile, so the next send waits for it.
    node.advance(SYNC_STATE_CHECK_MS);
    assert_eq!(alter_requests(&mut node, controller), Vec::<Vec<i64>>::new());
    node.send(CLIENT, &send(6, "T", 0, "A", "joint"));
    node.run_all();
    assert!(node.take_reply(CLIENT, 6).is_none(), "held for the joining slave");
    let pulled = node.call(CLIENT, &pull(7, "T", 0, 0, "*", false));
    assert_eq!(messages(&pulled).iter().map(|m| m.2.as_str()).collect::<Vec<_>>(), vec!["alone"]);
    // Once it holds everything the master confirmed, it is proposed.
    let end = node.broker.store().write_pos();
    assert!(end > alone);
    slave_reports(&mut node, two, None, end);
    assert_eq!(node.take_reply(CLIENT, 6).map(|r| r.response_code()), Some(ResponseCode::SUCCESS));
    node.advance(SYNC_STATE_CHECK_MS);
    assert_eq!(alter_requests(&mut node, controller), vec![vec![1, 2]]);
}
