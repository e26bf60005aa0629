//! Two disks as one: a name server keeps its KV config file in its own directory
//! (`kvConfigPath`) and its embedded controller's Raft log in another
//! (`controllerStorePath`), while its machine sees one disk. Paths under [`KV_PREFIX`] go to
//! the KV directory with the prefix taken off; everything else to the controller's.

use std::sync::Arc;

use keel_core::io::{DiskError, DiskOp, DiskUsage, FilePath, IoId, StoreRead};

use crate::disk::{Disk, FileDisk};

/// The directory the name server's machine names the KV config's disk by.
pub const KV_PREFIX: &str = "kvconfig";

/// The controller's disk and the KV config's, as one.
pub struct RoutedDisk {
    main: Arc<dyn Disk>,
    kv: FileDisk,
}

impl std::fmt::Debug for RoutedDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedDisk").field("kv", &self.kv).finish_non_exhaustive()
    }
}

impl RoutedDisk {
    /// `main` for every path but those under [`KV_PREFIX`], which go to `kv`.
    #[must_use]
    pub fn new(main: Arc<dyn Disk>, kv: FileDisk) -> Self {
        Self { main, kv }
    }

    /// `file` inside the KV directory, if it is under the prefix.
    fn kv_path(file: &FilePath) -> Option<FilePath> {
        let rest = file.as_str().strip_prefix(KV_PREFIX)?;
        match rest.strip_prefix('/') {
            Some(inner) => FilePath::new(inner),
            None if rest.is_empty() => Some(FilePath::root()),
            None => None,
        }
    }

    /// The operation with its paths inside the KV directory, if they all are.
    fn kv_op(op: &DiskOp) -> Option<DiskOp> {
        Some(match op {
            DiskOp::Create { file, len } => DiskOp::Create { file: Self::kv_path(file)?, len: *len },
            DiskOp::Write { file, offset, data } => {
                DiskOp::Write { file: Self::kv_path(file)?, offset: *offset, data: data.clone() }
            }
            DiskOp::SetLen { file, len } => DiskOp::SetLen { file: Self::kv_path(file)?, len: *len },
            DiskOp::Sync { file } => DiskOp::Sync { file: Self::kv_path(file)? },
            DiskOp::SyncDir { dir } => DiskOp::SyncDir { dir: Self::kv_path(dir)? },
            DiskOp::Rename { from, to } => {
                DiskOp::Rename { from: Self::kv_path(from)?, to: Self::kv_path(to)? }
            }
            DiskOp::Remove { file } => DiskOp::Remove { file: Self::kv_path(file)? },
            DiskOp::SyncAll => return None,
        })
    }
}

impl StoreRead for RoutedDisk {
    fn read_at(&self, file: &FilePath, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        match Self::kv_path(file) {
            Some(inner) => self.kv.read_at(&inner, offset, buf),
            None => self.main.read_at(file, offset, buf),
        }
    }

    fn len(&self, file: &FilePath) -> Result<Option<u64>, DiskError> {
        match Self::kv_path(file) {
            Some(inner) => self.kv.len(&inner),
            None => self.main.len(file),
        }
    }

    fn list(&self, dir: &FilePath) -> Result<Vec<String>, DiskError> {
        match Self::kv_path(dir) {
            Some(inner) => self.kv.list(&inner),
            None => self.main.list(dir),
        }
    }

    fn disk_usage(&self) -> Option<DiskUsage> {
        self.main.disk_usage()
    }
}

impl Disk for RoutedDisk {
    fn submit(&self, io: IoId, op: DiskOp) {
        match Self::kv_op(&op) {
            Some(inner) => self.kv.submit(io, inner),
            None => self.main.submit(io, op),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_the_prefix_go_to_the_kv_directory() {
        let path = |p: &str| FilePath::new(p).unwrap();
        assert_eq!(RoutedDisk::kv_path(&path("kvconfig/kvConfig.json")), Some(path("kvConfig.json")));
        assert_eq!(RoutedDisk::kv_path(&path("kvconfig")), Some(FilePath::root()));
        assert_eq!(RoutedDisk::kv_path(&path("kvconfigs/x")), None);
        assert_eq!(RoutedDisk::kv_path(&path("raft.log")), None);
        let rename = DiskOp::Rename { from: path("kvconfig/a.tmp"), to: path("kvconfig/a") };
        assert_eq!(RoutedDisk::kv_op(&rename), Some(DiskOp::Rename { from: path("a.tmp"), to: path("a") }));
        assert_eq!(RoutedDisk::kv_op(&DiskOp::Sync { file: path("raft.log") }), None);
    }
}
