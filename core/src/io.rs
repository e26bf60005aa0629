//! The whole sans-IO boundary in one place: what goes into a core state machine, what comes
//! out, and the read-only view of storage the runtime lends it.
//!
//! A runtime owns sockets, files, timers and threads. A state machine owns every decision.
//! They talk only through the types below, so the same state machine runs under tokio in
//! production and under the seeded simulator in tests.

use core::fmt;
use core::net::SocketAddr;

use crate::protocol::RemotingCommand;
use bytes::Bytes;

/// Monotonic time in nanoseconds since an arbitrary origin; it never goes backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoNanos(pub u64);

impl MonoNanos {
    /// The instant `ms` milliseconds after this one (saturating, so a huge timeout never wraps).
    #[must_use]
    pub fn plus_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }

    /// Milliseconds from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub fn millis_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000_000
    }
}

/// Wall-clock time in milliseconds since the Unix epoch, as RocketMQ stores timestamps.
/// It may jump in either direction (and will, in simulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// Milliseconds from here to `later`; 0 if `later` is not after (a due time already
    /// past, or a clock that stepped back).
    #[must_use]
    pub fn millis_until(self, later: Self) -> u64 {
        later.0.saturating_sub(self.0).max(0).unsigned_abs()
    }

    /// The time `millis` later (earlier if negative), saturating at the ends of the range.
    #[must_use]
    pub fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Milliseconds since the epoch; 0 for a time before it (a clock set far back).
    #[must_use]
    pub fn since_epoch(self) -> u64 {
        self.0.max(0).unsigned_abs()
    }
}

/// The soonest of a machine's deadlines and whose it is: each of `reasons`, in order, with
/// its `deadline`; on a tie the first reason wins.
pub fn soonest<R: Copy>(
    reasons: impl IntoIterator<Item = R>,
    deadline: impl Fn(R) -> Option<MonoNanos>,
) -> Option<(MonoNanos, R)> {
    let mut soonest: Option<(MonoNanos, R)> = None;
    for reason in reasons {
        if let Some(at) = deadline(reason) {
            if soonest.is_none_or(|(best, _)| at < best) {
                soonest = Some((at, reason));
            }
        }
    }
    soonest
}

/// Whether a part with `deadline` is due at `now`.
#[must_use]
pub fn is_due(deadline: Option<MonoNanos>, now: Now) -> bool {
    deadline.is_some_and(|at| now.mono >= at)
}

/// The time passed into every call: the core never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// For deadlines and durations.
    pub mono: MonoNanos,
    /// For timestamps that are stored or sent.
    pub wall: UnixMillis,
}

impl Now {
    /// A `Now` from raw numbers; handy in tests and benches.
    #[must_use]
    pub fn new(mono_nanos: u64, wall_millis: i64) -> Self {
        Self { mono: MonoNanos(mono_nanos), wall: UnixMillis(wall_millis) }
    }
}

/// One network connection. The runtime numbers the connections it accepts from 1 up; a
/// state machine numbers the ones it opens (`Output::Connect`) from [`ConnId::OUTBOUND`] up,
/// so the two never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The first id a state machine may choose for a connection it opens.
    pub const OUTBOUND: u64 = 1 << 62;
    /// The first id of the connections a runtime links in process (a gRPC session's
    /// remoting connection to its own broker), below [`ConnId::OUTBOUND`]: commands on them
    /// pass as values both ways ([`Input::Command`], [`Output::Command`]), never encoded.
    pub const LINKED: u64 = 1 << 61;

    /// Whether this is a connection linked in process.
    #[must_use]
    pub fn is_linked(self) -> bool {
        (Self::LINKED..Self::OUTBOUND).contains(&self.0)
    }

    /// Whether this is a connection the state machine opened.
    #[must_use]
    pub fn is_outbound(self) -> bool {
        self.0 >= Self::OUTBOUND
    }
}

/// What a connection carries: which of a broker's ports it came in on, or what the state
/// machine opened it for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnKind {
    /// Remoting commands: requests and replies (`listenPort`).
    Remoting,
    /// A master/slave replication stream (`haListenPort`).
    Replication,
}

/// One disk operation, as numbered by the state machine that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoId(pub u64);

/// A path relative to a store root, with `/` separators. Never absolute, never `..`.
///
/// The core names files; the runtime decides where the root is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePath(String);

impl FilePath {
    /// The store root itself (for syncing the directory that holds top-level files).
    #[must_use]
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Whether this is the store root.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// A path from `/`-separated components; `None` if it is empty, absolute or escapes the root.
    #[must_use]
    pub fn new(path: &str) -> Option<Self> {
        let ok = !path.is_empty()
            && !path.starts_with('/')
            && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        ok.then(|| Self(path.to_owned()))
    }

    /// This path with one more component; `None` if `name` is not a single plain component.
    #[must_use]
    pub fn join(&self, name: &str) -> Option<Self> {
        let ok = !name.is_empty() && !name.contains('/') && name != "." && name != "..";
        if !ok {
            return None;
        }
        Some(if self.is_root() { Self(name.to_owned()) } else { Self(format!("{}/{}", self.0, name)) })
    }

    /// The directory holding this path: the root for a top-level name, `None` for the root.
    #[must_use]
    pub fn parent(&self) -> Option<Self> {
        if self.is_root() {
            return None;
        }
        Some(self.0.rsplit_once('/').map_or_else(Self::root, |(dir, _)| Self(dir.to_owned())))
    }

    /// The last component.
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, name)| name)
    }

    /// The path as a `/`-separated string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_root() { "." } else { &self.0 })
    }
}

/// The store root, for operations on the whole store.
static ROOT: FilePath = FilePath(String::new());

/// What went wrong with a disk operation, as far as the core needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskErrorKind {
    /// EIO or any other hardware or kernel failure.
    Io,
    /// ENOSPC: the device is full.
    NoSpace,
    /// The file or directory does not exist.
    NotFound,
}

/// A failed disk operation: a kind the core can act on, and text for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct DiskError {
    /// What the core acts on.
    pub kind: DiskErrorKind,
    /// What an operator reads.
    pub detail: String,
}

impl DiskError {
    /// An error of `kind` with a human-readable detail.
    pub fn new(kind: DiskErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
}

/// A disk operation the core asks the runtime to carry out.
///
/// Ordering contract: the runtime carries out disk operations in the order they were
/// emitted, with one exception. So a `Sync` covers every earlier `Write` to that file and a
/// `SyncDir` covers every earlier `Create`, `Rename` and `Remove` in that directory. The
/// exception: a write that [may pass a sync](Self::may_pass_sync) (CommitLog, ConsumeQueue
/// and index data) may be carried out, and complete, while syncs emitted before it are
/// still in progress, so an fsync of one round does not hold up the next round's writes.
/// Syncs complete in the order emitted, and every other operation waits for the syncs
/// before it: a write that must not reach the disk before earlier data (a checkpoint, a
/// rename publishing a file) never passes one.
///
/// Its `Debug` shows a write's length, never its bytes: they are customer data and a
/// failed write is logged.
#[derive(Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Create the file (and missing parent directories) if absent, then set its length,
    /// zero-filling any extension. Existing bytes below `len` are kept.
    Create {
        /// The file.
        file: FilePath,
        /// Its length afterwards.
        len: u64,
    },
    /// Write `data` at `offset`. The file exists.
    Write {
        /// The file.
        file: FilePath,
        /// Byte offset in the file.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Truncate or extend the file to `len`; an extension reads as zeros.
    SetLen {
        /// The file.
        file: FilePath,
        /// Its length afterwards.
        len: u64,
    },
    /// Make the file's data durable (fdatasync). Failure is fatal: the data is gone.
    Sync {
        /// The file.
        file: FilePath,
    },
    /// Make creates, renames and removes in the directory durable (fsync of the directory).
    SyncDir {
        /// The directory.
        dir: FilePath,
    },
    /// Make every file and directory under the store root durable at once (`syncfs`):
    /// one journal commit where thousands of `Sync`s after a crash would each cost one.
    /// Failure is fatal, as for `Sync`.
    SyncAll,
    /// Atomically rename `from` over `to`.
    Rename {
        /// The existing file.
        from: FilePath,
        /// Its new name, replaced if present.
        to: FilePath,
    },
    /// Remove the file; absent is not an error.
    Remove {
        /// The file.
        file: FilePath,
    },
}

impl DiskOp {
    /// Whether this is a sync (`Sync`, `SyncDir`, `SyncAll`), which later data writes may
    /// pass (see the ordering contract).
    #[must_use]
    pub fn is_sync(&self) -> bool {
        matches!(self, Self::Sync { .. } | Self::SyncDir { .. } | Self::SyncAll)
    }

    /// Whether this may be carried out while earlier syncs are in progress: a write of
    /// CommitLog, ConsumeQueue or index data. Nothing depends on its order against an
    /// fsync: recovery checks the log by its CRCs, cuts queue and index entries past what
    /// it dispatches again, and the index's slots are written only after a completed sync
    /// of the entries they point at; what counts as durable is what the syncs issued before
    /// it covered.
    #[must_use]
    pub fn may_pass_sync(&self) -> bool {
        match self {
            Self::Write { file, .. } => {
                let path = file.as_str();
                path.starts_with("commitlog/")
                    || path.starts_with("consumequeue/")
                    || path.starts_with("index/")
            }
            _ => false,
        }
    }

    /// The file or directory the operation acts on (for a rename, the destination).
    #[must_use]
    pub fn target(&self) -> &FilePath {
        match self {
            Self::Create { file, .. }
            | Self::Write { file, .. }
            | Self::SetLen { file, .. }
            | Self::Sync { file }
            | Self::Remove { file } => file,
            Self::SyncDir { dir } => dir,
            Self::SyncAll => &ROOT,
            Self::Rename { to, .. } => to,
        }
    }
}

impl fmt::Debug for DiskOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create { file, len } => {
                f.debug_struct("Create").field("file", file).field("len", len).finish()
            }
            Self::Write { file, offset, data } => f
                .debug_struct("Write")
                .field("file", file)
                .field("offset", offset)
                .field("len", &data.len())
                .finish(),
            Self::SetLen { file, len } => {
                f.debug_struct("SetLen").field("file", file).field("len", len).finish()
            }
            Self::Sync { file } => f.debug_struct("Sync").field("file", file).finish(),
            Self::SyncDir { dir } => f.debug_struct("SyncDir").field("dir", dir).finish(),
            Self::SyncAll => f.write_str("SyncAll"),
            Self::Rename { from, to } => {
                f.debug_struct("Rename").field("from", from).field("to", to).finish()
            }
            Self::Remove { file } => f.debug_struct("Remove").field("file", file).finish(),
        }
    }
}

/// Why a connection is being closed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason(pub String);

/// Everything that can happen to a state machine. Its `Debug` shows the length of bytes
/// read, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted or established.
    ConnOpened {
        /// Its number.
        conn: ConnId,
        /// The peer's address (a producer's address becomes BORNHOST).
        peer: SocketAddr,
        /// What it carries: the port it was accepted on, or what `Output::Connect` said.
        kind: ConnKind,
    },
    /// The connection is gone; nothing more will be sent or received on it.
    ConnClosed {
        /// Its number.
        conn: ConnId,
    },
    /// Raw bytes read from a connection, split at arbitrary points.
    Bytes {
        /// The connection.
        conn: ConnId,
        /// The bytes, in order.
        data: Bytes,
        /// When the runtime read them: how long requests waited in line before the machine
        /// saw them (a send that waited too long is refused SYSTEM_BUSY, as RocketMQ's
        /// `waitTimeMillsInSendQueue` does).
        received: MonoNanos,
    },
    /// A whole command from a connection linked in process ([`ConnId::is_linked`]): what
    /// `Bytes` would carry as a frame, passed as a value.
    Command {
        /// The connection.
        conn: ConnId,
        /// The command.
        command: RemotingCommand,
        /// When the runtime took it, as for `Bytes`.
        received: MonoNanos,
    },
    /// A disk operation finished.
    DiskDone {
        /// The operation.
        io: IoId,
        /// How it went.
        result: Result<(), DiskError>,
    },
    /// The deadline from `poll_timeout` has passed.
    Timeout,
}

/// Everything a state machine can ask of its runtime. Its `Debug` shows the length of bytes
/// sent, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Output {
    /// Write bytes to a connection, after everything sent on it before.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// A whole command for a connection linked in process ([`ConnId::is_linked`]), in place
    /// of the frame `Send` would carry. A runtime with no such link writes it as that frame.
    Command {
        /// The connection.
        conn: ConnId,
        /// The command.
        command: RemotingCommand,
    },
    /// Open a connection to `addr` under the id `conn` (≥ [`ConnId::OUTBOUND`]). Success is
    /// reported as `Input::ConnOpened`, failure as `Input::ConnClosed`; the state machine
    /// sends on it only after it is open.
    Connect {
        /// The id the state machine chose.
        conn: ConnId,
        /// Where to connect.
        addr: SocketAddr,
        /// What it will carry; echoed in its `Input::ConnOpened`.
        kind: ConnKind,
    },
    /// Close a connection (after sending what was queued).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for the log.
        reason: CloseReason,
    },
    /// Carry out a disk operation and report it with `Input::DiskDone { io, .. }`.
    Disk {
        /// The number to report back.
        io: IoId,
        /// The operation.
        op: DiskOp,
    },
    /// Stop the process now. Recovery on the next start sorts out the disk. Emitted when
    /// continuing would risk acknowledging data that is not durable (e.g. a failed fsync).
    Fatal {
        /// Why, for the log.
        reason: String,
    },
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnOpened { conn, peer, kind } => f
                .debug_struct("ConnOpened")
                .field("conn", conn)
                .field("peer", peer)
                .field("kind", kind)
                .finish(),
            Self::ConnClosed { conn } => f.debug_struct("ConnClosed").field("conn", conn).finish(),
            Self::Bytes { conn, data, received } => f
                .debug_struct("Bytes")
                .field("conn", conn)
                .field("len", &data.len())
                .field("received", received)
                .finish(),
            Self::Command { conn, command, received } => f
                .debug_struct("Command")
                .field("conn", conn)
                .field("command", command)
                .field("received", received)
                .finish(),
            Self::DiskDone { io, result } => {
                f.debug_struct("DiskDone").field("io", io).field("result", result).finish()
            }
            Self::Timeout => f.write_str("Timeout"),
        }
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send { conn, data } => {
                f.debug_struct("Send").field("conn", conn).field("len", &data.len()).finish()
            }
            Self::Command { conn, command } => {
                f.debug_struct("Command").field("conn", conn).field("command", command).finish()
            }
            Self::Connect { conn, addr, kind } => {
                f.debug_struct("Connect").field("conn", conn).field("addr", addr).field("kind", kind).finish()
            }
            Self::Close { conn, reason } => {
                f.debug_struct("Close").field("conn", conn).field("reason", reason).finish()
            }
            Self::Disk { io, op } => f.debug_struct("Disk").field("io", io).field("op", op).finish(),
            Self::Fatal { reason } => f.debug_struct("Fatal").field("reason", reason).finish(),
        }
    }
}

/// The read-only view of storage a runtime lends the core: page cache and pread in
/// production, the simulated disk in tests. Reads never change state, so the core may call
/// them inside `handle`.
pub trait StoreRead {
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read (short at end of
    /// file). Reading a missing file is `DiskErrorKind::NotFound`.
    fn read_at(&self, file: &FilePath, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError>;

    /// The file's length, or `None` if it does not exist.
    fn len(&self, file: &FilePath) -> Result<Option<u64>, DiskError>;

    /// The names in a directory (files and subdirectories), sorted; empty if it is missing.
    fn list(&self, dir: &FilePath) -> Result<Vec<String>, DiskError>;

    /// The size and free space of the file system holding the store, if the runtime can
    /// tell (retention and the disk-full guard act on it; `None` disables both).
    fn disk_usage(&self) -> Option<DiskUsage> {
        None
    }

    /// Where `file` may hold data at or after `offset` (`SEEK_DATA`), or `None` when only a
    /// hole (zeros) follows: recovery learns that a queue file holds nothing past its last
    /// entry without reading its preallocated zeros. A reader that cannot tell answers
    /// `Some(offset)`.
    fn next_data(&self, file: &FilePath, offset: u64) -> Result<Option<u64>, DiskError> {
        let _ = file;
        Ok(Some(offset))
    }
}

/// A file system's space as RocketMQ measures it (`UtilAll.getDiskPartitionSpaceUsedPercent`,
/// and `df`): blocks reserved for root count neither as used nor as available, so a file
/// system whose reserve is large does not look fuller to the store than it is to `df`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// In use: the total size less every free block (statvfs `f_blocks - f_bfree`).
    pub used: u64,
    /// Available to an unprivileged writer (statvfs `f_bavail`).
    pub available: u64,
}

impl DiskUsage {
    /// The space the store can ever have: what is used plus what it may still take.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.used.saturating_add(self.available)
    }

    /// The share in use, in per mille, rounded up as RocketMQ rounds its percentage (per
    /// mille keeps a tenth of a percent for the runtime info's ratio).
    #[must_use]
    pub fn used_per_mille(&self) -> u64 {
        let capacity = u128::from(self.used) + u128::from(self.available);
        if capacity == 0 {
            return 1000;
        }
        let per_mille = (u128::from(self.used) * 1000).div_ceil(capacity);
        u64::try_from(per_mille).unwrap_or(1000)
    }
}

impl<T: StoreRead + ?Sized> StoreRead for std::sync::Arc<T> {
    fn read_at(&self, file: &FilePath, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        (**self).read_at(file, offset, buf)
    }

    fn len(&self, file: &FilePath) -> Result<Option<u64>, DiskError> {
        (**self).len(file)
    }

    fn list(&self, dir: &FilePath) -> Result<Vec<String>, DiskError> {
        (**self).list(dir)
    }

    fn disk_usage(&self) -> Option<DiskUsage> {
        (**self).disk_usage()
    }

    fn next_data(&self, file: &FilePath, offset: u64) -> Result<Option<u64>, DiskError> {
        (**self).next_data(file, offset)
    }
}

/// A sans-IO state machine: the shape shared by the broker, the name server and the clients.
///
/// The run-loop contract: call [`handle`](Machine::handle) with the current time and one
/// input (several may be fed before draining; what each causes is queued in order); drain
/// [`poll_output`](Machine::poll_output) until `None` and carry the outputs out in order;
/// then wait for the next input or for the deadline from
/// [`poll_timeout`](Machine::poll_timeout), whichever comes first, and deliver
/// `Input::Timeout` for the latter.
pub trait Machine {
    /// Feed one input.
    fn handle(&mut self, now: Now, input: Input);
    /// The next thing to do, if any.
    fn poll_output(&mut self) -> Option<Output>;
    /// When to deliver `Input::Timeout`, if ever.
    fn poll_timeout(&self) -> Option<MonoNanos>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_log_queue_and_index_data_writes_may_pass_a_sync() {
        let file = |path: &str| FilePath::new(path).unwrap();
        let write =
            |path: &str| DiskOp::Write { file: file(path), offset: 0, data: Bytes::from_static(b"x") };
        assert!(write("commitlog/00000000000000000000").may_pass_sync());
        assert!(write("consumequeue/T/0/00000000000000000000").may_pass_sync());
        assert!(write("index/00000000000000000000").may_pass_sync());
        for op in [
            write("checkpoint"),
            write("config/topics.json.tmp"),
            DiskOp::Create { file: file("commitlog/00000000000000000000"), len: 1 },
            DiskOp::SetLen { file: file("commitlog/00000000000000000000"), len: 1 },
            DiskOp::Remove { file: file("commitlog/00000000000000000000") },
            DiskOp::Rename { from: file("checkpoint.tmp"), to: file("checkpoint") },
            DiskOp::Sync { file: file("commitlog/00000000000000000000") },
        ] {
            assert!(!op.may_pass_sync(), "{op:?}");
        }
        assert!(DiskOp::Sync { file: file("checkpoint") }.is_sync());
        assert!(DiskOp::SyncDir { dir: file("commitlog") }.is_sync());
        assert!(DiskOp::SyncAll.is_sync());
        assert!(!write("commitlog/00000000000000000000").is_sync());
    }

    #[test]
    fn millis_until_is_zero_for_the_past_and_never_overflows() {
        assert_eq!(UnixMillis(1_000).millis_until(UnixMillis(1_250)), 250);
        assert_eq!(UnixMillis(1_250).millis_until(UnixMillis(1_000)), 0);
        assert_eq!(UnixMillis(i64::MIN).millis_until(UnixMillis(i64::MAX)), i64::MAX.unsigned_abs());
    }

    #[test]
    fn soonest_picks_the_earliest_deadline_and_the_first_reason_on_a_tie() {
        let deadlines = [Some(MonoNanos(5)), None, Some(MonoNanos(3)), Some(MonoNanos(3))];
        assert_eq!(soonest(0..4, |r: usize| deadlines[r]), Some((MonoNanos(3), 2)));
        assert_eq!(soonest(0..0, |r: usize| deadlines[r]), None);
        let now = Now { mono: MonoNanos(3), wall: UnixMillis(0) };
        assert!(is_due(Some(MonoNanos(3)), now) && !is_due(Some(MonoNanos(4)), now) && !is_due(None, now));
    }

    #[test]
    fn file_paths_stay_inside_the_root() {
        assert!(FilePath::new("commitlog/00000000000000000000").is_some());
        assert!(FilePath::new("/etc/passwd").is_none());
        assert!(FilePath::new("a/../b").is_none());
        assert!(FilePath::new("a//b").is_none());
        assert!(FilePath::new("").is_none());
        let dir = FilePath::new("consumequeue").unwrap();
        assert!(dir.join("..").is_none());
        assert!(dir.join("a/b").is_none());
        let f = dir.join("TopicA").unwrap().join("0").unwrap();
        assert_eq!(f.as_str(), "consumequeue/TopicA/0");
        assert_eq!(f.parent().unwrap().as_str(), "consumequeue/TopicA");
        assert_eq!(f.file_name(), "0");
        let abort = FilePath::root().join("abort").unwrap();
        assert_eq!(abort.as_str(), "abort");
        assert!(abort.parent().unwrap().is_root());
        assert_eq!(FilePath::root().parent(), None);
        assert_eq!(FilePath::root().to_string(), ".");
    }

    #[test]
    fn debug_output_names_lengths_never_bytes() {
        let secret = Bytes::from_static(b"card 4111-1111-1111-1111");
        let file = FilePath::new("commitlog/00000000000000000000").unwrap();
        let op = DiskOp::Write { file, offset: 4096, data: secret.clone() };
        let shown = format!(
            "{op:?} {:?} {:?}",
            Output::Send { conn: ConnId(3), data: secret.clone() },
            Input::Bytes { conn: ConnId(3), data: secret, received: MonoNanos(0) }
        );
        assert!(!shown.contains("card") && !shown.contains("4111"), "{shown}");
        assert!(shown.contains("offset: 4096") && shown.contains("len: 24"), "{shown}");
    }

    #[test]
    fn mono_arithmetic_saturates() {
        let t = MonoNanos(5_000_000);
        assert_eq!(t.plus_millis(2), MonoNanos(7_000_000));
        assert_eq!(MonoNanos(u64::MAX - 1).plus_millis(u64::MAX), MonoNanos(u64::MAX));
        assert_eq!(t.millis_since(MonoNanos(1_000_000)), 4);
        assert_eq!(MonoNanos(0).millis_since(t), 0);
    }

    #[test]
    fn disk_usage_is_measured_as_rocketmq_and_df_measure_it() {
        // A 252 GB file system with 59 GB used and 33 GB available: 160 GB reserved for
        // root count for neither side: 64.2% used (df rounds it up to 65%), not 87%.
        let gb = 1_000_000_000;
        let usage = DiskUsage { used: 59 * gb, available: 33 * gb };
        assert_eq!(usage.capacity(), 92 * gb);
        assert_eq!(usage.used_per_mille(), 642);
        // Rounded up: a sliver over 90% is not 90%.
        assert_eq!(DiskUsage { used: 900_001, available: 99_999 }.used_per_mille(), 901);
        assert_eq!(DiskUsage { used: 900, available: 100 }.used_per_mille(), 900);
        assert_eq!(DiskUsage { used: 0, available: 0 }.used_per_mille(), 1000);
        assert_eq!(DiskUsage { used: u64::MAX, available: u64::MAX }.used_per_mille(), 500);
    }
}
