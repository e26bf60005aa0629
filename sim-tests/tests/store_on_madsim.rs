//! The store's run loop on madsim: simulated time, a node killed and restarted by the
//! simulator, sometimes with a power loss, and the disk outliving the process.
//!
//! A node recovers the store from a `SimDisk` that outlives it, then appends a message every
//! few virtual milliseconds while carrying out disk operations with simulated latency and
//! honouring `poll_timeout` with `sleep_until`. The supervisor kills the node at a random
//! moment (a power loss half the time), restarts it, lets it run, stops it, and checks that
//! recovery kept everything the store had called durable and that the audit passes. Each
//! seed runs twice and must end in the same state: the run is a function of its seed.
//!
//! Replay one seed: `KEEL_SIM_SEED=<n> cargo stest --test store_on_madsim`.
#![cfg(madsim)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_core::io::{MonoNanos, Now, Output, UnixMillis};
use keel_core::protocol::message::properties;
use keel_core::store::audit::audit;
use keel_core::store::{AppendRequest, FlushMode, Store, StoreConfig};
use keel_runtime_sim::disk_queue::DiskQueue;
use keel_runtime_sim::sim_disk::SimDisk;
use madsim::runtime::{Handle, Runtime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::{sleep, Instant};

/// What the node reports to the supervisor as it runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Progress {
    /// The highest `flushed_end` the store reported since the last restart.
    durable: u64,
    /// Appends accepted.
    appended: u64,
}

fn config(seed: u64) -> StoreConfig {
    let mut config = StoreConfig::new("10.0.0.1:10911".parse().unwrap());
    config.segment_size = 4096;
    config.queue_file_entries = 8;
    config.max_message_size = 512;
    config.flush_mode =
        if seed.is_multiple_of(2) { FlushMode::Sync } else { FlushMode::Async { interval_ms: 20 } };
    config.checkpoint_interval_ms = 50;
    config
}

fn now(start: Instant) -> Now {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Now {
        mono: MonoNanos(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)),
        wall: UnixMillis(i64::try_from(wall).unwrap_or(i64::MAX)),
    }
}

/// The node: recover, then append and carry out disk operations until killed.
async fn node_main(seed: u64, disk: Arc<Mutex<SimDisk>>, progress: Arc<Mutex<Progress>>) {
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED);
    let (mut store, _) = Store::recover(config(seed), &*disk.lock().unwrap(), now(start)).expect("recovery");
    let mut queue = DiskQueue::new();
    let body = vec![b'm'; 200];
    let props = properties::encode(&[("TAGS", "TagA")]);
    let born_host = "10.0.0.9:50000".parse().unwrap();
    let mut next_append = Instant::now();
    loop {
        while let Some(output) = {
            store.start_round();
            store.poll_output()
        } {
            match output {
                Output::Disk { io, op } => queue.push(io, op),
                Output::Fatal { reason } => panic!("fatal: {reason}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        // One disk operation per step, after a simulated latency.
        if !queue.is_empty() {
            sleep(Duration::from_micros(rng.gen_range(50..2000))).await;
            let completion = queue.run_one(&mut disk.lock().unwrap(), &mut rng);
            if let Some((io, result)) = completion {
                store.handle_disk_done(now(start), io, result);
            }
        } else {
            let deadline = store.poll_timeout().map_or(next_append, |d| {
                let at = start + Duration::from_nanos(d.0);
                at.min(next_append)
            });
            tokio::time::sleep_until(deadline).await;
        }
        let t = now(start);
        if store.poll_timeout().is_some_and(|d| d <= t.mono) {
            store.handle_timeout(t);
        }
        if store.is_ready() && Instant::now() >= next_append {
            let req = AppendRequest {
                topic: "SimTopic",
                queue_id: rng.gen_range(0..4),
                flag: 0,
                sys_flag: 0,
                born_timestamp: t.wall.0,
                born_host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: &body,
                properties: &props,
            };
            store.append(t, &req).expect("append");
            next_append = Instant::now() + Duration::from_millis(rng.gen_range(1..10));
            progress.lock().unwrap().appended += 1;
        }
        let mut p = progress.lock().unwrap();
        p.durable = p.durable.max(store.flushed_end().0);
    }
}

/// Recover a copy of `disk` to completion (as the next boot would) and audit it.
fn recover_copy(seed: u64, disk: &SimDisk) -> keel_core::store::audit::AuditReport {
    let mut copy = disk.clone();
    let (mut store, _) = Store::recover(config(seed), &copy, Now::default()).expect("recovery");
    let mut queue = DiskQueue::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    loop {
        while let Some(Output::Disk { io, op }) = {
            store.start_round();
            store.poll_output()
        } {
            queue.push(io, op);
        }
        let Some((io, result)) = queue.run_one(&mut copy, &mut rng) else { break };
        store.handle_disk_done(Now::default(), io, result);
    }
    assert!(store.is_ready(), "seed {seed}: recovery did not finish");
    audit(&config(seed), &copy).unwrap_or_else(|p| panic!("seed {seed}: {}", p.join("\n")))
}

/// One seeded run; returns (records recovered, log end) for the determinism check.
fn run(seed: u64) -> (usize, u64) {
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.block_on(async move {
        let handle = Handle::current();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let disk = Arc::new(Mutex::new(SimDisk::new()));
        let progress = Arc::new(Mutex::new(Progress::default()));
        let node = handle
            .create_node()
            .name("broker")
            .ip("10.0.0.1".parse().unwrap())
            .init({
                let (disk, progress) = (disk.clone(), progress.clone());
                move || node_main(seed, disk.clone(), progress.clone())
            })
            .build();
        let mut appended = 0;
        let mut last = (0, 0);
        for round in 0..4 {
            sleep(Duration::from_millis(rng.gen_range(100..600))).await;
            handle.kill(node.id());
            let progress_now = std::mem::take(&mut *progress.lock().unwrap());
            appended += progress_now.appended;
            if rng.gen_bool(0.5) {
                disk.lock().unwrap().crash(&mut rng);
            }
            let report = recover_copy(seed, &disk.lock().unwrap());
            assert!(
                report.end >= progress_now.durable,
                "seed {seed} round {round}: recovery ends at {}, but {} was durable",
                report.end,
                progress_now.durable
            );
            last = (report.records.len(), report.end);
            handle.restart(node.id());
        }
        handle.kill(node.id());
        assert!(appended > 0, "seed {seed}: the node never appended");
        last
    })
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("KEEL_SIM_SEED") {
        return vec![seed.parse().expect("KEEL_SIM_SEED is a number")];
    }
    let count: u64 = std::env::var("KEEL_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
    (0..count).collect()
}

#[test]
fn store_survives_kills_and_power_loss_on_simulated_time() {
    let mut total_records = 0;
    for seed in seeds() {
        let first = run(seed);
        let second = run(seed);
        assert_eq!(first, second, "seed {seed} is not deterministic");
        total_records += first.0;
        if std::env::var_os("KEEL_SIM_VERBOSE").is_some() {
            println!("seed {seed}: {} records, log end {}", first.0, first.1);
        }
    }
    assert!(total_records > 0, "no records survived any run: the workload did not run");
}
