//! The store on real files: appends across segments, a clean shutdown and a normal restart,
//! and a process kill mid-way followed by abnormal recovery. Every restart is checked by the
//! store audit. Real file IO has no place in the simulator, so these run in normal builds.
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_core::io::{Now, Output};
use keel_core::protocol::message::properties;
use keel_core::store::audit::audit;
use keel_core::store::{paths, AppendRequest, FlushMode, RecoveryKind, RecoveryReport, Store, StoreConfig};
use keel_runtime_tokio::disk::{Completion, Disk, FileDisk};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("keel-file-disk-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(flush_mode: FlushMode) -> StoreConfig {
    let mut config = StoreConfig::new("127.0.0.1:10911".parse().unwrap());
    config.segment_size = 4096;
    config.queue_file_entries = 16;
    config.flush_mode = flush_mode;
    config.max_message_size = 1024;
    // The host's file system is shared: its fullness is not what these tests are about.
    config.retention.disk_max_used_ratio = 100;
    config.retention.clean_forcibly_ratio = 100;
    config.retention.warning_ratio = 100;
    config
}

struct Node {
    disk: FileDisk,
    completions: UnboundedReceiver<Completion>,
    store: Store,
    now: Now,
}

impl Node {
    fn start(dir: &TempDir, config: StoreConfig) -> (Self, RecoveryReport) {
        let (tx, completions) = unbounded_channel();
        let disk = FileDisk::open(&dir.0, tx).unwrap();
        let now = Now::new(1_000_000_000, 1_726_000_000_000);
        let (store, report) = Store::recover(config, &disk, now).unwrap();
        let mut node = Self { disk, completions, store, now };
        node.drain_all();
        assert!(node.store.is_ready());
        (node, report)
    }

    /// Submit every output, then wait for every completion (repeat until quiet).
    fn drain_all(&mut self) {
        loop {
            let mut submitted = 0;
            while let Some(output) = {
                self.store.start_round();
                self.store.poll_output()
            } {
                match output {
                    Output::Disk { io, op } => {
                        self.disk.submit(io, op);
                        submitted += 1;
                    }
                    other => panic!("unexpected output {other:?}"),
                }
            }
            if submitted == 0 && self.store.io_in_flight() == 0 {
                return;
            }
            let (io, result) = self.completions.blocking_recv().unwrap();
            self.store.handle_disk_done(self.now, io, result);
        }
    }

    fn append(&mut self, i: usize) {
        let body = format!("message {i} ").repeat(i % 20 + 1);
        let tag = format!("Tag{}", i % 3);
        let props = properties::encode(&[("TAGS", tag.as_str())]);
        let topic = if i.is_multiple_of(2) { "TopicA" } else { "TopicB" };
        let req = request(topic, i32::try_from(i % 4).unwrap(), body.as_bytes(), &props);
        self.store.append(self.now, &req).unwrap();
    }
}

/// A message to append from a producer on loopback.
fn request<'a>(topic: &'a str, queue_id: i32, body: &'a [u8], properties: &'a [u8]) -> AppendRequest<'a> {
    AppendRequest {
        topic,
        queue_id,
        flag: 0,
        sys_flag: 0,
        born_timestamp: 1_726_000_000_000,
        born_host: "127.0.0.1:50000".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties,
    }
}

#[test]
fn clean_shutdown_and_normal_restart_keep_everything() {
    let dir = TempDir::new();
    let cfg = config(FlushMode::Sync);
    let (mut node, report) = Node::start(&dir, cfg.clone());
    assert_eq!(report.kind, RecoveryKind::Fresh);
    assert!(dir.0.join("abort").exists(), "a running store has an abort marker");
    for i in 0..200 {
        node.append(i);
        if i % 7 == 0 {
            node.drain_all();
        }
    }
    node.drain_all();
    assert_eq!(node.store.flushed_end(), node.store.write_pos(), "sync flush made everything durable");
    node.store.begin_shutdown();
    node.drain_all();
    assert!(node.store.is_stopped());
    assert!(!dir.0.join("abort").exists(), "a clean shutdown removes the abort marker");
    let written = node.store.write_pos();
    drop(node);

    let (node, report) = Node::start(&dir, cfg.clone());
    assert_eq!(report.kind, RecoveryKind::Normal);
    assert_eq!(report.redispatched, 0);
    assert_eq!(node.store.write_pos(), written);
    let audited = audit(&cfg, &node.disk).unwrap();
    assert_eq!(audited.records.len(), 200);
    assert!(audited.end > 4096 * 3, "the log rolled over several segments");
    let segments = std::fs::read_dir(dir.0.join("commitlog")).unwrap().count();
    assert!(segments >= 4);
    assert!(dir.0.join(paths::segment(0).as_str()).exists());
}

#[test]
fn process_kill_leads_to_abnormal_recovery_of_a_valid_prefix() {
    let dir = TempDir::new();
    let cfg = config(FlushMode::Async { interval_ms: 500 });
    let (mut node, _) = Node::start(&dir, cfg.clone());
    for i in 0..120 {
        node.append(i);
    }
    node.drain_all();
    for i in 120..150 {
        node.append(i);
    }
    // Hand some of the last writes to the disk thread and "kill" the process: the store and
    // everything not yet handed over vanish; the page cache keeps what was written.
    let mut handed = 0;
    while let Some(output) = {
        node.store.start_round();
        node.store.poll_output()
    } {
        if let Output::Disk { io, op } = output {
            if handed < 2 {
                node.disk.submit(io, op);
                handed += 1;
            }
        }
    }
    for _ in 0..handed {
        node.completions.blocking_recv().unwrap().1.unwrap();
    }
    drop(node);

    let (node, report) = Node::start(&dir, cfg.clone());
    assert_eq!(report.kind, RecoveryKind::Abnormal);
    let audited = audit(&cfg, &node.disk).unwrap();
    assert!(audited.records.len() >= 120, "everything written before survives a process kill");
    assert!(audited.records.len() <= 150);
    assert_eq!(node.store.write_pos().0, audited.end);
}

/// Descriptors this process holds open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

#[test]
fn thousands_of_queues_never_hold_a_descriptor_each() {
    let dir = TempDir::new();
    let (mut node, _) = Node::start(&dir, config(FlushMode::Sync));
    let before = open_descriptors();
    let props = properties::encode(&[("TAGS", "A")]);
    for i in 0..6_000 {
        let topic = format!("Q{}", i / 8);
        let req = request(&topic, i % 8, b"one per queue", &props);
        node.store.append(node.now, &req).unwrap();
        if i % 500 == 499 {
            node.drain_all();
            // Queue files are synced by checkpoints: force one so they become clean.
            node.now = Now::new(node.now.mono.0 + 2_000_000_000, node.now.wall.0 + 2_000);
            node.store.handle_timeout(node.now);
            node.drain_all();
        }
    }
    node.drain_all();
    let held = open_descriptors().saturating_sub(before);
    assert!(held < 4_200, "{held} descriptors held for 6,000 queue files");
    // Every queue still reads back after its file was closed and reopened.
    let cfg = config(FlushMode::Sync);
    let report = audit(&cfg, &node.disk).unwrap();
    assert_eq!(report.records.len(), 6_000);
}

/// `next_data` never reports a hole where data is, however far into a preallocated file,
/// and on a file system with `SEEK_DATA` (ext4, xfs, tmpfs, btrfs) it reports the hole
/// after a queue's last entry, which spares recovery after a crash a cut and zeroing per
/// queue.
#[test]
fn next_data_finds_data_past_holes_and_reports_the_hole_after_it() {
    use keel_core::io::{FilePath, StoreRead};
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = FilePath::new("queue").unwrap();
    let path = dir.0.join("queue");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(6_000_000).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 20], 0).unwrap();
    let (tx, _rx) = unbounded_channel();
    let disk = FileDisk::open(&dir.0, tx).unwrap();
    assert_eq!(disk.next_data(&file, 0).unwrap(), Some(0), "the entry's page holds data");
    let fs_type = std::process::Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "-T"])
        .arg(&dir.0)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if ["ext4", "xfs", "tmpfs", "btrfs"].contains(&fs_type.as_str()) {
        assert_eq!(disk.next_data(&file, 4096).unwrap(), None, "{fs_type}: only a hole after the first page");
    }
    // Data far past the hole (a page a power loss kept) is always found.
    std::os::unix::fs::FileExt::write_all_at(&f, &[9u8; 20], 4_000_000).unwrap();
    let found = disk.next_data(&file, 4096).unwrap();
    assert!(found.is_some_and(|at| at <= 4_000_000), "data at 4,000,000 missed: {found:?}");
}

/// The ordering contract on real files: a sync runs beside the writes after it, but any
/// other operation (here a checkpoint write and a rename) waits until the syncs before it
/// are done, so its completion always comes after theirs; and every operation completes.
#[test]
fn only_log_and_queue_writes_pass_a_sync_in_progress() {
    use keel_core::io::{DiskOp, FilePath, IoId};
    let dir = TempDir::new();
    let (tx, mut completions) = unbounded_channel();
    let disk = FileDisk::open(&dir.0, tx).unwrap();
    let file = |path: &str| FilePath::new(path).unwrap();
    let write =
        |path: &str, len: usize| DiskOp::Write { file: file(path), offset: 0, data: vec![7u8; len].into() };
    let segment = paths::segment(0);
    disk.submit(IoId(1), DiskOp::Create { file: segment.clone(), len: 1 << 20 });
    disk.submit(IoId(2), DiskOp::Create { file: file("checkpoint"), len: 4096 });
    let mut next = 3;
    let mut barriers = Vec::new();
    for round in 0..50 {
        let sync = IoId(next);
        // A sync with much to write, then a log write and a write that must wait for it.
        disk.submit(
            IoId(next + 1),
            DiskOp::Write { file: segment.clone(), offset: 0, data: vec![round as u8; 256 << 10].into() },
        );
        disk.submit(sync, DiskOp::Sync { file: segment.clone() });
        disk.submit(IoId(next + 2), write(segment.as_str(), 512));
        let barrier = IoId(next + 3);
        disk.submit(
            barrier,
            if round % 2 == 0 { write("checkpoint", 64) } else { DiskOp::SyncDir { dir: file("commitlog") } },
        );
        barriers.push((sync, barrier));
        next += 4;
    }
    let total = usize::try_from(next - 1).unwrap();
    let mut order = Vec::new();
    while order.len() < total {
        let (io, result) = completions.blocking_recv().expect("the disk thread is gone");
        result.unwrap();
        order.push(io);
    }
    let at = |io: IoId| order.iter().position(|done| *done == io).unwrap();
    for (sync, barrier) in barriers {
        assert!(at(sync) < at(barrier), "{barrier:?} completed before the sync {sync:?} it must wait for");
    }
}
