//! Master/slave replication (RocketMQ's classic HA): a master streams its CommitLog to each
//! slave; a slave appends it byte for byte and reports how far it has got.
//!
//! - `wire`: the stream's frames and their incremental decoders.
//! - `epoch`: which master wrote which stretch of the log, and where a slave cuts back to.
//! - `master`: [`SlaveSession`], the master's side of one slave's connection.
//! - `slave`: [`MasterLink`], the slave's side of its connection to the master.
//!
//! Both are sans-IO parts a broker drives: bytes in, bytes out, deadlines (the broker's
//! `replication` and `ha_client` parts).

pub mod epoch;
pub mod master;
pub mod slave;
pub mod wire;

pub use master::SlaveSession;
pub use slave::MasterLink;

use crate::io::MonoNanos;
use crate::store::{PhysOffset, ReadError, StoreError};

/// When one side of a replication connection last sent and last heard anything: what its
/// heartbeats and its silence check go by.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    last_sent: MonoNanos,
    last_heard: MonoNanos,
}

impl Liveness {
    fn new(now: MonoNanos) -> Self {
        Self { last_sent: now, last_heard: now }
    }

    fn heard(&mut self, now: MonoNanos) {
        self.last_heard = now;
    }

    fn sent(&mut self, now: MonoNanos) {
        self.last_sent = now;
    }

    /// When a heartbeat is due if nothing is sent before.
    fn heartbeat_at(&self, config: &HaConfig) -> MonoNanos {
        self.last_sent.plus_millis(config.heartbeat_interval_ms)
    }

    /// When the peer counts as silent if nothing is heard before.
    fn silent_at(&self, config: &HaConfig) -> MonoNanos {
        self.last_heard.plus_millis(config.housekeeping_ms)
    }

    /// `Err` once the peer has been silent for the housekeeping interval.
    fn check_alive(&self, now: MonoNanos, config: &HaConfig) -> Result<(), HaError> {
        let silent = now.millis_since(self.last_heard);
        if silent >= config.housekeeping_ms {
            return Err(HaError::Silent(silent));
        }
        Ok(())
    }
}

/// Bytes moved per whole second (`transferredByteInSecond` in `mqadmin haStatus`): the
/// count of the last second that ended, 0 once a second passes with nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteRate {
    second_start: MonoNanos,
    this_second: u64,
    last_second: u64,
}

const SECOND_NANOS: u64 = 1_000_000_000;

impl ByteRate {
    /// `bytes` moved at `now`.
    pub fn record(&mut self, now: MonoNanos, bytes: u64) {
        self.roll(now);
        self.this_second = self.this_second.saturating_add(bytes);
    }

    /// Bytes in the last whole second before `now`.
    #[must_use]
    pub fn per_second(&self, now: MonoNanos) -> u64 {
        let mut rate = *self;
        rate.roll(now);
        rate.last_second
    }

    fn roll(&mut self, now: MonoNanos) {
        let elapsed = now.0.saturating_sub(self.second_start.0);
        if elapsed < SECOND_NANOS {
            return;
        }
        self.last_second = if elapsed < 2 * SECOND_NANOS { self.this_second } else { 0 };
        self.this_second = 0;
        // Seconds stay aligned to the first one, so a steady stream reads steadily.
        self.second_start = MonoNanos(now.0 - elapsed % SECOND_NANOS);
    }
}

/// What a broker is in its set (`brokerRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerRole {
    /// A master that acknowledges sends once stored here; slaves copy after.
    #[default]
    AsyncMaster,
    /// A master that acknowledges sends once a slave has them too.
    SyncMaster,
    /// A copy of its master's log; serves reads, refuses writes.
    Slave,
}

impl BrokerRole {
    /// RocketMQ's spelling of each role, as broker.conf writes it.
    pub const NAMES: [(&'static str, Self); 3] =
        [("ASYNC_MASTER", Self::AsyncMaster), ("SYNC_MASTER", Self::SyncMaster), ("SLAVE", Self::Slave)];

    /// The role broker.conf spells `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, role)| *role)
    }

    /// The name broker.conf uses.
    #[must_use]
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, r)| *r == self).map_or("ASYNC_MASTER", |(n, _)| n)
    }

    /// Whether this broker copies a master instead of taking writes.
    #[must_use]
    pub fn is_slave(self) -> bool {
        self == Self::Slave
    }
}

/// Replication settings (RocketMQ's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaConfig {
    /// Most CommitLog bytes in one transfer (`haTransferBatchSize`, 32 KiB).
    pub transfer_batch: usize,
    /// A side that sent nothing for this long sends a heartbeat (`haSendHeartbeatInterval`,
    /// 5 s): an empty transfer, or a report of the same end.
    pub heartbeat_interval_ms: u64,
    /// A side that heard nothing for this long drops the connection
    /// (`haHousekeepingInterval`, 20 s).
    pub housekeeping_ms: u64,
    /// Most bytes a master sends past what a slave has reported: a slave that stops reading
    /// stops the master's reads for it instead of filling its write queue.
    pub window: u64,
    /// Pause before a slave dials its master again after a failed or lost connection
    /// (RocketMQ's HAClient waits 5 s).
    pub reconnect_ms: u64,
    /// A SYNC_MASTER's send waits this long for a slave to hold it before it is answered
    /// FLUSH_SLAVE_TIMEOUT (`syncFlushTimeout`, 5 s).
    pub sync_flush_timeout_ms: u64,
    /// A slave further behind than this is not in sync: a SYNC_MASTER answers sends
    /// SLAVE_NOT_AVAILABLE at once (`haMaxGapNotInSync`, 256 MiB).
    pub max_gap_not_in_sync: u64,
    /// Controller mode: a SYNC_MASTER's send waits for every member of the SyncStateSet,
    /// not one slave (`allAckInSyncStateSet`, off).
    pub all_ack_in_sync_state_set: bool,
    /// Controller mode: a SYNC_MASTER refuses sends while its SyncStateSet has fewer
    /// members, itself included (`minInSyncReplicas`, 1).
    pub min_in_sync_replicas: u32,
}

impl Default for HaConfig {
    fn default() -> Self {
        Self {
            transfer_batch: wire::DEFAULT_TRANSFER_BATCH,
            heartbeat_interval_ms: 5_000,
            housekeeping_ms: 20_000,
            window: 8 * wire::DEFAULT_TRANSFER_BATCH as u64,
            reconnect_ms: 5_000,
            sync_flush_timeout_ms: 5_000,
            max_gap_not_in_sync: 256 * 1024 * 1024,
            all_ack_in_sync_state_set: false,
            min_in_sync_replicas: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_last_whole_second() {
        let mut rate = ByteRate::default();
        let at = |ms: u64| MonoNanos(ms * 1_000_000);
        rate.record(at(100), 10);
        rate.record(at(900), 20);
        assert_eq!(rate.per_second(at(950)), 0, "no second has ended yet");
        rate.record(at(1_200), 5);
        assert_eq!(rate.per_second(at(1_300)), 30);
        assert_eq!(rate.per_second(at(2_100)), 5);
        assert_eq!(rate.per_second(at(3_500)), 0, "a silent second reads 0");
    }
}

/// Why a replication connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaError {
    /// The peer sent bytes that are not the stream.
    #[error("replication stream broken: {0}")]
    Wire(#[from] wire::HaWireError),
    /// The slave claims more log than the master has: it followed another master.
    #[error("slave reports CommitLog end {slave}, past this master's {master}")]
    SlaveAhead {
        /// The slave's report.
        slave: PhysOffset,
        /// This master's end.
        master: PhysOffset,
    },
    /// What the slave lacks was deleted by retention here.
    #[error("slave needs CommitLog from {needed}, deleted here below {min}")]
    BehindRetention {
        /// Where the slave's log ends.
        needed: PhysOffset,
        /// This master's oldest offset.
        min: PhysOffset,
    },
    /// A transfer that does not start where the slave's log (and what it holds of a cut
    /// record) ends.
    #[error("transfer from {got}, expected from {expected}")]
    OutOfOrder {
        /// Where the slave expected it.
        expected: PhysOffset,
        /// Where it started.
        got: PhysOffset,
    },
    /// A cut record grew past any record's size: the stream is not a CommitLog.
    #[error("an incomplete record of {0} bytes")]
    RecordTooLarge(usize),
    /// The master's log could not be read.
    #[error("reading the CommitLog: {0}")]
    Read(#[from] ReadError),
    /// The slave's store refused the bytes.
    #[error("storing replicated bytes: {0}")]
    Store(#[from] StoreError),
    /// The slave's log holds bytes its master's history does not: it must be cut back to
    /// `to` before it can follow.
    #[error("the log differs from the master's past {to}: cutting it back")]
    CutBack {
        /// The end of what both logs agree on.
        to: PhysOffset,
    },
    /// The two histories share no epoch: the slave's log is another master's.
    #[error("the slave's epochs share none with the master's")]
    NoSharedEpoch,
    /// The master began another epoch after it sent its history: the slave must be sent the
    /// new one on a new connection.
    #[error("the master began epoch {now} after it sent its history (newest {sent})")]
    EpochChanged {
        /// The newest epoch the slave was sent.
        sent: u32,
        /// The master's newest epoch now.
        now: u32,
    },
    /// In controller mode, the master's newest epoch is older than the slave's: it is a
    /// deposed master, and following it would cut back what a newer master confirmed.
    #[error("the master's newest epoch {master} is older than this slave's {own}")]
    StaleMaster {
        /// The master's newest epoch.
        master: u32,
        /// This slave's newest epoch.
        own: u32,
    },
    /// The master sent bytes before its epoch history.
    #[error("a transfer before the master's epoch history")]
    EpochsExpected,
    /// Nothing heard from the peer for `housekeeping_ms`.
    #[error("peer silent for {0} ms")]
    Silent(u64),
}
