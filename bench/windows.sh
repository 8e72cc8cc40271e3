#!/usr/bin/env bash
# botward.exe under Wine beside the Linux binary, on the same machine, with
# the same config shape: sequential keep-alive KV reads over loopback TCP
# with mTLS from one Python `requests` session (the client of the examples),
# for DURATION seconds each, plus each server's resident memory idle and
# after the load. Under Wine the figures include Wine's own overhead; they
# say what to expect of this machine under Wine, not of Windows.
#
#   bench/windows.sh [DURATION]        default: 5
#
# Needs a release build of both (cargo build --release, and
# scripts/windows.sh for the cross build and the Wine prefix), OpenBao
# (scripts/install-deps.sh). BOTWARD_WIN_EXE and BOTWARD_WINEPREFIX name the
# Windows build and prefix (defaults: what scripts/windows.sh makes).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SECS="${1:-5}"
export PATH="$REPO/.tools/venv/bin:$PATH"
PY="$REPO/.tools/venv/bin/python"
LINUX="${BOTWARD_BIN:-$REPO/target/release/botward}"
EXE="${BOTWARD_WIN_EXE:-$REPO/target/x86_64-pc-windows-gnu/release/botward.exe}"
export WINEPREFIX="${BOTWARD_WINEPREFIX:-$REPO/target/wine/prefix}"
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
for f in "$LINUX" "$EXE" "$PY"; do
    [[ -x "$f" || -f "$f" ]] || { echo "missing: $f" >&2; exit 69; }
done
command -v bao >/dev/null || { echo "bao not found: scripts/install-deps.sh" >&2; exit 69; }

WORK="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
wait_ready() {
    for _ in $(seq 600); do grep -q "botward ready" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "not ready: $1" >&2; cat "${1%.out}.err" >&2; exit 1
}

BAO_PORT="$(port)"
bao server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$BAO_PORT" >"$WORK/bao.log" 2>&1 &
pids+=($!)
export BAO_ADDR="http://127.0.0.1:$BAO_PORT" BAO_TOKEN=root
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.1; done
bao kv put secret/rpa/erp-db username=erp password="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >/dev/null
printf root >"$WORK/token"
"$LINUX" certs init --dir "$WORK/tls" >/dev/null
"$LINUX" certs issue --bot invoice-bot --dir "$WORK/tls" >/dev/null

# One config per platform: paths as each sees them (Wine maps / to Z:\).
config() { # PLATFORM PORT
    local p="$WORK" audit="$WORK/audit-$1.jsonl"
    if [[ "$1" == windows ]]; then p="Z:${WORK//\//\\}"; audit="$p\\audit-windows.jsonl"; fi
    local s='/'; [[ "$1" == windows ]] && s='\'
    cat <<EOF
[listen]
tcp = "127.0.0.1:$2"
[tls]
cert = '$p${s}tls${s}server.pem'
key = '$p${s}tls${s}server-key.pem'
client_ca = '$p${s}tls${s}ca.pem'
trust_domain = "corp.example"
[vault]
addresses = ["$BAO_ADDR"]
[vault.auth]
method = "token"
token_file = '$p${s}token'
[audit]
path = '$audit'
[[secret]]
name = "erp-db"
kind = "kv"
mount = "secret"
path = "rpa/erp-db"
[[bot]]
name = "invoice-bot"
owner = "a@corp.example"
team = "t"
secrets = ["erp-db"]
EOF
}

load() { # PORT
    "$PY" - "$1" "$SECS" "$WORK/tls" <<'EOF'
import sys, time, requests
port, secs, tls = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
s = requests.Session()
s.cert = (f"{tls}/invoice-bot.pem", f"{tls}/invoice-bot-key.pem")
ca = f"{tls}/ca.pem"
url = f"https://127.0.0.1:{port}/v1/secrets/erp-db"
for _ in range(20):
    assert s.get(url, verify=ca).status_code == 200
n, lat, end = 0, [], time.monotonic() + secs
while time.monotonic() < end:
    t = time.monotonic()
    r = s.get(url, verify=ca)
    lat.append(time.monotonic() - t)
    assert r.status_code == 200, r.status_code
    n += 1
lat.sort()
print(f"{n/secs:.0f} {lat[len(lat)//2]*1000:.2f} {lat[int(len(lat)*0.99)]*1000:.2f}")
EOF
}

printf '| %s | %s | %s | %s | %s |\n' "server" "req/s" "p50 ms" "p99 ms" "RSS idle / after MB"
printf '|---|---|---|---|---|\n'
for platform in linux windows; do
    P="$(port)"
    config "$platform" "$P" >"$WORK/$platform.toml"
    if [[ "$platform" == linux ]]; then
        "$LINUX" serve --config "$WORK/linux.toml" >"$WORK/linux.out" 2>"$WORK/linux.err" &
    else
        wine "$EXE" serve --config "Z:${WORK//\//\\}\\windows.toml" >"$WORK/windows.out" 2>"$WORK/windows.err" &
    fi
    pid=$!
    pids+=("$pid")
    wait_ready "$WORK/$platform.out"
    idle="$(rss_mb "$pid")"
    read -r rps p50 p99 < <(load "$P")
    after="$(rss_mb "$pid")"
    label="botward (Linux)"; [[ "$platform" == windows ]] && label="botward.exe (under Wine)"
    printf '| %s | %s | %s | %s | %s / %s |\n' "$label" "$rps" "$p50" "$p99" "$idle" "$after"
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
done
