//! The `checkpoint` file: RocketMQ's five positions, plus what Keel's recovery trusts.
//!
//! Layout (4096 bytes, big-endian, rewritten in place):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0 | i64 | physicMsgTimestamp: store time of the last durable record |
//! | 8 | i64 | logicsMsgTimestamp: store time of the last record whose ConsumeQueue entry is durable |
//! | 16 | i64 | indexMsgTimestamp (no index yet: 0) |
//! | 24 | i64 | masterFlushedOffset (replication; 0) |
//! | 32 | i64 | confirmPhyOffset: CommitLog bytes known durable |
//! | 40 | u32 | Keel format version (1) |
//! | 44 | u32 | 0 |
//! | 48 | i64 | log durable end: every CommitLog byte below it was fsynced |
//! | 56 | i64 | queue durable end: every ConsumeQueue entry of records below it was fsynced |
//! | 64 | u32 | CRC32 (IEEE) of bytes 0..64 |
//! | 68 | i64 | index mark: the newest index file (its name) when the entries were synced |
//! | 76 | u32 | index mark: that file's entry count then (entries below it were fsynced) |
//! | 80 | u32 | CRC32 (IEEE) of bytes 68..80; anything else there means no mark |
//! | 84 | … | zero |
//!
//! The first 40 bytes are exactly RocketMQ's. The CRC makes a torn rewrite detectable: a
//! checkpoint that fails it is ignored and recovery scans from the first segment. The index
//! mark has its own CRC, so a checkpoint written before Keel had an index still reads (with
//! no mark).

/// Size of the file.
pub const CHECKPOINT_LEN: usize = 4096;
const VERSION: u32 = 1;
const CRC_AT: usize = 64;
const MARK_AT: usize = 68;
const MARK_CRC_AT: usize = 80;

/// The index entries a checkpoint vouches for: those of file `file` below `count` (and
/// every entry of older files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexMark {
    /// The newest index file's name (the CommitLog offset it starts at).
    pub file: u64,
    /// Its entry count (next index) when its entries were synced.
    pub count: u32,
}

/// The positions a checkpoint records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Store time of the last durable record.
    pub physic_msg_timestamp: i64,
    /// Store time of the last record with a durable ConsumeQueue entry.
    pub logics_msg_timestamp: i64,
    /// CommitLog bytes durable (RocketMQ's confirmPhyOffset slot).
    pub confirm_phy_offset: u64,
    /// Every CommitLog byte below this was fsynced.
    pub log_durable_end: u64,
    /// Every ConsumeQueue entry for records below this was fsynced (≤ `log_durable_end`).
    pub queue_durable_end: u64,
    /// The index entries synced with the ConsumeQueues, if an index file existed.
    pub index_mark: Option<IndexMark>,
}

fn put_i64(buf: &mut [u8], at: usize, value: i64) {
    if let Some(slot) = buf.get_mut(at..at + 8) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
}

fn get_i64(buf: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

fn as_i64(n: u64) -> i64 {
    crate::protocol::wire_long(n)
}

impl Checkpoint {
    /// The 4096 bytes of the file.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = vec![0u8; CHECKPOINT_LEN];
        put_i64(&mut buf, 0, self.physic_msg_timestamp);
        put_i64(&mut buf, 8, self.logics_msg_timestamp);
        put_i64(&mut buf, 32, as_i64(self.confirm_phy_offset));
        if let Some(slot) = buf.get_mut(40..44) {
            slot.copy_from_slice(&VERSION.to_be_bytes());
        }
        put_i64(&mut buf, 48, as_i64(self.log_durable_end));
        put_i64(&mut buf, 56, as_i64(self.queue_durable_end));
        let crc = crc32fast::hash(buf.get(..CRC_AT).unwrap_or_default());
        if let Some(slot) = buf.get_mut(CRC_AT..CRC_AT + 4) {
            slot.copy_from_slice(&crc.to_be_bytes());
        }
        if let Some(mark) = self.index_mark {
            put_i64(&mut buf, MARK_AT, as_i64(mark.file));
            if let Some(slot) = buf.get_mut(MARK_AT + 8..MARK_CRC_AT) {
                slot.copy_from_slice(&mark.count.to_be_bytes());
            }
            let crc = crc32fast::hash(buf.get(MARK_AT..MARK_CRC_AT).unwrap_or_default());
            if let Some(slot) = buf.get_mut(MARK_CRC_AT..MARK_CRC_AT + 4) {
                slot.copy_from_slice(&crc.to_be_bytes());
            }
        }
        buf
    }

    /// Read a checkpoint; `None` if it is short, torn, of another version or inconsistent.
    #[must_use]
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let stored = u32::from_be_bytes(buf.get(CRC_AT..CRC_AT + 4)?.try_into().ok()?);
        if crc32fast::hash(buf.get(..CRC_AT)?) != stored {
            return None;
        }
        if u32::from_be_bytes(buf.get(40..44)?.try_into().ok()?) != VERSION {
            return None;
        }
        let checkpoint = Self {
            physic_msg_timestamp: get_i64(buf, 0)?,
            logics_msg_timestamp: get_i64(buf, 8)?,
            confirm_phy_offset: u64::try_from(get_i64(buf, 32)?).ok()?,
            log_durable_end: u64::try_from(get_i64(buf, 48)?).ok()?,
            queue_durable_end: u64::try_from(get_i64(buf, 56)?).ok()?,
            index_mark: decode_mark(buf),
        };
        (checkpoint.queue_durable_end <= checkpoint.log_durable_end).then_some(checkpoint)
    }
}

fn decode_mark(buf: &[u8]) -> Option<IndexMark> {
    let stored = u32::from_be_bytes(buf.get(MARK_CRC_AT..MARK_CRC_AT + 4)?.try_into().ok()?);
    if crc32fast::hash(buf.get(MARK_AT..MARK_CRC_AT)?) != stored {
        return None;
    }
    Some(IndexMark {
        file: u64::try_from(get_i64(buf, MARK_AT)?).ok()?,
        count: u32::from_be_bytes(buf.get(MARK_AT + 8..MARK_CRC_AT)?.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_tearing() {
        let cp = Checkpoint {
            physic_msg_timestamp: 1_726_000_000_005,
            logics_msg_timestamp: 1_726_000_000_001,
            confirm_phy_offset: 4096,
            log_durable_end: 4096,
            queue_durable_end: 2048,
            index_mark: None,
        };
        let bytes = cp.encode();
        assert_eq!(bytes.len(), CHECKPOINT_LEN);
        assert_eq!(&bytes[32..40], &4096i64.to_be_bytes());
        assert_eq!(Checkpoint::decode(&bytes), Some(cp));
        for at in 0..68 {
            let mut torn = bytes.clone();
            torn[at] ^= 1;
            assert_eq!(Checkpoint::decode(&torn), None, "flip at {at}");
        }
        assert_eq!(Checkpoint::decode(&[0u8; 4096]), None);
        assert_eq!(Checkpoint::decode(&bytes[..10]), None);
    }

    #[test]
    fn an_index_mark_round_trips_and_a_torn_one_reads_as_none() {
        let mark = IndexMark { file: 4096, count: 77 };
        let cp = Checkpoint {
            queue_durable_end: 10,
            log_durable_end: 10,
            index_mark: Some(mark),
            ..Checkpoint::default()
        };
        let bytes = cp.encode();
        assert_eq!(Checkpoint::decode(&bytes), Some(cp));
        let mut torn = bytes.clone();
        torn[MARK_AT + 9] ^= 1;
        assert_eq!(Checkpoint::decode(&torn), Some(Checkpoint { index_mark: None, ..cp }));
    }
}
