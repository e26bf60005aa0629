//! A SYNC_MASTER acknowledges a send only once a slave holds it: SEND_OK after the slave's
//! report, FLUSH_SLAVE_TIMEOUT when none reports it within `syncFlushTimeout`, and
//! SLAVE_NOT_AVAILABLE at once when no slave streams or the one that does is further behind
//! than `haMaxGapNotInSync`. Each is stored either way; `WAIT=false` waits for nothing.

use keel_core::broker::BrokerConfig;
use keel_core::ha::BrokerRole;
use keel_core::protocol::client_requests::{send_message, OutgoingMessage};
use keel_core::protocol::headers::{CommandHeader, SendMessageResponseHeader};
use keel_core::protocol::{RemotingCommand, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use keel_runtime_sim::sim_disk::SimDisk;

mod support;
use support::replica_pair::*;
use support::*;

fn sync_master() -> BrokerConfig {
    let mut config = config(FlushMode::Sync);
    config.role = BrokerRole::SyncMaster;
    config
}

/// Send without waiting for the reply: the test decides when the slave reports.
fn send_only(node: &mut BrokerNode, opaque: i32, body: &str) -> RemotingCommand {
    let request = send(opaque, "T", 0, "A", body);
    node.send(CLIENT, &request);
    node.run_all();
    request
}

fn reply_code(node: &mut BrokerNode, request: &RemotingCommand) -> Option<ResponseCode> {
    node.take_reply(CLIENT, request.opaque).map(|reply| reply.response_code())
}

#[test]
fn a_send_is_acknowledged_once_the_slave_reports_holding_it() {
    let (mut master, mut slave, link) = pair(sync_master());
    connect(&mut master, &mut slave, link);
    let first = send_only(&mut master, 1, "one");
    let second = send_only(&mut master, 2, "two");
    assert_eq!(reply_code(&mut master, &first), None, "held until the slave has it");
    // Carry the transfers, but not yet the slave's report.
    let transfers = std::mem::take(&mut master.slaves.get_mut(&FROM_SLAVE).unwrap().0);
    slave.write(link, &transfers);
    slave.run_all();
    assert_eq!(reply_code(&mut master, &first), None, "the slave's report has not arrived");
    exchange(&mut master, &mut slave, link);
    assert_eq!(reply_code(&mut master, &first), Some(ResponseCode::SUCCESS));
    assert_eq!(reply_code(&mut master, &second), Some(ResponseCode::SUCCESS));
    assert_same_log(&master, &slave);
}

#[test]
fn without_the_slaves_report_in_time_a_send_is_answered_flush_slave_timeout() {
    let (mut master, mut slave, link) = pair(sync_master());
    connect(&mut master, &mut slave, link);
    let request = send_only(&mut master, 1, "lonely");
    let wait = master.config().ha.sync_flush_timeout_ms;
    master.advance(wait - 1);
    assert_eq!(reply_code(&mut master, &request), None, "waits the whole timeout");
    master.advance(1);
    let reply = master.take_reply(CLIENT, 1).expect("answered at the timeout");
    assert_eq!(reply.response_code(), ResponseCode::FLUSH_SLAVE_TIMEOUT);
    // Stored all the same: the reply carries where, as RocketMQ's does.
    let header = SendMessageResponseHeader::decode(&reply.ext_fields).unwrap();
    assert_eq!((header.queue_id, header.queue_offset), (0, 0));
    assert_eq!(master.broker.store().queue_offsets("T", 0).map(|q| q.1 .0), Some(1));
    // The slave catching up later answers the next send at once.
    exchange(&mut master, &mut slave, link);
    let next = send_only(&mut master, 2, "next");
    exchange(&mut master, &mut slave, link);
    assert_eq!(reply_code(&mut master, &next), Some(ResponseCode::SUCCESS));
}

#[test]
fn with_no_slave_or_one_too_far_behind_a_send_is_answered_slave_not_available() {
    let mut master = boot(sync_master(), SharedDisk::new(SimDisk::new()));
    let reply = master.call(CLIENT, &send(1, "T", 0, "A", "alone"));
    assert_eq!(reply.response_code(), ResponseCode::SLAVE_NOT_AVAILABLE);
    assert!(SendMessageResponseHeader::decode(&reply.ext_fields).is_ok(), "stored: the header says where");

    let mut config = sync_master();
    config.ha.max_gap_not_in_sync = 2_000;
    let (mut master, mut slave, link) = pair(config);
    connect(&mut master, &mut slave, link);
    // The slave falls silent while the master takes more than the gap: sends within it
    // wait for the slave and time out; those past it are refused a slave at once, and
    // answered in order after the ones before them.
    let sends: Vec<RemotingCommand> =
        (0..10).map(|i| send_only(&mut master, 10 + i, &"z".repeat(400))).collect();
    master.advance(master.config().ha.sync_flush_timeout_ms);
    let codes: Vec<ResponseCode> =
        sends.iter().map(|r| reply_code(&mut master, r).expect("answered")).collect();
    let first_refused =
        codes.iter().position(|c| *c == ResponseCode::SLAVE_NOT_AVAILABLE).expect("some refused");
    assert!(first_refused > 0, "{codes:?}");
    assert!(codes[..first_refused].iter().all(|c| *c == ResponseCode::FLUSH_SLAVE_TIMEOUT), "{codes:?}");
    assert!(codes[first_refused..].iter().all(|c| *c == ResponseCode::SLAVE_NOT_AVAILABLE), "{codes:?}");
    drop((slave, link));
}

#[test]
fn a_producer_that_does_not_wait_for_the_store_is_answered_at_once() {
    let (mut master, mut slave, link) = pair(sync_master());
    connect(&mut master, &mut slave, link);
    let message = OutgoingMessage {
        topic: "T".into(),
        body: bytes::Bytes::from_static(b"fire and forget"),
        ..OutgoingMessage::default()
    };
    let mut request = send_message(1, "pg", 0, &message);
    let props =
        request.ext_fields.get("i").expect("V2 properties").replace("WAIT\u{1}true", "WAIT\u{1}false");
    request.ext_fields.insert("i", props);
    let reply = master.call(CLIENT, &request);
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "no slave reported it");
    assert!(master.slaves[&FROM_SLAVE].0.len() > 12, "the slave is still sent it");
}
