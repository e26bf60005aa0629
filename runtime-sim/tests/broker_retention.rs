//! Retention and a full disk on a `SimDisk`, driven by hand: expired CommitLog segments go
//! oldest first, one per interval, never the one being written; queue minimums and files
//! follow; consumers behind the new minimum are moved to it; a full disk refuses writes
//! and serves everything else until space comes back.

use keel_core::io::UnixMillis;
use keel_core::protocol::headers::{CommandHeader, PullMessageResponseHeader};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use keel_runtime_sim::sim_disk::SimDiskFaults;

mod support;
use support::*;

const RESERVED_MS: u64 = 60_000;

fn retention_config() -> keel_core::broker::BrokerConfig {
    let mut config = config(FlushMode::Async { interval_ms: 100 });
    config.store.segment_size = 4096;
    config.store.queue_file_entries = 8;
    config.store.checkpoint_interval_ms = 200;
    config.store.retention.file_reserved_ms = RESERVED_MS;
    config.store.retention.delete_hours = (0..24).collect();
    config.store.retention.delete_interval_ms = 100;
    config.store.retention.check_interval_ms = 1_000;
    config
}

fn segments(node: &BrokerNode) -> Vec<u64> {
    use keel_core::io::{FilePath, StoreRead};
    let names = node.disk.list(&FilePath::new("commitlog").unwrap()).unwrap();
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

fn queue_files(node: &BrokerNode, topic: &str) -> Vec<String> {
    use keel_core::io::{FilePath, StoreRead};
    node.disk.list(&FilePath::new(&format!("consumequeue/{topic}/0")).unwrap()).unwrap()
}

fn min_offset(node: &mut BrokerNode, opaque: i32, topic: &str) -> i64 {
    let ext: ExtFields = [("topic", topic), ("queueId", "0")].into_iter().collect();
    let reply = node.call(CLIENT, &RemotingCommand::request(RequestCode::GET_MIN_OFFSET, opaque, ext));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    reply.ext_fields.get("offset").unwrap().parse().unwrap()
}

fn send_many(node: &mut BrokerNode, topic: &str, from: usize, count: usize) {
    for i in from..from + count {
        let body = format!("{topic}-{i:04}-{}", "x".repeat(200));
        let reply = node.call(CLIENT, &send(i32::try_from(i).unwrap() + 1, topic, 0, "T", &body));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }
    node.advance(500);
}

#[test]
fn expired_segments_go_oldest_first_one_per_interval_and_consumers_move_to_the_new_minimum() {
    let mut node = boot(retention_config(), SharedDisk::default());
    send_many(&mut node, "Old", 0, 60);
    node.advance(30_000);
    send_many(&mut node, "New", 0, 60);
    let before = segments(&node);
    assert!(before.len() >= 6, "{before:?}");
    let old_files = queue_files(&node, "Old");

    // Until the old segments are RESERVED_MS old, nothing goes.
    node.advance(RESERVED_MS - 31_500);
    assert_eq!(segments(&node), before, "deleted before fileReservedTime");
    // Then one segment per deletePhysicFilesInterval (100 ms), oldest first.
    let mut waited = 0;
    while segments(&node).len() == before.len() {
        node.advance(10);
        waited += 10;
        assert!(waited <= 2_000, "nothing deleted once expired");
    }
    assert_eq!(segments(&node), before[1..]);
    node.advance(85);
    assert_eq!(segments(&node), before[1..], "two deletions within one interval");
    node.advance(20);
    assert_eq!(segments(&node), before[2..]);
    node.advance(2_000);
    let after = segments(&node);
    assert!(after.len() < before.len() - 1, "{before:?} -> {after:?}");
    assert_eq!(after, before[before.len() - after.len()..], "not oldest first");
    // The segments that hold New's messages (stored 30 s later) are all still there.
    let new_bodies = drain_queue(&mut node, "New");
    assert_eq!(new_bodies.len(), 60);

    // Old's minimum moved past everything in the deleted segments; its files went with it.
    let min = min_offset(&mut node, 900, "Old");
    assert!(min > 0, "min offset did not move");
    let reply = node.call(CLIENT, &pull(901, "Old", 0, 0, "*", false));
    assert_eq!(reply.response_code(), ResponseCode::PULL_OFFSET_MOVED);
    let header = PullMessageResponseHeader::decode(&reply.ext_fields).unwrap();
    assert_eq!(header.next_begin_offset, min);
    let reply = node.call(CLIENT, &pull(902, "Old", 0, min, "*", false));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    assert_eq!(messages(&reply).first().map(|m| m.0), Some(min));
    let old_files_after = queue_files(&node, "Old");
    assert!(old_files_after.len() < old_files.len(), "{old_files:?} -> {old_files_after:?}");
    let info = runtime_info(&mut node, 903);
    assert_eq!(info["commitLogMinOffset"], after[0].to_string());

    // A restart, clean or not, keeps the minimums and max offsets.
    let max_before = queue_max(&mut node, 904, "Old");
    let disk = node.kill();
    let mut node = boot(retention_config(), disk);
    assert_eq!(min_offset(&mut node, 905, "Old"), min);
    assert_eq!(queue_max(&mut node, 906, "Old"), max_before);
    let disk = node.shutdown();
    let mut node = boot(retention_config(), disk);
    assert_eq!(min_offset(&mut node, 907, "Old"), min);
    assert_eq!(drain_queue(&mut node, "New").len(), 60);
}

fn queue_max(node: &mut BrokerNode, opaque: i32, topic: &str) -> i64 {
    let ext: ExtFields = [("topic", topic), ("queueId", "0")].into_iter().collect();
    let reply = node.call(CLIENT, &RemotingCommand::request(RequestCode::GET_MAX_OFFSET, opaque, ext));
    reply.ext_fields.get("offset").unwrap().parse().unwrap()
}

#[test]
fn the_segment_being_written_is_never_deleted_and_a_queue_keeps_its_max_offset() {
    let mut node = boot(retention_config(), SharedDisk::default());
    send_many(&mut node, "Q", 0, 50);
    let written = *segments(&node).last().unwrap();
    node.advance(3 * RESERVED_MS);
    assert_eq!(segments(&node), vec![written], "only the segment being written is left");
    let max = queue_max(&mut node, 1, "Q");
    assert_eq!(max, 50);
    // A queue whose every message expired keeps its max offset across a restart, so new
    // messages continue its offsets instead of reusing them.
    send_many(&mut node, "Q", 50, 1);
    let disk = node.shutdown();
    let mut node = boot(retention_config(), disk);
    assert_eq!(queue_max(&mut node, 2, "Q"), 51);
}

#[test]
fn a_forward_clock_step_deletes_nothing_younger_than_the_reserve_minus_the_step() {
    let mut node = boot(retention_config(), SharedDisk::default());
    send_many(&mut node, "Q", 0, 80); // stored within the first 0.5 s
    let before = segments(&node);
    // The wall clock jumps 40 s ahead: the segments look 40.5 s old, and are 0.5 s.
    node.now.wall = UnixMillis(node.now.wall.0 + 40_000);
    node.advance(18_500); // 19 s of true age: under fileReservedTime - step (20 s)
    assert_eq!(segments(&node), before, "a segment younger than the reserve minus the step went");
    node.advance(2_000);
    assert!(segments(&node).len() < before.len(), "expired by the stepped clock, yet kept");
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_and_resumes_by_itself() {
    let mut config = retention_config();
    config.store.retention.clean_forcibly = false;
    config.store.retention.file_reserved_ms = 10 * RESERVED_MS;
    let mut node = boot(config.clone(), SharedDisk::default());
    send_many(&mut node, "Q", 0, 10);
    let used = node.disk.with(|d| d.used());
    // The file system is now 95 % full.
    let capacity = used * 100 / 95;
    node.disk.with(|d| d.set_faults(SimDiskFaults { capacity: Some(capacity), ..SimDiskFaults::default() }));
    node.advance(1_100);
    let reply = node.call(CLIENT, &send(500, "Q", 0, "T", "refused"));
    assert_eq!(reply.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE);
    assert!(reply.remark.as_deref().unwrap_or("").contains("disk full"), "{:?}", reply.remark);
    // Reads, offsets and admin keep working.
    assert_eq!(drain_queue(&mut node, "Q").len(), 10);
    let info = runtime_info(&mut node, 501);
    let ratio: f64 = info["commitLogDiskRatio"].parse().unwrap();
    assert!((0.94..=0.96).contains(&ratio), "{ratio}");
    // Space comes back: writes resume within a second, no restart.
    node.disk
        .with(|d| d.set_faults(SimDiskFaults { capacity: Some(capacity * 4), ..SimDiskFaults::default() }));
    node.advance(1_100);
    let reply = node.call(CLIENT, &send(502, "Q", 0, "T", "accepted"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
}

#[test]
fn above_the_forcible_ratio_the_oldest_segment_goes_even_unexpired() {
    let mut config = retention_config();
    config.store.retention.file_reserved_ms = 10 * RESERVED_MS;
    config.store.retention.delete_hours = Vec::new();
    let mut node = boot(config, SharedDisk::default());
    send_many(&mut node, "Q", 0, 60);
    let before = segments(&node);
    let used = node.disk.with(|d| d.used());
    // 87 %: above diskSpaceCleanForciblyRatio (85), below the warning level (90).
    node.disk.with(|d| {
        d.set_faults(SimDiskFaults { capacity: Some(used * 100 / 87), ..SimDiskFaults::default() })
    });
    node.advance(1_100);
    let after = segments(&node);
    assert_eq!(after.len(), before.len() - 1, "{before:?} -> {after:?}");
    assert_eq!(after, before[1..]);
    // Writes are still accepted (below the warning level).
    let reply = node.call(CLIENT, &send(600, "Q", 0, "T", "ok"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
}

/// Delayed and timed messages whose records retention deleted before they were due are
/// skipped (never delivered, never blocking what comes after), and a later one arrives.
#[test]
fn delayed_and_timed_messages_deleted_before_their_time_are_skipped_and_later_ones_arrive() {
    use keel_core::protocol::message::properties::keys;
    let mut node = boot(retention_config(), SharedDisk::default());
    // Level 5 is 1 minute, and 100 s for the timer: both outlive fileReservedTime (60 s).
    for i in 0..3 {
        let reply = node.call(CLIENT, &timed(10 + i, "Late", keys::DELAY, "5", &format!("delayed-{i}")));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
        let reply =
            node.call(CLIENT, &timed(20 + i, "Late", keys::TIMER_DELAY_SEC, "100", &format!("timed-{i}")));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }
    // Enough other traffic that those records' segments close, then expire.
    send_many(&mut node, "Filler", 0, 60);
    node.advance(40_000);
    send_many(&mut node, "Filler", 60, 60);
    node.advance(RESERVED_MS - 40_000 + 2_000);
    assert!(segments(&node)[0] > 0, "nothing was deleted");
    // Later ones, stored after the deletion, are delivered on time.
    let reply = node.call(CLIENT, &timed(30, "Late", keys::DELAY, "2", "delayed-later"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    let reply = node.call(CLIENT, &timed(31, "Late", keys::TIMER_DELAY_SEC, "3", "timed-later"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    node.advance(120_000);
    let mut delivered: Vec<String> =
        drain_queue(&mut node, "Late").into_iter().map(|(body, _)| body).collect();
    delivered.sort();
    assert_eq!(delivered, ["delayed-later", "timed-later"]);
    let info = runtime_info(&mut node, 40);
    let (done, end) = info["scheduleMessageOffset_5"].split_once(',').unwrap();
    assert_eq!(done, end, "level 5 did not move past its deleted heads: {}", info["scheduleMessageOffset_5"]);
    assert_eq!(info["timerOffsetBehind"], "0");
    assert_eq!(node.broker.timer_stats().1, 0, "timers still pending");
}

/// An open transaction whose half message retention deleted is forgotten: never checked
/// again, never committed.
#[test]
fn an_open_transaction_whose_half_message_was_deleted_is_forgotten() {
    use keel_core::protocol::client_requests::OutgoingMessage;
    use keel_core::protocol::message::properties::keys;
    let mut config = retention_config();
    config.transaction.timeout_ms = 1_000;
    config.transaction.check_interval_ms = 1_000;
    let mut node = boot(config, SharedDisk::default());
    let message = OutgoingMessage {
        topic: "Tx".into(),
        user_properties: vec![(keys::TRAN_MSG.into(), "true".into()), (keys::PGROUP.into(), "txg".into())],
        body: b"half".to_vec().into(),
        ..OutgoingMessage::default()
    };
    let mut request = keel_core::protocol::client_requests::send_message(1, "txg", 0, &message);
    request.ext_fields.insert("f", "4"); // sysFlag: TRANSACTION_PREPARED
    let reply = node.call(CLIENT, &request);
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    node.advance(500);
    assert_eq!(node.broker.transaction_stats().1, 1, "the transaction is open");
    // No producer of txg is connected, so nobody answers checks: it stays open while its
    // half message ages out.
    send_many(&mut node, "Filler", 0, 60);
    node.advance(RESERVED_MS + 5_000);
    assert!(segments(&node)[0] > 0, "nothing was deleted");
    assert_eq!(node.broker.transaction_stats().1, 0, "the transaction is still open");
    assert!(drain_queue(&mut node, "Tx").is_empty());
}

/// Minutes on a full disk with a transient read fault now and then must not add up to a
/// skip: only consecutive bad reads count, and a head that read well but could not be
/// stored (disk full) is a good head. Once space is back, the delayed and the timed
/// message are delivered. (Cluster seed 9295250800178259557 of 80ff5d5 lost both kinds.)
#[test]
fn delayed_and_timed_messages_survive_minutes_of_a_full_disk_with_flaky_reads() {
    use keel_core::protocol::message::properties::keys;
    let mut config = retention_config();
    config.store.retention.clean_forcibly = false;
    config.store.retention.file_reserved_ms = 100 * RESERVED_MS;
    let mut node = boot(config, SharedDisk::default());
    let reply = node.call(CLIENT, &timed(10, "Wait", keys::DELAY, "2", "delayed"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    let reply = node.call(CLIENT, &timed(11, "Wait", keys::TIMER_DELAY_SEC, "3", "timed"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    node.advance(500);
    let used = node.disk.with(|d| d.used());
    let full = SimDiskFaults {
        capacity: Some(used * 100 / 95),
        commitlog_read_flip_every: Some(3),
        ..SimDiskFaults::default()
    };
    node.disk.with(|d| d.set_faults(full));
    node.advance(10 * 60_000);
    assert!(drain_queue(&mut node, "Wait").is_empty(), "delivered while the disk was full");
    node.disk.with(|d| d.set_faults(SimDiskFaults { capacity: Some(used * 10), ..full }));
    node.advance(30_000);
    node.disk.with(|d| d.set_faults(SimDiskFaults::default()));
    let mut delivered: Vec<String> =
        drain_queue(&mut node, "Wait").into_iter().map(|(body, _)| body).collect();
    delivered.sort();
    assert_eq!(delivered, ["delayed", "timed"]);
}

/// An ENOSPC that gets past the guard (here the guard is off) fails that send and those
/// after it, never the broker: no fatal stop, the store repairs its tail in place, every
/// acknowledged message stays readable, and sends succeed again once space is back.
#[test]
fn an_enospc_past_the_guard_fails_the_send_not_the_broker_and_writes_resume() {
    let mut config = retention_config();
    config.store.retention.warning_ratio = 100;
    config.store.retention.clean_forcibly = false;
    config.store.retention.file_reserved_ms = 100 * RESERVED_MS;
    let mut node = boot(config, SharedDisk::default());
    send_many(&mut node, "Q", 0, 10);
    // The next segment cannot be created: a write past capacity fails with ENOSPC.
    let used = node.disk.with(|d| d.used());
    node.disk
        .with(|d| d.set_faults(SimDiskFaults { capacity: Some(used + 100), ..SimDiskFaults::default() }));
    let mut refused = 0;
    let mut acked = 10;
    for i in 10..40 {
        let body = format!("Q-{i:04}-{}", "x".repeat(200));
        node.send(CLIENT, &send(1000 + i, "Q", 0, "T", &body));
        node.run_all();
        let reply = node.take_reply(CLIENT, 1000 + i).expect("every send is answered, even while repairing");
        match reply.response_code() {
            ResponseCode::SUCCESS => acked += 1,
            ResponseCode::SERVICE_NOT_AVAILABLE => refused += 1,
            other => panic!("unexpected {other:?}: {:?}", reply.remark),
        }
        node.advance(50);
    }
    assert!(refused > 0, "the disk never filled");
    assert!(node.fatal.is_empty(), "the broker stopped: {:?}", node.fatal);
    assert!(node.broker.stats().store_repairs > 0, "no repair in place");
    // Space comes back: within a few seconds sends succeed again, with no restart.
    node.disk.with(|d| d.set_faults(SimDiskFaults::default()));
    let mut resumed_after_ms = None;
    for step in 0..100u64 {
        node.advance(100);
        let reply = node.call(CLIENT, &send(5000 + i32::try_from(step).unwrap(), "Q", 0, "T", "after"));
        if reply.response_code() == ResponseCode::SUCCESS {
            resumed_after_ms = Some(step * 100);
            break;
        }
    }
    let resumed_after_ms = resumed_after_ms.expect("sends never succeeded again");
    assert!(resumed_after_ms <= 11_000, "resumed only after {resumed_after_ms} ms");
    node.advance(500);
    // Every acknowledged message is there, in order, and nothing else but "after".
    let bodies: Vec<String> = drain_queue(&mut node, "Q").into_iter().map(|(body, _)| body).collect();
    let stored: Vec<&String> = bodies.iter().filter(|b| b.as_str() != "after").collect();
    assert_eq!(stored.len(), acked, "acknowledged {acked}, stored {}", stored.len());
    assert!(node.fatal.is_empty());
}

fn index_files(node: &BrokerNode) -> Vec<String> {
    use keel_core::io::{FilePath, StoreRead};
    node.disk.list(&FilePath::new("index").unwrap()).unwrap()
}

/// QUERY_MESSAGE by the key `send_many` gave message `i` of `topic`: the response code.
fn query_key(node: &mut BrokerNode, opaque: i32, topic: &str, i: usize) -> ResponseCode {
    let header = keel_core::protocol::headers::QueryMessageRequestHeader {
        topic: topic.into(),
        key: format!("{topic}-{i:04}-{}", "x".repeat(200)),
        max_num: 32,
        begin_timestamp: 0,
        end_timestamp: i64::MAX,
        unique_key_query: None,
    };
    let reply = node
        .call(CLIENT, &RemotingCommand::request(RequestCode::QUERY_MESSAGE, opaque, header.to_ext_fields()));
    reply.response_code()
}

#[test]
fn index_files_go_with_the_segments_retention_deletes_and_kept_messages_are_still_found() {
    let mut node = boot(retention_config(), SharedDisk::default());
    send_many(&mut node, "Old", 0, 200);
    node.advance(30_000);
    send_many(&mut node, "New", 0, 60);
    let before = index_files(&node);
    assert!(before.len() >= 4, "tiny index files fill and roll: {before:?}");
    assert_eq!(query_key(&mut node, 1000, "Old", 0), ResponseCode::SUCCESS);
    assert_eq!(query_key(&mut node, 1001, "New", 59), ResponseCode::SUCCESS);

    // Old's segments expire and go; every index file holding only their records goes too.
    node.advance(RESERVED_MS - 28_000);
    let mut waited = 0;
    while segments(&node).len() > 3 && waited < 20_000 {
        node.advance(100);
        waited += 100;
    }
    node.advance(1_000);
    let after = index_files(&node);
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert_eq!(after, before[before.len() - after.len()..], "the oldest go first");
    assert_eq!(query_key(&mut node, 1002, "Old", 0), ResponseCode::QUERY_NOT_FOUND);
    for i in [0, 30, 59] {
        assert_eq!(query_key(&mut node, 1003, "New", i), ResponseCode::SUCCESS, "New {i}");
    }
    // And after a crash the same holds.
    let disk = node.kill();
    let mut node = boot(retention_config(), disk);
    assert_eq!(index_files(&node), after);
    assert_eq!(query_key(&mut node, 1004, "New", 45), ResponseCode::SUCCESS);
}
