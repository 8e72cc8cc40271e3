#!/usr/bin/env bash
# `botward analyze` on about a million records, on one core: wall time,
# throughput and peak memory; then the in-process analyzer and the
# per-request cost of online scoring.
#
#   bench/analyze.sh [COPIES]     default 50 (500 bots, about 1M records)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
COPIES="${1:-50}"
cargo build --release --quiet --example anomaly_bench
cargo build --release --quiet
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
target/release/examples/anomaly_bench "$WORK/audit.jsonl" "$COPIES"
records=$(wc -l <"$WORK/audit.jsonl")
start=$(date +%s.%N)
taskset -c 0 /usr/bin/time -f "%M" -o "$WORK/rss" target/release/botward analyze --tz Europe/Berlin --format json "$WORK/audit.jsonl" >"$WORK/findings.json" 2>/dev/null
end=$(date +%s.%N)
awk -v n="$records" -v s="$start" -v e="$end" -v rss="$(cat "$WORK/rss")" \
    'BEGIN { printf "botward analyze (one core): %d records in %.2f s = %.0f records/s, peak RSS %.1f MB\n", n, e - s, n / (e - s), rss / 1024 }'
