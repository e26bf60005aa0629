//! RocketMQ 5.x's gRPC protocol against a running `keel --enable-proxy`, through the tonic
//! client generated from the same vendored protos: the Telemetry settings handshake, routes,
//! heartbeats, normal, FIFO and transactional sends (commit, rollback, and a check-back
//! answered over Telemetry), delay messages and their recall, the client id
//! every call must carry, and PullMessage, which is not served. What a send stores is read back over
//! remoting, byte for byte. Real processes and real protobuf encoding: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_core::grpc::proto::{self, settings::PubSub, telemetry_command::Command, Code, MessageType};
use keel_core::protocol::client_requests::{pull_message, send_message, OutgoingMessage, PullRequest};
use keel_core::protocol::headers::CommandHeader;
use keel_core::protocol::message::properties::{self, keys};
use keel_core::protocol::message::stored::{parse_record, Parsed};
use keel_core::protocol::message::tag::java_string_hash;
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use keel_runtime_tokio::grpc::service::messaging_service_client::MessagingServiceClient;
use support::grpc::{resource, with_id};
use support::{scratch_dir, Client, ServerProcess};
use tonic::transport::Channel;

const TOPIC: &str = "GrpcOrders";
const CLIENT_ID: &str = "grpc-test-client@1";

fn message(id: &str, body: &str, kind: MessageType, group: Option<&str>) -> proto::Message {
    proto::Message {
        topic: resource(TOPIC),
        user_properties: [("color".to_owned(), "blue".to_owned())].into_iter().collect(),
        system_properties: Some(proto::SystemProperties {
            tag: Some("TagA".into()),
            keys: vec!["key-1".into(), "key-2".into()],
            message_id: id.into(),
            message_type: kind as i32,
            message_group: group.map(str::to_owned),
            ..proto::SystemProperties::default()
        }),
        body: Bytes::from(body.to_owned()),
    }
}

/// Every message stored in `queue` of the topic, as (properties, body).
fn stored(broker: &mut Client, queue: i32) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
    let request = PullRequest {
        group: "grpc-reader".into(),
        topic: TOPIC.into(),
        queue_id: queue,
        offset: 0,
        max_messages: 32,
        expression: "*".into(),
        suspend_ms: 0,
    };
    let reply = broker.call(&pull_message(900 + queue, &request));
    if reply.response_code() != ResponseCode::SUCCESS {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut rest = &reply.body[..];
    while !rest.is_empty() {
        let Ok(Parsed::Message(view)) = parse_record(rest) else { panic!("a stored record") };
        let props = properties::parse(view.record.properties).into_iter().collect();
        found.push((props, view.record.body.to_vec()));
        rest = &rest[view.bytes.len()..];
    }
    found
}

/// SendMessage of `messages`, as this test's client.
async fn send(
    client: &mut MessagingServiceClient<Channel>,
    messages: Vec<proto::Message>,
) -> proto::SendMessageResponse {
    client
        .send_message(with_id(CLIENT_ID, proto::SendMessageRequest { messages }))
        .await
        .unwrap()
        .into_inner()
}

/// The message with unique id `id` in `queues` of the topic, once it is readable: a send is
/// answered once written, and pulls see it once dispatched, moments later.
fn stored_eventually(
    broker: &mut Client,
    queues: std::ops::Range<i32>,
    id: &str,
) -> (BTreeMap<String, String>, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = queues
            .clone()
            .flat_map(|q| stored(broker, q))
            .find(|(p, _)| p.get(keys::UNIQ_KEY).map(String::as_str) == Some(id));
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "{id} never readable in queues {queues:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a message with unique id `id` is stored in one of the topic's four queues.
fn has(broker: &mut Client, id: &str) -> bool {
    (0..4).flat_map(|q| stored(broker, q)).any(|(p, _)| p.get(keys::UNIQ_KEY).map(String::as_str) == Some(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_producer_handshakes_routes_and_sends_normal_fifo_and_transactional_messages() {
    let dir = scratch_dir("grpc-producer");
    let conf = dir.join("broker.conf");
    // Transaction checks come quickly: a second after the half message, every second.
    std::fs::write(
        &conf,
        "enableProxy=true\ngrpcServerPort=0\ntransactionTimeOut=1000\ntransactionCheckInterval=1000\n",
    )
    .unwrap();
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &dir.join("data"), Some(&conf));
    assert!(keel.boot_line.contains("; gRPC at 127.0.0.1:"), "{}", keel.boot_line);
    let (broker_addr, grpc) = (keel.addr_in_boot_line(1), keel.addr_in_boot_line(2));
    let channel = Channel::from_shared(format!("http://{grpc}")).unwrap().connect().await.unwrap();
    let mut client = MessagingServiceClient::new(channel);

    // Telemetry: the declared settings come back merged with the server's.
    let declared = proto::Settings {
        client_type: Some(proto::ClientType::Producer as i32),
        pub_sub: Some(PubSub::Publishing(proto::Publishing {
            topics: vec![resource(TOPIC).unwrap()],
            max_body_size: 0,
            validate_message_type: false,
        })),
        ..proto::Settings::default()
    };
    let (to_server, outbound) = tokio::sync::mpsc::channel(4);
    to_server
        .send(proto::TelemetryCommand { status: None, command: Some(Command::Settings(declared)) })
        .await
        .unwrap();
    let outbound = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(outbound);
    let mut telemetry = client.telemetry(with_id(CLIENT_ID, outbound)).await.unwrap().into_inner();
    let first = telemetry.message().await.unwrap().expect("a settings reply");
    assert_eq!(first.status.unwrap().code, Code::Ok as i32);
    let Some(Command::Settings(merged)) = first.command else { panic!("settings") };
    let Some(PubSub::Publishing(publishing)) = merged.pub_sub else { panic!("publishing") };
    assert_eq!((publishing.max_body_size, publishing.validate_message_type), (4 * 1024 * 1024, true));
    assert_eq!(merged.backoff_policy.unwrap().max_attempts, 3);

    // Every call names its client.
    let anonymous =
        client.query_route(proto::QueryRouteRequest { topic: resource(TOPIC), endpoints: None }).await;
    assert_eq!(anonymous.unwrap().into_inner().status.unwrap().code, Code::ClientIdRequired as i32);
    let unknown = client.query_route(with_id(
        CLIENT_ID,
        proto::QueryRouteRequest { topic: resource("NoSuchTopic"), endpoints: None },
    ));
    assert_eq!(unknown.await.unwrap().into_inner().status.unwrap().code, Code::TopicNotFound as i32);

    // A topic auto-created by a remoting send accepts NORMAL messages only, RocketMQ's default.
    let mut broker = Client::connect(broker_addr);
    let seed = OutgoingMessage {
        topic: "GrpcPlain".into(),
        body: Bytes::from_static(b"seed"),
        ..OutgoingMessage::default()
    };
    assert_eq!(broker.call(&send_message(1, "pg", 0, &seed)).response_code(), ResponseCode::SUCCESS);
    let deadline = Instant::now() + Duration::from_secs(20);
    let plain = loop {
        let reply = client
            .query_route(with_id(
                CLIENT_ID,
                proto::QueryRouteRequest { topic: resource("GrpcPlain"), endpoints: None },
            ))
            .await
            .unwrap()
            .into_inner();
        if reply.status.as_ref().unwrap().code == Code::Ok as i32 {
            break reply.message_queues;
        }
        assert!(Instant::now() < deadline, "no route: {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(plain.iter().all(|q| q.accept_message_types == [MessageType::Normal as i32]), "{plain:?}");

    // The topic the sends go to is created MIXED (any type), as `mqadmin updateTopic -a
    // +message.type=MIXED` creates it; a type RocketMQ does not know is refused.
    let create = |attributes: &str| {
        let header = keel_core::protocol::headers::CreateTopicRequestHeader {
            topic: TOPIC.into(),
            default_topic: None,
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            topic_filter_type: None,
            topic_sys_flag: None,
            order: None,
            attributes: Some(attributes.into()),
        };
        RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC, 5, header.to_ext_fields())
    };
    let refused = broker.call(&create("+message.type=SOMETIMES"));
    assert_ne!(refused.response_code(), ResponseCode::SUCCESS);
    assert!(refused.remark.unwrap_or_default().contains("MIXED"));
    assert_eq!(broker.call(&create("+message.type=MIXED")).response_code(), ResponseCode::SUCCESS);
    let deadline = Instant::now() + Duration::from_secs(20);
    let queues = loop {
        let reply = client
            .query_route(with_id(
                CLIENT_ID,
                proto::QueryRouteRequest { topic: resource(TOPIC), endpoints: None },
            ))
            .await
            .unwrap()
            .into_inner();
        if reply.status.as_ref().unwrap().code == Code::Ok as i32 {
            break reply.message_queues;
        }
        assert!(Instant::now() < deadline, "no route: {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(queues.len(), 4, "{queues:?}");
    let endpoint = queues[0].broker.as_ref().unwrap().endpoints.as_ref().unwrap();
    assert_eq!(endpoint.addresses[0].port, i32::from(grpc.port()));
    assert!(queues.iter().all(|q| q.permission == proto::Permission::ReadWrite as i32));
    assert!(queues.iter().all(|q| q.accept_message_types.len() == 4), "MIXED accepts all four: {queues:?}");

    let beat = client.heartbeat(with_id(
        CLIENT_ID,
        proto::HeartbeatRequest { group: None, client_type: proto::ClientType::Producer as i32 },
    ));
    assert_eq!(beat.await.unwrap().into_inner().status.unwrap().code, Code::Ok as i32);

    // A normal message: stored with the SDK's properties mapped to RocketMQ's.
    let sent = send(&mut client, vec![message("01NORMAL", "plain body", MessageType::Normal, None)]).await;
    assert_eq!(sent.status.unwrap().code, Code::Ok as i32, "{:?}", sent.entries);
    assert_eq!(sent.entries[0].message_id, "01NORMAL");
    let (props, body) = stored_eventually(&mut broker, 0..4, "01NORMAL");
    assert_eq!(body, b"plain body");
    assert_eq!(props.get(keys::TAGS).map(String::as_str), Some("TagA"));
    assert_eq!(props.get(keys::KEYS).map(String::as_str), Some("key-1 key-2"));
    assert_eq!(props.get("color").map(String::as_str), Some("blue"));

    // A FIFO message goes to the queue its group hashes to.
    let fifo = message("01FIFO", "in order", MessageType::Fifo, Some("order-42"));
    let sent = send(&mut client, vec![fifo]).await;
    assert_eq!(sent.status.unwrap().code, Code::Ok as i32);
    let queue = java_string_hash("order-42").rem_euclid(4);
    let (props, _) = stored_eventually(&mut broker, queue..queue + 1, "01FIFO");
    assert_eq!(props.get(keys::SHARDING_KEY).map(String::as_str), Some("order-42"));

    // Transactions: a committed half message becomes visible, a rolled-back one never does.
    for (id, resolution) in [
        ("01COMMIT", proto::TransactionResolution::Commit),
        ("01ROLLBACK", proto::TransactionResolution::Rollback),
    ] {
        let half = message(id, id, MessageType::Transaction, None);
        let sent = send(&mut client, vec![half]).await;
        let entry = &sent.entries[0];
        assert_eq!(entry.status.as_ref().unwrap().code, Code::Ok as i32);
        assert_eq!(entry.transaction_id, id);
        let end = proto::EndTransactionRequest {
            topic: resource(TOPIC),
            message_id: id.into(),
            transaction_id: entry.transaction_id.clone(),
            resolution: resolution as i32,
            source: proto::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        };
        let ended = client.end_transaction(with_id(CLIENT_ID, end.clone())).await.unwrap().into_inner();
        assert_eq!(ended.status.unwrap().code, Code::Ok as i32);
        let again = client.end_transaction(with_id(CLIENT_ID, end)).await.unwrap().into_inner();
        assert_eq!(again.status.unwrap().code, Code::InvalidTransactionId as i32, "ended once");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if has(&mut broker, "01COMMIT") {
            assert!(!has(&mut broker, "01ROLLBACK"), "a rolled-back message is never delivered");
            break;
        }
        assert!(Instant::now() < deadline, "the committed message never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A transaction left open is checked back over Telemetry; the answer ends it.
    let orphan = message("01ORPHAN", "checked back", MessageType::Transaction, None);
    let sent = send(&mut client, vec![orphan]).await;
    assert_eq!(sent.status.unwrap().code, Code::Ok as i32);
    let check = tokio::time::timeout(Duration::from_secs(20), telemetry.message())
        .await
        .expect("a check within 20 s")
        .unwrap()
        .expect("the stream stays open");
    let Some(Command::RecoverOrphanedTransactionCommand(recover)) = check.command else {
        panic!("{check:?}")
    };
    assert_eq!(recover.transaction_id, "01ORPHAN");
    let checked = recover.message.unwrap();
    assert_eq!((checked.topic.unwrap().name.as_str(), &checked.body[..]), (TOPIC, &b"checked back"[..]));
    let system = checked.system_properties.unwrap();
    assert_eq!(system.message_id, "01ORPHAN");
    assert_eq!(system.body_digest.unwrap().checksum, keel_core::grpc::message::body_md5(b"checked back"));
    let end = proto::EndTransactionRequest {
        topic: resource(TOPIC),
        message_id: "01ORPHAN".into(),
        transaction_id: recover.transaction_id,
        resolution: proto::TransactionResolution::Commit as i32,
        source: proto::TransactionSource::SourceServerCheck as i32,
        trace_context: String::new(),
    };
    assert_eq!(
        client.end_transaction(with_id(CLIENT_ID, end)).await.unwrap().into_inner().status.unwrap().code,
        Code::Ok as i32
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has(&mut broker, "01ORPHAN") {
        assert!(Instant::now() < deadline, "the checked-back commit never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Delay messages: each send answers a recall handle; a recalled one never appears.
    let due_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 3_000;
    let delayed = |id: &str| {
        let mut message = message(id, id, MessageType::Delay, None);
        let system = message.system_properties.as_mut().unwrap();
        system.delivery_timestamp = Some(prost_types::Timestamp {
            seconds: i64::try_from(due_ms / 1_000).unwrap(),
            nanos: i32::try_from(due_ms % 1_000).unwrap() * 1_000_000,
        });
        message
    };
    let mut handles = Vec::new();
    for id in ["01DELAYKEPT", "01DELAYRECALLED"] {
        let sent = send(&mut client, vec![delayed(id)]).await;
        assert_eq!(sent.status.unwrap().code, Code::Ok as i32);
        assert!(!sent.entries[0].recall_handle.is_empty(), "a delay message's entry has a recall handle");
        handles.push(sent.entries[0].recall_handle.clone());
    }
    let recall = |topic: &str, handle: &str| {
        with_id(
            CLIENT_ID,
            proto::RecallMessageRequest { topic: resource(topic), recall_handle: handle.into() },
        )
    };
    let recalled = client.recall_message(recall(TOPIC, &handles[1])).await.unwrap().into_inner();
    assert_eq!(recalled.status.unwrap().code, Code::Ok as i32);
    assert_eq!(recalled.message_id, "01DELAYRECALLED");
    let garbled = client.recall_message(recall(TOPIC, "garbled")).await.unwrap().into_inner();
    assert_eq!(garbled.status.unwrap().code, Code::BadRequest as i32);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has(&mut broker, "01DELAYKEPT") {
        assert!(Instant::now() < deadline, "the delay message never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The recalled one was due in the same tick: the wheel has passed it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!has(&mut broker, "01DELAYRECALLED"), "a recalled message is never delivered");
    let late = client.recall_message(recall(TOPIC, &handles[0])).await.unwrap().into_inner();
    assert_eq!(late.status.unwrap().code, Code::BadRequest as i32, "too late once delivered");

    // Bad sends get the SDK's codes.
    let no_id = message("", "x", MessageType::Normal, None);
    let refused = send(&mut client, vec![no_id]).await;
    assert_eq!(refused.status.unwrap().code, Code::IllegalMessageId as i32);

    // Pull consumption is refused plainly (consumers pop: see grpc_consumer.rs).
    let mut pulls = client
        .pull_message(with_id(CLIENT_ID, proto::PullMessageRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let frame = pulls.message().await.unwrap().unwrap();
    let Some(proto::pull_message_response::Content::Status(status)) = frame.content else {
        panic!("a status")
    };
    assert_eq!(status.code, Code::NotImplemented as i32);

    let bye = client
        .notify_client_termination(with_id(CLIENT_ID, proto::NotifyClientTerminationRequest { group: None }));
    assert_eq!(bye.await.unwrap().into_inner().status.unwrap().code, Code::Ok as i32);
    drop(to_server);
}
