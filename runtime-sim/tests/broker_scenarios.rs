//! Broker scenarios on a `SimDisk`, driven by hand: what clients see on the wire for sends,
//! pulls, offsets, restarts and hostile input, and what the name server hears.

use keel_core::io::ConnId;
use keel_core::protocol::body::{RegisterBrokerBody, SubscriptionGroupConfig, SubscriptionGroupWrapper};
use keel_core::protocol::headers::{
    CommandHeader, OffsetResponseHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
    RegisterBrokerRequestHeader, SendMessageResponseHeader,
};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use rand::SeedableRng;

mod support;
use support::*;

/// QUERY_CONSUMER_OFFSET for group `cg`.
fn query_offset(opaque: i32, topic: &str, queue_id: i32) -> RemotingCommand {
    let header = QueryConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        set_zero_if_not_found: None,
    };
    RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET, opaque, header.to_ext_fields())
}

#[test]
fn a_sent_message_is_pulled_back_exactly_with_tag_filtering() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    for (i, tag) in ["TagA", "TagB", "TagA", "TagC"].iter().enumerate() {
        let opaque = i32::try_from(i).unwrap() + 1;
        let reply = node.call(CLIENT, &send(opaque, "Orders", 0, tag, &format!("m{i}")));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
        let header = SendMessageResponseHeader::decode(&reply.ext_fields).unwrap();
        assert_eq!(header.queue_offset, i as i64);
        assert_eq!(header.queue_id, 0);
    }
    let reply = node.call(CLIENT, &pull(10, "Orders", 0, 0, "TagA || TagC", false));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    let got = messages(&reply);
    let want = vec![
        (0, "TagA".into(), "m0".into()),
        (2, "TagA".into(), "m2".into()),
        (3, "TagC".into(), "m3".into()),
    ];
    assert_eq!(got, want);
    let header = PullMessageResponseHeader::decode(&reply.ext_fields).unwrap();
    assert_eq!((header.next_begin_offset, header.min_offset, header.max_offset), (4, 0, 4));

    // Nothing past the end: PULL_NOT_FOUND at once when the consumer does not ask to wait.
    let reply = node.call(CLIENT, &pull(11, "Orders", 0, 4, "*", false));
    assert_eq!(reply.response_code(), ResponseCode::PULL_NOT_FOUND);
}

/// A connection linked in process (a gRPC session's) is served like a socket, but its
/// commands and the broker's replies pass as values: nothing is encoded for it. A message
/// it sends is read back over an ordinary connection byte for byte.
#[test]
fn a_linked_connection_is_served_with_commands_both_ways() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let linked = ConnId(ConnId::LINKED);
    node.open(linked, addr("10.0.0.60:40000"));
    let reply = node.call(linked, &send(1, "Linked", 0, "TagA", "from a session"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    assert_eq!(SendMessageResponseHeader::decode(&reply.ext_fields).unwrap().queue_offset, 0);
    let reply = node.call(linked, &pull(2, "Linked", 0, 0, "*", false));
    assert_eq!(messages(&reply), vec![(0, "TagA".into(), "from a session".into())]);
    assert_eq!(node.peers[&linked].bytes, 0, "the broker encoded a reply for a linked connection");
    let reply = node.call(CLIENT, &pull(3, "Linked", 0, 0, "*", false));
    assert_eq!(messages(&reply), vec![(0, "TagA".into(), "from a session".into())]);
    assert!(node.peers[&CLIENT].bytes > 0);
}

#[test]
fn a_held_pull_is_answered_when_a_message_arrives() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let first = send(1, "Live", 1, "TagA", "first");
    assert_eq!(node.call(CLIENT, &first).response_code(), ResponseCode::SUCCESS);
    node.open(OTHER, addr("10.0.0.51:40000"));
    node.send(OTHER, &pull(7, "Live", 1, 1, "*", true));
    node.run_all();
    assert!(node.take_reply(OTHER, 7).is_none(), "a pull at the end must be held");
    node.advance(100);
    assert!(node.take_reply(OTHER, 7).is_none(), "still held: nothing arrived");

    let second = send(2, "Live", 1, "TagA", "second");
    assert_eq!(node.call(CLIENT, &second).response_code(), ResponseCode::SUCCESS);
    let reply = node.take_reply(OTHER, 7).expect("the held pull answered by the arrival");
    assert_eq!(messages(&reply), vec![(1, "TagA".into(), "second".into())]);
}

#[test]
fn a_held_pull_times_out_with_pull_not_found() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let first = send(1, "Quiet", 0, "TagA", "only");
    assert_eq!(node.call(CLIENT, &first).response_code(), ResponseCode::SUCCESS);
    node.send(CLIENT, &pull(3, "Quiet", 0, 1, "*", true));
    // The hold lasts the consumer's suspend timeout (15 s here, below the broker's cap).
    node.advance(14_999);
    assert!(node.take_reply(CLIENT, 3).is_none());
    node.advance(2);
    let reply = node.take_reply(CLIENT, 3).expect("answered at the hold's deadline");
    assert_eq!(reply.response_code(), ResponseCode::PULL_NOT_FOUND);
}

#[test]
fn under_sync_flush_a_send_is_acknowledged_only_once_durable() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    let request = send(1, "Durable", 0, "TagA", "payload");
    node.send(CLIENT, &request);
    // Carry out one disk operation at a time: the reply may only appear once the data
    // reached the durable image.
    loop {
        if let Some(reply) = node.take_reply(CLIENT, 1) {
            assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
            let flushed = node.broker.store().flushed_end();
            assert!(flushed.0 > 0, "acknowledged before the CommitLog was flushed");
            break;
        }
        assert!(!node.queue.is_empty(), "no reply and nothing left to do");
        node.run(1);
    }
    // Power loss right after the acknowledgement: the message survives.
    let disk = node.kill();
    disk.with(|d| d.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7)));
    let mut node = boot(config(FlushMode::Sync), disk);
    let reply = node.call(CLIENT, &pull(2, "Durable", 0, 0, "*", false));
    assert_eq!(messages(&reply), vec![(0, "TagA".into(), "payload".into())]);
}

#[test]
fn topics_and_committed_offsets_survive_a_clean_restart() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let request = send(1, "Kept", 2, "TagA", "x");
    assert_eq!(node.call(CLIENT, &request).response_code(), ResponseCode::SUCCESS);
    assert_eq!(node.call(CLIENT, &commit_offset(2, "Kept", 2, 1)).response_code(), ResponseCode::SUCCESS);

    let disk = node.shutdown();
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), disk);
    let topic = node.broker.topics().get("Kept").expect("auto-created topic kept");
    assert_eq!(topic.write_queue_nums, 4);
    let reply = node.call(CLIENT, &query_offset(3, "Kept", 2));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    assert_eq!(OffsetResponseHeader::decode(&reply.ext_fields).unwrap().offset, 1);
}

#[test]
fn committed_offsets_are_persisted_periodically_and_survive_a_crash() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let request = send(1, "Periodic", 0, "TagA", "x");
    assert_eq!(node.call(CLIENT, &request).response_code(), ResponseCode::SUCCESS);
    assert_eq!(node.call(CLIENT, &commit_offset(2, "Periodic", 0, 1)).response_code(), ResponseCode::SUCCESS);
    node.advance(6_000);
    let disk = node.kill();
    disk.with(|d| d.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3)));
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), disk);
    let reply = node.call(CLIENT, &query_offset(3, "Periodic", 0));
    assert_eq!(OffsetResponseHeader::decode(&reply.ext_fields).unwrap().offset, 1);
}

#[test]
fn a_malformed_frame_closes_only_its_connection() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    node.open(OTHER, addr("10.0.0.51:40000"));
    // A frame claiming a header longer than the frame itself.
    node.write(OTHER, &[0, 0, 0, 8, 0, 0, 0x7f, 0xff, 1, 2, 3, 4]);
    assert!(node.peers[&OTHER].closed.is_some(), "the hostile connection is closed");
    assert!(node.peers[&CLIENT].closed.is_none());
    let request = send(1, "Unharmed", 0, "TagA", "fine");
    assert_eq!(node.call(CLIENT, &request).response_code(), ResponseCode::SUCCESS);
    assert!(node.fatal.is_empty());
}

#[test]
fn the_broker_registers_with_its_name_server_and_redials_a_lost_link() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    node.advance(1);
    let (conn, namesrv, _) = node.dials.pop().expect("a dial to the name server at boot");
    assert_eq!(namesrv, addr("10.0.0.9:9876"));
    node.open(conn, namesrv);
    let register = node.peers[&conn].inbox.first().cloned().expect("REGISTER_BROKER on connect");
    assert_eq!(register.request_code(), RequestCode::REGISTER_BROKER);
    let header = RegisterBrokerRequestHeader::decode(&register.ext_fields).unwrap();
    assert_eq!((header.broker_addr.as_str(), header.broker_id), ("10.0.0.1:10911", 0));
    let body: RegisterBrokerBody = json::from_slice(&register.body).unwrap();
    assert!(body.topic_config_serialize_wrapper.topic_config_table.contains_key("TBW102"));

    // A new topic is announced at once.
    let request = send(1, "Fresh", 0, "TagA", "x");
    assert_eq!(node.call(CLIENT, &request).response_code(), ResponseCode::SUCCESS);
    let announced =
        node.peers[&conn].inbox.iter().filter(|c| c.request_code() == RequestCode::REGISTER_BROKER).count();
    assert_eq!(announced, 2);

    // The link drops: it is re-dialled after a pause, not at once.
    node.close(conn);
    node.advance(1_000);
    assert!(node.dials.is_empty(), "re-dialled without a pause");
    node.advance(3_000);
    assert_eq!(node.dials.len(), 1, "re-dialled after the pause");
}

#[test]
fn with_compressed_register_the_registration_body_is_rocketmq_compressed_form() {
    let mut config = config(FlushMode::Async { interval_ms: 500 });
    config.compressed_register = true;
    let mut node = boot(config, SharedDisk::default());
    node.advance(1);
    let (conn, namesrv, _) = node.dials.pop().expect("a dial to the name server at boot");
    node.open(conn, namesrv);
    let register = node.peers[&conn].inbox.first().cloned().expect("REGISTER_BROKER on connect");
    let header = RegisterBrokerRequestHeader::decode(&register.ext_fields).unwrap();
    assert_eq!(header.compressed, Some(true));
    assert_eq!(header.body_crc32, Some(keel_core::protocol::message::stored::masked_crc32(&register.body)));
    let body = keel_core::protocol::body::register_compressed::decode_compressed(&register.body).unwrap();
    assert!(body.topic_config_serialize_wrapper.topic_config_table.contains_key("TBW102"));
}

#[test]
fn a_request_arriving_while_the_store_boots_is_served_once_it_is_ready() {
    let config = config(FlushMode::Sync);
    let (mut node, _) = BrokerNode::start(config, SharedDisk::default(), start()).expect("start");
    assert!(!node.broker.store().is_ready(), "boot operations are still queued");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    node.send(CLIENT, &send(1, "Early", 0, "TagA", "first"));
    assert!(node.take_reply(CLIENT, 1).is_none(), "answered before the store was ready");
    node.run_all();
    let reply = node.take_reply(CLIENT, 1).expect("served after boot");
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    let reply = node.call(CLIENT, &pull(2, "Early", 0, 0, "*", false));
    assert_eq!(messages(&reply), vec![(0, "TagA".into(), "first".into())]);
}

#[test]
fn subscription_groups_are_auto_created_administered_and_persisted() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let request = send(1, "Grouped", 0, "TagA", "x");
    assert_eq!(node.call(CLIENT, &request).response_code(), ResponseCode::SUCCESS);
    // A pull by an unknown group creates it.
    assert_eq!(
        node.call(CLIENT, &pull(2, "Grouped", 0, 0, "*", false)).response_code(),
        ResponseCode::SUCCESS
    );
    let all = RemotingCommand::request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, 3, ExtFields::new());
    let table: SubscriptionGroupWrapper = json::from_slice(&node.call(CLIENT, &all).body).unwrap();
    assert!(table.subscription_group_table["cg"].consume_enable);

    // mqadmin updateSubGroup turns consumption off: pulls are refused.
    let disabled =
        SubscriptionGroupConfig { group_name: "cg".into(), consume_enable: false, ..Default::default() };
    let update =
        RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, 4, ExtFields::new())
            .with_body(json::to_vec(&disabled, KeyStyle::Fastjson).unwrap());
    assert_eq!(node.call(CLIENT, &update).response_code(), ResponseCode::SUCCESS);
    assert_eq!(
        node.call(CLIENT, &pull(5, "Grouped", 0, 0, "*", false)).response_code(),
        ResponseCode::NO_PERMISSION
    );

    // The setting survives a restart (subscriptionGroup.json).
    let disk = node.shutdown();
    let text = disk.with(|d| keel_runtime_sim::store_node::read_file(d, "config/subscriptionGroup.json"));
    assert!(String::from_utf8_lossy(&text).contains(r#""consumeEnable":false"#));
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), disk);
    assert_eq!(
        node.call(CLIENT, &pull(6, "Grouped", 0, 0, "*", false)).response_code(),
        ResponseCode::NO_PERMISSION
    );

    // Deleting the group (and its offsets) lets it be auto-created afresh.
    let delete = RemotingCommand::request(
        RequestCode::DELETE_SUBSCRIPTIONGROUP,
        7,
        [("groupName", "cg"), ("cleanOffset", "true")].into_iter().collect::<ExtFields>(),
    );
    assert_eq!(node.call(CLIENT, &delete).response_code(), ResponseCode::SUCCESS);
    assert_eq!(
        node.call(CLIENT, &pull(8, "Grouped", 0, 0, "*", false)).response_code(),
        ResponseCode::SUCCESS
    );
}

#[test]
fn without_auto_creation_an_unknown_group_may_not_pull() {
    let mut strict = config(FlushMode::Async { interval_ms: 500 });
    strict.auto_create_subscription_group = false;
    let mut node = boot(strict, SharedDisk::default());
    let request = send(1, "Strict", 0, "TagA", "x");
    assert_eq!(node.call(CLIENT, &request).response_code(), ResponseCode::SUCCESS);
    let reply = node.call(CLIENT, &pull(2, "Strict", 0, 0, "*", false));
    assert_eq!(reply.response_code(), ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST);
}

#[test]
fn a_held_pull_does_not_block_later_requests_on_its_connection() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let first = send(1, "Shared", 0, "TagA", "first");
    assert_eq!(node.call(CLIENT, &first).response_code(), ResponseCode::SUCCESS);
    node.send(CLIENT, &pull(2, "Shared", 1, 0, "*", true));
    node.run_all();
    assert!(node.take_reply(CLIENT, 2).is_none(), "queue 1 is empty: the pull is held");
    // Requests behind the held pull on the same connection are answered at once.
    let reply = node.call(CLIENT, &pull(3, "Shared", 0, 0, "*", false));
    assert_eq!(messages(&reply), vec![(0, "TagA".into(), "first".into())]);
    let second = send(4, "Shared", 1, "TagA", "second");
    assert_eq!(node.call(CLIENT, &second).response_code(), ResponseCode::SUCCESS);
    let held = node.take_reply(CLIENT, 2).expect("the held pull answered by the arrival");
    assert_eq!(messages(&held), vec![(0, "TagA".into(), "second".into())]);
}

#[test]
fn a_damaged_record_is_never_delivered_nor_skipped() {
    let disk = SharedDisk::default();
    let mut node = boot(config(FlushMode::Sync), disk.clone());
    let mut phys = Vec::new();
    for i in 0..3 {
        let reply = node.call(CLIENT, &send(i + 1, "Orders", 0, "TagA", &format!("m{i}")));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
        let id = SendMessageResponseHeader::decode(&reply.ext_fields).unwrap().msg_id;
        phys.push(u64::from_str_radix(&id[id.len() - 16..], 16).unwrap());
    }
    // The second record reads back with one byte wrong (a misread, or rot on the platter).
    let segment = keel_core::store::paths::segment(0);
    let at = phys[1] + 40;
    let mut byte = [0u8; 1];
    disk.with(|d| keel_core::io::StoreRead::read_at(d, &segment, at, &mut byte)).unwrap();
    let flip = |value: u8| {
        let op = keel_core::io::DiskOp::Write { file: segment.clone(), offset: at, data: vec![value].into() };
        disk.with(|d| d.execute(&op, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))).unwrap();
    };
    flip(byte[0] ^ 0x10);

    // Delivered: what comes before it, and the pull stops there.
    let reply = node.call(CLIENT, &pull(10, "Orders", 0, 0, "*", false));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    assert_eq!(messages(&reply), vec![(0, "TagA".into(), "m0".into())]);
    assert_eq!(PullMessageResponseHeader::decode(&reply.ext_fields).unwrap().next_begin_offset, 1);
    // At the damaged record: an error, not the bytes, and no skipping past it.
    let reply = node.call(CLIENT, &pull(11, "Orders", 0, 1, "*", false));
    assert_eq!(reply.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(reply.body.is_empty());
    assert_eq!(PullMessageResponseHeader::decode(&reply.ext_fields).unwrap().next_begin_offset, 1);
    // Read right again (the misread was transient): the consumer gets it, in order.
    flip(byte[0]);
    let reply = node.call(CLIENT, &pull(12, "Orders", 0, 1, "*", false));
    assert_eq!(messages(&reply), vec![(1, "TagA".into(), "m1".into()), (2, "TagA".into(), "m2".into())]);
}

#[test]
fn runtime_info_reports_put_and_get_rates_over_ten_seconds_a_minute_and_ten_minutes() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 500 }), SharedDisk::default());
    let tps = |info: &std::collections::BTreeMap<String, String>, key: &str| -> Vec<f64> {
        info[key].split(' ').map(|v| v.parse().expect("a number")).collect()
    };
    // 20 messages a second for two minutes, pulled back 32 at a time every 4 s (8 a second).
    let mut opaque = 0;
    let mut pulled = 0;
    for tenth in 0..1_200 {
        for _ in 0..2 {
            opaque += 1;
            let reply = node.call(CLIENT, &send(opaque, "Rated", 0, "T", "m"));
            assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
        }
        if tenth % 40 == 0 {
            opaque += 1;
            pulled +=
                messages(&node.call(CLIENT, &pull(opaque, "Rated", 0, pulled, "*", false))).len() as i64;
        }
        node.advance(100);
    }
    let info = runtime_info(&mut node, 1_000_000);
    let put = tps(&info, "putTps");
    let got = tps(&info, "getTransferredTps");
    for (rate, want) in put.iter().zip([20.0, 20.0, 20.0]) {
        assert!((rate - want).abs() < 2.5, "putTps {put:?}");
    }
    for (rate, want) in got.iter().zip([8.0, 8.0, 8.0]) {
        assert!((rate - want).abs() < 3.3, "getTransferredTps {got:?}");
    }
    // Quiet for nine minutes: the 10 s and 1 min rates fall to zero; the last ten minutes
    // hold the second minute of traffic, 1,200 messages.
    node.advance(540_000);
    let info = runtime_info(&mut node, 1_000_001);
    let put = tps(&info, "putTps");
    assert_eq!(put[..2], [0.0, 0.0], "putTps {put:?}");
    assert!((put[2] - 1_200.0 / 600.0).abs() < 0.1, "putTps {put:?}");
    assert_eq!(info["msgPutTotalTodayNow"], "2400");
    assert_eq!(info["msgPutTotalTodayMorning"], "0", "the boot day counts from boot");

    // Past the next UTC midnight, today's morning mark is the total before it.
    let to_midnight = 86_400_000 - node.now.wall.0.rem_euclid(86_400_000);
    node.advance(u64::try_from(to_midnight).unwrap() + 1_000);
    for n in 0..3 {
        let reply = node.call(CLIENT, &send(2_000_000 + n, "Rated", 0, "T", "m"));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    }
    let info = runtime_info(&mut node, 1_000_002);
    assert_eq!(info["msgPutTotalTodayNow"], "2403");
    assert_eq!(info["msgPutTotalTodayMorning"], "2400");
    assert_eq!(info["msgPutTotalYesterdayMorning"], "0");
    assert_eq!(info["msgGetTotalTodayMorning"], pulled.to_string());
}

#[test]
fn runtime_info_reports_what_waits_for_durability_bytes_behind_and_the_oldest_sends_wait() {
    let mut node = boot(config(FlushMode::Sync), SharedDisk::default());
    let first = node.call(CLIENT, &send(1, "Behind", 0, "T", "first"));
    assert_eq!(first.response_code(), ResponseCode::SUCCESS, "{:?}", first.remark);
    let info = |node: &mut BrokerNode, opaque: i32| -> (u64, u64, u64) {
        let request =
            RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO, opaque, ExtFields::new());
        node.send(CLIENT, &request);
        let reply = node.take_reply(CLIENT, opaque).expect("runtime info answers at once");
        let table: keel_core::protocol::body::KvTable = json::from_slice(&reply.body).unwrap();
        let number = |key: &str| table.table[key].parse::<u64>().unwrap();
        (
            number("dispatchBehindBytes"),
            number("sendThreadPoolQueueSize"),
            number("sendThreadPoolQueueHeadWaitTimeMills"),
        )
    };
    assert_eq!(info(&mut node, 3), (0, 0, 0), "everything stored is visible");
    // A send whose write and flush have not been carried out yet, 250 ms ago.
    node.send(CLIENT, &send(4, "Behind", 0, "T", "not yet flushed"));
    node.now.mono = node.now.mono.plus_millis(250);
    let (behind, waiting, head_wait) = info(&mut node, 5);
    assert!(behind > 0, "the appended record is behind");
    assert_eq!((waiting, head_wait), (1, 250), "one send waits for its fsync, for 250 ms");
    node.run_all();
    assert_eq!(info(&mut node, 6), (0, 0, 0), "visible and answered once flushed");
}

/// A send that waited in line longer than `waitTimeMillsInSendQueue` (200 ms) before the
/// broker got to it is refused SYSTEM_BUSY with RocketMQ's remark (its clients back off on
/// it); one that waited less is stored.
#[test]
fn a_send_that_waited_in_line_too_long_is_refused_busy() {
    let mut node = boot(config(FlushMode::Async { interval_ms: 100 }), SharedDisk::default());
    node.send_read_earlier(CLIENT, &send(1, "Line", 0, "T", "late"), 250);
    node.run_all();
    let reply = node.take_reply(CLIENT, 1).expect("answered");
    assert_eq!(reply.response_code(), ResponseCode::SYSTEM_BUSY);
    assert!(
        reply.remark.as_deref().unwrap_or("").starts_with("[TIMEOUT_CLEAN_QUEUE]broker busy"),
        "{:?}",
        reply.remark
    );
    node.send_read_earlier(CLIENT, &send(2, "Line", 0, "T", "in time"), 150);
    node.run_all();
    assert_eq!(node.take_reply(CLIENT, 2).expect("answered").response_code(), ResponseCode::SUCCESS);
    assert_eq!(node.broker.stats().sends_shed, 1);
}

/// Sends faster than the disk takes them are refused SYSTEM_BUSY once the appended bytes
/// not yet written pass `max_unwritten_bytes`, so memory stays bounded; once the disk has
/// caught up they are stored again.
#[test]
fn sends_beyond_what_the_disk_has_taken_are_refused_busy_until_it_catches_up() {
    let mut config = config(FlushMode::Async { interval_ms: 100 });
    config.max_unwritten_bytes = 4096;
    let mut node = boot(config, SharedDisk::default());
    let body = "b".repeat(1000);
    // No disk work is carried out: the bytes stay unwritten.
    let codes: Vec<ResponseCode> = (1..=8)
        .map(|i| {
            node.send(CLIENT, &send(i, "Disk", 0, "T", &body));
            node.pump();
            node.take_reply(CLIENT, i).map_or(ResponseCode::SUCCESS, |r| r.response_code())
        })
        .collect();
    assert!(codes.contains(&ResponseCode::SYSTEM_BUSY), "{codes:?}");
    assert!(codes[..2].iter().all(|c| *c == ResponseCode::SUCCESS), "{codes:?}");
    node.run_all();
    assert_eq!(node.call(CLIENT, &send(20, "Disk", 0, "T", &body)).response_code(), ResponseCode::SUCCESS);
}

/// The run-loop contract allows several inputs before the outputs are drained (the client
/// driver feeds a batch of commands a turn): the broker queues what each input causes, in
/// order, and the batch ends as fed one by one would, each send acknowledged in its place.
#[test]
fn several_inputs_fed_before_draining_are_served_as_if_fed_one_by_one() {
    for flush in [FlushMode::Sync, FlushMode::Async { interval_ms: 100 }] {
        let mut node = boot(config(flush), SharedDisk::default());
        let now = node.now;
        for (opaque, body) in [(1, "first"), (2, "second"), (3, "third")] {
            let data = keel_core::protocol::encode_to_bytes(&send(opaque, "Batch", 0, "TagA", body));
            let input = keel_core::io::Input::Bytes { conn: CLIENT, data, received: now.mono };
            keel_core::io::Machine::handle(&mut node.broker, now, input);
        }
        node.pump();
        node.run_all();
        node.advance(200);
        for (opaque, offset) in [(1, "0"), (2, "1"), (3, "2")] {
            let reply = node.take_reply(CLIENT, opaque).expect("every send of the batch is answered");
            assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
            assert_eq!(reply.ext_fields.get("queueOffset"), Some(offset));
        }
        assert_eq!(queue_bodies(&mut node, 10, "Batch"), ["first", "second", "third"]);
    }
}
