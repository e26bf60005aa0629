//! The consumer side of RocketMQ 5.x's gRPC protocol against a running `keel
//! --enable-proxy`: QueryAssignment, ReceiveMessage, AckMessage, ChangeInvisibleDuration
//! (and the redelivery it brings forward) and ForwardMessageToDeadLetterQueue, and the
//! tools' questions relayed to a gRPC client (`mqadmin consumeMessageDirectly` as a
//! `verify_message_command`, `consumerStatus`), through the tonic client generated from the vendored protos. Messages are sent over remoting, so
//! what a gRPC consumer sees is checked against what a remoting producer stored. Real
//! processes and real protobuf encoding: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_core::grpc::proto::{self, settings::PubSub, telemetry_command::Command, Code};
use keel_core::protocol::body::{ConsumeMessageDirectlyResult, ConsumerRunningInfo, SubscriptionGroupConfig};
use keel_core::protocol::client_requests::{pull_message, send_message, OutgoingMessage, PullRequest};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use keel_runtime_tokio::grpc::service::messaging_service_client::MessagingServiceClient;
use support::grpc::{resource, with_id};
use support::{scratch_dir, Client, ServerProcess};
use tonic::transport::Channel;

const TOPIC: &str = "GrpcJobs";
const GROUP: &str = "cg-grpc";
const CLIENT_ID: &str = "grpc-consumer@1";

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds: s, nanos: 0 })
}

/// One ReceiveMessage: (the status, the messages).
async fn receive(
    client: &mut MessagingServiceClient<Channel>,
    invisible_s: i64,
) -> (proto::Status, Vec<proto::Message>) {
    let request = proto::ReceiveMessageRequest {
        group: resource(GROUP),
        message_queue: Some(proto::MessageQueue { topic: resource(TOPIC), id: -1, ..Default::default() }),
        filter_expression: Some(proto::FilterExpression {
            r#type: proto::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        batch_size: 16,
        invisible_duration: seconds(invisible_s),
        auto_renew: false,
        long_polling_timeout: seconds(5),
        attempt_id: None,
    };
    let mut stream = client.receive_message(with_id(CLIENT_ID, request)).await.unwrap().into_inner();
    let mut status = None;
    let mut messages = Vec::new();
    let mut stamped = false;
    while let Some(frame) = stream.message().await.unwrap() {
        match frame.content.unwrap() {
            proto::receive_message_response::Content::Status(s) => status = Some(s),
            proto::receive_message_response::Content::Message(m) => messages.push(m),
            proto::receive_message_response::Content::DeliveryTimestamp(_) => stamped = true,
        }
    }
    assert!(stamped, "every receive ends with its delivery time");
    (status.expect("a status frame"), messages)
}

fn system(message: &proto::Message) -> &proto::SystemProperties {
    message.system_properties.as_ref().unwrap()
}

fn body(message: &proto::Message) -> &str {
    std::str::from_utf8(&message.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_simple_consumer_receives_acks_defers_and_dead_letters() {
    let dir = scratch_dir("grpc-consumer");
    let conf = dir.join("broker.conf");
    std::fs::write(&conf, "enableProxy=true\ngrpcServerPort=0\n").unwrap();
    let keel = ServerProcess::keel(env!("CARGO_BIN_EXE_keel"), &dir.join("data"), Some(&conf));
    let (broker_addr, grpc) = (keel.addr_in_boot_line(1), keel.addr_in_boot_line(2));
    let channel = Channel::from_shared(format!("http://{grpc}")).unwrap().connect().await.unwrap();
    let mut client = MessagingServiceClient::new(channel);
    let mut broker = Client::connect(broker_addr);

    // Three messages from a remoting producer, with tags, keys and a property.
    let mut msg_ids = Vec::new();
    for (i, name) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let message = OutgoingMessage {
            topic: TOPIC.into(),
            tags: Some("TagA".into()),
            keys: Some(format!("key-{name}")),
            user_properties: vec![("color".into(), "blue".into())],
            body: Bytes::from(name.to_string()),
        };
        let sent = broker.call(&send_message(i32::try_from(i).unwrap() + 1, "pg", 0, &message));
        assert_eq!(sent.response_code(), ResponseCode::SUCCESS);
        msg_ids.push(sent.ext_fields.get("msgId").unwrap().to_owned());
    }

    // The simple consumer's handshake: its group's settings come back.
    let declared = proto::Settings {
        client_type: Some(proto::ClientType::SimpleConsumer as i32),
        pub_sub: Some(PubSub::Subscription(proto::Subscription {
            group: resource(GROUP),
            subscriptions: vec![proto::SubscriptionEntry {
                topic: resource(TOPIC),
                expression: Some(proto::FilterExpression {
                    r#type: proto::FilterType::Tag as i32,
                    expression: "*".into(),
                }),
            }],
            ..Default::default()
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
    let first = telemetry.message().await.unwrap().expect("settings");
    let Some(Command::Settings(merged)) = first.command else { panic!("settings") };
    let Some(PubSub::Subscription(subscription)) = merged.pub_sub else { panic!("subscription") };
    assert_eq!(subscription.fifo, Some(false));
    assert_eq!(merged.backoff_policy.unwrap().max_attempts, 17, "retryMaxTimes 16, plus the first");

    // One assignment per broker, any queue.
    let deadline = Instant::now() + Duration::from_secs(20);
    let assignments = loop {
        let reply = client
            .query_assignment(with_id(
                CLIENT_ID,
                proto::QueryAssignmentRequest {
                    topic: resource(TOPIC),
                    group: resource(GROUP),
                    endpoints: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if reply.status.as_ref().unwrap().code == Code::Ok as i32 {
            break reply.assignments;
        }
        assert!(Instant::now() < deadline, "no assignment: {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0].message_queue.as_ref().unwrap().id, -1);

    // Everything arrives once, as it was sent.
    let (status, got) = receive(&mut client, 20).await;
    assert_eq!(status.code, Code::Ok as i32, "{status:?}");
    let mut bodies: Vec<&str> = got.iter().map(body).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["alpha", "beta", "gamma"]);
    for message in &got {
        let system = system(message);
        assert_eq!(system.tag.as_deref(), Some("TagA"));
        assert_eq!(system.keys, vec![format!("key-{}", body(message))]);
        assert_eq!(system.delivery_attempt, Some(1));
        assert_eq!(
            system.body_digest.as_ref().unwrap().checksum,
            keel_core::grpc::message::body_md5(&message.body)
        );
        assert!(system.receipt_handle.is_some());
        assert_eq!(message.user_properties.get("color").map(String::as_str), Some("blue"));
        assert_eq!(message.topic.as_ref().unwrap().name, TOPIC);
    }
    let find = |name: &str| got.iter().find(|m| body(m) == name).unwrap().clone();
    let (alpha, beta, gamma) = (find("alpha"), find("beta"), find("gamma"));

    // Ack alpha; beta's invisible time shortened to 1 s; gamma to the DLQ.
    let ack = |message: &proto::Message, handle: Option<String>| proto::AckMessageRequest {
        group: resource(GROUP),
        topic: resource(TOPIC),
        entries: vec![proto::AckMessageEntry {
            message_id: system(message).message_id.clone(),
            receipt_handle: handle.unwrap_or_else(|| system(message).receipt_handle.clone().unwrap()),
            lite_topic: None,
        }],
    };
    let acked = client.ack_message(with_id(CLIENT_ID, ack(&alpha, None))).await.unwrap().into_inner();
    assert_eq!(acked.status.unwrap().code, Code::Ok as i32, "{:?}", acked.entries);
    let changed = client
        .change_invisible_duration(with_id(
            CLIENT_ID,
            proto::ChangeInvisibleDurationRequest {
                group: resource(GROUP),
                topic: resource(TOPIC),
                receipt_handle: system(&beta).receipt_handle.clone().unwrap(),
                invisible_duration: seconds(1),
                message_id: system(&beta).message_id.clone(),
                lite_topic: None,
                suspend: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.status.unwrap().code, Code::Ok as i32);
    assert_ne!(changed.receipt_handle, *system(&beta).receipt_handle.as_ref().unwrap(), "a new handle");
    let forwarded = client
        .forward_message_to_dead_letter_queue(with_id(
            CLIENT_ID,
            proto::ForwardMessageToDeadLetterQueueRequest {
                group: resource(GROUP),
                topic: resource(TOPIC),
                receipt_handle: system(&gamma).receipt_handle.clone().unwrap(),
                message_id: system(&gamma).message_id.clone(),
                delivery_attempt: 1,
                max_delivery_attempts: 17,
                lite_topic: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forwarded.status.unwrap().code, Code::Ok as i32);

    // Beta comes back (its second attempt, under its own topic), nothing else does.
    let (status, again) = receive(&mut client, 20).await;
    assert_eq!(status.code, Code::Ok as i32, "{status:?}");
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["beta"]);
    assert_eq!(system(&again[0]).delivery_attempt, Some(2));
    assert_eq!(again[0].topic.as_ref().unwrap().name, TOPIC);
    assert_eq!(system(&again[0]).message_id, system(&beta).message_id, "the same message id");
    let acked = client.ack_message(with_id(CLIENT_ID, ack(&again[0], None))).await.unwrap().into_inner();
    assert_eq!(acked.status.unwrap().code, Code::Ok as i32);
    let (status, none) = receive(&mut client, 20).await;
    assert_eq!(status.code, Code::MessageNotFound as i32, "{none:?}");

    // Gamma is in the group's dead-letter queue.
    let request = PullRequest {
        group: "dlq-reader".into(),
        topic: format!("%DLQ%{GROUP}"),
        queue_id: 0,
        offset: 0,
        max_messages: 32,
        expression: "*".into(),
        suspend_ms: 0,
    };
    let dead = broker.call(&pull_message(50, &request));
    assert_eq!(dead.response_code(), ResponseCode::SUCCESS);
    let records = keel_core::protocol::client_requests::pulled_records(&dead.body).unwrap();
    assert_eq!(records.iter().map(|r| r.record.body).collect::<Vec<_>>(), [b"gamma"]);

    // A FIFO group is assigned every readable queue.
    let orderly = SubscriptionGroupConfig {
        group_name: "cg-fifo".into(),
        consume_message_orderly: true,
        ..Default::default()
    };
    let update =
        RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, 60, ExtFields::new())
            .with_body(json::to_vec(&orderly, KeyStyle::Fastjson).unwrap());
    assert_eq!(broker.call(&update).response_code(), ResponseCode::SUCCESS);
    let fifo = client
        .query_assignment(with_id(
            CLIENT_ID,
            proto::QueryAssignmentRequest {
                topic: resource(TOPIC),
                group: resource("cg-fifo"),
                endpoints: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fifo.assignments.len(), 4, "{fifo:?}");

    // A tool's questions reach the client once its heartbeat registered it.
    let beat = client.heartbeat(with_id(
        CLIENT_ID,
        proto::HeartbeatRequest {
            group: resource(GROUP),
            client_type: proto::ClientType::SimpleConsumer as i32,
        },
    ));
    assert_eq!(beat.await.unwrap().into_inner().status.unwrap().code, Code::Ok as i32);
    let mut ext = ExtFields::new();
    ext.insert("consumerGroup", GROUP);
    ext.insert("clientId", CLIENT_ID);
    let status =
        broker.call(&RemotingCommand::request(RequestCode::GET_CONSUMER_RUNNING_INFO, 70, ext.clone()));
    assert_eq!(status.response_code(), ResponseCode::SUCCESS, "{:?}", status.remark);
    let info: ConsumerRunningInfo = json::from_slice(&status.body).unwrap();
    assert_eq!(info.properties["PROP_CONSUME_TYPE"], "CONSUME_ACTIVELY");
    assert_eq!(info.subscription_set.iter().map(|s| s.topic.as_str()).collect::<Vec<_>>(), [TOPIC]);

    // consumeMessageDirectly: the message goes to the client as a verify_message_command,
    // and the client's verify_message_result is the tool's answer.
    for (outcome, want) in [(Code::Ok, "CR_SUCCESS"), (Code::FailedToConsumeMessage, "CR_LATER")] {
        let mut ask = ext.clone();
        ask.insert("msgId", msg_ids[1].clone());
        let tool = tokio::task::spawn_blocking(move || {
            let request = RemotingCommand::request(RequestCode::CONSUME_MESSAGE_DIRECTLY, 71, ask);
            Client::connect(broker_addr).call(&request)
        });
        let command = tokio::time::timeout(Duration::from_secs(10), telemetry.message())
            .await
            .expect("a verify command within 10 s")
            .unwrap()
            .expect("the stream stays open");
        let Some(Command::VerifyMessageCommand(verify)) = command.command else { panic!("{command:?}") };
        let message = verify.message.unwrap();
        assert_eq!((body(&message), message.topic.as_ref().unwrap().name.as_str()), ("beta", TOPIC));
        let result = proto::TelemetryCommand {
            status: Some(keel_core::grpc::status::status(outcome, "verified")),
            command: Some(Command::VerifyMessageResult(proto::VerifyMessageResult { nonce: verify.nonce })),
        };
        to_server.send(result).await.unwrap();
        let answer = tool.await.unwrap();
        assert_eq!(answer.response_code(), ResponseCode::SUCCESS, "{:?}", answer.remark);
        let result: ConsumeMessageDirectlyResult = json::from_slice(&answer.body).unwrap();
        assert_eq!(result.consume_result, want);
    }
    drop(to_server);
}
