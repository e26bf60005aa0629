//! Bugs the seeded simulation found, each pinned as a scripted scenario: a fixed fault
//! schedule on a quiet cluster, its outcome an insta snapshot. A seed number alone would not
//! do, since seeds drift as the code changes; a schedule does not.
#![cfg(madsim)]

use keel_runtime_sim::cluster::run_seed;
use keel_runtime_sim::profile::{Scripted, SimProfile};

/// What a scenario's snapshot records: coarse facts that hold for every correct run.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug by the snapshot
struct Outcome {
    violations: Vec<String>,
    faults: Vec<String>,
    messages_acknowledged: bool,
}

fn outcome(profile: &SimProfile) -> Outcome {
    let run = run_seed(profile, None);
    Outcome { violations: run.violations, faults: run.faults, messages_acknowledged: run.acked > 0 }
}

/// Found by seed 4 of the first batch: the broker restarted while its name server was
/// down; its dial was refused, the driver never told the broker, and the broker waited for
/// that link forever: it never registered again, and clients could not route to it (the
/// read-back timed out). The driver now reports a failed dial as a closed connection and
/// the broker re-dials.
#[test]
fn regression_a_broker_restarted_while_its_name_server_is_down_registers_when_it_returns() {
    let script = vec![
        Scripted::KillNamesrv { at_ms: 2_000, down_ms: 8_000 },
        Scripted::KillBroker { at_ms: 3_000, down_ms: 500, power_loss: false },
    ];
    let mut profile = SimProfile::scripted(7, script);
    profile.fault_ms = 20_000;
    insta::assert_debug_snapshot!("broker_restarted_while_namesrv_down", outcome(&profile));
}
