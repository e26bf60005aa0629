//! `mqadmin` against a running `keel` (name server and broker in one process): a producer
//! sends, a consumer group heartbeats and commits part of the way, and each sub-command
//! prints what that traffic made, in RocketMQ's columns and as `--json` rows; a mistake
//! gets plain words on stderr and a non-zero exit. Real processes: normal builds only.
#![cfg(not(madsim))]

mod support;

use bytes::Bytes;
use keel_core::protocol::body::{
    ConsumerData, HeartbeatData, ProducerData, ResetOffsetBody, SubscriptionData,
};
use keel_core::protocol::client_requests::{pull_message, send_message, OutgoingMessage, PullRequest};
use keel_core::protocol::headers::{
    CommandHeader, PullMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use support::{scratch_dir, Client, ServerProcess};

const TOPIC: &str = "AdminOrders";

/// Run mqadmin with `args`; (exit success, stdout, stderr).
fn mqadmin(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mqadmin")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Run mqadmin with `args`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let (success, out, err) = mqadmin(args);
    assert!(success, "mqadmin {args:?} failed: {err}");
    out
}

fn heartbeat(opaque: i32) -> RemotingCommand {
    let data = HeartbeatData {
        client_id: "127.0.0.1@admin-test".into(),
        consumer_data_set: vec![ConsumerData {
            consume_from_where: "CONSUME_FROM_FIRST_OFFSET".into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            group_name: "cg-admin".into(),
            message_model: "CLUSTERING".into(),
            subscription_data_set: vec![SubscriptionData::from_expression(TOPIC, "TagA || TagB", 1)],
            unit_mode: false,
        }],
        producer_data_set: vec![ProducerData { group_name: "pg-admin".into() }],
        ..HeartbeatData::default()
    };
    RemotingCommand::request(RequestCode::HEART_BEAT, opaque, ExtFields::new())
        .with_body(json::to_body(&data, KeyStyle::Fastjson))
}

#[test]
fn mqadmin_reports_topics_progress_lag_and_connections_of_a_running_broker() {
    let data = scratch_dir("mqadmin").join("data");
    let keel = ServerProcess::start(
        env!("CARGO_BIN_EXE_keel"),
        &["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"],
    );
    let (namesrv, broker) = (keel.addr_in_boot_line(0).to_string(), keel.addr_in_boot_line(1));

    // 7 messages to queue 0 and 3 to queue 1; the group commits 5 of queue 0's.
    let mut client = Client::connect(broker);
    for i in 0..10 {
        let message = OutgoingMessage {
            topic: TOPIC.into(),
            tags: Some("TagA".into()),
            keys: Some(format!("k{i}")),
            user_properties: Vec::new(),
            body: Bytes::from(format!("order {i}")),
        };
        let reply = client.call(&send_message(i + 1, "pg-admin", if i < 7 { 0 } else { 1 }, &message));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }
    let reply = client.call(&heartbeat(100));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "cg-admin".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        commit_offset: 5,
    };
    let reply = client.call(&RemotingCommand::request(
        RequestCode::UPDATE_CONSUMER_OFFSET,
        101,
        commit.to_ext_fields(),
    ));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);

    // The topic reaches the name server with the broker's next registration.
    let mut topics = String::new();
    for _ in 0..100 {
        topics = ok(&["topicList", "-n", &namesrv]);
        if topics.lines().any(|t| t == TOPIC) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(topics.lines().any(|t| t == TOPIC), "{topics}");
    let by_cluster = ok(&["topicList", "-n", &namesrv, "-c"]);
    let row = by_cluster.lines().find(|l| l.contains(TOPIC)).unwrap_or_default();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["DefaultCluster", TOPIC, "cg-admin"],
        "{by_cluster}"
    );
    let route = ok(&["topicRoute", "-n", &namesrv, "-t", TOPIC]);
    assert!(route.contains(&format!("\"0\":\"{broker}\"")), "{route}");

    let status = ok(&["topicStatus", "-n", &namesrv, "-t", TOPIC]);
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("#Broker Name") && lines[0].contains("#Max Offset"), "{status}");
    let queue = |id: &str| -> Vec<String> {
        let row = lines.iter().find(|l| l.split_whitespace().nth(1) == Some(id)).unwrap();
        row.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(queue("0")[2..4], ["0", "7"], "{status}");
    assert_eq!(queue("1")[2..4], ["0", "3"], "{status}");
    assert!(queue("0").len() > 4, "queue 0's last store time is printed: {status}");

    let progress = ok(&["consumerProgress", "-n", &namesrv, "-g", "cg-admin"]);
    let row =
        progress.lines().find(|l| l.starts_with(TOPIC) && l.split_whitespace().nth(2) == Some("0")).unwrap();
    let row: Vec<&str> = row.split_whitespace().collect();
    // Topic, broker, queue, broker offset, consumer offset, client, diff.
    assert_eq!(row[3..7], ["7", "5", "NA", "2"], "{progress}");
    assert!(progress.contains("Diff Total: 5"), "queue 0 lags 2 and queue 1 lags 3: {progress}");
    let rows = ok(&["consumerProgress", "-n", &namesrv, "-g", "cg-admin", "--json"]);
    assert!(
        rows.contains(&format!(
            r#"{{"topic":"{TOPIC}","brokerName":"broker-a","queueId":0,"brokerOffset":7,"consumerOffset":5,"diff":2,"#
        )),
        "{rows}"
    );

    let members = ok(&["consumerConnection", "-n", &namesrv, "-g", "cg-admin"]);
    assert!(members.starts_with("001  127.0.0.1@admin-test"), "{members}");
    assert!(
        members.contains(&format!("Topic: {TOPIC}")) && members.contains("SubExpression: TagA || TagB"),
        "{members}"
    );
    assert!(members.contains("MessageModel: CLUSTERING"), "{members}");
    let producers = ok(&["producerConnection", "-n", &namesrv, "-g", "pg-admin", "-t", TOPIC]);
    assert!(producers.starts_with("0001  127.0.0.1@admin-test"), "{producers}");

    let groups = ok(&["consumerProgress", "-n", &namesrv]);
    assert!(groups.starts_with("#Group"), "{groups}");

    let cluster = ok(&["clusterList", "-n", &namesrv]);
    assert!(cluster.lines().any(|l| l.contains("broker-a") && l.contains(&broker.to_string())), "{cluster}");
    let status = ok(&["brokerStatus", "-n", &namesrv, "-b", &broker.to_string()]);
    assert!(status.lines().any(|l| l.starts_with("msgPutTotalTodayNow") && l.ends_with(": 10")), "{status}");

    // Mistakes: plain words and a failing exit status.
    let (success, _, err) = mqadmin(&["consumerConnection", "-n", &namesrv, "-g", "nobody"]);
    assert!(!success && err.contains("the consumer group nobody is not online"), "{err}");
    let (success, _, err) = mqadmin(&["topicStatus", "-n", "127.0.0.1:1", "-t", TOPIC]);
    assert!(!success && err.contains("cannot connect to 127.0.0.1:1"), "{err}");
    let (success, _, err) = mqadmin(&["topicStatus", "-n", "not an address", "-t", TOPIC]);
    assert!(!success && err.contains("the name server address"), "{err}");
    drop(client);
}

#[test]
fn mqadmin_changes_topics_and_groups_and_finds_the_messages_it_sent() {
    let data = scratch_dir("mqadmin-change").join("data");
    let keel = ServerProcess::start(
        env!("CARGO_BIN_EXE_keel"),
        &["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"],
    );
    let (namesrv, broker) = (keel.addr_in_boot_line(0).to_string(), keel.addr_in_boot_line(1).to_string());
    // The sub-command, then `-n`, then its own options.
    let with = |args: &[&str]| -> Vec<String> {
        let (command, rest) = args.split_first().unwrap();
        [*command, "-n", namesrv.as_str()].iter().chain(rest).map(|s| (*s).to_owned()).collect()
    };
    let run = |args: &[&str]| {
        let args = with(args);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let fails = |args: &[&str]| {
        let args = with(args);
        let (success, _, err) = mqadmin(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!success, "mqadmin {args:?} should fail");
        err
    };

    let created = run(&["updateTopic", "-c", "DefaultCluster", "-t", "Shop", "-r", "2", "-w", "2"]);
    assert!(created.starts_with(&format!("create topic to {broker} success.")), "{created}");
    assert!(
        created.contains("TopicConfig [topicName=Shop, readQueueNums=2, writeQueueNums=2, perm=RW-"),
        "{created}"
    );
    // The queues are the ones asked for, once the name server has the topic.
    let mut status = String::new();
    for _ in 0..100 {
        let (success, out, _) = mqadmin(&["topicStatus", "-n", &namesrv, "-t", "Shop"]);
        if success {
            status = out;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status.lines().count(), 3, "a header and two queues: {status}");

    let sent = run(&["sendMessage", "-t", "Shop", "-p", "hello", "-k", "k1 k2", "-c", "TagX", "-i", "1"]);
    let row: Vec<&str> = sent.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["broker-a", "1", "SEND_OK"], "{sent}");
    let id = row[3].to_owned();

    let by_id = run(&["queryMsgById", "-i", &id]);
    assert!(by_id.contains("Topic:               Shop"), "{by_id}");
    assert!(
        by_id.contains("Tags:                [TagX]") && by_id.contains("Keys:                [k1 k2]"),
        "{by_id}"
    );
    assert!(by_id.contains("Queue ID:            1") && by_id.contains("Queue Offset:        0"), "{by_id}");
    let path = by_id.lines().find_map(|l| l.strip_prefix("Message Body Path:")).unwrap().trim();
    assert_eq!(std::fs::read(path).unwrap(), b"hello");
    let by_offset = run(&["queryMsgByOffset", "-t", "Shop", "-b", "broker-a", "-i", "1", "-o", "0"]);
    assert!(by_offset.starts_with(&format!("OffsetID:            {id}")), "{by_offset}");
    let err = fails(&["queryMsgByOffset", "-t", "Shop", "-b", "broker-a", "-i", "1", "-o", "5"]);
    assert!(err.contains("no message at offset 5 of Shop queue 1 on broker-a"), "{err}");
    let err = fails(&["queryMsgById", "-i", "not-hex"]);
    assert!(err.contains("is not an offset message id"), "{err}");

    run(&["sendMessage", "-t", "Shop", "-p", "second", "-i", "1"]);
    run(&["sendMessage", "-t", "Shop", "-p", "third", "-i", "0"]);
    let printed = run(&["printMsg", "-t", "Shop"]);
    assert!(
        printed
            .contains("minOffset=0, maxOffset=2, MessageQueue [topic=Shop, brokerName=broker-a, queueId=1]"),
        "{printed}"
    );
    let bodies: Vec<&str> = printed.lines().filter_map(|l| l.split(" BODY: ").nth(1)).collect();
    assert_eq!(bodies, ["third", "hello", "second"], "queue 0, then queue 1 in order: {printed}");
    let hidden = run(&["printMsg", "-t", "Shop", "-d", "false"]);
    assert_eq!(hidden.matches("BODY: NOT PRINT BODY").count(), 3, "{hidden}");
    let consumed = run(&["consumeMessage", "-t", "Shop", "-b", "broker-a", "-i", "1", "-o", "1"]);
    let bodies: Vec<&str> = consumed.lines().filter_map(|l| l.split(" BODY: ").nth(1)).collect();
    assert_eq!(bodies, ["second"], "{consumed}");
    assert!(consumed.ends_with("Consume ok\n"), "{consumed}");
    let limited = run(&["consumeMessage", "-t", "Shop", "-c", "2"]);
    assert_eq!(limited.matches(" BODY: ").count(), 2, "{limited}");
    let err = fails(&["consumeMessage", "-t", "Shop", "-b", "broker-a"]);
    assert!(err.contains("name a queue with all of -b, -i and -o"), "{err}");

    // Read-only: the broker refuses sends.
    let changed = run(&["updateTopicPerm", "-c", "DefaultCluster", "-t", "Shop", "-p", "4"]);
    assert_eq!(changed, format!("update topic perm from 6 to 4 in {broker} success.\n"));
    let err = fails(&["sendMessage", "-t", "Shop", "-p", "refused"]);
    assert!(err.contains("NO_PERMISSION"), "{err}");

    let group = run(&["updateSubGroup", "-b", &broker, "-g", "gx", "-r", "3"]);
    assert!(group.contains(r#""groupName":"gx""#) && group.contains(r#""retryMaxTimes":3"#), "{group}");
    let deleted = run(&["deleteSubGroup", "-b", &broker, "-g", "gx"]);
    assert_eq!(deleted, format!("delete subscription group [gx] from broker [{broker}] success.\n"));
    let err = fails(&["updateSubGroup", "-g", "gx"]);
    assert!(err.contains("name either a broker (-b host:port) or a cluster (-c name)"), "{err}");

    let config = run(&["getBrokerConfig", "-b", &broker]);
    assert!(config.starts_with(&format!("============{broker}============\n")), "{config}");
    let setting = |text: &str, key: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.split_once("=  ").filter(|(k, _)| k.trim() == key).map(|(_, v)| v.to_owned()))
    };
    assert_eq!(setting(&config, "brokerName").as_deref(), Some("broker-a"), "{config}");
    assert_eq!(setting(&config, "slaveReadEnable").as_deref(), Some("false"), "{config}");
    let updated = run(&["updateBrokerConfig", "-c", "DefaultCluster", "-k", "slaveReadEnable", "-v", "true"]);
    assert_eq!(updated, format!("update broker config success, {broker}\n"));
    let config = run(&["getBrokerConfig", "-c", "DefaultCluster"]);
    assert_eq!(setting(&config, "slaveReadEnable").as_deref(), Some("true"), "{config}");
    let err = fails(&["updateBrokerConfig", "-b", &broker, "-k", "brokerName", "-v", "other"]);
    assert!(err.contains("brokerName cannot change while the broker runs"), "{err}");
    let err = fails(&["updateBrokerConfig", "-b", &broker, "-k", "waitTimeMillsInSendQueue", "-v", "soon"]);
    assert!(err.contains("not a value waitTimeMillsInSendQueue takes"), "{err}");

    let deleted = run(&["deleteTopic", "-t", "Shop", "-c", "DefaultCluster"]);
    assert!(deleted.contains("delete topic [Shop] from NameServer success."), "{deleted}");
    assert!(!run(&["topicList"]).lines().any(|t| t == "Shop"));
    let err = fails(&["deleteTopic", "-t", "Shop", "-c", "NoSuchCluster"]);
    assert!(err.contains("the cluster NoSuchCluster has no master"), "{err}");
}

#[test]
fn reset_offset_by_time_is_pushed_to_members_and_sticks_for_clients_that_ignore_it() {
    let data = scratch_dir("mqadmin-reset").join("data");
    let keel = ServerProcess::start(
        env!("CARGO_BIN_EXE_keel"),
        &["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"],
    );
    let (namesrv, broker) = (keel.addr_in_boot_line(0).to_string(), keel.addr_in_boot_line(1));
    let mut producer = Client::connect(broker);
    let mut stored_at = Vec::new();
    for i in 0..10 {
        let message = OutgoingMessage {
            topic: TOPIC.into(),
            body: Bytes::from(format!("m{i}")),
            ..OutgoingMessage::default()
        };
        let reply = producer.call(&send_message(i + 1, "pg-admin", 0, &message));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
        stored_at.push(std::time::SystemTime::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A member of cg-admin, caught up: it committed all 10 of queue 0.
    let mut member = Client::connect(broker);
    assert_eq!(member.call(&heartbeat(1)).response_code(), ResponseCode::SUCCESS);
    let commit = |offset: i64, opaque: i32| {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: "cg-admin".into(),
            topic: TOPIC.into(),
            queue_id: 0,
            commit_offset: offset,
        };
        RemotingCommand::request(RequestCode::UPDATE_CONSUMER_OFFSET, opaque, header.to_ext_fields())
    };
    assert_eq!(producer.call(&commit(10, 50)).response_code(), ResponseCode::SUCCESS);

    // Back to the time of the 5th message (queue 0's offset 4).
    let millis = stored_at[3].duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 10;
    let mut out = String::new();
    for _ in 0..100 {
        let (success, text, _) = mqadmin(&[
            "resetOffsetByTime",
            "-n",
            &namesrv,
            "-g",
            "cg-admin",
            "-t",
            TOPIC,
            "-s",
            &millis.to_string(),
        ]);
        if success {
            out = text;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(out.starts_with("rollback consumer offset by specified consumerGroup[cg-admin]"), "{out}");
    let row: Vec<&str> =
        out.lines().find(|l| l.split_whitespace().nth(1) == Some("0")).unwrap().split_whitespace().collect();
    assert_eq!(row, ["broker-a", "0", "4"], "{out}");

    // The member is told: RESET_CONSUMER_CLIENT_OFFSET with the new offsets.
    let pushed = member.next_request();
    assert_eq!(pushed.request_code(), RequestCode::RESET_CONSUMER_CLIENT_OFFSET);
    assert_eq!(pushed.ext_fields.get("group"), Some("cg-admin"));
    let body: ResetOffsetBody = json::from_slice(&pushed.body).unwrap();
    assert_eq!(body.offset_table[&keel_core::protocol::body::MessageQueue::new(TOPIC, "broker-a", 0)], 4);

    // A client that ignores the push commits its old position: not taken while the reset
    // is pending, and its pull from there is moved to the reset offset.
    assert_eq!(producer.call(&commit(10, 51)).response_code(), ResponseCode::SUCCESS);
    let pull = |offset: i64, opaque: i32| {
        let request = PullRequest {
            group: "cg-admin".into(),
            topic: TOPIC.into(),
            queue_id: 0,
            offset,
            max_messages: 32,
            expression: "*".into(),
            suspend_ms: 0,
        };
        pull_message(opaque, &request)
    };
    let moved = producer.call(&pull(10, 52));
    assert_eq!(moved.response_code(), ResponseCode::PULL_OFFSET_MOVED);
    assert_eq!(PullMessageResponseHeader::decode(&moved.ext_fields).unwrap().next_begin_offset, 4);
    let again = producer.call(&pull(4, 53));
    assert_eq!(again.response_code(), ResponseCode::SUCCESS, "{:?}", again.remark);
    let progress = ok(&["consumerProgress", "-n", &namesrv, "-g", "cg-admin", "--json"]);
    assert!(progress.contains(r#""queueId":0,"brokerOffset":10,"consumerOffset":4,"diff":6"#), "{progress}");
    // The reset is over with that pull: commits count again.
    assert_eq!(producer.call(&commit(7, 54)).response_code(), ResponseCode::SUCCESS);
    let progress = ok(&["consumerProgress", "-n", &namesrv, "-g", "cg-admin", "--json"]);
    assert!(progress.contains(r#""queueId":0,"brokerOffset":10,"consumerOffset":7,"diff":3"#), "{progress}");

    let (success, _, err) =
        mqadmin(&["resetOffsetByTime", "-n", &namesrv, "-g", "nobody", "-t", TOPIC, "-s", "now"]);
    assert!(!success && err.contains("SUBSCRIPTION_GROUP_NOT_EXIST"), "{err}");
    let (success, _, err) =
        mqadmin(&["resetOffsetByTime", "-n", &namesrv, "-g", "cg-admin", "-t", TOPIC, "-s", "noon"]);
    assert!(!success && err.contains("'noon' is not a time"), "{err}");
}

#[test]
fn mqadmin_finds_messages_by_key_and_unique_id_and_still_does_after_a_crash() {
    let data = scratch_dir("mqadmin-keys").join("data");
    let start = || ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &data, None);
    let keel = start();
    let namesrv = keel.addr_in_boot_line(0).to_string();
    let run = |namesrv: &str, args: &[&str]| {
        let (command, rest) = args.split_first().unwrap();
        let args: Vec<&str> = [*command, "-n", namesrv].iter().chain(rest).copied().collect();
        ok(&args)
    };
    run(&namesrv, &["updateTopic", "-c", "DefaultCluster", "-t", "Keyed", "-r", "2", "-w", "2"]);
    let mut unique_ids = Vec::new();
    for (body, keys, queue) in
        [("first", "order-1 shared", "0"), ("second", "order-2 shared", "1"), ("third", "order-3", "0")]
    {
        let mut sent = String::new();
        for _ in 0..100 {
            let args =
                ["sendMessage", "-n", &namesrv, "-t", "Keyed", "-p", body, "-k", keys, "-i", queue, "--json"];
            let (success, out, _) = mqadmin(&args);
            if success {
                sent = out;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let id = sent.split("\"uniqueId\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
        assert_eq!(id.len(), 32, "a unique id in {sent}");
        unique_ids.push(id.to_owned());
    }

    let check = |namesrv: &str| {
        let by_key = run(namesrv, &["queryMsgByKey", "-t", "Keyed", "-k", "order-2"]);
        let lines: Vec<&str> = by_key.lines().collect();
        assert_eq!(lines.len(), 2, "a header and one message: {by_key}");
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["#Message", "ID", "#QID", "#Offset"]);
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [unique_ids[1].as_str(), "1", "0"],
            "{by_key}"
        );
        let shared = run(namesrv, &["queryMsgByKey", "-t", "Keyed", "-k", "shared", "--json"]);
        assert_eq!(shared.matches("\"msgId\"").count(), 2, "{shared}");
        assert!(shared.contains(&unique_ids[0]) && shared.contains(&unique_ids[1]), "{shared}");
        // A key that is a prefix of others, or another topic's, finds nothing.
        let none = run(namesrv, &["queryMsgByKey", "-t", "Keyed", "-k", "order"]);
        assert_eq!(none.lines().count(), 1, "only the header: {none}");
        let later = run(namesrv, &["queryMsgByKey", "-t", "Keyed", "-k", "order-3", "-b", "4102444800000"]);
        assert_eq!(later.lines().count(), 1, "nothing stored after 2100: {later}");
        let unique = run(namesrv, &["queryMsgByUniqueKey", "-t", "Keyed", "-i", &unique_ids[2]]);
        assert!(unique.contains("Keys:                [order-3]"), "{unique}");
        let path = unique.lines().find_map(|l| l.strip_prefix("Message Body Path:")).unwrap().trim();
        assert_eq!(std::fs::read(path).unwrap(), b"third");
        let by_id = run(namesrv, &["queryMsgById", "-t", "Keyed", "-i", &unique_ids[0]]);
        assert!(by_id.contains("Keys:                [order-1 shared]"), "{by_id}");
        let (success, _, err) = mqadmin(&[
            "queryMsgByUniqueKey",
            "-n",
            namesrv,
            "-t",
            "Keyed",
            "-i",
            "0123456789ABCDEF0123456789ABCDEF",
        ]);
        assert!(!success && err.contains("no message of Keyed has the unique id"), "{err}");
    };
    check(&namesrv);
    // Killed, not shut down: the index is recovered with the log.
    drop(keel);
    let keel = start();
    let namesrv = keel.addr_in_boot_line(0).to_string();
    let mut routed = false;
    for _ in 0..100 {
        if mqadmin(&["topicRoute", "-n", &namesrv, "-t", "Keyed"]).0 {
            routed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(routed, "the broker registered again");
    check(&namesrv);
}

#[test]
fn kv_config_is_kept_by_the_name_server_across_a_restart_and_orders_routes() {
    let data = scratch_dir("mqadmin-kv").join("data");
    let start = || ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &data, None);
    let run = |namesrv: &str, args: &[&str]| {
        let (command, rest) = args.split_first().unwrap();
        let args: Vec<&str> = [*command, "-n", namesrv].iter().chain(rest).copied().collect();
        ok(&args)
    };
    let keel = start();
    let namesrv = keel.addr_in_boot_line(0).to_string();
    let set = run(&namesrv, &["updateKvConfig", "-s", "my-ns", "-k", "color", "-v", "blue"]);
    assert_eq!(set, "create or update kv config to namespace success.\n");
    run(&namesrv, &["updateKvConfig", "-s", "my-ns", "-k", "shape", "-v", "round"]);
    run(&namesrv, &["deleteKvConfig", "-s", "my-ns", "-k", "shape"]);
    // An ordered topic over the cluster: its queues per broker set go to the KV config, and
    // its route carries them.
    let mut created = String::new();
    for _ in 0..100 {
        let args = [
            "updateTopic",
            "-n",
            &namesrv,
            "-c",
            "DefaultCluster",
            "-t",
            "Ordered",
            "-w",
            "2",
            "-r",
            "2",
            "-o",
            "true",
        ];
        let (success, out, _) = mqadmin(&args);
        if success {
            created = out;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(created.contains("set cluster orderConf. isOrder=true, orderConf=[broker-a:2]"), "{created}");
    let got = run(&namesrv, &["updateOrderConf", "-t", "Ordered", "-m", "get"]);
    assert_eq!(got, "get orderConf success. topic=[Ordered], orderConf=[broker-a:2] \n");
    let route = run(&namesrv, &["topicRoute", "-t", "Ordered"]);
    assert!(route.contains(r#""orderTopicConf":"broker-a:2""#), "{route}");
    let file = data.join("namesrv").join("kvConfig.json");
    let mut written = String::new();
    for _ in 0..50 {
        written = std::fs::read_to_string(&file).unwrap_or_default();
        if written.contains("broker-a:2") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        written,
        r#"{"configTable":{"ORDER_TOPIC_CONFIG":{"Ordered":"broker-a:2"},"my-ns":{"color":"blue"}}}"#
    );
    drop(keel);

    let keel = start();
    let namesrv = keel.addr_in_boot_line(0).to_string();
    let got = run(&namesrv, &["updateOrderConf", "-t", "Ordered", "-m", "get"]);
    assert_eq!(
        got, "get orderConf success. topic=[Ordered], orderConf=[broker-a:2] \n",
        "kept across the restart"
    );
    run(&namesrv, &["updateOrderConf", "-t", "Ordered", "-m", "delete"]);
    let got = run(&namesrv, &["updateOrderConf", "-t", "Ordered", "-m", "get"]);
    assert_eq!(got, "get orderConf success. topic=[Ordered], orderConf=[] \n");
    let (success, _, err) = mqadmin(&["updateOrderConf", "-n", &namesrv, "-t", "Ordered", "-m", "put"]);
    assert!(!success && err.contains("put needs the configuration"), "{err}");
    // A file that does not parse stops the start with its path, rather than being replaced.
    drop(keel);
    std::fs::write(&file, b"{torn").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && err.contains("kvConfig.json"), "{err}");
}

#[test]
fn trace_topic_is_created_and_query_msg_trace_by_id_reads_the_records_clients_wrote() {
    let dir = scratch_dir("mqadmin-trace");
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, "traceTopicEnable=true\n").unwrap();
    let data = dir.join("data");
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &data, Some(&conf));
    let namesrv = keel.addr_in_boot_line(0).to_string();
    let mut listed = String::new();
    for _ in 0..100 {
        listed = ok(&["topicList", "-n", &namesrv]);
        if listed.lines().any(|t| t == "RMQ_SYS_TRACE_TOPIC") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(listed.lines().any(|t| t == "RMQ_SYS_TRACE_TOPIC"), "traceTopicEnable creates it: {listed}");

    // What a RocketMQ client with message trace on writes for one message: its send, then
    // a consumption (SubBefore and SubAfter paired by request id), keyed by the message id.
    let id = "7F000001000078A1B2C3D4E5F6070809";
    let pub_record = format!(
        "Pub\u{1}1764892800000\u{1}DefaultRegion\u{1}pg-trace\u{1}Orders\u{1}{id}\u{1}TagA\u{1}k1\u{1}127.0.0.1:10911\u{1}5\u{1}4\u{1}0\u{1}0A000001000078A10000000000000000\u{1}true\u{2}"
    );
    let sub_records = format!(
        "SubBefore\u{1}1764892801000\u{1}DefaultRegion\u{1}cg-trace\u{1}req-9\u{1}{id}\u{1}0\u{1}k1\u{2}SubAfter\u{1}req-9\u{1}{id}\u{1}12\u{1}true\u{1}k1\u{1}0\u{2}"
    );
    for body in [&pub_record, &sub_records] {
        ok(&[
            "sendMessage",
            "-n",
            &namesrv,
            "-t",
            "RMQ_SYS_TRACE_TOPIC",
            "-p",
            body,
            "-k",
            &format!("{id} k1"),
        ]);
    }
    let trace = ok(&["queryMsgTraceById", "-n", &namesrv, "-i", id]);
    let rows: Vec<Vec<&str>> = trace.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows[0],
        ["#Type", "#ProducerGroup", "#ClientHost", "#SendTime", "#CostTimes", "#Status"],
        "{trace}"
    );
    assert_eq!(
        rows[1],
        ["Pub", "pg-trace", "127.0.0.1", "2025-12-05", "00:00:00", "4ms", "success"],
        "{trace}"
    );
    assert!(rows[2].is_empty(), "{trace}");
    assert_eq!(rows[3][1], "#ConsumerGroup", "{trace}");
    assert_eq!(
        rows[4],
        ["Sub", "cg-trace", "127.0.0.1", "2025-12-05", "00:00:01", "12ms", "success"],
        "{trace}"
    );
    let (success, _, err) =
        mqadmin(&["queryMsgTraceById", "-n", &namesrv, "-i", "00000000000000000000000000000000"]);
    assert!(!success && err.contains("no trace of"), "{err}");
}
