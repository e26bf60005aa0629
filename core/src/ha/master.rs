//! The master's side of one slave's connection.
//!
//! The slave's first report says where its log ends. The master answers with its epoch
//! history (so the slave can cut back what the master no longer has; a slave claiming more
//! log than the master then gets closed), then streams from there (from its newest
//! segment's start for a slave with nothing), a batch at a time, never more than
//! `window` bytes past the slave's newest report. After the first, reports only acknowledge: what the slave holds is what a SYNC_MASTER waits
//! for. With nothing to send for `heartbeat_interval_ms`, an empty transfer keeps the
//! connection alive.

use bytes::{Bytes, BytesMut};

use super::epoch::{EpochEntry, EpochHistory};
use super::wire::{encode_transfer, transfer_header, ReportDecoder, TRANSFER_HEADER_LEN};
use super::{ByteRate, HaConfig, HaError, Liveness};
use crate::io::{MonoNanos, StoreRead};
use crate::store::{PhysOffset, Store};

/// One slave connected to this master.
#[derive(Debug)]
pub struct SlaveSession {
    reports: ReportDecoder,
    /// The slave's first report: where its log ends.
    first: Option<PhysOffset>,
    /// The newest epoch of the history that went out (before any transfer): a master that
    /// begins another epoch while the slave streams must send it again, so the session ends.
    history_sent: Option<EpochEntry>,
    /// The slave claimed more log than this master has: it gets the history (to cut its
    /// log back), then the connection is closed.
    ahead: Option<PhysOffset>,
    /// Where the next transfer starts; `None` until the history went out after the slave's
    /// first report.
    next: Option<PhysOffset>,
    /// The newest end the slave reported: what it holds.
    acked: PhysOffset,
    /// Where the stream began (`transferFromWhere`).
    from: Option<PhysOffset>,
    /// When the slave last reported holding all of this log as it was at its previous
    /// report (it keeps up though the log keeps growing).
    caught_up: Option<MonoNanos>,
    /// This log's end when the slave's previous report came.
    end_at_report: PhysOffset,
    /// The confirmed offset last sent (controller mode).
    confirm_sent: PhysOffset,
    /// Log bytes streamed per second.
    rate: ByteRate,
    liveness: Liveness,
}

impl SlaveSession {
    /// A slave that connected at `now` and has not reported yet.
    #[must_use]
    pub fn new(now: MonoNanos) -> Self {
        Self {
            reports: ReportDecoder::new(),
            first: None,
            history_sent: None,
            ahead: None,
            next: None,
            acked: PhysOffset(0),
            from: None,
            caught_up: None,
            end_at_report: PhysOffset(u64::MAX),
            confirm_sent: PhysOffset(0),
            rate: ByteRate::default(),
            liveness: Liveness::new(now),
        }
    }

    /// Bytes from the slave. An error means the connection must be closed.
    pub fn on_bytes(&mut self, now: MonoNanos, data: &[u8], store: &Store) -> Result<(), HaError> {
        self.liveness.heard(now);
        let Some(end) = self.reports.push(data)? else { return Ok(()) };
        if self.first.is_none() {
            self.first = Some(end);
            let master = store.write_pos();
            if end > master {
                self.ahead = Some(end);
                return Ok(());
            }
            // A slave with nothing starts at this log's newest segment, as RocketMQ's
            // masters do: copying a whole history first would hold it out of sync for long.
            // So does a slave that needs what retention deleted here: the gap before the
            // first transfer tells it to start over.
            let newest = PhysOffset(master.0 - master.0 % store.config().segment_size);
            let from = if end.0 == 0 || end < store.min_phys() { newest } else { end };
            self.next = Some(from);
            self.from = Some(from);
            // Nothing below the stream's start is owed: the window counts from it.
            self.acked = from;
            return Ok(());
        }
        // A report never takes back what an earlier one acknowledged on this connection.
        self.acked = self.acked.max(end);
        if self.acked >= self.end_at_report.min(store.write_pos()) {
            self.caught_up = Some(now);
        }
        self.end_at_report = store.write_pos();
        Ok(())
    }

    /// The next frame for the slave: this master's epoch `history` first (once it is
    /// durable: `None` until then), then a transfer of what the slave lacks (within the
    /// window), or a heartbeat once nothing was sent for the heartbeat interval.
    pub fn poll_transmit(
        &mut self,
        now: MonoNanos,
        store: &Store,
        reader: &dyn StoreRead,
        config: &HaConfig,
        history: Option<&EpochHistory>,
    ) -> Result<Option<Bytes>, HaError> {
        if self.first.is_none() {
            return Ok(None);
        }
        if self.history_sent.is_none() {
            let Some(history) = history else { return Ok(None) };
            let mut out = BytesMut::new();
            history.encode_frame(store.write_pos(), &mut out);
            self.history_sent = Some(history.current());
            self.liveness.sent(now);
            return Ok(Some(out.freeze()));
        }
        if let Some(slave) = self.ahead {
            return Err(HaError::SlaveAhead { slave, master: store.write_pos() });
        }
        let Some(next) = self.next else { return Ok(None) };
        // A slave that said who it is (controller mode) learns how far every SyncStateSet
        // member holds this log: it serves its readers no further.
        let confirmed = store.consumable_end();
        if self.slave_id().is_some() && confirmed > self.confirm_sent {
            self.confirm_sent = confirmed;
            let mut out = BytesMut::new();
            super::wire::encode_confirm(confirmed, &mut out);
            return Ok(Some(out.freeze()));
        }
        let ahead = next.bytes_since(self.acked);
        if next < store.visible_end() && ahead < config.window {
            // Below the window, so it fits a usize.
            let room = (config.window - ahead) as usize;
            // The run is read in after room for its header: framed without another copy.
            let mut frame = store
                .read_log_after(reader, next, config.transfer_batch.min(room), TRANSFER_HEADER_LEN)
                .map_err(|error| match error {
                    crate::store::ReadError::Missing(_) if next < store.min_phys() => {
                        HaError::BehindRetention { needed: next, min: store.min_phys() }
                    }
                    error => HaError::Read(error),
                })?;
            let len = frame.len().saturating_sub(TRANSFER_HEADER_LEN);
            if len > 0 {
                if let Some(head) = frame.get_mut(..TRANSFER_HEADER_LEN) {
                    head.copy_from_slice(&transfer_header(next, len));
                }
                self.next = Some(next + len as u64);
                self.rate.record(now, len as u64);
                self.liveness.sent(now);
                return Ok(Some(Bytes::from(frame)));
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

    /// The broker id the slave said it has (controller mode), if it did.
    #[must_use]
    pub fn slave_id(&self) -> Option<i64> {
        self.reports.identity()
    }

    /// When the slave last reported holding all of this log, if it ever did on this
    /// connection.
    #[must_use]
    pub fn caught_up_at(&self) -> Option<MonoNanos> {
        self.caught_up
    }

    /// Where the stream to this slave began, once it has.
    #[must_use]
    pub fn streamed_from(&self) -> Option<PhysOffset> {
        self.from
    }

    /// Log bytes streamed to this slave in the last whole second before `now`.
    #[must_use]
    pub fn bytes_per_second(&self, now: MonoNanos) -> u64 {
        self.rate.per_second(now)
    }

    /// The newest epoch of the history this slave was sent, once it was: a master whose
    /// newest epoch is another must end the session, or the slave would take the new
    /// epoch's records under the old history.
    #[must_use]
    pub fn history_epoch(&self) -> Option<EpochEntry> {
        self.history_sent
    }

    /// Whether the slave has reported at all.
    #[must_use]
    pub fn is_streaming(&self) -> bool {
        self.history_sent.is_some() && self.next.is_some()
    }

    /// When this session next needs a timeout: its heartbeat, or its silence check.
    #[must_use]
    pub fn poll_timeout(&self, config: &HaConfig) -> MonoNanos {
        let silence = self.liveness.silent_at(config);
        if self.is_streaming() {
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
