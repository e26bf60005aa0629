//! How a producer picks a queue (`MQFaultStrategy`, `LatencyFaultToleranceImpl`): round
//! robin over the topic's write queues, skipping brokers that failed or answered slowly
//! lately, and on a retry the broker that just failed. When every broker is avoided, plain
//! round robin goes on: a single-broker cluster must keep trying.

use std::collections::BTreeMap;

use crate::io::MonoNanos;
use crate::protocol::body::MessageQueue;

/// Latency thresholds (ms) and how long a broker that answered that slowly is avoided
/// (ms): RocketMQ 5's `latencyMax` and `notAvailableDuration` (4.x avoided for up to 10
/// minutes, long enough to starve a set that failed over in seconds).
const LATENCY_STEPS: [(u64, u64); 7] =
    [(15_000, 30_000), (5_000, 10_000), (3_000, 6_000), (1_800, 5_000), (550, 2_000), (100, 0), (50, 0)];
/// A failed send counts as this slow (RocketMQ 5's isolation: 10 s avoided).
const FAILURE_LATENCY_MS: u64 = 10_000;

/// Round-robin queue choice with broker avoidance.
#[derive(Debug, Default)]
pub struct QueueChoice {
    next: u64,
    avoid_until: BTreeMap<String, MonoNanos>,
}

impl QueueChoice {
    /// A chooser starting at `start` (RocketMQ starts at a random index, so producers do
    /// not all begin on queue 0; the caller supplies the randomness).
    #[must_use]
    pub fn new(start: u64) -> Self {
        Self { next: start, avoid_until: BTreeMap::new() }
    }

    /// Pick a queue of `queues`; `last_failed` is the broker of a failed attempt of this
    /// same send, avoided on the retry.
    pub fn pick(
        &mut self,
        queues: &[MessageQueue],
        last_failed: Option<&str>,
        now: MonoNanos,
    ) -> Option<MessageQueue> {
        if queues.is_empty() {
            return None;
        }
        let n = queues.len() as u64;
        let start = self.next;
        self.next = self.next.wrapping_add(1);
        // Below the queue count: an index.
        let at = |i: u64| queues.get((start.wrapping_add(i) % n) as usize);
        let usable = |q: &&MessageQueue| {
            Some(q.broker_name.as_str()) != last_failed
                && self.avoid_until.get(&q.broker_name).is_none_or(|until| now >= *until)
        };
        (0..n)
            .filter_map(at)
            .find(usable)
            .or_else(|| (0..n).filter_map(at).find(|q| Some(q.broker_name.as_str()) != last_failed))
            .or_else(|| at(0))
            .cloned()
    }

    /// A send to `broker` finished after `latency_ms` (or failed): slow or failing brokers
    /// are avoided for a while.
    pub fn record(&mut self, broker: &str, latency_ms: u64, failed: bool, now: MonoNanos) {
        let latency = if failed { FAILURE_LATENCY_MS } else { latency_ms };
        let avoid_ms = LATENCY_STEPS.iter().find(|(min, _)| latency >= *min).map_or(0, |(_, avoid)| *avoid);
        if avoid_ms == 0 {
            self.avoid_until.remove(broker);
        } else {
            self.avoid_until.insert(broker.to_owned(), now.plus_millis(avoid_ms));
        }
    }

    /// Whether `broker` is being avoided at `now`.
    #[must_use]
    pub fn avoided(&self, broker: &str, now: MonoNanos) -> bool {
        self.avoid_until.get(broker).is_some_and(|until| now < *until)
    }
}

/// Pick the queue for an ordered send (`MessageQueueSelector`): the same `key` always maps
/// to the same queue while the queue count stays the same (RocketMQ's hash selector:
/// `abs(hash) % n`).
#[must_use]
pub fn select_by_key(queues: &[MessageQueue], key: i32) -> Option<MessageQueue> {
    let n = u32::try_from(queues.len()).ok().filter(|n| *n > 0)?;
    queues.get((key.unsigned_abs() % n) as usize).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> Vec<MessageQueue> {
        ["a", "b"].iter().flat_map(|b| (0..2).map(move |i| MessageQueue::new("T", b, i))).collect()
    }

    fn at(ms: u64) -> MonoNanos {
        MonoNanos(ms * 1_000_000)
    }

    #[test]
    fn round_robin_covers_every_queue() {
        let mut choice = QueueChoice::new(0);
        let picked: Vec<MessageQueue> = (0..4).filter_map(|_| choice.pick(&queues(), None, at(0))).collect();
        assert_eq!(picked, queues());
    }

    #[test]
    fn a_failed_broker_is_avoided_for_a_while_and_on_the_retry() {
        let mut choice = QueueChoice::new(0);
        choice.record("a", 0, true, at(0));
        for _ in 0..4 {
            assert_eq!(choice.pick(&queues(), None, at(1_000)).unwrap().broker_name, "b");
        }
        assert!(choice.avoided("a", at(9_999)) && !choice.avoided("a", at(10_000)));
        // A retry avoids the broker that just failed, even if it is not marked.
        let mut fresh = QueueChoice::new(0);
        assert_eq!(fresh.pick(&queues(), Some("a"), at(0)).unwrap().broker_name, "b");
        // Every broker avoided: keep going rather than give up.
        choice.record("b", 0, true, at(0));
        assert!(choice.pick(&queues(), None, at(1_000)).is_some());
        // A fast answer clears the avoidance.
        choice.record("a", 10, false, at(2_000));
        assert!(!choice.avoided("a", at(2_000)));
    }

    #[test]
    fn a_slow_broker_is_avoided_in_proportion() {
        let mut choice = QueueChoice::new(0);
        choice.record("a", 600, false, at(0));
        assert!(choice.avoided("a", at(1_999)) && !choice.avoided("a", at(2_000)));
        choice.record("a", 20_000, false, at(0));
        assert!(choice.avoided("a", at(29_999)) && !choice.avoided("a", at(30_000)));
        choice.record("a", 99, false, at(0));
        assert!(!choice.avoided("a", at(0)));
    }

    #[test]
    fn ordered_sends_map_a_key_to_one_queue() {
        let qs = queues();
        assert_eq!(select_by_key(&qs, 5), select_by_key(&qs, 5));
        assert_eq!(select_by_key(&qs, -3).unwrap().queue_id, 1);
        assert_eq!(select_by_key(&[], 1), None);
    }
}
