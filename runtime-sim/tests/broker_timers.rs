//! Timed delivery as clients see it on the wire: `TIMER_DELAY_SEC` / `TIMER_DELAY_MS` /
//! `TIMER_DELIVER_MS` sends wait in the timer topic and appear in their real topic once due,
//! never before and no later than the wheel's precision; past the 40-day maximum a send is
//! refused; pending timers survive a clean restart and a power loss, at worst delivered
//! twice, never lost.

use keel_core::io::{Now, UnixMillis};
use keel_core::protocol::client_requests::pulled_records;
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::{RemotingCommand, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use rand::SeedableRng;

mod support;
use support::*;

fn bodies(node: &mut BrokerNode, opaque: i32, topic: &str) -> Vec<String> {
    queue_bodies(node, opaque, topic)
}

fn ok(reply: &RemotingCommand) {
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
}

#[test]
fn a_timed_message_appears_in_its_topic_once_due_never_before() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    let sent_at = node.now.wall.0;
    ok(&node.call(CLIENT, &timed(1, "Timed", keys::TIMER_DELAY_SEC, "30", "in-30s")));
    ok(&node.call(CLIENT, &timed(2, "Timed", keys::TIMER_DELAY_MS, "4500", "in-4.5s")));
    let at = (sent_at + 12_000).to_string();
    ok(&node.call(CLIENT, &timed(3, "Timed", keys::TIMER_DELIVER_MS, &at, "at-12s")));
    assert!(bodies(&mut node, 10, "Timed").is_empty(), "a timed message is visible at once");

    node.advance(4_400);
    assert!(bodies(&mut node, 11, "Timed").is_empty(), "delivered before its time");
    node.advance(1_700);
    assert_eq!(bodies(&mut node, 12, "Timed"), ["in-4.5s"]);
    node.advance(5_800); // 11.9 s
    assert_eq!(bodies(&mut node, 13, "Timed"), ["in-4.5s"]);
    node.advance(1_100);
    assert_eq!(bodies(&mut node, 14, "Timed"), ["in-4.5s", "at-12s"]);
    node.advance(16_800); // 29.9 s
    assert_eq!(bodies(&mut node, 15, "Timed").len(), 2);
    node.advance(1_200);
    assert_eq!(bodies(&mut node, 16, "Timed"), ["in-4.5s", "at-12s", "in-30s"]);
    // Idle again: no timer left, nothing delivered twice.
    node.advance(60_000);
    assert_eq!(bodies(&mut node, 17, "Timed").len(), 3);

    let reply = node.call(CLIENT, &pull(18, "Timed", 0, 2, "*", false));
    let record = pulled_records(&reply.body).expect("pull body").remove(0);
    let real = properties::find(record.record.properties, keys::REAL_TOPIC);
    assert_eq!(real, Some(&b"Timed"[..]), "RocketMQ keeps REAL_TOPIC on the delivered copy");
}

#[test]
fn under_normal_load_each_timer_is_stored_within_the_wheel_precision_after_its_due_time() {
    use rand::Rng;
    let config = config(FlushMode::Async { interval_ms: 200 });
    let precision = i64::try_from(config.timer_precision_ms).unwrap();
    let mut node = boot(config, SharedDisk::default());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let mut due = std::collections::BTreeMap::new();
    for n in 0..300_i32 {
        // Sends spread over a minute, due 0.1 s to 2 min later: every wheel level up to
        // the second one, and many timers sharing a tick.
        node.advance(rng.gen_range(0..200));
        let delay = rng.gen_range(100..120_000_i64);
        let body = format!("t{n}");
        ok(&node.call(CLIENT, &timed(100 + n, "Precise", keys::TIMER_DELAY_MS, &delay.to_string(), &body)));
        due.insert(body, node.now.wall.0 + delay);
    }
    node.advance(125_000);

    let mut stored = std::collections::BTreeMap::new();
    for (body, at) in drain_queue(&mut node, "Precise") {
        assert!(stored.insert(body.clone(), at).is_none(), "{body} twice");
    }
    assert_eq!(stored.len(), due.len(), "every timer delivered once");
    for (body, at) in &stored {
        let lateness = at - due[body];
        assert!(lateness >= 0, "{body} stored {} ms early", -lateness);
        assert!(lateness <= precision, "{body} stored {lateness} ms late, precision {precision} ms");
    }
}

#[test]
fn a_burst_due_in_one_tick_goes_out_in_bounded_batches_a_pause_apart() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    // Mid-tick, five seconds ahead: every timer in the same one-second tick.
    let due = (node.now.wall.0 / 1_000 + 5) * 1_000 + 500;
    for n in 0..3_000 {
        let body = format!("b{n}");
        ok(&node.call(CLIENT, &timed(n, "Burst", keys::TIMER_DELIVER_MS, &due.to_string(), &body)));
    }
    let release = (due / 1_000 + 1) * 1_000;
    node.advance(u64::try_from(release - 1 - node.now.wall.0).unwrap());
    assert_eq!(node.broker.timer_stats(), (0, 3_000), "nothing before the tick is past");
    node.advance(1);
    assert_eq!(node.broker.timer_stats(), (1_024, 1_976), "one bounded batch per wake-up");
    let info = runtime_info(&mut node, 8_999);
    assert_eq!(info["timerCongestNum"], "1976", "due and waiting for their batch");
    assert_eq!(info["timerOffsetBehind"], "0", "all read into the wheel");
    assert_eq!(info["timerReadBehind"], "0", "under a second behind");
    // Requests are served between batches: a send now is stored before the rest of the burst.
    ok(&node.call(CLIENT, &send(9_000, "Burst", 0, "T", "between")));
    node.advance(1);
    assert_eq!(node.broker.timer_stats().0, 2_048);
    node.advance(1);
    assert_eq!(node.broker.timer_stats(), (3_000, 0));
    // Both timer rates are over the time since boot (younger than their minute).
    let info = runtime_info(&mut node, 9_001);
    #[allow(clippy::cast_precision_loss)]
    let since_boot_s = (node.now.wall.0 - start().wall.0) as f64 / 1_000.0;
    for key in ["timerEnqueueTps", "timerDequeueTps"] {
        let rate: f64 = info[key].parse().expect("a number");
        assert!((rate - 3_000.0 / since_boot_s).abs() < 1.0, "{key} {rate}, {since_boot_s} s since boot");
    }
    let seen: Vec<String> = drain_queue(&mut node, "Burst").into_iter().map(|(body, _)| body).collect();
    assert_eq!(seen.len(), 3_001, "every timer once, and the send");
    assert_eq!(seen.iter().position(|b| b == "between"), Some(1_024), "the send went in between batches");
}

#[test]
fn past_forty_days_or_garbled_is_refused_and_a_past_time_is_stored_at_once() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    let now = node.now.wall.0;
    let late = (now + 40 * 86_400_000 + 1_000).to_string();
    let reply = node.call(CLIENT, &timed(1, "Timed", keys::TIMER_DELIVER_MS, &late, "too-late"));
    assert_eq!(reply.response_code(), ResponseCode::MESSAGE_ILLEGAL);
    assert!(reply.remark.unwrap_or_default().contains("timerMaxDelaySec"));
    let reply = node.call(CLIENT, &timed(2, "Timed", keys::TIMER_DELAY_SEC, "soon", "garbled"));
    assert_eq!(reply.response_code(), ResponseCode::MESSAGE_ILLEGAL);
    let past = (now - 5_000).to_string();
    ok(&node.call(CLIENT, &timed(3, "Timed", keys::TIMER_DELIVER_MS, &past, "already-due")));
    assert_eq!(bodies(&mut node, 4, "Timed"), ["already-due"]);
}

#[test]
fn pending_timers_survive_a_clean_restart_and_a_power_loss() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    ok(&node.call(CLIENT, &timed(1, "Timed", keys::TIMER_DELAY_SEC, "5", "5s")));
    ok(&node.call(CLIENT, &timed(2, "Timed", keys::TIMER_DELAY_SEC, "60", "60s")));
    ok(&node.call(CLIENT, &timed(3, "Timed", keys::TIMER_DELAY_SEC, "7200", "2h")));
    node.advance(10_000);
    assert_eq!(bodies(&mut node, 4, "Timed"), ["5s"]);

    // A clean restart 10 s later by the wall clock.
    let later =
        |node: &BrokerNode, ms: i64| Now { mono: node.now.mono, wall: UnixMillis(node.now.wall.0 + ms) };
    let resume = later(&node, 0);
    let disk = node.shutdown();
    let (mut node, _) = BrokerNode::boot(config(FlushMode::Sync), disk, resume).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    node.advance(55_000);
    assert_eq!(bodies(&mut node, 5, "Timed"), ["5s", "60s"], "after a clean restart");

    // A power loss, then 2 h later: the 2 h timer is delivered; earlier ones may repeat at
    // most once each but none is lost.
    let resume = later(&node, 0);
    let disk = node.kill();
    disk.with(|d| d.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(11)));
    let (mut node, _) = BrokerNode::boot(config(FlushMode::Sync), disk, resume).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    node.advance(7_200_000);
    let got = bodies(&mut node, 6, "Timed");
    for body in ["5s", "60s", "2h"] {
        let copies = got.iter().filter(|b| *b == body).count();
        assert!((1..=2).contains(&copies), "{body} delivered {copies} times: {got:?}");
    }
    assert_eq!(got.iter().filter(|b| *b == "2h").count(), 1);
}

#[test]
fn a_timer_whose_copy_cannot_be_stored_is_dropped_after_its_attempts_and_others_go_on() {
    // As for delay levels: with a long real topic, the largest original that fits a segment
    // makes a copy that does not.
    let topic = "L".repeat(120);
    let low = largest_accepted_body(1_000, 70_000, |size| {
        timed(1, &topic, keys::TIMER_DELAY_MS, "1000", &"x".repeat(size))
    });
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    ok(&node.call(CLIENT, &timed(1, &topic, keys::TIMER_DELAY_MS, "1000", &"x".repeat(low))));
    ok(&node.call(CLIENT, &timed(2, &topic, keys::TIMER_DELAY_MS, "1000", "small")));
    node.advance(2_100);
    assert_eq!(bodies(&mut node, 3, &topic), ["small"], "the other timer is not held up");
    node.advance(10_000);
    assert_eq!(node.broker.timer_stats(), (1, 0), "the undeliverable one is dropped, not retried forever");
    assert_eq!(bodies(&mut node, 4, &topic), ["small"]);
}

/// The recall handle a timed send was answered with.
fn recall_handle_of(reply: &RemotingCommand) -> String {
    ok(reply);
    reply.ext_fields.get("recallHandle").expect("a timed send's reply carries recallHandle").to_owned()
}

fn recall(opaque: i32, topic: &str, handle: &str) -> RemotingCommand {
    keel_core::protocol::client_requests::recall_message(opaque, "pg", topic, handle)
}

#[test]
fn a_recalled_timed_message_is_never_delivered_and_a_bad_recall_is_refused_by_name() {
    use keel_core::broker::timer::recall::RecallHandle;
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    let kept = recall_handle_of(&node.call(CLIENT, &timed(1, "Timed", keys::TIMER_DELAY_SEC, "10", "kept")));
    let taken =
        recall_handle_of(&node.call(CLIENT, &timed(2, "Timed", keys::TIMER_DELAY_SEC, "10", "taken")));
    let plain = node.call(CLIENT, &send(3, "Timed", 0, "T", "plain"));
    assert_eq!(plain.ext_fields.get("recallHandle"), None, "only timed sends get a handle");
    let handle = RecallHandle::decode(&taken).expect("the handle reads");
    assert_eq!((handle.topic.as_str(), handle.broker_name.as_str()), ("Timed", "broker-a"));

    let reply = node.call(CLIENT, &recall(4, "Timed", &taken));
    ok(&reply);
    assert_eq!(reply.ext_fields.get("msgId"), Some(handle.message_id.as_str()), "the recalled UNIQ_KEY");

    let refused = |node: &mut BrokerNode, opaque, topic: &str, handle: &str| {
        let reply = node.call(CLIENT, &recall(opaque, topic, handle));
        (reply.response_code(), reply.remark.unwrap_or_default())
    };
    let (code, remark) = refused(&mut node, 5, "Timed", "not base64!");
    assert_eq!((code, remark.as_str()), (ResponseCode::ILLEGAL_OPERATION, "recall handle is invalid"));
    let (code, remark) = refused(&mut node, 6, "NoSuchTopic", &taken);
    assert_eq!(code, ResponseCode::TOPIC_NOT_EXIST, "{remark}");
    node.call(CLIENT, &send(7, "Other", 0, "T", "creates the topic"));
    let (code, remark) = refused(&mut node, 8, "Other", &taken);
    assert_eq!((code, remark.as_str()), (ResponseCode::ILLEGAL_OPERATION, "recall failed, topic not match"));
    let elsewhere = RecallHandle { broker_name: "broker-b".into(), ..handle.clone() }.encode();
    let (code, remark) = refused(&mut node, 9, "Timed", &elsewhere);
    assert_eq!(code, ResponseCode::ILLEGAL_OPERATION);
    assert!(remark.contains("broker-b"), "{remark}");

    node.advance(11_100);
    assert_eq!(bodies(&mut node, 10, "Timed"), ["plain", "kept"], "the recalled one is dropped");
    assert_eq!(node.broker.timer_stats(), (1, 0), "one delivered, none pending");
    let (code, remark) = refused(&mut node, 11, "Timed", &kept);
    assert_eq!(
        (code, remark.as_str()),
        (ResponseCode::ILLEGAL_OPERATION, "recall failed, timestamp invalid"),
        "a delivered message cannot be recalled"
    );
    node.advance(60_000);
    assert_eq!(bodies(&mut node, 12, "Timed"), ["plain", "kept"]);
}

#[test]
fn a_recall_answered_survives_a_clean_restart_and_a_power_loss() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    let mut handles = Vec::new();
    for (n, body) in ["first", "second", "kept"].into_iter().enumerate() {
        let opaque = i32::try_from(n).unwrap();
        handles.push(recall_handle_of(
            &node.call(CLIENT, &timed(opaque, "Timed", keys::TIMER_DELAY_SEC, "60", body)),
        ));
    }
    ok(&node.call(CLIENT, &recall(10, "Timed", &handles[0])));
    node.advance(1_000);
    let later = |node: &BrokerNode| Now { mono: node.now.mono, wall: UnixMillis(node.now.wall.0 + 1_000) };
    let resume = later(&node);
    let disk = node.shutdown();
    let (mut node, _) = BrokerNode::boot(config(FlushMode::Sync), disk, resume).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    ok(&node.call(CLIENT, &recall(11, "Timed", &handles[1])));

    // Answered under SYNC_FLUSH: the marker is on disk before the reply.
    let resume = later(&node);
    let disk = node.kill();
    disk.with(|d| d.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(12)));
    let (mut node, _) = BrokerNode::boot(config(FlushMode::Sync), disk, resume).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    node.advance(120_000);
    assert_eq!(bodies(&mut node, 13, "Timed"), ["kept"], "both recalls hold after the restarts");
}
