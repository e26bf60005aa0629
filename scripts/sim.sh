#!/usr/bin/env bash
# Run the seeded cluster simulations (the madsim build: --cfg madsim, profile sim, its own
# target dir). Everything is passed through the environment; see sim-tests/tests/dst.rs:
#   SEED=123 ./scripts/sim.sh                 replay one seed (prints its profile and outcome)
#   SEEDS=500 SEED_START=1000 ./scripts/sim.sh   run a range
#   SIM_MUTATION=ack_before_fsync SEED=7 ./scripts/sim.sh   with a deliberate bug
set -euo pipefail
cd "$(dirname "$0")/.."
unset CARGO_ENCODED_RUSTFLAGS
export RUSTFLAGS="--cfg madsim"
export CARGO_TARGET_DIR=target/sim
exec cargo test --locked --profile sim -p keel-sim-tests --test dst -- "$@"
