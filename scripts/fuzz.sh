#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ and runs each for FUZZ_SECONDS
# (default 30) from its seed corpus in fuzz/corpus/<target>. Any crash,
# failed invariant, leak or slow input (over 10 s) fails the run; the input
# is kept in fuzz/artifacts/<target>/ and the command that replays it is
# printed.
#   scripts/fuzz.sh                          # every target, 30 s each
#   scripts/fuzz.sh config schedule          # some targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh audit_line
# Needs a nightly toolchain and cargo-fuzz (installed here, pinned, when
# missing). Under CI=true a missing nightly or cargo-fuzz is a failure,
# never a skip. New inputs the fuzzer finds go to a scratch directory, so
# the committed corpus stays small.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_FUZZ_VERSION="0.13.2"
SECONDS_EACH="${FUZZ_SECONDS:-30}"
TARGETS=(http_route config schedule cert_identity audit_line)
if (($#)); then
    TARGETS=("$@")
fi

log() { printf 'fuzz: %s\n' "$*" >&2; }
unavailable() {
    if [[ "${CI:-}" == "true" ]]; then
        log "error: $*"
        exit 1
    fi
    log "skipped: $*"
    exit 0
}

cargo +nightly --version >/dev/null 2>&1 \
    || unavailable "no nightly toolchain (rustup toolchain install nightly --profile minimal)"
if [[ "$(cargo +nightly fuzz --version 2>/dev/null || true)" != "cargo-fuzz ${CARGO_FUZZ_VERSION}" ]]; then
    log "installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
    cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --locked --force \
        || unavailable "cannot install cargo-fuzz ${CARGO_FUZZ_VERSION}"
fi

cd "$REPO"
started=$SECONDS
if (($#)); then
    for t in "${TARGETS[@]}"; do
        cargo +nightly fuzz build --fuzz-dir fuzz "$t"
    done
else
    cargo +nightly fuzz build --fuzz-dir fuzz
fi
log "built in $((SECONDS - started)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    out="$scratch/$t.log"
    # http_route reaches hyper's header size limit (16 KiB) only with
    # longer inputs.
    max_len=8192
    [[ "$t" == http_route ]] && max_len=20480
    dict=()
    [[ -f "fuzz/$t.dict" ]] && dict=(-dict="fuzz/$t.dict")
    status=0
    cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -max_len="$max_len" "${dict[@]}" \
        -print_final_stats=1 -close_fd_mask=1 >"$out" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)"
    final="$(grep -E '^#[0-9]+ +DONE' "$out" | tail -n 1 || true)"
    if ((status != 0)); then
        failed+=("$t")
        tail -n 60 "$out" >&2
        log "$t: FAILED (exit $status); replay with: cargo +nightly fuzz run --fuzz-dir fuzz $t fuzz/artifacts/$t/<file>"
    else
        log "$t: ${runs:-?} runs in ${SECONDS_EACH} s, no failure (${final#* DONE   })"
    fi
done
log "done in $((SECONDS - started)) s"
if ((${#failed[@]})); then
    log "failed: ${failed[*]}"
    exit 1
fi
