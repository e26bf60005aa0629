//! The history of a simulated run: every client operation's invocation and outcome, every
//! delivery, commit and fault, stamped with true simulated time. Recorded outside every
//! node (it survives their crashes) and read by the checkers; its hash is the run's trace
//! hash, which two runs of one seed must share.

use std::fmt;

/// A message's identity across retries: the producer and its sequence number.
pub type Key = u64;

/// How the description of a fault that lasts the whole fault phase ends (a small disk):
/// the checkers count it as going on until `Healed`.
pub const UNTIL_HEALED: &str = "until healing";
/// How a fault event that gave a broker set a new master begins (controller-mode seeds): the
/// new master resumes delay levels, timers and transaction checks from the progress it
/// copied, as a restarted broker does from what it persisted.
pub const MASTER_CHANGED: &str = "a set's master changed";

/// How the description of a failed disk operation begins: the broker repairs its store in
/// place, which the checkers count as a restart of the broker's services.
pub const DISK_ERROR_REPAIR: &str = "broker disk error, store repaired in place";

/// What happened, in the order it happened. (Fields are the variant's nouns: group and
/// session number a consumer's life, queue and offset a ConsumeQueue position.)
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A producer sent (or re-sent) `key` to `queue`, when the broker's wall clock read
    /// `broker_wall_ms` (the store time is no earlier, unless the clock steps back).
    SendAttempt { producer: u32, key: Key, queue: i32, broker_wall_ms: i64 },
    /// The broker acknowledged `key` as stored at `queue`/`offset`, CommitLog offset `phys`.
    SendAcked { producer: u32, key: Key, queue: i32, offset: i64, phys: u64 },
    /// An attempt's outcome is unknown (timeout, reset) or it was refused.
    SendFailed { producer: u32, key: Key, reason: String },
    /// A consumer of `group` (re)started: `session` numbers its lives.
    SessionStart { group: u8, session: u32 },
    /// The session resumes `queue` at `offset` (the committed offset, or 0).
    Resume { group: u8, session: u32, queue: i32, offset: i64 },
    /// The broker moved the session's position on `queue` (an offset it no longer has).
    Corrected { group: u8, session: u32, queue: i32, from: i64, to: i64 },
    /// A message was processed. `key` is `None` when the record carried no key of ours;
    /// `intact` is false when its body does not match its key; `asked_ms` is when the pull
    /// that brought it was sent (its reply may have spent long in the network).
    Delivered {
        group: u8,
        session: u32,
        queue: i32,
        offset: i64,
        key: Option<Key>,
        intact: bool,
        asked_ms: u64,
    },
    /// The consumer committed `offset` (the next one to consume) for `queue`.
    Committed { group: u8, session: u32, queue: i32, offset: i64 },
    /// The broker's disk lost unsynced data (a power loss, a failed fsync): everything in
    /// its CommitLog from `synced_end` on may be gone.
    BrokerDataLoss { synced_end: u64, cause: String },
    /// A fault was injected (or healed).
    Fault { what: String },
    /// Faults stopped; the liveness phase began.
    Healed,
    /// The end-of-run read-back found `key` at `queue`/`offset`.
    Probe { queue: i32, offset: i64, key: Option<Key>, intact: bool },
    /// The read-back asked QUERY_MESSAGE for the record it found at CommitLog `phys` by its
    /// key (`KEYS`): whether the answer held it.
    KeyLookup { key: Key, phys: u64, found: bool },
    /// The read-back read `queue` to its end (even if retention had emptied it).
    ProbeDone { queue: i32 },
    /// The read-back could not read `queue` at `offset` (an error, not a missing message).
    ProbeFailed { queue: i32, offset: i64, reason: String },
    /// Something the run itself noticed (a client stuck after healing, a node that panicked).
    Alarm { what: String },
    /// The timing workload sent (or re-sent) `key` as `timing`, when the broker's wall
    /// clock read `broker_wall_ms`.
    TimingSent { key: Key, timing: Timing, broker_wall_ms: i64 },
    /// The broker stored it (a half message, for a transaction) at CommitLog offset `phys`;
    /// when the acknowledgement arrived the broker's wall clock read `broker_wall_ms`, and
    /// the highest it had read so far was `broker_high_ms` (higher after a backward step).
    TimingAcked { key: Key, phys: u64, broker_wall_ms: i64, broker_high_ms: i64 },
    /// The timing consumer got a copy of `key` stored at `queue`/`offset` of broker set
    /// `broker` with store time `store_ms`, due at `due_ms` (its `TIMER_OUT_MS`; none for
    /// transactions), when the broker's wall clock read `broker_wall_ms`.
    TimingDelivered {
        key: Key,
        broker: String,
        queue: i32,
        offset: i64,
        store_ms: i64,
        due_ms: Option<i64>,
        broker_wall_ms: i64,
    },
    /// The end-of-run read-back found a copy of `key` stored at `queue`/`offset` of broker
    /// set `broker` in the timing topic, with store time `store_ms`, due at `due_ms`.
    TimingProbed { key: Key, broker: String, queue: i32, offset: i64, store_ms: i64, due_ms: Option<i64> },
    /// The transaction producer was asked about `key` (CHECK_TRANSACTION_STATE).
    TxChecked { key: Key },
    /// `key` turned up in `TRANS_CHECK_MAX_TIME_TOPIC`: discarded after its last check.
    TxDiscarded { key: Key },
    /// The pop workload's send of `key` was stored at `queue`/`offset` (CommitLog `phys`) of
    /// its FIFO topic or its normal one.
    PopSent { key: Key, fifo: bool, queue: i32, offset: i64, phys: u64, attempt_ms: u64 },
    /// A pop consumer got `key` (its `attempt`th delivery as the broker counts), hidden for
    /// `invisible_ms`; `asked_ms` is when the pop was sent.
    PopDelivered {
        key: Key,
        fifo: bool,
        queue: i32,
        offset: i64,
        attempt: u32,
        invisible_ms: u64,
        asked_ms: u64,
    },
    /// A pop consumer sent an ack of `key` (its answer may be lost: it may have taken effect).
    PopAckSent { key: Key },
    /// The broker answered SUCCESS to the ack of `key`'s delivery popped at `popped_ms`.
    PopAcked { key: Key, fifo: bool, popped_ms: u64 },
    /// The read-back found `key` in the pop group's dead-letter queue.
    PopDeadLettered { key: Key },
    /// The broker's wall clock stepped from `from_ms` to `to_ms`.
    BrokerClockStep { from_ms: i64, to_ms: i64 },
    /// The broker's wall clock at the end of the run, and the highest it ever read.
    BrokerClock { wall_ms: i64, high_ms: i64 },
}

/// How the timing workload sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// With a delay level of `delay_ms`.
    Delay {
        /// The level.
        level: i32,
        /// Its delay, ms.
        delay_ms: u64,
    },
    /// With `TIMER_DELAY_MS`.
    Timer {
        /// The delay, ms.
        delay_ms: u64,
    },
    /// In a transaction its producer decides so.
    Tx(TxDecision),
}

/// How the transaction producer decides a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDecision {
    /// Commit at once.
    Commit,
    /// Roll back at once.
    Rollback,
    /// Unknown at first; commit when checked.
    CommitOnCheck,
    /// Unknown whenever asked: discarded after the last check.
    NeverDecided,
}

impl TxDecision {
    /// The decision for `key` (a fixed function, so a check after a crash answers alike).
    #[must_use]
    pub fn of(key: Key) -> Self {
        match key % 4 {
            0 => Self::Commit,
            1 => Self::Rollback,
            2 => Self::CommitOnCheck,
            _ => Self::NeverDecided,
        }
    }

    /// Whether the message must reach its topic.
    #[must_use]
    pub fn commits(self) -> bool {
        matches!(self, Self::Commit | Self::CommitOnCheck)
    }
}

/// One event and when it happened (milliseconds of true simulated time since the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// True simulated time, milliseconds since the run began.
    pub at_ms: u64,
    /// What happened.
    pub event: Event,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9}ms {:?}", self.at_ms, self.event)
    }
}

/// The run's history.
#[derive(Debug, Clone, Default)]
pub struct History {
    entries: Vec<Entry>,
}

impl History {
    /// Record `event` at `at_ms`.
    pub fn push(&mut self, at_ms: u64, event: Event) {
        self.entries.push(Entry { at_ms, event });
    }

    /// Every entry in order.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The last `n` entries, for a failure report.
    #[must_use]
    pub fn tail(&self, n: usize) -> &[Entry] {
        &self.entries[self.entries.len().saturating_sub(n)..]
    }

    /// A 64-bit FNV-1a hash of every entry: equal for two runs iff they did the same things
    /// at the same times (what the determinism check compares across processes).
    #[must_use]
    pub fn trace_hash(&self) -> u64 {
        trace_hash(self.entries.iter().map(ToString::to_string))
    }
}

/// A 64-bit FNV-1a hash of `lines`, each followed by a newline: a run's trace hash.
pub fn trace_hash(lines: impl IntoIterator<Item = String>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for line in lines {
        for byte in line.bytes().chain([b'\n']) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
