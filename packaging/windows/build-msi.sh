#!/usr/bin/env bash
# Builds the botward MSI from botward.wxs with wixl (Debian: apt-get install
# wixl msitools), then adds with msibuild what wixl 0.101 cannot express:
#   - MsiLockPermissionsEx (Windows Installer 5.0): C:\ProgramData\botward and
#     its tls\ folder get owner Administrators and a protected DACL, SYSTEM and
#     Administrators full control, inherited by everything created in them;
#   - the configuration component becomes Permanent and NeverOverwrite, so an
#     existing botward.toml is never replaced and uninstalling keeps it;
#   - the Event Log source's EventMessageFile becomes REG_EXPAND_SZ (a
#     Registry value starting with "#%"; wixl 0.101 writes Type="expandable"
#     as a plain string);
#   - an AppSearch sets CONFIGFOUND when C:\ProgramData\botward\botward.toml
#     exists before the install, and the component that starts the service
#     is installed only then (and unless STARTSERVICE="0");
#   - SERVICEACCOUNT, STARTSERVICE and CONFIGFOUND are added to
#     SecureCustomProperties.
#
#   packaging/windows/build-msi.sh EXE OUT.msi VERSION
#
# VERSION is the MSI ProductVersion: major.minor.build, numbers only (e.g.
# 0.4.1). BOTWARD_CONFIG overrides the sample config that is installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { printf 'build-msi: error: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 3 ]] || die "usage: build-msi.sh EXE OUT.msi VERSION"
exe="$1" out="$2" version="$3"
config="${BOTWARD_CONFIG:-$HERE/botward.toml}"

[[ -f "$exe" ]] || die "no such file: $exe"
[[ -f "$config" ]] || die "no such file: $config"
[[ "$version" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,5}$ ]] \
    || die "VERSION must be major.minor.build (numbers, at most 255.255.65535), got '$version'"
for tool in wixl msibuild msiinfo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install wixl msitools)"
done
[[ "$(head -c 2 "$exe")" == "MZ" ]] || die "$exe is not a Windows executable"

mkdir -p "$(dirname "$out")"
out="$(realpath "$out")"
stage="$(mktemp -d)"
tmp="$stage/botward.msi"
trap 'rm -rf "$stage"' EXIT

# wixl looks up File sources relative to the .wxs, so stage everything.
cp "$exe" "$stage/botward.exe"
cp "$config" "$stage/botward.toml"
cp "$HERE/botward.wxs" "$stage/botward.wxs"
(cd "$stage" && wixl --arch x64 -D Version="$version" -o botward.msi botward.wxs)

# Component attributes: 0x100 64-bit, 0x10 Permanent, 0x80 NeverOverwrite.
# SDDL: owner and group, then a protected (P), auto-inherited (AI) DACL whose
# entries apply to subfolders (CI) and files (OI).
sddl='O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)'
msibuild "$tmp" -q "UPDATE \`Component\` SET \`Attributes\` = 400 WHERE \`Component\` = 'BotwardConfig'"
msibuild "$tmp" -q "UPDATE \`Component\` SET \`Attributes\` = 272 WHERE \`Component\` = 'BotwardTlsDir'"
msibuild "$tmp" -q "CREATE TABLE \`MsiLockPermissionsEx\` (\`MsiLockPermissionsEx\` CHAR(72) NOT NULL, \`LockObject\` CHAR(72) NOT NULL, \`Table\` CHAR(32) NOT NULL, \`SDDLText\` LONGCHAR NOT NULL, \`Condition\` CHAR(255) PRIMARY KEY \`MsiLockPermissionsEx\`)"
for dir in DATADIR TLSDIR; do
    msibuild "$tmp" -q "INSERT INTO \`MsiLockPermissionsEx\` (\`MsiLockPermissionsEx\`, \`LockObject\`, \`Table\`, \`SDDLText\`) VALUES ('Lock$dir', '$dir', 'CreateFolder', '$sddl')"
done

msibuild "$tmp" -q "UPDATE \`Registry\` SET \`Value\` = '#%%SystemRoot%\\Microsoft.NET\\Framework64\\v4.0.30319\\EventLogMessages.dll' WHERE \`Name\` = 'EventMessageFile'"

# FileSearch: botward.toml directly in [CommonAppDataFolder]botward.
msibuild "$tmp" -q "CREATE TABLE \`DrLocator\` (\`Signature_\` CHAR(72) NOT NULL, \`Parent\` CHAR(72), \`Path\` CHAR(255), \`Depth\` SHORT PRIMARY KEY \`Signature_\`, \`Parent\`, \`Path\`)"
msibuild "$tmp" -q "INSERT INTO \`Signature\` (\`Signature\`, \`FileName\`) VALUES ('BotwardConfigFile', 'botward.toml')"
msibuild "$tmp" -q "INSERT INTO \`DrLocator\` (\`Signature_\`, \`Path\`, \`Depth\`) VALUES ('BotwardConfigFile', '[CommonAppDataFolder]botward', 0)"
msibuild "$tmp" -q "INSERT INTO \`AppSearch\` (\`Property\`, \`Signature_\`) VALUES ('CONFIGFOUND', 'BotwardConfigFile')"
if ! msiinfo export "$tmp" InstallExecuteSequence | cut -f1 | grep -qx AppSearch; then
    msibuild "$tmp" -q "INSERT INTO \`InstallExecuteSequence\` (\`Action\`, \`Sequence\`) VALUES ('AppSearch', 50)"
fi
msibuild "$tmp" -q "UPDATE \`Component\` SET \`Condition\` = 'CONFIGFOUND AND STARTSERVICE <> \"0\"' WHERE \`Component\` = 'BotwardServiceStart'"

secure="$(msiinfo export "$tmp" Property | awk -F '\t' '$1 == "SecureCustomProperties" { print $2 }' | tr -d '\r')"
if [[ -z "$secure" ]]; then
    msibuild "$tmp" -q "INSERT INTO \`Property\` (\`Property\`, \`Value\`) VALUES ('SecureCustomProperties', 'SERVICEACCOUNT;STARTSERVICE;CONFIGFOUND')"
else
    msibuild "$tmp" -q "UPDATE \`Property\` SET \`Value\` = '$secure;SERVICEACCOUNT;STARTSERVICE;CONFIGFOUND' WHERE \`Property\` = 'SecureCustomProperties'"
fi

mv -f "$tmp" "$out"
printf 'build-msi: %s (botward %s)\n' "$out" "$version" >&2
