//! The master's side of one slave's connection.
//!
//! The slave's first report says where its log ends; the master streams from there, a
//! batch at a time, never more than `window` bytes past the slave's newest report. After
//! the first, reports only acknowledge: what the slave holds is what a SYNC_MASTER waits
//! for. With nothing to send for `heartbeat_interval_ms`, an empty transfer keeps the
//! connection alive.

use bytes::{Bytes, BytesMut};

use super::wire::{encode_transfer, ReportDecoder};
use super::{HaConfig, HaError, Liveness};
use crate::io::{MonoNanos, StoreRead};
use crate::store::{PhysOffset, Store};

/// One slave connected to this master.
#[derive(Debug)]
pub struct SlaveSession {
    reports: ReportDecoder,
    /// Where the next transfer starts; `None` until the slave's first report.
    next: Option<PhysOffset>,
    /// The newest end the slave reported: what it holds.
    acked: PhysOffset,
    liveness: Liveness,
}

impl SlaveSession {
    /// A slave that connected at `now` and has not reported yet.
    #[must_use]
    pub fn new(now: MonoNanos) -> Self {
        Self { reports: ReportDecoder::new(), next: None, acked: PhysOffset(0), liveness: Liveness::new(now) }
    }

    /// Bytes from the slave. An error means the connection must be closed.
    pub fn on_bytes(&mut self, now: MonoNanos, data: &[u8], store: &Store) -> Result<(), HaError> {
        self.liveness.heard(now);
        let Some(end) = self.reports.push(data)? else { return Ok(()) };
        if self.next.is_none() {
            if end > store.write_pos() {
                return Err(HaError::SlaveAhead { slave: end, master: store.write_pos() });
            }
            if end < store.min_phys() {
                return Err(HaError::BehindRetention { needed: end, min: store.min_phys() });
            }
            self.next = Some(end);
        }
        // A report never takes back what an earlier one acknowledged on this connection.
        self.acked = self.acked.max(end);
        Ok(())
    }

    /// The next frame for the slave: a transfer of what it lacks (within the window), or a
    /// heartbeat once nothing was sent for the heartbeat interval.
    pub fn poll_transmit(
        &mut self,
        now: MonoNanos,
        store: &Store,
        reader: &dyn StoreRead,
        config: &HaConfig,
    ) -> Result<Option<Bytes>, HaError> {
        let Some(next) = self.next else { return Ok(None) };
        let ahead = next.bytes_since(self.acked);
        if next < store.visible_end() && ahead < config.window {
            // Below the window, so it fits a usize.
            let room = (config.window - ahead) as usize;
            let run =
                store.read_log(reader, next, config.transfer_batch.min(room)).map_err(
                    |error| match error {
                        crate::store::ReadError::Missing(_) if next < store.min_phys() => {
                            HaError::BehindRetention { needed: next, min: store.min_phys() }
                        }
                        error => HaError::Read(error),
                    },
                )?;
            if !run.is_empty() {
                let mut out = BytesMut::with_capacity(super::wire::TRANSFER_HEADER_LEN + run.len());
                encode_transfer(next, &run, &mut out);
                self.next = Some(next + run.len() as u64);
                self.liveness.sent(now);
                return Ok(Some(out.freeze()));
            }
        }
        if now >= self.liveness.heartbeat_at(config) {
            let mut out = BytesMut::new();
            encode_transfer(next, &[], &mut out);
            self.liveness.sent(now);
            return Ok(Some(out.freeze()));
        }
        Ok(None)
    }

    /// The newest CommitLog end the slave reported holding.
    #[must_use]
    pub fn acked(&self) -> PhysOffset {
        self.acked
    }

    /// Whether the slave has reported at all.
    #[must_use]
    pub fn is_streaming(&self) -> bool {
        self.next.is_some()
    }

    /// When this session next needs a timeout: its heartbeat, or its silence check.
    #[must_use]
    pub fn poll_timeout(&self, config: &HaConfig) -> MonoNanos {
        let silence = self.liveness.silent_at(config);
        if self.next.is_some() {
            silence.min(self.liveness.heartbeat_at(config))
        } else {
            silence
        }
    }

    /// `Err` once the slave has been silent for the housekeeping interval.
    pub fn check_alive(&self, now: MonoNanos, config: &HaConfig) -> Result<(), HaError> {
        self.liveness.check_alive(now, config)
    }
}
