#Requires -Version 5.1
<#
.SYNOPSIS
    Use a botward secret from a Windows bot: Windows PowerShell 5.1 or
    PowerShell 7, with the bot's certificate from Cert:\CurrentUser\My.

.DESCRIPTION
    Reads the dynamic secret erp-db-login (username, password and a lease),
    builds a SQL Server connection string from it, runs one query, then
    disposes of the connection and releases the lease, so the database
    credentials stop working at once. The secret is never printed or
    logged: only the query's result is.

    The bot's certificate and non-exportable key are in the bot account's
    personal store (Import-PfxCertificate, see packaging/windows/INSTALL.md).
    Invoke-RestMethod -CertificateThumbprint takes them from
    Cert:\CurrentUser\My, so run this as the bot's account (the robot's
    Windows user, or the account of the scheduled task).

    botward's server certificate must chain to a CA in the host's trusted
    roots (Cert:\LocalMachine\Root); certificate checks are never skipped.

    Environment (or the parameters of the same name):
      BOTWARD_THUMBPRINT   the bot certificate's thumbprint
      BOTWARD_ADDR         https://127.0.0.1:8443 (default); TCP only here

    From cmd.exe or a script that has PEM files instead of a store,
    botward.exe get does the same (and can use the named pipe, where
    botward also checks the calling account and program):
      botward.exe get --addr npipe:////./pipe/botward --cert bot.pem --key bot-key.pem --ca server-ca.pem erp-db --field password

    On error, writes one line "botward: <code>: <message>" to stderr and
    exits 1. botward's messages never contain secret values.

.EXAMPLE
    $env:BOTWARD_THUMBPRINT = '3B1F...'
    powershell.exe -NoProfile -File .\windows_client.ps1 -Server erp-db.corp.example
.EXAMPLE
    pwsh -NoProfile -File .\windows_client.ps1 -Name erp-db-login -Database erp
#>
[CmdletBinding()]
param(
    [string] $Name = 'erp-db-login',
    [string] $Thumbprint = $env:BOTWARD_THUMBPRINT,
    [string] $Address = $(if ($env:BOTWARD_ADDR) { $env:BOTWARD_ADDR } else { 'https://127.0.0.1:8443' }),
    [string] $Server = 'erp-db.corp.example',
    [string] $Database = 'erp'
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

if ($PSVersionTable.PSVersion.Major -lt 6) {
    # .NET Framework: make sure TLS 1.2 is offered (TLS 1.3 follows the OS).
    [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
}

function Fail([string] $Code, [string] $Message) {
    [Console]::Error.WriteLine("botward: ${Code}: $Message")
    exit 1
}

# Turns a failed request into "code: message". botward's error body is
# {"error":{"code","message","request_id"}}; it names no secret.
function Get-BotwardError($ErrorRecord) {
    $body = if ($ErrorRecord.ErrorDetails) { $ErrorRecord.ErrorDetails.Message } else { $null }
    if ($body) {
        try {
            $e = ($body | ConvertFrom-Json).error
            if ($e) { return @($e.code, "$($e.message) (request $($e.request_id))") }
        } catch { }
    }
    return @('connection', $ErrorRecord.Exception.Message)
}

function Invoke-Botward([string] $Method, [string] $Path) {
    $request = @{
        Uri                   = '{0}{1}' -f $Address.TrimEnd('/'), $Path
        Method                = $Method
        CertificateThumbprint = $Thumbprint
        TimeoutSec            = 10
        UseBasicParsing       = $true
    }
    try {
        return Invoke-RestMethod @request
    } catch {
        $code, $message = Get-BotwardError $_
        Fail $code $message
    }
}

if (-not $Thumbprint) { Fail 'usage' 'set BOTWARD_THUMBPRINT or -Thumbprint' }
if (-not $Address.StartsWith('https://')) { Fail 'usage' "BOTWARD_ADDR must be an https:// address, got '$Address'" }
$Thumbprint = $Thumbprint -replace '\s', ''
$cert = Get-Item -LiteralPath "Cert:\CurrentUser\My\$Thumbprint" -ErrorAction SilentlyContinue
if (-not $cert -or -not $cert.HasPrivateKey) {
    Fail 'certificate' "no certificate with a private key and thumbprint $Thumbprint in Cert:\CurrentUser\My"
}

# GET /v1/secrets/{name}: {"name", "data": {...}, "lease": {"id", "ttl_seconds", "renewable"}, "request_id"}
$secret = Invoke-Botward Get ('/v1/secrets/{0}' -f [uri]::EscapeDataString($Name))
$leaseId = $null
if ($secret.PSObject.Properties['lease'] -and $secret.lease) { $leaseId = $secret.lease.id }
Write-Verbose ("got {0} (request {1}); lease: {2}" -f $Name, $secret.request_id, $(if ($leaseId) { "$($secret.lease.ttl_seconds) s" } else { 'none' }))

$connection = $null
try {
    $builder = New-Object System.Data.SqlClient.SqlConnectionStringBuilder
    $builder['Data Source'] = $Server
    $builder['Initial Catalog'] = $Database
    $builder['User ID'] = $secret.data.username
    $builder['Password'] = $secret.data.password
    $builder['Encrypt'] = $true
    $connection = New-Object System.Data.SqlClient.SqlConnection $builder.ConnectionString
    $builder.Clear()
    $secret = $null

    $connection.Open()
    $command = $connection.CreateCommand()
    $command.CommandText = "SELECT COUNT(*) FROM dbo.invoices WHERE status = 'open'"
    $open = $command.ExecuteScalar()
    $command.Dispose()
    Write-Output "open invoices: $open"
} catch {
    # Connection errors name the server and the user, never the password.
    Fail 'database' $_.Exception.Message
} finally {
    if ($connection) { $connection.Dispose() }
    $builder = $null
    $secret = $null
    if ($leaseId) {
        # DELETE /v1/leases/{id}: 204; the credentials are revoked at Vault.
        Invoke-Botward Delete ('/v1/leases/{0}' -f [uri]::EscapeDataString($leaseId)) | Out-Null
        Write-Verbose 'lease released'
    }
}
