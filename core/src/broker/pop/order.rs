//! FIFO pops (`order=true`): one batch in flight per queue and group. The queue stays
//! blocked while its batch is neither acknowledged nor past its invisible time; a pop that
//! repeats the batch's attempt id (a client retrying a pop whose answer it lost) gets the
//! same batch again. Acknowledgements commit the group's offset directly, up to the first
//! message not acknowledged, so nothing goes through revive.
//!
//! The table lives in memory only: after a restart a queue is unblocked and its messages
//! from the committed offset on are delivered again (RocketMQ keeps
//! `consumerOrderInfo.json`; losing it costs only that early redelivery, which a restart
//! excuses anyway).

use std::collections::{BTreeMap, BTreeSet};

/// A queue of a group: (group, topic read, queue).
pub type OrderKey = (String, String, i32);

/// The batch a FIFO queue has out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBatch {
    /// The pop's attempt id.
    pub attempt_id: Option<String>,
    /// The offsets delivered, ascending.
    pub offsets: Vec<u64>,
    /// Those acknowledged.
    pub acked: BTreeSet<u64>,
    /// The pop time of the batch (ms, the broker's clock).
    pub pop_time: i64,
    /// When the queue unblocks unless all is acknowledged (ms of the monotonic clock: a
    /// wall clock stepped back must not hold the queue blocked).
    pub visible_at: i64,
}

/// What a FIFO pop may do with a queue now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderGate {
    /// Read from the committed offset, passing over the offsets given (acknowledged in a
    /// batch that timed out).
    Read(BTreeSet<u64>),
    /// The same attempt again: deliver this batch once more.
    Repeat(OrderBatch),
    /// Blocked by a batch in flight.
    Blocked,
}

/// FIFO batches in flight, and how often each message was delivered.
#[derive(Debug, Default)]
pub struct OrderTable {
    batches: BTreeMap<OrderKey, OrderBatch>,
    /// Deliveries per (queue, offset) so far, for the attempt count clients see.
    deliveries: BTreeMap<(OrderKey, u64), u32>,
}

impl OrderTable {
    /// Whether a pop with `attempt_id` may read `key` at `now_ms` (monotonic).
    #[must_use]
    pub fn gate(&self, key: &OrderKey, attempt_id: Option<&str>, now_ms: i64) -> OrderGate {
        let Some(batch) = self.batches.get(key) else { return OrderGate::Read(BTreeSet::new()) };
        if now_ms >= batch.visible_at {
            return OrderGate::Read(batch.acked.clone());
        }
        if attempt_id.is_some() && batch.attempt_id.as_deref() == attempt_id {
            return OrderGate::Repeat(batch.clone());
        }
        OrderGate::Blocked
    }

    /// A batch was delivered: remember it, and count each message's delivery. Returns each
    /// message's deliveries before this one.
    pub fn delivered(&mut self, key: &OrderKey, batch: OrderBatch) -> Vec<u32> {
        let counts = batch
            .offsets
            .iter()
            .map(|offset| {
                let count = self.deliveries.entry((key.clone(), *offset)).or_insert(0);
                *count += 1;
                *count - 1
            })
            .collect();
        self.batches.insert(key.clone(), batch);
        counts
    }

    /// Deliveries of a message before the current one.
    #[must_use]
    pub fn delivered_before(&self, key: &OrderKey, offset: u64) -> u32 {
        self.deliveries.get(&(key.clone(), offset)).map_or(0, |c| c.saturating_sub(1))
    }

    /// `offset` was acknowledged; returns the offset to commit now (the first of the batch
    /// not acknowledged, or its end), or `None` when the offset is not in the batch out.
    pub fn ack(&mut self, key: &OrderKey, offset: u64) -> Option<u64> {
        let batch = self.batches.get_mut(key)?;
        if !batch.offsets.contains(&offset) {
            return None;
        }
        batch.acked.insert(offset);
        let first_open = batch.offsets.iter().find(|o| !batch.acked.contains(o)).copied();
        let end = batch.offsets.last().map_or(offset + 1, |last| last + 1);
        let commit = first_open.unwrap_or(end);
        if first_open.is_none() {
            self.batches.remove(key);
        }
        self.deliveries.retain(|(k, o), _| k != key || *o >= commit);
        Some(commit)
    }

    /// Move the batch's unblocking to `visible_at` (a change of invisible time).
    pub fn postpone(&mut self, key: &OrderKey, offset: u64, pop_time: i64, visible_at: i64) -> bool {
        match self.batches.get_mut(key) {
            Some(batch) if batch.offsets.contains(&offset) => {
                batch.visible_at = visible_at;
                batch.pop_time = pop_time;
                true
            }
            _ => false,
        }
    }

    /// Batches out.
    #[must_use]
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether no batch is out.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Forget everything (the store was replaced).
    pub fn clear(&mut self) {
        self.batches.clear();
        self.deliveries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OrderKey {
        ("cg".into(), "T".into(), 0)
    }

    fn batch(offsets: &[u64], attempt: &str, visible_at: i64) -> OrderBatch {
        OrderBatch {
            attempt_id: Some(attempt.into()),
            offsets: offsets.to_vec(),
            acked: BTreeSet::new(),
            pop_time: 0,
            visible_at,
        }
    }

    #[test]
    fn a_queue_blocks_until_acked_or_invisible_time_is_up_and_an_attempt_repeats() {
        let mut table = OrderTable::default();
        assert_eq!(table.gate(&key(), None, 0), OrderGate::Read(BTreeSet::new()));
        assert_eq!(table.delivered(&key(), batch(&[3, 4, 5], "a1", 1_000)), vec![0, 0, 0]);
        assert_eq!(table.gate(&key(), Some("a2"), 10), OrderGate::Blocked);
        assert!(matches!(table.gate(&key(), Some("a1"), 10), OrderGate::Repeat(b) if b.offsets == [3, 4, 5]));
        assert_eq!(table.ack(&key(), 4), Some(3), "3 is still open: the offset stays");
        assert_eq!(table.ack(&key(), 9), None);
        // Time up: read again from the committed offset, passing over 4.
        assert_eq!(table.gate(&key(), Some("a2"), 1_000), OrderGate::Read(BTreeSet::from([4])));
        assert_eq!(table.delivered(&key(), batch(&[3, 5], "a2", 2_000)), vec![1, 1]);
        assert_eq!(table.delivered_before(&key(), 5), 1);
        assert_eq!(table.ack(&key(), 3), Some(5));
        assert_eq!(table.ack(&key(), 5), Some(6));
        assert!(table.is_empty(), "all acknowledged: unblocked");
        assert_eq!(table.gate(&key(), Some("a2"), 10), OrderGate::Read(BTreeSet::new()));
        assert_eq!(table.delivered_before(&key(), 5), 0, "counts go once committed past");
    }

    #[test]
    fn a_change_of_invisible_time_moves_the_unblocking() {
        let mut table = OrderTable::default();
        table.delivered(&key(), batch(&[0], "a", 1_000));
        assert!(table.postpone(&key(), 0, 500, 5_000));
        assert!(!table.postpone(&key(), 7, 500, 5_000));
        assert_eq!(table.gate(&key(), None, 1_000), OrderGate::Blocked);
        assert_eq!(table.gate(&key(), None, 5_000), OrderGate::Read(BTreeSet::new()));
    }
}
