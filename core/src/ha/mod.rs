//! Master/slave replication (RocketMQ's classic HA): a master streams its CommitLog to each
//! slave; a slave appends it byte for byte and reports how far it has got.
//!
//! - `wire`: the stream's two frame kinds and their incremental decoders.
//! - `master`: [`SlaveSession`], the master's side of one slave's connection.
//! - `slave`: [`MasterLink`], the slave's side of its connection to the master.
//!
//! Both are sans-IO parts a broker drives: bytes in, bytes out, deadlines. Neither is wired
//! into the broker yet.

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
}

impl Default for HaConfig {
    fn default() -> Self {
        Self {
            transfer_batch: wire::DEFAULT_TRANSFER_BATCH,
            heartbeat_interval_ms: 5_000,
            housekeeping_ms: 20_000,
            window: 8 * wire::DEFAULT_TRANSFER_BATCH as u64,
        }
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
    /// Nothing heard from the peer for `housekeeping_ms`.
    #[error("peer silent for {0} ms")]
    Silent(u64),
}
