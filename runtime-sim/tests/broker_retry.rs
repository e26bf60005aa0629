//! Retries, dead letters, delay levels and queue locks, as clients see them on the wire:
//! CONSUMER_SEND_MSG_BACK, delayed sends, LOCK_BATCH_MQ / UNLOCK_BATCH_MQ.

use keel_core::protocol::body::{LockBatchResponseBody, MessageQueue};
use keel_core::protocol::client_requests::{
    lock_batch, pulled_records, send_message, send_message_back, OutgoingMessage,
};
use keel_core::protocol::json;
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::{RemotingCommand, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};

mod support;
use support::*;

/// A record as a consumer reads it: (commit-log offset, reconsume times, body, properties).
struct Got {
    phys: i64,
    reconsume_times: i32,
    body: String,
    properties: Vec<u8>,
}

fn pull_all(node: &mut BrokerNode, opaque: i32, topic: &str, queue: i32, from: i64) -> Vec<Got> {
    let reply = node.call(CLIENT, &pull(opaque, topic, queue, from, "*", false));
    if reply.response_code() != ResponseCode::SUCCESS {
        return Vec::new();
    }
    pulled_records(&reply.body)
        .expect("pull body")
        .iter()
        .map(|r| Got {
            phys: r.head().physical_offset,
            reconsume_times: r.head().reconsume_times,
            body: String::from_utf8_lossy(r.record.body).into_owned(),
            properties: r.record.properties.to_vec(),
        })
        .collect()
}

fn prop(got: &Got, key: &str) -> Option<String> {
    properties::find(&got.properties, key).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn ok(reply: &RemotingCommand) {
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
}

#[test]
fn a_sent_back_message_returns_on_the_retry_topic_after_its_delay() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    ok(&node.call(CLIENT, &send(1, "Orders", 0, "TagA", "m0")));
    let original = pull_all(&mut node, 2, "Orders", 0, 0).remove(0);
    ok(&node.call(CLIENT, &send_message_back(3, "cg", original.phys, 0, 16)));

    // Level 3 is 10 s: nothing on the retry topic before, the message after.
    node.advance(9_000);
    assert!(pull_all(&mut node, 4, "%RETRY%cg", 0, 0).is_empty(), "delivered before its delay");
    node.advance(2_000);
    let retried = pull_all(&mut node, 5, "%RETRY%cg", 0, 0);
    assert_eq!(retried.len(), 1);
    let retry = &retried[0];
    assert_eq!((retry.body.as_str(), retry.reconsume_times), ("m0", 1));
    assert_eq!(prop(retry, keys::RETRY_TOPIC).as_deref(), Some("Orders"));
    assert_eq!(prop(retry, keys::TAGS).as_deref(), Some("TagA"));
    assert!(prop(retry, keys::ORIGIN_MESSAGE_ID).is_some());
    assert_eq!(prop(retry, keys::UNIQ_KEY), prop(&original, keys::UNIQ_KEY), "the message keeps its id");
}

#[test]
fn after_max_reconsume_times_the_message_goes_to_the_dead_letter_queue_once() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    ok(&node.call(CLIENT, &send(1, "Jobs", 0, "T", "job")));
    let mut current = pull_all(&mut node, 2, "Jobs", 0, 0).remove(0);
    let mut opaque = 10;
    let mut retry_offset = 0;
    // maxReconsumeTimes 3: retries 1, 2, 3, then the DLQ.
    for round in 1..=3 {
        ok(&node.call(CLIENT, &send_message_back(opaque, "cg", current.phys, 0, 3)));
        node.advance(7_200_000);
        let mut retried = pull_all(&mut node, opaque + 1, "%RETRY%cg", 0, retry_offset);
        assert_eq!(retried.len(), 1, "round {round}");
        current = retried.remove(0);
        assert_eq!(current.reconsume_times, round);
        retry_offset += 1;
        opaque += 2;
    }
    assert!(pull_all(&mut node, 90, "%DLQ%cg", 0, 0).is_empty());
    ok(&node.call(CLIENT, &send_message_back(91, "cg", current.phys, 0, 3)));
    node.advance(7_200_000);
    assert!(pull_all(&mut node, 92, "%RETRY%cg", 0, retry_offset).is_empty(), "retried past the limit");
    let dead = pull_all(&mut node, 93, "%DLQ%cg", 0, 0);
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].body.as_str(), dead[0].reconsume_times), ("job", 4));
    assert_eq!(prop(&dead[0], keys::RETRY_TOPIC).as_deref(), Some("Jobs"));
}

#[test]
fn a_negative_delay_level_sends_straight_to_the_dlq_and_a_bad_offset_is_an_error() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    ok(&node.call(CLIENT, &send(1, "Jobs", 0, "T", "poison")));
    let original = pull_all(&mut node, 2, "Jobs", 0, 0).remove(0);
    ok(&node.call(CLIENT, &send_message_back(3, "cg", original.phys, -1, 16)));
    assert_eq!(pull_all(&mut node, 4, "%DLQ%cg", 0, 0).len(), 1);
    let reply = node.call(CLIENT, &send_message_back(5, "cg", original.phys + 1, 0, 16));
    assert_eq!(reply.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(reply.remark.unwrap_or_default().contains("look message by offset failed"));
}

fn delayed(opaque: i32, topic: &str, level: i32, body: &str) -> RemotingCommand {
    let message = OutgoingMessage {
        topic: topic.into(),
        tags: Some("T".into()),
        user_properties: vec![(keys::DELAY.into(), level.to_string())],
        body: body.as_bytes().to_vec().into(),
        ..OutgoingMessage::default()
    };
    send_message(opaque, "pg", 0, &message)
}

#[test]
fn a_delayed_send_appears_in_its_topic_after_its_level_and_in_order() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    ok(&node.call(CLIENT, &delayed(1, "Later", 2, "a")));
    node.advance(1_000);
    ok(&node.call(CLIENT, &delayed(2, "Later", 2, "b")));
    ok(&node.call(CLIENT, &send(3, "Later", 0, "T", "now")));
    assert_eq!(
        pull_all(&mut node, 4, "Later", 0, 0).iter().map(|g| g.body.clone()).collect::<Vec<_>>(),
        ["now"]
    );
    // Level 2 is 5 s: "a" is due at 5 s, "b" at 6 s.
    node.advance(4_200);
    let bodies = |node: &mut BrokerNode, opaque| -> Vec<String> {
        pull_all(node, opaque, "Later", 0, 0).into_iter().map(|g| g.body).collect()
    };
    assert_eq!(bodies(&mut node, 5), ["now", "a"]);
    node.advance(1_000);
    assert_eq!(bodies(&mut node, 6), ["now", "a", "b"]);
    let got = pull_all(&mut node, 7, "Later", 0, 1);
    assert_eq!(prop(&got[0], keys::REAL_TOPIC).as_deref(), Some("Later"), "RocketMQ keeps REAL_TOPIC");
}

#[test]
fn runtime_info_reports_each_delay_levels_delivered_and_end_offsets() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    ok(&node.call(CLIENT, &delayed(1, "Later", 2, "a")));
    ok(&node.call(CLIENT, &delayed(2, "Later", 2, "b")));
    ok(&node.call(CLIENT, &delayed(3, "Later", 3, "c")));
    node.advance(100);
    let info = runtime_info(&mut node, 4);
    assert_eq!(info.get("scheduleMessageOffset_2").map(String::as_str), Some("0,2"));
    assert_eq!(info.get("scheduleMessageOffset_3").map(String::as_str), Some("0,1"));
    assert_eq!(info.get("scheduleMessageOffset_1"), None, "a level never used has no queue");
    node.advance(5_000);
    let info = runtime_info(&mut node, 5);
    assert_eq!(info["scheduleMessageOffset_2"], "2,2", "level 2 (5 s) delivered");
    assert_eq!(info["scheduleMessageOffset_3"], "0,1", "level 3 (10 s) still waiting");
}

#[test]
fn a_backward_clock_step_holds_a_delayed_message_until_its_due_time_never_early() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    let stored_at = node.now.wall.0;
    ok(&node.call(CLIENT, &delayed(1, "Stepped", 2, "five-seconds")));
    // The wall clock steps back a minute: by the broker's clock the message is due in 65 s.
    node.now.wall.0 -= 60_000;
    node.advance(10_000);
    assert!(pull_all(&mut node, 2, "Stepped", 0, 0).is_empty(), "delivered before its due time");
    node.advance(54_000);
    assert!(pull_all(&mut node, 3, "Stepped", 0, 0).is_empty(), "delivered before its due time");
    node.advance(2_000);
    let got = pull_all(&mut node, 4, "Stepped", 0, 0);
    assert_eq!(got.len(), 1, "not delivered once due");
    let due: i64 = prop(&got[0], keys::TIMER_OUT_MS).expect("the copy carries its due time").parse().unwrap();
    assert_eq!(due, stored_at + 5_000);
}

#[test]
fn delayed_messages_are_delivered_after_a_clean_restart_exactly_once() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    ok(&node.call(CLIENT, &delayed(1, "Later", 1, "early")));
    ok(&node.call(CLIENT, &delayed(2, "Later", 4, "late")));
    node.advance(2_000);
    let disk = node.shutdown();
    let mut node = boot(config(FlushMode::Sync), disk);
    node.advance(31_000);
    let bodies: Vec<String> = pull_all(&mut node, 3, "Later", 0, 0).into_iter().map(|g| g.body).collect();
    assert_eq!(bodies, ["early", "late"]);
}

#[test]
fn a_batch_can_be_neither_delayed_nor_timed() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    let message = OutgoingMessage {
        topic: "T".into(),
        body: "x".as_bytes().to_vec().into(),
        ..OutgoingMessage::default()
    };
    for (opaque, (key, value)) in [(keys::DELAY, "2"), (keys::TIMER_DELAY_SEC, "30")].into_iter().enumerate()
    {
        let marked = OutgoingMessage { user_properties: vec![(key.into(), value.into())], ..message.clone() };
        let opaque = i32::try_from(opaque).unwrap();
        let mut batch = keel_core::protocol::client_requests::send_batch(opaque, "pg", 0, &[marked]);
        batch.ext_fields.insert("i", format!("{key}\u{1}{value}\u{2}"));
        let reply = node.call(CLIENT, &batch);
        assert_eq!(reply.response_code(), ResponseCode::MESSAGE_ILLEGAL, "{key}: {:?}", reply.remark);
    }
}

fn locked(reply: &RemotingCommand) -> Vec<i32> {
    ok(reply);
    let body: LockBatchResponseBody = json::from_slice(&reply.body).expect("lock body");
    let mut ids: Vec<i32> = body.lock_ok_mq_set.iter().map(|q| q.queue_id).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn queue_locks_over_the_wire_hold_until_released_or_expired() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    node.open(OTHER, addr("10.0.0.51:40000"));
    let queues: Vec<MessageQueue> = (0..4).map(|q| MessageQueue::new("Orders", "broker-a", q)).collect();
    assert_eq!(locked(&node.call(CLIENT, &lock_batch(1, "og", "c1", &queues[..2], false))), [0, 1]);
    assert_eq!(locked(&node.call(OTHER, &lock_batch(2, "og", "c2", &queues, false))), [2, 3]);
    ok(&node.call(CLIENT, &lock_batch(3, "og", "c1", &queues[..1], true)));
    assert_eq!(locked(&node.call(OTHER, &lock_batch(4, "og", "c2", &queues, false))), [0, 2, 3]);
    // c1 stops renewing queue 1: 60 s later it is c2's.
    node.advance(61_000);
    assert_eq!(locked(&node.call(OTHER, &lock_batch(5, "og", "c2", &queues, false))), [0, 1, 2, 3]);
}

#[test]
fn a_retry_send_from_a_group_holding_locks_goes_to_the_dlq() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    let queues = [MessageQueue::new("Orders", "broker-a", 0)];
    assert_eq!(locked(&node.call(CLIENT, &lock_batch(1, "og", "c1", &queues, false))), [0]);
    // An orderly consumer past its local retries re-sends the message to its retry topic.
    let message = OutgoingMessage {
        topic: "%RETRY%og".into(),
        user_properties: vec![(keys::RECONSUME_TIME.into(), "5".into())],
        body: "stuck".as_bytes().to_vec().into(),
        ..OutgoingMessage::default()
    };
    ok(&node.call(CLIENT, &send_message(2, "og", 0, &message)));
    assert!(pull_all(&mut node, 3, "%RETRY%og", 0, 0).is_empty());
    assert_eq!(pull_all(&mut node, 4, "%DLQ%og", 0, 0).len(), 1);
}

#[test]
fn the_delay_scheduler_sleeps_while_nothing_waits_and_wakes_for_a_new_head_when_readable() {
    // SYNC_FLUSH: an entry becomes readable only once its record is fsynced, after its
    // ConsumeQueue write; the scheduler must notice whichever comes last.
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    node.advance(3_000);
    assert_eq!(node.broker.delay_schedule().0, None, "an idle scheduler sets no timer");

    ok(&node.call(CLIENT, &delayed(1, "Later", 3, "x")));
    let sent = node.now;
    let woke = node.broker.delay_schedule().0.expect("a readable head wakes the scheduler");
    assert!(woke <= node.now.mono, "woken at once, not on a tick");
    // The head is read; the scheduler now sleeps towards its due time (10 s), at most a
    // second at a time, and delivers nothing early.
    node.advance(9_900);
    assert!(pull_all(&mut node, 2, "Later", 0, 0).is_empty(), "delivered before its delay");
    let next = node.broker.delay_schedule().0.expect("a waiting head keeps a deadline");
    assert!(next > node.now.mono && next <= node.now.mono.plus_millis(1_000), "{next:?} vs {:?}", node.now);
    node.advance(200);
    assert_eq!(pull_all(&mut node, 3, "Later", 0, 0).len(), 1);
    assert!(node.now.wall.0 >= sent.wall.0 + 10_000);
    assert_eq!(node.broker.delay_schedule(), (None, 1), "caught up again: no timer");
}

#[test]
fn a_delayed_message_whose_copy_cannot_be_stored_is_skipped_and_does_not_block_its_level() {
    // The copy names the real topic where the original named SCHEDULE_TOPIC_XXXX, and gains
    // TIMER_OUT_MS: with a long topic, the largest original that fits a segment makes a copy
    // that does not.
    let topic = "L".repeat(120);
    let low = largest_accepted_body(1_000, 70_000, |size| delayed(1, &topic, 1, &"x".repeat(size)));
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    ok(&node.call(CLIENT, &delayed(1, &topic, 1, &"x".repeat(low))));
    ok(&node.call(CLIENT, &delayed(2, &topic, 1, "small")));
    node.advance(10_000);
    let bodies: Vec<String> = pull_all(&mut node, 3, &topic, 0, 0).into_iter().map(|g| g.body).collect();
    assert_eq!(bodies, ["small"], "the undeliverable head is skipped after its attempts");
    assert_eq!(node.broker.delay_schedule().1, 1);
}
