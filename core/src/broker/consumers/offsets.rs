//! Consumer offsets: per (group, topic, queue), the next offset the group will consume.
//! Commits overwrite (RocketMQ accepts regressions too). Persisted as RocketMQ's
//! `consumerOffset.json` (`{"offsetTable":{"topic@group":{queueId:offset}}}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every committed offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerOffsets {
    /// `topic@group` → queue id → offset.
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsets {
    /// The committed offset, if any.
    #[must_use]
    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.offset_table.get(&key(topic, group))?.get(&queue_id).copied()
    }

    /// The topics `group` has committed offsets in.
    #[must_use]
    pub fn topics_of(&self, group: &str) -> Vec<String> {
        self.offset_table
            .keys()
            .filter_map(|key| key.rsplit_once('@').filter(|(_, g)| *g == group).map(|(t, _)| t.to_owned()))
            .collect()
    }

    /// The groups with committed offsets in `topic`.
    #[must_use]
    pub fn groups_of(&self, topic: &str) -> Vec<String> {
        self.offset_table
            .keys()
            .filter_map(|key| key.split_once('@').filter(|(t, _)| *t == topic).map(|(_, g)| g.to_owned()))
            .collect()
    }

    /// Every (topic, group) with committed offsets.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.offset_table.keys().filter_map(|key| key.rsplit_once('@'))
    }

    /// Commit an offset.
    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.offset_table.entry(key(topic, group)).or_default().insert(queue_id, offset);
    }

    /// Take every offset `other` holds, over this table's: a slave's copy of its master's.
    /// Returns whether anything changed.
    pub fn merge(&mut self, other: &ConsumerOffsets) -> bool {
        let mut changed = false;
        for (key, queues) in &other.offset_table {
            let ours = self.offset_table.entry(key.clone()).or_default();
            for (&queue, &offset) in queues {
                changed |= ours.insert(queue, offset) != Some(offset);
            }
        }
        changed
    }

    /// Forget a group's offsets (group deleted with `cleanOffset`).
    pub fn remove_group(&mut self, group: &str) {
        let suffix = format!("@{group}");
        self.offset_table.retain(|k, _| !k.ends_with(&suffix));
    }

    /// Forget a topic's offsets (topic deleted).
    pub fn remove_topic(&mut self, topic: &str) {
        let prefix = format!("{topic}@");
        self.offset_table.retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::{self, KeyStyle};

    #[test]
    fn offsets_commit_and_persist_in_rocketmq_format() {
        let mut offsets = ConsumerOffsets::default();
        assert_eq!(offsets.get("g", "T", 0), None);
        offsets.commit("g", "T", 0, 12);
        offsets.commit("g", "T", 0, 10);
        assert_eq!(offsets.get("g", "T", 0), Some(10));
        let text = json::to_string(&offsets, KeyStyle::Fastjson).unwrap();
        assert_eq!(text, r#"{"offsetTable":{"T@g":{0:10}}}"#);
        assert_eq!(json::from_slice::<ConsumerOffsets>(text.as_bytes()).unwrap(), offsets);
        offsets.remove_topic("T");
        assert_eq!(offsets.get("g", "T", 0), None);
        offsets.commit("g", "T", 1, 5);
        offsets.commit("g2", "T", 1, 6);
        offsets.remove_group("g");
        assert_eq!((offsets.get("g", "T", 1), offsets.get("g2", "T", 1)), (None, Some(6)));
    }
}
