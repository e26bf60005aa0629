//! mqadmin's message trace: the trace records clients wrote for a message (found in the trace
//! topic through the key index, as the trace messages' keys hold the traced message's id),
//! as RocketMQ's `queryMsgTraceById` prints them.

use std::fmt::Write as _;

use keel_core::protocol::message::stored::StoredMessage;
use keel_core::protocol::trace::TraceRecord;

use super::report::utc;
use super::AdminClient;

/// One line of the trace: a send or a consumption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLine {
    /// `Pub` or `Sub`.
    pub kind: &'static str,
    /// The producer or consumer group.
    pub group: String,
    /// The client that wrote the record (the trace message's born host).
    pub client_host: String,
    /// When, ms.
    pub timestamp: i64,
    /// How long it took, ms.
    pub cost_ms: i64,
    /// Whether it succeeded.
    pub success: bool,
}

impl AdminClient {
    /// The trace of message `msg_id` in `trace_topic`: sends first, then consumptions, each
    /// in time order.
    pub async fn message_trace(&self, trace_topic: &str, msg_id: &str) -> anyhow::Result<Vec<TraceLine>> {
        let found = self.messages_by_key(trace_topic, msg_id, false, 64, (0, i64::MAX)).await?;
        Ok(trace_lines(found.iter().map(|(_, m)| m), msg_id))
    }
}

/// The lines the trace messages `messages` hold for `msg_id`: each `Pub`, and each
/// `SubAfter` with its `SubBefore`'s time and group.
pub fn trace_lines<'a>(messages: impl Iterator<Item = &'a StoredMessage>, msg_id: &str) -> Vec<TraceLine> {
    let mut lines = Vec::new();
    let mut before = std::collections::BTreeMap::new();
    let mut after = Vec::new();
    for message in messages {
        let host = message.head.born_host.ip().to_string();
        let body = String::from_utf8_lossy(&message.body);
        for record in TraceRecord::decode_all(&body).into_iter().filter(|r| r.msg_id() == Some(msg_id)) {
            match record {
                TraceRecord::Pub { timestamp, group, cost_ms, success, .. } => lines.push(TraceLine {
                    kind: "Pub",
                    group,
                    client_host: host.clone(),
                    timestamp,
                    cost_ms,
                    success,
                }),
                TraceRecord::SubBefore { request_id, timestamp, group, .. } => {
                    before.insert(request_id, (timestamp, group));
                }
                TraceRecord::SubAfter { request_id, cost_ms, success, timestamp, group, .. } => {
                    after.push((request_id, cost_ms, success, timestamp, group, host.clone()));
                }
                TraceRecord::Other { .. } => {}
            }
        }
    }
    for (request_id, cost_ms, success, timestamp, group, client_host) in after {
        let (begun, begun_by) = before.get(&request_id).cloned().unzip();
        lines.push(TraceLine {
            kind: "Sub",
            group: group.or(begun_by).unwrap_or_default(),
            client_host,
            timestamp: begun.or(timestamp).unwrap_or(0),
            cost_ms,
            success,
        });
    }
    lines.sort_by_key(|l| (l.kind != "Pub", l.timestamp));
    lines
}

/// `queryMsgTraceById`'s tables: the sends, then the consumptions.
#[must_use]
pub fn trace_text(lines: &[TraceLine]) -> String {
    let mut out = String::new();
    for (kind, group, time) in
        [("Pub", "#ProducerGroup", "#SendTime"), ("Sub", "#ConsumerGroup", "#ConsumerTime")]
    {
        if kind == "Sub" {
            let _ = writeln!(out);
        }
        let mut row = |cells: [&str; 6]| {
            let [a, b, c, d, e, f] = cells;
            let _ = writeln!(out, "{a:<10} {b:<20} {c:<20} {d:<20} {e:<10} {f:<10}");
        };
        row(["#Type", group, "#ClientHost", time, "#CostTimes", "#Status"]);
        for line in lines.iter().filter(|l| l.kind == kind) {
            let (when, cost) = (utc(line.timestamp), format!("{}ms", line.cost_ms));
            let status = if line.success { "success" } else { "failed" };
            row([line.kind, &line.group, &line.client_host, &when, &cost, status]);
        }
    }
    out
}
