//! Questions for a consumer, asked through its broker: GET_CONSUMER_RUNNING_INFO (what a
//! client holds: `mqadmin consumerStatus`) and CONSUME_MESSAGE_DIRECTLY (have a client run
//! its listener on one message). The tool asks a broker; the broker asks the client on its
//! connection, with a request of its own, and hands the client's answer back unchanged.
//!
//! Relays are bounded ([`MAX_RELAYS`]) and time out ([`RELAY_TIMEOUT_MS`]); a client's
//! connection closing fails its relays at once.

use std::collections::BTreeMap;

use super::Consumers;
use crate::broker::refusal::Refusal;
use crate::broker::shared::Shared;
use crate::io::{ConnId, MonoNanos, Now};
use crate::protocol::message::message_id::decode_offset_message_id;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};
use crate::remoting;
use crate::store::PhysOffset;

/// Most relays waiting for clients at once; beyond it tools get SYSTEM_BUSY.
pub const MAX_RELAYS: usize = 1_000;
/// How long a client has to answer (RocketMQ's tools wait 5 s for running info; a
/// consume-directly runs the listener, so it gets longer).
pub const RELAY_TIMEOUT_MS: u64 = 20_000;

/// A tool's question waiting for a client's answer.
#[derive(Debug, Clone)]
pub(in crate::broker) struct Relay {
    /// The tool's connection and request.
    asker: ConnId,
    request: RemotingCommand,
    /// The client's connection.
    client: ConnId,
    deadline: MonoNanos,
}

/// Relays by the opaque of the broker's request to the client.
pub(in crate::broker) type Relays = BTreeMap<i32, Relay>;

impl Consumers {
    /// GET_CONSUMER_RUNNING_INFO or CONSUME_MESSAGE_DIRECTLY from a tool: ask the client
    /// named by `consumerGroup` and `clientId`. Answered later, by the client or the timeout.
    pub(in crate::broker) fn on_relay(
        &mut self,
        shared: &mut Shared,
        now: Now,
        asker: ConnId,
        request: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, Refusal> {
        let group = request.ext_fields.get("consumerGroup").unwrap_or_default();
        let client_id = request.ext_fields.get("clientId").unwrap_or_default();
        let client = self
            .clients
            .consumer_group(group)
            .and_then(|g| g.channels.iter().find(|(_, c)| c.client_id == client_id).map(|(conn, _)| *conn))
            .ok_or_else(|| {
                Refusal::SystemError(format!("The Consumer <{group}> <{client_id}> not online"))
            })?;
        if self.relays.len() >= MAX_RELAYS {
            return Err(Refusal::Busy("too many questions waiting for clients; try again later".into()));
        }
        let body = if request.request_code() == RequestCode::CONSUME_MESSAGE_DIRECTLY {
            // The tool names the message by its offset id; the client is sent the message.
            let id = request.ext_fields.get("msgId").unwrap_or_default();
            let offset = decode_offset_message_id(id)
                .and_then(|(_, offset)| u64::try_from(offset).ok())
                .ok_or_else(|| Refusal::SystemError(format!("{id} is not an offset message id")))?;
            let record = shared
                .store
                .read_record_at(&*shared.reader, PhysOffset(offset))
                .map_err(|_| Refusal::SystemError(format!("no message {id} in this broker")))?;
            record
        } else {
            request.body.clone()
        };
        let opaque = shared.opaque();
        let mut ask = RemotingCommand::request(request.request_code(), opaque, request.ext_fields.clone());
        ask.body = body;
        remoting::send(&mut shared.out, client, &ask);
        let deadline = now.mono.plus_millis(RELAY_TIMEOUT_MS);
        self.relays.insert(opaque, Relay { asker, request: request.clone(), client, deadline });
        Ok(None)
    }

    /// A response on a client's connection: if it answers a relay, the tool gets it.
    pub(in crate::broker) fn on_client_response(
        &mut self,
        shared: &mut Shared,
        conn: ConnId,
        response: &RemotingCommand,
    ) {
        if self.relays.get(&response.opaque).is_none_or(|r| r.client != conn) {
            return;
        }
        let Some(relay) = self.relays.remove(&response.opaque) else { return };
        let mut answer =
            RemotingCommand::response_to(&relay.request, response.response_code(), response.remark.clone());
        answer.ext_fields = response.ext_fields.clone();
        answer.body = response.body.clone();
        remoting::reply(&mut shared.out, relay.asker, &relay.request, &answer);
    }

    /// Fail the relays whose client left (`gone`) or whose time ran out.
    pub(in crate::broker) fn expire_relays(
        &mut self,
        shared: &mut Shared,
        now: MonoNanos,
        gone: Option<ConnId>,
    ) {
        if self.relays.is_empty() {
            return;
        }
        let (failed, kept): (Relays, Relays) = std::mem::take(&mut self.relays)
            .into_iter()
            .partition(|(_, r)| Some(r.client) == gone || Some(r.asker) == gone || now >= r.deadline);
        self.relays = kept;
        for relay in failed.into_values() {
            if Some(relay.asker) == gone {
                continue;
            }
            let (code, why) = if Some(relay.client) == gone {
                (ResponseCode::SYSTEM_ERROR, "the consumer's connection closed before it answered")
            } else if relay.request.request_code() == RequestCode::CONSUME_MESSAGE_DIRECTLY {
                (ResponseCode::CONSUME_MSG_TIMEOUT, "the consumer did not answer in time")
            } else {
                (ResponseCode::SYSTEM_ERROR, "the consumer did not answer in time")
            };
            let answer = RemotingCommand::response_to(&relay.request, code, Some(why.into()));
            remoting::reply(&mut shared.out, relay.asker, &relay.request, &answer);
        }
    }

    /// The earliest relay deadline, if any relay waits.
    pub(super) fn relay_deadline(&self) -> Option<MonoNanos> {
        self.relays.values().map(|r| r.deadline).min()
    }
}
