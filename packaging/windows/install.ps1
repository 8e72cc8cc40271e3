#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs (or with -Uninstall removes) botward from the zip.

.DESCRIPTION
    Run from an elevated Windows PowerShell 5.1 or PowerShell 7 in the folder
    the zip was unpacked to. Installing:

      1. stops a running botward service (an upgrade);
      2. copies botward.exe to C:\Program Files\botward\;
      3. creates C:\ProgramData\botward\ and its tls\ folder, owned by
         Administrators, with a protected DACL: SYSTEM and Administrators full
         control, the service account (-Account) Modify, nobody else;
      4. copies the sample botward.toml there unless a config already exists;
      5. registers the Event Log source "botward" in the Application log;
      6. registers the service with "botward.exe service install" (once);
      7. checks the config and starts the service.

    When the config does not validate yet (the sample as shipped), the
    service is installed but not started, and the script exits with code 2:
    edit C:\ProgramData\botward\botward.toml, then run
    "botward.exe service start".

    -Uninstall stops and removes the service, the Event Log source and
    C:\Program Files\botward\. C:\ProgramData\botward\ (config, TLS files,
    audit log) stays: the audit log is evidence. Remove it by hand when it
    is no longer needed.

.PARAMETER Account
    The service account: a virtual account (NT SERVICE\botward) or a group
    managed service account (CORP\svc-botward$). Default: LocalSystem.

.PARAMETER NoStart
    Install, but do not start the service.

.PARAMETER Uninstall
    Remove botward instead.

.EXAMPLE
    .\install.ps1
.EXAMPLE
    .\install.ps1 -Account 'NT SERVICE\botward'
.EXAMPLE
    .\install.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    [string] $Account,
    [switch] $NoStart,
    [switch] $Uninstall
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$ServiceName = 'botward'
$InstallDir = Join-Path $env:ProgramFiles 'botward'
$DataDir = Join-Path $env:ProgramData 'botward'
$TlsDir = Join-Path $DataDir 'tls'
$Exe = Join-Path $InstallDir 'botward.exe'
$Config = Join-Path $DataDir 'botward.toml'
$EventSourceKey = 'HKLM:\SYSTEM\CurrentControlSet\Services\EventLog\Application\botward'
$EventMessageFile = '%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll'

# Well-known SIDs, so the script works on any display language.
$SidSystem = New-Object System.Security.Principal.SecurityIdentifier 'S-1-5-18'
$SidAdministrators = New-Object System.Security.Principal.SecurityIdentifier 'S-1-5-32-544'

# The arguments come as one array: splatted or literal, "--config" would be
# taken for a PowerShell parameter.
function Invoke-Botward([string[]] $Arguments) {
    # To the console, not the pipeline: these functions return only an exit code.
    & $Exe @Arguments | Out-Host
    if ($LASTEXITCODE -ne 0) {
        throw "botward.exe $($Arguments -join ' ') failed with exit code $LASTEXITCODE"
    }
}

function Stop-BotwardService {
    $service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    if ($service -and $service.Status -ne 'Stopped') {
        Write-Host "Stopping the $ServiceName service (drains connections, revokes leases, seals the audit log)"
        if (Test-Path -LiteralPath $Exe) {
            Invoke-Botward @('service', 'stop')
        } else {
            Stop-Service -Name $ServiceName
        }
    }
}

# Owner Administrators; protected (nothing inherited from C:\ProgramData);
# SYSTEM and Administrators full control, the service account Modify; all
# inherited by the folders and files inside.
function Set-BotwardDataAcl([string] $Path, $ServiceSid) {
    $inherit = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
    $propagate = [System.Security.AccessControl.PropagationFlags]::None
    $allow = [System.Security.AccessControl.AccessControlType]::Allow
    $acl = New-Object System.Security.AccessControl.DirectorySecurity
    $acl.SetOwner($SidAdministrators)
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in @($SidSystem, $SidAdministrators)) {
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($sid, 'FullControl', $inherit, $propagate, $allow)
        $acl.AddAccessRule($rule)
    }
    if ($ServiceSid) {
        $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($ServiceSid, 'Modify', $inherit, $propagate, $allow)
        $acl.AddAccessRule($rule)
    }
    Set-Acl -LiteralPath $Path -AclObject $acl
}

function Install-Botward {
    $source = $PSScriptRoot
    foreach ($file in @('botward.exe', 'botward.toml')) {
        if (-not (Test-Path -LiteralPath (Join-Path $source $file))) {
            throw "$file not found next to install.ps1 ($source)"
        }
    }

    $serviceSid = $null
    if ($Account -and $Account -ne 'LocalSystem') {
        try {
            $ntAccount = New-Object System.Security.Principal.NTAccount $Account
            $serviceSid = $ntAccount.Translate([System.Security.Principal.SecurityIdentifier])
        } catch {
            # A virtual account exists only once its service does: grant it after the install below.
            if ($Account -notlike 'NT SERVICE\*') { throw "unknown account '$Account'" }
        }
    }

    Stop-BotwardService

    New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
    Copy-Item -LiteralPath (Join-Path $source 'botward.exe') -Destination $Exe -Force

    # The DACL is set before anything is copied in, so no file is ever readable by Users.
    foreach ($dir in @($DataDir, $TlsDir)) {
        New-Item -ItemType Directory -Force -Path $dir | Out-Null
    }
    Set-BotwardDataAcl -Path $DataDir -ServiceSid $serviceSid
    Set-BotwardDataAcl -Path $TlsDir -ServiceSid $serviceSid
    if (Test-Path -LiteralPath $Config) {
        Write-Host "Keeping the existing $Config"
    } else {
        Copy-Item -LiteralPath (Join-Path $source 'botward.toml') -Destination $Config
        Write-Host "Installed the sample config ${Config}: edit it before starting botward"
    }

    if (-not (Test-Path -LiteralPath $EventSourceKey)) {
        New-Item -Path $EventSourceKey -Force | Out-Null
    }
    New-ItemProperty -Path $EventSourceKey -Name 'EventMessageFile' -PropertyType ExpandString -Value $EventMessageFile -Force | Out-Null
    New-ItemProperty -Path $EventSourceKey -Name 'TypesSupported' -PropertyType DWord -Value 7 -Force | Out-Null

    if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
        Write-Host "The $ServiceName service is registered already; its binary was replaced (its account is unchanged)"
    } else {
        $arguments = @('service', 'install', '--config', $Config)
        if ($Account) { $arguments += @('--account', $Account) }
        Invoke-Botward $arguments
    }

    if ($Account -like 'NT SERVICE\*' -and -not $serviceSid) {
        $serviceSid = (New-Object System.Security.Principal.NTAccount $Account).Translate([System.Security.Principal.SecurityIdentifier])
        Set-BotwardDataAcl -Path $DataDir -ServiceSid $serviceSid
        Set-BotwardDataAcl -Path $TlsDir -ServiceSid $serviceSid
    }

    if ($NoStart) {
        Write-Host "Installed; start it with: & '$Exe' service start"
        return 0
    }
    & $Exe check-config $Config | Out-Host
    if ($LASTEXITCODE -ne 0) {
        Write-Warning "Installed, not started: $Config does not validate. Edit it, then run: & '$Exe' service start"
        return 2
    }
    Invoke-Botward @('service', 'start')
    Write-Host "botward is running. Logs: Event Viewer > Windows Logs > Application (source botward), and the audit log named in $Config"
    return 0
}

function Uninstall-Botward {
    if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
        Stop-BotwardService
        if (Test-Path -LiteralPath $Exe) {
            Invoke-Botward @('service', 'uninstall')
        } else {
            & sc.exe delete $ServiceName | Out-Null
            if ($LASTEXITCODE -ne 0) { throw "sc.exe delete $ServiceName failed with exit code $LASTEXITCODE" }
        }
    }
    if (Test-Path -LiteralPath $EventSourceKey) {
        Remove-Item -LiteralPath $EventSourceKey -Recurse -Force
    }
    if (Test-Path -LiteralPath $InstallDir) {
        Remove-Item -LiteralPath $InstallDir -Recurse -Force
    }
    Write-Host "botward removed. $DataDir (config, TLS files, audit log) is kept; remove it by hand when it is no longer needed."
    return 0
}

if ($Uninstall) {
    exit (Uninstall-Botward)
}
exit (Install-Botward)
