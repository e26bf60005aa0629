//! `SimDisk` as a madsim simulator plugin: each node's disk lives in the simulator, outside
//! the node, so it survives the node; killing the node is a power loss for its disk (dirty
//! pages kept, lost or torn), because madsim calls [`DiskSimulator`]'s `reset_node` on kill.
//!
//! A node reaches its disk through [`NodeDisk`], the runtime's `Disk`: operations run one at
//! a time in submission order on a task of the node, each after a simulated latency, so a
//! kill lands between any two of them (and, with IO in flight, inside a flush). Syncs
//! complete on a second task, as in production: CommitLog and ConsumeQueue writes go on past
//! them, every other operation waits for them (the core's ordering contract,
//! `DiskOp::may_pass_sync`). A sync takes effect when it reaches the head of the queue and
//! completes after its latency, so it covers exactly what came before it. A real fsync may
//! also catch writes that passed it: more is durable than the node counts as synced, which
//! it cannot rely on (after a failed fsync it cuts back to what it counted), so the model
//! leaves that out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_core::io::{DiskError, DiskOp, FilePath, IoId, StoreRead};
use keel_runtime_tokio::disk::{Completion, Disk};
use madsim::plugin::Simulator;
use madsim::task::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

use crate::broker_node::SharedDisk;
use crate::sim_disk::{CrashStats, SimDisk, SimDiskFaults};

/// What one crash did to a node's disk, for the checkers and the fault counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashRecord {
    /// The first CommitLog byte the crash could lose (what was synced before it survives).
    pub commitlog_synced_end: u64,
    /// Disk operations submitted and not completed when the node died.
    pub in_flight: usize,
    /// Pages kept, lost, torn.
    pub stats: CrashStats,
}

/// A node's disk faults that the plugin itself injects (the rest live in [`SimDiskFaults`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskProfile {
    /// Faults carried out by the disk model.
    pub faults: SimDiskFaults,
    /// Mean latency of an operation, microseconds (exponential); 0 for a few microseconds.
    pub mean_latency_us: u64,
    /// Probability that a CommitLog read returns one flipped bit (transient bit-rot).
    pub read_flip: f64,
}

/// Told of every failed disk operation and every power loss, with the synced end of the
/// CommitLog whenever unsynced data may have been lost (`None`: nothing was), so the history
/// holds the fault ledger the checkers excuse losses and repairs by.
pub type LossHook = Arc<dyn Fn(Option<u64>, &str) + Send + Sync>;

struct NodeState {
    disk: SharedDisk,
    rng: ChaCha8Rng,
    profile: DiskProfile,
    read_faults_armed: bool,
    in_flight: usize,
    crashes: Vec<CrashRecord>,
    read_flips: u64,
    /// Whether kills of this node are power losses (else the page cache survives: a crash of
    /// the process only).
    power_loss: bool,
    on_loss: LossHook,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("profile", &self.profile)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// The plugin: every node's disk, by node id.
#[derive(Debug, Default)]
pub struct DiskSimulator {
    nodes: Mutex<BTreeMap<NodeId, NodeState>>,
}

impl Simulator for DiskSimulator {
    fn new(
        _rand: &madsim::rand::GlobalRng,
        _time: &madsim::time::TimeHandle,
        _config: &madsim::Config,
    ) -> Self {
        Self::default()
    }

    // Called by `kill` while madsim holds its simulator lock: touch only our own state here.
    fn reset_node(&self, id: NodeId) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(node) = nodes.get_mut(&id) else { return };
        let in_flight = std::mem::take(&mut node.in_flight);
        node.read_faults_armed = false;
        if !node.power_loss {
            return;
        }
        let rng = &mut node.rng;
        let record = node.disk.with(|disk| {
            let commitlog_synced_end = disk.synced_log_end("commitlog");
            let stats = disk.crash(rng);
            CrashRecord { commitlog_synced_end, in_flight, stats }
        });
        (node.on_loss)(Some(record.commitlog_synced_end), "power loss");
        node.crashes.push(record);
    }
}

impl DiskSimulator {
    fn with<R>(&self, node: NodeId, f: impl FnOnce(&mut NodeState) -> R) -> Option<R> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&node).map(f)
    }

    /// Give `node` an empty disk with `profile`; crash and fault draws come from `seed`;
    /// `on_loss` hears of every loss of unsynced data.
    pub fn attach(&self, node: NodeId, seed: u64, profile: DiskProfile, on_loss: LossHook) {
        let mut disk = SimDisk::new();
        disk.set_faults(profile.faults);
        let state = NodeState {
            disk: SharedDisk::new(disk),
            rng: ChaCha8Rng::seed_from_u64(seed),
            profile,
            read_faults_armed: false,
            in_flight: 0,
            crashes: Vec::new(),
            read_flips: 0,
            power_loss: true,
            on_loss,
        };
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).insert(node, state);
    }

    /// Drop `node`'s disk: the run is over, and a later kill of the node must not crash it.
    pub fn detach(&self, node: NodeId) {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).remove(&node);
    }

    /// Change `node`'s faults from now on (healing sets none).
    pub fn set_profile(&self, node: NodeId, profile: DiskProfile) {
        self.with(node, |n| {
            n.profile = profile;
            n.disk.with(|d| d.set_faults(profile.faults));
        });
    }

    /// Kill `node` through madsim: a power loss for its disk (unsynced pages kept, lost,
    /// torn or garbled), or a crash of the process only, which keeps the page cache.
    pub fn kill(&self, node: NodeId, power_loss: bool) {
        // `reset_node` runs inside `Handle::kill` and reads the flag; every other kill of a
        // node with a disk is a power loss.
        self.with(node, |n| n.power_loss = power_loss);
        madsim::runtime::Handle::current().kill(node);
        self.with(node, |n| n.power_loss = true);
    }

    /// Disk operations of `node` submitted and not yet completed.
    #[must_use]
    pub fn in_flight(&self, node: NodeId) -> usize {
        self.with(node, |n| n.in_flight).unwrap_or(0)
    }

    /// Every crash `node`'s disk went through.
    #[must_use]
    pub fn crashes(&self, node: NodeId) -> Vec<CrashRecord> {
        self.with(node, |n| n.crashes.clone()).unwrap_or_default()
    }

    /// Bits flipped on reads of `node`'s CommitLog.
    #[must_use]
    pub fn read_flips(&self, node: NodeId) -> u64 {
        self.with(node, |n| n.read_flips).unwrap_or(0)
    }

    /// `node`'s disk itself (fault counts, audits).
    #[must_use]
    pub fn disk(&self, node: NodeId) -> Option<SharedDisk> {
        self.with(node, |n| n.disk.clone())
    }

    /// Arm `node`'s read faults: after recovery, so a transient misread cannot make recovery
    /// cut a log that is intact on the platter (recovery trusts what it reads).
    pub fn arm_read_faults(&self, node: NodeId) {
        self.with(node, |n| n.read_faults_armed = true);
    }

    fn latency(&self, node: NodeId) -> Duration {
        self.with(node, |n| {
            let mean = n.profile.mean_latency_us as f64;
            let us =
                if mean <= 0.0 { n.rng.gen_range(1.0..5.0) } else { -mean * (1.0 - n.rng.gen::<f64>()).ln() };
            Duration::from_micros(us.min(2_000_000.0) as u64)
        })
        .unwrap_or_default()
    }

    /// Carry out `op` now; returns its result and, for a failed CommitLog sync, the synced
    /// end it fell back to.
    fn execute(&self, node: NodeId, op: &DiskOp) -> (Result<(), DiskError>, Option<u64>) {
        self.with(node, |n| {
            n.in_flight = n.in_flight.saturating_sub(1);
            let rng = &mut n.rng;
            let log_sync = matches!(op, DiskOp::Sync { file } if file.as_str().starts_with("commitlog/"));
            let (synced_end, result) = n.disk.with(|d| {
                let synced_end = if log_sync { d.synced_log_end("commitlog") } else { u64::MAX };
                (synced_end, d.execute(op, rng))
            });
            // A failed fsync drops the file's dirty pages (Linux marks them clean).
            let lost = log_sync.then_some(synced_end).filter(|_| result.is_err());
            if let Err(error) = &result {
                (n.on_loss)(lost, if log_sync { "fsync failure" } else { &error.detail });
            }
            (result, lost)
        })
        .unwrap_or_else(|| (Err(DiskError::new(keel_core::io::DiskErrorKind::Io, "no disk attached")), None))
    }

    /// A failed sync's completion reaches the node, which only now refuses writes and
    /// repairs its store: told again, so what the node did meanwhile (acknowledged writes
    /// that passed the sync, and may be cut with it; requests taken before the repair) is
    /// judged against the repair it led to.
    fn sync_failure_known(&self, node: NodeId, lost: Option<u64>, error: &DiskError) {
        let cause = if lost.is_some() { "fsync failure, reported" } else { error.detail.as_str() };
        self.with(node, |n| (n.on_loss)(lost, cause));
    }

    fn read(&self, node: NodeId, file: &FilePath, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        self.with(node, |n| {
            let read = n.disk.read_at(file, offset, buf)?;
            let flip = n.read_faults_armed
                && read > 0
                && file.as_str().starts_with("commitlog/")
                && n.profile.read_flip > 0.0
                && n.rng.gen_bool(n.profile.read_flip);
            if flip {
                let at = n.rng.gen_range(0..read);
                buf[at] ^= 1 << n.rng.gen_range(0..8);
                n.read_flips += 1;
            }
            Ok(read)
        })
        .unwrap_or_else(|| Err(DiskError::new(keel_core::io::DiskErrorKind::Io, "no disk attached")))
    }
}

/// A node's view of its disk in the plugin: the runtime's `Disk` under the simulator.
#[derive(Debug)]
pub struct NodeDisk {
    sim: Arc<DiskSimulator>,
    node: NodeId,
    ops: mpsc::UnboundedSender<(IoId, DiskOp)>,
}

impl NodeDisk {
    /// The current node's disk; its operations are carried out by a task of the node, and
    /// their completions are sent to `completions`.
    #[must_use]
    pub fn start(completions: mpsc::UnboundedSender<Completion>) -> Self {
        let sim = madsim::plugin::simulator::<DiskSimulator>();
        let node = madsim::plugin::node();
        let (ops, mut queue) = mpsc::unbounded_channel::<(IoId, DiskOp)>();
        let (syncs, mut sync_queue) = mpsc::unbounded_channel::<(IoId, Result<(), DiskError>, Option<u64>)>();
        // Syncs carried out whose completions have not been sent yet.
        let (pending_tx, mut pending) = tokio::sync::watch::channel(0usize);
        let pending_tx = Arc::new(pending_tx);
        let (sync_sim, sync_pending, sync_completions) =
            (Arc::clone(&sim), Arc::clone(&pending_tx), completions.clone());
        tokio::spawn(async move {
            while let Some((io, result, lost)) = sync_queue.recv().await {
                tokio::time::sleep(sync_sim.latency(node)).await;
                if let Err(error) = &result {
                    sync_sim.sync_failure_known(node, lost, error);
                }
                sync_pending.send_modify(|n| *n = n.saturating_sub(1));
                if sync_completions.send((io, result)).is_err() {
                    return;
                }
            }
        });
        let worker_sim = Arc::clone(&sim);
        tokio::spawn(async move {
            while let Some((io, op)) = queue.recv().await {
                if op.is_sync() {
                    pending_tx.send_modify(|n| *n += 1);
                    // Carried out at the head of the queue: it covers exactly what came
                    // before it; its completion follows after its latency.
                    let (result, lost) = worker_sim.execute(node, &op);
                    if syncs.send((io, result, lost)).is_err() {
                        return;
                    }
                    continue;
                }
                if !op.may_pass_sync() && pending.wait_for(|n| *n == 0).await.is_err() {
                    return;
                }
                tokio::time::sleep(worker_sim.latency(node)).await;
                let (result, _) = worker_sim.execute(node, &op);
                if completions.send((io, result)).is_err() {
                    return;
                }
            }
        });
        Self { sim, node, ops }
    }
}

impl Disk for NodeDisk {
    fn submit(&self, io: IoId, op: DiskOp) {
        self.sim.with(self.node, |n| n.in_flight += 1);
        let _ = self.ops.send((io, op));
    }
}

impl StoreRead for NodeDisk {
    fn read_at(&self, file: &FilePath, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        self.sim.read(self.node, file, offset, buf)
    }

    fn len(&self, file: &FilePath) -> Result<Option<u64>, DiskError> {
        self.sim.with(self.node, |n| n.disk.len(file)).unwrap_or(Ok(None))
    }

    fn list(&self, dir: &FilePath) -> Result<Vec<String>, DiskError> {
        self.sim.with(self.node, |n| n.disk.list(dir)).unwrap_or(Ok(Vec::new()))
    }

    fn disk_usage(&self) -> Option<keel_core::io::DiskUsage> {
        self.sim.with(self.node, |n| n.disk.disk_usage()).flatten()
    }

    fn next_data(&self, file: &FilePath, offset: u64) -> Result<Option<u64>, DiskError> {
        self.sim.with(self.node, |n| n.disk.next_data(file, offset)).unwrap_or(Ok(Some(offset)))
    }
}
