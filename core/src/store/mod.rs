//! The message store: CommitLog, ConsumeQueues, checkpoint, abort marker and recovery, as a
//! sans-IO state machine.
//!
//! [`Store::recover`] reads the disk through [`StoreRead`](crate::io::StoreRead) and returns a
//! store that first emits the fix-ups recovery decided (truncations, zeroing, rebuilt queue
//! entries, syncs, a fresh checkpoint, the abort marker). Once they complete it accepts
//! appends; every append is encoded, CRC-sealed and dispatched to its ConsumeQueue in the
//! core, and leaves as disk writes. Durability is tracked explicitly: [`Store::flushed_end`]
//! moves only when the syncs covering the bytes have completed.

mod buffer_pool;
mod checkpoint;
mod commitlog;
pub mod consume_queue;
pub mod index;
mod message_store;
mod ops;
pub mod paths;
mod queue_table;
mod read;
mod recovery;
mod replica;
mod retention;

#[cfg(any(test, feature = "testing"))]
pub mod audit;

use core::net::SocketAddr;

use crate::invalid_setting::InvalidSetting;

pub use checkpoint::{Checkpoint, IndexMark, CHECKPOINT_LEN};
pub use index::{IndexConfig, KeyQuery, KeyQueryResult};
pub use message_store::Store;
pub use read::ReadError;
pub use recovery::{RecoveryError, RecoveryKind, RecoveryReport};
pub use replica::ReplicaAppend;
pub use retention::RetentionConfig;

use crate::protocol::message::stored::RecordError;

/// Byte offset in the CommitLog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysOffset(pub u64);

impl core::fmt::Display for PhysOffset {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl core::ops::Add<u64> for PhysOffset {
    type Output = Self;

    /// The offset `bytes` further on.
    fn add(self, bytes: u64) -> Self {
        Self(self.0 + bytes)
    }
}

impl PhysOffset {
    /// Bytes from `earlier` to here; 0 if `earlier` is not before.
    #[must_use]
    pub fn bytes_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Entry index in a ConsumeQueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QueueOffset(pub u64);

/// When appended data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// Group commit: a sync round starts as soon as there is unsynced data and none is in
    /// flight, so one fsync covers every write before it.
    Sync,
    /// A sync round every `interval_ms` when there is unsynced data.
    Async {
        /// Milliseconds between rounds (RocketMQ: `flushIntervalCommitLog`, 500).
        interval_ms: u64,
    },
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// CommitLog segment size in bytes (`mappedFileSizeCommitLog`, 1 GiB).
    pub segment_size: u64,
    /// Entries per ConsumeQueue file (300,000).
    pub queue_file_entries: u64,
    /// Flush policy.
    pub flush_mode: FlushMode,
    /// Milliseconds between checkpoints (1000).
    pub checkpoint_interval_ms: u64,
    /// Largest body accepted (`maxMessageSize`, 4 MiB).
    pub max_message_size: usize,
    /// The address clients reach; written as STOREHOST into every record.
    pub store_host: SocketAddr,
    /// When segments are deleted and when the disk counts as full.
    pub retention: RetentionConfig,
    /// Text written into the abort marker (RocketMQ writes the process id).
    pub instance: String,
    /// Topics whose ConsumeQueue entries carry the record's due time (`TIMER_OUT_MS`) as
    /// their tags code: the broker's timer topic, so its wheel can be rebuilt from the
    /// queue alone. Empty by default: the store knows no broker feature.
    pub due_time_topics: Vec<String>,
    /// The IndexFile's settings.
    pub index: IndexConfig,
    /// A deliberate bug the simulator switched on (simulation builds only).
    #[cfg(madsim)]
    pub mutation: Option<crate::mutation::Mutation>,
}

impl StoreConfig {
    /// Whether the simulator switched `mutation` on: the one place code asks, and never
    /// true outside `--cfg madsim`.
    #[must_use]
    #[inline]
    pub fn mutated(&self, mutation: crate::mutation::Mutation) -> bool {
        #[cfg(madsim)]
        return self.mutation == Some(mutation);
        #[cfg(not(madsim))]
        {
            let _ = mutation;
            false
        }
    }

    /// RocketMQ's defaults, storing as `store_host`.
    #[must_use]
    pub fn new(store_host: SocketAddr) -> Self {
        Self {
            segment_size: 1024 * 1024 * 1024,
            queue_file_entries: 300_000,
            flush_mode: FlushMode::Async { interval_ms: 500 },
            checkpoint_interval_ms: 1000,
            max_message_size: 4 * 1024 * 1024,
            store_host,
            retention: RetentionConfig::default(),
            instance: String::from("keel"),
            due_time_topics: Vec::new(),
            index: IndexConfig::default(),
            #[cfg(madsim)]
            mutation: None,
        }
    }

    /// Check the settings make sense together; the error names the key to fix.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        const SEGMENT: &str = "mappedFileSizeCommitLog";
        // The smallest record (empty body, 1-byte topic, only the CRC property) plus a BLANK.
        if self.segment_size < 256 {
            let problem = format!("{} bytes is below the minimum of 256", self.segment_size);
            return Err(InvalidSetting::new(SEGMENT, problem));
        }
        // RocketMQ's key is an int, and a BLANK's length field is one: a larger segment
        // could not be closed with one BLANK.
        if self.segment_size > i32::MAX as u64 {
            let problem =
                format!("{} bytes is above the maximum of {} (2 GiB - 1)", self.segment_size, i32::MAX);
            return Err(InvalidSetting::new(SEGMENT, problem));
        }
        if self.queue_file_entries == 0 {
            return Err(InvalidSetting::new(
                "mappedFileSizeConsumeQueue",
                "a file must hold at least one entry",
            ));
        }
        if self.checkpoint_interval_ms == 0 {
            return Err(InvalidSetting::new(
                "flushIntervalConsumeQueue",
                "the checkpoint interval must be positive",
            ));
        }
        if let FlushMode::Async { interval_ms: 0 } = self.flush_mode {
            return Err(InvalidSetting::new("flushIntervalCommitLog", "must be positive"));
        }
        self.index.validate()?;
        self.retention.validate()
    }
}

/// A message to append, borrowed from the request that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendRequest<'a> {
    /// Topic (a valid path component: it names a ConsumeQueue directory).
    pub topic: &'a str,
    /// Queue id.
    pub queue_id: i32,
    /// User flag.
    pub flag: i32,
    /// Sys flag; the transaction type decides whether the record is dispatched.
    pub sys_flag: i32,
    /// Producer clock, ms.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Retry count.
    pub reconsume_times: i32,
    /// Half-message offset of a committed transaction message.
    pub prepared_transaction_offset: i64,
    /// Body.
    pub body: &'a [u8],
    /// Properties string, as the producer sent it.
    pub properties: &'a [u8],
}

impl<'a> AppendRequest<'a> {
    /// A record the broker writes itself (a pop checkpoint or ack, a recall marker): no
    /// flags, born now at `born_host`, never retried.
    #[must_use]
    pub fn broker_record(
        topic: &'a str,
        queue_id: i32,
        now: crate::io::Now,
        born_host: SocketAddr,
        body: &'a [u8],
        properties: &'a [u8],
    ) -> Self {
        Self {
            topic,
            queue_id,
            flag: 0,
            sys_flag: 0,
            born_timestamp: now.wall.0,
            born_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties,
        }
    }
}

/// Where an appended message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// CommitLog offset of the record.
    pub phys_offset: PhysOffset,
    /// Record length.
    pub size: u32,
    /// Its ConsumeQueue offset; `None` for transaction half or rollback records, which are
    /// not dispatched.
    pub queue_offset: Option<QueueOffset>,
    /// The store timestamp written into the record.
    pub store_timestamp: i64,
}

impl Appended {
    /// Where the record ends: it is durable once [`Store::flushed_end`] reaches this.
    #[must_use]
    pub fn end(&self) -> PhysOffset {
        PhysOffset(self.phys_offset.0 + u64::from(self.size))
    }
}

impl StoreError {
    /// Whether the store refuses every write now (not ready, shut down, failed, disk full),
    /// as opposed to refusing this record: a copy refused so is retried, never dropped.
    #[must_use]
    pub fn refuses_every_write(&self) -> bool {
        matches!(
            self,
            Self::NotReady
                | Self::ShutDown
                | Self::Failed(_)
                | Self::DiskFull { .. }
                | Self::Repairing
                | Self::Replica
        )
    }
}

/// Why an append was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Recovery fix-ups are still running.
    #[error("store is not ready yet")]
    NotReady,
    /// The store is shutting down or stopped.
    #[error("store is shut down")]
    ShutDown,
    /// The store's file system is at or above `diskSpaceWarningLevelRatio`.
    #[error(
        "disk full: the store's file system is {used_per_mille}‰ used; writes resume once space is freed"
    )]
    DiskFull {
        /// Share in use, per mille.
        used_per_mille: u64,
    },
    /// A disk operation failed; the process must restart and recover.
    #[error("store failed: {0}")]
    Failed(String),
    /// A disk operation failed and the store is cutting its tail back to what is known
    /// good, as recovery would; writes resume once it has.
    #[error("store is repairing its tail after a disk error; retry shortly")]
    Repairing,
    /// The body exceeds `max_message_size`.
    #[error("body of {size} bytes exceeds the maximum of {max}")]
    BodyTooLarge {
        /// Body length.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The record (or batch) cannot fit in one segment.
    #[error("record of {0} bytes cannot fit in a segment")]
    TooLargeForSegment(u64),
    /// The topic cannot name a ConsumeQueue directory.
    #[error("illegal topic {0:?}")]
    BadTopic(String),
    /// The record cannot be encoded.
    #[error("record: {0}")]
    Record(RecordError),
    /// An offset exceeds the format's range.
    #[error("offset overflow")]
    OffsetOverflow,
    /// The store is a slave's: its log is its master's, copied byte for byte, so it takes
    /// no writes of its own.
    #[error("the broker is a slave: messages are put to its master")]
    Replica,
    /// Replicated bytes that do not continue this log: the replica and its master disagree.
    #[error("replica diverged at CommitLog offset {at}: {what}")]
    Diverged {
        /// This log's end, where the bytes were to go.
        at: u64,
        /// What disagreed.
        what: &'static str,
    },
}
