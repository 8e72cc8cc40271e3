#!/usr/bin/env bash
# Runs the guardrails (rustfmt, clippy with warnings denied, for Linux and
# for Windows, no module cycles), then every test: unit, integration (real
# OpenBao and PostgreSQL), doc and example targets, then the Windows build
# and its tests under Wine (scripts/windows.sh), the Windows packaging
# (scripts/check-packaging.sh), then the fuzz targets
# (scripts/fuzz.sh). Extra arguments go to the test harnesses, e.g.
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
# Guardrails first; a failure marks the run failed but hides no test.
cargo fmt --check || status=$?
cargo clippy --all-targets --locked --features testkit -- -D warnings || status=$?
# No function over 80 lines (clippy.toml) outside tests; the config
# validator says where it is the exception.
cargo clippy --lib --bins --locked -- -D warnings -W clippy::too_many_lines || status=$?
# The Windows-only code, which the Linux passes do not see.
cargo clippy --target x86_64-pc-windows-gnu --lib --bins --locked -- -D warnings -W clippy::too_many_lines || status=$?
python3 "$REPO/scripts/modgraph.py" > /dev/null || status=$?
# Examples are built, then run by the client tests against a live botward.
# The testkit feature brings the scenario generator that anomaly_eval and
# the anomaly_bench example need (the package's dev-dependency on itself
# enables it too); without it cargo skips them.
cargo build --examples --benches --locked --features testkit
# --no-fail-fast: one failing test binary must not hide the others.
cargo test --lib --tests --locked --features testkit --no-fail-fast -- --test-threads=4 "$@" 2>&1 | tee "$log" || status=$?
# The release cross build, the unit tests under Wine and tests/windows.rs;
# their results count in the closing line too.
bash "$REPO/scripts/windows.sh" "$@" 2>&1 | tee -a "$log" || status=$?
# The MSI and the zip: their rows and contents, actionlint on the Windows
# workflow, and an install, upgrade and removal with Wine's msiexec.
bash "$REPO/scripts/check-packaging.sh" --wine || status=$?
# Every fuzz target for 30 s (FUZZ_SECONDS) from its seed corpus.
bash "$REPO/scripts/fuzz.sh" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
