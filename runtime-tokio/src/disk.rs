//! The production disk: the core's disk operations carried out with `pwrite`, `fdatasync`
//! and friends on a dedicated IO thread, off the async workers, plus the `pread`-based
//! read view the core borrows.
//!
//! Operations run one after another in the order they were submitted, which is the core's
//! ordering contract (a sync covers every write submitted before it). Completions go back
//! over a channel the driver loop awaits.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};
use std::thread;

use keel_core::io::{DiskError, DiskErrorKind, DiskOp, DiskUsage, FilePath, IoId, StoreRead};
use tokio::sync::mpsc::UnboundedSender;

/// A disk operation's completion.
pub type Completion = (IoId, Result<(), DiskError>);

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

/// Open files shared by the IO thread (writes) and readers (preads).
#[derive(Debug, Default)]
struct Handles {
    open: RwLock<BTreeMap<String, Arc<File>>>,
}

impl Handles {
    fn get(&self, key: &str) -> Option<Arc<File>> {
        self.open.read().ok()?.get(key).cloned()
    }

    fn put(&self, key: &str, file: Arc<File>) {
        if let Ok(mut open) = self.open.write() {
            open.insert(key.to_owned(), file);
        }
    }

    fn forget(&self, key: &str) {
        if let Ok(mut open) = self.open.write() {
            open.remove(key);
        }
    }
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
        let worker = Worker { root: root.clone(), handles: Arc::clone(&handles) };
        thread::Builder::new().name("keel-disk".into()).spawn(move || {
            // Ends when the FileDisk (the only sender) is dropped.
            while let Ok((io, op)) = queue.recv() {
                let result = worker.execute(&op);
                if let Err(error) = &result {
                    tracing::error!(?io, ?op, %error, "disk operation failed");
                }
                if completions.send((io, result)).is_err() {
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
        File::open(&path).map(Arc::new).map_err(|e| map_error(&path, &e))
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

    fn disk_usage(&self) -> Option<DiskUsage> {
        let stat = rustix::fs::statvfs(&self.root).ok()?;
        let unit = stat.f_frsize.max(1);
        Some(DiskUsage {
            total: stat.f_blocks.saturating_mul(unit),
            available: stat.f_bavail.saturating_mul(unit),
        })
    }
}

/// The IO thread's side.
struct Worker {
    root: PathBuf,
    handles: Arc<Handles>,
}

impl Worker {
    fn open_for_write(&self, file: &FilePath, create: bool) -> Result<Arc<File>, DiskError> {
        if let Some(open) = self.handles.get(file.as_str()) {
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

    fn execute(&self, op: &DiskOp) -> Result<(), DiskError> {
        let path = resolve(&self.root, op.target());
        let io = |e: std::io::Error| map_error(&path, &e);
        match op {
            DiskOp::Create { file, len } => {
                let handle = self.open_for_write(file, true)?;
                if handle.metadata().map_err(io)?.len() != *len {
                    handle.set_len(*len).map_err(io)?;
                }
            }
            DiskOp::Write { file, offset, data } => {
                self.open_for_write(file, false)?.write_all_at(data, *offset).map_err(io)?;
            }
            DiskOp::SetLen { file, len } => self.open_for_write(file, false)?.set_len(*len).map_err(io)?,
            DiskOp::Sync { file } => self.open_for_write(file, false)?.sync_data().map_err(io)?,
            DiskOp::SyncDir { dir } => self.sync_dir_chain(dir)?,
            DiskOp::Rename { from, to } => {
                let from_path = resolve(&self.root, from);
                std::fs::rename(&from_path, &path).map_err(io)?;
                self.handles.forget(from.as_str());
                self.handles.forget(to.as_str());
            }
            DiskOp::Remove { file } => {
                self.handles.forget(file.as_str());
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
            }
        }
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
