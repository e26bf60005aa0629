//! A consumer's offsets (`OffsetStore`). Clustering consumers commit them to the broker
//! (`RemoteBrokerOffsetStore`); broadcasting consumers keep them on the client
//! (`LocalFileOffsetStore`), in RocketMQ's `offsets.json` shape, which this type
//! serializes to and from. Either way the table is the same: the next offset to consume per
//! queue, with the queues changed since the last commit marked.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::protocol::body::MessageQueue;

/// Next offset to consume per queue, and which changed since the last commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<MessageQueue, i64>,
    dirty: BTreeSet<MessageQueue>,
}

/// The local file's shape: `{"offsetTable":{{"brokerName":…,"queueId":…,"topic":…}:n}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetSerializeWrapper {
    /// Queue → next offset.
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl OffsetStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A store loaded from a local offsets file.
    #[must_use]
    pub fn from_wrapper(wrapper: OffsetSerializeWrapper) -> Self {
        Self { offsets: wrapper.offset_table, dirty: BTreeSet::new() }
    }

    /// The local file's content.
    #[must_use]
    pub fn wrapper(&self) -> OffsetSerializeWrapper {
        OffsetSerializeWrapper { offset_table: self.offsets.clone() }
    }

    /// Record `offset` for `queue`. With `increase_only` (concurrent consumption, where
    /// results arrive out of order) a smaller value is ignored.
    pub fn update(&mut self, queue: &MessageQueue, offset: i64, increase_only: bool) {
        let entry = self.offsets.entry(queue.clone()).or_insert(offset);
        if increase_only && offset < *entry {
            return;
        }
        if *entry != offset || !self.dirty.contains(queue) {
            *entry = offset;
            self.dirty.insert(queue.clone());
        }
    }

    /// The offset held for `queue`.
    #[must_use]
    pub fn get(&self, queue: &MessageQueue) -> Option<i64> {
        self.offsets.get(queue).copied()
    }

    /// Forget `queue` (no longer owned); returns its last offset, to commit one last time.
    pub fn remove(&mut self, queue: &MessageQueue) -> Option<i64> {
        self.dirty.remove(queue);
        self.offsets.remove(queue)
    }

    /// The offsets changed since the last call, to commit now.
    pub fn take_dirty(&mut self) -> Vec<(MessageQueue, i64)> {
        let dirty = core::mem::take(&mut self.dirty);
        dirty.into_iter().filter_map(|q| self.offsets.get(&q).map(|o| (q, *o))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::{self, KeyStyle};

    fn q(id: i32) -> MessageQueue {
        MessageQueue::new("T", "b", id)
    }

    #[test]
    fn increase_only_updates_ignore_regressions_and_dirty_queues_are_taken_once() {
        let mut store = OffsetStore::new();
        store.update(&q(0), 5, true);
        store.update(&q(0), 3, true);
        assert_eq!(store.get(&q(0)), Some(5));
        store.update(&q(0), 3, false);
        assert_eq!(store.get(&q(0)), Some(3), "an orderly or reset update may go back");
        store.update(&q(1), 9, true);
        assert_eq!(store.take_dirty(), vec![(q(0), 3), (q(1), 9)]);
        assert!(store.take_dirty().is_empty());
        assert_eq!(store.remove(&q(1)), Some(9));
        assert_eq!(store.get(&q(1)), None);
    }

    #[test]
    fn the_local_file_uses_queue_objects_as_keys() {
        let mut store = OffsetStore::new();
        store.update(&q(2), 42, false);
        let text = json::to_string(&store.wrapper(), KeyStyle::Fastjson).unwrap();
        assert_eq!(text, r#"{"offsetTable":{{"brokerName":"b","queueId":2,"topic":"T"}:42}}"#);
        let back: OffsetSerializeWrapper = json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(OffsetStore::from_wrapper(back).get(&q(2)), Some(42));
    }
}
