#!/usr/bin/env bash
# Verify speed: writes N records (default 1,000,000) through the real audit
# writer, then times `botward audit verify` with the public key and with the
# seed.
set -euo pipefail
shopt -s nullglob
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
N="${1:-1000000}"
cargo build --release --quiet --example audit_gen
cargo build --release --quiet
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
target/release/examples/audit_gen "$WORK" "$N"
cat "$WORK"/audit.jsonl "$WORK"/audit.jsonl.[0-9]* | wc -c | awk '{ printf "log size: %.1f MB\n", $1 / 1e6 }'
for mode in public-key seed; do
    args=(--public-key "$WORK/audit.jsonl.pub")
    [[ $mode == seed ]] && args=(--public-key "$WORK/audit.jsonl.pub" --seed "$WORK/audit.jsonl.seed")
    start=$(date +%s.%N)
    /usr/bin/time -f "peak RSS %M KB" target/release/botward audit verify "${args[@]}" "$WORK"/audit.jsonl "$WORK"/audit.jsonl.[0-9]* 2>"$WORK/time" || true
    end=$(date +%s.%N)
    awk -v n="$N" -v s="$start" -v e="$end" -v m="$mode" 'BEGIN { printf "verify (%s): %.2f s, %.0f records/s\n", m, e - s, n / (e - s) }'
    cat "$WORK/time"
done
