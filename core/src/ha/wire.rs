//! The classic master/slave replication stream (RocketMQ's `DefaultHAService`), both ways.
//!
//! Slave to master: reports, each the slave's CommitLog end (its max physical offset). The
//! slave sends one every heartbeat interval and whenever it has appended; the master acts
//! on the newest complete one.
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 8    | slave's CommitLog end, i64 big-endian, ≥ 0 |
//!
//! In controller mode a slave first says who it is (Keel's extension; a master that never
//! sees it treats the slave as anonymous):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 8    | [`IDENTITY_MARKER`] (-2), i64 big-endian |
//! | 8      | 8    | the slave's broker id in its set, i64 big-endian, ≥ 1 |
//!
//! Master to slave: transfers, each a run of CommitLog bytes with the offset it starts at.
//! An empty transfer is a heartbeat.
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 8    | CommitLog offset of the first byte, i64 big-endian, ≥ 0 |
//! | 8      | 4    | byte count n, i32 big-endian, 0 ≤ n ≤ the reader's maximum |
//! | 12     | n    | CommitLog bytes, copied as stored |
//!
//! Before any transfer the master sends its epoch history, in a frame whose offset field is
//! -1 (Keel's extension; its layout is in [`super::epoch`]).
//!
//! In controller mode (the slave said who it is) the master also sends its confirmed offset
//! whenever it rises: the end of what every SyncStateSet member holds, which a slave serves
//! no queue reader past (Keel's extension, as RocketMQ's `confirmOffset`):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 8    | [`CONFIRM_MARKER`] (-2), i64 big-endian |
//! | 8      | 4    | 8, i32 big-endian |
//! | 12     | 8    | the master's confirmed offset, i64 big-endian, ≥ 0 |
//!
//! Bytes arrive in arbitrary chunks. A value no peer of ours can send (a negative offset or
//! size, a size over the maximum) breaks the stream: the connection is closed with the
//! error, and the decoder stays failed.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::store::PhysOffset;

/// Length of a slave's report.
pub const REPORT_LEN: usize = 8;
/// The report value that says the next 8 bytes are the slave's broker id.
pub const IDENTITY_MARKER: i64 = -2;
/// The offset field that marks a confirmed-offset frame.
pub const CONFIRM_MARKER: i64 = -2;
/// Length of a transfer's header.
pub const TRANSFER_HEADER_LEN: usize = 8 + 4;
/// Most CommitLog bytes a master sends in one transfer (`haTransferBatchSize`, 32 KiB).
pub const DEFAULT_TRANSFER_BATCH: usize = 32 * 1024;
/// Most bytes a slave accepts in one transfer: RocketMQ's slave reads into a 4 MiB buffer.
pub const MAX_TRANSFER_LEN: usize = 4 * 1024 * 1024;

/// Why a replication stream is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HaWireError {
    /// An offset below zero.
    #[error("negative CommitLog offset {0}")]
    NegativeOffset(i64),
    /// A transfer size below zero.
    #[error("negative transfer size {0}")]
    NegativeSize(i32),
    /// A confirmed-offset frame without its 8 bytes.
    #[error("a confirmed-offset frame without its offset")]
    BadConfirm,
    /// A history frame that is not one.
    #[error("bad epoch history: {0}")]
    BadEpochs(&'static str),
    /// A transfer larger than this side accepts.
    #[error("transfer of {len} bytes exceeds the maximum {max}")]
    TooLong {
        /// The size announced.
        len: usize,
        /// The most this side accepts.
        max: usize,
    },
}

fn offset_from_wire(raw: i64) -> Result<PhysOffset, HaWireError> {
    u64::try_from(raw).map(PhysOffset).map_err(|_| HaWireError::NegativeOffset(raw))
}

/// Append a report of `end` (the slave's CommitLog end) to `out`.
pub fn encode_report(end: PhysOffset, out: &mut impl BufMut) {
    out.put_i64(crate::protocol::wire_long(end.0));
}

/// Append a slave's identity frame (its broker id) to `out`.
pub fn encode_identity(broker_id: i64, out: &mut impl BufMut) {
    out.put_i64(IDENTITY_MARKER);
    out.put_i64(broker_id);
}

/// Append a confirmed-offset frame (`confirmed`: what every SyncStateSet member holds).
pub fn encode_confirm(confirmed: PhysOffset, out: &mut impl BufMut) {
    out.put_i64(CONFIRM_MARKER);
    out.put_i32(8);
    out.put_i64(crate::protocol::wire_long(confirmed.0));
}

/// Append a transfer of `bytes` starting at CommitLog offset `from` to `out`; an empty
/// `bytes` is a heartbeat.
///
/// # Panics
/// If `bytes` is longer than [`MAX_TRANSFER_LEN`]: the master cuts its batches far below.
pub fn encode_transfer(from: PhysOffset, bytes: &[u8], out: &mut impl BufMut) {
    out.put_slice(&transfer_header(from, bytes.len()));
    out.put_slice(bytes);
}

/// The header of a transfer of `len` bytes starting at CommitLog offset `from`.
///
/// # Panics
/// If `len` is more than [`MAX_TRANSFER_LEN`].
#[must_use]
pub fn transfer_header(from: PhysOffset, len: usize) -> [u8; TRANSFER_HEADER_LEN] {
    assert!(len <= MAX_TRANSFER_LEN, "a transfer of {len} bytes; batches are at most {MAX_TRANSFER_LEN}");
    let mut header = [0u8; TRANSFER_HEADER_LEN];
    let (offset, count) = header.split_at_mut(8);
    offset.copy_from_slice(&crate::protocol::wire_long(from.0).to_be_bytes());
    // At most 4 MiB (asserted above): an i32.
    count.copy_from_slice(&(len as i32).to_be_bytes());
    header
}

/// The master's side: the newest report the slave sent.
#[derive(Debug, Default)]
pub struct ReportDecoder {
    /// Bytes of a report not complete yet (fewer than [`REPORT_LEN`]).
    partial: Vec<u8>,
    latest: Option<PhysOffset>,
    failed: Option<HaWireError>,
    /// The next 8 bytes are the slave's id (an identity marker came).
    id_next: bool,
    identity: Option<i64>,
}

impl ReportDecoder {
    /// A decoder that has seen nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Take bytes read from the slave; the newest complete report so far, or the error that
    /// broke the stream.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Option<PhysOffset>, HaWireError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        while !data.is_empty() {
            let take = (REPORT_LEN - self.partial.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.partial.extend_from_slice(head);
            data = rest;
            if self.partial.len() == REPORT_LEN {
                let raw = self.partial.as_slice().get_i64();
                self.partial.clear();
                if core::mem::take(&mut self.id_next) {
                    self.identity = Some(raw);
                    continue;
                }
                if raw == IDENTITY_MARKER && self.latest.is_none() && self.identity.is_none() {
                    self.id_next = true;
                    continue;
                }
                match offset_from_wire(raw) {
                    Ok(end) => self.latest = Some(end),
                    Err(error) => {
                        self.failed = Some(error);
                        return Err(error);
                    }
                }
            }
        }
        Ok(self.latest)
    }

    /// The newest complete report, if any.
    #[must_use]
    pub fn latest(&self) -> Option<PhysOffset> {
        self.latest
    }

    /// The broker id the slave said it has, if it did (before its first report).
    #[must_use]
    pub fn identity(&self) -> Option<i64> {
        self.identity
    }
}

/// One transfer from the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// CommitLog offset of the first byte.
    pub from: PhysOffset,
    /// The bytes; empty for a heartbeat.
    pub bytes: Bytes,
}

impl Transfer {
    /// The CommitLog offset just past these bytes.
    #[must_use]
    pub fn end(&self) -> PhysOffset {
        self.from + self.bytes.len() as u64
    }
}

/// One frame from the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterFrame {
    /// The master's epochs and its log's end, sent before any transfer.
    Epochs(super::epoch::EpochHistory, PhysOffset),
    /// CommitLog bytes, or a heartbeat.
    Transfer(Transfer),
    /// The master's confirmed offset (controller mode).
    Confirmed(PhysOffset),
}

/// The slave's side: transfers from the master, fed in arbitrary chunks.
#[derive(Debug)]
pub struct TransferDecoder {
    buf: BytesMut,
    max_len: usize,
    failed: Option<HaWireError>,
}

impl TransferDecoder {
    /// A decoder refusing transfers of more than `max_len` bytes (at most
    /// [`MAX_TRANSFER_LEN`]).
    #[must_use]
    pub fn new(max_len: usize) -> Self {
        Self { buf: BytesMut::new(), max_len: max_len.min(MAX_TRANSFER_LEN), failed: None }
    }

    /// Append bytes read from the master.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes held for a transfer not complete yet.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame: `None` when more bytes are needed, `Some(Err)` when the
    /// stream is broken (and stays so).
    pub fn next_frame(&mut self) -> Option<Result<MasterFrame, HaWireError>> {
        if let Some(error) = self.failed {
            return Some(Err(error));
        }
        let result = self.try_next()?;
        if let Err(error) = result {
            self.failed = Some(error);
            self.buf = BytesMut::new();
        }
        Some(result)
    }

    /// The next complete transfer, passing over history frames (for readers of the bytes
    /// alone).
    pub fn next_transfer(&mut self) -> Option<Result<Transfer, HaWireError>> {
        loop {
            match self.next_frame()? {
                Ok(MasterFrame::Epochs(..) | MasterFrame::Confirmed(_)) => {}
                Ok(MasterFrame::Transfer(transfer)) => return Some(Ok(transfer)),
                Err(error) => return Some(Err(error)),
            }
        }
    }

    fn try_next(&mut self) -> Option<Result<MasterFrame, HaWireError>> {
        let mut header = self.buf.get(..TRANSFER_HEADER_LEN)?;
        let raw_from = header.get_i64();
        let raw_len = header.get_i32();
        let epochs = raw_from == super::epoch::EPOCHS_MARKER;
        let confirm = raw_from == CONFIRM_MARKER;
        let from = match offset_from_wire(raw_from) {
            Ok(from) => from,
            Err(_) if epochs || confirm => PhysOffset(0),
            Err(error) => return Some(Err(error)),
        };
        let max = if epochs {
            super::epoch::EpochHistory::max_frame_body()
        } else if confirm {
            8
        } else {
            self.max_len
        };
        let len = match usize::try_from(raw_len) {
            Ok(len) if len > max => return Some(Err(HaWireError::TooLong { len, max })),
            Ok(len) => len,
            Err(_) => return Some(Err(HaWireError::NegativeSize(raw_len))),
        };
        if self.buf.len() < TRANSFER_HEADER_LEN + len {
            return None;
        }
        self.buf.advance(TRANSFER_HEADER_LEN);
        let bytes = self.buf.split_to(len).freeze();
        if epochs {
            return Some(
                super::epoch::EpochHistory::decode_frame(&bytes)
                    .map(|(history, end)| MasterFrame::Epochs(history, end)),
            );
        }
        if confirm {
            let Some(mut body) = bytes.get(..8) else {
                return Some(Err(HaWireError::BadConfirm));
            };
            return Some(offset_from_wire(body.get_i64()).map(MasterFrame::Confirmed));
        }
        Some(Ok(MasterFrame::Transfer(Transfer { from, bytes })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmed_offset_frame_decodes_however_it_is_cut_and_a_bad_one_breaks_the_stream() {
        let mut stream = Vec::new();
        encode_confirm(PhysOffset(0x0102_0304), &mut stream);
        encode_transfer(PhysOffset(64), b"abc", &mut stream);
        assert_eq!(&stream[..12], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 8]);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let mut decoder = TransferDecoder::new(MAX_TRANSFER_LEN);
            let mut frames = Vec::new();
            for part in [a, b] {
                decoder.push(part);
                while let Some(frame) = decoder.next_frame() {
                    frames.push(frame.unwrap());
                }
            }
            assert_eq!(frames.len(), 2, "cut at {cut}");
            assert_eq!(frames[0], MasterFrame::Confirmed(PhysOffset(0x0102_0304)));
        }
        let mut short = Vec::new();
        short.put_i64(CONFIRM_MARKER);
        short.put_i32(4);
        short.put_i32(0);
        let mut decoder = TransferDecoder::new(MAX_TRANSFER_LEN);
        decoder.push(&short);
        assert_eq!(decoder.next_frame(), Some(Err(HaWireError::BadConfirm)));
    }

    #[test]
    fn a_slave_that_says_who_it_is_first_is_known_by_its_id_and_reports_as_usual() {
        let mut stream = Vec::new();
        encode_identity(3, &mut stream);
        encode_report(PhysOffset(4096), &mut stream);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let mut decoder = ReportDecoder::new();
            decoder.push(a).unwrap();
            assert_eq!(decoder.push(b).unwrap(), Some(PhysOffset(4096)), "cut at {cut}");
            assert_eq!(decoder.identity(), Some(3));
        }
        // An identity marker after a report is a broken stream, not a second identity.
        let mut late = Vec::new();
        encode_report(PhysOffset(1), &mut late);
        encode_identity(3, &mut late);
        let mut decoder = ReportDecoder::new();
        assert!(decoder.push(&late).is_err());
        assert_eq!(decoder.identity(), None);
    }

    /// Every way of cutting `stream` into two or three chunks.
    fn splits(stream: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut out = vec![vec![stream]];
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                out.push(vec![&stream[..a], &stream[a..b], &stream[b..]]);
            }
        }
        out
    }

    #[test]
    fn transfers_match_the_layout_and_survive_any_chunking() {
        let mut stream = Vec::new();
        encode_transfer(PhysOffset(0x0102_0304_0506), b"abc", &mut stream);
        encode_transfer(PhysOffset(7), b"", &mut stream);
        assert_eq!(&stream[..15], b"\0\0\x01\x02\x03\x04\x05\x06\0\0\0\x03abc");
        assert_eq!(stream.len(), 15 + 12);
        for chunks in splits(&stream) {
            let mut decoder = TransferDecoder::new(DEFAULT_TRANSFER_BATCH);
            let mut got = Vec::new();
            for chunk in chunks {
                decoder.push(chunk);
                while let Some(transfer) = decoder.next_transfer() {
                    got.push(transfer.unwrap());
                }
            }
            assert_eq!(decoder.buffered(), 0);
            assert_eq!(
                got,
                [
                    Transfer { from: PhysOffset(0x0102_0304_0506), bytes: Bytes::from_static(b"abc") },
                    Transfer { from: PhysOffset(7), bytes: Bytes::new() },
                ]
            );
            assert_eq!(got[0].end(), PhysOffset(0x0102_0304_0509));
        }
    }

    #[test]
    fn impossible_transfer_headers_break_the_stream_before_the_body_arrives() {
        let cases: [(&[u8], HaWireError); 3] = [
            (&[0xFF, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], HaWireError::NegativeOffset(-0x00FF_FFFF_FFFF_FFFF)),
            (&[0, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF], HaWireError::NegativeSize(-1)),
            (&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x80, 1], HaWireError::TooLong { len: 32_769, max: 32_768 }),
        ];
        for (header, error) in cases {
            let mut decoder = TransferDecoder::new(DEFAULT_TRANSFER_BATCH);
            decoder.push(header);
            assert_eq!(decoder.next_transfer(), Some(Err(error)));
            // Failed for good: nothing more is buffered or decoded.
            decoder.push(&[0; 64]);
            assert_eq!(decoder.buffered(), 0);
            assert_eq!(decoder.next_transfer(), Some(Err(error)));
        }
    }

    #[test]
    fn the_master_keeps_the_newest_complete_report_however_they_arrive() {
        let mut stream = Vec::new();
        for end in [0u64, 300, 1 << 40] {
            encode_report(PhysOffset(end), &mut stream);
        }
        assert_eq!(&stream[..8], &[0; 8]);
        assert_eq!(&stream[8..16], &300i64.to_be_bytes());
        for chunks in splits(&stream) {
            let mut decoder = ReportDecoder::new();
            let mut seen = Vec::new();
            for chunk in chunks {
                seen.push(decoder.push(chunk).unwrap());
            }
            assert_eq!(decoder.latest(), Some(PhysOffset(1 << 40)));
            // Reports only move forward through the stream: each answer is a prefix's newest.
            assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        }
        let mut partial = ReportDecoder::new();
        assert_eq!(partial.push(&stream[..7]), Ok(None), "seven bytes are no report yet");
    }

    #[test]
    fn a_negative_report_breaks_the_stream() {
        let mut decoder = ReportDecoder::new();
        assert_eq!(decoder.push(&(-5i64).to_be_bytes()), Err(HaWireError::NegativeOffset(-5)));
        assert_eq!(decoder.push(&7i64.to_be_bytes()), Err(HaWireError::NegativeOffset(-5)));
    }
}
