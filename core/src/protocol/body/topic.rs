//! Topic configuration bodies: `TopicConfig`, `DataVersion`, and the REGISTER_BROKER body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Permission bits (`PermName`).
pub mod perm {
    /// Auto-created topics inherit from a topic with this bit (TBW102).
    pub const INHERIT: i32 = 1;
    /// Producers may write.
    pub const WRITE: i32 = 2;
    /// Consumers may read.
    pub const READ: i32 = 4;
    /// Priority.
    pub const PRIORITY: i32 = 8;
    /// Read and write: the default.
    pub const READ_WRITE: i32 = READ | WRITE;

    /// Whether `perm` allows reading.
    #[must_use]
    pub fn readable(perm: i32) -> bool {
        perm & READ != 0
    }

    /// Whether `perm` allows writing.
    #[must_use]
    pub fn writable(perm: i32) -> bool {
        perm & WRITE != 0
    }
}

/// A topic's configuration (`TopicConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// Attributes (`message.type`, ...).
    pub attributes: BTreeMap<String, String>,
    /// Ordered topic.
    pub order: bool,
    /// Permission bits.
    pub perm: i32,
    /// Queues consumers read.
    pub read_queue_nums: i32,
    /// `SINGLE_TAG` or `MULTI_TAG`.
    pub topic_filter_type: String,
    /// Name.
    pub topic_name: String,
    /// Sys flag.
    pub topic_sys_flag: i32,
    /// Queues producers write.
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            attributes: BTreeMap::new(),
            order: false,
            perm: perm::READ_WRITE,
            read_queue_nums: 16,
            topic_filter_type: "SINGLE_TAG".to_owned(),
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: 16,
        }
    }
}

/// A version stamp of a broker's metadata (`DataVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    /// Bumped on every change.
    pub counter: i64,
    /// Bumped on role changes.
    pub state_version: i64,
    /// When it last changed, ms.
    pub timestamp: i64,
}

impl DataVersion {
    /// Mark a change at `now`.
    pub fn bump(&mut self, now: crate::io::UnixMillis) {
        let now_ms = now.0;
        self.counter += 1;
        self.timestamp = now_ms;
    }
}

/// A broker's topic table with its version (`TopicConfigSerializeWrapper`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    /// Version of the table.
    pub data_version: DataVersion,
    /// Topic name → config.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

/// The REGISTER_BROKER body (uncompressed form, `RegisterBrokerBody`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    /// Filter servers (always empty).
    pub filter_server_list: Vec<String>,
    /// The broker's topics.
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}
