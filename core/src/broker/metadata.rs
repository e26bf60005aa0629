//! The broker's metadata files, in RocketMQ's layout and format: `config/topics.json` (the
//! topic table), `config/consumerOffset.json` (committed offsets) and
//! `config/subscriptionGroup.json` (consumer groups' settings) and `config/delayOffset.json`
//! (how far each delay level has delivered).
//!
//! A file is replaced atomically: write `X.tmp`, fsync it, rename it over `X`, fsync the
//! directory. A crash at any point leaves either the old or the new version, never a mix.
//! Each step is issued once the one before it succeeded, so a failed write or fsync never
//! lets its rename through: the old version stays, and the replacement is tried again a
//! while later (a full disk or an I/O error does not stop the broker). One replacement per
//! file is in flight at a time; a change meanwhile is written after it. The broker numbers
//! these operations from [`METADATA_IO_BASE`], so they never collide with the store's.

use std::collections::VecDeque;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::io::{DiskError, DiskOp, FilePath, IoId, MonoNanos, Output, StoreRead};
use crate::protocol::json::{self, KeyStyle};

/// Metadata disk operations are numbered from here up.
pub const METADATA_IO_BASE: u64 = 1 << 62;

/// After a failed replacement, how long before it is tried again.
const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

/// `config/`.
fn config_dir() -> FilePath {
    FilePath::new("config").unwrap_or_else(FilePath::root)
}

/// One metadata file and its write state.
#[derive(Debug)]
pub(super) struct MetadataFile {
    name: &'static str,
    /// The step of the replacement in flight.
    in_flight: Option<IoId>,
    /// The replacement's steps not issued yet.
    steps: VecDeque<DiskOp>,
    /// Changed since the write in flight (or the last one) started.
    dirty: bool,
    /// A replacement failed: the next is not tried before this.
    retry_at: Option<MonoNanos>,
    /// Changes noted so far (a count), the count the replacement in flight writes, and the
    /// count the file on disk holds durably.
    changes: u64,
    writing: u64,
    durable: u64,
}

impl MetadataFile {
    pub(super) const fn new(name: &'static str) -> Self {
        Self {
            name,
            in_flight: None,
            steps: VecDeque::new(),
            dirty: false,
            retry_at: None,
            changes: 0,
            writing: 0,
            durable: 0,
        }
    }

    fn path(&self) -> FilePath {
        config_dir().join(self.name).unwrap_or_else(FilePath::root)
    }

    /// Read the file's content, if it exists.
    pub(super) fn read(&self, reader: &dyn StoreRead) -> Option<Vec<u8>> {
        let path = self.path();
        let len = usize::try_from(reader.len(&path).ok()??).ok()?;
        let mut buf = vec![0u8; len];
        let got = reader.read_at(&path, 0, &mut buf).ok()?;
        buf.truncate(got);
        Some(buf)
    }

    /// Note a change to persist.
    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
        self.changes += 1;
    }

    /// Note a change to persist, if there was one.
    pub(super) fn mark_dirty_if(&mut self, changed: bool) {
        if changed {
            self.mark_dirty();
        }
    }

    /// The changes noted so far: what [`is_durable_through`](Self::is_durable_through) takes.
    pub(super) fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether the file on disk durably holds every change up to `change`.
    pub(super) fn is_durable_through(&self, change: u64) -> bool {
        self.durable >= change
    }

    /// Whether nothing is waiting to be written or being written.
    pub(super) fn is_settled(&self) -> bool {
        !self.dirty && self.in_flight.is_none()
    }

    /// If dirty, idle and not backing off, start the atomic replacement with `content`.
    pub(super) fn write_if_dirty(
        &mut self,
        now: MonoNanos,
        next_io: &mut u64,
        content: impl FnOnce() -> Result<Vec<u8>, json::JsonError>,
        out: &mut VecDeque<Output>,
    ) {
        if !self.dirty || self.in_flight.is_some() || self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.retry_at = None;
        self.dirty = false;
        self.writing = self.changes;
        // Our own tables always serialize; if one ever did not, writing nothing (or an empty
        // file) would silently lose metadata, so it stops the broker instead.
        let content = match content() {
            Ok(content) => content,
            Err(error) => {
                out.push_back(Output::Fatal { reason: format!("cannot encode {}: {error}", self.name) });
                return;
            }
        };
        let path = self.path();
        let tmp = config_dir().join(&format!("{}.tmp", self.name)).unwrap_or_else(FilePath::root);
        self.steps = VecDeque::from([
            DiskOp::Create { file: tmp.clone(), len: 0 },
            DiskOp::Write { file: tmp.clone(), offset: 0, data: content.into() },
            DiskOp::Sync { file: tmp.clone() },
            DiskOp::Rename { from: tmp, to: path },
            DiskOp::SyncDir { dir: config_dir() },
        ]);
        self.issue_next(next_io, out);
    }

    fn issue_next(&mut self, next_io: &mut u64, out: &mut VecDeque<Output>) {
        self.in_flight = self.steps.pop_front().map(|op| {
            *next_io += 1;
            let io = IoId(*next_io);
            out.push_back(Output::Disk { io, op });
            io
        });
    }

    /// An operation completed: if it was this file's step, issue the next one, or after a
    /// failure give the replacement up (the old version stays) and try again later.
    pub(super) fn completed(
        &mut self,
        now: MonoNanos,
        io: IoId,
        result: &Result<(), DiskError>,
        next_io: &mut u64,
        out: &mut VecDeque<Output>,
    ) {
        if self.in_flight != Some(io) {
            return;
        }
        if let Err(error) = result {
            tracing::warn!(file = self.name, %error, "metadata file not replaced; the old version stays, retrying");
            self.steps.clear();
            self.in_flight = None;
            self.dirty = true;
            self.retry_at = Some(now.plus_millis(RETRY_AFTER_FAILURE_MS));
            return;
        }
        self.issue_next(next_io, out);
        if self.in_flight.is_none() {
            self.durable = self.writing;
        }
    }

    /// When a replacement held back by a failure may be tried again.
    pub(super) fn retry_at(&self) -> Option<MonoNanos> {
        self.retry_at.filter(|_| self.dirty && self.in_flight.is_none())
    }
}

/// The broker's metadata files together: loaded at start, written when changed, all
/// settled before a clean exit.
#[derive(Debug)]
pub(super) struct MetadataFiles {
    /// `topics.json`.
    pub(super) topics: MetadataFile,
    /// `consumerOffset.json`.
    pub(super) offsets: MetadataFile,
    /// `subscriptionGroup.json`.
    pub(super) groups: MetadataFile,
    /// `delayOffset.json`.
    pub(super) delay_offsets: MetadataFile,
    /// `timerCheckpoint.json`.
    pub(super) timer_checkpoint: MetadataFile,
    /// `epochs.json`: written as a master begins an epoch, and as a slave adopts its master's.
    pub(super) epochs: MetadataFile,
    next_io: u64,
    /// Shutting down: a failed replacement stops the broker instead of being retried, so
    /// a broken disk cannot hold the exit forever (the next start has the old versions).
    closing: bool,
}

impl MetadataFiles {
    pub(super) const fn new() -> Self {
        Self {
            topics: MetadataFile::new("topics.json"),
            offsets: MetadataFile::new("consumerOffset.json"),
            groups: MetadataFile::new("subscriptionGroup.json"),
            delay_offsets: MetadataFile::new("delayOffset.json"),
            timer_checkpoint: MetadataFile::new("timerCheckpoint.json"),
            epochs: MetadataFile::new("epochs.json"),
            next_io: METADATA_IO_BASE,
            closing: false,
        }
    }

    /// Parse a file; `None` if it is missing or unreadable (logged: the broker starts from
    /// defaults rather than not at all, as RocketMQ does).
    pub(super) fn load<T: DeserializeOwned>(file: &MetadataFile, reader: &dyn StoreRead) -> Option<T> {
        let bytes = file.read(reader)?;
        match json::from_slice(&bytes) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::error!(file = file.name, %error, "metadata file is unreadable; starting from defaults");
                None
            }
        }
    }

    /// The files a shutdown writes whatever their state (the epochs are written when they
    /// change, before anything is written in a new one).
    fn all(&mut self) -> [&mut MetadataFile; 5] {
        [
            &mut self.topics,
            &mut self.offsets,
            &mut self.groups,
            &mut self.delay_offsets,
            &mut self.timer_checkpoint,
        ]
    }

    /// Every file is to be written now, whatever failed before (shutdown).
    pub(super) fn mark_all_for_shutdown(&mut self) {
        self.closing = true;
        for file in self.all() {
            file.mark_dirty();
            file.retry_at = None;
        }
    }

    fn each(&self) -> [&MetadataFile; 6] {
        [&self.topics, &self.offsets, &self.groups, &self.delay_offsets, &self.timer_checkpoint, &self.epochs]
    }

    /// Nothing waiting or in flight.
    pub(super) fn all_settled(&self) -> bool {
        self.each().iter().all(|f| f.is_settled())
    }

    /// A metadata operation completed.
    pub(super) fn completed(
        &mut self,
        now: MonoNanos,
        io: IoId,
        result: &Result<(), DiskError>,
        out: &mut VecDeque<Output>,
    ) {
        if self.closing {
            if let Err(error) = result {
                out.push_back(Output::Fatal {
                    reason: format!("metadata write failed while shutting down: {error}"),
                });
                return;
            }
        }
        let mut next_io = self.next_io;
        for file in self.all() {
            file.completed(now, io, result, &mut next_io, out);
        }
        self.epochs.completed(now, io, result, &mut next_io, out);
        self.next_io = next_io;
    }

    /// The soonest retry of a replacement that failed, if any.
    pub(super) fn retry_at(&self) -> Option<MonoNanos> {
        self.each().iter().filter_map(|f| f.retry_at()).min()
    }

    /// Write whichever files are dirty and idle (and not backing off after a failure), from
    /// the topics, offsets, groups, delay offsets, timer checkpoint and epochs, in that order.
    pub(super) fn persist(
        &mut self,
        now: MonoNanos,
        (topics, offsets, groups, delay_offsets, timer_checkpoint, epochs): (
            &impl Serialize,
            &impl Serialize,
            &impl Serialize,
            &impl Serialize,
            &impl Serialize,
            &impl Serialize,
        ),
        out: &mut VecDeque<Output>,
    ) {
        self.topics.write_if_dirty(now, &mut self.next_io, || encode(topics), out);
        self.offsets.write_if_dirty(now, &mut self.next_io, || encode(offsets), out);
        self.groups.write_if_dirty(now, &mut self.next_io, || encode(groups), out);
        self.delay_offsets.write_if_dirty(now, &mut self.next_io, || encode(delay_offsets), out);
        self.timer_checkpoint.write_if_dirty(now, &mut self.next_io, || encode(timer_checkpoint), out);
        self.epochs.write_if_dirty(now, &mut self.next_io, || encode(epochs), out);
    }
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, json::JsonError> {
    json::to_vec(value, KeyStyle::Fastjson)
}
