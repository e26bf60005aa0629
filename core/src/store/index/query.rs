//! Finding messages by key: walk each file's slot chain newest to oldest, and keep a hit only
//! once its record is read and its topic, key and store time match.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::layout::{Entry, Geometry, ENTRY_LEN, SLOT_LEN};
use super::{file_path, key_hash, IndexFile, IndexSet};
use crate::io::{DiskError, StoreRead};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::store::message_store::Store;
use crate::store::{PhysOffset, ReadError};

/// Results a key query returns at most (RocketMQ's `maxMsgsNumBatch`).
pub const MAX_QUERY_RESULTS: usize = 64;

/// Reads again of a hit whose record failed its CRCs, before it counts as not a record.
const DAMAGED_READ_TRIES: usize = 3;

/// A lookup by key (QUERY_MESSAGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyQuery<'a> {
    /// The message's topic.
    pub topic: &'a str,
    /// A KEYS token, or with `unique` the UNIQ_KEY (client message id).
    pub key: &'a str,
    /// Whether `key` is a UNIQ_KEY.
    pub unique: bool,
    /// Messages returned at most (capped at [`MAX_QUERY_RESULTS`]).
    pub max: usize,
    /// Store times to match, ms, inclusive.
    pub begin_ms: i64,
    /// See `begin_ms`.
    pub end_ms: i64,
}

/// What a key query found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyQueryResult {
    /// The matching records, stored format, newest first.
    pub records: Vec<Bytes>,
    /// Store time of the newest indexed record (QUERY_MESSAGE's `indexLastUpdateTimestamp`).
    pub last_update_timestamp: i64,
    /// CommitLog offset of the newest indexed record (`indexLastUpdatePhyoffset`).
    pub last_update_phys: i64,
}

impl IndexFile {
    fn head(
        &self,
        reader: &dyn StoreRead,
        geometry: Geometry,
        name: u64,
        slot: u32,
    ) -> Result<u32, DiskError> {
        if let Some(live) = &self.live {
            return Ok(live.slots.get(slot as usize).copied().unwrap_or(0));
        }
        let mut bytes = [0u8; SLOT_LEN as usize];
        let got = reader.read_at(&file_path(name), geometry.slot_pos(slot), &mut bytes)?;
        Ok(if got == bytes.len() { u32::from_be_bytes(bytes) } else { 0 })
    }
}

impl IndexSet {
    /// Call `visit` with the CommitLog offset of every entry whose key hashes as `topic#key`,
    /// newest first, each offset once, until it returns false.
    pub(crate) fn walk(
        &self,
        reader: &dyn StoreRead,
        topic: &str,
        key: &[u8],
        visit: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(), DiskError> {
        let geometry = self.geometry();
        let hash = key_hash(topic, key);
        let slot = geometry.slot_of(hash);
        let mut seen = BTreeSet::new();
        for (&name, file) in self.files.iter().rev() {
            let path = file_path(name);
            let mut index = file.head(reader, geometry, name, slot)?;
            let count = file.count();
            while index > 0 && index < count {
                let entry = match file.live.as_ref().and_then(|live| live.pending_entry(index)) {
                    Some(entry) => Some(entry),
                    None => {
                        let mut bytes = [0u8; ENTRY_LEN as usize];
                        let got = reader.read_at(&path, geometry.entry_pos(index), &mut bytes)?;
                        Entry::decode(bytes.get(..got).unwrap_or_default())
                    }
                };
                let Some(entry) = entry else { break };
                if entry.hash == hash && seen.insert(entry.phys) && !visit(entry.phys) {
                    return Ok(());
                }
                // Chains only ever point back: anything else is damage, and ends the walk.
                if entry.prev >= index {
                    break;
                }
                index = entry.prev;
            }
        }
        Ok(())
    }

    /// The newest indexed record's store time and offset.
    pub(crate) fn last_update(&self) -> (i64, i64) {
        self.files.values().next_back().map_or((0, 0), |f| (f.header.end_timestamp, f.header.end_phys))
    }
}

/// Whether a record's properties carry `key` as the query asks.
fn carries_key(record_properties: &[u8], key: &str, unique: bool) -> bool {
    if unique {
        return properties::find(record_properties, keys::UNIQ_KEY) == Some(key.as_bytes());
    }
    properties::find(record_properties, keys::KEYS)
        .is_some_and(|keys| keys.split(|b| *b == b' ').any(|token| token == key.as_bytes()))
}

impl Store {
    /// Messages of `query.topic` carrying its key, stored within its time range, newest
    /// first: every index hit is read and checked, so hash collisions never come back.
    pub fn query_by_key(
        &self,
        reader: &dyn StoreRead,
        query: &KeyQuery<'_>,
    ) -> Result<KeyQueryResult, ReadError> {
        let max = query.max.clamp(1, MAX_QUERY_RESULTS);
        let min = self.min_phys();
        let mut records = Vec::new();
        let mut failure = None;
        let mut visit = |phys: u64| {
            if phys < min.0 {
                return true;
            }
            // A read that fails its CRCs is tried again: a flaky read is not a missing record.
            let mut read = self.read_record_at(reader, PhysOffset(phys));
            for _ in 0..DAMAGED_READ_TRIES {
                if !matches!(read, Err(ReadError::Damaged { .. })) {
                    break;
                }
                read = self.read_record_at(reader, PhysOffset(phys));
            }
            let record = match read {
                Ok(record) => record,
                // Not visible yet, cut, or not a record: an entry recovery could not tell
                // from a torn one (only where it indexes the whole log again, below it).
                Err(ReadError::Missing(_) | ReadError::Damaged { .. }) => return true,
                Err(error) => {
                    failure = Some(error);
                    return false;
                }
            };
            if let Ok(Parsed::Message(view)) = parse_record(&record) {
                let time = view.head().store_timestamp;
                if view.record.topic == query.topic
                    && (query.begin_ms..=query.end_ms).contains(&time)
                    && carries_key(view.record.properties, query.key, query.unique)
                {
                    records.push(record.clone());
                }
            }
            records.len() < max
        };
        self.index.walk(reader, query.topic, query.key.as_bytes(), &mut visit)?;
        if let Some(error) = failure {
            return Err(error);
        }
        let (last_update_timestamp, last_update_phys) = self.index.last_update();
        Ok(KeyQueryResult { records, last_update_timestamp, last_update_phys })
    }
}

impl Store {
    /// The index files: (name, entries, whether its slots are in memory), oldest first.
    #[must_use]
    pub fn index_files(&self) -> Vec<(u64, u32, bool)> {
        self.index.files().collect()
    }
}
