//! Scheduling cost per timer message with 10^3, 10^5 and 10^6 timers already pending
//! (spread over 40 days at one tick a second): each iteration schedules 1,000 timers due
//! within the next few seconds and advances the wheel past them. The cost per message must
//! not grow with the number pending.
//! Run: `cargo bench -p keel-benches --bench timers`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use keel_core::broker::timer::TimerWheel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: u64 = 1_000;
const FORTY_DAYS: u64 = 40 * 86_400;
const START: u64 = 1_790_000_000;

/// A wheel with `pending` timers spread uniformly over the next 40 days.
fn loaded(pending: u64) -> TimerWheel<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(pending);
    let mut wheel = TimerWheel::new(START);
    for i in 0..pending {
        wheel.insert(START + 10 + rng.gen_range(0..FORTY_DAYS), i);
    }
    wheel
}

fn schedule_and_fire(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer_wheel");
    group.throughput(Throughput::Elements(BATCH));
    for pending in [1_000, 100_000, 1_000_000] {
        let mut wheel = loaded(pending);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        group.bench_with_input(BenchmarkId::new("schedule_and_fire_1000", pending), &pending, |b, _| {
            b.iter_batched(
                || rng.gen_range(0..4u64),
                |jitter| {
                    // 1,000 timers due within the next 4 s, then time moves past them.
                    let now = wheel.current();
                    for i in 0..BATCH {
                        wheel.insert(now + (i + jitter) % 4, i);
                    }
                    let mut fired = 0u64;
                    wheel.advance(now + 5, |_, _| fired += 1);
                    fired
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, schedule_and_fire);
criterion_main!(benches);
