#!/usr/bin/env bash
# The seed run of the README test command (suite "sim"): the determinism check (seeds run
# in two processes must leave identical trace hashes), the mutation gate (every deliberate
# bug must fail a seed within its budget), then the batch of seeds with faults, starting at
# a seed derived from the commit hash, with the fault-coverage gate on. The batch prints the
# suite's "sim: N passed, M failed" line last.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(git rev-parse HEAD 2>/dev/null || echo 0)
seeds=${KEEL_SIM_SEEDS:-3000}
status=0
echo "=== sim: determinism"
DST_DETERMINISM=16 SEED_START="$start" ./scripts/sim.sh || status=1
echo "=== sim: mutation gate"
DST_MUTATIONS=300 SEED_START=0 ./scripts/sim.sh || status=1
echo "=== sim: $seeds seeds from commit $start"
DST_COVERAGE=1 SEEDS="$seeds" SEED_START="$start" ./scripts/sim.sh || status=1
exit "$status"
