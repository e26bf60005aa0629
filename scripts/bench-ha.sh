#!/usr/bin/env bash
# Replication's cost, end to end over loopback: a single broker, an ASYNC_MASTER with a slave
# and a SYNC_MASTER with a slave, each driven by mqbench with 8 senders of batches of 32 and
# with 64 sync senders, in alternating rounds (the machine is shared and noisy: compare the
# medians within one run). The replicated runs also sample the master's replication lag
# (GET_BROKER_HA_STATUS). Every process runs on this machine, sharing its cores.
#
#   scripts/bench-ha.sh                  # 3 rounds of 10 s per workload
#   ROUNDS=5 DURATION=20 scripts/bench-ha.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SIZE=${SIZE:-1024}
work=$(mktemp -d /tmp/keel-bench-ha.XXXXXX)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --locked -p keel-runtime-tokio --bins
fi
bin=target/release
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

# start SETUP: a name server and the brokers of SETUP (single | async | sync).
start() {
  local setup=$1 dir="$work/$1-$RANDOM"
  mkdir -p "$dir"
  local ns_port master_port ha_port slave_port
  ns_port=$(port); master_port=$(port); ha_port=$(port); slave_port=$(port)
  NAMESRV=127.0.0.1:$ns_port
  printf 'listenPort=%s\n' "$ns_port" > "$dir/namesrv.conf"
  "$bin/mqnamesrv" -c "$dir/namesrv.conf" > "$dir/namesrv.log" 2>&1 & pids+=($!)
  wait_for "$dir/namesrv.log" "boot success"
  local role=ASYNC_MASTER
  [ "$setup" = sync ] && role=SYNC_MASTER
  cat > "$dir/master.conf" <<CONF
brokerName=broker-a
brokerId=0
brokerRole=$role
listenPort=$master_port
haListenPort=$ha_port
namesrvAddr=$NAMESRV
storePathRootDir=$dir/master
CONF
  "$bin/mqbroker" -c "$dir/master.conf" > "$dir/master.log" 2>&1 & pids+=($!)
  wait_for "$dir/master.log" "boot success"
  if [ "$setup" != single ]; then
    cat > "$dir/slave.conf" <<CONF
brokerName=broker-a
brokerId=1
brokerRole=SLAVE
listenPort=$slave_port
haListenPort=$(port)
namesrvAddr=$NAMESRV
storePathRootDir=$dir/slave
CONF
    "$bin/mqbroker" -c "$dir/slave.conf" > "$dir/slave.log" 2>&1 & pids+=($!)
    wait_for "$dir/slave.log" "replication link to the master open"
  fi
  sleep 1
}

# run SETUP WORKLOAD ARGS...: one mqbench producer run; prints its summary lines.
run() {
  local setup=$1 workload=$2; shift 2
  local lag=()
  [ "$setup" != single ] && lag=(--replication-lag)
  "$bin/mqbench" producer -n "$NAMESRV" -t "Bench$workload" -s "$SIZE" --duration "$DURATION" "${lag[@]}" "$@" \
    | grep -E '^\[|^replication lag' | sed "s/^/$setup $workload: /"
}

results="$work/results"
for round in $(seq "$ROUNDS"); do
  for setup in single async sync; do
    start "$setup"
    run "$setup" 8x32 -w 8 -b 32 | tee -a "$results"
    run "$setup" 64sync -w 64 | tee -a "$results"
    stop_all
  done
  echo "--- round $round done"
done

echo
echo "Medians over $ROUNDS rounds (msgs/s; ratio to the single broker in the same run):"
python3 - "$results" <<'PY'
import re, statistics, sys
rates, lags = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'(\w+) (\w+): \[.*\] \d+ msgs in [\d.]+ s = (\d+) msgs/s; failed (\d+)', line)
    if m:
        rates.setdefault((m[1], m[2]), []).append((int(m[3]), int(m[4])))
    m = re.match(r'(\w+) (\w+): replication lag: .*p50 ([\d.]+) KiB, p99 ([\d.]+) KiB, max ([\d.]+) KiB', line)
    if m:
        lags.setdefault((m[1], m[2]), []).append((float(m[3]), float(m[5])))
for workload in ("8x32", "64sync"):
    single = statistics.median(r for r, _ in rates.get(("single", workload), [(0, 0)]))
    for setup in ("single", "async", "sync"):
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
        print(f"{workload:7} {setup:6} {median:>9.0f} msgs/s  {ratio:5.0%} of single  (failed {failed}){lag}")
PY
