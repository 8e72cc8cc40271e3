#!/usr/bin/env bash
# The cost of each audit fsync policy: GET /v1/whoami (no Vault call, so the
# audit write dominates) with fsync = never, batch and always, and with the
# log on /dev/null (chain and MACs computed, nothing reaches a disk).
#
#   bench/audit-fsync.sh [DURATION] [CONNECTIONS]     defaults: 6s, 16
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DURATION="${1:-6s}"
CONNS="${2:-16}"
OHA="${OHA:-$(command -v oha || echo "$REPO/.tools/oha/bin/oha")}"
export PATH="$REPO/.tools/venv/bin:$PATH"
cargo build --release --quiet
BIN="$REPO/target/release/botward"
WORK="$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
wait_ready() { for _ in $(seq 100); do grep -q "botward ready" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }

"$BIN" dev --dir "$WORK/demo" --port 18460 --keep >"$WORK/dev.out" 2>"$WORK/dev.err" &
pids+=($!)
wait_ready "$WORK/dev.out"
DEMO="$WORK/demo"
TLS="$DEMO/tls"
CERT=(--cert "$TLS/invoice-bot.pem" --key "$TLS/invoice-bot-key.pem" --cacert "$TLS/ca.pem")
echo "audit file system: $(df -T "$WORK" | awk 'NR == 2 { print $2 }') ($WORK)"
printf '%-28s %9s %8s %8s\n' "audit" "req/s" "p50 ms" "p99 ms"
port=18461
for variant in devnull never batch always; do
    audit="$WORK/$variant.jsonl"
    fsync="$variant"
    [[ $variant == devnull ]] && { audit=/dev/null; fsync=never; }
    sed -e "s/127.0.0.1:18460/127.0.0.1:$port/" -e "s#$DEMO/botward.sock#$WORK/$variant.sock#" \
        -e "s#^path = \"$DEMO/audit.jsonl\"#path = \"$audit\"\nstate_dir = \"$WORK/state-$variant\"\nfsync = \"$fsync\"#" \
        "$DEMO/botward.toml" >"$WORK/$variant.toml"
    "$BIN" serve --config "$WORK/$variant.toml" >"$WORK/$variant.out" 2>"$WORK/$variant.err" &
    pid=$!
    pids+=($pid)
    wait_ready "$WORK/$variant.out"
    url="https://127.0.0.1:$port/v1/whoami"
    "$OHA" --no-tui -z 2s -c "$CONNS" "${CERT[@]}" "$url" >/dev/null
    "$OHA" --no-tui -z "$DURATION" -c "$CONNS" --output-format json "${CERT[@]}" "$url" >"$WORK/$variant.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$WORK/$variant.json" "$variant" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["summary"]; p = r["latencyPercentiles"]
label = {"devnull": "chain on /dev/null (no I/O)", "never": "fsync = never", "batch": "fsync = batch (default)", "always": "fsync = always"}[sys.argv[2]]
print(f"{label:28} {s['requestsPerSec']:9.0f} {p['p50'] * 1000:8.2f} {p['p99'] * 1000:8.2f}")
PY
    port=$((port + 1))
done
