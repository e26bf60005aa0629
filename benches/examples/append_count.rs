//! Appends a fixed number of 1 KiB messages to an in-memory store and exits, for measuring
//! cycles and instructions per message with `perf stat`, which (unlike wall time) the other
//! tenants of a shared machine barely disturb:
//!
//! `cargo build --release -p keel-benches --example append_count &&
//!  perf stat -e cycles,instructions target/release/examples/append_count 2000000`

use keel_core::io::{Now, Output};
use keel_core::protocol::message::properties;
use keel_core::store::{AppendRequest, FlushMode, Store, StoreConfig};
use keel_runtime_sim::sim_disk::SimDisk;

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(2_000_000);
    let now = Now::new(1_000_000_000, 1_726_000_000_000);
    let mut config = StoreConfig::new("10.0.0.1:10911".parse().unwrap());
    config.flush_mode = FlushMode::Async { interval_ms: 500 };
    let (mut store, _) = Store::recover(config, &SimDisk::new(), now).unwrap();
    let complete = |store: &mut Store| {
        while let Some(output) = {
            store.start_round();
            store.poll_output()
        } {
            if let Output::Disk { io, .. } = output {
                store.handle_disk_done(now, io, Ok(()));
            }
        }
    };
    complete(&mut store);
    let body = vec![b'x'; 1024];
    let props = properties::encode(&[("TAGS", "TagA"), ("UNIQ_KEY", "AC110002004D12345678000003E80000")]);
    let born_host = "10.0.0.2:50000".parse().unwrap();
    let started = std::time::Instant::now();
    for i in 0..count {
        let req = AppendRequest {
            topic: "BenchmarkTest",
            queue_id: i32::try_from(i % 8).unwrap_or(0),
            flag: 0,
            sys_flag: 0,
            born_timestamp: 1_726_000_000_000,
            born_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: &body,
            properties: &props,
        };
        store.append(now, &req).unwrap();
        if i % 1000 == 999 {
            complete(&mut store);
        }
    }
    complete(&mut store);
    let elapsed = started.elapsed();
    println!(
        "{count} appends in {:.3} s: {:.2} M msgs/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64() / 1e6
    );
}
