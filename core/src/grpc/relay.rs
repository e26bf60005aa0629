//! Tools' questions the broker relays to a 5.x client (`mqadmin consumeMessageDirectly` and
//! `consumerStatus`), as RocketMQ's proxy answers them for its gRPC clients:
//! CONSUME_MESSAGE_DIRECTLY becomes a `verify_message_command` on the client's Telemetry
//! stream, and the client's `verify_message_result` (matched by nonce) the broker's answer;
//! GET_CONSUMER_RUNNING_INFO is answered from the settings the client declared.

use super::proto::{self, settings::PubSub, Code};
use crate::protocol::body::{ConsumeMessageDirectlyResult, ConsumerRunningInfo};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::stored::decode_records;
use crate::protocol::{version_desc, RemotingCommand, RequestCode, ResponseCode, SERVER_VERSION};

/// The Telemetry command asking the client to verify (consume) the message of the broker's
/// CONSUME_MESSAGE_DIRECTLY `request`, under `nonce`. `None` if it is not one, or carries
/// no readable message.
#[must_use]
pub fn verify_message(request: &RemotingCommand, nonce: &str) -> Option<proto::TelemetryCommand> {
    if request.request_code() != RequestCode::CONSUME_MESSAGE_DIRECTLY {
        return None;
    }
    let stored = decode_records(&request.body).ok()?.into_iter().next()?;
    let command = proto::VerifyMessageCommand {
        nonce: nonce.to_owned(),
        message: Some(super::message::from_stored(&stored)),
    };
    Some(proto::TelemetryCommand {
        status: Some(super::status::ok()),
        command: Some(proto::telemetry_command::Command::VerifyMessageCommand(command)),
    })
}

/// The broker's answer to CONSUME_MESSAGE_DIRECTLY `request` from the client's
/// `verify_message_result`, sent with `status` (the proxy's mapping: OK is CR_SUCCESS,
/// FAILED_TO_CONSUME_MESSAGE CR_LATER, MESSAGE_CORRUPTED CR_RETURN_NULL; anything else
/// CR_THROW_EXCEPTION).
#[must_use]
pub fn verify_result_reply(request: &RemotingCommand, status: Option<&proto::Status>) -> RemotingCommand {
    let code = status.map_or(Code::Unspecified as i32, |s| s.code);
    let consume_result = match Code::try_from(code) {
        Ok(Code::Ok) => "CR_SUCCESS",
        Ok(Code::FailedToConsumeMessage) => "CR_LATER",
        Ok(Code::MessageCorrupted) => "CR_RETURN_NULL",
        _ => "CR_THROW_EXCEPTION",
    };
    let remark =
        status.map(|s| s.message.clone()).filter(|m| !m.is_empty() && consume_result != "CR_SUCCESS");
    let body = ConsumeMessageDirectlyResult {
        order: false,
        auto_commit: true,
        consume_result: consume_result.into(),
        remark: remark.unwrap_or_else(|| "from gRPC client".into()),
        spent_time_mills: 0,
    };
    RemotingCommand::response_to(request, ResponseCode::SUCCESS, None)
        .with_body(json::to_body(&body, KeyStyle::Fastjson))
}

/// The broker's answer to GET_CONSUMER_RUNNING_INFO `request` for a client that declared
/// `settings`: how it consumes and what it subscribes to. A gRPC client reports no queues
/// (the broker picks them at each receive).
#[must_use]
pub fn running_info_reply(request: &RemotingCommand, settings: Option<&proto::Settings>) -> RemotingCommand {
    let consumer = settings.and_then(super::session::consumer_data);
    let (Some(consumer), Some(Some(PubSub::Subscription(subscription)))) =
        (consumer, settings.map(|s| &s.pub_sub))
    else {
        return RemotingCommand::response_to(
            request,
            ResponseCode::SYSTEM_ERROR,
            Some("this gRPC client has declared no subscription".into()),
        );
    };
    let properties = [
        ("PROP_CONSUME_TYPE", consumer.consume_type),
        ("PROP_CONSUMEORDERLY", subscription.fifo.unwrap_or(false).to_string()),
        ("PROP_CLIENT_VERSION", version_desc(SERVER_VERSION)),
        ("PROP_CLIENT_PROTOCOL", "gRPC".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let subscription_set = consumer.subscription_data_set;
    let info = ConsumerRunningInfo { properties, subscription_set, ..ConsumerRunningInfo::default() };
    RemotingCommand::response_to(request, ResponseCode::SUCCESS, None)
        .with_body(json::to_body(&info, KeyStyle::Fastjson))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consume_directly(body: bytes::Bytes) -> RemotingCommand {
        let mut ext = crate::protocol::ExtFields::default();
        ext.insert("consumerGroup", "cg");
        ext.insert("clientId", "c1");
        RemotingCommand::request(RequestCode::CONSUME_MESSAGE_DIRECTLY, 77, ext).with_body(body)
    }

    #[test]
    fn a_consume_directly_becomes_a_verify_command_and_its_result_the_brokers_answer() {
        use crate::protocol::message::stored::{encode_record, Record, RecordHead};
        let mut props = Vec::new();
        crate::protocol::message::properties::push(&mut props, "TAGS", "A");
        let head = RecordHead {
            queue_id: 0,
            flag: 0,
            queue_offset: 3,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: ([10, 0, 0, 1], 5000).into(),
            store_timestamp: 2,
            store_host: ([10, 0, 0, 2], 10911).into(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let mut record = Vec::new();
        let stored = Record { head, body: &b"hello"[..], topic: "Orders", properties: &props[..] };
        encode_record(&mut record, &stored).unwrap();
        let request = consume_directly(bytes::Bytes::from(record));
        let command = verify_message(&request, "n-1").expect("a verify command");
        let Some(proto::telemetry_command::Command::VerifyMessageCommand(verify)) = command.command else {
            panic!("{command:?}")
        };
        assert_eq!(verify.nonce, "n-1");
        let message = verify.message.unwrap();
        assert_eq!((message.topic.unwrap().name.as_str(), &message.body[..]), ("Orders", &b"hello"[..]));
        assert_eq!(verify_message(&consume_directly(bytes::Bytes::from_static(b"junk")), "n"), None);

        for (code, want) in [
            (Code::Ok, "CR_SUCCESS"),
            (Code::FailedToConsumeMessage, "CR_LATER"),
            (Code::MessageCorrupted, "CR_RETURN_NULL"),
            (Code::InternalError, "CR_THROW_EXCEPTION"),
        ] {
            let reply = verify_result_reply(&request, Some(&super::super::status::status(code, "why")));
            assert_eq!((reply.opaque, reply.response_code()), (77, ResponseCode::SUCCESS));
            let result: ConsumeMessageDirectlyResult = json::from_slice(&reply.body).unwrap();
            assert_eq!(result.consume_result, want);
        }
    }

    #[test]
    fn running_info_names_the_consume_type_and_subscriptions() {
        let mut ext = crate::protocol::ExtFields::default();
        ext.insert("consumerGroup", "cg");
        let request = RemotingCommand::request(RequestCode::GET_CONSUMER_RUNNING_INFO, 5, ext);
        let settings = proto::Settings {
            client_type: Some(proto::ClientType::SimpleConsumer as i32),
            pub_sub: Some(PubSub::Subscription(proto::Subscription {
                group: Some(proto::Resource { resource_namespace: String::new(), name: "cg".into() }),
                subscriptions: vec![proto::SubscriptionEntry {
                    topic: Some(proto::Resource { resource_namespace: String::new(), name: "Orders".into() }),
                    expression: Some(proto::FilterExpression { r#type: 1, expression: "A || B".into() }),
                }],
                ..proto::Subscription::default()
            })),
            ..proto::Settings::default()
        };
        let reply = running_info_reply(&request, Some(&settings));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
        let info: ConsumerRunningInfo = json::from_slice(&reply.body).unwrap();
        assert_eq!(info.properties["PROP_CONSUME_TYPE"], "CONSUME_ACTIVELY");
        assert_eq!(info.subscription_set.len(), 1);
        assert_eq!(info.subscription_set[0].topic, "Orders");
        assert_eq!(info.subscription_set[0].sub_string, "A || B");
        assert_eq!(running_info_reply(&request, None).response_code(), ResponseCode::SYSTEM_ERROR);
    }
}
