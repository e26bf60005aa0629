//! The broker's topics: configs, auto-creation through `TBW102`, and the version the name
//! servers compare to decide whether to re-read them.

use crate::io::UnixMillis;
use std::collections::BTreeMap;

use crate::protocol::body::{perm, DataVersion, TopicConfig, TopicConfigSerializeWrapper};

/// The template topic auto-created topics inherit from.
pub const TBW102: &str = "TBW102";
/// A topic every broker serves for health checks.
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
/// Prefix of retry topics.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// Why a topic cannot be used or created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Bad characters or length.
    #[error("the topic[{0}] is invalid")]
    Invalid(String),
    /// Unknown, and not auto-creatable.
    #[error("topic[{0}] not exist, apply first please!")]
    NotExist(String),
}

/// Whether `name` is a legal topic name: `[A-Za-z0-9_%|-]`, at most 127 bytes (255 for retry
/// and dead-letter topics, whose names embed a group).
#[must_use]
pub fn valid_topic_name(name: &str) -> bool {
    let max = if name.starts_with(RETRY_PREFIX) || name.starts_with(DLQ_PREFIX) { 255 } else { 127 };
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'%' | b'|' | b'-'))
}

/// The broker's topic table.
#[derive(Debug, Clone)]
pub struct TopicTable {
    /// The configs and their version, kept in the shape they are persisted and registered in.
    table: TopicConfigSerializeWrapper,
}

impl TopicTable {
    /// The built-in topics: `SELF_TEST_TOPIC`, and `TBW102` (read-write-inherit, 8 queues)
    /// when auto-creation is on.
    #[must_use]
    pub fn new(auto_create: bool, default_queue_nums: i32, now: UnixMillis) -> Self {
        let mut table = Self {
            table: TopicConfigSerializeWrapper {
                data_version: DataVersion { counter: 0, state_version: 0, timestamp: now.0 },
                topic_config_table: BTreeMap::new(),
            },
        };
        table.put(
            TopicConfig {
                topic_name: SELF_TEST_TOPIC.into(),
                read_queue_nums: 1,
                write_queue_nums: 1,
                ..TopicConfig::default()
            },
            now,
        );
        if auto_create {
            table.put(
                TopicConfig {
                    topic_name: TBW102.into(),
                    read_queue_nums: default_queue_nums,
                    write_queue_nums: default_queue_nums,
                    perm: perm::READ_WRITE | perm::INHERIT,
                    ..TopicConfig::default()
                },
                now,
            );
        }
        table
    }

    /// The table persisted in `topics.json`, with the built-in topics added if missing.
    #[must_use]
    pub fn from_wrapper(
        wrapper: TopicConfigSerializeWrapper,
        auto_create: bool,
        default_queue_nums: i32,
        now: UnixMillis,
    ) -> Self {
        let mut table = Self::new(auto_create, default_queue_nums, now);
        for (name, config) in wrapper.topic_config_table {
            table.table.topic_config_table.insert(name, config);
        }
        table.table.data_version =
            DataVersion { counter: wrapper.data_version.counter + 1, ..table.table.data_version };
        table
    }

    /// Take `wrapper` whole, version included: a slave's copy of its master's table.
    pub fn replace(&mut self, wrapper: TopicConfigSerializeWrapper) {
        self.table = wrapper;
    }

    /// A topic's config.
    #[must_use]
    pub fn get(&self, topic: &str) -> Option<&TopicConfig> {
        self.table.topic_config_table.get(topic)
    }

    /// Create or replace a topic; bumps the version.
    pub fn put(&mut self, config: TopicConfig, now: UnixMillis) {
        self.table.topic_config_table.insert(config.topic_name.clone(), config);
        self.table.data_version.bump(now);
    }

    /// Remove a topic; true if it existed.
    pub fn remove(&mut self, topic: &str, now: UnixMillis) -> bool {
        let existed = self.table.topic_config_table.remove(topic).is_some();
        if existed {
            self.table.data_version.bump(now);
        }
        existed
    }

    /// The topic, creating it from `default_topic` if that one allows inheritance (TBW102).
    /// Returns the config and whether it was just created.
    pub fn get_or_auto_create(
        &mut self,
        topic: &str,
        default_topic: &str,
        requested_queues: i32,
        now: UnixMillis,
    ) -> Result<(TopicConfig, bool), TopicError> {
        if let Some(config) = self.table.topic_config_table.get(topic) {
            return Ok((config.clone(), false));
        }
        if !valid_topic_name(topic) {
            return Err(TopicError::Invalid(topic.to_owned()));
        }
        let template =
            self.table.topic_config_table.get(default_topic).filter(|t| t.perm & perm::INHERIT != 0);
        let Some(template) = template else { return Err(TopicError::NotExist(topic.to_owned())) };
        let queues = requested_queues.clamp(1, template.write_queue_nums.max(1));
        let config = TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: template.perm & !perm::INHERIT,
            topic_sys_flag: template.topic_sys_flag,
            ..TopicConfig::default()
        };
        self.put(config.clone(), now);
        Ok((config, true))
    }

    /// The table as registered with name servers.
    #[must_use]
    pub fn wrapper(&self) -> &TopicConfigSerializeWrapper {
        &self.table
    }

    /// Every topic name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.table.topic_config_table.keys().map(String::as_str)
    }
}

/// The topic attribute naming the message types 5.x producers may send to it.
pub const MESSAGE_TYPE: &str = "message.type";
/// The values `message.type` takes (RocketMQ's `TopicMessageType`, MIXED accepting all).
const MESSAGE_TYPES: &[&str] = &["NORMAL", "FIFO", "DELAY", "TRANSACTION", "MIXED"];

/// A topic's attributes after the changes `spec` asks (`+key=value` sets, `-key` removes,
/// comma-separated; RocketMQ's syntax), for a topic being created or one that has
/// `current`. Only `message.type` is known; any other key is refused by name, and a new
/// topic takes no removals.
pub fn alter_attributes(
    current: &BTreeMap<String, String>,
    spec: &str,
    creating: bool,
) -> Result<BTreeMap<String, String>, String> {
    let mut attributes = current.clone();
    for change in spec.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (add, rest) = match change.split_at(1) {
            ("+", rest) => (true, rest),
            ("-", rest) => (false, rest),
            _ => return Err(format!("attribute change {change:?} must start with + or -")),
        };
        let (key, value) = match rest.split_once('=') {
            Some((key, value)) if add => (key, Some(value)),
            None if !add => (rest, None),
            _ => return Err(format!("attribute change {change:?}: +key=value or -key")),
        };
        if key != MESSAGE_TYPE {
            return Err(format!("attribute {key} is not supported (Keel knows {MESSAGE_TYPE})"));
        }
        match value {
            Some(value) if MESSAGE_TYPES.contains(&value) => {
                attributes.insert(key.to_owned(), value.to_owned());
            }
            Some(value) => {
                return Err(format!("{MESSAGE_TYPE}={value}: one of {}", MESSAGE_TYPES.join(", ")))
            }
            None if creating => return Err(format!("a new topic has no attribute {key} to remove")),
            None => {
                attributes.remove(key);
            }
        }
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_auto_create_from_tbw102_only_when_it_inherits() {
        let mut table = TopicTable::new(true, 8, UnixMillis(1));
        let (config, created) = table.get_or_auto_create("TopicTest", TBW102, 4, UnixMillis(2)).unwrap();
        assert!(created);
        assert_eq!((config.read_queue_nums, config.write_queue_nums, config.perm), (4, 4, perm::READ_WRITE));
        assert!(!table.get_or_auto_create("TopicTest", TBW102, 4, UnixMillis(3)).unwrap().1);
        assert_eq!(table.get_or_auto_create("Big", TBW102, 64, UnixMillis(3)).unwrap().0.write_queue_nums, 8);
        assert_eq!(
            table.get_or_auto_create("bad topic", TBW102, 4, UnixMillis(3)),
            Err(TopicError::Invalid("bad topic".into()))
        );
        let mut strict = TopicTable::new(false, 8, UnixMillis(1));
        assert_eq!(
            strict.get_or_auto_create("T", TBW102, 4, UnixMillis(2)),
            Err(TopicError::NotExist("T".into()))
        );
        assert!(valid_topic_name(&format!("%RETRY%{}", "g".repeat(200))));
        assert!(!valid_topic_name(&"t".repeat(128)));
    }

    #[test]
    fn attribute_changes_set_and_remove_message_type_and_refuse_the_rest_by_name() {
        let none = BTreeMap::new();
        let fifo = alter_attributes(&none, "+message.type=FIFO", true).unwrap();
        assert_eq!(fifo.get(MESSAGE_TYPE).map(String::as_str), Some("FIFO"));
        assert_eq!(alter_attributes(&fifo, "", false).unwrap(), fifo, "no change keeps them");
        assert!(alter_attributes(&fifo, "-message.type", false).unwrap().is_empty());
        assert!(alter_attributes(&none, "-message.type", true).unwrap_err().contains("new topic"));
        assert!(alter_attributes(&none, "+message.type=SOMETIMES", true).unwrap_err().contains("MIXED"));
        assert!(alter_attributes(&none, "+queue.type=BatchCQ", true).unwrap_err().contains("queue.type"));
        assert!(alter_attributes(&none, "message.type=FIFO", true).is_err());
    }
}
