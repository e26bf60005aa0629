//! The controller's Raft log on disk (`raft.log` under `controllerStorePath`): what a
//! controller voted, which term it is in and every entry it holds, so a controller that
//! restarts (or a whole group after a power cut) keeps the brokers' ids, SyncStateSets and
//! master epochs. Brokers ignore answers from an older master epoch, so a group that came
//! back empty could never lead them again.
//!
//! The file is append-only. Each record carries the Raft state after one batch
//! (`HardState`) and the batch's entries; an entry at an index already held replaces that
//! entry and everything after it, as raft-rs's storage does, so replaying the records in
//! order rebuilds the log. A record is written and synced before raft-rs is told it is
//! persisted, so no vote or acknowledgement goes out for anything a crash could take back.
//!
//! A compacted log starts from a snapshot (the replicated table as of an index): the file
//! is written anew beside the old one (`raft.log.tmp`: the snapshot, then one batch with the
//! entries after it), synced and renamed over it, so a crash leaves one or the other whole.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic: `KEELRLG1` (a log from index 1) or `KEELRLG2` (a log from a snapshot) |
//! | then per record: | | |
//! | 0 | 4 | payload length N, u32 big-endian |
//! | 4 | 4 | CRC32 (IEEE) of the payload, u32 big-endian |
//! | 8 | N | payload: the `HardState`, then each `Entry`, each a length-delimited protobuf |
//!
//! In a `KEELRLG2` file the first record's payload is the `Snapshot` (its metadata: index,
//! term and voters; its data: the table), one length-delimited protobuf.
//!
//! Recovery keeps every record up to the first one that is short or fails its CRC (a write
//! torn by a crash) and cuts the file there before writing again.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use raft::prelude::{Entry, HardState, Snapshot};

use crate::io::{DiskError, DiskOp, FilePath, IoId, Output, StoreRead};

/// The log's file name under the controller's store root.
pub const LOG_FILE: &str = "raft.log";
/// Where a compacted log is written before it replaces the log.
const COMPACTED_FILE: &str = "raft.log.tmp";
/// The first bytes of a log from index 1.
const MAGIC: &[u8; 8] = b"KEELRLG1";
/// The first bytes of a log that starts from a snapshot.
const MAGIC_SNAPSHOT: &[u8; 8] = b"KEELRLG2";
/// Length and CRC in front of each payload.
const RECORD_HEADER: usize = 8;
/// A record larger than this is taken for garbage: the controller's batches are small.
const MAX_RECORD: usize = 64 << 20;

/// Why a log file could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftLogError {
    /// The file does not start with a magic: it is not a Keel controller log.
    #[error("{LOG_FILE} does not start with {MAGIC:?} or {MAGIC_SNAPSHOT:?}: not a Keel controller log")]
    NotALog,
    /// A compacted log's snapshot is missing or broken: it was synced before it replaced
    /// the log, so the disk lost synced data.
    #[error("{LOG_FILE} starts from a snapshot that is torn or does not decode")]
    BrokenSnapshot,
    /// A record passed its CRC but does not decode: written by something else.
    #[error("record at byte {at} passes its CRC but does not decode: {why}")]
    Undecodable {
        /// Where the record starts.
        at: u64,
        /// What did not decode.
        why: String,
    },
    /// The file could not be read.
    #[error("{LOG_FILE} could not be read: {0}")]
    Read(DiskError),
    /// A record's entries leave a gap after the log before it.
    #[error("record at byte {at} starts at index {first}, after a log ending at {last}")]
    Gap {
        /// Where the record starts.
        at: u64,
        /// Its first entry's index.
        first: u64,
        /// The last index before it.
        last: u64,
    },
}

/// What a log file held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveredLog {
    /// The last Raft state written (commit clamped to the last entry).
    pub hard_state: HardState,
    /// What the log starts from, if it was compacted.
    pub snapshot: Option<Snapshot>,
    /// The entries, from index 1 up (after the snapshot's index, if there is one).
    pub entries: Vec<Entry>,
    /// Where the good records end (0 for an absent or empty file).
    pub end: u64,
    /// Bytes after `end` that were torn or garbled.
    pub dropped: u64,
}

impl RecoveredLog {
    /// Read the log file through `store` (the runtime's, at start); absent, the log is empty.
    pub fn load(store: &dyn StoreRead) -> Result<Self, RaftLogError> {
        let file = FilePath::new(LOG_FILE).unwrap_or_else(FilePath::root);
        let Some(len) = store.len(&file).map_err(RaftLogError::Read)? else { return Ok(Self::default()) };
        let mut bytes = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        let mut at = 0;
        while at < bytes.len() {
            let buf = bytes.get_mut(at..).unwrap_or_default();
            match store.read_at(&file, at as u64, buf).map_err(RaftLogError::Read)? {
                0 => break,
                n => at += n,
            }
        }
        bytes.truncate(at);
        Self::read(&bytes)
    }

    /// Read back a whole file's `bytes` (empty for an absent file).
    pub fn read(bytes: &[u8]) -> Result<Self, RaftLogError> {
        let mut log = Self::default();
        if bytes.is_empty() {
            return Ok(log);
        }
        if bytes.len() < MAGIC.len() {
            // A crash during the very first write: nothing was ever persisted.
            log.dropped = bytes.len() as u64;
            return Ok(log);
        }
        let mut at = MAGIC.len();
        match bytes.get(..MAGIC.len()) {
            Some(magic) if magic == MAGIC.as_slice() => {}
            Some(magic) if magic == MAGIC_SNAPSHOT.as_slice() => {
                let mut payload = record_at(bytes, at).ok_or(RaftLogError::BrokenSnapshot)?;
                at += RECORD_HEADER + payload.len();
                let snapshot: Snapshot = raft_prost::Message::decode_length_delimited(&mut payload)
                    .map_err(|_| RaftLogError::BrokenSnapshot)?;
                log.hard_state.term = snapshot.get_metadata().term;
                log.hard_state.commit = snapshot.get_metadata().index;
                log.snapshot = Some(snapshot);
            }
            _ => return Err(RaftLogError::NotALog),
        }
        while let Some(payload) = record_at(bytes, at) {
            log.replay(at as u64, payload)?;
            at += RECORD_HEADER + payload.len();
        }
        log.end = at as u64;
        log.dropped = (bytes.len() - at) as u64;
        log.hard_state.commit = log.hard_state.commit.min(log.last_index());
        Ok(log)
    }

    /// The index the snapshot covers up to (0 without one).
    #[must_use]
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index)
    }

    /// The last index held, in an entry or the snapshot.
    #[must_use]
    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or_else(|| self.snapshot_index(), |e| e.index)
    }

    fn replay(&mut self, at: u64, mut payload: &[u8]) -> Result<(), RaftLogError> {
        let undecodable =
            |why: raft_prost::DecodeError| RaftLogError::Undecodable { at, why: why.to_string() };
        self.hard_state = raft_prost::Message::decode_length_delimited(&mut payload).map_err(undecodable)?;
        let mut entries = Vec::new();
        while !payload.is_empty() {
            entries.push(
                <Entry as raft_prost::Message>::decode_length_delimited(&mut payload).map_err(undecodable)?,
            );
        }
        // Entries the snapshot covers are committed: the same on every replica.
        let base = self.snapshot_index();
        entries.retain(|e| e.index > base);
        let Some(first) = entries.first().map(|e| e.index) else { return Ok(()) };
        let last = self.last_index();
        if first > last + 1 || entries.iter().zip(first..).any(|(e, i)| e.index != i) {
            return Err(RaftLogError::Gap { at, first, last });
        }
        self.entries.truncate(usize::try_from(first - 1 - base).unwrap_or(usize::MAX));
        self.entries.extend(entries);
        Ok(())
    }
}

/// The payload of the whole record starting at `at`, if it is whole and its CRC holds.
fn record_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let header = bytes.get(at..at.checked_add(RECORD_HEADER)?)?;
    let (len, crc) = header.split_at(4);
    let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
    let crc = u32::from_be_bytes(crc.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let start = at + RECORD_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// One record's bytes: its header and payload.
#[must_use]
pub fn encode_record(hard_state: &HardState, entries: &[Entry]) -> Bytes {
    let mut payload = Vec::new();
    // Encoding into a Vec cannot run out of room.
    let _ = raft_prost::Message::encode_length_delimited(hard_state, &mut payload);
    for entry in entries {
        let _ = raft_prost::Message::encode_length_delimited(entry, &mut payload);
    }
    frame(&payload)
}

/// A snapshot's record (the first of a `KEELRLG2` file).
#[must_use]
pub fn encode_snapshot_record(snapshot: &Snapshot) -> Bytes {
    let mut payload = Vec::new();
    let _ = raft_prost::Message::encode_length_delimited(snapshot, &mut payload);
    frame(&payload)
}

fn frame(payload: &[u8]) -> Bytes {
    let mut record = BytesMut::with_capacity(RECORD_HEADER + payload.len());
    record.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    record.put_u32(crc32fast::hash(payload));
    record.put_slice(payload);
    record.freeze()
}

/// The log file as a controller writes it: where the next record goes and which writes are
/// still on their way to the disk.
#[derive(Debug)]
pub struct RaftLogFile {
    file: FilePath,
    /// Where the next record goes.
    end: u64,
    /// Torn bytes to cut off before the first write.
    trim: bool,
    next_io: u64,
    /// Every operation issued and not yet completed, in order.
    issued: VecDeque<IoId>,
}

impl RaftLogFile {
    /// The file as `recovered` left it.
    #[must_use]
    pub fn new(recovered: &RecoveredLog) -> Self {
        let file = FilePath::new(LOG_FILE).unwrap_or_else(FilePath::root);
        Self { file, end: recovered.end, trim: recovered.dropped > 0, next_io: 0, issued: VecDeque::new() }
    }

    /// Write one record and sync it; the returned operation completes once it is durable.
    pub fn append(&mut self, hard_state: &HardState, entries: &[Entry], out: &mut Vec<Output>) -> IoId {
        let mut ops = Vec::new();
        let mut data = BytesMut::new();
        let creating = self.end == 0;
        if creating {
            ops.push(DiskOp::Create { file: self.file.clone(), len: 0 });
            data.put_slice(MAGIC);
        } else if self.trim {
            ops.push(DiskOp::SetLen { file: self.file.clone(), len: self.end });
        }
        self.trim = false;
        data.put_slice(&encode_record(hard_state, entries));
        let offset = self.end;
        self.end += data.len() as u64;
        ops.push(DiskOp::Write { file: self.file.clone(), offset, data: data.freeze() });
        ops.push(DiskOp::Sync { file: self.file.clone() });
        if creating {
            ops.push(DiskOp::SyncDir { dir: FilePath::root() });
        }
        self.issue(ops, out)
    }

    /// Replace the log with one that starts from `snapshot`, holding `entries` (those after
    /// it) and `hard_state`; the returned operation completes once the new log is durable
    /// in its place. Records appended later go after it.
    pub fn rewrite(
        &mut self,
        snapshot: &Snapshot,
        hard_state: &HardState,
        entries: &[Entry],
        out: &mut Vec<Output>,
    ) -> IoId {
        let compacted = FilePath::new(COMPACTED_FILE).unwrap_or_else(FilePath::root);
        let mut data = BytesMut::new();
        data.put_slice(MAGIC_SNAPSHOT);
        data.put_slice(&encode_snapshot_record(snapshot));
        data.put_slice(&encode_record(hard_state, entries));
        self.end = data.len() as u64;
        self.trim = false;
        let ops = vec![
            DiskOp::Create { file: compacted.clone(), len: 0 },
            DiskOp::Write { file: compacted.clone(), offset: 0, data: data.freeze() },
            DiskOp::Sync { file: compacted.clone() },
            DiskOp::Rename { from: compacted, to: self.file.clone() },
            DiskOp::SyncDir { dir: FilePath::root() },
        ];
        self.issue(ops, out)
    }

    /// Issue `ops` in order; the last one's id.
    fn issue(&mut self, ops: Vec<DiskOp>, out: &mut Vec<Output>) -> IoId {
        let mut last = IoId(0);
        for op in ops {
            self.next_io += 1;
            last = IoId(self.next_io);
            self.issued.push_back(last);
            out.push(Output::Disk { io: last, op });
        }
        last
    }

    /// A disk operation completed. A failure is final: raft-rs may not be told a batch is
    /// persisted when it is not, and cannot be told it is lost.
    pub fn completed(&mut self, io: IoId, result: &Result<(), DiskError>) -> Result<(), DiskError> {
        self.issued.retain(|issued| *issued != io);
        result.clone()
    }

    /// Whether `io` has completed (or was never issued here).
    #[must_use]
    pub fn is_done(&self, io: IoId) -> bool {
        !self.issued.contains(&io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry { index, term, data: data.to_vec(), ..Entry::default() }
    }

    fn state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState { term, vote, commit }
    }

    fn file(records: &[(HardState, Vec<Entry>)]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for (hs, entries) in records {
            bytes.extend_from_slice(&encode_record(hs, entries));
        }
        bytes
    }

    #[test]
    fn replay_rebuilds_the_log_with_overwritten_suffixes_replaced() {
        let bytes = file(&[
            (state(1, 1, 0), vec![entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")]),
            (state(1, 1, 2), vec![]),
            // A new leader's entries replace index 3 on.
            (state(2, 2, 2), vec![entry(3, 2, b"x"), entry(4, 2, b"y")]),
        ]);
        let log = RecoveredLog::read(&bytes).unwrap();
        assert_eq!(log.hard_state, state(2, 2, 2));
        let got: Vec<(u64, u64)> = log.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
        assert_eq!((log.end, log.dropped), (bytes.len() as u64, 0));
    }

    #[test]
    fn a_torn_tail_is_dropped_at_every_cut_and_never_misread() {
        let records =
            [(state(1, 1, 0), vec![entry(1, 1, b"first")]), (state(1, 1, 1), vec![entry(2, 1, b"second")])];
        let bytes = file(&records);
        let one = (MAGIC.len() + encode_record(&records[0].0, &records[0].1).len()) as u64;
        for cut in 0..bytes.len() {
            let log = RecoveredLog::read(bytes.get(..cut).unwrap()).unwrap();
            let expected_end = if cut as u64 >= one {
                one
            } else if cut >= MAGIC.len() {
                8
            } else {
                0
            };
            assert_eq!(log.end, expected_end, "cut at {cut}");
            assert_eq!(log.end + log.dropped, cut as u64, "cut at {cut}");
            assert_eq!(log.entries.len(), usize::from(cut as u64 >= one), "cut at {cut}");
        }
        // A flipped payload byte fails the CRC: that record and what follows are dropped.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let log = RecoveredLog::read(&flipped).unwrap();
        assert_eq!((log.end, log.entries.len()), (one, 1));
    }

    #[test]
    fn commit_is_clamped_to_the_entries_held_and_foreign_files_are_refused() {
        let bytes = file(&[(state(3, 1, 9), vec![entry(1, 3, b"a")])]);
        assert_eq!(RecoveredLog::read(&bytes).unwrap().hard_state.commit, 1);
        assert_eq!(RecoveredLog::read(b"NOTALOG!garbage"), Err(RaftLogError::NotALog));
        let gap =
            file(&[(state(1, 1, 0), vec![entry(1, 1, b"a")]), (state(1, 1, 0), vec![entry(3, 1, b"c")])]);
        assert!(matches!(RecoveredLog::read(&gap), Err(RaftLogError::Gap { first: 3, last: 1, .. })));
    }

    #[test]
    fn the_writer_creates_once_trims_a_torn_tail_and_appends_where_the_log_ends() {
        let mut out = Vec::new();
        let mut fresh = RaftLogFile::new(&RecoveredLog::default());
        let io = fresh.append(&state(1, 1, 0), &[entry(1, 1, b"a")], &mut out);
        let kinds: Vec<&str> = out
            .iter()
            .map(|o| match o {
                Output::Disk { op: DiskOp::Create { .. }, .. } => "create",
                Output::Disk { op: DiskOp::Write { offset: 0, .. }, .. } => "write@0",
                Output::Disk { op: DiskOp::Sync { .. }, .. } => "sync",
                Output::Disk { op: DiskOp::SyncDir { .. }, .. } => "syncdir",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["create", "write@0", "sync", "syncdir"]);
        assert!(!fresh.is_done(io));
        for output in &out {
            if let Output::Disk { io: done, .. } = output {
                fresh.completed(*done, &Ok(())).unwrap();
            }
        }
        assert!(fresh.is_done(io));
        // What the writer wrote reads back.
        let written: Vec<u8> = out
            .iter()
            .filter_map(|o| match o {
                Output::Disk { op: DiskOp::Write { data, .. }, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        let log = RecoveredLog::read(&written).unwrap();
        assert_eq!(log.entries.len(), 1);

        let mut torn = log.clone();
        torn.dropped = 5;
        let mut again = RaftLogFile::new(&torn);
        out.clear();
        again.append(&state(1, 1, 1), &[], &mut out);
        assert!(
            matches!(out.first(), Some(Output::Disk { op: DiskOp::SetLen { len, .. }, .. }) if *len == log.end)
        );
        assert!(
            matches!(out.get(1), Some(Output::Disk { op: DiskOp::Write { offset, .. }, .. }) if *offset == log.end)
        );
        let failed = DiskError::new(crate::io::DiskErrorKind::Io, "boom");
        assert!(again.completed(IoId(1), &Err(failed)).is_err());
    }

    /// What `out`'s writes leave in the log file: the compacted file's bytes once renamed
    /// over it, the log's own writes at their offsets.
    fn carry_out(file: &mut Vec<u8>, out: &[Output]) {
        let mut compacted = Vec::new();
        for output in out {
            let Output::Disk { op, .. } = output else { continue };
            match op {
                DiskOp::Create { file: f, .. } if f.as_str() == COMPACTED_FILE => compacted.clear(),
                DiskOp::Create { .. } => file.clear(),
                DiskOp::Write { file: f, offset, data } => {
                    let target = if f.as_str() == COMPACTED_FILE { &mut compacted } else { &mut *file };
                    let offset = usize::try_from(*offset).unwrap();
                    target.resize(offset.max(target.len()), 0);
                    target.truncate(offset);
                    target.extend_from_slice(data);
                }
                DiskOp::Rename { .. } => *file = std::mem::take(&mut compacted),
                _ => {}
            }
        }
    }

    fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
        let mut snapshot = Snapshot { data: data.to_vec(), ..Snapshot::default() };
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        snapshot
    }

    #[test]
    fn a_compacted_log_starts_from_its_snapshot_and_grows_on() {
        let mut bytes = Vec::new();
        let mut out = Vec::new();
        let mut writer = RaftLogFile::new(&RecoveredLog::default());
        writer.append(&state(1, 1, 0), &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")], &mut out);
        writer.rewrite(&snapshot(2, 1, b"table"), &state(1, 1, 3), &[entry(3, 1, b"c")], &mut out);
        writer.append(&state(2, 2, 3), &[entry(4, 2, b"d")], &mut out);
        carry_out(&mut bytes, &out);
        assert_eq!(bytes.get(..8), Some(MAGIC_SNAPSHOT.as_slice()));
        let log = RecoveredLog::read(&bytes).unwrap();
        assert_eq!(log.snapshot, Some(snapshot(2, 1, b"table")));
        assert_eq!(log.snapshot_index(), 2);
        let got: Vec<(u64, u64)> = log.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(3, 1), (4, 2)]);
        assert_eq!(log.hard_state, state(2, 2, 3));
        assert_eq!((log.end, log.dropped), (bytes.len() as u64, 0));
        // The rewrite replaces the log only once the new file is synced, by a rename.
        let kinds: Vec<&str> = out
            .iter()
            .skip(4)
            .take(5)
            .map(|o| match o {
                Output::Disk { op: DiskOp::Create { .. }, .. } => "create",
                Output::Disk { op: DiskOp::Write { .. }, .. } => "write",
                Output::Disk { op: DiskOp::Sync { .. }, .. } => "sync",
                Output::Disk { op: DiskOp::Rename { .. }, .. } => "rename",
                Output::Disk { op: DiskOp::SyncDir { .. }, .. } => "syncdir",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["create", "write", "sync", "rename", "syncdir"]);

        // A torn record after the snapshot is dropped; a torn snapshot is refused (it was
        // synced before it replaced the log).
        let snapshot_end = 8 + encode_snapshot_record(&snapshot(2, 1, b"table")).len();
        let torn = RecoveredLog::read(bytes.get(..bytes.len() - 3).unwrap()).unwrap();
        assert_eq!(torn.last_index(), 3);
        let cut = RecoveredLog::read(bytes.get(..snapshot_end).unwrap()).unwrap();
        assert_eq!((cut.last_index(), cut.hard_state.commit), (2, 2));
        assert_eq!(
            RecoveredLog::read(bytes.get(..snapshot_end - 1).unwrap()),
            Err(RaftLogError::BrokenSnapshot)
        );
    }
}
