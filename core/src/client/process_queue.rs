//! A consumer's view of one owned queue (`ProcessQueue`): the messages pulled and not yet
//! finished, what offset may be committed, and whether pulling should pause.
//!
//! The commit rule is what makes consumption at-least-once: the committed offset never
//! passes a message that is still being processed. Concurrently consumed messages finish
//! in any order, so the offset is the smallest unfinished one (or one past the highest
//! pulled when none is left). An orderly consumer takes messages in order and commits
//! exactly what it took, or puts them back in front to retry them first.

use std::collections::BTreeMap;

use crate::protocol::message::stored::StoredMessage;

/// When pulling a queue pauses (`pullThresholdForQueue`, `pullThresholdSizeForQueue`,
/// `consumeConcurrentlyMaxSpan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLimits {
    /// Most messages cached per queue.
    pub max_messages: usize,
    /// Most body bytes cached per queue.
    pub max_bytes: usize,
    /// Widest offset span cached per queue (concurrent consumption only).
    pub max_span: i64,
}

impl Default for FlowLimits {
    fn default() -> Self {
        Self { max_messages: 1_000, max_bytes: 100 * 1024 * 1024, max_span: 2_000 }
    }
}

/// Why pulling a queue is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Too many messages cached.
    Count(usize),
    /// Too many bytes cached.
    Bytes(usize),
    /// The cached offsets span too wide (one slow message holds the commit back).
    Span(i64),
}

/// One owned queue's pulled, unfinished messages.
#[derive(Debug, Default)]
pub struct ProcessQueue {
    /// Pulled and not finished; for an orderly consumer, not yet taken.
    cached: BTreeMap<i64, StoredMessage>,
    /// Orderly: taken by the listener and not yet committed.
    taken: BTreeMap<i64, StoredMessage>,
    cached_bytes: usize,
    /// The highest offset ever pulled.
    max_pulled: Option<i64>,
    /// No longer owned: its pulls stop and its results are not committed.
    pub dropped: bool,
}

impl ProcessQueue {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// What it holds, for the client's running info: the lowest and highest offsets pulled
    /// and not finished, how many, and their body bytes.
    #[must_use]
    pub fn held(&self) -> (Option<i64>, Option<i64>, usize, usize) {
        let offsets = self.cached.keys().chain(self.taken.keys());
        let (min, max) = offsets.fold((None, None), |(lo, hi): (Option<i64>, Option<i64>), &o| {
            (Some(lo.map_or(o, |l| l.min(o))), Some(hi.map_or(o, |h| h.max(o))))
        });
        let taken_bytes: usize = self.taken.values().map(|m| m.body.len()).sum();
        (min, max, self.cached.len() + self.taken.len(), self.cached_bytes + taken_bytes)
    }

    /// Cache pulled messages; returns how many were new (a message pulled twice, as after
    /// an offset reset, is kept once).
    pub fn put(&mut self, messages: Vec<StoredMessage>) -> usize {
        messages.into_iter().map(|m| self.insert(m)).filter(|added| *added).count()
    }

    /// Cache one pulled message; false if it is already cached or taken.
    pub fn insert(&mut self, message: StoredMessage) -> bool {
        let offset = message.head.queue_offset;
        if self.taken.contains_key(&offset) || self.cached.contains_key(&offset) {
            return false;
        }
        self.max_pulled = Some(self.max_pulled.map_or(offset, |max| max.max(offset)));
        self.cached_bytes += message.body.len();
        self.cached.insert(offset, message);
        true
    }

    /// Concurrent consumption: these offsets are finished (consumed, or handed to a retry).
    /// Returns the offset that may now be committed: the smallest unfinished one, or one
    /// past the highest pulled if none is left; `None` if nothing was ever pulled.
    pub fn finish(&mut self, offsets: &[i64]) -> Option<i64> {
        for offset in offsets {
            if let Some(message) = self.cached.remove(offset) {
                self.cached_bytes -= message.body.len();
            }
        }
        self.commit_point()
    }

    /// The offset that may be committed now (see [`finish`](Self::finish)).
    #[must_use]
    pub fn commit_point(&self) -> Option<i64> {
        let unfinished = self.taken.keys().next().into_iter().chain(self.cached.keys().next()).min();
        match unfinished {
            Some(first) => Some(*first),
            None => self.max_pulled.map(|max| max + 1),
        }
    }

    /// Orderly consumption: take up to `n` messages in offset order.
    pub fn take(&mut self, n: usize) -> Vec<StoredMessage> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some((offset, message)) = self.cached.pop_first() else { break };
            self.cached_bytes -= message.body.len();
            out.push(message.clone());
            self.taken.insert(offset, message);
        }
        out
    }

    /// Orderly: everything taken was consumed; returns the offset to commit (one past the
    /// last taken), or `None` if nothing was taken.
    pub fn commit_taken(&mut self) -> Option<i64> {
        let last = self.taken.keys().next_back().copied()?;
        self.taken.clear();
        Some(last + 1)
    }

    /// Orderly: the listener asked to suspend; the taken messages go back in front with
    /// their local retry count raised, to be consumed again first.
    pub fn return_taken(&mut self) {
        for (offset, mut message) in core::mem::take(&mut self.taken) {
            message.head.reconsume_times = message.head.reconsume_times.saturating_add(1);
            self.cached_bytes += message.body.len();
            self.cached.insert(offset, message);
        }
    }

    /// Messages cached and taken.
    #[must_use]
    pub fn len(&self) -> usize {
        self.cached.len() + self.taken.len()
    }

    /// Whether nothing is cached or taken.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest offset ever pulled.
    #[must_use]
    pub fn max_pulled(&self) -> Option<i64> {
        self.max_pulled
    }

    /// Whether pulling should pause, and why.
    #[must_use]
    pub fn pause(&self, limits: &FlowLimits, orderly: bool) -> Option<Pause> {
        let count = self.len();
        if count > limits.max_messages {
            return Some(Pause::Count(count));
        }
        if self.cached_bytes > limits.max_bytes {
            return Some(Pause::Bytes(self.cached_bytes));
        }
        if !orderly {
            if let (Some((first, _)), Some((last, _))) =
                (self.cached.first_key_value(), self.cached.last_key_value())
            {
                let span = last - first;
                if span > limits.max_span {
                    return Some(Pause::Span(span));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::stored::RecordHead;
    use bytes::Bytes;

    fn message(offset: i64) -> StoredMessage {
        let head = RecordHead {
            queue_id: 0,
            flag: 0,
            queue_offset: offset,
            physical_offset: offset * 100,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 0,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        StoredMessage {
            head,
            body: Bytes::from_static(b"0123456789"),
            topic: "T".into(),
            properties: Bytes::new(),
        }
    }

    fn messages(offsets: impl IntoIterator<Item = i64>) -> Vec<StoredMessage> {
        offsets.into_iter().map(message).collect()
    }

    #[test]
    fn the_commit_point_never_passes_an_unfinished_message() {
        let mut queue = ProcessQueue::new();
        assert_eq!(queue.commit_point(), None);
        assert_eq!(queue.put(messages(10..15)), 5);
        // 11 and 13 finish first: 10 still holds the commit back.
        assert_eq!(queue.finish(&[11, 13]), Some(10));
        assert_eq!(queue.finish(&[10]), Some(12));
        assert_eq!(queue.finish(&[12, 14]), Some(15));
        assert!(queue.is_empty());
        // Finishing again (a late duplicate result) changes nothing.
        assert_eq!(queue.finish(&[12]), Some(15));
    }

    #[test]
    fn a_message_pulled_twice_is_cached_once() {
        let mut queue = ProcessQueue::new();
        queue.put(messages(0..3));
        assert_eq!(queue.put(messages(2..5)), 2);
        assert_eq!(queue.len(), 5);
    }

    #[test]
    fn orderly_takes_in_order_commits_what_it_took_and_retries_it_first() {
        let mut queue = ProcessQueue::new();
        queue.put(messages([3, 1, 2, 4]));
        let taken: Vec<i64> = queue.take(2).iter().map(|m| m.head.queue_offset).collect();
        assert_eq!(taken, [1, 2]);
        assert_eq!(queue.commit_point(), Some(1), "taken messages hold the commit back");
        queue.return_taken();
        let again = queue.take(1);
        assert_eq!((again[0].head.queue_offset, again[0].head.reconsume_times), (1, 1));
        assert_eq!(queue.commit_taken(), Some(2));
        assert_eq!(queue.commit_taken(), None);
        let rest: Vec<i64> = queue.take(10).iter().map(|m| m.head.queue_offset).collect();
        assert_eq!(rest, [2, 3, 4]);
        assert_eq!(queue.commit_taken(), Some(5));
    }

    #[test]
    fn pulling_pauses_on_count_bytes_and_span() {
        let limits = FlowLimits { max_messages: 3, max_bytes: 25, max_span: 100 };
        let mut queue = ProcessQueue::new();
        queue.put(messages([0, 1]));
        assert_eq!(queue.pause(&limits, false), None);
        queue.put(messages([2]));
        assert_eq!(queue.pause(&limits, false), Some(Pause::Bytes(30)));
        queue.put(messages([3]));
        assert_eq!(queue.pause(&limits, false), Some(Pause::Count(4)));
        let mut wide = ProcessQueue::new();
        wide.put(messages([0, 500]));
        assert_eq!(wide.pause(&limits, false), Some(Pause::Span(500)));
        assert_eq!(wide.pause(&limits, true), None, "orderly consumption ignores the span");
    }
}
