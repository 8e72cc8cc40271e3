#!/usr/bin/env bash
# cargo's runner for the x86_64-pc-windows-gnu target
# (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER): runs a Windows executable
# under Wine, in the prefix scripts/windows.sh made (WINEPREFIX), and exits
# with the executable's exit code.
set -euo pipefail

: "${WINEPREFIX:?set WINEPREFIX to a prefix made by scripts/windows.sh}"
shim="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [[ ! -f "$shim" ]]; then
    # Without it a Rust executable does not load (Wine exits with 53).
    echo "runner: $shim missing; make the prefix with scripts/windows.sh" >&2
    exit 2
fi
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
exec "${BOTWARD_WINE:-wine64}" "$@" </dev/null
