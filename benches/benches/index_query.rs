//! Key queries over a large IndexFile on this machine's disk: a store of `KEEL_INDEX_MESSAGES`
//! messages (default 10,000,000), each with a unique id (UNIQ_KEY) and a key (`KEYS`), so
//! two index entries each, is built once under `target/keel-index-bench` (kept for later
//! runs), shut down and recovered; then random keys and unique ids are queried through
//! `Store::query_by_key` (index walk plus the record read and check), and the latencies'
//! percentiles are printed. Every query must find exactly its one message.
//! Run: `cargo bench -p keel-benches --bench index_query`.

// A bench binary reports through stdout.
#![allow(missing_docs, clippy::print_stdout)]

use std::time::{Duration, Instant};

use keel_core::io::{Now, Output, StoreRead};
use keel_core::protocol::message::properties;
use keel_core::store::{AppendRequest, FlushMode, KeyQuery, Store, StoreConfig};
use keel_runtime_tokio::disk::{Completion, Disk, FileDisk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const QUERIES: usize = 20_000;
const TOPIC: &str = "IndexBench";

fn now() -> Now {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let mono = START.get_or_init(Instant::now).elapsed();
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Now::new(
        1_000_000_000 + u64::try_from(mono.as_nanos()).unwrap_or(0),
        i64::try_from(wall.as_millis()).unwrap_or(0),
    )
}

fn config() -> StoreConfig {
    let mut config = StoreConfig::new("10.0.0.1:10911".parse().unwrap());
    config.flush_mode = FlushMode::Async { interval_ms: 500 };
    // The host's file system is shared: its fullness must not refuse the benchmark's writes.
    config.retention.disk_max_used_ratio = 100;
    config.retention.clean_forcibly_ratio = 100;
    config.retention.warning_ratio = 100;
    config
}

/// Hand the store's outputs to the disk and its completions back; waits for completions
/// while more than `max_in_flight` operations are out.
fn drive(store: &mut Store, disk: &FileDisk, done: &mut UnboundedReceiver<Completion>, max_in_flight: usize) {
    loop {
        while let Some(output) = {
            store.start_round();
            store.poll_output()
        } {
            if let Output::Disk { io, op } = output {
                disk.submit(io, op);
            }
        }
        let blocking = store.io_in_flight() > max_in_flight;
        let next = if blocking { done.blocking_recv() } else { done.try_recv().ok() };
        match next {
            Some((io, result)) => store.handle_disk_done(now(), io, result.map_err(|e| panic!("disk: {e}"))),
            None => return,
        }
    }
}

fn open(dir: &std::path::Path) -> (Store, FileDisk, UnboundedReceiver<Completion>, Duration) {
    let (tx, mut rx) = unbounded_channel();
    let disk = FileDisk::open(dir, tx).expect("open the bench directory");
    let started = Instant::now();
    let (mut store, report) = Store::recover(config(), &disk, now()).expect("recover");
    while !store.is_ready() {
        drive(&mut store, &disk, &mut rx, 0);
    }
    let took = started.elapsed();
    println!("recovered {:?} in {took:.2?}: log end {}", report.kind, report.recovered_end);
    (store, disk, rx, took)
}

fn build(dir: &std::path::Path, messages: u64) {
    let (mut store, disk, mut rx, _) = open(dir);
    let body = vec![b'x'; 100];
    let started = Instant::now();
    for i in 0..messages {
        let (unique, key) = (format!("{i:032X}"), format!("order-{i}"));
        let props =
            properties::encode(&[("TAGS", "TagA"), ("KEYS", key.as_str()), ("UNIQ_KEY", unique.as_str())]);
        let req = AppendRequest {
            topic: TOPIC,
            queue_id: (i % 8) as i32,
            flag: 0,
            sys_flag: 0,
            born_timestamp: now().wall.0,
            born_host: "10.0.0.2:50000".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: &body,
            properties: &props,
        };
        store.append(now(), &req).expect("append");
        if i % 1000 == 999 {
            drive(&mut store, &disk, &mut rx, 256);
            store.handle_timeout(now());
        }
        if i % 1_000_000 == 999_999 {
            println!("built {} messages in {:.1?}", i + 1, started.elapsed());
        }
    }
    store.begin_shutdown();
    while !store.is_stopped() {
        drive(&mut store, &disk, &mut rx, 0);
    }
    println!("built {messages} messages in {:.1?}", started.elapsed());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` run of benches passes nothing
    // to say "measure": keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let messages: u64 =
        std::env::var("KEEL_INDEX_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| format!("{}/../target", env!("CARGO_MANIFEST_DIR")));
    let dir = std::path::PathBuf::from(target).join(format!("keel-index-bench-{messages}"));
    let marker = dir.join("built");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        build(&dir, messages);
        std::fs::write(&marker, b"").expect("marker");
    }
    let (mut store, disk, mut rx, _) = open(&dir);
    println!("index files (name, entries, in memory): {:?}", store.index_files());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut latencies = Vec::with_capacity(QUERIES);
    for n in 0..QUERIES {
        let reader: &dyn StoreRead = &disk;
        let i = rng.gen_range(0..messages);
        let (unique, key) = (format!("{i:032X}"), format!("order-{i}"));
        let by_unique = n % 2 == 0;
        let query = KeyQuery {
            topic: TOPIC,
            key: if by_unique { &unique } else { &key },
            unique: by_unique,
            max: 32,
            begin_ms: 0,
            end_ms: i64::MAX,
        };
        let started = Instant::now();
        let found = store.query_by_key(reader, &query).expect("query");
        latencies.push(started.elapsed());
        assert_eq!(found.records.len(), 1, "query {n} for message {i} found {} records", found.records.len());
    }
    latencies.sort();
    println!(
        "key queries over {messages} messages ({} index entries): p50 {:.3?}, p90 {:.3?}, p99 {:.3?}, max {:.3?} ({QUERIES} queries)",
        2 * messages,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    // Shut down cleanly, so the next run's recovery is a normal one.
    store.begin_shutdown();
    while !store.is_stopped() {
        drive(&mut store, &disk, &mut rx, 0);
    }
}
