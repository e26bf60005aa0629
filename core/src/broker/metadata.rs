//! The broker's metadata files, in RocketMQ's layout and format: `config/topics.json` (the
//! topic table), `config/consumerOffset.json` (committed offsets) and
//! `config/subscriptionGroup.json` (consumer groups' settings) and `config/delayOffset.json`
//! (how far each delay level has delivered).
//!
//! A file is replaced atomically: write `X.tmp`, fsync it, rename it over `X`, fsync the
//! directory. A crash at any point leaves either the old or the new version, never a mix.
//! One write per file is in flight at a time; a change meanwhile is written after it. Any
//! disk error is fatal, like the store's. The broker numbers these operations from
//! [`METADATA_IO_BASE`], so they never collide with the store's.

use std::collections::VecDeque;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::io::{DiskOp, FilePath, IoId, Output, StoreRead};
use crate::protocol::json::{self, KeyStyle};

/// Metadata disk operations are numbered from here up.
pub const METADATA_IO_BASE: u64 = 1 << 62;

/// `config/`.
fn config_dir() -> FilePath {
    FilePath::new("config").unwrap_or_else(FilePath::root)
}

/// One metadata file and its write state.
#[derive(Debug)]
pub(super) struct MetadataFile {
    name: &'static str,
    /// The last operation of the write in flight.
    in_flight: Option<IoId>,
    /// Changed since the write in flight (or the last one) started.
    dirty: bool,
}

impl MetadataFile {
    pub(super) const fn new(name: &'static str) -> Self {
        Self { name, in_flight: None, dirty: false }
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
    }

    /// Note a change to persist, if there was one.
    pub(super) fn mark_dirty_if(&mut self, changed: bool) {
        self.dirty |= changed;
    }

    /// Whether nothing is waiting to be written or being written.
    pub(super) fn is_settled(&self) -> bool {
        !self.dirty && self.in_flight.is_none()
    }

    /// If dirty and idle, issue the atomic replacement with `content`.
    pub(super) fn write_if_dirty(
        &mut self,
        next_io: &mut u64,
        content: impl FnOnce() -> Result<Vec<u8>, json::JsonError>,
        out: &mut VecDeque<Output>,
    ) {
        if !self.dirty || self.in_flight.is_some() {
            return;
        }
        self.dirty = false;
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
        let ops = [
            DiskOp::Create { file: tmp.clone(), len: 0 },
            DiskOp::Write { file: tmp.clone(), offset: 0, data: content.into() },
            DiskOp::Sync { file: tmp.clone() },
            DiskOp::Rename { from: tmp, to: path },
            DiskOp::SyncDir { dir: config_dir() },
        ];
        let mut last = IoId(0);
        for op in ops {
            *next_io += 1;
            last = IoId(*next_io);
            out.push_back(Output::Disk { io: last, op });
        }
        self.in_flight = Some(last);
    }

    /// An operation completed; true if it was this file's last.
    pub(super) fn completed(&mut self, io: IoId) -> bool {
        if self.in_flight == Some(io) {
            self.in_flight = None;
            return true;
        }
        false
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
    next_io: u64,
}

impl MetadataFiles {
    pub(super) const fn new() -> Self {
        Self {
            topics: MetadataFile::new("topics.json"),
            offsets: MetadataFile::new("consumerOffset.json"),
            groups: MetadataFile::new("subscriptionGroup.json"),
            delay_offsets: MetadataFile::new("delayOffset.json"),
            timer_checkpoint: MetadataFile::new("timerCheckpoint.json"),
            next_io: METADATA_IO_BASE,
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

    fn all(&mut self) -> [&mut MetadataFile; 5] {
        [
            &mut self.topics,
            &mut self.offsets,
            &mut self.groups,
            &mut self.delay_offsets,
            &mut self.timer_checkpoint,
        ]
    }

    /// Every file is to be written (shutdown).
    pub(super) fn mark_all_dirty(&mut self) {
        for file in self.all() {
            file.mark_dirty();
        }
    }

    /// Nothing waiting or in flight.
    pub(super) fn all_settled(&self) -> bool {
        [&self.topics, &self.offsets, &self.groups, &self.delay_offsets, &self.timer_checkpoint]
            .iter()
            .all(|f| f.is_settled())
    }

    /// A metadata operation completed.
    pub(super) fn completed(&mut self, io: IoId) {
        for file in self.all() {
            file.completed(io);
        }
    }

    /// Write whichever files are dirty and idle.
    pub(super) fn persist(
        &mut self,
        topics: &impl Serialize,
        offsets: &impl Serialize,
        groups: &impl Serialize,
        delay_offsets: &impl Serialize,
        timer_checkpoint: &impl Serialize,
        out: &mut VecDeque<Output>,
    ) {
        self.topics.write_if_dirty(&mut self.next_io, || encode(topics), out);
        self.offsets.write_if_dirty(&mut self.next_io, || encode(offsets), out);
        self.groups.write_if_dirty(&mut self.next_io, || encode(groups), out);
        self.delay_offsets.write_if_dirty(&mut self.next_io, || encode(delay_offsets), out);
        self.timer_checkpoint.write_if_dirty(&mut self.next_io, || encode(timer_checkpoint), out);
    }
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, json::JsonError> {
    json::to_vec(value, KeyStyle::Fastjson)
}
