//! The slave's side of its connection to the master.
//!
//! On connecting, the slave reports where its log ends; the master streams from there.
//! Each transfer must start where the slave's log, plus the part of a cut record it holds,
//! ends. Whole records go to the store at once ([`Store::append_replicated`]); the slave
//! reports its new end after every input that moved it, and every heartbeat interval
//! otherwise.

use bytes::{Bytes, BytesMut};

use super::wire::{encode_report, TransferDecoder, MAX_TRANSFER_LEN};
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
    /// The start of a record cut at a transfer's end, waiting for the rest.
    pending: Vec<u8>,
    /// The end last reported to the master.
    reported: PhysOffset,
    liveness: Liveness,
}

impl MasterLink {
    /// A link just connected at `now`, with the first report to send: where `store`'s log
    /// ends.
    #[must_use]
    pub fn new(now: MonoNanos, store: &Store) -> (Self, Bytes) {
        let end = store.write_pos();
        let link = Self {
            transfers: TransferDecoder::new(MAX_TRANSFER_LEN),
            pending: Vec::new(),
            reported: end,
            liveness: Liveness::new(now),
        };
        (link, report(end))
    }

    /// Bytes from the master: every complete transfer is appended to `store`. An error
    /// means the connection must be closed (what was appended before it stays).
    pub fn on_bytes(&mut self, now: MonoNanos, data: &[u8], store: &mut Store) -> Result<(), HaError> {
        self.liveness.heard(now);
        self.transfers.push(data);
        // A record is never longer than the store's largest plus its fields.
        let bound = store.config().max_message_size + RECORD_OVERHEAD;
        while let Some(transfer) = self.transfers.next_transfer() {
            let transfer = transfer?;
            let end = store.write_pos();
            let expected = end + self.pending.len() as u64;
            if transfer.from != expected {
                return Err(HaError::OutOfOrder { expected, got: transfer.from });
            }
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
    /// or the same end once nothing was sent for the heartbeat interval.
    pub fn poll_transmit(&mut self, now: MonoNanos, store: &Store, config: &HaConfig) -> Option<Bytes> {
        let end = store.write_pos();
        if end != self.reported || now >= self.liveness.heartbeat_at(config) {
            self.reported = end;
            self.liveness.sent(now);
            return Some(report(end));
        }
        None
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
