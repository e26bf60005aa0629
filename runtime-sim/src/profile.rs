//! A run's swarm profile: everything a seed decides before the run starts — the broker's
//! configuration, the workload, and which faults are on and how hard (swarm testing: each
//! seed leaves some faults out, because some faults hide the bugs others reveal).
//!
//! Printed whole on a failure, so a reader sees what the seed did without replaying it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How often and for how long a recurring fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurring {
    /// Mean time between strikes, milliseconds (exponential).
    pub mean_interval_ms: u64,
    /// How long one lasts (down time, clog time), milliseconds, drawn uniformly up to this.
    pub max_duration_ms: u64,
}

/// A fault at a fixed moment: the stuff of scripted regression scenarios, which pin a bug
/// the seeds found to a schedule that does not drift as the code changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripted {
    /// Kill the name server at `at_ms` and restart it `down_ms` later.
    KillNamesrv {
        /// When, milliseconds into the run.
        at_ms: u64,
        /// How long it stays down.
        down_ms: u64,
    },
    /// Kill the broker at `at_ms` (a power loss or a process crash), restart it `down_ms` later.
    KillBroker {
        /// When, milliseconds into the run.
        at_ms: u64,
        /// How long it stays down.
        down_ms: u64,
        /// Whether unsynced data may be lost.
        power_loss: bool,
    },
}

/// Everything a seed decides up front.
#[derive(Debug, Clone, PartialEq)]
pub struct SimProfile {
    /// The seed.
    pub seed: u64,
    /// This seed runs the consumer-group scenario of the client library (one seed in
    /// eight; `crate::group_scenario`) instead of the fault cluster.
    pub groups: bool,
    /// Run the controller-mode scenario instead ([`crate::ha_scenario`]): two sets of three
    /// brokers, three controllers.
    pub ha: bool,
    /// Every fault off: the run must be exact (no duplicate, no failed send).
    pub fault_free: bool,
    /// SYNC_FLUSH (ack after fsync) or ASYNC_FLUSH.
    pub sync_flush: bool,
    /// CommitLog segment size (tiny, so segments roll over often).
    pub segment_size: u64,
    /// Entries per ConsumeQueue file.
    pub queue_file_entries: u64,
    /// ASYNC_FLUSH interval, milliseconds.
    pub flush_interval_ms: u64,
    /// Checkpoint interval, milliseconds.
    pub checkpoint_interval_ms: u64,
    /// Producer nodes.
    pub producers: u32,
    /// Mean gap between one producer's sends, milliseconds.
    pub send_gap_ms: u64,
    /// Largest body, bytes.
    pub max_body: usize,
    /// Longest a consumer takes to process one message, milliseconds.
    pub max_process_ms: u64,
    /// Length of the fault phase, milliseconds.
    pub fault_ms: u64,
    /// Longest the healing phase may take to converge, milliseconds.
    pub heal_ms: u64,
    /// Broker kills (a power loss unless `process_kills_only`).
    pub broker_kills: Option<Recurring>,
    /// Broker kills keep the page cache (a process crash, not a power loss).
    pub process_kills_only: bool,
    /// Consumer kills.
    pub consumer_kills: Option<Recurring>,
    /// Name server kills.
    pub namesrv_kills: Option<Recurring>,
    /// Broker pauses (a stop-the-world stall).
    pub broker_pauses: Option<Recurring>,
    /// Symmetric partitions between the broker and one client or the name server.
    pub partitions: Option<Recurring>,
    /// One-way partitions (the broker's inbound or outbound traffic only).
    pub one_way_partitions: Option<Recurring>,
    /// Network latency range, microseconds (madsim's global send latency).
    pub latency_us: Option<(u64, u64)>,
    /// Probability that a client resets its connection around a request.
    pub resets: f64,
    /// Probability that a client splits a request into several writes.
    pub split_writes: f64,
    /// Probability that a client coalesces a request with the one before it in one write.
    pub coalesce_writes: f64,
    /// Mean disk latency, microseconds.
    pub disk_latency_us: u64,
    /// Probability that a disk write fails (EIO).
    pub write_errors: f64,
    /// Disk capacity in bytes, if limited (ENOSPC).
    pub capacity: Option<u64>,
    /// Probability that an fsync fails.
    pub fsync_failures: f64,
    /// Probability that a CommitLog read returns a flipped bit.
    pub bit_rot: f64,
    /// The broker's constant wall-clock offset, milliseconds.
    pub clock_offset_ms: i64,
    /// The broker's wall-clock drift, parts per million.
    pub clock_drift_ppm: i64,
    /// The broker's monotonic rate error, parts per million.
    pub mono_drift_ppm: i64,
    /// Wall-clock steps (forward or backward) on the broker.
    pub clock_steps: Option<Recurring>,
    /// Faults at fixed moments (scripted scenarios; seeds have none).
    pub script: Vec<Scripted>,
    /// Retention deletes what is older than this (`fileReservedTime`), at every hour.
    pub retention: Option<RetentionProfile>,
    /// The broker has a slave copying its log (one seed in four).
    pub replica: Option<ReplicaProfile>,
    /// IndexFile geometry (hash slots, entries per file): tiny, so files fill, roll and
    /// collide often (one slot puts every key in one chain).
    pub index: keel_core::store::IndexConfig,
}

/// How a seed replicates: the broker is a master with one slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaProfile {
    /// SYNC_MASTER (a send is acknowledged once the slave has it) or ASYNC_MASTER.
    pub sync_master: bool,
    /// Partitions between the master and its slave.
    pub partitions: Option<Recurring>,
}

/// How a seed runs retention: seconds instead of days, so segments expire within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionProfile {
    /// `fileReservedTime`, ms.
    pub reserved_ms: u64,
    /// `cleanResourceInterval`, ms.
    pub check_interval_ms: u64,
    /// `deletePhysicFilesInterval`, ms.
    pub delete_interval_ms: u64,
}

fn maybe(rng: &mut ChaCha8Rng, on: bool, mean: (u64, u64), max: (u64, u64)) -> Option<Recurring> {
    (on && rng.gen_bool(0.5)).then(|| Recurring {
        mean_interval_ms: rng.gen_range(mean.0..mean.1),
        max_duration_ms: rng.gen_range(max.0..max.1),
    })
}

fn chance(rng: &mut ChaCha8Rng, on: bool, range: (f64, f64)) -> f64 {
    if on && rng.gen_bool(0.5) {
        rng.gen_range(range.0..range.1)
    } else {
        0.0
    }
}

impl SimProfile {
    /// The profile seed `seed` stands for.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        Self::draw(seed, false)
    }

    /// The profile of `seed`, with every random fault off if `quiet`.
    fn draw(seed: u64, quiet: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7072_6f66_696c_6521);
        let fault_free = rng.gen_ratio(1, 20);
        let on = !fault_free && !quiet;
        let sync_flush = rng.gen_bool(0.5);
        Self {
            seed,
            groups: !quiet && seed % 8 == 7,
            ha: !quiet && seed % 16 == 3,
            fault_free,
            sync_flush,
            segment_size: [4096, 8192, 16384, 65536][rng.gen_range(0..4)],
            queue_file_entries: [4, 16, 64, 1024][rng.gen_range(0..4)],
            flush_interval_ms: rng.gen_range(5..200),
            checkpoint_interval_ms: rng.gen_range(50..2000),
            producers: rng.gen_range(1..=3),
            send_gap_ms: rng.gen_range(20..200),
            max_body: rng.gen_range(16..600),
            max_process_ms: rng.gen_range(0..20),
            // Mostly short runs, some medium, a few long soaks: long-lived states (many
            // segment and queue-file rollovers, old offsets) only arise in long runs.
            fault_ms: match rng.gen_range(0..20) {
                0 => rng.gen_range(300_000..600_000),
                1..=4 => rng.gen_range(60_000..180_000),
                _ => rng.gen_range(20_000..60_000),
            },
            heal_ms: 90_000,
            broker_kills: maybe(&mut rng, on, (3_000, 20_000), (10, 3_000)),
            process_kills_only: rng.gen_bool(0.2),
            consumer_kills: maybe(&mut rng, on, (3_000, 20_000), (10, 3_000)),
            namesrv_kills: maybe(&mut rng, on, (5_000, 30_000), (10, 5_000)),
            broker_pauses: maybe(&mut rng, on, (3_000, 20_000), (10, 4_000)),
            partitions: maybe(&mut rng, on, (3_000, 20_000), (100, 8_000)),
            one_way_partitions: maybe(&mut rng, on, (3_000, 20_000), (100, 8_000)),
            latency_us: (on && rng.gen_bool(0.5)).then(|| {
                let low = rng.gen_range(10..2_000);
                (low, low + rng.gen_range(1..20_000))
            }),
            resets: chance(&mut rng, on, (0.005, 0.1)),
            split_writes: chance(&mut rng, on, (0.05, 0.5)),
            coalesce_writes: chance(&mut rng, on, (0.05, 0.5)),
            disk_latency_us: if on && rng.gen_bool(0.5) { rng.gen_range(10..20_000) } else { 0 },
            write_errors: chance(&mut rng, on, (0.0005, 0.01)),
            capacity: (on && rng.gen_bool(0.25)).then(|| rng.gen_range(64..512) * 1024),
            fsync_failures: chance(&mut rng, on, (0.001, 0.02)),
            bit_rot: chance(&mut rng, on, (0.001, 0.05)),
            clock_offset_ms: if on && rng.gen_bool(0.5) { rng.gen_range(-600_000..600_000) } else { 0 },
            clock_drift_ppm: if on && rng.gen_bool(0.5) { rng.gen_range(-500..500) } else { 0 },
            mono_drift_ppm: if on && rng.gen_bool(0.5) { rng.gen_range(-500..500) } else { 0 },
            clock_steps: maybe(&mut rng, on, (2_000, 15_000), (1_000, 3_600_000)),
            script: Vec::new(),
            // Drawn last, so adding it left every other field of a seed as it was.
            retention: (!quiet && rng.gen_ratio(1, 3)).then(|| RetentionProfile {
                reserved_ms: rng.gen_range(3_000..60_000),
                check_interval_ms: rng.gen_range(200..5_000),
                delete_interval_ms: rng.gen_range(10..1_000),
            }),
            // Drawn after everything else, so adding it left every other field as it was.
            replica: (!quiet && rng.gen_ratio(1, 4)).then(|| ReplicaProfile {
                sync_master: rng.gen_bool(0.5),
                partitions: maybe(&mut rng, on, (3_000, 20_000), (100, 8_000)),
            }),
            // Drawn last of all, so adding it left every other field as it was.
            index: keel_core::store::IndexConfig {
                enabled: true,
                max_hash_slots: [1, 7, 64, 256][rng.gen_range(0..4)],
                max_entries: [65, 100, 300, 1000][rng.gen_range(0..4)],
            },
        }
    }

    /// A run with no random fault at all, only `script`: a scripted scenario. The broker
    /// flushes synchronously, so nothing acknowledged may be lost.
    #[must_use]
    pub fn scripted(seed: u64, script: Vec<Scripted>) -> Self {
        let mut profile = Self::draw(seed, true);
        profile.fault_free = false;
        profile.sync_flush = true;
        profile.script = script;
        profile
    }
}

/// A tiny IndexFile geometry picked by `seed`, for scenarios whose profiles draw none: files
/// fill, roll and collide often.
#[must_use]
pub fn tiny_index(seed: u64) -> keel_core::store::IndexConfig {
    let pick = usize::try_from(seed % 16).unwrap_or(0);
    keel_core::store::IndexConfig {
        enabled: true,
        max_hash_slots: [1, 7, 64, 256][pick % 4],
        max_entries: [65, 100, 300, 1000][pick / 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_a_function_of_its_seed_and_seeds_differ() {
        assert_eq!(SimProfile::from_seed(42), SimProfile::from_seed(42));
        assert_ne!(SimProfile::from_seed(42), SimProfile::from_seed(43));
        let profiles: Vec<SimProfile> = (0..400).map(SimProfile::from_seed).collect();
        let free = profiles.iter().filter(|p| p.fault_free).count();
        assert!((5..60).contains(&free), "about 1 in 20 seeds are fault-free, got {free}");
        assert!(profiles
            .iter()
            .filter(|p| p.fault_free)
            .all(|p| p.broker_kills.is_none() && p.bit_rot == 0.0));
        // Swarm: each fault is on in some seeds and off in others.
        assert!(profiles.iter().any(|p| p.broker_kills.is_some()));
        assert!(profiles.iter().any(|p| !p.fault_free && p.broker_kills.is_none()));
        assert!(profiles.iter().any(|p| p.capacity.is_some()));
        let retention = profiles.iter().filter(|p| p.retention.is_some()).count();
        assert!((80..200).contains(&retention), "about 1 in 3 seeds run retention, got {retention}");
        let replicated: Vec<&SimProfile> = profiles.iter().filter(|p| p.replica.is_some()).collect();
        assert!(
            (60..150).contains(&replicated.len()),
            "about 1 in 4 seeds replicate, got {}",
            replicated.len()
        );
        assert!(replicated.iter().any(|p| p.replica.is_some_and(|r| r.sync_master)));
        assert!(replicated.iter().any(|p| p.replica.is_some_and(|r| !r.sync_master)));
    }
}
