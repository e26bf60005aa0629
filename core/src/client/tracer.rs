//! Message trace, written by the client as RocketMQ's clients write it (`enableMsgTrace`):
//! after each send that stored its message a `Pub` record, and after the listener answers a
//! delivery a `SubBefore` and a `SubAfter` per message, each batch sent as one message to the
//! trace topic by the `_INNER_TRACE_PRODUCER` group, keyed by the traced messages' ids so the
//! broker's key index finds them. A trace send's outcome never reaches the application.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::machine::{Client, SendId};
use super::producer::{SendRequest, SendTarget};
use crate::io::Now;
use crate::protocol::client_requests::OutgoingMessage;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::StoredMessage;
use crate::protocol::trace::{CONTENT_SPLITOR, FIELD_SPLITOR};

/// The producer group trace messages are sent as.
pub const TRACE_PRODUCER_GROUP: &str = "_INNER_TRACE_PRODUCER";

/// The region RocketMQ's clients write when the broker named none.
const REGION: &str = "DefaultRegion";

/// Trace sends in flight, and request ids handed out.
#[derive(Debug, Default)]
pub(crate) struct Tracer {
    sends: BTreeSet<SendId>,
    next_request: u64,
}

/// One record's fields joined, ending the record.
fn record(fields: &[&str]) -> String {
    let mut out = fields.join(&CONTENT_SPLITOR.to_string());
    out.push(FIELD_SPLITOR);
    out
}

/// What a `Pub` record says of a stored send.
pub(crate) struct Published<'a> {
    /// The producer group.
    pub(crate) group: &'a str,
    /// The message sent.
    pub(crate) message: &'a OutgoingMessage,
    /// Its unique id.
    pub(crate) unique_id: &'a str,
    /// The offset id the broker gave it.
    pub(crate) offset_id: &'a str,
    /// The broker set that stored it.
    pub(crate) broker: &'a str,
    /// How long the send took, ms.
    pub(crate) cost_ms: u64,
}

impl Client {
    /// Whether a send is a trace send, whose outcome the application never sees.
    pub(super) fn is_trace_send(&mut self, id: SendId) -> bool {
        self.tracer.sends.remove(&id)
    }

    /// Trace a stored send (`Pub`), if tracing is on and it is not itself a trace.
    pub(super) fn trace_published(&mut self, now: Now, sent: &Published<'_>) {
        let Some(topic) = self.config.trace_topic.clone() else { return };
        if sent.group == TRACE_PRODUCER_GROUP || sent.message.topic == topic {
            return;
        }
        let cost = sent.cost_ms.to_string();
        let started = now.wall.0.saturating_sub(i64::try_from(sent.cost_ms).unwrap_or(0)).to_string();
        let keys = sent.message.keys.clone().unwrap_or_default();
        let body_len = sent.message.body.len().to_string();
        let body = record(&[
            "Pub",
            &started,
            REGION,
            sent.group,
            &sent.message.topic,
            sent.unique_id,
            sent.message.tags.as_deref().unwrap_or_default(),
            &keys,
            sent.broker,
            &body_len,
            &cost,
            "0",
            sent.offset_id,
            "true",
        ]);
        let trace_keys = format!("{} {keys}", sent.unique_id);
        self.send_trace(now, topic, trace_keys.trim(), body);
    }

    /// Trace a delivery the listener answered (`SubBefore` and `SubAfter` for each message).
    pub(super) fn trace_consumed(
        &mut self,
        now: Now,
        group: &str,
        messages: &[StoredMessage],
        cost_ms: u64,
        success: bool,
    ) {
        let Some(topic) = self.config.trace_topic.clone() else { return };
        if messages.iter().all(|m| m.topic == topic) {
            return;
        }
        let mut body = String::new();
        let mut ids = Vec::new();
        let begun = now.wall.0.saturating_sub(i64::try_from(cost_ms).unwrap_or(0)).to_string();
        let ended = now.wall.0.to_string();
        for message in messages {
            let find = |key: &str| {
                properties::find(&message.properties, key).map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let Some(id) = find(keys::UNIQ_KEY) else { continue };
            let message_keys = find(keys::KEYS).unwrap_or_default();
            self.tracer.next_request += 1;
            let request = format!("{}-{}", self.config.client_id, self.tracer.next_request);
            let retries = message.head.reconsume_times.to_string();
            body.push_str(&record(&[
                "SubBefore",
                &begun,
                REGION,
                group,
                &request,
                &id,
                &retries,
                &message_keys,
            ]));
            let (cost, status) = (cost_ms.to_string(), if success { "true" } else { "false" });
            body.push_str(&record(&[
                "SubAfter",
                &request,
                &id,
                &cost,
                status,
                &message_keys,
                "0",
                &ended,
                group,
            ]));
            ids.push(id);
        }
        if !ids.is_empty() {
            self.send_trace(now, topic, &ids.join(" "), body);
        }
    }

    fn send_trace(&mut self, now: Now, topic: String, keys: &str, body: String) {
        let message = OutgoingMessage {
            topic,
            tags: None,
            keys: Some(keys.to_owned()),
            user_properties: Vec::new(),
            body: Bytes::from(body.into_bytes()),
        };
        let request = SendRequest { group: TRACE_PRODUCER_GROUP.into(), message, target: SendTarget::Any };
        let id = self.send(now, request);
        self.tracer.sends.insert(id);
    }
}
