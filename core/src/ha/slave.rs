//! The slave's side of its connection to the master.
//!
//! On connecting, the slave reports where its log ends; the master sends its epoch history,
//! which this log must agree with (else it is cut back first), then streams from there (a
//! slave with nothing, from the start of the master's newest segment: its log begins there).
//! Each transfer must start where the slave's log, plus the part of a cut record it holds,
//! ends. Whole records go to the store at once ([`Store::append_replicated`]); the slave
//! reports its new end after every input that moved it, and every heartbeat interval
//! otherwise.

use bytes::{Bytes, BytesMut};

use super::epoch::EpochHistory;
use super::wire::{encode_report, MasterFrame, TransferDecoder, MAX_TRANSFER_LEN};
use super::{HaConfig, HaError, Liveness};
use crate::io::MonoNanos;
use crate::store::{PhysOffset, Store};

/// Bytes a record holds besides its body, at most: the fixed fields with IPv6 hosts, a
/// topic and a properties string of 32767 bytes each.
const RECORD_OVERHEAD: usize = 256 + 2 * 32_767;

/// The slave's link to its master over one connection.
#[derive(Debug)]
pub struct MasterLink {
    transfers: TransferDecoder,
    /// The master's epoch history, once it arrived and agreed with this log; taken by the
    /// broker, which keeps it as its own.
    adopted: Option<EpochHistory>,
    /// Whether the history arrived (transfers come only after it).
    history_seen: bool,
    /// Whether a transfer arrived (only the first may jump a gap, meaning "start over").
    streamed: bool,
    /// The start of a record cut at a transfer's end, waiting for the rest.
    pending: Vec<u8>,
    /// The end last reported to the master.
    reported: PhysOffset,
    /// Controller mode (the slave named itself): a master whose newest epoch is older than
    /// this log's is a deposed one, never followed.
    refuse_older: bool,
    liveness: Liveness,
}

impl MasterLink {
    /// A link just connected at `now`, with the first report to send: where `store`'s log
    /// ends.
    #[must_use]
    pub fn new(now: MonoNanos, store: &Store, identity: Option<i64>) -> (Self, Bytes) {
        let end = store.write_pos();
        let link = Self {
            transfers: TransferDecoder::new(MAX_TRANSFER_LEN),
            adopted: None,
            history_seen: false,
            streamed: false,
            pending: Vec::new(),
            reported: end,
            refuse_older: identity.is_some(),
            liveness: Liveness::new(now),
        };
        let hello = match identity {
            Some(id) => {
                let mut out = bytes::BytesMut::new();
                super::wire::encode_identity(id, &mut out);
                super::wire::encode_report(end, &mut out);
                out.freeze()
            }
            None => report(end),
        };
        (link, hello)
    }

    /// Bytes from the master: its epoch history first, checked against this log's
    /// (`own`: [`HaError::CutBack`] when this log holds what the master's does not), then
    /// every complete transfer, appended to `store`. An error means the connection must be
    /// closed (what was appended before it stays).
    pub fn on_bytes(
        &mut self,
        now: MonoNanos,
        data: &[u8],
        store: &mut Store,
        own: &EpochHistory,
    ) -> Result<(), HaError> {
        self.liveness.heard(now);
        self.transfers.push(data);
        // A record is never longer than the store's largest plus its fields.
        let bound = store.config().max_message_size + RECORD_OVERHEAD;
        while let Some(frame) = self.transfers.next_frame() {
            let transfer = match frame? {
                MasterFrame::Epochs(history, master_end) => {
                    if self.history_seen {
                        return Err(HaError::Wire(super::wire::HaWireError::BadEpochs("a second history")));
                    }
                    self.history_seen = true;
                    let (master, newest) = (history.current().epoch, own.current().epoch);
                    if self.refuse_older && master < newest {
                        return Err(HaError::StaleMaster { master, own: newest });
                    }
                    let end = store.write_pos();
                    let agreed = own.agreed_end(end, &history, master_end).ok_or(HaError::NoSharedEpoch)?;
                    if agreed < end && !store.config().mutated(crate::mutation::Mutation::SkipTruncation) {
                        return Err(HaError::CutBack { to: agreed });
                    }
                    self.adopted = Some(history);
                    continue;
                }
                MasterFrame::Transfer(_) | MasterFrame::Confirmed(_) if !self.history_seen => {
                    return Err(HaError::EpochsExpected)
                }
                // Queue readers of this slave see no further than every member holds.
                MasterFrame::Confirmed(confirmed) => {
                    store.set_confirmed_limit(Some(confirmed));
                    continue;
                }
                MasterFrame::Transfer(transfer) => transfer,
            };
            let mut end = store.write_pos();
            let expected = end + self.pending.len() as u64;
            if transfer.from != expected {
                // A slave with nothing is streamed from its master's newest segment; one that
                // needs what its master's retention deleted is streamed from there too, past
                // a gap: it must start over, empty.
                if end.0 != 0 || !self.pending.is_empty() {
                    if !self.streamed && transfer.from > expected {
                        return Err(HaError::BehindRetention { needed: expected, min: transfer.from });
                    }
                    return Err(HaError::OutOfOrder { expected, got: transfer.from });
                }
                store.start_replica_at(transfer.from)?;
                end = transfer.from;
            }
            self.streamed = true;
            if transfer.bytes.is_empty() {
                continue; // a heartbeat
            }
            let took = if self.pending.is_empty() {
                let took = store.append_replicated(end, &transfer.bytes)?;
                self.pending.extend_from_slice(transfer.bytes.get(took.consumed..).unwrap_or_default());
                took
            } else {
                self.pending.extend_from_slice(&transfer.bytes);
                let took = store.append_replicated(end, &self.pending)?;
                self.pending.drain(..took.consumed);
                took
            };
            assert_eq!(took.end, store.write_pos(), "the store reports its own end");
            if self.pending.len() > bound {
                return Err(HaError::RecordTooLarge(self.pending.len()));
            }
        }
        Ok(())
    }

    /// The next report for the master: the log's end once it moved past the last report,
    /// or the last end again once nothing was sent for the heartbeat interval. While
    /// `backlogged` (the slave's disk is behind what it appended) the new end is held back,
    /// so the master's window stops the stream instead of the slave's memory growing.
    pub fn poll_transmit(
        &mut self,
        now: MonoNanos,
        store: &Store,
        config: &HaConfig,
        backlogged: bool,
    ) -> Option<Bytes> {
        let end = if backlogged { self.reported } else { store.write_pos() };
        if end != self.reported || now >= self.liveness.heartbeat_at(config) {
            self.reported = end;
            self.liveness.sent(now);
            return Some(report(end));
        }
        None
    }

    /// The master's history, once it arrived and agreed with this log (taken once).
    pub fn take_adopted(&mut self) -> Option<EpochHistory> {
        self.adopted.take()
    }

    /// Bytes of a cut record held until the rest arrives.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When this link next needs a timeout: its heartbeat, or its silence check.
    #[must_use]
    pub fn poll_timeout(&self, config: &HaConfig) -> MonoNanos {
        self.liveness.silent_at(config).min(self.liveness.heartbeat_at(config))
    }

    /// `Err` once the master has been silent for the housekeeping interval.
    pub fn check_alive(&self, now: MonoNanos, config: &HaConfig) -> Result<(), HaError> {
        self.liveness.check_alive(now, config)
    }
}

fn report(end: PhysOffset) -> Bytes {
    let mut out = BytesMut::with_capacity(super::wire::REPORT_LEN);
    encode_report(end, &mut out);
    out.freeze()
}
