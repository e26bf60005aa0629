//! Property test: the store survives random append, sync and crash sequences.
//!
//! Each seed picks a configuration (tiny segments and ConsumeQueue files so rolls are common,
//! flush mode, checkpoint interval, sometimes failing fsyncs), then runs a few hundred random
//! steps against a `SimDisk`: appends, carrying out some of the queued disk operations, time
//! passing, clean shutdowns, process kills (queued operations lost, page cache kept) and power
//! losses (unsynced pages kept, lost or torn). After every restart it checks:
//!
//! - the audit passes (INV-1, 2, 5, 6, 7 and zeros after the end);
//! - the recovered log is a prefix of what was appended, record for record;
//! - the prefix holds everything the store had reported durable (`flushed_end`);
//! - every ConsumeQueue entry points at its record (the audit), and the store's own queue
//!   offsets equal the audit's;
//! - new appends continue each queue's offsets without a gap and without reusing a surviving
//!   offset; store timestamps never go backwards in log order, even when the clock does;
//! - after a clean shutdown the abort marker is gone and recovery re-dispatches nothing;
//! - the IndexFile (tiny: files fill and roll, keys collide) finds a sample of the recovered
//!   records by UNIQ_KEY and by a KEYS token, and never returns a record for a key it lacks.
//!
//! A failure names its seed; `KEEL_STORE_SEED=<seed>` replays exactly that one.
//! `KEEL_STORE_SEEDS=<n>` changes how many run (default 1000).

use std::collections::BTreeMap;

use keel_core::io::{MonoNanos, Now, Output, StoreRead, UnixMillis};
use keel_core::protocol::message::properties;
use keel_core::protocol::message::stored::{parse_record, sys_flag, Parsed};
use keel_core::store::audit::{audit, AuditReport};
use keel_core::store::{
    paths, AppendRequest, FlushMode, KeyQuery, RecoveryKind, Store, StoreConfig, StoreError,
};
use keel_runtime_sim::disk_queue::DiskQueue;
use keel_runtime_sim::sim_disk::{SimDisk, SimDiskFaults};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPICS: [&str; 3] = ["TopicA", "TopicB", "%RETRY%group"];

/// What the test appended, in log order.
#[derive(Debug, Clone)]
struct Expected {
    offset: u64,
    end: u64,
    topic: &'static str,
    queue_id: i32,
    queue_offset: Option<u64>,
    body: Vec<u8>,
}

struct World {
    seed: u64,
    rng: ChaCha8Rng,
    config: StoreConfig,
    disk: SimDisk,
    queue: DiskQueue,
    store: Store,
    now: Now,
    appended: Vec<Expected>,
    next_offsets: BTreeMap<(&'static str, i32), u64>,
    fatal: bool,
    crashes: u64,
    shutdowns: u64,
    repairs: u64,
    /// Whether the store was running (not booting) when its current repair began.
    repair_from_running: Option<bool>,
    /// Appends so far: each gets unique keys from it.
    next_key: u64,
}

fn random_config(rng: &mut ChaCha8Rng) -> StoreConfig {
    let mut config = StoreConfig::new("10.0.0.1:10911".parse().unwrap());
    config.segment_size = [512, 1024, 2048, 4096, 16384][rng.gen_range(0..5)];
    config.queue_file_entries = rng.gen_range(1..=8);
    config.flush_mode = if rng.gen_bool(0.5) {
        FlushMode::Sync
    } else {
        FlushMode::Async { interval_ms: rng.gen_range(1..40) }
    };
    config.checkpoint_interval_ms = rng.gen_range(1..60);
    config.max_message_size = (config.segment_size as usize / 3).min(3000);
    config.index = keel_core::store::IndexConfig {
        enabled: true,
        max_hash_slots: [1, 7, 64][rng.gen_range(0..3)],
        max_entries: [65, 100, 300][rng.gen_range(0..3)],
    };
    config
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let config = random_config(&mut rng);
        let faults = SimDiskFaults {
            sync_failure: if rng.gen_bool(0.2) { 0.01 } else { 0.0 },
            write_error: if rng.gen_bool(0.2) { 0.01 } else { 0.0 },
            ..SimDiskFaults::default()
        };
        let disk = SimDisk::with_faults(faults);
        let now = Now { mono: MonoNanos(1_000_000_000), wall: UnixMillis(1_726_000_000_000) };
        let (store, report) = Store::recover(config.clone(), &disk, now).expect("fresh recovery");
        assert_eq!(report.kind, RecoveryKind::Fresh);
        let mut world = Self {
            seed,
            rng,
            config,
            disk,
            queue: DiskQueue::new(),
            store,
            now,
            appended: Vec::new(),
            next_offsets: BTreeMap::new(),
            fatal: false,
            crashes: 0,
            shutdowns: 0,
            repairs: 0,
            repair_from_running: None,
            next_key: 0,
        };
        world.pump();
        world
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "seed {}: {what}\nreplay: KEEL_STORE_SEED={} cargo test -p keel-runtime-sim --test store_crash",
            self.seed, self.seed
        )
    }

    /// Move the store's outputs into the disk queue.
    fn pump(&mut self) {
        while let Some(output) = {
            self.store.start_round();
            self.store.poll_output()
        } {
            match output {
                Output::Disk { io, op } => self.queue.push(io, op),
                Output::Fatal { .. } => self.fatal = true,
                other => self.fail(format!("unexpected output {other:?}")),
            }
        }
    }

    fn run_ops(&mut self, count: usize) {
        for _ in 0..count {
            let Some((io, result)) = self.queue.run_one(&mut self.disk, &mut self.rng) else { return };
            let running = self.store.is_ready();
            self.store.handle_disk_done(self.now, io, result);
            if self.store.is_repairing() && self.repair_from_running.is_none() {
                self.repair_from_running = Some(running);
            }
            self.pump();
        }
    }

    fn tick(&mut self) {
        self.now.mono = self.now.mono.plus_millis(self.rng.gen_range(1..30));
        // The wall clock mostly advances, sometimes steps back.
        self.now.wall.0 +=
            if self.rng.gen_bool(0.1) { -self.rng.gen_range(0..5000) } else { self.rng.gen_range(0..30) };
        if self.store.poll_timeout().is_some_and(|deadline| deadline <= self.now.mono) {
            self.store.handle_timeout(self.now);
            self.pump();
        }
    }

    fn append(&mut self) {
        let topic = TOPICS[self.rng.gen_range(0..TOPICS.len())];
        let queue_id = self.rng.gen_range(0..3);
        let body_len = self.rng.gen_range(0..=self.config.max_message_size / 2);
        let body: Vec<u8> = (0..body_len).map(|_| self.rng.r#gen()).collect();
        let tag = format!("Tag{}", self.rng.gen_range(0..4));
        self.next_key += 1;
        let unique = format!("UK{:010}", self.next_key);
        let mut keys = format!("order-{}", self.next_key);
        for _ in 0..self.rng.gen_range(0..3) {
            keys.push_str(&format!(" hot{}", self.rng.gen_range(0..3)));
        }
        let mut props = properties::encode(&[
            ("TAGS", tag.as_str()),
            ("KEYS", keys.as_str()),
            ("UNIQ_KEY", unique.as_str()),
        ]);
        if self.rng.gen_bool(0.2) {
            props.pop(); // some clients omit the trailing separator
        }
        let half = self.rng.gen_bool(0.05);
        let req = AppendRequest {
            topic,
            queue_id,
            flag: 0,
            sys_flag: if half { sys_flag::TRANSACTION_PREPARED } else { 0 },
            born_timestamp: self.now.wall.0,
            born_host: "10.0.0.2:50000".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: &body,
            properties: &props,
        };
        match self.store.append(self.now, &req) {
            Ok(appended) => {
                let key = (topic, queue_id);
                if let Some(queue_offset) = appended.queue_offset {
                    let expected = self.next_offsets.get(&key).copied().unwrap_or(0);
                    if queue_offset.0 != expected {
                        self.fail(format!(
                            "{topic}:{queue_id} got offset {} but {expected} was next",
                            queue_offset.0
                        ));
                    }
                    self.next_offsets.insert(key, expected + 1);
                } else if !half {
                    self.fail("a normal message was not dispatched");
                }
                if let Some(last) = self.appended.last() {
                    if appended.phys_offset.0 < last.end {
                        self.fail("appended over an earlier record");
                    }
                }
                self.appended.push(Expected {
                    offset: appended.phys_offset.0,
                    end: appended.end().0,
                    topic,
                    queue_id,
                    queue_offset: appended.queue_offset.map(|q| q.0),
                    body,
                });
            }
            Err(
                StoreError::NotReady | StoreError::ShutDown | StoreError::Failed(_) | StoreError::Repairing,
            ) => {}
            Err(other) => self.fail(format!("append refused: {other}")),
        }
        self.pump();
    }

    /// Carry out queued operations until the store is ready (or fails again).
    fn finish_boot(&mut self) -> bool {
        let mut steps = 0;
        while !self.store.is_ready() {
            if self.store.is_repairing() {
                self.repair_and_check();
                continue;
            }
            if self.fatal || self.queue.is_empty() {
                return false;
            }
            self.run_ops(1);
            steps += 1;
            if steps > 100_000 {
                self.fail("boot never finished");
            }
        }
        true
    }

    /// A disk operation failed: let what is in flight complete, rebuild the store in place,
    /// check that it kept every record below the cut (everything written before a failed
    /// write; everything synced before a failed fsync) and nothing else.
    fn repair_and_check(&mut self) {
        while self.store.io_in_flight() > 0 {
            if self.queue.is_empty() {
                self.fail("operations in flight that the runtime never got");
            }
            self.run_ops(1);
        }
        if let Some(retry_at) = self.store.poll_timeout() {
            self.now.mono = self.now.mono.max(retry_at);
        }
        if !self.store.repair_due(self.now.mono) {
            self.fail("a drained store at its retry time is not due for repair");
        }
        let durable = self.store.flushed_end().0;
        let cut = self.store.repair_cut().map_or(0, |c| c.0);
        // A rebuild that ends short of the cut reads again until two reads agree.
        let mut tries = 0;
        let (store, report) = loop {
            if let Some(rebuilt) = self.store.rebuild(&self.disk, self.now) {
                if std::env::var("KEEL_STORE_DEBUG").is_ok() {
                    eprintln!(
                        "repair at cut {cut}: {:#?}\nindex files after: {:?}",
                        rebuilt.1,
                        rebuilt.0.index_files()
                    );
                }
                break rebuilt;
            }
            tries += 1;
            if tries > 20 {
                self.fail("rebuilding the store never succeeded");
            }
            if let Some(retry_at) = self.store.poll_timeout() {
                self.now.mono = self.now.mono.max(retry_at);
            }
        };
        self.repairs += 1;
        if report.recovered_end > cut {
            self.fail(format!("rebuilt store kept {} past the cut at {cut}", report.recovered_end));
        }
        if self.repair_from_running.take() == Some(true) && report.recovered_end != cut {
            // Below the cut every write completed, and nothing the sim disk drops lies there.
            self.fail(format!("rebuilt store ends at {} short of the cut at {cut}", report.recovered_end));
        }
        self.store = store;
        self.pump();
        if !self.finish_boot() {
            return self.crash_and_check(false);
        }
        let audit_report = audit(&self.config, &self.disk).unwrap_or_else(|p| self.fail(p.join("\n")));
        self.check_prefix(&audit_report, durable);
    }

    /// Kill the process (and, on power loss, the page cache), restart, check everything.
    fn crash_and_check(&mut self, power_loss: bool) {
        self.crashes += 1;
        let durable = self.store.flushed_end().0;
        self.queue.clear();
        self.fatal = false;
        self.repair_from_running = None;
        if power_loss {
            self.disk.crash(&mut self.rng);
        }
        let (store, report) = match Store::recover(self.config.clone(), &self.disk, self.now) {
            Ok(recovered) => recovered,
            Err(e) => self.fail(format!("recovery failed: {e}")),
        };
        if std::env::var("KEEL_STORE_DEBUG").is_ok() {
            eprintln!("crash (power loss: {power_loss}), durable {durable}: {report:#?}");
            eprintln!("index files after recovery: {:?}", store.index_files());
        }
        self.store = store;
        self.pump();
        if !self.finish_boot() {
            // An injected fsync failure during recovery: crash again.
            return self.crash_and_check(false);
        }
        let report = match audit(&self.config, &self.disk) {
            Ok(report) => report,
            Err(problems) => {
                if std::env::var("KEEL_STORE_DEBUG").is_ok() {
                    for e in &self.appended {
                        eprintln!(
                            "appended {} .. {} {}:{} q{:?}",
                            e.offset, e.end, e.topic, e.queue_id, e.queue_offset
                        );
                    }
                    for p in self.disk.paths() {
                        if p.starts_with("consumequeue") {
                            let f = keel_core::io::FilePath::new(&p).unwrap();
                            let mut buf = vec![0u8; self.disk.len(&f).unwrap().unwrap() as usize];
                            self.disk.read_at(&f, 0, &mut buf).unwrap();
                            let entries: Vec<_> = buf
                                .chunks(20)
                                .map(keel_core::store::consume_queue::CqEntry::decode)
                                .collect();
                            eprintln!("{p}: {entries:?}");
                        }
                    }
                }
                self.fail(format!("audit after recovery:\n{}", problems.join("\n")))
            }
        };
        self.check_prefix(&report, durable);
    }

    fn check_prefix(&mut self, report: &AuditReport, durable: u64) {
        if report.records.len() > self.appended.len() {
            self.fail(format!(
                "{} records recovered but only {} appended",
                report.records.len(),
                self.appended.len()
            ));
        }
        let mut last_timestamp = i64::MIN;
        for (found, expected) in report.records.iter().zip(&self.appended) {
            let Ok(Parsed::Message(view)) = parse_record(&found.bytes) else {
                self.fail("audit record unparsable")
            };
            let same = found.offset == expected.offset
                && found.topic == expected.topic
                && found.queue_id == expected.queue_id
                && found.queue_offset == expected.queue_offset
                && view.record.body == expected.body.as_slice();
            if !same {
                self.fail(format!(
                    "recovered record at {} differs from what was appended there",
                    found.offset
                ));
            }
            if view.head().store_timestamp < last_timestamp {
                self.fail(format!("store timestamp went backwards at {}", found.offset));
            }
            last_timestamp = view.head().store_timestamp;
        }
        let kept = report.records.len();
        if let Some(lost) = self.appended.get(kept) {
            if lost.end <= durable {
                self.fail(format!(
                    "record at {} was durable (flushed to {durable}) but is gone",
                    lost.offset
                ));
            }
        }
        if self.store.write_pos().0 != report.end {
            self.fail(format!(
                "store resumes at {} but the log ends at {}",
                self.store.write_pos().0,
                report.end
            ));
        }
        let store_queues: BTreeMap<(String, i32), (u64, u64)> = self
            .store
            .queues()
            .filter(|(_, _, min, next)| next > min)
            .map(|(t, q, min, next)| ((t.to_owned(), q), (min.0, next.0)))
            .collect();
        if store_queues != report.queues {
            self.fail(format!("store queues {store_queues:?} differ from the disk's {:?}", report.queues));
        }
        self.check_index(report);
        self.appended.truncate(kept);
        self.next_offsets.clear();
        for expected in &self.appended {
            if let Some(q) = expected.queue_offset {
                self.next_offsets.insert((expected.topic, expected.queue_id), q + 1);
            }
        }
    }

    /// A sample of the recovered records (and the newest few) are found by their UNIQ_KEY and
    /// their `order-` key; a key no record has finds nothing.
    fn check_index(&mut self, report: &AuditReport) {
        let records = &report.records;
        let mut sample: Vec<usize> =
            (0..12).filter(|_| !records.is_empty()).map(|_| self.rng.gen_range(0..records.len())).collect();
        sample.extend(records.len().saturating_sub(4)..records.len());
        for at in sample {
            let Some(found) = records.get(at) else { continue };
            let Ok(Parsed::Message(view)) = parse_record(&found.bytes) else {
                self.fail("audit record unparsable")
            };
            let props = view.record.properties;
            let unique = properties::find(props, "UNIQ_KEY").map(|k| String::from_utf8_lossy(k).into_owned());
            let order = properties::find(props, "KEYS")
                .map(|k| String::from_utf8_lossy(k).split(' ').next().unwrap_or_default().to_owned());
            for (key, is_unique) in [(unique, true), (order, false)] {
                let Some(key) = key else { self.fail(format!("record at {} has no keys", found.offset)) };
                let query = KeyQuery {
                    topic: &found.topic,
                    key: &key,
                    unique: is_unique,
                    max: 64,
                    begin_ms: 0,
                    end_ms: i64::MAX,
                };
                let result = self.store.query_by_key(&self.disk, &query).unwrap_or_else(|e| {
                    if std::env::var("KEEL_STORE_DEBUG").is_ok() {
                        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
                        eprintln!("records at {offsets:?}; index {:?}", self.config.index);
                        let f = keel_core::io::FilePath::new("index/00000000000000000000").unwrap();
                        let mut buf = vec![0u8; self.disk.len(&f).unwrap().unwrap_or(0) as usize];
                        self.disk.read_at(&f, 0, &mut buf).unwrap();
                        let slots = self.config.index.max_hash_slots as usize;
                        for (i, e) in buf[40 + 4 * slots..].chunks(20).enumerate().take(40) {
                            eprintln!(
                                "entry {i}: phys {} prev {}",
                                i64::from_be_bytes(e[4..12].try_into().unwrap()),
                                i32::from_be_bytes(e[16..20].try_into().unwrap())
                            );
                        }
                    }
                    self.fail(e)
                });
                let offsets: Vec<i64> = result
                    .records
                    .iter()
                    .filter_map(|r| match parse_record(r) {
                        Ok(Parsed::Message(v)) => Some(v.head().physical_offset),
                        _ => None,
                    })
                    .collect();
                if offsets != [found.offset as i64] {
                    if std::env::var("KEEL_STORE_DEBUG").is_ok() {
                        eprintln!("index {:?}: files {:?}", self.config.index, self.store.index_files());
                    }
                    self.fail(format!(
                        "index query for {key:?} found {offsets:?}, not the record at {}",
                        found.offset
                    ));
                }
            }
        }
        let none = KeyQuery {
            topic: "TopicA",
            key: "order-0",
            unique: false,
            max: 64,
            begin_ms: 0,
            end_ms: i64::MAX,
        };
        let result = self.store.query_by_key(&self.disk, &none).unwrap_or_else(|e| self.fail(e));
        if !result.records.is_empty() {
            self.fail("an index query for a key no record has found something");
        }
    }

    fn shutdown_and_check(&mut self) {
        self.shutdowns += 1;
        self.store.begin_shutdown();
        self.pump();
        let mut steps = 0;
        while !self.store.is_stopped() {
            if self.fatal || self.queue.is_empty() {
                // A failed fsync during shutdown: the process dies instead.
                return self.crash_and_check(false);
            }
            self.run_ops(1);
            steps += 1;
            if steps > 100_000 {
                self.fail("shutdown never finished");
            }
        }
        if self.disk.len(&paths::abort()).unwrap().is_some() {
            self.fail("abort marker left after a clean shutdown");
        }
        let durable = self.store.flushed_end().0;
        if durable != self.store.write_pos().0 {
            self.fail("clean shutdown left data unflushed");
        }
        let (store, report) =
            Store::recover(self.config.clone(), &self.disk, self.now).unwrap_or_else(|e| self.fail(e));
        if report.kind != RecoveryKind::Normal || report.redispatched != 0 || report.rebuilt_queues {
            self.fail(format!("restart after clean shutdown was not a plain normal recovery: {report:?}"));
        }
        self.store = store;
        self.pump();
        if !self.finish_boot() {
            return self.crash_and_check(false);
        }
        let audit_report = audit(&self.config, &self.disk).unwrap_or_else(|p| self.fail(p.join("\n")));
        if audit_report.records.len() != self.appended.len() {
            self.fail("a clean shutdown lost records");
        }
        self.check_prefix(&audit_report, durable);
    }

    fn run(&mut self, steps: usize) {
        if !self.finish_boot() {
            self.crash_and_check(false);
        }
        for _ in 0..steps {
            if self.fatal {
                self.crash_and_check(false);
                continue;
            }
            if self.store.is_repairing() && self.rng.gen_bool(0.5) {
                self.repair_and_check();
                continue;
            }
            match self.rng.gen_range(0..100) {
                0..=44 => self.append(),
                45..=79 => {
                    let n = self.rng.gen_range(1..8);
                    self.run_ops(n);
                }
                80..=91 => self.tick(),
                92..=94 => self.crash_and_check(false),
                95..=98 => self.crash_and_check(true),
                _ => self.shutdown_and_check(),
            }
        }
        self.crash_and_check(true);
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("KEEL_STORE_SEED") {
        return vec![seed.parse().expect("KEEL_STORE_SEED is a number")];
    }
    let count = std::env::var("KEEL_STORE_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    // Seeds past the default range that once failed, run every time.
    (0..count).chain(REGRESSIONS.iter().copied().filter(|s| *s >= count)).collect()
}

/// 11875: a stale ConsumeQueue entry past a power loss's end looked trusted to the search
/// for the kept entries, which skipped the untrusted one below it; the tail check then
/// matched that one against a record in a segment recovery was about to remove.
const REGRESSIONS: [u64; 1] = [11_875];

#[test]
fn recovery_keeps_a_prefix_holding_everything_synced() {
    let mut crashes = 0;
    let mut shutdowns = 0;
    let mut repairs = 0;
    let seeds = seeds();
    for &seed in &seeds {
        let mut world = World::new(seed);
        world.run(300);
        crashes += world.crashes;
        shutdowns += world.shutdowns;
        repairs += world.repairs;
    }
    println!(
        "store_crash: {} seeds, {crashes} restarts after crashes, {shutdowns} clean shutdowns, {repairs} repairs in place",
        seeds.len()
    );
    assert!(crashes > seeds.len() as u64, "too few crashes exercised");
    assert!(shutdowns > 0, "no clean shutdown exercised");
    assert!(seeds.len() < 100 || repairs > 0, "no repair in place exercised");
}
