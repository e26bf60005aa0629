//! The IndexFile's bytes: RocketMQ's layout, and the seal record Keel keeps in the entry slot
//! RocketMQ never uses.
//!
//! | part | at | size | layout (big-endian) |
//! |------|----|------|---------------------|
//! | header | 0 | 40 | beginTimestamp i64, endTimestamp i64, beginPhyOffset i64, endPhyOffset i64, hashSlotCount i32, indexCount i32 |
//! | hash slots | 40 | `maxHashSlotNum` × 4 | i32: the newest entry of the slot, 0 = empty |
//! | entry 0 | 40 + 4 × slots | 20 | Keel's seal record (below); RocketMQ leaves it zero |
//! | entries 1.. | 40 + 4 × slots + 20 × i | `maxIndexNum` × 20 | keyHash i32, phyOffset i64, timeDiff i32 (seconds since beginTimestamp), prevIndex i32 (0 = end of chain) |
//!
//! The seal record says the hash slots on disk are complete for the entries below its count:
//!
//! | at | size | field |
//! |----|------|-------|
//! | 0 | u32 | magic `KEIX` |
//! | 4 | u32 | indexCount the slots cover |
//! | 8 | u32 | CRC32 of the hash slots |
//! | 12 | u32 | CRC32 of the 40-byte header |
//! | 16 | u32 | zero |
//!
//! A key is `topic#key`; its hash is the absolute value of Java's `String.hashCode` (0 for
//! `i32::MIN`), and its slot the hash modulo the slot count.

/// Header bytes.
pub(crate) const HEADER_LEN: u64 = 40;
/// Bytes per entry.
pub(crate) const ENTRY_LEN: u64 = 20;
/// Bytes per hash slot.
pub(crate) const SLOT_LEN: u64 = 4;
/// The seal record's magic, "KEIX".
const SEAL_MAGIC: u32 = 0x4B45_4958;

/// Where things sit in a file of `slots` hash slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Hash slots.
    pub(crate) slots: u32,
    /// Entry positions, including the unused 0.
    pub(crate) entries: u32,
}

impl Geometry {
    /// Byte position of slot `slot`.
    pub(crate) fn slot_pos(self, slot: u32) -> u64 {
        HEADER_LEN + u64::from(slot) * SLOT_LEN
    }

    /// Byte position of entry `index`.
    pub(crate) fn entry_pos(self, index: u32) -> u64 {
        HEADER_LEN + u64::from(self.slots) * SLOT_LEN + u64::from(index) * ENTRY_LEN
    }

    /// The file's length.
    pub(crate) fn file_len(self) -> u64 {
        self.entry_pos(self.entries)
    }

    /// The slot a key hash falls in.
    pub(crate) fn slot_of(self, hash: u32) -> u32 {
        hash % self.slots.max(1)
    }
}

/// The 40-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Header {
    /// Store time of the first entry's record, ms.
    pub(crate) begin_timestamp: i64,
    /// Store time of the last entry's record, ms.
    pub(crate) end_timestamp: i64,
    /// CommitLog offset of the first entry's record.
    pub(crate) begin_phys: i64,
    /// CommitLog offset of the last entry's record.
    pub(crate) end_phys: i64,
    /// Slots used (RocketMQ counts slots taken; Keel writes the slots that are not empty).
    pub(crate) hash_slot_count: i32,
    /// The next entry's position (1 when empty).
    pub(crate) index_count: i32,
}

impl Header {
    /// The header's bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        let fields = [
            self.begin_timestamp.to_be_bytes(),
            self.end_timestamp.to_be_bytes(),
            self.begin_phys.to_be_bytes(),
            self.end_phys.to_be_bytes(),
        ];
        for (dst, src) in out.chunks_exact_mut(8).zip(fields.iter()) {
            dst.copy_from_slice(src);
        }
        put(&mut out, 32, &self.hash_slot_count.to_be_bytes());
        put(&mut out, 36, &self.index_count.to_be_bytes());
        out
    }

    /// Read a header; `None` if short.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            begin_timestamp: i64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?),
            end_timestamp: i64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?),
            begin_phys: i64::from_be_bytes(bytes.get(16..24)?.try_into().ok()?),
            end_phys: i64::from_be_bytes(bytes.get(24..32)?.try_into().ok()?),
            hash_slot_count: i32::from_be_bytes(bytes.get(32..36)?.try_into().ok()?),
            index_count: i32::from_be_bytes(bytes.get(36..40)?.try_into().ok()?),
        })
    }
}

/// One 20-byte entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key's hash (non-negative).
    pub(crate) hash: u32,
    /// CommitLog offset of the record.
    pub(crate) phys: u64,
    /// Seconds after the header's begin timestamp.
    pub(crate) time_diff: i32,
    /// The slot's previous entry (0 = none).
    pub(crate) prev: u32,
}

impl Entry {
    /// The entry's bytes.
    pub(crate) fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut out = [0u8; ENTRY_LEN as usize];
        put(&mut out, 0, &self.hash.to_be_bytes());
        put(&mut out, 4, &crate::protocol::wire_long(self.phys).to_be_bytes());
        put(&mut out, 12, &self.time_diff.to_be_bytes());
        put(&mut out, 16, &self.prev.to_be_bytes());
        out
    }

    /// Read an entry; `None` for an empty (all-zero) slot or one that cannot be an entry.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; ENTRY_LEN as usize] = bytes.get(..ENTRY_LEN as usize)?.try_into().ok()?;
        if bytes.iter().all(|b| *b == 0) {
            return None;
        }
        let hash = i32::from_be_bytes(bytes[0..4].try_into().ok()?);
        let phys = i64::from_be_bytes(bytes[4..12].try_into().ok()?);
        let prev = i32::from_be_bytes(bytes[16..20].try_into().ok()?);
        Some(Self {
            hash: u32::try_from(hash).ok()?,
            phys: u64::try_from(phys).ok()?,
            time_diff: i32::from_be_bytes(bytes[12..16].try_into().ok()?),
            prev: u32::try_from(prev).ok()?,
        })
    }
}

/// Keel's seal record (entry 0): the slots on disk cover the entries below `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seal {
    /// Entries the slots cover (the header's indexCount).
    pub(crate) count: u32,
    /// CRC32 of the slot bytes.
    pub(crate) slots_crc: u32,
    /// CRC32 of the header bytes.
    pub(crate) header_crc: u32,
}

impl Seal {
    /// The seal of `header` and the slot bytes whose CRC is `slots_crc`.
    pub(crate) fn of(header: &Header, slots_crc: u32) -> Self {
        Self {
            count: u32::try_from(header.index_count).unwrap_or(0),
            slots_crc,
            header_crc: crc32fast::hash(&header.encode()),
        }
    }

    /// The record's bytes.
    pub(crate) fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut out = [0u8; ENTRY_LEN as usize];
        put(&mut out, 0, &SEAL_MAGIC.to_be_bytes());
        put(&mut out, 4, &self.count.to_be_bytes());
        put(&mut out, 8, &self.slots_crc.to_be_bytes());
        put(&mut out, 12, &self.header_crc.to_be_bytes());
        out
    }

    /// Read a seal record that belongs to `header`; `None` if absent, torn or another's.
    pub(crate) fn decode(bytes: &[u8], header: &Header) -> Option<Self> {
        let word = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        if word(0)? != SEAL_MAGIC || word(16)? != 0 {
            return None;
        }
        let seal = Self { count: word(4)?, slots_crc: word(8)?, header_crc: word(12)? };
        let matches = seal.header_crc == crc32fast::hash(&header.encode())
            && i64::from(seal.count) == i64::from(header.index_count);
        matches.then_some(seal)
    }
}

/// The hash slots as they lie on disk.
pub(crate) fn slot_bytes(slots: &[u32]) -> Vec<u8> {
    let mut table = Vec::with_capacity(slots.len() * SLOT_LEN as usize);
    for slot in slots {
        table.extend_from_slice(&slot.to_be_bytes());
    }
    table
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Powers of 31, wrapping: `POW31[i]` is 31^i.
const POW31: [u32; 9] = [1, 31, 961, 29791, 923521, 28629151, 887503681, 1742810335, 2487512833];

/// Java's `h = 31*h + c` over ASCII `bytes` from `h`, eight bytes a step: the products of
/// one step do not wait on each other, so the chain of dependent multiplies is an eighth as
/// long (every key of every message is hashed on the append path).
fn continue_hash(mut h: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut step = h.wrapping_mul(POW31[8]);
        for (b, power) in chunk.iter().zip(POW31[..8].iter().rev()) {
            step = step.wrapping_add(u32::from(*b).wrapping_mul(*power));
        }
        h = step;
    }
    chunks.remainder().iter().fold(h, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)))
}

/// The hash state after `topic#`, for hashing several keys of one topic
/// ([`key_hash_after`]); `None` if the topic is not ASCII.
pub(crate) fn topic_prefix(topic: &str) -> Option<u32> {
    topic.is_ascii().then(|| continue_hash(continue_hash(0, topic.as_bytes()), b"#"))
}

/// [`key_hash`] of `topic#key` from the topic's [`topic_prefix`].
pub(crate) fn key_hash_after(prefix: Option<u32>, topic: &str, key: &[u8]) -> u32 {
    match prefix {
        Some(prefix) if key.is_ascii() => abs_hash(continue_hash(prefix, key) as i32),
        _ => key_hash(topic, key),
    }
}

/// The hash of `topic#key`: the absolute value of Java's `String.hashCode` (0 for
/// `i32::MIN`, as Java's `Math.abs` leaves it negative and RocketMQ maps that to 0).
#[must_use]
pub fn key_hash(topic: &str, key: &[u8]) -> u32 {
    let hash = if key.is_ascii() && topic.is_ascii() {
        // ASCII bytes are their own UTF-16 code units.
        let prefix = continue_hash(continue_hash(0, topic.as_bytes()), b"#");
        continue_hash(prefix, key) as i32
    } else {
        let text = format!("{topic}#{}", String::from_utf8_lossy(key));
        crate::protocol::message::tag::java_string_hash(&text)
    };
    abs_hash(hash)
}

fn abs_hash(hash: i32) -> u32 {
    if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_and_an_entry_sit_where_rocketmq_puts_them() {
        let header = Header {
            begin_timestamp: 1,
            end_timestamp: 2,
            begin_phys: 3,
            end_phys: 4,
            hash_slot_count: 5,
            index_count: 6,
        };
        let bytes = header.encode();
        assert_eq!(&bytes[0..8], &1i64.to_be_bytes());
        assert_eq!(&bytes[24..32], &4i64.to_be_bytes());
        assert_eq!(&bytes[36..40], &6i32.to_be_bytes());
        assert_eq!(Header::decode(&bytes), Some(header));
        let entry = Entry { hash: 7, phys: 4096, time_diff: 9, prev: 3 };
        let bytes = entry.encode();
        assert_eq!(&bytes[4..12], &4096i64.to_be_bytes());
        assert_eq!(&bytes[16..20], &3i32.to_be_bytes());
        assert_eq!(Entry::decode(&bytes), Some(entry));
        assert_eq!(Entry::decode(&[0u8; 20]), None);
        assert_eq!(Entry::decode(&[0xFFu8; 20]), None);
        let geometry = Geometry { slots: 5_000_000, entries: 20_000_000 };
        assert_eq!(geometry.file_len(), 420_000_040);
        assert_eq!(geometry.entry_pos(1), 40 + 20_000_000 + 20);
    }

    #[test]
    fn a_seal_belongs_to_its_header_only() {
        let header = Header { index_count: 12, ..Header::default() };
        let seal = Seal::of(&header, 99);
        assert_eq!(Seal::decode(&seal.encode(), &header), Some(seal));
        let other = Header { index_count: 13, ..header };
        assert_eq!(Seal::decode(&seal.encode(), &other), None);
        assert_eq!(Seal::decode(&[0u8; 20], &header), None);
    }

    #[test]
    fn key_hashes_are_javas_of_topic_hash_key() {
        let java = |s: &str| crate::protocol::message::tag::java_string_hash(s).unsigned_abs();
        assert_eq!(key_hash("Orders", b"order-1"), java("Orders#order-1"));
        assert_eq!(key_hash("Orders", "é".as_bytes()), java("Orders#é"));
        let long = "a-topic-name-longer-than-eight";
        assert_eq!(
            key_hash(long, b"AC110002004D12345678000003E80000"),
            java(&format!("{long}#AC110002004D12345678000003E80000"))
        );
        for len in 0..20 {
            let key: String = "0123456789abcdefghij".chars().take(len).collect();
            assert_eq!(key_hash("T", key.as_bytes()), java(&format!("T#{key}")), "{len}");
        }
        assert_eq!(key_hash_after(topic_prefix("Orders"), "Orders", b"order-1"), java("Orders#order-1"));
        assert_eq!(key_hash_after(topic_prefix("Orders"), "Orders", "é".as_bytes()), java("Orders#é"));
        assert_eq!(abs_hash(i32::MIN), 0);
        assert_eq!(abs_hash(-5), 5);
    }
}
