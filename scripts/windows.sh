#!/usr/bin/env bash
# The Windows build and its tests, under Wine:
#   1. a fresh Wine prefix in <target dir>/wine/prefix, with the
#      bcryptprimitives.dll shim (tests/windows/bcryptprimitives.c) in its
#      system32, which Rust executables need and Wine 8.0 lacks;
#   2. one release cross build (`cargo build --release --target
#      x86_64-pc-windows-gnu`), the botward.exe everything after it uses;
#   3. the library's unit tests, cross-built and run under Wine through
#      tests/windows/runner.sh;
#   4. the Linux-side tests that drive botward.exe under Wine (tests/windows.rs
#      and tests/windows_e2e.rs, `#[ignore]`d in the Linux run), told where
#      it is by BOTWARD_WIN_EXE, BOTWARD_WINEPREFIX and BOTWARD_WINE.
# Prints how long each step took, and exits non-zero when any test failed.
# Extra arguments go to both test harnesses, e.g.
#   scripts/windows.sh config      # only tests whose name contains "config"
# Needs Wine, MinGW-w64 and the Rust target (scripts/install-deps.sh); when
# one is missing this skips, or fails under CI (CI=true).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

TARGET=x86_64-pc-windows-gnu
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
WINE_DIR="$TARGET_DIR/wine"

log() { printf 'windows: %s\n' "$*" >&2; }

missing() {
    if [[ "${CI:-}" == "true" ]]; then
        log "error: $* (run scripts/install-deps.sh)"
        exit 1
    fi
    log "SKIP: $* (run scripts/install-deps.sh)"
    exit 0
}

# Debian puts the 64-bit loader outside PATH; other systems name it wine64.
WINE="${BOTWARD_WINE:-}"
if [[ -z "$WINE" ]]; then
    if [[ -x /usr/lib/wine/wine64 ]]; then
        WINE=/usr/lib/wine/wine64
    else
        WINE="$(command -v wine64 || true)"
    fi
fi
[[ -n "$WINE" && -x "$WINE" ]] || missing "no wine64"
command -v wineserver >/dev/null 2>&1 || missing "no wineserver"
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing "no x86_64-w64-mingw32-gcc"
rustc --print target-libdir --target "$TARGET" >/dev/null 2>&1 \
    && [[ -d "$(rustc --print target-libdir --target "$TARGET")" ]] \
    || missing "no Rust standard library for $TARGET"

export WINEPREFIX="$WINE_DIR/prefix"
export WINEARCH=win64
export WINEDEBUG=-all
# No Mono or Gecko: botward needs neither, and their installers would stall.
export WINEDLLOVERRIDES="mscoree,mshtml="
export BOTWARD_WINE="$WINE"
export BOTWARD_WINEPREFIX="$WINEPREFIX"
export BOTWARD_WIN_EXE="$TARGET_DIR/$TARGET/release/botward.exe"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$REPO/tests/windows/runner.sh"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
timings=()

# --- a fresh prefix, with its own wineserver ---------------------------------

# A wineserver left from an earlier run of this prefix goes first.
[[ -d "$WINEPREFIX" ]] && wineserver -k >/dev/null 2>&1 || true
rm -rf "$WINE_DIR"
mkdir -p "$WINEPREFIX"
t=$(now)
# The server and the processes wineboot starts outlive the command that
# starts them, and keep its output open: each gets files, never a pipe, or
# whatever reads that pipe waits for them.
if ! wineserver -p </dev/null >"$WINE_DIR/wineserver.log" 2>&1; then
    cat "$WINE_DIR/wineserver.log" >&2
    log "error: wineserver -p failed"
    exit 1
fi
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT
if ! "$WINE" wineboot -i </dev/null >"$WINE_DIR/wineboot.log" 2>&1; then
    cat "$WINE_DIR/wineboot.log" >&2
    log "error: wineboot -i failed"
    exit 1
fi
timings+=("prefix $(since "$t")s")

t=$(now)
x86_64-w64-mingw32-gcc -shared -O2 -Wall -Wextra -Werror \
    -o "$WINE_DIR/bcryptprimitives.dll" \
    tests/windows/bcryptprimitives.c tests/windows/bcryptprimitives.def -lbcrypt
cp "$WINE_DIR/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
timings+=("shim $(since "$t")s")

# --- the cross build ---------------------------------------------------------

t=$(now)
nice cargo build --release --locked --target "$TARGET"
timings+=("cross build $(since "$t")s")

status=0

# --- unit tests under Wine ---------------------------------------------------

t=$(now)
nice cargo test --release --locked --target "$TARGET" --lib --no-run
timings+=("unit test build $(since "$t")s")
t=$(now)
out="$WINE_DIR/unit-tests.log"
cargo test --release --locked --target "$TARGET" --lib --no-fail-fast -- "$@" \
    </dev/null >"$out" 2>&1 || status=$?
cat "$out"
timings+=("unit tests $(since "$t")s")

# --- botward.exe driven from Linux -------------------------------------------

# The same features as scripts/test.sh's Linux tests, so nothing is rebuilt.
t=$(now)
out="$WINE_DIR/linux-side-tests.log"
nice cargo test --locked --features testkit --test windows --test windows_e2e --test windows_service --no-fail-fast \
    -- --include-ignored "$@" \
    </dev/null >"$out" 2>&1 || status=$?
cat "$out"
timings+=("botward.exe tests $(since "$t")s")

log "$(IFS=,; echo "${timings[*]}" | sed 's/,/, /g')"
exit "$status"
