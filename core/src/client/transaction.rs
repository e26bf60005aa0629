//! The transactional producer's side of the client (`TransactionMQProducer`): a half
//! message is sent like any message but marked (`TRAN_MSG`, `PGROUP`, the PREPARED sys
//! flag); the application runs its local transaction and ends it with END_TRANSACTION,
//! oneway, to the master that stored the half message. When the broker asks about a
//! transaction left open (CHECK_TRANSACTION_STATE) the application hears
//! [`ClientEvent::CheckTransaction`] and answers the same way, marked as from a check.

use core::net::SocketAddr;

use super::machine::{Client, ClientEvent, SendId, SendResult};
use super::producer::SendRequest;
use super::route::master_addr;
use crate::io::{ConnId, Now};
use crate::protocol::headers::{CommandHeader, EndTransactionRequestHeader};
use crate::protocol::message::message_id::decode_offset_message_id;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{decode_records, sys_flag};
use crate::protocol::{RemotingCommand, RequestCode};

/// A local transaction's outcome (`LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// Deliver the message.
    Commit,
    /// Drop it.
    Rollback,
    /// Not known yet: the broker will ask again (`UNKNOW`).
    Unknown,
}

impl TransactionState {
    /// END_TRANSACTION's `commitOrRollback`.
    #[must_use]
    pub fn code(self) -> i32 {
        match self {
            Self::Commit => sys_flag::TRANSACTION_COMMIT,
            Self::Rollback => sys_flag::TRANSACTION_ROLLBACK,
            Self::Unknown => sys_flag::TRANSACTION_NOT_TYPE,
        }
    }
}

/// What END_TRANSACTION needs to name a half message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfMessage {
    /// The master that stored it.
    pub broker: SocketAddr,
    /// Producer group.
    pub group: String,
    /// Its half-queue offset (`tranStateTableOffset`).
    pub queue_offset: i64,
    /// Its CommitLog offset.
    pub commit_log_offset: i64,
    /// The message's id (`UNIQ_KEY`).
    pub msg_id: String,
    /// The transaction id (the same `UNIQ_KEY`).
    pub transaction_id: String,
    /// The real topic.
    pub topic: String,
}

impl Client {
    /// Send a half message; the outcome arrives as [`ClientEvent::SendDone`], then end it
    /// with [`end_transaction`](Self::end_transaction). A delay level is cleared, as
    /// RocketMQ's producer does: a transaction message is delivered when committed.
    pub fn send_half(&mut self, now: Now, mut request: SendRequest) -> SendId {
        let props = &mut request.message.user_properties;
        props.retain(|(key, _)| key != keys::DELAY && key != keys::TRAN_MSG && key != keys::PGROUP);
        props.push((keys::TRAN_MSG.to_owned(), "true".to_owned()));
        props.push((keys::PGROUP.to_owned(), request.group.clone()));
        self.send_with(now, request, sys_flag::TRANSACTION_PREPARED)
    }

    /// The half message a successful [`send_half`](Self::send_half) stored: `None` if its
    /// broker is unknown or its message id cannot be read.
    #[must_use]
    pub fn half_of(&self, group: &str, result: &SendResult) -> Option<HalfMessage> {
        let (id_addr, commit_log_offset) = decode_offset_message_id(&result.msg_id)?;
        let broker = self
            .routes
            .get(&result.queue.topic)
            .and_then(|route| master_addr(route, &result.queue.broker_name))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or(id_addr);
        Some(HalfMessage {
            broker,
            group: group.to_owned(),
            queue_offset: result.queue_offset,
            commit_log_offset,
            msg_id: result.unique_id.clone(),
            transaction_id: result.unique_id.clone(),
            topic: result.queue.topic.clone(),
        })
    }

    /// End a transaction (oneway, as RocketMQ's producer does: a lost one is checked back).
    pub fn end_transaction(&mut self, half: &HalfMessage, state: TransactionState, from_check: bool) {
        let header = EndTransactionRequestHeader {
            topic: Some(half.topic.clone()),
            producer_group: half.group.clone(),
            tran_state_table_offset: half.queue_offset,
            commit_log_offset: half.commit_log_offset,
            commit_or_rollback: state.code(),
            from_transaction_check: Some(from_check),
            msg_id: half.msg_id.clone(),
            transaction_id: Some(half.transaction_id.clone()),
        };
        let request = RemotingCommand::request(RequestCode::END_TRANSACTION, 0, header.to_ext_fields());
        let request = self.stamp(request);
        self.transport.oneway(half.broker, request, &mut self.out);
    }

    /// CHECK_TRANSACTION_STATE from the broker on `conn`: ask the application.
    pub(super) fn on_check_transaction(&mut self, conn: ConnId, request: &RemotingCommand) {
        let Some(broker) = self.transport.addr(conn) else { return };
        let message = match decode_records(&request.body) {
            Ok(mut messages) if !messages.is_empty() => messages.swap_remove(0),
            Ok(_) | Err(_) => {
                tracing::warn!(%broker, "transaction check without a readable message; ignored");
                return;
            }
        };
        let group = properties::find(&message.properties, keys::PGROUP)
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .unwrap_or_default();
        if !self.producer_groups.contains(&group) {
            tracing::warn!(group, "transaction check for a producer group this client does not run");
            return;
        }
        let field = |name: &str| request.ext_fields.get(name).unwrap_or_default().to_owned();
        let number = |name: &str| field(name).parse::<i64>().ok();
        let (Some(queue_offset), Some(commit_log_offset)) =
            (number("tranStateTableOffset"), number("commitLogOffset"))
        else {
            tracing::warn!(group, "transaction check without offsets; ignored");
            return;
        };
        let unique = properties::find(&message.properties, keys::UNIQ_KEY)
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .unwrap_or_else(|| field("msgId"));
        let transaction_id =
            request.ext_fields.get("transactionId").map_or_else(|| unique.clone(), str::to_owned);
        let half = HalfMessage {
            broker,
            group,
            queue_offset,
            commit_log_offset,
            msg_id: unique,
            transaction_id,
            topic: message.topic.clone(),
        };
        self.events.push_back(ClientEvent::CheckTransaction { half, message: Box::new(message) });
    }
}
