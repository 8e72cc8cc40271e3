#!/usr/bin/env pwsh
#Requires -Version 7.0
<#
.SYNOPSIS
    Fetch a secret from botward with PowerShell 7.

.DESCRIPTION
    Calls GET /v1/secrets/{Name} over mTLS (Invoke-WebRequest -Certificate). Without -Field it prints the
    secret's data object as one line of JSON; with -Field it prints only that
    field's value (the text/plain ?field= endpoint).

    Environment:
      BOTWARD_ADDR           https://127.0.0.1:8443 (default); TCP addresses only
      BOTWARD_PFX            client certificate and key as PKCS#12, or
      BOTWARD_PFX_PASSWORD   its password (optional)
      BOTWARD_CERT           client certificate (PEM) and
      BOTWARD_KEY            its private key (PEM), if BOTWARD_PFX is not set

    Trusting botward's server certificate: PowerShell validates the
    server against the operating system's trust store, so BOTWARD_CA is not
    read here, and certificate checks are never skipped. Install the CA that
    issues botward's server certificates (ideally a dedicated CA, name-
    constrained to localhost and 127.0.0.1) once per host:
      Windows:  Import-Certificate -FilePath botward-ca.pem -CertStoreLocation Cert:\LocalMachine\Root
                (or Cert:\CurrentUser\Root for one account; or deploy by GPO)
      Linux:    sudo cp botward-ca.pem /usr/local/share/ca-certificates/botward-ca.crt
                sudo update-ca-certificates
      macOS:    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain botward-ca.pem

    On error, writes one line "botward: <code>: <message>" to stderr and exits 1.

.EXAMPLE
    ./powershell_client.ps1 -Name erp-db -Field password
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory, Position = 0)]
    [string] $Name,

    [Parameter(Position = 1)]
    [string] $Field
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Fail([string] $Code, [string] $Message) {
    [Console]::Error.WriteLine("botward: ${Code}: $Message")
    exit 1
}

$X509 = [System.Security.Cryptography.X509Certificates.X509Certificate2]

function Get-ClientCertificate {
    if ($env:BOTWARD_PFX) {
        $password = if ($env:BOTWARD_PFX_PASSWORD) { $env:BOTWARD_PFX_PASSWORD } else { '' }
        return $X509::new($env:BOTWARD_PFX, $password)
    }
    if (-not $env:BOTWARD_CERT -or -not $env:BOTWARD_KEY) {
        Fail 'usage' 'set BOTWARD_PFX, or BOTWARD_CERT and BOTWARD_KEY'
    }
    $pem = $X509::CreateFromPemFile($env:BOTWARD_CERT, $env:BOTWARD_KEY)
    if ($IsWindows) {
        # SChannel cannot use the ephemeral key of a PEM-loaded certificate;
        # round-trip through PKCS#12 so the key is usable for the TLS handshake.
        $pfx = $pem.Export([System.Security.Cryptography.X509Certificates.X509ContentType]::Pkcs12)
        $pem.Dispose()
        try { return $X509::new($pfx) } finally { [Array]::Clear($pfx, 0, $pfx.Length) }
    }
    return $pem
}

$addr = if ($env:BOTWARD_ADDR) { $env:BOTWARD_ADDR } else { 'https://127.0.0.1:8443' }
if (-not $addr.StartsWith('https://')) {
    Fail 'usage' "BOTWARD_ADDR must be an https:// address, got '$addr'"
}

try {
    $cert = Get-ClientCertificate
} catch {
    Fail 'certificate' $_.Exception.Message
}

$request = @{
    Uri         = '{0}/v1/secrets/{1}' -f $addr.TrimEnd('/'), [uri]::EscapeDataString($Name)
    Method      = 'Get'
    Certificate = $cert
    TimeoutSec  = 10
}
if ($PSBoundParameters.ContainsKey('Field')) {
    # On a GET, -Body becomes the URL-encoded query string: ?field=...
    $request.Body = @{ field = $Field }
}

try {
    # Invoke-WebRequest rather than Invoke-RestMethod: the latter would try to
    # parse a text/plain value that looks like JSON or a number.
    $response = Invoke-WebRequest @request
} catch {
    $failure = $_
    $body = if ($failure.ErrorDetails) { $failure.ErrorDetails.Message } else { $null }
    $apiError = $null
    if ($body) {
        try { $apiError = ($body | ConvertFrom-Json).error } catch { $apiError = $null }
    }
    if ($apiError) {
        Fail $apiError.code $apiError.message
    }
    Fail 'connection' $failure.Exception.Message
} finally {
    $cert.Dispose()
}

if ($PSBoundParameters.ContainsKey('Field')) {
    # text/plain: only the value
    Write-Output $response.Content
} else {
    # Print the data object exactly as botward sent it (ConvertFrom-Json would
    # turn date-like strings into DateTime values).
    $doc = [System.Text.Json.JsonDocument]::Parse($response.Content)
    try { Write-Output $doc.RootElement.GetProperty('data').GetRawText() } finally { $doc.Dispose() }
}
