//! Pop consumption as 5.x clients see it on the wire: POP_MESSAGE, ACK_MESSAGE,
//! CHANGE_MESSAGE_INVISIBLETIME, BATCH_ACK_MESSAGE and NOTIFICATION; revive to the pop
//! retry topic and the DLQ; FIFO blocking; crashes.

use keel_core::broker::pop::receipt::ReceiptHandle;
use keel_core::io::Now;
use keel_core::protocol::body::SubscriptionGroupConfig;
use keel_core::protocol::client_requests::{
    ack_message, change_invisible_time, pop_message, popped_messages, PopRequest,
};
use keel_core::protocol::headers::{CommandHeader, NotificationRequestHeader, NotificationResponseHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use rand_chacha::rand_core::SeedableRng;

mod support;
use support::*;

/// A popped message as a test looks at it.
#[derive(Debug, Clone)]
struct Got {
    body: String,
    topic: String,
    reconsume_times: i32,
    attempts_before: u32,
    retry_topic: Option<String>,
    handle: ReceiptHandle,
}

fn request(topic: &str, max: i32, invisible_ms: i64) -> PopRequest {
    PopRequest {
        group: "cg".into(),
        topic: topic.into(),
        queue_id: -1,
        max_messages: max,
        invisible_ms,
        poll_ms: 0,
        expression: String::new(),
        order: None,
        init_mode: 0,
    }
}

fn pop_with(node: &mut BrokerNode, opaque: i32, request: &PopRequest) -> (ResponseCode, Vec<Got>) {
    let reply = node.call(CLIENT, &pop_message(opaque, request, node.now.wall.0));
    let code = reply.response_code();
    let got = popped_messages(&reply, "broker-a")
        .expect("pop body")
        .into_iter()
        .map(|p| Got {
            body: String::from_utf8_lossy(p.record.record.body).into_owned(),
            topic: p.record.record.topic.to_owned(),
            reconsume_times: p.record.head().reconsume_times,
            attempts_before: p.attempts_before,
            retry_topic: properties::find(p.record.record.properties, keys::RETRY_TOPIC)
                .map(|t| String::from_utf8_lossy(t).into_owned()),
            handle: p.handle,
        })
        .collect();
    (code, got)
}

fn pop(node: &mut BrokerNode, opaque: i32, topic: &str, invisible_ms: i64) -> Vec<Got> {
    pop_with(node, opaque, &request(topic, 32, invisible_ms)).1
}

fn ack(node: &mut BrokerNode, opaque: i32, topic: &str, got: &Got) {
    let reply = node.call(CLIENT, &ack_message(opaque, "cg", topic, &got.handle));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
}

fn bodies(got: &[Got]) -> Vec<&str> {
    let mut bodies: Vec<&str> = got.iter().map(|g| g.body.as_str()).collect();
    bodies.sort_unstable();
    bodies
}

fn send_all(node: &mut BrokerNode, topic: &str, queue: i32, count: usize) {
    for i in 0..count {
        let reply =
            node.call(CLIENT, &send(i32::try_from(i).unwrap() + 1_000, topic, queue, "T", &format!("m{i}")));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    }
}

#[test]
fn what_is_not_acked_in_time_comes_back_on_the_retry_topic_and_acked_messages_never_do() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    send_all(&mut node, "Orders", 0, 2);
    send_all(&mut node, "Orders", 1, 1);
    let first = pop(&mut node, 1, "Orders", 30_000);
    assert_eq!(bodies(&first), ["m0", "m0", "m1"]);
    for got in &first {
        assert_eq!((got.reconsume_times, got.handle.retry.as_str()), (0, "0"));
        assert!(!got.handle.is_order());
        assert_eq!(got.handle.queue_offset, Some(got.handle.queue_offset.unwrap()));
    }
    // Invisible: a second pop finds nothing, however often.
    assert!(pop(&mut node, 2, "Orders", 30_000).is_empty());
    let kept = first.iter().find(|g| g.body == "m1").unwrap().clone();
    for (i, got) in first.iter().filter(|g| g.body != "m1").enumerate() {
        ack(&mut node, 10 + i32::try_from(i).unwrap(), "Orders", got);
    }
    node.advance(29_000);
    assert!(pop(&mut node, 20, "Orders", 30_000).is_empty(), "back before its invisible time");
    node.advance(2_000);
    let again = pop(&mut node, 21, "Orders", 30_000);
    assert_eq!(bodies(&again), ["m1"], "only the message not acked comes back");
    let retried = &again[0];
    assert_eq!(retried.topic, "%RETRY%cg_Orders");
    assert_eq!((retried.reconsume_times, retried.handle.retry.as_str()), (1, "1"));
    assert_eq!(retried.retry_topic.as_deref(), Some("Orders"));
    assert_eq!(kept.handle.queue_id, 0);
    ack(&mut node, 22, "Orders", retried);
    node.advance(120_000);
    assert!(pop(&mut node, 23, "Orders", 30_000).is_empty(), "an acked retry came back");
    let (stats, (open, _, _)) = node.broker.pop_stats();
    assert_eq!((stats.popped, stats.acked, stats.revived), (4, 3, 1));
    assert_eq!(open, 0, "every checkpoint done");
}

#[test]
fn a_change_of_invisible_time_moves_the_redelivery() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    send_all(&mut node, "Orders", 0, 1);
    let got = pop(&mut node, 1, "Orders", 20_000).remove(0);
    node.advance(10_000);
    let reply = node.call(CLIENT, &change_invisible_time(2, "cg", "Orders", &got.handle, 60_000));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    let pop_time: i64 = reply.ext_fields.get("popTime").unwrap().parse().unwrap();
    assert_eq!(pop_time, node.now.wall.0);
    node.advance(20_000);
    assert!(pop(&mut node, 3, "Orders", 20_000).is_empty(), "redelivered at the old time");
    node.advance(41_000);
    let again = pop(&mut node, 4, "Orders", 20_000);
    assert_eq!(bodies(&again), ["m0"]);
    // The new handle acks it: a change then an ack of the new handle, nothing more.
    let new_handle = ReceiptHandle {
        ck_start_offset: got.handle.queue_offset.unwrap(),
        pop_time,
        invisible_time: 60_000,
        ..got.handle.clone()
    };
    let mut node2 = boot(config(FlushMode::Sync), SharedDisk::default());
    send_all(&mut node2, "Orders", 0, 1);
    let got2 = pop(&mut node2, 1, "Orders", 20_000).remove(0);
    let reply = node2.call(CLIENT, &change_invisible_time(2, "cg", "Orders", &got2.handle, 60_000));
    let pop_time2: i64 = reply.ext_fields.get("popTime").unwrap().parse().unwrap();
    let changed = Got {
        handle: ReceiptHandle {
            ck_start_offset: 0,
            pop_time: pop_time2,
            invisible_time: 60_000,
            ..got2.handle.clone()
        },
        ..got2
    };
    ack(&mut node2, 3, "Orders", &changed);
    node2.advance(200_000);
    assert!(pop(&mut node2, 4, "Orders", 20_000).is_empty(), "acked by its new handle, yet redelivered");
    assert_eq!(new_handle.revive_qid, got.handle.revive_qid);
}

#[test]
fn after_the_groups_retry_max_times_a_popped_message_goes_to_the_dlq() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
    let group = SubscriptionGroupConfig { group_name: "cg".into(), retry_max_times: 2, ..Default::default() };
    let update =
        RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, 1, ExtFields::new())
            .with_body(json::to_vec(&group, KeyStyle::Fastjson).unwrap());
    assert_eq!(node.call(CLIENT, &update).response_code(), ResponseCode::SUCCESS);
    send_all(&mut node, "Jobs", 0, 1);
    // Delivered 3 times (retryMaxTimes + 1), never acked: then the DLQ.
    for attempt in 0..3 {
        let got = pop(&mut node, 10 + attempt, "Jobs", 10_000);
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].reconsume_times, attempt);
        node.advance(11_000);
    }
    node.advance(20_000);
    assert!(pop(&mut node, 20, "Jobs", 10_000).is_empty(), "delivered past the limit");
    assert_eq!(queue_bodies(&mut node, 21, "%DLQ%cg"), ["m0"]);
    let (stats, _) = node.broker.pop_stats();
    assert_eq!((stats.revived, stats.dead_lettered), (2, 1));
}

#[test]
fn a_fifo_queue_stays_blocked_while_its_batch_is_out_and_an_attempt_id_repeats_it() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    send_all(&mut node, "Fifo", 0, 3);
    let fifo = |attempt: &str, max: i32| PopRequest {
        queue_id: 0,
        order: Some(attempt.into()),
        ..request("Fifo", max, 30_000)
    };
    let (_, first) = pop_with(&mut node, 1, &fifo("a1", 2));
    assert_eq!(first.iter().map(|g| g.body.as_str()).collect::<Vec<_>>(), ["m0", "m1"]);
    assert!(first.iter().all(|g| g.handle.is_order() && g.attempts_before == 0));
    assert!(pop_with(&mut node, 2, &fifo("a2", 2)).1.is_empty(), "a new attempt while blocked");
    let (_, repeated) = pop_with(&mut node, 3, &fifo("a1", 2));
    assert_eq!(
        repeated.iter().map(|g| g.body.as_str()).collect::<Vec<_>>(),
        ["m0", "m1"],
        "same attempt, same batch"
    );
    ack(&mut node, 4, "Fifo", &first[1]);
    assert!(pop_with(&mut node, 5, &fifo("a3", 2)).1.is_empty(), "m0 is still out");
    // m0's time runs out: it comes first again, m1 (acked) does not, then m2 in order.
    node.advance(31_000);
    let (_, second) = pop_with(&mut node, 6, &fifo("a4", 2));
    assert_eq!(second.iter().map(|g| g.body.as_str()).collect::<Vec<_>>(), ["m0", "m2"]);
    assert_eq!(second[0].attempts_before, 1, "m0's second delivery");
    for (i, got) in second.iter().enumerate() {
        ack(&mut node, 7 + i32::try_from(i).unwrap(), "Fifo", got);
    }
    assert!(pop_with(&mut node, 9, &fifo("a5", 2)).1.is_empty());
    let offset = RemotingCommand::request(
        RequestCode::QUERY_CONSUMER_OFFSET,
        10,
        keel_core::protocol::headers::QueryConsumerOffsetRequestHeader {
            consumer_group: "cg".into(),
            topic: "Fifo".into(),
            queue_id: 0,
            ..Default::default()
        }
        .to_ext_fields(),
    );
    let reply = node.call(CLIENT, &offset);
    assert_eq!(reply.ext_fields.get("offset"), Some("3"), "FIFO acks commit the offset");
}

#[test]
fn a_held_pop_answers_when_a_message_arrives_and_notification_says_so() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    send_all(&mut node, "Orders", 0, 1);
    assert_eq!(pop(&mut node, 9, "Orders", 30_000).len(), 1);
    let held = PopRequest { poll_ms: 15_000, ..request("Orders", 32, 30_000) };
    let cmd = pop_message(1, &held, node.now.wall.0);
    node.send(CLIENT, &cmd);
    node.run_all();
    let early = node.take_reply(CLIENT, 1);
    assert!(early.is_none(), "answered though nothing is there: {:?}", early.map(|r| (r.code, r.remark)));
    send_all(&mut node, "Orders", 2, 1);
    let reply = node.take_reply(CLIENT, 1).expect("the held pop answers");
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    // Not acked: it comes back after its invisible time like any popped message.
    node.advance(31_000);
    assert_eq!(bodies(&pop(&mut node, 8, "Orders", 30_000)), ["m0", "m0"], "both unacked pops come back");
    // Nothing more: held until its poll time, then POLLING_TIMEOUT.
    node.send(CLIENT, &pop_message(2, &held, node.now.wall.0));
    node.run_all();
    node.advance(15_100);
    assert_eq!(node.take_reply(CLIENT, 2).expect("time up").response_code(), ResponseCode::POLLING_TIMEOUT);

    let notification = |opaque: i32, poll: i64| {
        let header = NotificationRequestHeader {
            consumer_group: "cg".into(),
            topic: "Orders".into(),
            queue_id: -1,
            poll_time: poll,
            born_time: 0,
            order: None,
            attempt_id: None,
        };
        RemotingCommand::request(RequestCode::NOTIFICATION, opaque, header.to_ext_fields())
    };
    let reply = node.call(CLIENT, &notification(3, 0));
    assert!(!NotificationResponseHeader::decode(&reply.ext_fields).unwrap().has_msg);
    node.send(CLIENT, &notification(4, 10_000));
    node.run_all();
    assert!(node.take_reply(CLIENT, 4).is_none());
    send_all(&mut node, "Orders", 1, 1);
    let reply = node.take_reply(CLIENT, 4).expect("notified");
    assert!(NotificationResponseHeader::decode(&reply.ext_fields).unwrap().has_msg);
}

#[test]
fn an_answered_ack_survives_a_power_loss_and_what_was_not_acked_is_revived_after_it() {
    for seed in 0..20u64 {
        let config = config(FlushMode::Sync);
        let mut node = boot(config.clone(), SharedDisk::default());
        send_all(&mut node, "Orders", 0, 4);
        let got = pop(&mut node, 1, "Orders", 30_000);
        assert_eq!(got.len(), 4);
        ack(&mut node, 2, "Orders", &got[0]);
        ack(&mut node, 3, "Orders", &got[2]);
        node.advance(usize::try_from(seed).unwrap() as u64 * 500);
        let wall = node.now.wall;
        let disk = node.kill();
        disk.with(|d| d.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed)));
        let (mut node, _) = BrokerNode::boot(config, disk, Now { wall, ..start() }).expect("boot");
        node.open(CLIENT, addr("10.0.0.50:40000"));
        let mut seen = Vec::new();
        for round in 0..6 {
            node.advance(15_000);
            for got in pop(&mut node, 10 + round, "Orders", 30_000) {
                ack(&mut node, 100 + round, "Orders", &got);
                seen.push(got.body);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, ["m1", "m3"], "seed {seed}: acked messages came back or unacked were lost");
    }
}
