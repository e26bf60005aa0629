//! The broker's metrics, under RocketMQ 5's names and labels (`BrokerMetricsConstant`,
//! `rocketmq_rpc_latency`, the store and timer gauges): counters kept as traffic flows
//! ([`super::traffic`]) and gauges worked out when asked (lag, storage, timers), so a scrape
//! costs the broker nothing between scrapes.
//!
//! Every series carries `cluster`, `node_type` (`broker`) and `node_id` (the broker name),
//! as RocketMQ's exporter attaches them.

use super::traffic::Flow;
use super::Broker;
use crate::io::Now;
use crate::metrics::{MetricFamily, MetricKind, MetricValue};

/// Labels every series starts with.
type Labels = Vec<(&'static str, String)>;

impl Broker {
    /// Every metric family at `now`.
    #[must_use]
    pub fn metrics(&self, now: Now) -> Vec<MetricFamily> {
        let base = Base(vec![
            ("cluster", self.shared.config.cluster_name.clone()),
            ("node_type", "broker".to_owned()),
            ("node_id", self.shared.config.broker_name.clone()),
        ]);
        let mut families = self.traffic_families(&base);
        families.extend(self.consumer_families(now, &base));
        families.extend(self.store_families(now, &base));
        families
    }

    /// Counters and histograms of what flowed in and out.
    fn traffic_families(&self, base: &Base) -> Vec<MetricFamily> {
        let with = |more: &[(&'static str, &str)]| base.with(more);
        let traffic = &self.shared.traffic;
        let mut messages_in = counter("rocketmq_messages_in", "Messages stored for producers.");
        let mut bytes_in = counter("rocketmq_throughput_in", "Message body bytes stored for producers.");
        let mut sizes = MetricFamily::new(
            "rocketmq_message_size",
            "Sizes of the message bodies stored, bytes.",
            MetricKind::Histogram,
        );
        for ((topic, kind), inflow) in traffic.inflow.iter() {
            let labels = with(&[("topic", topic), ("message_type", kind.label())]);
            push_flow(&mut messages_in, &mut bytes_in, labels.clone(), &inflow.flow);
            sizes.push(labels, inflow.sizes.value());
        }
        let mut messages_out = counter("rocketmq_messages_out", "Messages delivered to consumers by pulls.");
        let mut bytes_out =
            counter("rocketmq_throughput_out", "Bytes of stored messages delivered by pulls.");
        for ((topic, group), flow) in traffic.outflow.iter() {
            let labels = with(&[("topic", topic), ("consumer_group", group)]);
            push_flow(&mut messages_out, &mut bytes_out, labels, flow);
        }
        let mut dlq = counter("rocketmq_send_to_dlq_messages", "Messages sent to a dead-letter queue.");
        for ((topic, group), count) in traffic.to_dlq.iter() {
            dlq.push(with(&[("topic", topic), ("consumer_group", group)]), int(*count));
        }
        let mut commits = counter("rocketmq_commit_messages", "Transaction messages committed.");
        for (topic, count) in traffic.commits.iter() {
            commits.push(with(&[("topic", topic)]), int(*count));
        }
        let mut rollbacks = counter("rocketmq_rollback_messages", "Transaction messages rolled back.");
        for (topic, count) in traffic.rollbacks.iter() {
            rollbacks.push(with(&[("topic", topic)]), int(*count));
        }
        let mut rpc = MetricFamily::new(
            "rocketmq_rpc_latency",
            "Time from reading a request to queueing its response, ms.",
            MetricKind::Histogram,
        );
        for ((code, response, long_polling), latency) in traffic.rpc.iter() {
            let (code, response) = (code.to_string(), response.to_string());
            let labels = with(&[
                ("protocol_type", "remoting"),
                ("request_code", &code),
                ("response_code", &response),
                ("is_long_polling", if *long_polling { "true" } else { "false" }),
            ]);
            rpc.push(labels, latency.0.value());
        }
        vec![messages_in, bytes_in, sizes, messages_out, bytes_out, dlq, commits, rollbacks, rpc]
    }

    /// Per (topic, group): lag, in flight, ready, and their ages; groups and connections.
    fn consumer_families(&self, now: Now, base: &Base) -> Vec<MetricFamily> {
        let with = |more: &[(&'static str, &str)]| base.with(more);
        let consumers = &self.consumers;
        let shared = &self.shared;
        let mut lag =
            gauge("rocketmq_consumer_lag_messages", "Messages stored but not yet committed by the group.");
        let mut inflight = gauge(
            "rocketmq_consumer_inflight_messages",
            "Messages pulled by the group but not yet committed.",
        );
        let mut ready =
            gauge("rocketmq_consumer_ready_messages", "Messages stored but not yet pulled by the group.");
        let mut lag_latency = gauge(
            "rocketmq_consumer_lag_latency",
            "Age of the oldest message the group has not committed, ms.",
        );
        let mut queueing = gauge(
            "rocketmq_consumer_queueing_latency",
            "Age of the oldest message the group has not pulled, ms.",
        );
        for row in self.group_progress(now) {
            let labels = with(&[("topic", &row.topic), ("consumer_group", &row.group)]);
            lag.push(labels.clone(), int(row.lag));
            inflight.push(labels.clone(), int(row.inflight));
            ready.push(labels.clone(), int(row.ready));
            lag_latency.push(labels.clone(), MetricValue::Int(row.oldest_unacked_ms));
            queueing.push(labels, MetricValue::Int(row.oldest_ready_ms));
        }
        let (producer_conns, consumer_conns) = consumers.clients.connection_counts();
        let groups = consumers.groups.wrapper().subscription_group_table.len();
        let one = |name, help, value: usize| {
            let mut family = gauge(name, help);
            family.push(with(&[]), int(value as u64));
            family
        };
        vec![
            lag,
            inflight,
            ready,
            lag_latency,
            queueing,
            one("rocketmq_producer_connections", "Open producer connections.", producer_conns),
            one("rocketmq_consumer_connections", "Open consumer connections.", consumer_conns),
            one("rocketmq_topic_number", "Topics on this broker.", shared.topics.names().count()),
            one("rocketmq_consumer_group_number", "Subscription groups on this broker.", groups),
        ]
    }

    /// The store, timers, delay levels, transactions and request queues.
    fn store_families(&self, now: Now, base: &Base) -> Vec<MetricFamily> {
        let with = |more: &[(&'static str, &str)]| base.with(more);
        let store = &self.shared.store;
        let mut families = Vec::new();
        let mut one = |name, help, kind, value: u64| {
            let mut family = MetricFamily::new(name, help, kind);
            family.push(with(&[]), int(value));
            families.push(family);
        };
        let write_pos = store.write_pos().0;
        one(
            "rocketmq_storage_size",
            "CommitLog bytes held, from its oldest kept record to its end.",
            MetricKind::Gauge,
            write_pos.saturating_sub(store.min_phys().0),
        );
        one(
            "rocketmq_storage_flush_behind_bytes",
            "CommitLog bytes appended but not yet fsynced.",
            MetricKind::Gauge,
            write_pos.saturating_sub(store.flushed_end().0),
        );
        one(
            "rocketmq_storage_dispatch_behind_bytes",
            "CommitLog bytes appended but not yet visible to consumers.",
            MetricKind::Gauge,
            write_pos.saturating_sub(store.visible_end().0),
        );
        let oldest = store.read_record_at(&*self.shared.reader, store.min_phys()).ok().and_then(|record| {
            match crate::protocol::message::stored::parse_record(&record) {
                Ok(crate::protocol::message::stored::Parsed::Message(view)) => {
                    Some(view.head().store_timestamp)
                }
                _ => None,
            }
        });
        one(
            "rocketmq_storage_message_reserve_time",
            "Age of the oldest message kept, ms.",
            MetricKind::Gauge,
            oldest.map_or(0, |stored| u64::try_from(now.wall.0.saturating_sub(stored)).unwrap_or(0)),
        );
        let timers = &self.timers;
        let timer_end = store.queue_offsets(super::timer::TIMER_TOPIC, 0).map_or(0, |(_, end)| end.0);
        one(
            "rocketmq_timer_enqueue",
            "Timer messages read into the wheel.",
            MetricKind::Counter,
            timers.state.next_offset(),
        );
        one("rocketmq_timer_dequeue", "Timer messages delivered.", MetricKind::Counter, timers.delivered);
        one(
            "rocketmq_timing_messages",
            "Timer messages waiting in the wheel.",
            MetricKind::Gauge,
            timers.state.pending() as u64,
        );
        one(
            "rocketmq_timer_enqueue_lag",
            "Timer messages stored but not yet read into the wheel.",
            MetricKind::Gauge,
            timer_end.saturating_sub(timers.state.next_offset()),
        );
        one(
            "rocketmq_timer_dequeue_lag",
            "Timer messages due but not yet delivered.",
            MetricKind::Gauge,
            timers.state.backlog() as u64,
        );
        one(
            "rocketmq_timer_dequeue_latency",
            "How long the most overdue timer message has been due, ms.",
            MetricKind::Gauge,
            timers.state.overdue_ms(now.wall),
        );
        let (_, open) = self.transaction_stats();
        one(
            "rocketmq_half_messages",
            "Transactions neither committed nor rolled back.",
            MetricKind::Gauge,
            open as u64,
        );
        let mut delay_lag =
            gauge("rocketmq_delay_message_lag", "Messages waiting in a delay level's schedule queue.");
        let mut delay_latency =
            gauge("rocketmq_delay_message_latency", "How long a delay level's head has been due, ms.");
        for (level, waiting, overdue) in self.delay.lag(store, now.wall) {
            let level = level.to_string();
            delay_lag.push(with(&[("delay_level", &level)]), int(waiting));
            delay_latency.push(with(&[("delay_level", &level)]), int(overdue));
        }
        let mut watermark =
            gauge("rocketmq_processor_watermark", "Requests waiting: sends for durability, pulls held.");
        watermark.push(with(&[("processor", "send")]), int(self.shared.replies.len() as u64));
        watermark.push(with(&[("processor", "pull")]), int(self.consumers.holds.len() as u64));
        families.extend([delay_lag, delay_latency, watermark]);
        families
    }
}

/// The labels every series starts with.
struct Base(Labels);

impl Base {
    /// These labels, then `more`.
    fn with(&self, more: &[(&'static str, &str)]) -> Labels {
        let mut labels = self.0.clone();
        labels.extend(more.iter().map(|(name, value)| (*name, (*value).to_owned())));
        labels
    }
}

fn counter(name: &'static str, help: &'static str) -> MetricFamily {
    MetricFamily::new(name, help, MetricKind::Counter)
}

fn gauge(name: &'static str, help: &'static str) -> MetricFamily {
    MetricFamily::new(name, help, MetricKind::Gauge)
}

fn int(value: u64) -> MetricValue {
    MetricValue::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn push_flow(messages: &mut MetricFamily, bytes: &mut MetricFamily, labels: Labels, flow: &Flow) {
    messages.push(labels.clone(), int(flow.messages));
    bytes.push(labels, int(flow.bytes));
}
