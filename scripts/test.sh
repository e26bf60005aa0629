#!/usr/bin/env bash
# Keel's one test command. `.ci/run` runs exactly this; so should a newcomer.
#
# It proves the workspace builds and passes both ways: a normal build, and a madsim build
# (`--cfg madsim`, profile `sim`, its own target dir); then thousands of seeded cluster
# simulations run (scripts/sim-ci.sh); then real RocketMQ clients run
# against the built mqnamesrv and mqbroker (tests/interop, installs its client from PyPI). Each suite ends with a plain
# "N passed, M failed" line. Snapshots are never written (INSTA_UPDATE=no).
set -euo pipefail
cd "$(dirname "$0")/.."

export INSTA_UPDATE=no
export CARGO_TERM_COLOR=never
# A global RUSTFLAGS would silently override the madsim cfg below; own it explicitly.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
# One full run gains nothing from incremental caches; they would double target/ on disk.
export CARGO_INCREMENTAL=0
logs=target/test-logs
mkdir -p "$logs"
failed_suites=()

# A suite's summary: its own "<suite>: N passed, M failed" line if it printed one, else the
# sum of cargo's "test result:" lines.
summarize() {
  local suite=$1 log=$2
  local own
  own=$(grep -E "^$suite: [0-9]+ passed, [0-9]+ failed$" "$log" | tail -n 1 || true)
  if [ -n "$own" ]; then
    echo "$own"
    return
  fi
  awk -v suite="$suite" '
    /^test result:/ {
      for (i = 1; i <= NF; i++) {
        if ($(i) ~ /^passed;?$/) p += $(i-1)
        if ($(i) ~ /^failed;?$/) f += $(i-1)
      }
    }
    END { printf "%s: %d passed, %d failed\n", suite, p, f }' "$log"
}

# Run one suite within its time limit (minutes): a command whose output holds cargo test
# results. A suite that hangs is stopped there (its whole process group: servers the tests
# started too) and counts as failed, so the run still reports every suite in CI's time.
suite() {
  local name=$1 minutes=$2; shift 2
  local log="$logs/$name.log"
  echo "=== $name (at most $minutes min): $*"
  local status=0 started=$SECONDS
  timeout --kill-after=30s "${minutes}m" "$@" 2>&1 | tee "$log" || status=$?
  local hung=false
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    hung=true
    echo "=== $name: stopped, still running after $minutes min" | tee -a "$log"
  fi
  echo "=== $name: $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
  local line
  line=$(summarize "$name" "$log")
  if $hung; then
    # What hung counts as one failure more than the finished tests reported.
    line=$(echo "$line" | awk '{ $4 = $4 + 1; print }')
  fi
  echo "$line"
  local passed
  passed=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  if [ "$status" -ne 0 ] || [ "$passed" -eq 0 ]; then
    failed_suites+=("$name")
  fi
}

# raft-rs builds its protobuf messages with protoc: install Debian's when it is missing.
if ! command -v protoc >/dev/null 2>&1; then
  echo "=== installing protobuf-compiler (protoc, for raft-rs's build)"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -q >/dev/null
  $sudo_cmd apt-get install -y -q protobuf-compiler >/dev/null
fi

# The dashboard's test loads it in headless Chromium: install Debian's when it is missing.
if [ -z "${KEEL_CHROMIUM:-}" ] && ! [ -x /usr/bin/chromium ]; then
  echo "=== installing chromium (headless, for the dashboard's test)"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -q >/dev/null
  $sudo_cmd apt-get install -y -q chromium >/dev/null
fi

echo "=== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

suite "tests" 30 cargo test --workspace --locked --no-fail-fast

# The same workspace under madsim: the simulator's build, in its own target dir. Doctests
# are built by rustdoc, which reads RUSTDOCFLAGS, not RUSTFLAGS: without the cfg there it
# would compile real-network code against the simulator's tonic.
suite "madsim" 20 env RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo test --workspace --locked --profile sim --no-fail-fast

# Thousands of seeded fault simulations of the whole cluster, with the determinism check,
# the mutation gate and the fault-coverage gate (same build as above).
suite "sim" 30 scripts/sim-ci.sh

# Real third-party clients (Apache RocketMQ's C++ client, from PyPI) against the binaries.
suite "interop" 15 tests/interop/run.sh

if [ "${#failed_suites[@]}" -ne 0 ]; then
  echo "FAILED suites: ${failed_suites[*]}"
  exit 1
fi
echo "all suites passed"
