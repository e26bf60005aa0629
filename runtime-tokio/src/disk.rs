//! The production disk: the core's disk operations carried out with `pwrite`, `fdatasync`
//! and friends on dedicated IO threads, off the async workers, plus the `pread`-based read
//! view the core borrows.
//!
//! Operations run one after another in the order they were submitted, as the core's
//! ordering contract asks, except that syncs run on a thread of their own: CommitLog and
//! ConsumeQueue writes go on past a sync in progress (an fdatasync of a busy log takes tens
//! of milliseconds, and sends waited behind it for their writes), while every other
//! operation waits until the syncs before it are done. Completions go back over a channel
//! the driver loop awaits.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::thread;

use keel_core::io::{DiskError, DiskErrorKind, DiskOp, DiskUsage, FilePath, IoId, StoreRead};
use tokio::sync::mpsc::UnboundedSender;

/// A disk operation's completion.
pub type Completion = (IoId, Result<(), DiskError>);

/// A disk and the channel its completions come back on, as the driver takes them.
pub type DiskWithCompletions = (std::sync::Arc<dyn Disk>, tokio::sync::mpsc::UnboundedReceiver<Completion>);

/// Where the core's disk operations go, and its read view of storage.
pub trait Disk: StoreRead + Send + Sync {
    /// Queue `op` behind everything submitted before; its completion is reported later.
    fn submit(&self, io: IoId, op: DiskOp);
}

fn map_error(path: &Path, error: &std::io::Error) -> DiskError {
    let kind = match error.kind() {
        ErrorKind::NotFound => DiskErrorKind::NotFound,
        _ if error.raw_os_error() == Some(28) => DiskErrorKind::NoSpace,
        ErrorKind::StorageFull => DiskErrorKind::NoSpace,
        _ => DiskErrorKind::Io,
    };
    DiskError::new(kind, format!("{}: {error}", path.display()))
}

/// Most files kept open for writing. A broker with tens of thousands of queues would
/// otherwise hold a descriptor per queue file and hit the process's limit (EMFILE): past
/// this, the least recently used files are closed, those with nothing unsynced first. A
/// file closed with unsynced writes is the exception (a crash recovery touching every
/// queue): a descriptor opened later would not report a writeback error that came before
/// it, so the next sync is also a `syncfs` on the root, whose descriptor is as old as the
/// disk and reports any error in the file system since.
const MAX_OPEN_FILES: usize = 4096;

/// Files kept open for reading only.
const READ_HANDLES: usize = 4;

/// A file open for writing.
#[derive(Debug)]
struct OpenFile {
    file: Arc<File>,
    /// The handles' clock at its last use.
    used: AtomicU64,
    /// Changes to it, each counted as it begins and again as it ends.
    changed: AtomicU64,
    /// The count of changes the newest successful sync began after: a sync marks the file
    /// clean only up to there, as a write may run while it does.
    synced: AtomicU64,
}

impl OpenFile {
    /// Written since its last successful sync.
    fn dirty(&self) -> bool {
        self.changed.load(Ordering::Acquire) != self.synced.load(Ordering::Acquire)
    }
}

/// Open files shared by the IO thread (writes) and readers (preads).
#[derive(Debug, Default)]
struct Handles {
    open: RwLock<BTreeMap<String, OpenFile>>,
    clock: AtomicU64,
    /// A file was closed with unsynced writes since the last `syncfs`.
    closed_dirty: AtomicBool,
    /// The files last opened for reading only, newest first: recovery reads a few slots
    /// of each queue file and the record its last entry points at, and an open per
    /// 20-byte read cost more than the read.
    last_read: std::sync::Mutex<Vec<(String, Arc<File>)>>,
}

impl Handles {
    fn get(&self, key: &str) -> Option<Arc<File>> {
        if let Some(open) = self.get_writable(key) {
            return Some(open);
        }
        let last = self.last_read.lock().ok()?;
        last.iter().find(|(name, _)| name == key).map(|(_, file)| Arc::clone(file))
    }

    /// A handle opened for writing (the IO thread's own).
    fn get_writable(&self, key: &str) -> Option<Arc<File>> {
        let open = self.open.read().ok()?;
        let entry = open.get(key)?;
        entry.used.store(self.clock.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Some(Arc::clone(&entry.file))
    }

    fn remember_read(&self, key: &str, file: Arc<File>) {
        if let Ok(mut last) = self.last_read.lock() {
            last.retain(|(name, _)| name != key);
            last.insert(0, (key.to_owned(), file));
            last.truncate(READ_HANDLES);
        }
    }

    fn put(&self, key: &str, file: Arc<File>) {
        let used = AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed));
        if let Ok(mut open) = self.open.write() {
            // Opened to write: dirty until synced.
            let (changed, synced) = (AtomicU64::new(1), AtomicU64::new(0));
            open.insert(key.to_owned(), OpenFile { file, used, changed, synced });
            if open.len() > MAX_OPEN_FILES && close_least_used(&mut open) {
                self.closed_dirty.store(true, Ordering::Relaxed);
            }
        }
    }

    /// `key` is about to change, or has just changed: counted both times, so a sync that
    /// began while a change was under way never counts it as covered.
    fn mark_changing(&self, key: &str) {
        if let Some(entry) = self.open.read().ok().as_ref().and_then(|open| open.get(key)) {
            entry.changed.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The changes begun on every open file, to mark them synced once a sync that starts
    /// now has succeeded.
    fn changes(&self) -> Vec<(String, u64)> {
        let Ok(open) = self.open.read() else { return Vec::new() };
        open.iter().map(|(key, entry)| (key.clone(), entry.changed.load(Ordering::Acquire))).collect()
    }

    /// The changes begun on `key`, if it is open for writing.
    fn changes_of(&self, key: &str) -> Option<(String, u64)> {
        let open = self.open.read().ok()?;
        open.get(key).map(|entry| (key.to_owned(), entry.changed.load(Ordering::Acquire)))
    }

    /// A sync that began after these changes succeeded.
    fn mark_synced(&self, changes: &[(String, u64)]) {
        if let Ok(open) = self.open.read() {
            for (key, changed) in changes {
                if let Some(entry) = open.get(key) {
                    entry.synced.fetch_max(*changed, Ordering::AcqRel);
                }
            }
        }
    }

    /// Drop the handles of `key`: call it after the file was removed or renamed, so a read
    /// racing with that cannot leave a handle to the old file behind.
    fn forget(&self, key: &str) {
        if let Ok(mut open) = self.open.write() {
            open.remove(key);
        }
        if let Ok(mut last) = self.last_read.lock() {
            last.retain(|(name, _)| name != key);
        }
    }
}

/// Close files until a quarter of the limit is free: clean ones first, least recently
/// used first. Returns whether a file with unsynced writes was closed.
fn close_least_used(open: &mut BTreeMap<String, OpenFile>) -> bool {
    let mut order: Vec<(bool, u64, String)> =
        open.iter().map(|(key, e)| (e.dirty(), e.used.load(Ordering::Relaxed), key.clone())).collect();
    order.sort_unstable();
    let excess = open.len().saturating_sub(MAX_OPEN_FILES * 3 / 4);
    let mut closed_dirty = false;
    for (dirty, _, key) in order.into_iter().take(excess) {
        closed_dirty |= dirty;
        open.remove(&key);
    }
    closed_dirty
}

/// Files under a root directory, with operations carried out on a dedicated thread.
#[derive(Debug)]
pub struct FileDisk {
    root: PathBuf,
    handles: Arc<Handles>,
    ops: mpsc::Sender<(IoId, DiskOp)>,
}

impl FileDisk {
    /// A disk rooted at `root` (created if missing); completions are sent to `completions`.
    pub fn open(root: impl Into<PathBuf>, completions: UnboundedSender<Completion>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let handles = Arc::new(Handles::default());
        let (ops, queue) = mpsc::channel::<(IoId, DiskOp)>();
        let (syncs, sync_queue) = mpsc::channel::<(IoId, DiskOp)>();
        let root_dir = File::open(&root)?;
        let worker = Arc::new(Worker { root: root.clone(), root_dir, handles: Arc::clone(&handles) });
        let lane = Arc::new(SyncLane::default());
        let (sync_worker, sync_lane, sync_completions) =
            (Arc::clone(&worker), Arc::clone(&lane), completions.clone());
        thread::Builder::new().name("keel-sync".into()).spawn(move || {
            // Ends when the writing thread (the only sender) ends.
            while let Ok((io, op)) = sync_queue.recv() {
                let sent = report(&sync_completions, io, &op, sync_worker.execute(&op));
                sync_lane.done();
                if !sent {
                    break;
                }
            }
        })?;
        thread::Builder::new().name("keel-disk".into()).spawn(move || {
            // Ends when the FileDisk (the only sender) is dropped.
            while let Ok((io, op)) = queue.recv() {
                if op.is_sync() {
                    lane.begin();
                    if syncs.send((io, op)).is_err() {
                        break;
                    }
                    continue;
                }
                if !op.may_pass_sync() {
                    lane.wait_idle();
                }
                if !report(&completions, io, &op, worker.execute(&op)) {
                    break;
                }
            }
        })?;
        Ok(Self { root, handles, ops })
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, file: &FilePath) -> PathBuf {
        resolve(&self.root, file)
    }

    fn handle(&self, file: &FilePath) -> Result<Arc<File>, DiskError> {
        if let Some(open) = self.handles.get(file.as_str()) {
            return Ok(open);
        }
        let path = self.path(file);
        let handle = File::open(&path).map(Arc::new).map_err(|e| map_error(&path, &e))?;
        if file.as_str().starts_with("consumequeue/") {
            // Reads of a queue file are a few slots at a time (recovery's searches, a pull's
            // entries): readahead would zero-fill 128 KiB of a preallocated file's holes for
            // each, which made a restart with 80,000 queues memset gigabytes. Advice only.
            let _ = rustix::fs::fadvise(&*handle, 0, None, rustix::fs::Advice::Random);
        }
        self.handles.remember_read(file.as_str(), Arc::clone(&handle));
        Ok(handle)
    }
}

/// Log a failed operation and send its completion; `false` once the loop is gone.
fn report(
    completions: &UnboundedSender<Completion>,
    io: IoId,
    op: &DiskOp,
    result: Result<(), DiskError>,
) -> bool {
    if let Err(error) = &result {
        tracing::error!(?io, ?op, %error, "disk operation failed");
    }
    completions.send((io, result)).is_ok()
}

/// Syncs handed to the sync thread and not yet done: what an operation that must not pass
/// a sync waits for.
#[derive(Debug, Default)]
struct SyncLane {
    pending: Mutex<usize>,
    idle: Condvar,
}

impl SyncLane {
    fn begin(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            *pending += 1;
        }
    }

    fn done(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                self.idle.notify_all();
            }
        }
    }

    /// Block until every sync handed over so far is done.
    fn wait_idle(&self) {
        let Ok(pending) = self.pending.lock() else { return };
        let _idle = self.idle.wait_while(pending, |pending| *pending > 0);
    }
}

fn resolve(root: &Path, file: &FilePath) -> PathBuf {
    if file.is_root() {
        root.to_path_buf()
    } else {
        root.join(file.as_str())
    }
}

impl Disk for FileDisk {
    fn submit(&self, io: IoId, op: DiskOp) {
        if let Err(mpsc::SendError((io, op))) = self.ops.send((io, op)) {
            tracing::error!(?io, ?op, "disk thread is gone; operation dropped");
        }
    }
}

impl StoreRead for FileDisk {
    fn read_at(&self, file: &FilePath, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        let handle = self.handle(file)?;
        let mut done = 0usize;
        while done < buf.len() {
            let dst = buf.get_mut(done..).unwrap_or_default();
            match handle.read_at(dst, offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(map_error(&self.path(file), &e)),
            }
        }
        Ok(done)
    }

    fn len(&self, file: &FilePath) -> Result<Option<u64>, DiskError> {
        let path = self.path(file);
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_error(&path, &e)),
        }
    }

    fn list(&self, dir: &FilePath) -> Result<Vec<String>, DiskError> {
        let path = self.path(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(map_error(&path, &e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| map_error(&path, &e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn next_data(&self, file: &FilePath, offset: u64) -> Result<Option<u64>, DiskError> {
        let handle = self.handle(file)?;
        // Every read is positioned (`pread`), so moving the shared descriptor's offset
        // disturbs nothing.
        match rustix::fs::seek(&*handle, rustix::fs::SeekFrom::Data(offset)) {
            Ok(at) => Ok(Some(at)),
            Err(rustix::io::Errno::NXIO) => Ok(None),
            // A file system without SEEK_DATA: say there may be data, so the caller reads.
            Err(_) => Ok(Some(offset)),
        }
    }

    fn disk_usage(&self) -> Option<DiskUsage> {
        let stat = rustix::fs::statvfs(&self.root).ok()?;
        let unit = stat.f_frsize.max(1);
        Some(DiskUsage {
            used: stat.f_blocks.saturating_sub(stat.f_bfree).saturating_mul(unit),
            available: stat.f_bavail.saturating_mul(unit),
        })
    }
}

/// The IO thread's side.
struct Worker {
    root: PathBuf,
    /// The root directory, open since the disk opened: `syncfs` on it reports any
    /// writeback error in the file system since then.
    root_dir: File,
    handles: Arc<Handles>,
}

impl Worker {
    fn open_for_write(&self, file: &FilePath, create: bool) -> Result<Arc<File>, DiskError> {
        if let Some(open) = self.handles.get_writable(file.as_str()) {
            return Ok(open);
        }
        let path = resolve(&self.root, file);
        if create {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| map_error(parent, &e))?;
            }
        }
        let handle = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
            .map_err(|e| map_error(&path, &e))?;
        let handle = Arc::new(handle);
        self.handles.put(file.as_str(), Arc::clone(&handle));
        Ok(handle)
    }

    /// The file's write handle, marked dirty: an operation is about to change it.
    fn open_to_change(&self, file: &FilePath, create: bool) -> Result<Arc<File>, DiskError> {
        let handle = self.open_for_write(file, create)?;
        self.handles.mark_changing(file.as_str());
        Ok(handle)
    }

    fn execute(&self, op: &DiskOp) -> Result<(), DiskError> {
        self.carry_out(op)?;
        if let DiskOp::Create { file, .. } | DiskOp::Write { file, .. } | DiskOp::SetLen { file, .. } = op {
            self.handles.mark_changing(file.as_str());
        }
        Ok(())
    }

    fn carry_out(&self, op: &DiskOp) -> Result<(), DiskError> {
        let path = resolve(&self.root, op.target());
        let io = |e: std::io::Error| map_error(&path, &e);
        match op {
            DiskOp::Create { file, len } => {
                let handle = self.open_to_change(file, true)?;
                if handle.metadata().map_err(io)?.len() != *len {
                    handle.set_len(*len).map_err(io)?;
                }
            }
            DiskOp::Write { file, offset, data } => {
                let handle = self.open_to_change(file, false)?;
                handle.write_all_at(data, *offset).map_err(io)?;
            }
            DiskOp::SetLen { file, len } => {
                let handle = self.open_to_change(file, false)?;
                handle.set_len(*len).map_err(io)?;
            }
            DiskOp::Sync { file } => {
                let handle = self.open_for_write(file, false)?;
                let changes = self.handles.changes_of(file.as_str());
                handle.sync_data().map_err(io)?;
                if self.handles.closed_dirty.swap(false, Ordering::Relaxed) {
                    self.sync_all()?;
                }
                self.handles.mark_synced(changes.as_slice());
            }
            DiskOp::SyncDir { dir } => self.sync_dir_chain(dir)?,
            DiskOp::SyncAll => self.sync_all()?,
            DiskOp::Rename { from, to } => {
                let from_path = resolve(&self.root, from);
                std::fs::rename(&from_path, &path).map_err(io)?;
                self.handles.forget(from.as_str());
                self.handles.forget(to.as_str());
            }
            DiskOp::Remove { file } => {
                let removed = std::fs::remove_file(&path);
                self.handles.forget(file.as_str());
                match removed {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// `syncfs`: everything in the file system is durable, every open file clean.
    fn sync_all(&self) -> Result<(), DiskError> {
        self.handles.closed_dirty.store(false, Ordering::Relaxed);
        let changes = self.handles.changes();
        rustix::fs::syncfs(&self.root_dir).map_err(|e| map_error(&self.root, &e.into()))?;
        self.handles.mark_synced(&changes);
        Ok(())
    }

    /// fsync `dir` and every directory above it up to the root, so entries created with
    /// missing parents (a new ConsumeQueue directory) are durable too.
    fn sync_dir_chain(&self, dir: &FilePath) -> Result<(), DiskError> {
        let mut current = Some(dir.clone());
        while let Some(dir) = current {
            let path = resolve(&self.root, &dir);
            match File::open(&path) {
                Ok(handle) => handle.sync_all().map_err(|e| map_error(&path, &e))?,
                // A directory never created has nothing to make durable.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(map_error(&path, &e)),
            }
            current = dir.parent();
        }
        Ok(())
    }
}
