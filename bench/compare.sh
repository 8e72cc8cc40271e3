#!/usr/bin/env bash
# botward against OpenBao Proxy, direct OpenBao and a bare hyper + rustls
# server, side by side in one run on this machine:
#
#   KV read       GET a KV v2 secret through botward, through the proxy,
#                 and directly (root token, and a token of botward's AppRole)
#   cached read   botward with `cache_ttl` against the proxy's cache of a
#                 leased (PostgreSQL) secret, and the reference server
#   handshakes    a new TLS connection per request, full and resumed,
#                 botward against the reference server
#
# Every system requires a client certificate from the same CA; botward runs
# with its audit log on and the default fsync policy (batch: fdatasync
# before the answer). Load: oha -c CONNS, keep-alive, DURATION after a 2 s
# warm-up; handshakes use bench/handshake.rs with the same connections.
#
#   bench/compare.sh [DURATION] [CONNS]          defaults: 8s, 16
#   BOTWARD_BIN=/path/to/botward bench/compare.sh    measure another build
#
# Needs oha (cargo install oha --locked --root .tools/oha), OpenBao and
# PostgreSQL (scripts/install-deps.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DURATION="${1:-8s}"
CONNS="${2:-16}"
SECS="${DURATION%s}"
OHA="${OHA:-$(command -v oha || echo "$REPO/.tools/oha/bin/oha")}"
export PATH="$REPO/.tools/venv/bin:$PATH"
[[ -x "$OHA" ]] || { echo "oha not found: cargo install oha --locked --root .tools/oha" >&2; exit 69; }
command -v bao >/dev/null || { echo "bao not found: scripts/install-deps.sh" >&2; exit 69; }
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[[ -x "$PGBIN/initdb" ]] || { echo "PostgreSQL not found: scripts/install-deps.sh" >&2; exit 69; }

cargo build --release --quiet --bin botward --example ref_server --example handshake
BIN="${BOTWARD_BIN:-$REPO/target/release/botward}"
EX="$REPO/target/release/examples"
WORK="$(mktemp -d)"
chmod 755 "$WORK"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() { # file, pattern
    for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for '$2' in $1:" >&2; tail -20 "$1" >&2; exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk -v k="$2" '$1 == k":" { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# OpenBao dev server, demo PKI, secrets and botward's AppRole.
"$REPO/target/release/botward" dev --dir "$WORK/demo" --port "$(port)" --keep >"$WORK/dev.out" 2>"$WORK/dev.err" &
pids+=($!)
wait_for "$WORK/dev.out" "botward ready"
DEMO="$WORK/demo"
TLS="$DEMO/tls"
BAO_ADDR="$(sed -n 's/^addresses = \["\(.*\)"\]/\1/p' "$DEMO/botward.toml")"
export BAO_ADDR BAO_TOKEN="$(cat "$DEMO/openbao/root-token")"

# PostgreSQL for the database secrets engine.
PG="$WORK/pg"
mkdir -p "$PG"
PGPW="pg-$RANDOM$RANDOM"
echo "$PGPW" >"$PG/pw"
PGPORT="$(port)"
AS=()
if [[ "$(id -u)" == 0 ]]; then chown -R postgres:postgres "$PG"; AS=(runuser -u postgres --); fi
"${AS[@]}" "$PGBIN/initdb" -D "$PG/data" -A scram-sha-256 -U postgres --no-sync --pwfile="$PG/pw" >"$WORK/initdb.log" 2>&1
"${AS[@]}" "$PGBIN/postgres" -D "$PG/data" -p "$PGPORT" -k "$PG" -c listen_addresses=127.0.0.1 >"$WORK/pg.log" 2>&1 &
pids+=($!)
wait_for "$WORK/pg.log" "ready to accept connections"
bao secrets enable database >/dev/null
bao write database/config/erp plugin_name=postgresql-database-plugin \
    "connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:$PGPORT/postgres?sslmode=disable" \
    allowed_roles=erp-readonly username=postgres "password=$PGPW" >/dev/null
bao write database/roles/erp-readonly db_name=erp default_ttl=1h max_ttl=24h \
    "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT pg_read_all_data TO \"{{name}}\";" >/dev/null

# OpenBao Proxy: the same server certificate and client CA, client
# certificates required, auto-auth with its own AppRole (botward's policy
# plus the database role), cache on.
printf 'path "secret/data/rpa/*" { capabilities = ["read"] }\npath "database/creds/*" { capabilities = ["read"] }\n' |
    bao policy write proxy - >/dev/null
bao write auth/approle/role/proxy token_policies=proxy token_ttl=1h >/dev/null
bao read -field=role_id auth/approle/role/proxy/role-id >"$WORK/proxy-role-id"
bao write -f -field=secret_id auth/approle/role/proxy/secret-id >"$WORK/proxy-secret-id"
PROXY_PORT="$(port)"
cat >"$WORK/proxy.hcl" <<HCL
vault { address = "$BAO_ADDR" }
auto_auth {
  method "approle" {
    config = {
      role_id_file_path = "$WORK/proxy-role-id"
      secret_id_file_path = "$WORK/proxy-secret-id"
      remove_secret_id_file_after_reading = false
    }
  }
}
cache {}
api_proxy { use_auto_auth_token = true }
listener "tcp" {
  address = "127.0.0.1:$PROXY_PORT"
  tls_cert_file = "$TLS/server.pem"
  tls_key_file = "$TLS/server-key.pem"
  tls_client_ca_file = "$TLS/ca.pem"
  tls_require_and_verify_client_cert = true
}
HCL
env -u BAO_TOKEN bao proxy -config="$WORK/proxy.hcl" >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
pids+=($PROXY_PID)
wait_for "$WORK/proxy.log" "authentication successful"

# botward, as `serve` with its own audit log; one more secret: the same KV
# path with a 30 s cache.
BW_PORT="$(port)"
CACHED=1
sed -e "s#^tcp = .*#tcp = \"127.0.0.1:$BW_PORT\"#" -e "/^unix/d" -e "/^unix_mode/d" \
    -e "s#$DEMO/audit.jsonl#$WORK/audit/audit.jsonl#" \
    -e 's/^secrets = \["erp-db"\]/secrets = ["erp-db", "erp-db-cached"]/' \
    "$DEMO/botward.toml" >"$WORK/botward.toml"
printf '\n[[secret]]\nname = "erp-db-cached"\nkind = "kv"\nmount = "secret"\npath = "rpa/erp-db"\ncache_ttl = "30s"\n' >>"$WORK/botward.toml"
mkdir -p "$WORK/audit"
if ! "$BIN" check-config "$WORK/botward.toml" >/dev/null 2>&1; then
    CACHED=0 # a build without `cache_ttl`
    python3 - "$WORK/botward.toml" <<'PY'
import sys; p = sys.argv[1]; s = open(p).read()
s = s.replace('cache_ttl = "30s"\n', ''); open(p, "w").write(s)
PY
fi
"$BIN" serve --config "$WORK/botward.toml" >"$WORK/botward.out" 2>"$WORK/botward.err" &
BW_PID=$!
pids+=($BW_PID)
wait_for "$WORK/botward.out" "botward ready"

# The same botward with `fsync = "never"`: not a goal figure, it shows what
# waiting for the disk costs.
BWN_PORT="$(port)"
mkdir -p "$WORK/audit-never"
sed -e "s#127.0.0.1:$BW_PORT#127.0.0.1:$BWN_PORT#" -e "s#$WORK/audit/audit.jsonl\"#$WORK/audit-never/audit.jsonl\"\nfsync = \"never\"#" \
    "$WORK/botward.toml" >"$WORK/botward-never.toml"
"$BIN" serve --config "$WORK/botward-never.toml" >"$WORK/botward-never.out" 2>"$WORK/botward-never.err" &
pids+=($!)
wait_for "$WORK/botward-never.out" "botward ready"

REF_PORT="$(port)"
"$EX/ref_server" --addr "127.0.0.1:$REF_PORT" --cert "$TLS/server.pem" --key "$TLS/server-key.pem" --ca "$TLS/ca.pem" >"$WORK/ref.out" 2>&1 &
REF_PID=$!
pids+=($REF_PID)
wait_for "$WORK/ref.out" "^ready"

sleep 1
BW_IDLE="$(rss $BW_PID VmRSS)"
PROXY_IDLE="$(rss $PROXY_PID VmRSS)"
REF_IDLE="$(rss $REF_PID VmRSS)"

CERT=(--cert "$TLS/invoice-bot.pem" --key "$TLS/invoice-bot-key.pem" --cacert "$TLS/ca.pem")
run() { # name, then oha arguments
    local name="$1"; shift
    "$OHA" --no-tui -z 2s -c "$CONNS" "$@" >/dev/null
    "$OHA" --no-tui -z "$DURATION" -c "$CONNS" --output-format json "$@" >"$WORK/$name.json"
}
hs() { # name, port, path, mode
    "$EX/handshake" --addr "127.0.0.1:$2" --path "$3" --mode "$4" --conns "$CONNS" --secs "$SECS" --warmup 2 \
        --ca "$TLS/ca.pem" --cert "$TLS/invoice-bot.pem" --key "$TLS/invoice-bot-key.pem" >"$WORK/$1.json"
}
APPROLE_TOKEN="$(bao write -field=token auth/approle/login role_id="$(cat "$DEMO/role-id")" secret_id="$(cat "$DEMO/secret-id")")"

run kv-botward "${CERT[@]}" "https://127.0.0.1:$BW_PORT/v1/secrets/erp-db"
run kv-proxy "${CERT[@]}" "https://127.0.0.1:$PROXY_PORT/v1/secret/data/rpa/erp-db"
run kv-direct-approle -H "X-Vault-Token: $APPROLE_TOKEN" "$BAO_ADDR/v1/secret/data/rpa/erp-db"
run kv-direct-root -H "X-Vault-Token: $BAO_TOKEN" "$BAO_ADDR/v1/secret/data/rpa/erp-db"
if [[ $CACHED == 1 ]]; then
    run cached-botward "${CERT[@]}" "https://127.0.0.1:$BW_PORT/v1/secrets/erp-db-cached"
    run cached-botward-never "${CERT[@]}" "https://127.0.0.1:$BWN_PORT/v1/secrets/erp-db-cached"
fi
run cached-proxy "${CERT[@]}" "https://127.0.0.1:$PROXY_PORT/v1/database/creds/erp-readonly"
run ref-keepalive "${CERT[@]}" "https://127.0.0.1:$REF_PORT/"
HS_PATH=/v1/secrets/erp-db-cached
[[ $CACHED == 1 ]] || HS_PATH=/v1/whoami
hs hs-full-botward "$BW_PORT" "$HS_PATH" full
hs hs-full-ref "$REF_PORT" / full
hs hs-resumed-botward "$BW_PORT" "$HS_PATH" resumed
hs hs-resumed-ref "$REF_PORT" / resumed
hs hs-resumed-botward-never "$BWN_PORT" "$HS_PATH" resumed
DB_LEASES="$(bao list -format=json sys/leases/lookup/database/creds/erp-readonly 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' || echo 0)"

python3 - "$WORK" "$DURATION" "$CONNS" "$CACHED" "$DB_LEASES" \
    "$BW_IDLE" "$(rss $BW_PID VmHWM)" "$PROXY_IDLE" "$(rss $PROXY_PID VmHWM)" "$REF_IDLE" "$(rss $REF_PID VmHWM)" \
    "$("$BIN" --version 2>/dev/null || echo botward)" "$(bao version | cut -d' ' -f1-2)" "$HS_PATH" <<'PY'
import json, os, platform, sys
(work, dur, conns, cached, db_leases, bw_idle, bw_peak, px_idle, px_peak, ref_idle, ref_peak,
 bw_version, bao_version, hs_path) = sys.argv[1:]
def oha(name):
    p = f"{work}/{name}.json"
    if not os.path.exists(p):
        return None
    r = json.load(open(p))
    codes = r.get("statusCodeDistribution", {})
    return dict(rps=r["summary"]["requestsPerSec"] * codes.get("200", 0) / max(1, sum(codes.values())),
                p50=r["latencyPercentiles"]["p50"] * 1000, p99=r["latencyPercentiles"]["p99"] * 1000,
                ok=codes.get("200", 0), total=sum(codes.values()))
def hs(name):
    r = json.load(open(f"{work}/{name}.json"))
    return dict(rps=r["rps"], p50=r["p50_ms"], p99=r["p99_ms"], ok=r["ok"], total=r["total"], resumed=r["resumed"])
R = {n: oha(n) for n in ["kv-botward", "kv-proxy", "kv-direct-approle", "kv-direct-root", "cached-botward", "cached-botward-never", "cached-proxy", "ref-keepalive"]}
R.update({n: hs(n) for n in ["hs-full-botward", "hs-full-ref", "hs-resumed-botward", "hs-resumed-ref", "hs-resumed-botward-never"]})
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; {bw_version}, {bao_version}")
print(f"load: {conns} connections, {dur} after a 2 s warm-up; client certificates everywhere; botward audit on, fsync batch")
print()
print(f"| {'comparison':12} | {'system':44} | {'req/s':>7} | {'p50 ms':>6} | {'p99 ms':>7} | {'200s / requests':>16} |")
print(f"|{'-'*14}|{'-'*46}|{'-'*9}|{'-'*8}|{'-'*9}|{'-'*18}|")
rows = [("KV read", "botward", "kv-botward"), ("KV read", "OpenBao Proxy", "kv-proxy"),
        ("KV read", "OpenBao direct, AppRole token", "kv-direct-approle"),
        ("KV read", "OpenBao direct, root token", "kv-direct-root"),
        ("cached read", "botward, cache_ttl = 30s", "cached-botward"),
        ("cached read", "OpenBao Proxy, cached database creds", "cached-proxy"),
        ("cached read", "botward, fsync never (context only)", "cached-botward-never"),
        ("cached read", "reference server, constant", "ref-keepalive"),
        ("full hs", f"botward {hs_path}", "hs-full-botward"), ("full hs", "reference server", "hs-full-ref"),
        ("resumed hs", f"botward {hs_path}", "hs-resumed-botward"), ("resumed hs", "reference server", "hs-resumed-ref"),
        ("resumed hs", "botward, fsync never (context only)", "hs-resumed-botward-never")]
for comp, label, key in rows:
    r = R[key]
    if r is None:
        print(f"| {comp:12} | {label:44} | {'n/a':>7} | {'':>6} | {'':>7} | {'':>16} |"); continue
    extra = f" ({r['resumed']} resumed)" if "resumed" in key and "never" not in key else ""
    print(f"| {comp:12} | {label + extra:44} | {r['rps']:7.0f} | {r['p50']:6.2f} | {r['p99']:7.2f} | {str(r['ok']) + ' / ' + str(r['total']):>16} |")
print()
print(f"| process | idle RSS MB | peak RSS MB |\n|---|---|---|")
print(f"| botward | {bw_idle} | {bw_peak} |\n| OpenBao Proxy | {px_idle} | {px_peak} |\n| reference server | {ref_idle} | {ref_peak} |")
print()
def ratio(a, b, goal):
    if R[a] is None or R[b] is None:
        return "n/a"
    x = R[a]["rps"] / R[b]["rps"]
    return f"{x:.2f}x (goal {goal}: {'met' if x >= float(goal.rstrip('x')) else 'missed'})"
print("| ratio | measured |\n|---|---|")
print(f"| KV read, botward / proxy | {ratio('kv-botward', 'kv-proxy', '1.5x')} |")
print(f"| KV read, botward / direct (AppRole token) | {ratio('kv-botward', 'kv-direct-approle', '0.85x')} |")
print(f"| KV read, botward / direct (root token) | {ratio('kv-botward', 'kv-direct-root', '0.85x')} |")
print(f"| cached read, botward / proxy cached | {ratio('cached-botward', 'cached-proxy', '2x')} |")
print(f"| cached read, botward / reference | {ratio('cached-botward', 'ref-keepalive', '0.6x')} |")
print(f"| full handshakes, botward / reference | {ratio('hs-full-botward', 'hs-full-ref', '0.9x')} |")
print(f"| resumed handshakes, botward / reference | {ratio('hs-resumed-botward', 'hs-resumed-ref', '0.9x')} |")
if R["cached-botward-never"] is not None:
    print(f"| context: cached read with fsync never, / reference | {R['cached-botward-never']['rps'] / R['ref-keepalive']['rps']:.2f}x |")
print(f"| context: resumed handshakes with fsync never, / reference | {R['hs-resumed-botward-never']['rps'] / R['hs-resumed-ref']['rps']:.2f}x |")
pk = float(bw_peak) / float(px_peak)
print(f"| peak RSS, botward / proxy | {pk:.2f} (goal at most 0.25: {'met' if pk <= 0.25 else 'missed'}) |")
print(f"| idle RSS, botward | {bw_idle} MB (goal at most 15 MB: {'met' if float(bw_idle) <= 15 else 'missed'}) |")
print()
print(f"database leases issued during the proxy's cached run: {db_leases} (1 means every request was served from its cache)")
PY
