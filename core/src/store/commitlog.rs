//! The CommitLog: one append-only log of every message, cut into fixed-size segments.
//!
//! Segments are named by their start offset (20 digits) and created at full size (sparse).
//! A record never spans segments: when the next record plus a minimal BLANK does not fit,
//! the segment is closed with a BLANK record filling the rest and the record goes to the
//! start of the next segment. Appended bytes are staged in memory and leave the core as
//! `Write` operations, one per segment per poll, so a batch of appends costs one write.

use std::collections::BTreeSet;

use bytes::BufMut;

use super::buffer_pool::BufferPool;

use super::ops::{OpQueue, Purpose};
use super::paths;
use super::{AppendRequest, StoreError};

/// Staged bytes are issued as a write once they reach this size, so writes stay bounded and
/// the staging buffer is reused instead of growing (and being copied) without limit.
const STAGE_LIMIT: usize = 256 * 1024;
use crate::io::DiskOp;
use crate::protocol::message::properties::PROPERTY_SEPARATOR;
use crate::protocol::message::stored::{
    encode_record_sealed, record_len, Record, RecordHead, BLANK_MIN_LEN, MAGIC_BLANK, RECORD_CRC_TAIL_LEN,
};

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogPosition {
    /// CommitLog offset of the record.
    pub(crate) offset: u64,
    /// Its length.
    pub(crate) size: u32,
    /// The store timestamp written into it.
    pub(crate) store_timestamp: i64,
}

/// The in-core state of the CommitLog.
#[derive(Debug)]
pub(crate) struct CommitLog {
    segment_size: u64,
    /// Segments that exist on disk (or whose creation has been issued).
    segments: BTreeSet<u64>,
    /// Where the next record goes.
    write_pos: u64,
    /// Bytes appended but not yet issued as a write; all in one segment, from `staged_at`.
    staged: Vec<u8>,
    buffers: BufferPool,
    staged_at: u64,
    /// Segments written since their last sync was issued.
    unsynced: BTreeSet<u64>,
    /// A segment was created or removed since the directory was last synced.
    dir_dirty: bool,
    /// Store timestamps never go backwards in log order, even if the wall clock does.
    last_store_timestamp: i64,
}

impl CommitLog {
    pub(crate) fn new(
        segment_size: u64,
        segments: BTreeSet<u64>,
        write_pos: u64,
        last_store_timestamp: i64,
    ) -> Self {
        Self {
            segment_size,
            segments,
            write_pos,
            staged: Vec::new(),
            buffers: BufferPool::new(STAGE_LIMIT + 64 * 1024),
            staged_at: write_pos,
            unsynced: BTreeSet::new(),
            dir_dirty: false,
            last_store_timestamp,
        }
    }

    /// Move an empty log's end to `base`, a segment's start: a slave's log that begins
    /// where its master's stream does (a first segment left empty by a cut is removed, or it
    /// would stand apart from the new one). `false` if the log holds anything or `base` is
    /// not a segment's start.
    pub(crate) fn start_at(&mut self, ops: &mut OpQueue, base: u64) -> bool {
        let empty = self.write_pos == 0 && self.staged.is_empty() && self.segments.iter().all(|s| *s == 0);
        if !empty || !base.is_multiple_of(self.segment_size) {
            return false;
        }
        if self.segments.remove(&0) {
            ops.push(DiskOp::Remove { file: paths::segment(0) }, Purpose::Plain);
            self.dir_dirty = true;
        }
        self.write_pos = base;
        self.staged_at = base;
        true
    }

    /// The start of the segment holding `offset`.
    pub(crate) fn segment_base(&self, offset: u64) -> u64 {
        offset - offset % self.segment_size
    }

    /// Where the next record goes: the end of the log.
    pub(crate) fn write_pos(&self) -> u64 {
        self.write_pos
    }

    /// The newest store timestamp written.
    pub(crate) fn last_store_timestamp(&self) -> i64 {
        self.last_store_timestamp
    }

    /// Whether appended bytes have not been synced yet (or are still staged).
    pub(crate) fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || !self.staged.is_empty() || self.dir_dirty
    }

    /// The length a record for `req` will have in the log.
    pub(crate) fn record_len_for(req: &AppendRequest<'_>, store_host_v6: bool) -> usize {
        record_len(
            req.body.len(),
            req.topic.len(),
            req.properties.len() + usize::from(needs_separator(req.properties)) + RECORD_CRC_TAIL_LEN,
            req.born_host.is_ipv6(),
            store_host_v6,
        )
    }

    /// Make room for `len` bytes of records in the current segment, closing it with a BLANK
    /// and moving to the next one if they do not fit. `len` must fit in an empty segment.
    pub(crate) fn reserve(&mut self, ops: &mut OpQueue, len: u64) {
        // Callers refuse records too large for a segment (`TooLargeForSegment`) first.
        assert!(
            len + BLANK_MIN_LEN as u64 <= self.segment_size,
            "reserving {len} bytes in segments of {}",
            self.segment_size
        );
        if len + BLANK_MIN_LEN as u64 > self.segment_left() {
            self.close_segment(ops);
        }
    }

    /// Bytes left in the segment being written.
    pub(crate) fn segment_left(&self) -> u64 {
        self.segment_base(self.write_pos) + self.segment_size - self.write_pos
    }

    /// Close the segment being written with a BLANK filling the rest of it (only its header
    /// is written; the segment was created zeroed) and move to the next.
    pub(crate) fn close_segment(&mut self, ops: &mut OpQueue) {
        let base = self.segment_base(self.write_pos);
        let remaining = self.segment_left();
        assert!(remaining >= BLANK_MIN_LEN as u64, "a segment closed with {remaining} bytes left");
        self.ensure_segment(ops, base);
        self.stage_start();
        // A segment is at most i32::MAX bytes (StoreConfig::validate).
        let Ok(blank_len) = i32::try_from(remaining) else { panic!("a BLANK of {remaining} bytes") };
        self.staged.put_i32(blank_len);
        self.staged.put_i32(MAGIC_BLANK);
        self.write_pos = base + self.segment_size;
        self.unsynced.insert(base);
        self.emit_staged(ops);
    }

    /// Append a record replicated from the master byte for byte. The caller checked it: a
    /// whole record, written for this position, leaving room for a BLANK in its segment.
    pub(crate) fn append_raw(&mut self, ops: &mut OpQueue, record: &[u8], store_timestamp: i64) {
        let len = record.len() as u64;
        assert!(
            len + BLANK_MIN_LEN as u64 <= self.segment_left(),
            "a replicated record of {len} bytes at {} would cross the segment's end",
            self.write_pos
        );
        let base = self.segment_base(self.write_pos);
        self.ensure_segment(ops, base);
        self.stage_start();
        self.staged.extend_from_slice(record);
        self.write_pos += len;
        self.last_store_timestamp = self.last_store_timestamp.max(store_timestamp);
        if self.unsynced.last() != Some(&base) {
            self.unsynced.insert(base);
        }
        if self.staged.len() >= STAGE_LIMIT {
            self.emit_staged(ops);
        }
    }

    /// Append one record at the end of the log. The caller has checked that it fits in a
    /// segment and called [`reserve`](Self::reserve).
    pub(crate) fn append(
        &mut self,
        ops: &mut OpQueue,
        wall: i64,
        req: &AppendRequest<'_>,
        queue_offset: u64,
        store_host: core::net::SocketAddr,
    ) -> Result<LogPosition, StoreError> {
        let base = self.segment_base(self.write_pos);
        // `reserve` made room: a record never spans segments (recovery reads it whole).
        let predicted = Self::record_len_for(req, store_host.is_ipv6());
        assert!(
            self.write_pos + predicted as u64 <= base + self.segment_size,
            "a record of {predicted} bytes at {} would cross the segment's end; reserve first",
            self.write_pos
        );
        self.ensure_segment(ops, base);
        self.stage_start();
        let store_timestamp = wall.max(self.last_store_timestamp);
        let offset = self.write_pos;
        let head = RecordHead {
            queue_id: req.queue_id,
            flag: req.flag,
            queue_offset: i64::try_from(queue_offset).map_err(|_| StoreError::OffsetOverflow)?,
            physical_offset: i64::try_from(offset).map_err(|_| StoreError::OffsetOverflow)?,
            sys_flag: req.sys_flag,
            born_timestamp: req.born_timestamp,
            born_host: req.born_host,
            store_timestamp,
            store_host,
            reconsume_times: req.reconsume_times,
            prepared_transaction_offset: req.prepared_transaction_offset,
        };
        let record = Record { head, body: req.body, topic: req.topic, properties: req.properties };
        let len = encode_record_sealed(&mut self.staged, &record, needs_separator(req.properties))
            .map_err(StoreError::Record)?;
        assert_eq!(len, predicted, "the size checks before an append measured another record");
        self.write_pos += len as u64;
        self.last_store_timestamp = store_timestamp;
        if self.unsynced.last() != Some(&base) {
            self.unsynced.insert(base);
        }
        if self.staged.len() >= STAGE_LIMIT {
            self.emit_staged(ops);
        }
        // It fit in a segment, so in a u32 (checked by the preconditions above).
        let Ok(size) = u32::try_from(len) else { panic!("a record of {len} bytes") };
        Ok(LogPosition { offset, size, store_timestamp })
    }

    /// Begin staging at the write position if nothing is staged.
    fn stage_start(&mut self) {
        if self.staged.is_empty() {
            self.staged_at = self.write_pos;
            if self.staged.capacity() == 0 {
                self.staged = self.buffers.take();
            }
        }
    }

    /// Issue the creation of segment `base` if it does not exist yet.
    fn ensure_segment(&mut self, ops: &mut OpQueue, base: u64) {
        // The segment being appended to is almost always the newest one.
        if self.segments.last() == Some(&base) {
            return;
        }
        if self.segments.insert(base) {
            // Staged bytes belong to an earlier segment: issue them before moving on.
            self.emit_staged(ops);
            ops.push(DiskOp::Create { file: paths::segment(base), len: self.segment_size }, Purpose::Plain);
            self.dir_dirty = true;
        }
    }

    /// Issue staged bytes as one write.
    pub(crate) fn emit_staged(&mut self, ops: &mut OpQueue) {
        if self.staged.is_empty() {
            return;
        }
        let base = self.segment_base(self.staged_at);
        let data = self.buffers.freeze(core::mem::take(&mut self.staged));
        let end = self.staged_at + data.len() as u64;
        // Bytes that close their segment with a BLANK (only its header is written) make the
        // log written to the segment's end: a cut there keeps the BLANK whole.
        let segment_end = base + self.segment_size;
        let logical_end = if self.write_pos >= segment_end { segment_end } else { end };
        ops.push(
            DiskOp::Write { file: paths::segment(base), offset: self.staged_at - base, data },
            Purpose::LogWrite { end: logical_end },
        );
        self.staged_at = end;
    }

    /// Issue syncs for every segment written since the last round (and the directory if
    /// segments came or went). Returns the log end they cover.
    pub(crate) fn issue_sync(&mut self, ops: &mut OpQueue, purpose: Purpose) -> u64 {
        self.emit_staged(ops);
        for base in core::mem::take(&mut self.unsynced) {
            ops.push(DiskOp::Sync { file: paths::segment(base) }, purpose);
        }
        if core::mem::take(&mut self.dir_dirty) {
            ops.push(DiskOp::SyncDir { dir: paths::commitlog_dir() }, purpose);
        }
        self.write_pos
    }
}

/// Whether a separator must precede the CRC property: the producer's properties lack the
/// trailing one some clients omit.
fn needs_separator(properties: &[u8]) -> bool {
    !properties.is_empty() && properties.last() != Some(&PROPERTY_SEPARATOR)
}

impl CommitLog {
    /// The oldest segment, if any exists.
    pub(crate) fn oldest_segment(&self) -> Option<u64> {
        self.segments.first().copied()
    }

    /// The newest segment that exists (the one being written, or the one before it while
    /// the log's end sits on a segment boundary not yet created).
    pub(crate) fn newest_segment(&self) -> Option<u64> {
        self.segments.last().copied()
    }

    /// The log's first byte still on disk: its oldest segment's start (the start of the
    /// segment being written when none exists yet).
    pub(crate) fn min_offset(&self) -> u64 {
        self.oldest_segment().unwrap_or_else(|| self.segment_base(self.write_pos))
    }

    /// Retention: remove the oldest segment `base` (never the one being written) and sync
    /// the directory in the same `purpose`, so removals are durable one at a time and the
    /// segments left stay contiguous whatever a crash keeps.
    pub(crate) fn remove_oldest(&mut self, ops: &mut OpQueue, base: u64, purpose: Purpose) {
        assert_eq!(self.oldest_segment(), Some(base), "retention removes the oldest segment only");
        assert!(
            base + self.segment_size <= self.write_pos && self.segment_base(self.write_pos) != base,
            "retention never removes the segment being written"
        );
        self.segments.remove(&base);
        self.unsynced.remove(&base);
        ops.push(DiskOp::Remove { file: paths::segment(base) }, purpose);
        ops.push(DiskOp::SyncDir { dir: paths::commitlog_dir() }, purpose);
    }

    /// Recovery: the segments that exist.
    pub(crate) fn set_segments(&mut self, segments: BTreeSet<u64>) {
        self.segments = segments;
    }

    /// Recovery: this segment's recovered bytes must be synced before they count as durable.
    pub(crate) fn mark_unsynced(&mut self, base: u64) {
        self.unsynced.insert(base);
    }

    /// Everything was made durable by one `SyncAll` (nothing staged: emit first).
    pub(crate) fn forget_unsynced(&mut self) {
        self.unsynced.clear();
        self.dir_dirty = false;
    }

    /// Recovery: segments were removed, so the directory must be synced.
    pub(crate) fn mark_dir_dirty(&mut self) {
        self.dir_dirty = true;
    }
}
