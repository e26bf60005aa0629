//! ConsumeQueue entries: the per-(topic, queue) index into the CommitLog.
//!
//! Entry layout (20 bytes, big-endian):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0 | i64 | CommitLog offset of the record |
//! | 8 | i32 | record size (TOTALSIZE) |
//! | 12 | i64 | tag hash code (Java `String.hashCode` of TAGS, sign-extended; 0 if none); in a topic of `due_time_topics` (the timer topic), the due time in ms (`TIMER_OUT_MS`) |
//!
//! Files hold a fixed number of entries (RocketMQ: 300,000 = 6,000,000 bytes) and are named by
//! the byte offset of their first entry. An entry is valid when its offset is ≥ 0 and its
//! size > 0; an all-zero slot marks the end. A queue whose first file begins before its
//! first entry (a queue rebuilt from a CommitLog whose head retention deleted) fills the
//! slots before it with pre-blank entries, as RocketMQ does: offset 0, size `i32::MAX`,
//! tags code 0.

use super::{paths, PhysOffset};
use crate::io::{DiskError, DiskErrorKind, FilePath, StoreRead};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored;
use crate::protocol::message::tag::tags_code;

/// Bytes per entry.
pub const ENTRY_LEN: u64 = 20;

/// The slot RocketMQ writes before a queue's first entry in its first file.
pub const PRE_BLANK: [u8; ENTRY_LEN as usize] = {
    let mut slot = [0u8; ENTRY_LEN as usize];
    let size = i32::MAX.to_be_bytes();
    slot[8] = size[0];
    slot[9] = size[1];
    slot[10] = size[2];
    slot[11] = size[3];
    slot
};

/// Whether `slot` is a pre-blank entry.
#[must_use]
pub fn is_pre_blank(slot: &[u8]) -> bool {
    slot == PRE_BLANK
}

/// The tags code a record of `topic` gets in its ConsumeQueue entry, the same at append,
/// in recovery and in audits: the hash of its TAGS, or in a topic of `due_time_topics`
/// (the broker's timer topic) its due time, so pending timers can be rebuilt from the queue
/// alone.
#[must_use]
pub fn entry_tags_code(due_time_topics: &[String], topic: &str, record_properties: &[u8]) -> i64 {
    if due_time_topics.iter().any(|t| t == topic) {
        return properties::find(record_properties, keys::TIMER_OUT_MS)
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    tags_code(properties::find(record_properties, keys::TAGS))
}

/// Whether a record with this sys flag gets a ConsumeQueue entry: transaction half and
/// rollback records do not (a commit's copy does).
#[must_use]
pub fn takes_queue_entry(sys_flag: i32) -> bool {
    matches!(
        sys_flag & stored::sys_flag::TRANSACTION_MASK,
        stored::sys_flag::TRANSACTION_NOT_TYPE | stored::sys_flag::TRANSACTION_COMMIT
    )
}

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// CommitLog offset of the record.
    pub phys_offset: PhysOffset,
    /// Record size.
    pub size: u32,
    /// Tag hash code.
    pub tags_code: i64,
}

impl CqEntry {
    /// Append the 20 bytes of this entry to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }

    /// The 20 bytes of this entry.
    #[must_use]
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        // Offsets are bounded by the disk and sizes by a segment (at most i32::MAX bytes).
        let phys = crate::protocol::wire_long(self.phys_offset.0).to_be_bytes();
        let Ok(size) = i32::try_from(self.size) else { panic!("an entry of {} bytes", self.size) };
        let size = size.to_be_bytes();
        for (dst, src) in
            out.iter_mut().zip(phys.iter().chain(size.iter()).chain(self.tags_code.to_be_bytes().iter()))
        {
            *dst = *src;
        }
        out
    }

    /// Read an entry; `None` for an end-of-queue slot or garbage (negative offset, size ≤ 0).
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let phys = i64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
        let size = i32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
        let tags_code = i64::from_be_bytes(bytes.get(12..20)?.try_into().ok()?);
        Some(Self {
            phys_offset: PhysOffset(u64::try_from(phys).ok()?),
            size: u32::try_from(size).ok().filter(|s| *s > 0)?,
            tags_code,
        })
    }

    /// Where the record ends in the CommitLog.
    #[must_use]
    pub fn end(&self) -> PhysOffset {
        self.phys_offset + u64::from(self.size)
    }
}

/// Read slot `index` of the queue whose files (of `file_size` bytes) lie in `dir` into
/// `slot`: how many bytes came back (fewer past a file's end, none from a missing file).
pub(crate) fn read_slot(
    reader: &dyn StoreRead,
    dir: &FilePath,
    file_size: u64,
    index: u64,
    slot: &mut [u8; ENTRY_LEN as usize],
) -> Result<usize, DiskError> {
    let pos = index * ENTRY_LEN;
    let start = pos - pos % file_size;
    let Some(file) = dir.join(&paths::offset_name(start)) else { return Ok(0) };
    match reader.read_at(&file, pos - start, slot) {
        Err(e) if e.kind == DiskErrorKind::NotFound => Ok(0),
        read => read,
    }
}

/// The first slot in `from..to` whose entry's record starts at or above `log_min` (`to`
/// if none), by binary search: a queue's entries are in log order. A slot that does not
/// read as an entry counts as at or above: a minimum never moves past what is not known
/// to be gone.
pub(crate) fn first_entry_at_or_above(
    reader: &dyn StoreRead,
    dir: &FilePath,
    file_size: u64,
    (from, to): (u64, u64),
    log_min: u64,
) -> Result<u64, DiskError> {
    let (mut low, mut high) = (from, to.max(from));
    while low < high {
        let mid = low + (high - low) / 2;
        let mut slot = [0u8; ENTRY_LEN as usize];
        let got = read_slot(reader, dir, file_size, mid, &mut slot)?;
        if got == slot.len() && CqEntry::decode(&slot).is_some_and(|e| e.phys_offset.0 < log_min) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_entry_carries_its_due_time_and_others_their_tag_hash() {
        let mut props = Vec::new();
        properties::push(&mut props, keys::TAGS, "TagA");
        properties::push(&mut props, keys::TIMER_OUT_MS, "1790000005000");
        let timers = ["rmq_sys_wheel_timer".to_owned()];
        assert_eq!(entry_tags_code(&timers, "rmq_sys_wheel_timer", &props), 1_790_000_005_000);
        assert_eq!(entry_tags_code(&timers, "Orders", &props), 2_598_919);
        assert_eq!(entry_tags_code(&[], "rmq_sys_wheel_timer", &props), 2_598_919);
    }

    #[test]
    fn entries_round_trip_and_zero_means_end() {
        let entry = CqEntry { phys_offset: PhysOffset(1000), size: 113, tags_code: -5 };
        let bytes = entry.encode();
        assert_eq!(&bytes[..12], &[0, 0, 0, 0, 0, 0, 3, 0xE8, 0, 0, 0, 113]);
        assert_eq!(CqEntry::decode(&bytes), Some(entry));
        let mut written = Vec::new();
        entry.write_to(&mut written);
        assert_eq!(written, bytes);
        assert_eq!(CqEntry::decode(&[0u8; 20]), None);
        assert_eq!(CqEntry::decode(&[0xFFu8; 20]), None);
        assert_eq!(CqEntry::decode(&bytes[..19]), None);
        assert_eq!(entry.end(), PhysOffset(1113));
    }
}
