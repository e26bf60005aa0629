#!/usr/bin/env bash
# Replication's cost and scale-out, end to end over loopback. Setups:
#   single    one broker
#   async     an ASYNC_MASTER with a slave
#   sync      a SYNC_MASTER with a slave
#   two       two broker sets (broker-a, broker-b), a master each: one topic on both
#   two-sync  two broker sets, a SYNC_MASTER with a slave each
# each driven by mqbench with 8 senders of batches of 32 and with 64 sync senders (spread
# over every set's queues), in alternating rounds (the machine is shared and noisy: compare
# the medians within one run). The replicated runs also sample the first master's
# replication lag (GET_BROKER_HA_STATUS). Every process runs on this machine, sharing its
# cores, so two sets here measure the cost of the spread, not the gain of a second machine.
#
#   scripts/bench-ha.sh                  # 3 rounds of 10 s per workload, every setup
#   ROUNDS=5 DURATION=20 SETUPS="single two" scripts/bench-ha.sh
#   BIN=/tmp/old ROUNDS=1 SETUPS="single sync" scripts/bench-ha.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SETUPS=${SETUPS:-single async sync two two-sync}
DURATION=${DURATION:-10}
SIZE=${SIZE:-1024}
# The machine's disk is shared: its fullness must not refuse or retire a run's data.
HOST_DISK_KEYS=$'diskMaxUsedSpaceRatio=100\ndiskSpaceCleanForciblyRatio=100\ndiskSpaceWarningLevelRatio=100'
work=$(mktemp -d /tmp/keel-bench-ha.XXXXXX)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

# BIN=DIR runs binaries built elsewhere (an A/B of two builds), without building.
bin=${BIN:-target/release}
if [ -z "${SKIP_BUILD:-}" ] && [ -z "${BIN:-}" ]; then
  cargo build --release --locked -p keel-runtime-tokio --bins
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for FILE PATTERN: until the log shows PATTERN (at most 20 s).
wait_for() {
  for _ in $(seq 200); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2
  cat "$1" >&2
  return 1
}

# start_set DIR NAME ROLE WITH_SLAVE: the master (and a slave) of broker set NAME.
start_set() {
  local dir=$1 name=$2 role=$3 with_slave=$4
  local master_port ha_port slave_port
  master_port=$(port); ha_port=$(port); slave_port=$(port)
  cat > "$dir/$name-master.conf" <<CONF
brokerName=$name
brokerId=0
brokerRole=$role
listenPort=$master_port
haListenPort=$ha_port
namesrvAddr=$NAMESRV
storePathRootDir=$dir/$name-master
$HOST_DISK_KEYS
CONF
  "$bin/mqbroker" -c "$dir/$name-master.conf" > "$dir/$name-master.log" 2>&1 & pids+=($!)
  wait_for "$dir/$name-master.log" "boot success"
  if [ "$with_slave" = yes ]; then
    cat > "$dir/$name-slave.conf" <<CONF
brokerName=$name
brokerId=1
brokerRole=SLAVE
listenPort=$slave_port
haListenPort=$(port)
namesrvAddr=$NAMESRV
storePathRootDir=$dir/$name-slave
$HOST_DISK_KEYS
CONF
    "$bin/mqbroker" -c "$dir/$name-slave.conf" > "$dir/$name-slave.log" 2>&1 & pids+=($!)
    wait_for "$dir/$name-slave.log" "replication link to the master open"
  fi
}

# start SETUP: a name server and the broker sets of SETUP.
start() {
  local setup=$1 dir="$work/$1-$RANDOM"
  SETUP_DIR=$dir
  mkdir -p "$dir"
  local ns_port
  ns_port=$(port)
  NAMESRV=127.0.0.1:$ns_port
  printf 'listenPort=%s\n' "$ns_port" > "$dir/namesrv.conf"
  "$bin/mqnamesrv" -c "$dir/namesrv.conf" > "$dir/namesrv.log" 2>&1 & pids+=($!)
  wait_for "$dir/namesrv.log" "boot success"
  case "$setup" in
    single) start_set "$dir" broker-a ASYNC_MASTER no ;;
    async) start_set "$dir" broker-a ASYNC_MASTER yes ;;
    sync) start_set "$dir" broker-a SYNC_MASTER yes ;;
    two) start_set "$dir" broker-a ASYNC_MASTER no; start_set "$dir" broker-b ASYNC_MASTER no ;;
    two-sync) start_set "$dir" broker-a SYNC_MASTER yes; start_set "$dir" broker-b SYNC_MASTER yes ;;
    *) echo "unknown setup $setup" >&2; exit 2 ;;
  esac
  # Both sets registered with the name server (they register at boot) before the run.
  sleep 1
}

# run SETUP WORKLOAD ARGS...: one mqbench producer run; prints its summary lines.
run() {
  local setup=$1 workload=$2; shift 2
  local lag=()
  case "$setup" in async|sync|two-sync) lag=(--replication-lag) ;; esac
  "$bin/mqbench" producer -n "$NAMESRV" -t "Bench$workload" -s "$SIZE" --duration "$DURATION" "${lag[@]}" "$@" \
    | grep -E '^\[|^replication lag|^per broker set|^first failure' | sed "s/^/$setup $workload: /"
}

results="$work/results"
for round in $(seq "$ROUNDS"); do
  for setup in $SETUPS; do
    start "$setup"
    run "$setup" 8x32 -w 8 -b 32 | tee -a "$results"
    run "$setup" 64sync -w 64 | tee -a "$results"
    stop_all
    # Each run writes gigabytes: a round of every setup would fill the disk.
    rm -rf "$SETUP_DIR"
  done
  echo "--- round $round done"
done

echo
echo "Medians over $ROUNDS rounds (msgs/s; ratio to the single broker in the same run):"
python3 - "$results" <<'PY'
import re, statistics, sys
rates, lags = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'([\w-]+) (\w+): \[.*\] \d+ msgs in [\d.]+ s = (\d+) msgs/s; failed (\d+)', line)
    if m:
        rates.setdefault((m[1], m[2]), []).append((int(m[3]), int(m[4])))
    m = re.match(r'([\w-]+) (\w+): replication lag: .*p50 ([\d.]+) KiB, p99 ([\d.]+) KiB, max ([\d.]+) KiB', line)
    if m:
        lags.setdefault((m[1], m[2]), []).append((float(m[3]), float(m[5])))
for workload in ("8x32", "64sync"):
    single = statistics.median(r for r, _ in rates.get(("single", workload), [(0, 0)]))
    for setup in ("single", "async", "sync", "two", "two-sync"):
        runs = rates.get((setup, workload), [])
        if not runs:
            continue
        median = statistics.median(r for r, _ in runs)
        failed = sum(f for _, f in runs)
        ratio = median / single if single else 0
        lag = ""
        if (setup, workload) in lags:
            p50 = statistics.median(l for l, _ in lags[(setup, workload)])
            top = max(m for _, m in lags[(setup, workload)])
            lag = f"; lag p50 {p50:.1f} KiB, max {top:.1f} KiB"
        print(f"{workload:7} {setup:8} {median:>9.0f} msgs/s  {ratio:5.0%} of single  (failed {failed}){lag}")
PY
