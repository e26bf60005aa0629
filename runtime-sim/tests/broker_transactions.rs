//! Transaction messages as clients see them on the wire: a half message is invisible until
//! END_TRANSACTION commits it (once, however often the commit arrives) or rolls it back;
//! an open one is checked back with CHECK_TRANSACTION_STATE after `transactionTimeOut`, at
//! most `transactionCheckMax` times, then discarded; all of it survives restarts, and a
//! commit whose copy a crash tore off is redone.

use keel_core::broker::transaction::CHECK_MAX_TOPIC;
use keel_core::broker::BrokerConfig;
use keel_core::io::{DiskOp, Now};
use keel_core::protocol::body::{HeartbeatData, ProducerData};
use keel_core::protocol::client_requests::{pulled_records, send_message, OutgoingMessage};
use keel_core::protocol::headers::{CommandHeader, EndTransactionRequestHeader, SendMessageResponseHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::message::message_id::decode_offset_message_id;
use keel_core::protocol::message::properties::keys;
use keel_core::protocol::message::stored::decode_records;
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode, FLAG_ONEWAY};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use rand::SeedableRng;

mod support;
use support::*;

const COMMIT: i32 = 8;
const ROLLBACK: i32 = 12;

fn tx_config() -> BrokerConfig {
    let mut config = config(FlushMode::Sync);
    config.transaction.timeout_ms = 6_000;
    config.transaction.check_interval_ms = 10_000;
    config.transaction.check_max = 3;
    config
}

/// A half message as the Java client sends it: `TRAN_MSG`, `PGROUP`, the PREPARED sys flag.
fn half(opaque: i32, topic: &str, body: &str) -> RemotingCommand {
    let message = OutgoingMessage {
        topic: topic.into(),
        tags: Some("T".into()),
        user_properties: vec![(keys::TRAN_MSG.into(), "true".into()), (keys::PGROUP.into(), "pg".into())],
        body: body.as_bytes().to_vec().into(),
        ..OutgoingMessage::default()
    };
    let mut cmd = send_message(opaque, "pg", 0, &message);
    cmd.ext_fields.insert("f", "4");
    cmd
}

/// Where a send reply says the half message is: (commit-log offset, queue offset, UNIQ_KEY).
fn half_position(reply: &RemotingCommand) -> (i64, i64, String) {
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    let header = SendMessageResponseHeader::decode(&reply.ext_fields).expect("send reply");
    let (_, phys) = decode_offset_message_id(&header.msg_id).expect("offset message id");
    (phys, header.queue_offset, header.transaction_id.unwrap_or_default())
}

fn end(opaque: i32, position: &(i64, i64, String), state: i32, from_check: bool) -> RemotingCommand {
    let header = EndTransactionRequestHeader {
        topic: Some("Tx".into()),
        producer_group: "pg".into(),
        tran_state_table_offset: position.1,
        commit_log_offset: position.0,
        commit_or_rollback: state,
        from_transaction_check: Some(from_check),
        msg_id: position.2.clone(),
        transaction_id: Some(position.2.clone()),
    };
    RemotingCommand::request(RequestCode::END_TRANSACTION, opaque, header.to_ext_fields())
}

/// END_TRANSACTION as clients send it: oneway.
fn end_oneway(node: &mut BrokerNode, position: &(i64, i64, String), state: i32, from_check: bool) {
    let mut cmd = end(0, position, state, from_check);
    cmd.flag |= FLAG_ONEWAY;
    node.send(CLIENT, &cmd);
    node.run_all();
}

fn bodies(node: &mut BrokerNode, opaque: i32, topic: &str) -> Vec<String> {
    queue_bodies(node, opaque, topic)
}

/// Register `CLIENT` as a live producer of group `pg`.
fn heartbeat(node: &mut BrokerNode, opaque: i32) {
    let data = HeartbeatData {
        client_id: "10.0.0.50@1".into(),
        producer_data_set: vec![ProducerData { group_name: "pg".into() }],
        ..HeartbeatData::default()
    };
    let body = json::to_vec(&data, KeyStyle::Standard).expect("heartbeat json");
    let cmd = RemotingCommand::request(RequestCode::HEART_BEAT, opaque, Default::default()).with_body(body);
    assert_eq!(node.call(CLIENT, &cmd).response_code(), ResponseCode::SUCCESS);
}

/// The CHECK_TRANSACTION_STATE requests `CLIENT` received since last asked.
fn checks(node: &mut BrokerNode) -> Vec<RemotingCommand> {
    let Some(peer) = node.peers.get_mut(&CLIENT) else { return Vec::new() };
    let (checks, rest): (Vec<_>, Vec<_>) = peer
        .inbox
        .drain(..)
        .partition(|c| !c.is_response() && c.request_code() == RequestCode::CHECK_TRANSACTION_STATE);
    peer.inbox = rest;
    checks
}

/// The half message a check names, as END_TRANSACTION must name it.
fn checked_position(check: &RemotingCommand) -> (i64, i64, String) {
    let field = |name: &str| check.ext_fields.get(name).unwrap_or_default().to_owned();
    (
        field("commitLogOffset").parse().expect("commitLogOffset"),
        field("tranStateTableOffset").parse().expect("tranStateTableOffset"),
        field("transactionId"),
    )
}

#[test]
fn a_half_message_is_invisible_until_committed_and_a_repeated_commit_is_stored_once() {
    let mut node = boot(tx_config(), SharedDisk::default());
    let a = half_position(&node.call(CLIENT, &half(1, "Tx", "commit-me")));
    let b = half_position(&node.call(CLIENT, &half(2, "Tx", "roll-me-back")));
    assert!(bodies(&mut node, 3, "Tx").is_empty(), "a half message is visible");

    end_oneway(&mut node, &a, COMMIT, false);
    end_oneway(&mut node, &b, ROLLBACK, false);
    assert_eq!(bodies(&mut node, 4, "Tx"), ["commit-me"]);
    // The same commit again (a retry after a timeout), and a check's late answer.
    end_oneway(&mut node, &a, COMMIT, false);
    end_oneway(&mut node, &a, COMMIT, true);
    end_oneway(&mut node, &b, COMMIT, true);
    assert_eq!(bodies(&mut node, 5, "Tx"), ["commit-me"], "a commit stored twice, or a rollback undone");

    let reply = node.call(CLIENT, &pull(6, "Tx", 0, 0, "*", false));
    let record = pulled_records(&reply.body).expect("pull body").remove(0);
    assert_eq!(record.head().sys_flag & 0xC, COMMIT, "the committed copy carries the COMMIT type");
    assert_eq!(record.head().prepared_transaction_offset, a.0, "and the half message's offset");
    let (stats, open) = node.broker.transaction_stats();
    assert_eq!((stats.committed, stats.rolled_back, open), (1, 1, 0));

    // A non-oneway END is answered; one naming the wrong group or offset is refused.
    let c = half_position(&node.call(CLIENT, &half(7, "Tx", "third")));
    let mut wrong = end(8, &c, COMMIT, false);
    wrong.ext_fields.insert("producerGroup", "other");
    assert_eq!(node.call(CLIENT, &wrong).response_code(), ResponseCode::SYSTEM_ERROR);
    let mut shifted = c.clone();
    shifted.1 += 1;
    assert_eq!(
        node.call(CLIENT, &end(9, &shifted, COMMIT, false)).response_code(),
        ResponseCode::SYSTEM_ERROR
    );
    assert_eq!(node.call(CLIENT, &end(10, &c, COMMIT, false)).response_code(), ResponseCode::SUCCESS);
    assert_eq!(bodies(&mut node, 11, "Tx"), ["commit-me", "third"]);
}

#[test]
fn transactional_batches_and_delays_are_refused_and_a_slave_ends_nothing() {
    let mut node = boot(tx_config(), SharedDisk::default());
    let mut delayed = half(1, "Tx", "delayed");
    let props = delayed.ext_fields.get("i").unwrap_or_default().to_owned();
    delayed.ext_fields.insert("i", format!("{props}DELAY\u{1}3\u{2}"));
    assert_eq!(node.call(CLIENT, &delayed).response_code(), ResponseCode::MESSAGE_ILLEGAL);

    let mut config = tx_config();
    config.transaction.reject = true;
    let mut node = boot(config, SharedDisk::default());
    assert_eq!(node.call(CLIENT, &half(2, "Tx", "x")).response_code(), ResponseCode::NO_PERMISSION);

    let mut config = tx_config();
    config.broker_id = 1;
    config.role = keel_core::ha::BrokerRole::Slave;
    let mut node = boot(config, SharedDisk::default());
    let position = (0, 0, "id".to_owned());
    assert_eq!(
        node.call(CLIENT, &end(3, &position, COMMIT, false)).response_code(),
        ResponseCode::SLAVE_NOT_AVAILABLE
    );
}

#[test]
fn an_open_transaction_is_checked_after_the_timeout_and_a_checked_commit_lands_once() {
    let mut node = boot(tx_config(), SharedDisk::default());
    heartbeat(&mut node, 1);
    let a = half_position(&node.call(CLIENT, &half(2, "Tx", "checked")));
    // The first round (10 s) comes after the 6 s timeout; nothing is checked before it.
    node.advance(9_900);
    assert!(checks(&mut node).is_empty(), "checked before the check interval");
    node.advance(200);
    let check = checks(&mut node);
    assert_eq!(check.len(), 1, "one check after the timeout");
    let check = &check[0];
    assert_eq!(check.ext_fields.get("topic"), Some("Tx"));
    assert_eq!(check.ext_fields.get("msgId"), Some(a.2.as_str()));
    let message = decode_records(&check.body).expect("check body").remove(0);
    assert_eq!((message.topic.as_str(), message.head.queue_id), ("Tx", 0), "the body names the real topic");
    assert_eq!(&message.body[..], b"checked");
    let copy = checked_position(check);
    assert_ne!(copy.1, a.1, "a check names a new copy of the half message");

    // The producer answers the check, and its own END arrives late too: one copy.
    end_oneway(&mut node, &copy, COMMIT, true);
    end_oneway(&mut node, &a, COMMIT, false);
    assert_eq!(bodies(&mut node, 3, "Tx"), ["checked"]);
    node.advance(30_000);
    assert!(checks(&mut node).is_empty(), "a committed transaction is checked again");
}

#[test]
fn a_young_half_message_waits_for_the_timeout_before_its_first_check() {
    let mut node = boot(tx_config(), SharedDisk::default());
    heartbeat(&mut node, 1);
    node.advance(6_000);
    // Stored 4 s before the first round: 4 s < 6 s, so only the second round checks it.
    half_position(&node.call(CLIENT, &half(2, "Tx", "young")));
    node.advance(4_100);
    assert!(checks(&mut node).is_empty(), "checked 4 s after it was stored");
    node.advance(10_000);
    assert_eq!(checks(&mut node).len(), 1);
}

#[test]
fn unanswered_checks_end_in_the_discard_topic_never_in_the_real_one() {
    let mut node = boot(tx_config(), SharedDisk::default());
    heartbeat(&mut node, 1);
    half_position(&node.call(CLIENT, &half(2, "Tx", "forgotten")));
    let mut sent = 0;
    for round in 0..8 {
        node.advance(10_000);
        sent += checks(&mut node).len();
        heartbeat(&mut node, 10 + round);
    }
    assert_eq!(sent, 3, "transactionCheckMax checks, then none");
    assert!(bodies(&mut node, 3, "Tx").is_empty(), "a discarded transaction was delivered");
    assert_eq!(bodies(&mut node, 4, CHECK_MAX_TOPIC), ["forgotten"]);
    let (stats, open) = node.broker.transaction_stats();
    assert_eq!((stats.checks_sent, stats.discarded, open), (3, 1, 0));
}

#[test]
fn without_a_live_producer_nothing_is_checked_or_counted() {
    let mut node = boot(tx_config(), SharedDisk::default());
    half_position(&node.call(CLIENT, &half(1, "Tx", "orphan")));
    node.advance(60_000);
    let (stats, open) = node.broker.transaction_stats();
    assert_eq!((stats.checks_sent, stats.discarded, open), (0, 0, 1));
    heartbeat(&mut node, 2);
    node.advance(10_000);
    assert_eq!(checks(&mut node).len(), 1, "checked once a producer is back");
}

#[test]
fn open_and_ended_transactions_survive_restarts() {
    let mut node = boot(tx_config(), SharedDisk::default());
    let committed = half_position(&node.call(CLIENT, &half(1, "Tx", "committed")));
    let open = half_position(&node.call(CLIENT, &half(2, "Tx", "open")));
    let rolled = half_position(&node.call(CLIENT, &half(3, "Tx", "rolled")));
    end_oneway(&mut node, &committed, COMMIT, false);
    end_oneway(&mut node, &rolled, ROLLBACK, false);
    node.advance(6_000); // the offsets (the checkpoint) are persisted

    let disk = node.kill();
    let (mut node, _) = BrokerNode::boot(tx_config(), disk, start()).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    heartbeat(&mut node, 4);
    node.advance(1); // the service replays the queues at its first turn
    assert_eq!(node.broker.transaction_stats().1, 1, "exactly the open transaction is open again");
    // Repeats after the restart change nothing.
    end_oneway(&mut node, &committed, COMMIT, false);
    end_oneway(&mut node, &rolled, COMMIT, true);
    assert_eq!(bodies(&mut node, 5, "Tx"), ["committed"]);
    // The open one is checked, answered, and committed once.
    node.advance(10_100);
    let check = checks(&mut node);
    assert_eq!(check.len(), 1);
    end_oneway(&mut node, &checked_position(&check[0]), COMMIT, true);
    end_oneway(&mut node, &open, COMMIT, false);
    assert_eq!(bodies(&mut node, 6, "Tx"), ["committed", "open"]);

    // And once more after a clean restart: nothing left open, nothing checked.
    let disk = node.shutdown();
    let (mut node, _) = BrokerNode::boot(tx_config(), disk, start()).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    heartbeat(&mut node, 7);
    node.advance(30_000);
    assert!(checks(&mut node).is_empty());
    assert_eq!(node.broker.transaction_stats().1, 0);
    assert_eq!(bodies(&mut node, 8, "Tx"), ["committed", "open"]);
}

#[test]
fn a_commit_whose_copy_a_crash_tore_off_is_redone_once() {
    let mut node = boot(tx_config(), SharedDisk::default());
    let a = half_position(&node.call(CLIENT, &half(1, "Tx", "torn")));
    end_oneway(&mut node, &a, COMMIT, false);
    assert_eq!(bodies(&mut node, 2, "Tx"), ["torn"]);
    // Damage the committed copy (the last record) as a torn write would.
    let reply = node.call(CLIENT, &pull(3, "Tx", 0, 0, "*", false));
    let copy_at = pulled_records(&reply.body).expect("pull body")[0].head().physical_offset;
    let segment = keel_core::store::paths::segment(0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let offset = u64::try_from(copy_at).expect("offset") + 40;
    node.disk.with(|d| {
        d.execute(&DiskOp::Write { file: segment.clone(), offset, data: vec![0xAB; 16].into() }, &mut rng)
            .expect("write");
        d.execute(&DiskOp::Sync { file: segment }, &mut rng).expect("sync");
    });

    let disk = node.kill();
    let (mut node, _) = BrokerNode::boot(tx_config(), disk, start()).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    node.advance(1);
    assert_eq!(bodies(&mut node, 4, "Tx"), ["torn"], "the commit was not redone exactly once");
    assert_eq!(node.broker.transaction_stats().0.redone, 1);
    // A repeated commit now is still stored once.
    end_oneway(&mut node, &a, COMMIT, false);
    assert_eq!(bodies(&mut node, 5, "Tx"), ["torn"]);
}

#[test]
fn an_end_arriving_before_its_half_message_is_readable_is_held_then_carried_out() {
    let mut node = boot(tx_config(), SharedDisk::default());
    // A first transaction, rolled back, creates the topics: a send that creates its topic
    // is acknowledged only after topics.json is rewritten, by which time its entry is
    // readable.
    let warm_up = node.call(CLIENT, &half(10, "Tx", "rolled-back"));
    end_oneway(&mut node, &half_position(&warm_up), ROLLBACK, false);
    node.run_all();
    node.send(CLIENT, &half(1, "Tx", "early-end"));
    // Disk work one operation at a time, only until the send is acknowledged: the half
    // message's ConsumeQueue entry is not readable yet.
    let reply = loop {
        node.run(1);
        if let Some(reply) = node.take_reply(CLIENT, 1) {
            break reply;
        }
    };
    let position = half_position(&reply);
    node.send(CLIENT, &end(2, &position, COMMIT, false));
    assert!(node.take_reply(CLIENT, 2).is_none(), "the END is held, not refused");
    assert_eq!(node.broker.transaction_stats().0.committed, 0, "the half message is not read yet");
    node.run_all();
    node.advance(200);
    let reply = node.take_reply(CLIENT, 2).expect("answered once carried out");
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    assert_eq!(node.broker.transaction_stats().0.committed, 1);
    assert_eq!(bodies(&mut node, 3, "Tx"), ["early-end"]);
}

#[test]
fn with_async_flush_a_check_waits_for_its_copy_to_be_fsynced_so_a_power_loss_cannot_add_checks() {
    let mut config = tx_config();
    config.store.flush_mode = FlushMode::Async { interval_ms: 4_000 };
    let mut node = boot(config.clone(), SharedDisk::default());
    heartbeat(&mut node, 1);
    half_position(&node.call(CLIENT, &half(2, "Tx", "async")));
    node.advance(8_100); // flushed at 8 s
                         // The first round (10 s) writes the check copy; the flush at 12 s makes it durable.
    node.advance(2_000);
    assert!(checks(&mut node).is_empty(), "a check went out before its copy was fsynced");
    node.advance(2_000);
    let mut sent = checks(&mut node).len();
    assert_eq!(sent, 1, "the check goes out once its copy is fsynced");

    // A power loss right after each later round, before the flush: a check copy may be lost
    // or kept unsent, never sent and then lost, so never more than `transactionCheckMax`
    // checks in all. (A copy kept unsent counts: after a crash the broker cannot tell.)
    let mut seed = 0;
    for _ in 0..4 {
        node.advance(10_000);
        sent += checks(&mut node).len();
        let wall = node.now.wall;
        let disk = node.kill();
        seed += 1;
        disk.with(|d| d.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed)));
        // A new process: a new monotonic clock, the wall clock goes on.
        let (next, _) = BrokerNode::boot(config.clone(), disk, Now { wall, ..start() }).expect("boot");
        node = next;
        node.open(CLIENT, addr("10.0.0.50:40000"));
        heartbeat(&mut node, 10 + i32::try_from(seed).expect("small"));
    }
    for round in 0..4 {
        node.advance(10_000);
        sent += checks(&mut node).len();
        heartbeat(&mut node, 20 + round);
    }
    assert!(sent <= 3, "{sent} checks across power losses, more than transactionCheckMax");
    assert_eq!(bodies(&mut node, 30, CHECK_MAX_TOPIC), ["async"]);
}
