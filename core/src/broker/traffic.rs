//! What flowed through the broker, by topic and group, for its metrics: messages and bytes
//! in and out, message sizes, sends to a dead-letter queue, transaction commits and
//! rollbacks, how far each group has pulled, and request latency by code. Counted as the
//! subsystems serve; read by [`super::Broker::metrics`].

use crate::metrics::{Histogram, Keyed};
use crate::protocol::message::properties::{self, keys};

/// Most label sets kept per counter: topics and groups come from clients, so a bound keeps
/// a client inventing names from growing the counters without limit.
const MAX_SERIES: usize = 20_000;
/// Where counts go once a counter holds `MAX_SERIES` label sets.
const OVERFLOW: &str = "_overflow";

/// RocketMQ's `rocketmq_message_size` buckets: 1 KB, 4 KB, 512 KB, 1 MB, 2 MB, 4 MB.
pub(crate) const SIZE_BUCKETS: &[f64] = &[1024.0, 4096.0, 524_288.0, 1_048_576.0, 2_097_152.0, 4_194_304.0];
/// RocketMQ's `rocketmq_rpc_latency` buckets, ms.
pub(crate) const LATENCY_BUCKETS_MS: &[f64] = &[1.0, 3.0, 5.0, 10.0, 100.0, 1000.0, 3000.0];

/// A message's type, as RocketMQ's `message_type` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageType {
    Normal,
    Fifo,
    Delay,
    Transaction,
}

impl MessageType {
    /// The type of a message with these properties: a half message is a transaction's, a
    /// delay level or timer makes it a delay, a sharding key a FIFO message.
    pub fn of(props: &[u8]) -> Self {
        if properties::find(props, keys::TRAN_MSG) == Some(b"true") {
            Self::Transaction
        } else if [keys::DELAY, keys::TIMER_DELIVER_MS, keys::TIMER_DELAY_SEC, keys::TIMER_DELAY_MS]
            .iter()
            .any(|key| properties::find(props, key).is_some_and(|v| !v.is_empty() && v != b"0"))
        {
            Self::Delay
        } else if properties::find(props, keys::SHARDING_KEY).is_some_and(|v| !v.is_empty()) {
            Self::Fifo
        } else {
            Self::Normal
        }
    }

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Fifo => "FIFO",
            Self::Delay => "Delay",
            Self::Transaction => "Transaction",
        }
    }
}

/// Messages and bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flow {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
}

/// Messages in, with their sizes.
#[derive(Debug, Clone)]
pub(crate) struct Inflow {
    pub(crate) flow: Flow,
    pub(crate) sizes: Histogram,
}

impl Default for Inflow {
    fn default() -> Self {
        Self { flow: Flow::default(), sizes: Histogram::new(SIZE_BUCKETS) }
    }
}

/// Requests answered with one code, and how long they took.
#[derive(Debug, Clone)]
pub(crate) struct Latency(pub(crate) Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(LATENCY_BUCKETS_MS))
    }
}

/// A request's identity in the latency histogram: request code, response code, and whether
/// it was a held (long-polling) pull.
pub(crate) type RpcKey = (i32, i32, bool);

/// The broker's traffic counters.
#[derive(Debug, Clone)]
pub(crate) struct Traffic {
    /// By (topic, message type).
    pub(crate) inflow: Keyed<(String, MessageType), Inflow>,
    /// By (topic, group).
    pub(crate) outflow: Keyed<(String, String), Flow>,
    /// Messages sent to a dead-letter queue, by (original topic, group).
    pub(crate) to_dlq: Keyed<(String, String), u64>,
    /// Transactions committed and rolled back, by topic.
    pub(crate) commits: Keyed<String, u64>,
    pub(crate) rollbacks: Keyed<String, u64>,
    /// Where each group's last pull of a queue ended, by (topic, group, queue): what it
    /// holds in flight beyond its committed offset.
    pub(crate) pulled: Keyed<(String, String, i32), u64>,
    /// Request latency.
    pub(crate) rpc: Keyed<RpcKey, Latency>,
}

impl Default for Traffic {
    fn default() -> Self {
        let pair = || (OVERFLOW.to_owned(), OVERFLOW.to_owned());
        Self {
            inflow: Keyed::new(MAX_SERIES, (OVERFLOW.to_owned(), MessageType::Normal)),
            outflow: Keyed::new(MAX_SERIES, pair()),
            to_dlq: Keyed::new(MAX_SERIES, pair()),
            commits: Keyed::new(MAX_SERIES, OVERFLOW.to_owned()),
            rollbacks: Keyed::new(MAX_SERIES, OVERFLOW.to_owned()),
            pulled: Keyed::new(MAX_SERIES * 8, (OVERFLOW.to_owned(), OVERFLOW.to_owned(), 0)),
            rpc: Keyed::new(MAX_SERIES, (0, 0, false)),
        }
    }
}

impl Traffic {
    /// A message of `size` bytes stored for a producer in `topic`.
    pub(crate) fn put(&mut self, topic: &str, kind: MessageType, size: usize) {
        let inflow = self.inflow.entry((topic.to_owned(), kind));
        inflow.flow.messages += 1;
        inflow.flow.bytes += size as u64;
        #[allow(clippy::cast_precision_loss)] // a bucket, not an exact size
        inflow.sizes.observe(size as f64);
    }

    /// `messages` of `bytes` in total delivered to `group` from `topic`'s queue `queue_id`,
    /// whose pull ended at `next`.
    pub(crate) fn got(
        &mut self,
        (topic, group, queue_id): (&str, &str, i32),
        messages: u64,
        bytes: u64,
        next: u64,
    ) {
        if messages > 0 {
            let flow = self.outflow.entry((topic.to_owned(), group.to_owned()));
            flow.messages += messages;
            flow.bytes += bytes;
        }
        *self.pulled.entry((topic.to_owned(), group.to_owned(), queue_id)) = next;
    }

    /// A request with `code` answered `response` after `waited_ns`.
    pub(crate) fn answered(&mut self, code: i32, response: i32, long_polling: bool, waited_ns: u64) {
        #[allow(clippy::cast_precision_loss)] // a bucket, not an exact time
        self.rpc.entry((code, response, long_polling)).0.observe(waited_ns as f64 / 1e6);
    }

    /// Forget a deleted topic's series.
    pub(crate) fn forget_topic(&mut self, topic: &str) {
        self.inflow.retain(|(t, _)| t != topic);
        self.outflow.retain(|(t, _)| t != topic);
        self.to_dlq.retain(|(t, _)| t != topic);
        self.commits.retain(|t| t != topic);
        self.rollbacks.retain(|t| t != topic);
        self.pulled.retain(|(t, _, _)| t != topic);
    }

    /// Forget a deleted group's series.
    pub(crate) fn forget_group(&mut self, group: &str) {
        self.outflow.retain(|(_, g)| g != group);
        self.to_dlq.retain(|(_, g)| g != group);
        self.pulled.retain(|(_, g, _)| g != group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_follow_rocketmqs_rules() {
        let props = |pairs: &[(&str, &str)]| {
            let mut p = Vec::new();
            for (k, v) in pairs {
                properties::push(&mut p, k, v);
            }
            p
        };
        assert_eq!(MessageType::of(&props(&[])), MessageType::Normal);
        assert_eq!(
            MessageType::of(&props(&[(keys::TRAN_MSG, "true"), (keys::DELAY, "3")])),
            MessageType::Transaction
        );
        assert_eq!(MessageType::of(&props(&[(keys::DELAY, "3")])), MessageType::Delay);
        assert_eq!(MessageType::of(&props(&[(keys::DELAY, "0")])), MessageType::Normal);
        assert_eq!(MessageType::of(&props(&[(keys::TIMER_DELIVER_MS, "17")])), MessageType::Delay);
        assert_eq!(MessageType::of(&props(&[(keys::SHARDING_KEY, "g1")])), MessageType::Fifo);
    }

    #[test]
    fn a_deleted_topic_or_group_leaves_no_series() {
        let mut traffic = Traffic::default();
        traffic.put("t", MessageType::Normal, 10);
        traffic.put("u", MessageType::Normal, 10);
        traffic.got(("t", "g", 0), 1, 10, 1);
        traffic.got(("u", "g", 0), 1, 10, 1);
        traffic.got(("u", "h", 0), 1, 10, 1);
        traffic.forget_topic("t");
        traffic.forget_group("g");
        assert_eq!(traffic.inflow.iter().map(|((t, _), _)| t.as_str()).collect::<Vec<_>>(), vec!["u"]);
        let out: Vec<_> = traffic.outflow.iter().map(|((t, g), _)| (t.as_str(), g.as_str())).collect();
        assert_eq!(out, vec![("u", "h")]);
        assert_eq!(traffic.pulled.iter().count(), 1);
    }
}
