//! Epochs: which master wrote which stretch of the CommitLog.
//!
//! Every time a broker starts serving as master (a start, or its store cut back after a
//! disk error) it begins a new epoch at its log's end. Its history lists each epoch with
//! the offset it began at; a slave adopts its master's history. When a slave connects, the
//! master sends its history first, and the slave cuts its own log back to what both
//! histories agree on: the end of the newest epoch they share, as RocketMQ's controller mode
//! does (`AutoSwitchHAClient`'s truncation). So a slave holding bytes its master lost (the
//! master crashed before they were durable, then wrote other records there) drops them
//! instead of keeping a log that differs from the master's.
//!
//! The history frame (Keel's extension of the classic stream; the master sends it before any
//! transfer, marked by an offset no transfer has):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 8    | [`EPOCHS_MARKER`] (-1), i64 big-endian |
//! | 8      | 4    | body size n = 8 + 12 × entries, i32 big-endian |
//! | 12     | 8    | the master's CommitLog end, i64 big-endian |
//! | 20     | 12 × k | per epoch, oldest first: epoch u32 BE, start offset i64 BE |

use bytes::{Buf, BufMut};
use serde::{Deserialize, Serialize};

use super::wire::HaWireError;
use crate::store::PhysOffset;

/// The offset field that marks a history frame.
pub const EPOCHS_MARKER: i64 = -1;
/// Bytes per epoch in a history frame.
const ENTRY_LEN: usize = 4 + 8;
/// Most epochs a history frame may carry (a broker restarted hourly for seven years).
const MAX_ENTRIES: usize = 1 << 16;

/// One epoch: its number and the CommitLog offset its master began at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochEntry {
    /// The epoch's number.
    pub epoch: u32,
    /// Where its master's first record went.
    pub start: u64,
}

/// A broker's epochs, oldest first; persisted as `config/epochs.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochHistory {
    entries: Vec<EpochEntry>,
}

impl Default for EpochHistory {
    /// Epoch 0 from offset 0: a log written before any epoch was recorded.
    fn default() -> Self {
        Self { entries: vec![EpochEntry { epoch: 0, start: 0 }] }
    }
}

impl EpochHistory {
    /// A history from entries, if they are one: epoch 0 at offset 0 first, epochs rising,
    /// starts never falling.
    #[must_use]
    pub fn from_entries(entries: Vec<EpochEntry>) -> Option<Self> {
        let first_ok = entries.first() == Some(&EpochEntry { epoch: 0, start: 0 });
        let ordered =
            entries.windows(2).all(|w| matches!(w, [a, b] if a.epoch < b.epoch && a.start <= b.start));
        (first_ok && ordered).then_some(Self { entries })
    }

    /// The epochs, oldest first.
    #[must_use]
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch.
    #[must_use]
    pub fn current(&self) -> EpochEntry {
        self.entries.last().copied().unwrap_or(EpochEntry { epoch: 0, start: 0 })
    }

    /// Begin the next epoch at `start` (this broker's log end as it starts serving as
    /// master); returns its number. Epochs that began past `start` (a store cut back below
    /// them after a disk error) are dropped: this log holds none of their records now.
    pub fn begin(&mut self, start: PhysOffset) -> u32 {
        let epoch = self.current().epoch + 1;
        self.entries.retain(|entry| entry.start <= start.0);
        self.entries.push(EpochEntry { epoch, start: start.0 });
        epoch
    }

    /// Begin an epoch numbered at least `floor` at `start` (a master elected by a controller
    /// in its master epoch E begins at E << 16 or past it; restarts within E count on in the
    /// low half). Returns its number.
    pub fn begin_at_least(&mut self, floor: u32, start: PhysOffset) -> u32 {
        let epoch = self.begin(start).max(floor);
        if let Some(last) = self.entries.last_mut() {
            last.epoch = epoch;
        }
        epoch
    }

    /// Where a log with this history and end `own_end` must be cut to continue one with
    /// `master`'s history and end: the end of the newest epoch both share (same number, same
    /// start), in whichever log ends it first. `None` if they share none (the logs cannot be
    /// reconciled).
    #[must_use]
    pub fn agreed_end(
        &self,
        own_end: PhysOffset,
        master: &Self,
        master_end: PhysOffset,
    ) -> Option<PhysOffset> {
        let end_in = |history: &Self, at: usize, log_end: PhysOffset| {
            history.entries.get(at + 1).map_or(log_end.0, |next| next.start).min(log_end.0)
        };
        master.entries.iter().enumerate().rev().find_map(|(theirs, entry)| {
            let ours = self.entries.iter().position(|e| e == entry)?;
            Some(PhysOffset(end_in(self, ours, own_end).min(end_in(master, theirs, master_end))))
        })
    }

    /// Append the history frame, with the master's log end, to `out`.
    pub fn encode_frame(&self, master_end: PhysOffset, out: &mut impl BufMut) {
        let body = 8 + ENTRY_LEN * self.entries.len();
        out.put_i64(EPOCHS_MARKER);
        // A history of more than MAX_ENTRIES is refused when it is decoded or loaded.
        out.put_i32(i32::try_from(body).unwrap_or(i32::MAX));
        out.put_i64(crate::protocol::wire_long(master_end.0));
        for entry in &self.entries {
            out.put_u32(entry.epoch);
            out.put_i64(crate::protocol::wire_long(entry.start));
        }
    }

    /// Longest body a history frame may have.
    #[must_use]
    pub const fn max_frame_body() -> usize {
        8 + ENTRY_LEN * MAX_ENTRIES
    }

    /// Decode a history frame's body: the history and the master's log end.
    pub fn decode_frame(mut body: &[u8]) -> Result<(Self, PhysOffset), HaWireError> {
        if body.len() < 8
            || !(body.len() - 8).is_multiple_of(ENTRY_LEN)
            || body.len() > Self::max_frame_body()
        {
            return Err(HaWireError::BadEpochs("a body that is not an end and whole entries"));
        }
        let end = body.get_i64();
        let end = u64::try_from(end).map_err(|_| HaWireError::NegativeOffset(end))?;
        let mut entries = Vec::with_capacity(body.len() / ENTRY_LEN);
        while body.has_remaining() {
            let epoch = body.get_u32();
            let start = body.get_i64();
            let start = u64::try_from(start).map_err(|_| HaWireError::NegativeOffset(start))?;
            entries.push(EpochEntry { epoch, start });
        }
        let history =
            Self::from_entries(entries).ok_or(HaWireError::BadEpochs("epochs out of order or not from 0"))?;
        if history.current().start > end {
            return Err(HaWireError::BadEpochs("an epoch beginning past the master's end"));
        }
        Ok((history, PhysOffset(end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(u32, u64)]) -> EpochHistory {
        let list: Vec<EpochEntry> =
            entries.iter().map(|&(epoch, start)| EpochEntry { epoch, start }).collect();
        EpochHistory::from_entries(list).unwrap_or_else(|| panic!("{entries:?} is no history"))
    }

    #[test]
    fn a_slave_keeps_what_the_newest_shared_epoch_covers_in_both_logs() {
        let at = |n| PhysOffset(n);
        // The master lost its tail past 500 in a crash and began epoch 2 there.
        let master = history(&[(0, 0), (1, 0), (2, 500)]);
        let slave = history(&[(0, 0), (1, 0)]);
        assert_eq!(slave.agreed_end(at(800), &master, at(900)), Some(at(500)), "cut the lost tail");
        assert_eq!(slave.agreed_end(at(300), &master, at(900)), Some(at(300)), "behind it: nothing to cut");
        // A slave that adopted epoch 2 keeps what it copied of it.
        let adopted = master.clone();
        assert_eq!(adopted.agreed_end(at(700), &master, at(900)), Some(at(700)));
        // The slave's epoch 2 ran further than the master's (the master lost it again).
        let later = history(&[(0, 0), (1, 0), (2, 500), (3, 650)]);
        assert_eq!(adopted.agreed_end(at(800), &later, at(700)), Some(at(650)));
        // A fresh slave shares epoch 0 with anyone.
        assert_eq!(EpochHistory::default().agreed_end(at(0), &later, at(700)), Some(at(0)));
        // Histories that share nothing.
        let foreign = EpochHistory { entries: vec![EpochEntry { epoch: 5, start: 10 }] };
        assert_eq!(foreign.agreed_end(at(20), &master, at(900)), None);
    }

    #[test]
    fn the_history_frame_matches_its_layout_and_refuses_nonsense() {
        let master = history(&[(0, 0), (1, 0), (2, 0x0102)]);
        let mut frame = Vec::new();
        master.encode_frame(PhysOffset(0x0A0B), &mut frame);
        let mut expected = vec![0xFF; 8];
        expected.extend_from_slice(&44i32.to_be_bytes());
        expected.extend_from_slice(&0x0A0Bi64.to_be_bytes());
        for (epoch, start) in [(0u32, 0i64), (1, 0), (2, 0x0102)] {
            expected.extend_from_slice(&epoch.to_be_bytes());
            expected.extend_from_slice(&start.to_be_bytes());
        }
        assert_eq!(frame, expected);
        assert_eq!(EpochHistory::decode_frame(&frame[12..]), Ok((master, PhysOffset(0x0A0B))));
        let bad = |body: &[u8]| EpochHistory::decode_frame(body).is_err();
        assert!(bad(&frame[12..30]), "a cut entry");
        assert!(bad(&[0; 4]), "no end");
        let mut unordered = frame[12..].to_vec();
        unordered[20 + 3] = 9; // epoch 1 → 9, then 2
        assert!(bad(&unordered));
        let mut past_end = frame[12..].to_vec();
        past_end[..8].copy_from_slice(&1i64.to_be_bytes());
        assert!(bad(&past_end), "an epoch starting past the end");
    }

    #[test]
    fn an_epoch_begun_below_later_ones_drops_them_and_slaves_cut_back_to_it() {
        let mut master = history(&[(0, 0), (1, 0), (2, 500)]);
        let adopted = master.clone();
        assert_eq!(master.begin(PhysOffset(450)), 3, "numbers never repeat");
        assert_eq!(master, history(&[(0, 0), (1, 0), (3, 450)]));
        assert_eq!(adopted.agreed_end(PhysOffset(520), &master, PhysOffset(600)), Some(PhysOffset(450)));
    }
}
