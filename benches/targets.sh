#!/usr/bin/env bash
# Measures every performance target of docs/benchmarks.md, RUNS times each (default 3), with
# release builds on this machine. Each run writes its JSON report to $OUT (default
# target/bench-results) and fails if a balance does not verify. Nothing else should run on the
# machine meanwhile: the load generator and the server share its cores.
#
#   bash benches/targets.sh                 # everything (about 40 minutes on 2 cores)
#   ONLY=writer bash benches/targets.sh     # one group: ingest | single | latency | writer | memory | floors
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=${OUT:-target/bench-results}
ONLY=${ONLY:-all}
BIN=target/release
mkdir -p "$OUT"
cargo build --release -p drawdown -p benches --bins

want() { [ "$ONLY" = all ] || [ "$ONLY" = "$1" ]; }
load() { "$BIN/loadgen" --spawn "$BIN/drawdown" "$@"; }

for i in $(seq 1 "$RUNS"); do
    if want ingest; then
        # 100-event batches for 60 s.
        load --customers 1000 --batch 100 --concurrency 8 --duration 60 --settle-timeout 900 --json "$OUT/batch100-$i.json"
    fi
    if want single; then
        # One event per request.
        load --customers 1000 --batch 1 --concurrency 64 --duration 30 --json "$OUT/single-$i.json"
    fi
    if want writer; then
        # The ledger writers alone: many customers, then one hot customer.
        "$BIN/postings" --customers 1000 --events 1000000 --json "$OUT/postings-$i.json"
        "$BIN/postings" --customers 1 --events 500000 --json "$OUT/postings-hot-$i.json"
    fi
    if want floors; then
        # What the stages cost in isolation, each at its best: HTTP alone (a null server), the
        # log's durable appends alone, the writers alone on one-event inputs
        # (docs/benchmarks.md, "The floors").
        "$BIN/floors" http --batch 1 --concurrency 64 --duration 20 | tee "$OUT/floor-http-1-$i.txt"
        "$BIN/floors" http --batch 100 --concurrency 8 --duration 20 | tee "$OUT/floor-http-100-$i.txt"
        for concurrency in 64 1024; do
            "$BIN/floors" log --concurrency "$concurrency" --duration 20 | tee "$OUT/floor-log-$concurrency-$i.txt"
        done
        "$BIN/postings" --customers 1000 --events 400000 --events-per-input 1 --json "$OUT/postings-single-$i.json"
    fi
done

if want latency; then
    # Event-to-balance latency at a fixed rate: RATE events/s (default: half of the median
    # accepted rate of the 100-event runs above, when there are some).
    if [ -z "${RATE:-}" ]; then
        RATE=$(python3 -c "
import json, glob, statistics
rates = [json.load(open(f))['accepted_events_per_sec'] for f in glob.glob('$OUT/batch100-*.json')]
print(int(statistics.median(rates) / 2) if rates else 20000)")
    fi
    for i in $(seq 1 "$RUNS"); do
        load --customers 1000 --batch 100 --concurrency 8 --rate "$RATE" --duration 30 --json "$OUT/latency-$i.json"
    done
    # ... and at a rate the whole pipeline sustains on this machine (SUSTAINED, default 20,000).
    for i in $(seq 1 "$RUNS"); do
        load --customers 1000 --batch 100 --concurrency 8 --rate "${SUSTAINED:-20000}" --duration 30 --json "$OUT/sustained-$i.json"
    done
fi

if want memory; then
    # Resident memory over 10 minutes at a steady rate, then with 10x the customers.
    load --customers 1000 --batch 100 --concurrency 8 --rate "${MEMORY_RATE:-10000}" --duration 600 --json "$OUT/memory-10min.json"
    # The same 200,000 events over 1,000 and over 10,000 customers: the difference in peak
    # memory is what 9,000 more active customers cost.
    for customers in 1000 10000; do
        load --customers "$customers" --batch 10 --concurrency 8 --events 200000 --json "$OUT/memory-customers-$customers.json"
    done
fi
echo "results in $OUT"
