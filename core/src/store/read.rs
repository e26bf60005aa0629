//! Reading the store for pulls, views and offset queries, through the runtime's read view.
//!
//! Only what is readable is served: ConsumeQueue entries already written to their files,
//! whose records end at or below the visible end of the log (written under ASYNC_FLUSH,
//! flushed under SYNC_FLUSH, so a consumer never sees a message a power loss could take
//! back when the producer was promised durability), and, on a master in controller mode,
//! held by every member of its SyncStateSet (so none a failover could take back). Every record read is checked against its
//! CRCs; a damaged one is an error, never delivered.

use bytes::Bytes;

use super::consume_queue::{CqEntry, ENTRY_LEN};
use super::message_store::Store;
use super::{paths, FlushMode, PhysOffset, QueueOffset};
use crate::io::{DiskError, StoreRead};
use crate::protocol::message::stored::{parse_record, verify_crcs, Parsed, RecordError};

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The read view failed.
    #[error("read failed: {0}")]
    Disk(#[from] DiskError),
    /// The bytes read are not a valid record (damage on disk or in transit).
    #[error("damaged record at {offset}: {error}")]
    Damaged {
        /// CommitLog offset.
        offset: PhysOffset,
        /// What was wrong.
        error: RecordError,
    },
    /// Nothing there (beyond the log, or a removed segment).
    #[error("no record at {0}")]
    Missing(PhysOffset),
    /// A ConsumeQueue file that should hold these entries is not there.
    #[error("no ConsumeQueue file for entry {0}")]
    MissingEntries(u64),
}

/// Most entries read at once.
const MAX_ENTRIES_PER_READ: u64 = 1024;

impl Store {
    /// The end of what consumers may see: written under ASYNC_FLUSH, flushed under SYNC_FLUSH.
    #[must_use]
    pub fn visible_end(&self) -> PhysOffset {
        let end = match self.config.flush_mode {
            FlushMode::Sync => self.flushed_end,
            FlushMode::Async { .. } => self.written_end,
        };
        // While repairing, nothing past the cut is served: it is about to be cut.
        PhysOffset(self.repair_cut().map_or(end, |cut| end.min(cut.0)))
    }

    /// Limit what queues serve to the log below `limit` (a master in controller mode: what
    /// its whole SyncStateSet holds, so no consumer sees a message a failover could take
    /// back and the next master write over); `None` lifts it. Replication is not limited.
    pub fn set_confirmed_limit(&mut self, limit: Option<PhysOffset>) {
        self.confirmed_limit = limit.map(|l| l.0);
    }

    /// The end of what queue readers may see: [`visible_end`](Self::visible_end), within
    /// the confirmed limit.
    #[must_use]
    pub fn consumable_end(&self) -> PhysOffset {
        let visible = self.visible_end();
        PhysOffset(self.confirmed_limit.map_or(visible.0, |limit| visible.0.min(limit)))
    }

    /// A counter that moves whenever some queue's entries may have become readable.
    #[must_use]
    pub fn readable_generation(&self) -> u64 {
        self.queues.writes
    }

    /// The offset just past a queue's last readable entry (≤ its max offset).
    #[must_use]
    pub fn readable_next(&self, topic: &str, queue_id: i32) -> Option<QueueOffset> {
        self.queues.get(topic, queue_id).map(|q| QueueOffset(q.written_next))
    }

    /// [`readable_next`](Self::readable_next) for several queues of one topic: the topic is
    /// looked up once, as a watcher of a system topic's queues asks after every input.
    pub fn readable_next_of<'a>(&'a self, topic: &str) -> impl Fn(i32) -> Option<QueueOffset> + 'a {
        let queues = self.queues.of_topic(topic);
        move |queue_id| queues(queue_id).map(|q| QueueOffset(q.written_next))
    }

    /// Up to `max` readable entries of a queue starting at `from`, stopping at the first whose
    /// record is not visible yet.
    pub fn read_entries(
        &self,
        reader: &dyn StoreRead,
        topic: &str,
        queue_id: i32,
        from: QueueOffset,
        max: u64,
    ) -> Result<Vec<CqEntry>, ReadError> {
        let Some(queue) = self.queues.get(topic, queue_id) else { return Ok(Vec::new()) };
        let Some(dir) = self.queues.dir(topic, queue_id) else { return Ok(Vec::new()) };
        let visible = self.consumable_end();
        let end = queue.written_next.min(from.0.saturating_add(max.min(MAX_ENTRIES_PER_READ)));
        let file_size = self.queues.file_size();
        let mut entries = Vec::new();
        let mut offset = from.0.max(queue.min_offset);
        while offset < end {
            let pos = offset * ENTRY_LEN;
            let file_start = pos - pos % file_size;
            let in_file = pos - file_start;
            let count = (end - offset).min((file_size - in_file) / ENTRY_LEN);
            let mut buf = vec![0u8; usize::try_from(count * ENTRY_LEN).unwrap_or(0)];
            let file = dir.join(&paths::offset_name(file_start)).ok_or(ReadError::MissingEntries(offset))?;
            let got = reader.read_at(&file, in_file, &mut buf)?;
            for slot in buf.get(..got).unwrap_or_default().chunks_exact(ENTRY_LEN as usize) {
                match CqEntry::decode(slot) {
                    Some(entry) if entry.end() <= visible => entries.push(entry),
                    _ => return Ok(entries),
                }
            }
            if (got as u64) < count * ENTRY_LEN {
                break;
            }
            offset += count;
        }
        Ok(entries)
    }

    /// The record at `at` of `size` bytes, CRC-checked.
    pub fn read_record(&self, reader: &dyn StoreRead, at: PhysOffset, size: u32) -> Result<Bytes, ReadError> {
        if at + u64::from(size) > self.visible_end() {
            return Err(ReadError::Missing(at));
        }
        let phys = at.0;
        let segment_size = self.config.segment_size;
        let base = phys - phys % segment_size;
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
        let got = reader.read_at(&paths::segment(base), phys - base, &mut buf)?;
        if got < buf.len() {
            return Err(ReadError::Missing(at));
        }
        match parse_record(&buf) {
            Ok(Parsed::Message(view)) if u64::try_from(view.head().physical_offset).ok() == Some(phys) => {
                verify_crcs(&view, true).map_err(|error| ReadError::Damaged { offset: at, error })?;
            }
            Ok(_) => return Err(ReadError::Missing(at)),
            Err(error) => return Err(ReadError::Damaged { offset: at, error }),
        }
        Ok(Bytes::from(buf))
    }

    /// The record starting at `at` (its size read from its first bytes), CRC-checked: for
    /// lookups by offset message id.
    pub fn read_record_at(&self, reader: &dyn StoreRead, at: PhysOffset) -> Result<Bytes, ReadError> {
        let phys = at.0;
        let segment_size = self.config.segment_size;
        let base = phys - phys % segment_size;
        let mut head = [0u8; 4];
        if reader.read_at(&paths::segment(base), phys - base, &mut head)? < 4 {
            return Err(ReadError::Missing(at));
        }
        let size = u32::try_from(i32::from_be_bytes(head)).map_err(|_| ReadError::Missing(at))?;
        self.read_record(reader, at, size)
    }

    /// Raw CommitLog bytes from `from`, as a master streams them to its slaves: at most
    /// `max`, never past what consumers may see ([`visible_end`](Self::visible_end)) nor
    /// past the end of `from`'s segment, so a run may end inside a record (the slave keeps
    /// the rest for the next). Empty at the visible end. Not CRC-checked here: every
    /// record carries its CRCs to the slave, which checks them.
    pub fn read_log(&self, reader: &dyn StoreRead, from: PhysOffset, max: usize) -> Result<Bytes, ReadError> {
        self.read_log_after(reader, from, max, 0).map(Bytes::from)
    }

    /// [`read_log`](Self::read_log) into a buffer that begins with `headroom` zero bytes
    /// for the caller's frame header, so a master frames a run without copying it again.
    /// Just the headroom at the visible end.
    pub fn read_log_after(
        &self,
        reader: &dyn StoreRead,
        from: PhysOffset,
        max: usize,
        headroom: usize,
    ) -> Result<Vec<u8>, ReadError> {
        if from < self.min_phys() {
            return Err(ReadError::Missing(from));
        }
        let visible = self.visible_end();
        if from > visible {
            return Err(ReadError::Missing(from));
        }
        let segment_size = self.config.segment_size;
        let base = from.0 - from.0 % segment_size;
        let end = visible.0.min(base + segment_size).min(from.0.saturating_add(max as u64));
        // A run within one segment: far below usize on any host we run on.
        let len = (end - from.0) as usize;
        let mut buf = vec![0u8; headroom + len];
        let Some(run) = buf.get_mut(headroom..).filter(|run| !run.is_empty()) else { return Ok(buf) };
        let got = reader.read_at(&paths::segment(base), from.0 - base, run)?;
        if got < len {
            return Err(ReadError::Missing(from + got as u64));
        }
        Ok(buf)
    }
}
