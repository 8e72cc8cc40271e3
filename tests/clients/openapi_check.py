#!/usr/bin/env python3
"""Check a running botward against proto/openapi.yaml, or audit files against
proto/audit-event.schema.json.

API mode (real requests over mTLS):

    BOTWARD_ADDR=https://127.0.0.1:8443 BOTWARD_CERT=bot.pem \
    BOTWARD_KEY=bot-key.pem BOTWARD_CA=ca.pem \
        openapi_check.py GRANTED_SECRET FIELD UNGRANTED_SECRET

    GRANTED_SECRET   a KV secret the bot is granted
    FIELD            a field of GRANTED_SECRET
    UNGRANTED_SECRET a secret defined in the config but not granted to the bot

Audit mode:

    openapi_check.py --audit FILE...

Every check prints `ok  ...` or `FAIL ...`; the last line is
`N passed, M failed`. Exit 0 only if nothing failed; exit 2 on usage errors.

Needs only requests, pyyaml and jsonschema.
"""

import argparse
import copy
import json
import os
import secrets as pyrandom
import sys
from pathlib import Path

import jsonschema
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO / "proto" / "openapi.yaml"
DEFAULT_AUDIT_SCHEMA = REPO / "proto" / "audit-event.schema.json"

# Error code(s) each status must carry, from the product contract. The spec
# encodes the same mapping; this keeps the check meaningful even if the spec
# loses it.
CODES_BY_STATUS = {
    400: {"bad_request"},
    401: {"unauthenticated"},
    403: {"forbidden"},
    404: {"not_found"},
    405: {"method_not_allowed"},
    429: {"rate_limited"},
    502: {"vault_error"},
    503: {"vault_unavailable", "audit_unavailable"},
}


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, label):
        self.passed += 1
        print(f"ok  {label}", flush=True)

    def fail(self, label, reason):
        self.failed += 1
        print(f"FAIL {label}: {reason}", flush=True)

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


# ---------------------------------------------------------------------------
# Spec handling


class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        version = str(self.doc.get("openapi", ""))
        if not version.startswith("3."):
            raise ValueError(f"{path}: not an OpenAPI 3 document (openapi={version!r})")

    def pointer(self, ref):
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported: {ref}")
        node = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[part]
        return node

    def resolve(self, node, _stack=()):
        """Inline every local $ref, recursively."""
        if isinstance(node, dict):
            if "$ref" in node:
                ref = node["$ref"]
                if ref in _stack:
                    raise ValueError(f"recursive $ref not supported: {ref}")
                return self.resolve(self.pointer(ref), _stack + (ref,))
            return {k: self.resolve(v, _stack) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, _stack) for v in node]
        return node

    def responses(self, template, method):
        """The documented responses for (path template, method), resolved.

        For a method the path item does not declare, the responses listed
        under the path item's `x-other-methods` apply (405).
        """
        item = self.doc.get("paths", {}).get(template)
        if item is None:
            raise KeyError(f"path {template} not in spec")
        op = item.get(method.lower())
        if op is not None:
            return self.resolve(op.get("responses", {}))
        other = item.get("x-other-methods", {}).get("responses")
        if other is None:
            raise KeyError(f"{method} {template} not in spec and no x-other-methods")
        return self.resolve(other)


def oas30_to_jsonschema(schema):
    """Turn an (already $ref-resolved) OpenAPI 3.0 schema object into plain
    JSON Schema: `nullable: true` becomes "or null"."""
    if isinstance(schema, list):
        return [oas30_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k in ("properties", "patternProperties", "definitions", "$defs"):
            out[k] = {name: oas30_to_jsonschema(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[k] = oas30_to_jsonschema(v)
        elif k in ("nullable", "example", "examples", "xml", "externalDocs",
                   "discriminator", "readOnly", "writeOnly", "deprecated"):
            continue
        else:
            out[k] = v
    if schema.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def describe(errors):
    """One message per validation error; for anyOf/oneOf failures, the most
    relevant error of the branches, so the message names the real field."""
    out = []
    for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        chosen = [e]
        if e.context:
            # Group the branch errors; skip branches that fail on the value's
            # type alone (e.g. the null branch of "object or null").
            branches = {}
            for c in e.context:
                branches.setdefault(c.schema_path[0] if c.schema_path else 0, []).append(c)
            relevant = [errs for errs in branches.values()
                        if not any(c.validator == "type" and not c.path for c in errs)]
            if len(relevant) == 1:
                chosen = relevant[0]
        for c in chosen:
            where = "/".join(str(p) for p in c.absolute_path) or "(root)"
            out.append(f"{where}: {c.message}")
    return out


def schema_errors(schema, instance, cls=jsonschema.Draft4Validator):
    return describe(cls(schema).iter_errors(instance))


# ---------------------------------------------------------------------------
# API mode


def media_type(resp):
    ct = resp.headers.get("Content-Type", "")
    return ct.split(";", 1)[0].strip().lower()


def check(results, spec, session, base, method, template, url_path, *,
          params=None, expect, want_media=None, extra=None):
    """Do one request and check it against the spec.

    expect: the statuses this scenario accepts (each must also be documented).
    want_media: the media type the scenario requires for a success status.
    extra: callable(resp, body) -> list of problems, for scenario checks.
    Returns (response, parsed JSON body or None).
    """
    label = f"{method} {url_path}"
    if params:
        label += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    try:
        # verify/cert are passed per request: with trust_env, requests would
        # let REQUESTS_CA_BUNDLE override a session-level verify.
        resp = session.request(method, base + url_path, params=params,
                               allow_redirects=False, timeout=30,
                               verify=session.verify, cert=session.cert)
    except requests.RequestException as e:
        results.fail(label, f"request failed: {e}")
        return None, None
    label += f" {resp.status_code}"
    problems = []

    try:
        documented = spec.responses(template, method)
    except KeyError as e:
        results.fail(label, str(e))
        return resp, None

    status = resp.status_code
    rspec = documented.get(str(status)) or documented.get(f"{str(status)[0]}XX")
    if rspec is None:
        problems.append(f"status {status} is not documented for {method} {template} "
                        f"(documented: {', '.join(sorted(documented))})")
    if status not in expect:
        problems.append(f"expected status {' or '.join(map(str, sorted(expect)))}")

    body = None
    mt = media_type(resp)
    if rspec is not None:
        content = rspec.get("content") or {}
        if not content:
            if resp.content:
                problems.append(f"spec documents no body, got {len(resp.content)} bytes ({mt or 'no Content-Type'})")
        elif mt not in content:
            problems.append(f"Content-Type {mt or '(none)'} not in spec ({', '.join(content)})")
        else:
            if want_media and status < 300 and mt != want_media:
                problems.append(f"Content-Type {mt}, this request needs {want_media}")
            schema = oas30_to_jsonschema(content[mt].get("schema", {}))
            if mt == "application/json" or mt.endswith("+json"):
                try:
                    body = resp.json()
                except ValueError as e:
                    problems.append(f"body is not JSON: {e}")
                else:
                    problems.extend(schema_errors(schema, body))
            elif mt.startswith("text/"):
                problems.extend(schema_errors(schema, resp.text))

    # Error bodies: code must match the status, request_id must be set.
    if (not problems and status >= 400 and isinstance(body, dict)
            and isinstance(body.get("error"), dict)):
        code = body["error"].get("code")
        allowed = CODES_BY_STATUS.get(status)
        if allowed and code not in allowed:
            problems.append(f"error.code {code!r} does not belong to status {status}")

    if extra is not None and not problems:
        try:
            problems.extend(extra(resp, body))
        except Exception as e:  # a scenario check must not abort the run
            problems.append(f"scenario check raised {e!r}")

    if problems:
        results.fail(label, "; ".join(problems))
    else:
        results.ok(label)
    return resp, body


def run_api(args, results):
    env = {k: os.environ.get(k) for k in ("BOTWARD_ADDR", "BOTWARD_CERT", "BOTWARD_KEY", "BOTWARD_CA")}
    missing = [k for k, v in env.items() if not v]
    if missing:
        print(f"error: set {', '.join(missing)}", file=sys.stderr)
        return 2
    base = env["BOTWARD_ADDR"].rstrip("/")
    spec = Spec(args.spec)

    session = requests.Session()
    session.trust_env = False  # loopback: no proxies, no env CA bundle
    session.cert = (env["BOTWARD_CERT"], env["BOTWARD_KEY"])
    session.verify = env["BOTWARD_CA"]
    session.headers["User-Agent"] = "botward-openapi-check"

    granted, field, ungranted = args.granted, args.field, args.ungranted
    unknown = "no-such-secret-" + pyrandom.token_hex(6)

    def whoami_extra(resp, body):
        p = []
        if granted not in body.get("secrets", []):
            p.append(f"whoami.secrets lacks the granted secret {granted!r}")
        if ungranted in body.get("secrets", []):
            p.append(f"whoami.secrets lists the ungranted secret {ungranted!r}")
        return p

    check(results, spec, session, base, "GET", "/v1/whoami", "/v1/whoami",
          expect={200}, extra=whoami_extra)
    check(results, spec, session, base, "GET", "/v1/health", "/v1/health", expect={200})

    secret_data = {}

    def secret_extra(resp, body):
        p = []
        if body.get("name") != granted:
            p.append(f"name is {body.get('name')!r}, asked for {granted!r}")
        if field not in body.get("data", {}):
            p.append(f"data has no field {field!r}")
        secret_data.update(body.get("data", {}))
        return p

    _, secret_body = check(results, spec, session, base, "GET", "/v1/secrets/{name}",
                           f"/v1/secrets/{granted}", expect={200},
                           want_media="application/json", extra=secret_extra)

    def field_extra(resp, body):
        want = secret_data.get(field)
        if isinstance(want, str) and resp.text != want:
            return ["text/plain body differs from data[field] of the JSON response"]
        return []

    check(results, spec, session, base, "GET", "/v1/secrets/{name}",
          f"/v1/secrets/{granted}", params={"field": field}, expect={200},
          want_media="text/plain", extra=field_extra)

    # Optional: a dynamic secret brings a lease; exercise renew and release.
    lease = secret_body.get("lease") if isinstance(secret_body, dict) else None
    if isinstance(lease, dict) and lease.get("id"):
        lid = requests.utils.quote(lease["id"], safe="")
        if lease.get("renewable"):
            check(results, spec, session, base, "POST", "/v1/leases/{id}/renew",
                  f"/v1/leases/{lid}/renew", expect={200})
        check(results, spec, session, base, "DELETE", "/v1/leases/{id}",
              f"/v1/leases/{lid}", expect={204})

    check(results, spec, session, base, "GET", "/v1/secrets/{name}",
          f"/v1/secrets/{ungranted}", expect={403})
    # Names the bot is not granted get 403 whether or not they exist.
    check(results, spec, session, base, "GET", "/v1/secrets/{name}",
          f"/v1/secrets/{unknown}", expect={403, 404})
    check(results, spec, session, base, "GET", "/v1/secrets/{name}",
          "/v1/secrets/..%2Fetc", expect={400})
    check(results, spec, session, base, "DELETE", "/v1/leases/{id}",
          "/v1/leases/does-not-exist", expect={403, 404})
    check(results, spec, session, base, "POST", "/v1/whoami", "/v1/whoami", expect={405})
    return results.summary()


# ---------------------------------------------------------------------------
# Audit mode


def run_audit(args, results):
    with open(args.audit_schema, encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)  # no format_checker: formats are not asserted

    for path in args.audit:
        bad_before = results.failed
        count = 0
        try:
            f = open(path, encoding="utf-8")
        except OSError as e:
            results.fail(path, str(e))
            continue
        with f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    results.fail(f"{path}:{lineno}", "blank line")
                    continue
                count += 1
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    results.fail(f"{path}:{lineno}", f"not JSON: {e}")
                    continue
                msgs = describe(validator.iter_errors(rec))
                seq = rec.get("seq") if isinstance(rec, dict) else None
                if msgs:
                    results.fail(f"{path}:{lineno} seq={seq}", "; ".join(msgs))
                else:
                    results.passed += 1
        if results.failed == bad_before:
            print(f"ok  {path} ({count} records)", flush=True)
    return results.summary()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Check a running botward against proto/openapi.yaml "
                    "(env BOTWARD_ADDR, BOTWARD_CERT, BOTWARD_KEY, BOTWARD_CA), "
                    "or audit files against proto/audit-event.schema.json (--audit).")
    ap.add_argument("granted", nargs="?", help="a KV secret the bot is granted")
    ap.add_argument("field", nargs="?", help="a field of the granted secret")
    ap.add_argument("ungranted", nargs="?", help="a defined secret the bot is not granted")
    ap.add_argument("--audit", nargs="+", metavar="FILE", help="validate audit JSONL files instead")
    ap.add_argument("--spec", default=str(DEFAULT_SPEC), help="OpenAPI document (default: %(default)s)")
    ap.add_argument("--audit-schema", default=str(DEFAULT_AUDIT_SCHEMA),
                    help="audit record JSON Schema (default: %(default)s)")
    args = ap.parse_args(argv)

    results = Results()
    if args.audit:
        if args.granted:
            ap.error("--audit takes only files")
        return run_audit(args, results)
    if not (args.granted and args.field and args.ungranted):
        ap.error("API mode needs GRANTED_SECRET FIELD UNGRANTED_SECRET")
    return run_api(args, results)


if __name__ == "__main__":
    sys.exit(main())
