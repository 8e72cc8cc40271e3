#!/usr/bin/env python3
"""Fetch a secret from botward with Python and requests.

Usage:
    python_client.py NAME              prints the secret's data object as one line of JSON
    python_client.py NAME --field F    prints only field F's value

Environment:
    BOTWARD_ADDR   https://127.0.0.1:8443 (default). TCP addresses only: talking
                   TLS over botward's Unix socket with requests needs extra
                   packages; use examples/curl.sh or `botward get` for that.
    BOTWARD_CERT   this bot's client certificate (PEM)
    BOTWARD_KEY    its private key (PEM)
    BOTWARD_CA     CA that issued botward's server certificate (PEM)

On error, prints one line `botward: <code>: <message>` to stderr and exits 1.
"""

import argparse
import json
import os
import sys
from urllib.parse import quote

import requests

DEFAULT_ADDR = "https://127.0.0.1:8443"


def fail(code, message):
    print(f"botward: {code}: {message}", file=sys.stderr)
    sys.exit(1)


def env(name):
    value = os.environ.get(name)
    if not value:
        fail("usage", f"{name} is not set")
    return value


def error_from(resp):
    """Return (code, message) from botward's JSON error body."""
    try:
        err = resp.json()["error"]
        return err.get("code", f"http_{resp.status_code}"), err.get("message", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"http_{resp.status_code}", resp.reason or "unexpected response"


def main():
    parser = argparse.ArgumentParser(description="Fetch a secret from botward.")
    parser.add_argument("name", help="logical secret name, e.g. erp-db")
    parser.add_argument("--field", help="print only this field's value")
    args = parser.parse_args()

    addr = os.environ.get("BOTWARD_ADDR") or DEFAULT_ADDR
    if not addr.startswith("https://"):
        fail("usage", f"BOTWARD_ADDR must be an https:// address, got {addr!r}")
    cert, key, ca = env("BOTWARD_CERT"), env("BOTWARD_KEY"), env("BOTWARD_CA")

    url = f"{addr.rstrip('/')}/v1/secrets/{quote(args.name, safe='')}"
    params = {"field": args.field} if args.field is not None else None
    try:
        resp = requests.get(url, params=params, cert=(cert, key), verify=ca, timeout=10)
    except requests.exceptions.SSLError as e:
        fail("tls", str(e))
    except requests.exceptions.RequestException as e:
        fail("connection", str(e))

    if not resp.ok:
        fail(*error_from(resp))

    if args.field is not None:
        # text/plain body holding only the value
        value = resp.content
        sys.stdout.buffer.write(value if value.endswith(b"\n") else value + b"\n")
    else:
        print(json.dumps(resp.json()["data"]))


if __name__ == "__main__":
    main()
