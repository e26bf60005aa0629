//! Store throughput in memory (no IO): appending 1 KiB messages (encode, whole-record CRC,
//! ConsumeQueue dispatch, coalesced writes), the same without dispatch, and the rate at
//! which recovery validates and re-dispatches a CommitLog into rebuilt ConsumeQueues.
//! Run: `cargo bench -p keel-benches --bench store`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_core::io::{DiskOp, Now, Output};
use keel_core::protocol::message::properties;
use keel_core::protocol::message::stored::sys_flag;
use keel_core::store::{paths, AppendRequest, FlushMode, Store, StoreConfig};
use keel_runtime_sim::disk_queue::DiskQueue;
use keel_runtime_sim::sim_disk::SimDisk;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 1000;
const QUEUES: i32 = 8;

fn now() -> Now {
    Now::new(1_000_000_000, 1_726_000_000_000)
}

/// A ready store whose outputs the caller discards (completing them at once).
fn in_memory_store(config: StoreConfig) -> Store {
    let disk = SimDisk::new();
    let (mut store, _) = Store::recover(config, &disk, now()).unwrap();
    complete_all(&mut store);
    assert!(store.is_ready());
    store
}

/// Take every output and report it done without doing it: the store's own cost only.
fn complete_all(store: &mut Store) {
    while let Some(output) = {
        store.start_round();
        store.poll_output()
    } {
        if let Output::Disk { io, .. } = output {
            store.handle_disk_done(now(), io, Ok(()));
        }
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_append");
    group.throughput(Throughput::Elements(BATCH as u64));
    let body = vec![b'x'; 1024];
    let props = properties::encode(&[("TAGS", "TagA"), ("UNIQ_KEY", "AC110002004D12345678000003E80000")]);
    let born_host = "10.0.0.2:50000".parse().unwrap();
    for (name, flag) in [("1k_dispatched", 0), ("1k_not_dispatched", sys_flag::TRANSACTION_PREPARED)] {
        let mut config = StoreConfig::new("10.0.0.1:10911".parse().unwrap());
        config.flush_mode = FlushMode::Async { interval_ms: 500 };
        let mut store = in_memory_store(config);
        group.bench_function(name, |b| {
            b.iter(|| {
                for i in 0..BATCH {
                    let req = AppendRequest {
                        topic: "BenchmarkTest",
                        queue_id: i as i32 % QUEUES,
                        flag: 0,
                        sys_flag: flag,
                        born_timestamp: 1_726_000_000_000,
                        born_host,
                        reconsume_times: 0,
                        prepared_transaction_offset: 0,
                        body: &body,
                        properties: &props,
                    };
                    criterion::black_box(store.append(now(), &req).unwrap());
                }
                complete_all(&mut store);
            });
        });
    }
    group.finish();
}

fn recovery_dispatch(c: &mut Criterion) {
    const MESSAGES: usize = 20_000;
    let mut config = StoreConfig::new("10.0.0.1:10911".parse().unwrap());
    config.segment_size = 4 * 1024 * 1024;
    config.flush_mode = FlushMode::Sync;
    let mut disk = SimDisk::new();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut store, _) = Store::recover(config.clone(), &disk, now()).unwrap();
    let mut queue = DiskQueue::new();
    let mut drive = |store: &mut Store, disk: &mut SimDisk| loop {
        while let Some(Output::Disk { io, op }) = {
            store.start_round();
            store.poll_output()
        } {
            queue.push(io, op);
        }
        let Some((io, result)) = queue.run_one(disk, &mut rng) else { break };
        store.handle_disk_done(now(), io, result);
    };
    drive(&mut store, &mut disk);
    let body = vec![b'x'; 1024];
    let props = properties::encode(&[("TAGS", "TagA")]);
    for i in 0..MESSAGES {
        let req = AppendRequest {
            topic: "BenchmarkTest",
            queue_id: i as i32 % QUEUES,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 1_726_000_000_000,
            born_host: "10.0.0.2:50000".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: &body,
            properties: &props,
        };
        store.append(now(), &req).unwrap();
        if i % 100 == 0 {
            drive(&mut store, &mut disk);
        }
    }
    store.begin_shutdown();
    drive(&mut store, &mut disk);
    // Without a checkpoint, recovery validates every record and rebuilds every queue.
    disk.execute(&DiskOp::Remove { file: paths::checkpoint() }, &mut rng).unwrap();

    let mut group = c.benchmark_group("store_recovery");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(20);
    group.bench_function("rebuild_1k_messages", |b| {
        b.iter(|| {
            let (_, report) = Store::recover(config.clone(), &disk, now()).unwrap();
            assert_eq!(report.redispatched, MESSAGES as u64);
        });
    });
    group.finish();
}

criterion_group!(benches, append, recovery_dispatch);

criterion_main!(benches);
