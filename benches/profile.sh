#!/usr/bin/env bash
# Where the server's CPU goes under a saturated load: starts `drawdown serve` on a fresh data
# dir, drives it with `loadgen` for 40 s, and over a 10 s window after 15 s of warm-up records
# the CPU time of both processes (/proc/<pid>/stat) and a `perf record --call-graph dwarf`
# profile of the server, plus the server's counters before and after the window.
#
#   bash benches/profile.sh 100 8     # 100-event requests on 8 connections
#   bash benches/profile.sh 1 64      # single-event requests on 64 connections
#
# It ends with the server's samples split by pipeline stage (benches/stages.py). Then, for more:
#   perf report -i target/profile-<batch>.perf --children --sort sym -g none
# Needs perf; nothing else may run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-100}
CONC=${2:-8}
BIN=target/release
cargo build --release -p drawdown -p benches --bins
DATA=$(mktemp -d)
PORT=${PORT:-18080}
export DRAWDOWN_API_KEY=sk_test_profile0000000000000000000
RUST_LOG=warn "$BIN/drawdown" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" >/dev/null 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done
"$BIN/loadgen" --url "http://127.0.0.1:$PORT" --server-pid "$SERVER" --customers 1000 \
    --batch "$BATCH" --concurrency "$CONC" --duration 40 --settle-timeout 900 >"target/profile-$BATCH.log" 2>&1 &
LOADGEN=$!
trap 'kill -TERM $LOADGEN $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
sleep 15
counters() {
    curl -s "http://127.0.0.1:$PORT/metrics" |
        grep -E '^drawdown_(events_accepted_total|rater_events_total|writer_inputs_total|writer_postings_total) ' | tr '\n' ' '
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
S0=$(ticks $SERVER); L0=$(ticks $LOADGEN); C0=$(counters); T0=$(date +%s.%N)
perf record -F 199 --call-graph dwarf,16384 -p "$SERVER" -o "target/profile-$BATCH.perf" -- sleep 10 >/dev/null 2>&1
S1=$(ticks $SERVER); L1=$(ticks $LOADGEN); C1=$(counters); T1=$(date +%s.%N)
wait $LOADGEN
python3 - "$T0" "$T1" "$S0" "$S1" "$L0" "$L1" "$HZ" <<PY
import sys
t0, t1, s0, s1, l0, l1, hz = map(float, sys.argv[1:])
window = t1 - t0
print(f"window {window:.2f} s: server {(s1 - s0) / hz / window:.2f} cores, loadgen {(l1 - l0) / hz / window:.2f} cores")
PY
echo "counters before: $C0"
echo "counters after:  $C1"
echo "load report: target/profile-$BATCH.log; profile: target/profile-$BATCH.perf"
echo "the server's samples by stage:"
perf script -i "target/profile-$BATCH.perf" -F comm,ip,sym 2>/dev/null | python3 benches/stages.py
