//! Consumer groups built from Keel's client library on madsim (see
//! `keel_runtime_sim::group_scenario`): `GROUP_SEEDS=n GROUP_SEED_START=m` runs a range.
#![cfg(madsim)]

use keel_runtime_sim::group_scenario::{run_group_seed, GroupProfile};

#[test]
fn consumer_groups_keep_their_promises_across_seeds() {
    let start: u64 = std::env::var("GROUP_SEED_START").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let count: u64 = std::env::var("GROUP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut failures = Vec::new();
    for seed in start..start + count {
        let profile = GroupProfile::from_seed(seed);
        let mutation =
            std::env::var("SIM_MUTATION").ok().and_then(|m| keel_core::mutation::Mutation::parse(&m));
        let outcome = run_group_seed(&profile, mutation);
        println!(
            "group seed {seed}: {} acked, {} deliveries, {:.0} s simulated, {} violations, {:?}",
            outcome.acked,
            outcome.deliveries,
            outcome.simulated_ms as f64 / 1000.0,
            outcome.violations.len(),
            outcome.coverage
        );
        assert!(outcome.acked > 0, "seed {seed}: nothing was acknowledged");
        if !outcome.violations.is_empty() {
            failures.push(format!(
                "seed {seed} ({profile:?}):\n  {}\n  last:\n    {}",
                outcome.violations.join("\n  "),
                outcome.tail.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
