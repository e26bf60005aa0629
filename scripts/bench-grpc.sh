#!/usr/bin/env bash
# gRPC sends against remoting sends, end to end over loopback: one `keel --enable-proxy`
# (release build), one topic of 8 queues, and mqbench producers in alternating rounds, the
# same load over remoting and over gRPC (`--grpc`, as RocketMQ 5.x SDKs send). Workloads:
# 64 sync senders, and 8 async senders with 32 sends in flight each; then consumption of
# what they stored: 4 remoting push-consumer slots (pull) against 4 gRPC simple consumers
# (receive 32, then ack them), each round a fresh group reading from the start. The machine
# is shared and noisy: compare the medians within one run.
#
#   scripts/bench-grpc.sh                       # 3 rounds of 10 s per workload and protocol
#   ROUNDS=5 DURATION=20 scripts/bench-grpc.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SIZE=${SIZE:-1024}
BIN=${BIN:-target/release}
[ -x "$BIN/keel" ] || cargo build --release -p keel-runtime-tokio --bins
work=$(mktemp -d /tmp/keel-bench-grpc.XXXXXX)
# On a crowded shared disk, retention must not retire segments mid-run: a fresh pop group
# starts at the end of a queue whose first segment is gone (initMode MAX, as in RocketMQ).
printf 'enableProxy=true\ngrpcServerPort=0\nhaListenPort=0\ndiskMaxUsedSpaceRatio=100\ndiskSpaceCleanForciblyRatio=100\ndiskSpaceWarningLevelRatio=100\n' \
  > "$work/broker.conf"
"$BIN/keel" -c "$work/broker.conf" --data-dir "$work/data" --namesrv-port 0 --broker-port 0 \
  > "$work/boot" 2> "$work/keel.log" &
keel=$!
trap 'kill $keel 2>/dev/null; wait $keel 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/boot" ] && break; sleep 0.1; done
namesrv=$(sed -E 's/.*Name server: ([0-9.:]+) .*/\1/' "$work/boot")
grpc=$(sed -E 's/.*gRPC at ([0-9.:]+);.*/\1/' "$work/boot")
"$BIN/mqadmin" updateTopic -n "$namesrv" -c DefaultCluster -t BenchGrpc -r 8 -w 8 > /dev/null
sleep 1

# The broker's CPU time so far (user + system), in clock ticks: its cost per message,
# apart from the client's, which shares this machine's cores.
ticks=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$keel/stat"; }
# us of broker CPU per message: cpu_before cpu_after msgs_per_s
per_msg() { awk -v b="$1" -v a="$2" -v r="$3" -v t="$ticks" -v d="$DURATION" \
  'BEGIN { if (r > 0) printf "%.1f", (a - b) / t * 1e6 / (r * d); else print "-" }'; }

run() { # protocol workload
  local proto=$1 load=$2 extra=()
  [ "$proto" = grpc ] && extra=(--grpc "$grpc")
  case $load in
    sync) extra+=(-w 64 --mode sync) ;;
    async) extra+=(-w 8 --mode async --inflight 32) ;;
  esac
  "$BIN/mqbench" producer -n "$namesrv" -t BenchGrpc -s "$SIZE" --duration "$DURATION" "${extra[@]}" \
    | grep -E '^\[' | sed -E 's/.* = ([0-9]+) msgs\/s.*RT p50 ([0-9.]+) ms, p99 ([0-9.]+) ms.*/\1 \2 \3/'
}

consume() { # protocol round
  local proto=$1 round=$2 extra=()
  [ "$proto" = grpc ] && extra=(--grpc "$grpc")
  "$BIN/mqbench" consumer -n "$namesrv" -t BenchGrpc -w 4 -g "bench-$proto-$round" --duration "$DURATION" "${extra[@]}" \
    | grep -E '^\[' | sed -E 's/.* = ([0-9]+) msgs\/s.*RT p50 ([0-9.]+) ms, p99 ([0-9.]+) ms.*/\1 \2 \3/'
}

# One measured run: its figures, then the broker's CPU microseconds per message.
measure() { # round workload protocol command...
  local round=$1 load=$2 proto=$3; shift 3
  local before after figures
  before=$(cpu); figures=$("$@"); after=$(cpu)
  echo "$round $load $proto $figures $(per_msg "$before" "$after" "${figures%% *}")"
}

echo "round workload protocol msgs/s p50_ms p99_ms broker_cpu_us_per_msg"
for round in $(seq "$ROUNDS"); do
  for load in sync async; do
    for proto in remoting grpc; do
      measure "$round" "$load" "$proto" run "$proto" "$load"
    done
  done
  for proto in remoting grpc; do
    measure "$round" consume "$proto" consume "$proto" "$round"
  done
done
