#!/usr/bin/env bash
# Fetch a secret from botward with curl.
#
#   examples/curl.sh NAME           prints the JSON response ({"name","data",...})
#   examples/curl.sh NAME FIELD     prints only that field's value
#
# Environment:
#   BOTWARD_ADDR   https://127.0.0.1:8443 (default) or unix:///run/botward/botward.sock
#   BOTWARD_CERT   this bot's client certificate (PEM)
#   BOTWARD_KEY    its private key (PEM)
#   BOTWARD_CA     CA that issued botward's server certificate (PEM)
#
# On an HTTP error the JSON error body goes to stderr and the exit status is
# non-zero. `botward get NAME [--field F]` does the same without curl.
set -euo pipefail

usage() { echo "usage: $0 NAME [FIELD]" >&2; exit 64; }
[[ $# -ge 1 && $# -le 2 && -n "$1" ]] || usage
name="$1"
field="${2-}"

addr="${BOTWARD_ADDR:-https://127.0.0.1:8443}"
: "${BOTWARD_CERT:?set BOTWARD_CERT to the bot certificate (PEM)}"
: "${BOTWARD_KEY:?set BOTWARD_KEY to the bot private key (PEM)}"
: "${BOTWARD_CA:?set BOTWARD_CA to the botward CA certificate (PEM)}"

# Percent-encode one URL path segment or query value.
urlencode() {
    local s="$1" out="" c i
    local LC_ALL=C
    for ((i = 0; i < ${#s}; i++)); do
        c="${s:i:1}"
        case "$c" in
            [A-Za-z0-9._~-]) out+="$c" ;;
            *) printf -v c '%%%02X' "'$c"; out+="$c" ;;
        esac
    done
    printf '%s' "$out"
}

curl_args=(--fail-with-body -sS --max-time 15 --proto =https
    --cert "$BOTWARD_CERT" --key "$BOTWARD_KEY" --cacert "$BOTWARD_CA")

if [[ "$addr" == unix://* ]]; then
    # TLS over the Unix socket; the server certificate must carry DNS:localhost.
    curl_args+=(--unix-socket "${addr#unix://}")
    base="https://localhost"
else
    base="${addr%/}"
fi

url="$base/v1/secrets/$(urlencode "$name")"
[[ -z "$field" ]] || url+="?field=$(urlencode "$field")"

# Keep the body in memory (no temporary file holding a secret).
set +e
body="$(curl "${curl_args[@]}" "$url")"
rc=$?
set -e

if ((rc != 0)); then
    [[ -z "$body" ]] || printf '%s\n' "$body" >&2
    exit "$rc"
fi
printf '%s\n' "$body"
