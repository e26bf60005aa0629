//! KV config: namespaced settings operators keep in the name server (PUT_KV_CONFIG,
//! GET_KV_CONFIG, DELETE_KV_CONFIG, GET_KVLIST_BY_NAMESPACE; RocketMQ keeps `ORDER_TOPIC_CONFIG`
//! there, say), persisted as RocketMQ's `kvConfig.json`: `{"configTable":{namespace:{key:value}}}`.
//!
//! Every change is written whole to `<file>.tmp`, synced and renamed over the file (then the
//! directory synced), so a crash leaves the old table or the new one, never a torn one. A
//! change made while a write is out is folded into the next write. Changes are answered once
//! applied in memory, as RocketMQ answers them (its write is not even synced).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::io::{DiskError, DiskOp, FilePath, IoId, Output};
use crate::protocol::json::{self, KeyStyle};

/// The namespace of ordered topics' queues per broker (`brokerName:queues;…` by topic),
/// which routes carry as `orderTopicConf`.
pub const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Disk operation ids the KV config uses: far above any other the name server's disk sees
/// (an embedded controller numbers its own from 1).
const IO_BASE: u64 = 1 << 62;

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KvConfigFile {
    #[serde(default)]
    config_table: BTreeMap<String, BTreeMap<String, String>>,
}

/// The KV config table and its file.
#[derive(Debug, Default)]
pub struct KvConfig {
    table: BTreeMap<String, BTreeMap<String, String>>,
    /// Where the table is kept; `None`: in memory only.
    file: Option<FilePath>,
    next_io: u64,
    /// Writes out.
    in_flight: usize,
    /// Changed since the write that is out was made.
    dirty: bool,
}

/// Why a KV config file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the KV config file does not parse: {0}")]
pub struct KvConfigError(String);

impl KvConfig {
    /// The table `content` holds (the file's bytes; empty for none), kept in `file`.
    pub fn load(file: Option<FilePath>, content: &[u8]) -> Result<Self, KvConfigError> {
        let parsed: KvConfigFile = if content.iter().all(u8::is_ascii_whitespace) {
            KvConfigFile::default()
        } else {
            json::from_slice(content).map_err(|e| KvConfigError(e.to_string()))?
        };
        Ok(Self { table: parsed.config_table, file, next_io: IO_BASE, ..Self::default() })
    }

    /// The value of `key` in `namespace`.
    #[must_use]
    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.table.get(namespace)?.get(key).map(String::as_str)
    }

    /// Every key and value of `namespace`, if it has any.
    #[must_use]
    pub fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.table.get(namespace).filter(|t| !t.is_empty())
    }

    /// Set `key` in `namespace`, and write the table.
    pub fn put(&mut self, namespace: &str, key: &str, value: &str, out: &mut impl Extend<Output>) {
        self.table.entry(namespace.to_owned()).or_default().insert(key.to_owned(), value.to_owned());
        tracing::info!(namespace, key, "KV config set");
        self.persist(out);
    }

    /// Remove `key` from `namespace` (a namespace left empty goes too), and write the table.
    pub fn delete(&mut self, namespace: &str, key: &str, out: &mut impl Extend<Output>) {
        let Some(keys) = self.table.get_mut(namespace) else { return };
        if keys.remove(key).is_none() {
            return;
        }
        if keys.is_empty() {
            self.table.remove(namespace);
        }
        tracing::info!(namespace, key, "KV config deleted");
        self.persist(out);
    }

    /// Whether `io` is one of the KV config's writes.
    #[must_use]
    pub fn owns(io: IoId) -> bool {
        io.0 >= IO_BASE
    }

    /// One of its writes finished; once all have, a table changed since is written again.
    pub fn disk_done(&mut self, result: &Result<(), DiskError>, out: &mut impl Extend<Output>) {
        if let Err(error) = result {
            // The next change writes the whole table again; until then the file is older.
            tracing::error!(%error, "writing the KV config file failed");
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 && core::mem::take(&mut self.dirty) {
            self.persist(out);
        }
    }

    fn persist(&mut self, out: &mut impl Extend<Output>) {
        let Some(file) = self.file.clone() else { return };
        if self.in_flight > 0 {
            self.dirty = true;
            return;
        }
        let Some(tmp) = FilePath::new(&format!("{}.tmp", file.as_str())) else { return };
        let body = json::to_body(&KvConfigFile { config_table: self.table.clone() }, KeyStyle::Standard);
        let dir = file.parent().unwrap_or_else(FilePath::root);
        let ops = [
            DiskOp::Create { file: tmp.clone(), len: 0 },
            DiskOp::Write { file: tmp.clone(), offset: 0, data: body.into() },
            DiskOp::Sync { file: tmp.clone() },
            DiskOp::Rename { from: tmp, to: file },
            DiskOp::SyncDir { dir },
        ];
        for op in ops {
            self.next_io += 1;
            self.in_flight += 1;
            out.extend([Output::Disk { io: IoId(self.next_io), op }]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_written_whole_and_renamed_into_place_and_reads_back() {
        let file = FilePath::new("kvconfig/kvConfig.json");
        let mut kv = KvConfig::load(file, b"").unwrap();
        let mut out = Vec::new();
        kv.put("ORDER_TOPIC_CONFIG", "TopicA", "broker-a:4", &mut out);
        assert_eq!(kv.get("ORDER_TOPIC_CONFIG", "TopicA"), Some("broker-a:4"));
        let written = out.iter().find_map(|o| match o {
            Output::Disk { op: DiskOp::Write { data, .. }, .. } => Some(data.clone()),
            _ => None,
        });
        let written = written.unwrap();
        assert_eq!(&written[..], br#"{"configTable":{"ORDER_TOPIC_CONFIG":{"TopicA":"broker-a:4"}}}"#);
        assert!(matches!(&out[3], Output::Disk { op: DiskOp::Rename { .. }, .. }));
        // A change while the write is out waits for it, then goes out whole.
        kv.put("ns", "k", "v", &mut out);
        assert_eq!(out.len(), 5);
        for _ in 0..5 {
            kv.disk_done(&Ok(()), &mut out);
        }
        assert_eq!(out.len(), 10);
        let reloaded = KvConfig::load(None, &written).unwrap();
        assert_eq!(reloaded.namespace("ORDER_TOPIC_CONFIG").map(BTreeMap::len), Some(1));
        kv.delete("ns", "k", &mut out);
        assert_eq!(kv.namespace("ns"), None);
        assert!(KvConfig::load(None, b"{not json").is_err());
    }
}
