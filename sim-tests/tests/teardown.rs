//! A finished run frees everything it built. madsim keeps a task that is still pending when
//! `block_on` returns alive forever, and with it the run's whole state; a batch of seeds in
//! one process then grows by megabytes a seed until the machine runs out of memory. This
//! test is alone in its binary so that no other run's world is counted.
#![cfg(madsim)]

use keel_runtime_sim::cluster::run_seed;
use keel_runtime_sim::profile::{Scripted, SimProfile};
use keel_runtime_sim::world::worlds_alive;

#[test]
fn a_finished_run_leaves_no_world_alive() {
    // A broker kill starts every long-lived task there is: the broker's keeper, restarted
    // nodes, consumers' commit tasks, held pulls.
    let script = vec![Scripted::KillBroker { at_ms: 3_000, down_ms: 500, power_loss: true }];
    let mut profile = SimProfile::scripted(11, script);
    profile.fault_ms = 10_000;
    for run in 1..=2 {
        let outcome = run_seed(&profile, None);
        assert!(outcome.violations.is_empty(), "run {run}: {:?}", outcome.violations);
        assert_eq!(worlds_alive(), 0, "run {run} left its world alive");
    }
}
