//! What an operator asks of this client through a broker (mqadmin `consumerStatus`,
//! `queryMsgByUniqueKey -g -d`): GET_CONSUMER_RUNNING_INFO is answered from the consumer's
//! state; CONSUME_MESSAGE_DIRECTLY hands the message to the group's listener, like any
//! delivery, and answers with what the listener said once it has.

use std::collections::BTreeMap;

use super::consume::ConsumeResult;
use super::machine::{Client, ClientEvent, DeliveryId};
use crate::io::{ConnId, MonoNanos, Now};
use crate::protocol::body::{
    ConsumeMessageDirectlyResult, ConsumerRunningInfo, MessageQueue, ProcessQueueInfo,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::stored::decode_records;
use crate::protocol::{version_desc, RemotingCommand, ResponseCode, SERVER_VERSION};

/// Most consume-directly requests waiting for listeners at once.
const MAX_DIRECT: usize = 100;

/// A consume-directly request waiting for the listener.
#[derive(Debug, Clone)]
pub(super) struct DirectConsume {
    conn: ConnId,
    request: RemotingCommand,
    orderly: bool,
    started: MonoNanos,
}

/// Consume-directly requests by the delivery that carries them.
pub(super) type DirectConsumes = BTreeMap<DeliveryId, DirectConsume>;

fn answer(request: &RemotingCommand, code: ResponseCode, remark: &str) -> RemotingCommand {
    RemotingCommand::response_to(request, code, Some(remark.to_owned()))
}

impl Client {
    /// GET_CONSUMER_RUNNING_INFO: the group's subscriptions and, per owned queue, what is
    /// held and where it would commit.
    pub(super) fn on_running_info(&mut self, now: Now, conn: ConnId, request: &RemotingCommand) {
        let group = request.ext_fields.get("consumerGroup").unwrap_or_default();
        let reply = match self.consumers.get(group) {
            None => answer(
                request,
                ResponseCode::SYSTEM_ERROR,
                &format!("The Consumer Group <{group}> not exist in this consumer"),
            ),
            Some(consumer) => {
                let mut info = ConsumerRunningInfo::default();
                let properties = [
                    (
                        "PROP_CONSUME_TYPE",
                        if consumer.config.is_lite_pull() { "CONSUME_ACTIVELY" } else { "CONSUME_PASSIVELY" }
                            .to_owned(),
                    ),
                    ("PROP_CONSUMEORDERLY", consumer.config.orderly.to_string()),
                    ("PROP_CLIENT_VERSION", version_desc(SERVER_VERSION)),
                ];
                info.properties = properties.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                info.subscription_set = consumer.subscriptions.values().cloned().collect();
                for (queue, owned) in &consumer.owned {
                    let (min, max, count, bytes) = owned.pq.held();
                    let commit =
                        owned.pq.commit_point().or_else(|| consumer.offsets.get(queue)).unwrap_or(-1);
                    info.mq_table.insert(
                        queue.clone(),
                        ProcessQueueInfo {
                            commit_offset: commit,
                            cached_msg_min_offset: min.unwrap_or(0),
                            cached_msg_max_offset: max.unwrap_or(0),
                            cached_msg_count: i32::try_from(count).unwrap_or(i32::MAX),
                            cached_msg_size_in_mi_b: i32::try_from(bytes / (1024 * 1024)).unwrap_or(i32::MAX),
                            locked: owned.locked(now.mono),
                            droped: owned.pq.dropped,
                        },
                    );
                }
                RemotingCommand::response_to(request, ResponseCode::SUCCESS, None)
                    .with_body(json::to_body(&info, KeyStyle::Fastjson))
            }
        };
        self.transport.reply(conn, &reply, &mut self.out);
    }

    /// CONSUME_MESSAGE_DIRECTLY: the message goes to the group's listener as a delivery of
    /// its own; [`Client::consumed`] answers the broker.
    pub(super) fn on_consume_directly(&mut self, now: Now, conn: ConnId, request: &RemotingCommand) {
        let group = request.ext_fields.get("consumerGroup").unwrap_or_default().to_owned();
        let message = decode_records(&request.body).ok().and_then(|m| m.into_iter().next());
        let refusal = match (&message, self.consumers.get(&group)) {
            (None, _) => {
                Some((ResponseCode::SYSTEM_ERROR, "the request carries no readable message".to_owned()))
            }
            (_, None) => Some((
                ResponseCode::SYSTEM_ERROR,
                format!("The Consumer Group <{group}> not exist in this consumer"),
            )),
            _ if self.direct.len() >= MAX_DIRECT => Some((
                ResponseCode::SYSTEM_BUSY,
                "too many messages waiting to be consumed directly".to_owned(),
            )),
            _ => None,
        };
        if let Some((code, why)) = refusal {
            self.transport.reply(conn, &answer(request, code, &why), &mut self.out);
            return;
        }
        let (Some(message), Some(consumer)) = (message, self.consumers.get(&group)) else { return };
        let orderly = consumer.config.orderly;
        let broker_name = request.ext_fields.get("brokerName").unwrap_or_default();
        let queue = MessageQueue::new(&message.topic, broker_name, message.head.queue_id);
        self.next_delivery += 1;
        let id = DeliveryId(self.next_delivery);
        self.direct.insert(id, DirectConsume { conn, request: request.clone(), orderly, started: now.mono });
        self.events.push_back(ClientEvent::Deliver { id, group, queue, messages: vec![message] });
    }

    /// The listener's answer to a consume-directly delivery, if `id` is one: answered to
    /// the broker that asked (nothing is committed or sent back).
    pub(super) fn consumed_directly(&mut self, now: Now, id: DeliveryId, result: ConsumeResult) -> bool {
        let Some(direct) = self.direct.remove(&id) else { return false };
        let body = ConsumeMessageDirectlyResult {
            order: direct.orderly,
            auto_commit: true,
            consume_result: match result {
                ConsumeResult::Success => "CR_SUCCESS",
                ConsumeResult::Later => "CR_LATER",
            }
            .into(),
            remark: String::new(),
            spent_time_mills: i64::try_from(now.mono.millis_since(direct.started)).unwrap_or(i64::MAX),
        };
        let reply = RemotingCommand::response_to(&direct.request, ResponseCode::SUCCESS, None)
            .with_body(json::to_body(&body, KeyStyle::Fastjson));
        self.transport.reply(direct.conn, &reply, &mut self.out);
        true
    }
}
