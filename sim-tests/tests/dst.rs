//! The seed runner: thousands of seeded fault simulations of the whole cluster, each
//! reproducible from its seed. See the README ("Simulation") for how to run and replay.
//!
//! Environment:
//! - `SEED=<n | 40-hex commit>` runs exactly that seed (verbose: profile, outcome).
//! - `SEEDS=<n>` runs `n` seeds from `SEED_START` (default 0); without either, a short
//!   smoke batch runs, so a plain `cargo stest` stays quick. `SEED_STEP=<k>` (default 1)
//!   takes every k-th seed instead: `SEED_START=3 SEED_STEP=16` runs only the
//!   controller-mode seeds.
//! - `SIM_MUTATION=<name>` switches a deliberate bug on for the seeds run.
//! - `DST_MUTATIONS=<budget>` runs the mutation gate: each mutation must be caught within
//!   `budget` seeds of the scenario it needs (consumer groups, controller mode, or any).
//! - `DST_DETERMINISM=<k>` runs `k` seeds here and again in a child process and compares
//!   their trace hashes.
//! - `DST_JOBS` (default 2) seeds run at once, each on a fresh thread;
//!   `DST_WALL_LIMIT` (default 120) wall seconds per seed before the watchdog aborts.
//! - `DST_COVERAGE=1` fails the batch if some fault never fired.
//!
//! Every batch ends with a plain `sim: N passed, M failed` line.

#[cfg(madsim)]
fn main() {
    runner::main();
}

#[cfg(not(madsim))]
fn main() {
    println!("dst: the seed runner needs the madsim build (`cargo stest --test dst`)");
}

#[cfg(madsim)]
mod runner {
    use std::collections::BTreeMap;
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use keel_core::mutation::Mutation;
    use keel_runtime_sim::cluster::{run_seed, RunOutcome};
    use keel_runtime_sim::coverage::Coverage;
    use keel_runtime_sim::profile::SimProfile;

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| parse_seed(&v))
    }

    /// A seed: a decimal number, or a 40-hex commit id (its first 16 hex digits).
    fn parse_seed(text: &str) -> Option<u64> {
        let text = text.trim();
        if text.len() == 40 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            return u64::from_str_radix(&text[..16], 16).ok();
        }
        text.parse().ok()
    }

    fn repro(seed: u64, mutation: Option<Mutation>) -> String {
        let mutation = mutation.map(|m| format!("SIM_MUTATION={} ", m.name())).unwrap_or_default();
        format!("{mutation}SEED={seed} ./scripts/sim.sh")
    }

    enum Finished {
        Done(Box<RunOutcome>),
        Panicked(String),
    }

    /// Run `seeds` with `jobs` at a time, each on a fresh thread under the watchdog; stop
    /// early at the first failure if `stop_at_failure`. `on_done` hears of each seed as it
    /// finishes. Results in seed order.
    fn run_batch(
        seeds: &[u64],
        mutation: Option<Mutation>,
        jobs: usize,
        wall_limit: Duration,
        stop_at_failure: bool,
        on_done: &mut dyn FnMut(u64, &Finished, Duration),
    ) -> Vec<(u64, Finished)> {
        let (tx, rx) = mpsc::channel::<(u64, Finished)>();
        let mut next = 0usize;
        let mut running: BTreeMap<u64, Instant> = BTreeMap::new();
        let mut results = Vec::new();
        let mut failed = false;
        loop {
            while running.len() < jobs && next < seeds.len() && !(failed && stop_at_failure) {
                let seed = seeds[next];
                next += 1;
                let tx = tx.clone();
                running.insert(seed, Instant::now());
                std::thread::Builder::new()
                    .name(format!("seed-{seed}"))
                    .spawn(move || {
                        let profile = SimProfile::from_seed(seed);
                        let outcome = std::panic::catch_unwind(|| run_seed(&profile, mutation));
                        let finished = match outcome {
                            Ok(outcome) => Finished::Done(Box::new(outcome)),
                            Err(panic) => Finished::Panicked(
                                panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                    .unwrap_or_else(|| "panic".into()),
                            ),
                        };
                        let _ = tx.send((seed, finished));
                    })
                    .expect("spawn a seed thread");
            }
            if running.is_empty() {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((seed, finished)) => {
                    let took = running.remove(&seed).map(|started| started.elapsed()).unwrap_or_default();
                    if !passed(&finished) {
                        failed = true;
                    }
                    on_done(seed, &finished, took);
                    // One seed run alone keeps everything: its tail is printed with DST_TRACE.
                    results.push((seed, if seeds.len() > 1 { lighten(finished) } else { finished }));
                }
                Err(_) => {
                    for (seed, started) in &running {
                        if started.elapsed() > wall_limit {
                            println!(
                                "DST FAILURE seed={seed}: over the {wall_limit:?} wall-clock limit (hung?)"
                            );
                            println!("profile: {:?}", SimProfile::from_seed(*seed));
                            println!("repro: {}", repro(*seed, mutation));
                            println!(
                                "sim: {} passed, 1 failed",
                                results.iter().filter(|(_, f)| passed(f)).count()
                            );
                            std::process::exit(1);
                        }
                    }
                }
            }
        }
        results.sort_by_key(|(seed, _)| *seed);
        results
    }

    /// A passed seed's history tail and fault list have been reported (or not needed); a
    /// batch of thousands keeps only its figures.
    fn lighten(finished: Finished) -> Finished {
        match finished {
            Finished::Done(mut outcome) if outcome.violations.is_empty() => {
                outcome.tail = Vec::new();
                outcome.faults = Vec::new();
                Finished::Done(outcome)
            }
            other => other,
        }
    }

    fn passed(finished: &Finished) -> bool {
        matches!(finished, Finished::Done(outcome) if outcome.violations.is_empty())
    }

    fn report_failure(seed: u64, finished: &Finished, mutation: Option<Mutation>) {
        println!(
            "DST FAILURE seed={seed} commit={}",
            option_env!("KEEL_COMMIT").unwrap_or("(see git rev-parse HEAD)")
        );
        let profile = SimProfile::from_seed(seed);
        println!("profile: {profile:?}");
        if profile.groups {
            println!("group profile: {:?}", keel_runtime_sim::group_scenario::GroupProfile::from_seed(seed));
        }
        match finished {
            Finished::Panicked(message) => println!("panicked: {message}"),
            Finished::Done(outcome) => {
                for violation in &outcome.violations {
                    println!("violation: {violation}");
                }
                println!("last events:");
                for line in &outcome.tail {
                    println!("  {line}");
                }
            }
        }
        println!("repro: {}", repro(seed, mutation));
    }

    /// This process's resident memory, MiB (0 where /proc is missing): a batch that grows
    /// per seed is keeping finished runs alive.
    fn resident_mib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        pages * 4096 / (1024 * 1024)
    }

    fn jobs() -> usize {
        usize::try_from(env_u64("DST_JOBS").unwrap_or(2)).unwrap_or(2).max(1)
    }

    fn wall_limit() -> Duration {
        Duration::from_secs(env_u64("DST_WALL_LIMIT").unwrap_or(120))
    }

    pub fn main() {
        let mutation = std::env::var("SIM_MUTATION").ok().map(|name| {
            Mutation::parse(&name).unwrap_or_else(|| {
                let names: Vec<&str> = Mutation::ALL.iter().map(|m| m.name()).collect();
                panic!("unknown SIM_MUTATION {name:?}; known: {names:?}")
            })
        });
        if let Some(budget) = env_u64("DST_MUTATIONS") {
            std::process::exit(mutation_gate(budget));
        }
        if let Some(k) = env_u64("DST_DETERMINISM") {
            std::process::exit(determinism(k));
        }
        if let Some(seed) = env_u64("SEED") {
            std::process::exit(single(seed, mutation));
        }
        let start = env_u64("SEED_START").unwrap_or(0);
        let count = env_u64("SEEDS").unwrap_or(20);
        let step = env_u64("SEED_STEP").unwrap_or(1).max(1);
        std::process::exit(batch(start, count, step, mutation));
    }

    fn single(seed: u64, mutation: Option<Mutation>) -> i32 {
        if std::env::var_os("RUST_LOG").is_some() {
            madsim::runtime::init_logger();
        }
        let profile = SimProfile::from_seed(seed);
        println!("seed {seed}, profile: {profile:#?}");
        let started = Instant::now();
        let results = run_batch(&[seed], mutation, 1, wall_limit(), false, &mut |_, _, _| {});
        let (_, finished) = &results[0];
        if let Finished::Done(outcome) = finished {
            println!(
                "acked {} messages; simulated {:.1} s in {:.2} s; trace hash {:016x}",
                outcome.acked,
                outcome.simulated_ms as f64 / 1000.0,
                started.elapsed().as_secs_f64(),
                outcome.trace_hash
            );
            if std::env::var_os("DST_TRACE").is_some() {
                for line in &outcome.tail {
                    println!("  {line}");
                }
            }
            println!("coverage: {:?}", outcome.coverage.iter().collect::<Vec<_>>());
        }
        if passed(finished) {
            println!("sim: 1 passed, 0 failed");
            0
        } else {
            report_failure(seed, finished, mutation);
            println!("sim: 0 passed, 1 failed");
            1
        }
    }

    fn batch(start: u64, count: u64, step: u64, mutation: Option<Mutation>) -> i32 {
        let seeds: Vec<u64> = (0..count).map(|i| start.wrapping_add(i.wrapping_mul(step))).collect();
        println!("running {count} seeds from {start}, every {step} ({} at a time)", jobs());
        let started = Instant::now();
        let mut done = 0u64;
        let mut failed = 0usize;
        let mut slowest: Vec<(Duration, u64)> = Vec::new();
        let mut report = |seed: u64, finished: &Finished, took: Duration| {
            done += 1;
            slowest.push((took, seed));
            slowest.sort_unstable_by(|a, b| b.cmp(a));
            slowest.truncate(3);
            if !passed(finished) {
                failed += 1;
                report_failure(seed, finished, mutation);
            }
            if count >= 100 && done.is_multiple_of(count / 10) {
                println!(
                    "progress: {done} of {count} seeds, {failed} failed, {:.0} s, {} MiB resident",
                    started.elapsed().as_secs_f64(),
                    resident_mib()
                );
            }
        };
        let results = run_batch(&seeds, mutation, jobs(), wall_limit(), false, &mut report);
        let wall = started.elapsed().as_secs_f64();
        let mut coverage = Coverage::default();
        let mut simulated_ms = 0u64;
        let mut acked = 0u64;
        for (_, finished) in &results {
            if let Finished::Done(outcome) = finished {
                coverage.merge(&outcome.coverage);
                simulated_ms += outcome.simulated_ms;
                acked += outcome.acked;
            }
        }
        let failed = results.iter().filter(|(_, f)| !passed(f)).count();
        let passed_count = results.len() - failed;
        println!(
            "{} seeds in {wall:.1} s: {:.2} seeds/s, {:.0} simulated s per wall s, {acked} messages acknowledged",
            results.len(),
            results.len() as f64 / wall,
            simulated_ms as f64 / 1000.0 / wall
        );
        let slow: Vec<String> =
            slowest.iter().map(|(took, seed)| format!("{seed} ({:.1} s)", took.as_secs_f64())).collect();
        println!("slowest seeds: {}", slow.join(", "));
        println!("fault coverage:");
        for (what, n) in coverage.iter() {
            println!("  {what:<32} {n}");
        }
        let mut status = i32::from(failed > 0 || passed_count == 0);
        if std::env::var_os("DST_COVERAGE").is_some() {
            let missing = coverage.missing();
            if missing.is_empty() {
                println!("fault coverage gate: every fault fired");
            } else {
                println!("fault coverage gate FAILED: never fired: {missing:?}");
                status = 1;
            }
        }
        println!("sim: {passed_count} passed, {failed} failed");
        status
    }

    fn mutation_gate(budget: u64) -> i32 {
        let start = env_u64("SEED_START").unwrap_or(0);
        let mut status = 0;
        let mut caught_count = 0;
        println!(
            "mutation gate: each mutation must fail a seed within {budget} seeds from {start} \
             that run the scenario it needs (consumer groups, controller mode, or any)"
        );
        for mutation in Mutation::ALL {
            // A mutation only one scenario exercises counts only that scenario's seeds: the
            // others cannot catch it, and counting them would leave a controller-mode
            // mutation 19 chances in 300.
            let runs_it = |seed: &u64| {
                let profile = SimProfile::from_seed(*seed);
                (!mutation.needs_groups() || profile.groups)
                    && (!mutation.needs_controllers() || profile.ha)
                    && (!mutation.needs_cluster() || !(profile.groups || profile.ha))
            };
            let seeds: Vec<u64> = (0..)
                .map(|i| start.wrapping_add(i))
                .filter(runs_it)
                .take(usize::try_from(budget).unwrap_or(usize::MAX))
                .collect();
            let started = Instant::now();
            let results = run_batch(&seeds, Some(mutation), jobs(), wall_limit(), true, &mut |_, _, _| {});
            let caught = results.iter().find(|(_, f)| !passed(f));
            match caught {
                Some((seed, finished)) => {
                    let tried = results.iter().filter(|(s, _)| s <= seed).count();
                    let why = match finished {
                        Finished::Panicked(message) => format!("panic: {message}"),
                        Finished::Done(outcome) => outcome.violations.first().cloned().unwrap_or_default(),
                    };
                    caught_count += 1;
                    println!(
                        "mutation {:<32} caught by seed {seed} after {tried} seeds ({:.1} s): {why}",
                        mutation.name(),
                        started.elapsed().as_secs_f64()
                    );
                }
                None => {
                    println!("mutation {:<32} SURVIVED {budget} seeds", mutation.name());
                    status = 1;
                }
            }
        }
        println!("mutations: {caught_count} caught of {}", Mutation::ALL.len());
        status
    }

    fn determinism(k: u64) -> i32 {
        let start = env_u64("SEED_START").unwrap_or(0);
        let seeds: Vec<u64> = (0..k).map(|i| start.wrapping_add(i)).collect();
        let hashes = |results: Vec<(u64, Finished)>| -> Vec<String> {
            results
                .into_iter()
                .map(|(seed, f)| match f {
                    Finished::Done(o) => format!("{seed}:{:016x}", o.trace_hash),
                    Finished::Panicked(m) => format!("{seed}:panic:{m}"),
                })
                .collect()
        };
        if std::env::var_os("DST_DETERMINISM_CHILD").is_some() {
            for line in hashes(run_batch(&seeds, None, jobs(), wall_limit(), false, &mut |_, _, _| {})) {
                println!("hash {line}");
            }
            return 0;
        }
        let here = hashes(run_batch(&seeds, None, jobs(), wall_limit(), false, &mut |_, _, _| {}));
        let exe = std::env::current_exe().expect("own path");
        let child = Command::new(exe)
            .env("DST_DETERMINISM_CHILD", "1")
            .env("DST_JOBS", "1")
            .output()
            .expect("run the child process");
        let there: Vec<String> = String::from_utf8_lossy(&child.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("hash ").map(str::to_owned))
            .collect();
        if here == there {
            println!("determinism: {k} seeds gave identical trace hashes in two processes");
            0
        } else {
            for (a, b) in here.iter().zip(&there) {
                if a != b {
                    println!("determinism FAILED: this process {a}, child process {b}");
                }
            }
            println!("determinism FAILED ({} vs {} results)", here.len(), there.len());
            1
        }
    }
}
