//! A consumer's settings, with RocketMQ's defaults: the push consumer's
//! (`DefaultMQPushConsumer`) and the lite pull consumer's (`DefaultLitePullConsumer`).

use super::allocate::AllocateStrategy;
use super::process_queue::FlowLimits;

/// Clustering (each message to one consumer of the group) or broadcasting (to all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageModel {
    /// Queues are split among the group; offsets live on the broker.
    Clustering,
    /// Every consumer reads every queue; offsets live on the client.
    Broadcasting,
}

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeFromWhere {
    /// At the end: only new messages (RocketMQ's default).
    LastOffset,
    /// At the beginning.
    FirstOffset,
    /// At the first message stored at or after this wall time, ms since the epoch
    /// (`CONSUME_FROM_TIMESTAMP` with `consumeTimestamp`).
    Timestamp(i64),
}

impl ConsumeFromWhere {
    /// The name heartbeats carry.
    #[must_use]
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::LastOffset => "CONSUME_FROM_LAST_OFFSET",
            Self::FirstOffset => "CONSUME_FROM_FIRST_OFFSET",
            Self::Timestamp(_) => "CONSUME_FROM_TIMESTAMP",
        }
    }
}

/// How messages reach the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    /// The client delivers to a listener and acts on its answer (retries, DLQ).
    Push,
    /// The application polls (`DefaultLitePullConsumer`): no listener, no retry topic;
    /// what a poll returns counts as consumed once the application polls again or commits.
    LitePull,
}

/// A consumer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Consumer group.
    pub group: String,
    /// Push or lite pull.
    pub kind: ConsumerKind,
    /// Topic → tag expression (`*`, `TagA || TagB`).
    pub subscriptions: Vec<(String, String)>,
    /// Clustering or broadcasting.
    pub model: MessageModel,
    /// Orderly: one message at a time per queue, under a broker lock (push only).
    pub orderly: bool,
    /// How queues are split (clustering).
    pub strategy: AllocateStrategy,
    /// Where a new group starts.
    pub from_where: ConsumeFromWhere,
    /// Deliveries before the dead-letter queue; -1: 16 (concurrent), unlimited (orderly).
    pub max_reconsume_times: i32,
    /// Messages per pull.
    pub pull_batch_size: i32,
    /// Messages per delivery.
    pub consume_batch_size: usize,
    /// When pulling a queue pauses.
    pub flow: FlowLimits,
    /// Most messages cached over all queues before pulling pauses (`pullThresholdForAll`).
    pub max_cached_all: usize,
    /// Rebalance period, ms.
    pub rebalance_interval_ms: u64,
    /// Offset commit period, ms.
    pub commit_interval_ms: u64,
    /// Lite pull: commit on the timer (`autoCommit`); otherwise only [`commit`] does.
    ///
    /// [`commit`]: super::Client::commit
    pub auto_commit: bool,
    /// How long the broker may hold a pull with nothing to return, ms
    /// (`brokerSuspendMaxTimeMillis`).
    pub pull_hold_ms: u64,
    /// A concurrent push delivery unanswered for this long is given up and sent back for a
    /// later retry, ms (`consumeTimeout`).
    pub consume_timeout_ms: u64,
    /// An orderly consumer's pause after a failed delivery, ms.
    pub suspend_ms: u64,
    /// Broadcasting: the offsets file loaded by the runtime, if any.
    pub local_offsets: Option<Vec<u8>>,
}

impl ConsumerConfig {
    /// RocketMQ's push-consumer defaults for `group` subscribing `topic` with `expression`.
    #[must_use]
    pub fn new(group: &str, topic: &str, expression: &str) -> Self {
        Self {
            group: group.to_owned(),
            kind: ConsumerKind::Push,
            subscriptions: vec![(topic.to_owned(), expression.to_owned())],
            model: MessageModel::Clustering,
            orderly: false,
            strategy: AllocateStrategy::Averagely,
            from_where: ConsumeFromWhere::LastOffset,
            max_reconsume_times: -1,
            pull_batch_size: 32,
            consume_batch_size: 1,
            flow: FlowLimits::default(),
            max_cached_all: usize::MAX,
            rebalance_interval_ms: 20_000,
            commit_interval_ms: 5_000,
            auto_commit: true,
            pull_hold_ms: 15_000,
            consume_timeout_ms: 15 * 60_000,
            suspend_ms: 1_000,
            local_offsets: None,
        }
    }

    /// RocketMQ's lite-pull-consumer defaults for `group` subscribing `topic` with
    /// `expression`; an empty `topic` subscribes nothing (for [`assign`]).
    ///
    /// [`assign`]: super::Client::assign
    #[must_use]
    pub fn lite_pull(group: &str, topic: &str, expression: &str) -> Self {
        let mut config = Self::new(group, topic, expression);
        if topic.is_empty() {
            config.subscriptions.clear();
        }
        config.kind = ConsumerKind::LitePull;
        config.pull_batch_size = 10;
        config.max_cached_all = 10_000;
        config.pull_hold_ms = 20_000;
        config
    }

    /// Deliveries allowed before the DLQ.
    #[must_use]
    pub fn max_reconsume(&self) -> i32 {
        match (self.max_reconsume_times, self.orderly) {
            (m, _) if m >= 0 => m,
            (_, false) => 16,
            (_, true) => i32::MAX,
        }
    }

    /// Whether the application polls.
    #[must_use]
    pub fn is_lite_pull(&self) -> bool {
        self.kind == ConsumerKind::LitePull
    }
}
