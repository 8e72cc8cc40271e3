#!/usr/bin/env bash
# Builds the botward zip for Windows hosts installed without the MSI:
#   botward.exe, install.ps1, botward.toml (sample config), INSTALL.md
#
#   packaging/windows/make-zip.sh EXE OUT.zip
#
# Unpack it on the host and run install.ps1 from an elevated PowerShell (see
# INSTALL.md). The archive is reproducible: fixed order and timestamps.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { printf 'make-zip: error: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 ]] || die "usage: make-zip.sh EXE OUT.zip"
exe="$1" out="$2"
[[ -f "$exe" ]] || die "no such file: $exe"
[[ "$(head -c 2 "$exe")" == "MZ" ]] || die "$exe is not a Windows executable"
for f in install.ps1 botward.toml INSTALL.md; do
    [[ -f "$HERE/$f" ]] || die "missing $HERE/$f"
done
mkdir -p "$(dirname "$out")"

python3 - "$out" "$exe" "$HERE" <<'PY'
import os, sys, zipfile

out, exe, here = sys.argv[1:4]
members = [
    ("botward.exe", exe),
    ("install.ps1", os.path.join(here, "install.ps1")),
    ("botward.toml", os.path.join(here, "botward.toml")),
    ("INSTALL.md", os.path.join(here, "INSTALL.md")),
]
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name, path in members:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        with open(path, "rb") as f:
            z.writestr(info, f.read())
os.replace(tmp, out)
PY
printf 'make-zip: %s\n' "$out" >&2
