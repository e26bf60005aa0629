//! A 5.x client's session: the settings it declares on Telemetry and what the server
//! answers (RocketMQ's proxy's defaults merged in), the remoting heartbeat that registers it
//! with the broker, how it leaves, and how it ends a transaction.

use std::collections::BTreeMap;

use super::proto::{self, settings::PubSub, ClientType, TransactionResolution};
use crate::protocol::body::{ConsumerData, HeartbeatData, ProducerData, SubscriptionData};
use crate::protocol::headers::{CommandHeader, EndTransactionRequestHeader, UnregisterClientRequestHeader};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{RemotingCommand, RequestCode};

/// The largest body a producer may send, as the server tells it.
pub const MAX_BODY_SIZE: i32 = 4 * 1024 * 1024;
/// Remoting's transaction end types.
const COMMIT: i32 = 8;
const ROLLBACK: i32 = 12;
const UNKNOWN: i32 = 0;

fn duration_ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: ms / 1000, nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0) }
}

/// The settings the server answers a client's `declared` ones with: what it declared, with
/// the server's retry policy, publishing limits or subscription defaults, and metrics off.
/// A consumer's FIFO flag and attempt limit come from its subscription `group`'s config
/// (`consumeMessageOrderly`, `retryMaxTimes + 1`) when the broker has one.
#[must_use]
pub fn merged_settings(
    declared: &proto::Settings,
    group: Option<&crate::protocol::body::SubscriptionGroupConfig>,
) -> proto::Settings {
    let mut settings = declared.clone();
    settings.metric = Some(proto::Metric { on: false, endpoints: None });
    match settings.pub_sub.as_mut() {
        Some(PubSub::Publishing(publishing)) => {
            publishing.max_body_size = MAX_BODY_SIZE;
            publishing.validate_message_type = true;
            settings.backoff_policy = Some(proto::RetryPolicy {
                max_attempts: 3,
                strategy: Some(proto::retry_policy::Strategy::ExponentialBackoff(
                    proto::ExponentialBackoff {
                        initial: Some(duration_ms(10)),
                        max: Some(duration_ms(1000)),
                        multiplier: 2.0,
                    },
                )),
            });
        }
        Some(PubSub::Subscription(subscription)) => {
            subscription.receive_batch_size = Some(32);
            subscription.long_polling_timeout = Some(duration_ms(20_000));
            subscription.fifo =
                Some(group.map_or(subscription.fifo.unwrap_or(false), |g| g.consume_message_orderly));
            // RocketMQ's default group retry policy: 16 retries on its delay levels from 10 s.
            let steps = [10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200];
            settings.backoff_policy = Some(proto::RetryPolicy {
                max_attempts: group.map_or(17, |g| g.retry_max_times.saturating_add(1)),
                strategy: Some(proto::retry_policy::Strategy::CustomizedBackoff(proto::CustomizedBackoff {
                    next: steps.iter().map(|s| duration_ms(s * 1000)).collect(),
                })),
            });
        }
        None => {}
    }
    settings
}

/// The consumer group `settings` declare, if they are a consumer's.
#[must_use]
pub fn subscription_group(settings: &proto::Settings) -> Option<String> {
    match settings.pub_sub.as_ref() {
        Some(PubSub::Subscription(subscription)) => subscription.group.as_ref().map(|g| g.name.clone()),
        _ => None,
    }
}

/// Whether `settings` declare a producer or a consumer at all (Telemetry refuses neither).
#[must_use]
pub fn declares_a_role(settings: &proto::Settings) -> bool {
    settings.pub_sub.is_some()
}

/// The producer groups a producer's settings register: one per topic it publishes to, named
/// after the topic, as RocketMQ's proxy registers them.
#[must_use]
pub fn producer_groups(settings: &proto::Settings) -> Vec<String> {
    match &settings.pub_sub {
        Some(PubSub::Publishing(publishing)) => publishing.topics.iter().map(|t| t.name.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The consumer a consumer's settings register, as RocketMQ's proxy registers it:
/// `CONSUME_ACTIVELY` for a simple consumer, `CONSUME_PASSIVELY` for a push consumer,
/// clustering, from the last offset, with its subscriptions.
#[must_use]
pub fn consumer_data(settings: &proto::Settings) -> Option<ConsumerData> {
    let Some(PubSub::Subscription(subscription)) = &settings.pub_sub else { return None };
    let group_name = subscription.group.as_ref().map(|g| g.name.clone()).filter(|g| !g.is_empty())?;
    let push = settings.client_type == Some(ClientType::PushConsumer as i32);
    let subscription_data_set = subscription
        .subscriptions
        .iter()
        .map(|entry| {
            let topic = entry.topic.as_ref().map(|t| t.name.as_str()).unwrap_or_default();
            let expression = entry.expression.as_ref().map_or("*", |e| e.expression.as_str());
            SubscriptionData::from_expression(topic, expression, 0)
        })
        .collect();
    Some(ConsumerData {
        consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
        consume_type: if push { "CONSUME_PASSIVELY" } else { "CONSUME_ACTIVELY" }.into(),
        group_name,
        message_model: "CLUSTERING".into(),
        subscription_data_set,
        unit_mode: false,
    })
}

/// The HEART_BEAT that registers client `client_id` with its declared `settings`: in each
/// producer group it publishes for, or in its consumer group.
#[must_use]
pub fn heartbeat(client_id: &str, settings: &proto::Settings) -> RemotingCommand {
    let data = HeartbeatData {
        client_id: client_id.to_owned(),
        producer_data_set: producer_groups(settings)
            .into_iter()
            .map(|group_name| ProducerData { group_name })
            .collect(),
        consumer_data_set: consumer_data(settings).into_iter().collect(),
        ..HeartbeatData::default()
    };
    RemotingCommand::request(RequestCode::HEART_BEAT, 0, crate::protocol::ExtFields::new())
        .with_body(json::to_body(&data, KeyStyle::Fastjson))
}

/// The UNREGISTER_CLIENT requests that take client `client_id` out of its groups.
#[must_use]
pub fn unregister(client_id: &str, settings: &proto::Settings) -> Vec<RemotingCommand> {
    let producers = producer_groups(settings).into_iter().map(|group| (Some(group), None));
    let consumer = consumer_data(settings).map(|c| (None, Some(c.group_name)));
    producers
        .chain(consumer)
        .map(|(producer_group, consumer_group)| {
            let header = UnregisterClientRequestHeader {
                client_id: client_id.to_owned(),
                producer_group,
                consumer_group,
            };
            RemotingCommand::request(RequestCode::UNREGISTER_CLIENT, 0, header.to_ext_fields())
        })
        .collect()
}

/// Where a half message is: its CommitLog offset and its queue offset, learnt from its send
/// (or from the broker's check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfMessage {
    /// CommitLog offset.
    pub phys: i64,
    /// Offset in the half topic's queue.
    pub queue_offset: i64,
}

/// The half messages a session's producer has sent and not ended, by transaction id;
/// bounded, oldest forgotten first.
#[derive(Debug, Default)]
pub struct OpenTransactions {
    by_id: BTreeMap<String, (u64, HalfMessage)>,
    next: u64,
}

/// Most open transactions a session remembers.
const MAX_OPEN_TRANSACTIONS: usize = 100_000;

impl OpenTransactions {
    /// Remember that transaction `id` sent `half`.
    pub fn insert(&mut self, id: &str, half: HalfMessage) {
        if self.by_id.len() >= MAX_OPEN_TRANSACTIONS {
            if let Some(oldest) = self.by_id.iter().min_by_key(|(_, (n, _))| *n).map(|(k, _)| k.clone()) {
                self.by_id.remove(&oldest);
            }
        }
        self.next += 1;
        self.by_id.insert(id.to_owned(), (self.next, half));
    }

    /// Forget transaction `id`, returning where its half message is.
    pub fn take(&mut self, id: &str) -> Option<HalfMessage> {
        self.by_id.remove(id).map(|(_, half)| half)
    }
}

/// The END_TRANSACTION for `request`, whose half message is `half`.
pub fn end_transaction(
    request: &proto::EndTransactionRequest,
    half: HalfMessage,
) -> Result<RemotingCommand, proto::Status> {
    use super::proto::Code;
    use super::status::status;
    if request.transaction_id.is_empty() {
        return Err(status(Code::InvalidTransactionId, "no transaction_id"));
    }
    let topic = request.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
    let resolution = match TransactionResolution::try_from(request.resolution) {
        Ok(TransactionResolution::Commit) => COMMIT,
        Ok(TransactionResolution::Rollback) => ROLLBACK,
        _ => UNKNOWN,
    };
    let header = EndTransactionRequestHeader {
        topic: Some(topic.clone()),
        producer_group: topic,
        tran_state_table_offset: half.queue_offset,
        commit_log_offset: half.phys,
        commit_or_rollback: resolution,
        from_transaction_check: Some(request.source == proto::TransactionSource::SourceServerCheck as i32),
        msg_id: request.message_id.clone(),
        transaction_id: Some(request.transaction_id.clone()),
    };
    Ok(RemotingCommand::request(RequestCode::END_TRANSACTION, 0, header.to_ext_fields()))
}

/// A broker's CHECK_TRANSACTION_STATE as the Telemetry command a 5.x producer answers
/// (`recover_orphaned_transaction_command`), with its transaction id and where its half
/// message is, for the EndTransaction that answers it. `None` if the request is not a
/// check or carries no readable message.
#[must_use]
pub fn orphaned_transaction(
    request: &RemotingCommand,
) -> Option<(proto::TelemetryCommand, String, HalfMessage)> {
    use crate::protocol::message::stored::decode_records;
    if request.request_code() != RequestCode::CHECK_TRANSACTION_STATE {
        return None;
    }
    let number = |name: &str| request.ext_fields.get(name).and_then(|v| v.parse::<i64>().ok());
    let half =
        HalfMessage { phys: number("commitLogOffset")?, queue_offset: number("tranStateTableOffset")? };
    let stored = decode_records(&request.body).ok()?.into_iter().next()?;
    let message = super::message::from_stored(&stored);
    let transaction_id = request
        .ext_fields
        .get("transactionId")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .or_else(|| message.system_properties.as_ref().map(|s| s.message_id.clone()))?;
    let command = proto::TelemetryCommand {
        status: Some(super::status::ok()),
        command: Some(proto::telemetry_command::Command::RecoverOrphanedTransactionCommand(
            proto::RecoverOrphanedTransactionCommand {
                message: Some(message),
                transaction_id: transaction_id.clone(),
            },
        )),
    };
    Some((command, transaction_id, half))
}

/// The client type its settings declare.
#[must_use]
pub fn client_type(settings: &proto::Settings) -> Option<ClientType> {
    settings.client_type.and_then(|t| ClientType::try_from(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer() -> proto::Settings {
        proto::Settings {
            client_type: Some(ClientType::Producer as i32),
            pub_sub: Some(PubSub::Publishing(proto::Publishing {
                topics: vec![proto::Resource { resource_namespace: String::new(), name: "Orders".into() }],
                max_body_size: 0,
                validate_message_type: false,
            })),
            ..proto::Settings::default()
        }
    }

    #[test]
    fn a_producer_is_answered_with_the_servers_limits_and_registered_per_topic() {
        let merged = merged_settings(&producer(), None);
        let Some(PubSub::Publishing(publishing)) = &merged.pub_sub else { panic!("publishing") };
        assert_eq!((publishing.max_body_size, publishing.validate_message_type), (MAX_BODY_SIZE, true));
        assert_eq!(merged.backoff_policy.as_ref().unwrap().max_attempts, 3);
        assert_eq!(merged.metric, Some(proto::Metric { on: false, endpoints: None }));
        let beat = heartbeat("c1", &producer());
        let data: HeartbeatData = json::from_slice(&beat.body).unwrap();
        assert_eq!(data.client_id, "c1");
        assert_eq!(data.producer_data_set, vec![ProducerData { group_name: "Orders".into() }]);
        assert_eq!(unregister("c1", &producer()).len(), 1);
        assert!(!declares_a_role(&proto::Settings::default()));
    }

    #[test]
    fn a_consumer_is_registered_in_its_group_with_its_subscriptions() {
        let resource =
            |name: &str| Some(proto::Resource { resource_namespace: String::new(), name: name.into() });
        let settings = proto::Settings {
            client_type: Some(ClientType::PushConsumer as i32),
            pub_sub: Some(PubSub::Subscription(proto::Subscription {
                group: resource("cg"),
                subscriptions: vec![proto::SubscriptionEntry {
                    topic: resource("Orders"),
                    expression: Some(proto::FilterExpression { r#type: 1, expression: "A || B".into() }),
                }],
                ..proto::Subscription::default()
            })),
            ..proto::Settings::default()
        };
        let data: HeartbeatData = json::from_slice(&heartbeat("c1", &settings).body).unwrap();
        let consumer = &data.consumer_data_set[0];
        assert_eq!(
            (consumer.group_name.as_str(), consumer.consume_type.as_str()),
            ("cg", "CONSUME_PASSIVELY")
        );
        assert_eq!(consumer.message_model, "CLUSTERING");
        assert_eq!(consumer.subscription_data_set[0].tags_set.len(), 2);
        let leave = unregister("c1", &settings);
        let header = UnregisterClientRequestHeader::decode(&leave[0].ext_fields).unwrap();
        assert_eq!(header.consumer_group.as_deref(), Some("cg"));
    }

    #[test]
    fn an_end_names_its_half_message_and_the_topic_as_producer_group() {
        let request = proto::EndTransactionRequest {
            topic: Some(proto::Resource { resource_namespace: String::new(), name: "Orders".into() }),
            message_id: "01AB".into(),
            transaction_id: "01AB".into(),
            resolution: TransactionResolution::Rollback as i32,
            source: proto::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        };
        let command = end_transaction(&request, HalfMessage { phys: 4096, queue_offset: 3 }).unwrap();
        let header = EndTransactionRequestHeader::decode(&command.ext_fields).unwrap();
        assert_eq!(
            (header.producer_group.as_str(), header.commit_log_offset, header.tran_state_table_offset),
            ("Orders", 4096, 3)
        );
        assert_eq!((header.commit_or_rollback, header.from_transaction_check), (ROLLBACK, Some(false)));
        let mut open = OpenTransactions::default();
        open.insert("x", HalfMessage { phys: 1, queue_offset: 2 });
        assert_eq!(open.take("x"), Some(HalfMessage { phys: 1, queue_offset: 2 }));
        assert_eq!(open.take("x"), None);
        let empty = proto::EndTransactionRequest { transaction_id: String::new(), ..request };
        assert_eq!(
            end_transaction(&empty, HalfMessage { phys: 0, queue_offset: 0 }).unwrap_err().code,
            proto::Code::InvalidTransactionId as i32
        );
    }
}
