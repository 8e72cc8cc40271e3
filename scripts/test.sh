#!/usr/bin/env bash
# Runs every test: unit, integration (real OpenBao and PostgreSQL), doc and
# example targets, then the fuzz targets (scripts/fuzz.sh). Extra arguments
# go to the test harness, e.g.
#   scripts/test.sh audit          # only tests whose name contains "audit"
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash "$REPO/scripts/install-deps.sh"

export PATH="$REPO/.tools/venv/bin:$PATH"
export BOTWARD_BAO="$REPO/.tools/venv/bin/bao"
export BOTWARD_PYTHON="$REPO/.tools/venv/bin/python"
if [[ -z "${BOTWARD_PG_BIN:-}" ]]; then
    initdb="$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)"
    BOTWARD_PG_BIN="$(dirname "$initdb")"
fi
export BOTWARD_PG_BIN

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# Examples are built, then run by the client tests against a live botward.
cargo build --examples --benches --locked
# --no-fail-fast: one failing test binary must not hide the others.
cargo test --lib --tests --locked --no-fail-fast -- --test-threads=4 "$@" 2>&1 | tee "$log" || status=$?
# Every fuzz target for 30 s (FUZZ_SECONDS) from its seed corpus.
bash "$REPO/scripts/fuzz.sh" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
