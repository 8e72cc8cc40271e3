#!/usr/bin/env bash
# KV v2 read through botward (audit on), through botward with the wiping
# allocator off, and directly against OpenBao (root token, and a token from
# botward's own AppRole), under the same load.
#
#   bench/kv-read.sh [DURATION] [CONNECTIONS]     defaults: 8s, 16
#
# Needs `oha` (cargo install oha --root .tools/oha) and OpenBao
# (scripts/install-deps.sh). Prints requests/s, p50, p99 and botward's RSS.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DURATION="${1:-8s}"
CONNS="${2:-16}"
OHA="${OHA:-$(command -v oha || echo "$REPO/.tools/oha/bin/oha")}"
export PATH="$REPO/.tools/venv/bin:$PATH"
[[ -x "$OHA" ]] || { echo "oha not found: cargo install oha --locked --root .tools/oha" >&2; exit 69; }

cargo build --release --quiet
BIN="$REPO/target/release/botward"
WORK="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

wait_ready() { for _ in $(seq 100); do grep -q "botward ready" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }

"$BIN" dev --dir "$WORK/demo" --port 18443 --keep >"$WORK/dev.out" 2>"$WORK/dev.err" &
pids+=($!)
wait_ready "$WORK/dev.out"
DEMO="$WORK/demo"
TLS="$DEMO/tls"
BAO_ADDR="$(sed -n 's/^addresses = \["\(.*\)"\]/\1/p' "$DEMO/botward.toml")"
ROOT="$(cat "$DEMO/openbao/root-token")"
# The demo's process is `botward dev`; the serving process is the same PID.
PID_ON="${pids[0]}"

sed -e 's/127.0.0.1:18443/127.0.0.1:18444/' -e "s#$DEMO/botward.sock#$WORK/off.sock#" \
    -e "s#$DEMO/audit.jsonl#$WORK/audit-off.jsonl#" -e 's/^\[audit\]/[hardening]\nwipe_freed_memory = false\n\n[audit]/' \
    "$DEMO/botward.toml" >"$WORK/off.toml"
"$BIN" serve --config "$WORK/off.toml" >"$WORK/off.out" 2>"$WORK/off.err" &
PID_OFF=$!
pids+=($PID_OFF)
wait_ready "$WORK/off.out"

rss() { awk -v k="$2" '$1 == k":" { print $2 / 1024 }' "/proc/$1/status"; }
IDLE_ON="$(rss "$PID_ON" VmRSS)"
IDLE_OFF="$(rss "$PID_OFF" VmRSS)"

CERT=(--cert "$TLS/invoice-bot.pem" --key "$TLS/invoice-bot-key.pem" --cacert "$TLS/ca.pem")
run() { # name, then oha arguments
    local name="$1"; shift
    "$OHA" --no-tui -z 2s -c "$CONNS" "$@" >/dev/null          # warm-up
    "$OHA" --no-tui -z "$DURATION" -c "$CONNS" --output-format json "$@" >"$WORK/$name.json"
}
run botward "${CERT[@]}" https://127.0.0.1:18443/v1/secrets/erp-db
run wipe-off "${CERT[@]}" https://127.0.0.1:18444/v1/secrets/erp-db
# Direct reads with the root token, and with a token from the same AppRole
# login botward uses (OpenBao checks its policy on every request).
APPROLE_TOKEN="$(BAO_ADDR="$BAO_ADDR" BAO_TOKEN="$ROOT" bao write -field=token auth/approle/login \
    role_id="$(cat "$DEMO/role-id")" secret_id="$(cat "$DEMO/secret-id")")"
run direct -H "X-Vault-Token: $ROOT" "$BAO_ADDR/v1/secret/data/rpa/erp-db"
run direct-approle -H "X-Vault-Token: $APPROLE_TOKEN" "$BAO_ADDR/v1/secret/data/rpa/erp-db"

python3 - "$WORK" "$IDLE_ON" "$(rss "$PID_ON" VmHWM)" "$IDLE_OFF" "$(rss "$PID_OFF" VmHWM)" "$DURATION" "$CONNS" <<'PY'
import json, sys
work, idle_on, peak_on, idle_off, peak_off, dur, conns = sys.argv[1:]
rows = []
for name, label, idle, peak in [("botward", "botward (audit on, wiping on)", idle_on, peak_on),
                                ("wipe-off", "botward (audit on, wiping off)", idle_off, peak_off),
                                ("direct", "OpenBao direct, root token", "", ""),
                                ("direct-approle", "OpenBao direct, AppRole token", "", "")]:
    r = json.load(open(f"{work}/{name}.json"))
    s = r["summary"]; p = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    ok = codes.get("200", 0); total = sum(codes.values())
    rows.append((label, s["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000, idle, peak, ok, total))
print(f"KV v2 read, oha -c {conns} -z {dur}, keep-alive, client certificates")
print(f"{'target':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'idle MB':>8} {'peak MB':>8} {'200s':>14}")
for label, rps, p50, p99, idle, peak, ok, total in rows:
    idle = f"{float(idle):.1f}" if idle else "-"; peak = f"{float(peak):.1f}" if peak else "-"
    print(f"{label:34} {rps:9.0f} {p50:8.2f} {p99:8.2f} {idle:>8} {peak:>8} {ok:>7}/{total:<6}")
print(f"botward / direct (AppRole token): {rows[0][1] / rows[3][1]:.2f}   botward / direct (root token): {rows[0][1] / rows[2][1]:.2f}")
print(f"wiping allocator cost: {100 * (1 - rows[0][1] / rows[1][1]):.1f}% of throughput")
PY
