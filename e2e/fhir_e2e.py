#!/usr/bin/env python3
"""End-to-end test of the real carevault binary over HTTPS, as a FHIR R4 client would use it.

    python3 -m venv /tmp/e2e-venv && /tmp/e2e-venv/bin/pip install -r e2e/requirements.txt
    /tmp/e2e-venv/bin/python e2e/fhir_e2e.py --bin target/debug/carevault
    CAREVAULT_DATABASE_URL=postgres://... /tmp/e2e-venv/bin/python e2e/fhir_e2e.py --bin ...

It starts `carevault serve` on a fresh data folder and a free loopback port (with a short session
idle timeout), creates staff accounts with `carevault user add`, signs in with password + TOTP
(pyotp), and exercises sign-in, authorization, the Patient lifecycle, search and paging, bad
input and session expiry. Every FHIR resource the server sends is validated with fhir.resources
(R4B models). The server logs at debug level; while it runs and after a SIGTERM the test checks
that no synthetic PHI (names, birth dates, phones, address, identifiers, the MRNs it assigned)
is readable in any file of the data folder (database, -wal, -shm, logs, tls, audit, keys), in the
server's console output or (PostgreSQL, when pg_dump is installed) in a dump of the database;
then that `carevault audit verify` passes, and (SQLite only) that a one-byte change to an audit
record is caught and named.

With CAREVAULT_DATABASE_URL set, the server, `user add` and `audit verify` use that database
(give a dedicated, empty one); the tamper check is skipped. Prints one closing line
`N passed, N failed` and exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import unicodedata
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import pyotp
import requests

# fhir.resources 8.x: R5 at the top level, R4B (4.3.0) and STU3 as subpackages. No pydantic
# release has a plain R4 package; R4B's Patient, Bundle, OperationOutcome and
# CapabilityStatement are the R4 shapes.
try:
    from fhir.resources.R4B import get_fhir_model_class as _fhir_model
    FHIR_MODELS = "fhir.resources.R4B"
except ImportError:  # an older fhir.resources whose top level is R4/R4B
    from fhir.resources import get_fhir_model_class as _fhir_model  # type: ignore
    FHIR_MODELS = "fhir.resources"

SESSION_COOKIE = "__Host-carevault_session"
MRN_SYSTEM = "urn:carevault:mrn"
FHIR_JSON = "application/fhir+json"
IDLE_SECS = 8  # generous: a loaded CI machine must not expire the main session by accident
REQUEST_TIMEOUT = 30


# ------------------------------------------------------------------------------------------
# Synthetic patients. Every value here is made up; all of them are searched for (as bytes,
# case-insensitively) in the data folder after the run.


def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


P_NUNEZ = {
    "resourceType": "Patient",
    "active": True,
    "name": [{"use": "official", "family": nfc("Núñez-Quiroga"), "given": [nfc("Zoë"), "Anabella"]}],
    "gender": "female",
    "birthDate": "1980-02-29",
    "telecom": [{"system": "phone", "value": "+1 (555) 010-7788", "use": "mobile"}],
    "identifier": [{"system": "http://hospital.example/ids", "value": "E2E-4471-Q"}],
    "address": [{"line": ["12 Quarrington Lane #4"], "city": "Vellmorrow", "postalCode": "01101"}],
}
P_OBRIEN = {
    "resourceType": "Patient",
    "name": [{"family": "O'Brien", "given": [nfc("Siobhán"), "Mary-Jo"]}],
    "gender": "female",
    "birthDate": "1975-11-03",
    "telecom": [{"system": "phone", "value": "555-0142-9931"}],
}
P_YAMADA = {
    "resourceType": "Patient",
    "name": [{"family": "山田", "given": ["花子"]}],
    "gender": "female",
    "birthDate": "1991-07-14",
}
PAGING_FAMILY = "Quennevilleau"
PAGING_GIVEN = ["Aurelio", "Berenice", "Casimiro", "Delphine", "Evander", "Fiorella", "Gwendolyn"]
PAGING_BIRTH = "1964-05-17"
UPDATE_GIVEN = "Marisol"
UPDATE_EMAIL = "zoe.quiroga@example.org"

# Payloads that must be refused; their distinctive given names are searched for afterwards too.
REJECTED_GIVEN = ["Quillonia", "Thaddeusina", "Ottoline", "Perpetua", "Wilhelmina", "Brunhildia", "Octavienne"]

PHI_NEEDLES = sorted(
    {
        nfc("Núñez"), "Nunez", "Quiroga", nfc("Zoë"), "Anabella", UPDATE_GIVEN, UPDATE_EMAIL,
        "Quarrington", "Vellmorrow", "E2E-4471-Q",
        "O'Brien", nfc("Siobhán"), "Siobhan", "Mary-Jo",
        "山田", "花子",
        PAGING_FAMILY, *PAGING_GIVEN,
        "1980-02-29", "1975-11-03", "1991-07-14", PAGING_BIRTH,
        "010-7788", "15550107788", "5550107788", "0142-9931", "55501429931",
        *REJECTED_GIVEN,
    }
)


# ------------------------------------------------------------------------------------------
# Results


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.failures: list[str] = []

    def ok(self, name: str) -> None:
        self.passed += 1
        print(f"PASS {name}", flush=True)

    def fail(self, name: str, why: str) -> None:
        self.failed += 1
        self.failures.append(f"{name}: {why}")
        print(f"FAIL {name}: {why}", flush=True)

    def check(self, name: str, cond: bool, why: str = "") -> bool:
        if cond:
            self.ok(name)
        else:
            self.fail(name, why or "check failed")
        return cond

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Runs one named test: passes unless it raises. AssertionError text is the reason."""
        try:
            out = fn()
        except AssertionError as e:
            self.fail(name, str(e) or "assertion failed")
            return None
        except Unusable:
            raise
        except Exception as e:  # noqa: BLE001 - any error is this test's failure
            self.fail(name, f"{type(e).__name__}: {e}")
            if os.environ.get("E2E_TRACEBACK"):
                traceback.print_exc()
            return None
        self.ok(name)
        return out


class Unusable(Exception):
    """The server cannot be used any more: skip to teardown."""


def expect(cond: bool, why: str) -> None:
    if not cond:
        raise AssertionError(why)


def short(r: requests.Response, n: int = 300) -> str:
    body = r.content[:n].decode("utf-8", "replace")
    return f"HTTP {r.status_code} {r.headers.get('content-type', '')} {body!r}"


# ------------------------------------------------------------------------------------------
# FHIR resource collection and validation


class Collector:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []

    def add(self, origin: str, r: requests.Response) -> None:
        ctype = r.headers.get("content-type", "")
        if not r.content:
            return
        try:
            body = r.json()
        except ValueError:
            if ctype.startswith(FHIR_JSON):
                self.items.append((origin, {"__unparseable__": r.content[:200].decode("utf-8", "replace")}))
            return
        if ctype.startswith(FHIR_JSON) or (isinstance(body, dict) and "resourceType" in body):
            self.items.append((origin, body))


def label(res: dict) -> str:
    rt = res.get("resourceType", "?")
    rid = res.get("id")
    vid = (res.get("meta") or {}).get("versionId")
    s = f"{rt}/{rid}" if rid else rt
    return f"{s}/_history/{vid}" if vid else s


# fhir.resources checks structure, cardinality and primitive formats, but not the value sets of
# `code` elements. These are the required bindings (FHIR R4) of the elements carevault emits.
_ISSUE_TYPES = (
    "invalid structure required value invariant security login unknown expired forbidden suppressed processing "
    "not-supported duplicate multiple-matches not-found deleted too-long code-invalid extension too-costly "
    "business-rule conflict transient lock-error no-store exception timeout incomplete throttled informational"
)
REQUIRED_BINDINGS: dict[str, set[str]] = {
    k: set(v.split())
    for k, v in {
        "Patient.gender": "male female other unknown",
        "Patient.name.use": "usual official temp nickname anonymous old maiden",
        "Patient.identifier.use": "usual official temp secondary old",
        "Patient.telecom.system": "phone fax email pager url sms other",
        "Patient.telecom.use": "home work temp old mobile",
        "Patient.address.use": "home work temp old billing",
        "Patient.address.type": "postal physical both",
        "Bundle.type": "document message transaction transaction-response batch batch-response history searchset collection",
        "Bundle.entry.search.mode": "match include outcome",
        "Bundle.entry.request.method": "GET HEAD POST PUT DELETE PATCH",
        "OperationOutcome.issue.severity": "fatal error warning information",
        "OperationOutcome.issue.code": _ISSUE_TYPES,
        "CapabilityStatement.status": "draft active retired unknown",
        "CapabilityStatement.kind": "instance capability requirements",
        "CapabilityStatement.fhirVersion": "4.0.0 4.0.1",
        "CapabilityStatement.rest.mode": "client server",
        "CapabilityStatement.rest.resource.interaction.code":
            "read vread update patch delete history-instance history-type create search-type",
        "CapabilityStatement.rest.resource.versioning": "no-version versioned versioned-update",
        "CapabilityStatement.rest.resource.conditionalRead": "not-supported modified-since not-match full-support",
        "CapabilityStatement.rest.resource.conditionalDelete": "not-supported single multiple",
        "CapabilityStatement.rest.resource.searchParam.type":
            "number date string token reference composite quantity uri special",
        # The chart (e2e/api_e2e.py).
        "Encounter.status": "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown",
        "DocumentReference.status": "current superseded entered-in-error",
        "DocumentReference.docStatus": "preliminary final amended entered-in-error",
        "DocumentReference.relatesTo.code": "replaces transforms signs appends",
        "Condition.clinicalStatus.coding.code": "active recurrence relapse inactive remission resolved",
        "Condition.verificationStatus.coding.code": "unconfirmed provisional differential confirmed refuted entered-in-error",
        "Consent.status": "draft proposed active rejected inactive entered-in-error",
    }.items()
}


def binding_errors(node: Any, path: str) -> list[str]:
    out: list[str] = []
    if isinstance(node, list):
        for x in node:
            out += binding_errors(x, path)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k == "resource" and isinstance(v, dict):
                continue  # contained resources are validated on their own
            out += binding_errors(v, f"{path}.{k}")
    elif path in REQUIRED_BINDINGS and node not in REQUIRED_BINDINGS[path]:
        out.append(f"{path} = {node!r} is not in its required value set")
    return out


def validate_resource(res: dict) -> None:
    expect("__unparseable__" not in res, f"the body is not JSON: {res.get('__unparseable__')!r}")
    rt = res.get("resourceType")
    expect(isinstance(rt, str), "no resourceType")
    cls = _fhir_model(rt)
    if hasattr(cls, "model_validate"):
        cls.model_validate(res)
    else:  # pydantic v1 era fhir.resources
        cls.parse_obj(res)
    errors = binding_errors(res, rt)
    expect(not errors, "; ".join(errors))


# ------------------------------------------------------------------------------------------
# The server and the CLI


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: str, data_dir: Path, work: Path, db_url: str | None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.work = work
        self.db_url = db_url
        self.port = free_port()
        # The server's public origin (by default https://localhost:PORT for a loopback listener):
        # links and Location headers are built on it, never on the Host a request names, so
        # clients use it too (cookies are kept per host).
        self.base = f"https://localhost:{self.port}"
        self.origin = self.base
        self.cert = str(data_dir / "tls" / "cert.pem")
        self.proc: subprocess.Popen | None = None
        self.out_path = work / "server.stdout"
        self.err_path = work / "server.stderr"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREVAULT_")}
        env["CAREVAULT_SESSION_IDLE_TIMEOUT_SECS"] = str(IDLE_SECS)
        # Debug logs, so the PHI scan also covers what verbose logging writes.
        env["CAREVAULT_LOG"] = os.environ.get("E2E_CAREVAULT_LOG", "debug")
        if self.db_url:
            env["CAREVAULT_DATABASE_URL"] = self.db_url
        return env

    def start(self) -> None:
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err, env=self.env(),
        )

    def wait_up(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last = "not started"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Unusable(f"the server exited with {self.proc.returncode}: {self.tail()}")
            if os.path.exists(self.cert):
                try:
                    r = requests.get(f"{self.base}/api/v1/health", verify=self.cert, timeout=5)
                    if r.status_code == 204:
                        return
                    last = short(r)
                except requests.RequestException as e:
                    last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        raise Unusable(f"HTTPS did not come up within {timeout:.0f} s ({last}); {self.tail()}")

    def tail(self) -> str:
        try:
            return self.err_path.read_bytes()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        self.out.close()
        self.err.close()
        return self.proc.returncode

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.binary, *args, "--data-dir", str(self.data_dir)],
            input=stdin.encode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True, env=self.env(), timeout=timeout,
        )


class Staff:
    def __init__(self, username: str, role: str, password: str, totp: pyotp.TOTP, user_id: str) -> None:
        self.username = username
        self.role = role
        self.password = password
        self.totp = totp
        self.user_id = user_id


# (resource type, interaction) of every FHIR request of the run that succeeded, from its method
# and path; the CapabilityStatement must declare each (check_capability_statement).
TOUCHED: set[tuple[str, str]] = set()


def fhir_interaction(method: str, path: str) -> tuple[str, str] | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["fhir", "r4"] or len(parts) < 3 or not parts[2][:1].isupper():
        return None
    rest = parts[2:]
    t = rest[0]
    if len(rest) == 1:
        return (t, "create" if method == "POST" else "search-type")
    if rest[1] == "_search":
        return (t, "search-type")
    if len(rest) == 2:
        return (t, {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method))
    if rest[2] == "_history":
        return (t, "history-instance" if len(rest) == 3 else "vread")
    if rest[2].startswith("$"):
        return (t, rest[2])
    return None


class Client:
    """A requests.Session for one person; records every FHIR resource it receives."""

    def __init__(self, server: Server, collector: Collector, who: str) -> None:
        self.server = server
        self.collector = collector
        self.who = who
        self.s = requests.Session()
        # Loopback only: no proxies, and no REQUESTS_CA_BUNDLE overriding the server's certificate
        # (requests lets that variable win over Session.verify).
        self.s.trust_env = False
        self.s.verify = server.cert

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = path if path.startswith("https://") else self.server.base + path
        kw.setdefault("timeout", REQUEST_TIMEOUT)
        kw.setdefault("verify", self.server.cert)
        r = self.s.request(method, url, **kw)
        shown = urllib.parse.urlsplit(url)
        self.collector.add(f"{self.who}: {method} {shown.path} -> {r.status_code}", r)
        touched = fhir_interaction(method, shown.path)
        if touched and 200 <= r.status_code < 300:
            TOUCHED.add(touched)
        return r

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post_json(self, path: str, body: Any, **kw: Any) -> requests.Response:
        headers = {"Content-Type": FHIR_JSON, **kw.pop("headers", {})}
        data = body if isinstance(body, (bytes, str)) else json.dumps(body, ensure_ascii=False).encode()
        return self.request("POST", path, data=data, headers=headers, **kw)

    def put_json(self, path: str, body: Any, **kw: Any) -> requests.Response:
        headers = {"Content-Type": FHIR_JSON, **kw.pop("headers", {})}
        return self.request("PUT", path, data=json.dumps(body, ensure_ascii=False).encode(), headers=headers, **kw)

    def token(self) -> str | None:
        for c in self.s.cookies:
            if c.name == SESSION_COOKIE:
                return c.value
        return None

    def login(self, who: Staff) -> requests.Response:
        return self.request("POST", "/api/v1/auth/login", json={"username": who.username, "password": who.password})

    def totp(self, code: str) -> requests.Response:
        return self.request("POST", "/api/v1/auth/mfa/totp", json={"code": code})


def outcome_check(r: requests.Response, status: int | tuple[int, ...], cv_code: str | tuple[str, ...] | None = None) -> dict:
    """Asserts an OperationOutcome answer with the given status (and carevault error code)."""
    statuses = status if isinstance(status, tuple) else (status,)
    expect(r.status_code in statuses, f"expected HTTP {'/'.join(map(str, statuses))}, got {short(r)}")
    expect(r.headers.get("content-type", "").startswith(FHIR_JSON), f"content-type is not FHIR JSON: {short(r)}")
    body = r.json()
    expect(body.get("resourceType") == "OperationOutcome", f"not an OperationOutcome: {short(r)}")
    issues = body.get("issue") or []
    expect(bool(issues) and all(i.get("severity") in ("error", "fatal") for i in issues), f"no error issue: {short(r)}")
    if cv_code:
        codes = [c.get("code") for i in issues for c in ((i.get("details") or {}).get("coding") or [])]
        wanted = cv_code if isinstance(cv_code, tuple) else (cv_code,)
        expect(any(w in codes for w in wanted), f"expected error code {'/'.join(wanted)}, got {codes}: {short(r)}")
    return body


def bundle_ids(b: dict) -> list[str]:
    return [e["resource"]["id"] for e in b.get("entry") or []]


# ------------------------------------------------------------------------------------------
# The test run


class E2E:
    def __init__(self, binary: str, keep: bool) -> None:
        self.binary = os.path.abspath(binary)
        self.keep = keep
        self.require_oathtool = False
        self.db_url = os.environ.get("CAREVAULT_DATABASE_URL") or None
        self.work = Path(tempfile.mkdtemp(prefix="carevault-e2e-"))
        self.data_dir = self.work / "data"
        self.r = Results()
        self.collector = Collector()
        self.server = Server(self.binary, self.data_dir, self.work, self.db_url)
        self.staff: dict[str, Staff] = {}
        self.ids: dict[str, str] = {}
        self.mrn: str | None = None
        self.paging_ids: set[str] = set()
        self.mrns: set[str] = set()  # server-assigned MRNs: searched for in the data folder too

    # -- setup ---------------------------------------------------------------------------

    def add_user(self, key: str, username: str, role: str) -> None:
        password = "e2e-" + os.urandom(12).hex() + "-Pw"

        def t() -> None:
            p = self.server.cli("user", "add", "--username", username, "--role", role, "--password-stdin", stdin=password + "\n")
            expect(p.returncode == 0, f"exit {p.returncode}: {p.stderr.decode(errors='replace')[-500:]}")
            out = json.loads(p.stdout.decode())
            expect(out.get("username") == username and out.get("role") == role, f"unexpected output {out}")
            uri = out.get("otpauth_uri")
            expect(isinstance(uri, str) and uri.startswith("otpauth://totp/"), f"no otpauth_uri in {out}")
            totp = pyotp.parse_uri(uri)
            expect(isinstance(totp, pyotp.TOTP), f"not a TOTP URI: {uri[:40]}...")
            self.staff[key] = Staff(username, role, password, totp, out.get("id", ""))

        self.r.run(f"user add {username} ({role}) prints JSON with a TOTP otpauth_uri", t)

    def sign_in(self, key: str, name: str) -> Client | None:
        """Password, then a pyotp code; returns the signed-in client or None (a failure)."""
        who = self.staff.get(key)
        c = Client(self.server, self.collector, key)

        def t() -> Client:
            expect(who is not None, "the account was not created")
            assert who is not None
            r = c.login(who)
            expect(r.status_code == 200 and r.json().get("status") == "mfa_required", f"login: {short(r)}")
            r = c.totp(who.totp.now())
            expect(r.status_code == 200 and r.json().get("status") == "authenticated", f"totp: {short(r)}")
            expect(who.role in r.json()["user"]["roles"], f"roles: {r.json()}")
            expect(c.token() is not None, "no session cookie kept")
            return c

        return self.r.run(name, t)

    # -- tests ---------------------------------------------------------------------------

    def test_unauthenticated(self) -> None:
        anon = Client(self.server, self.collector, "anonymous")
        self.r.run(
            "unauthenticated GET /fhir/r4/Patient/x -> 401 OperationOutcome",
            lambda: outcome_check(anon.get("/fhir/r4/Patient/x"), 401, "CV-AUTHN-001"),
        )
        self.r.run(
            "unauthenticated search -> 401 OperationOutcome",
            lambda: outcome_check(anon.get("/fhir/r4/Patient", params={"family": "smith"}), 401),
        )
        self.r.run(
            "forged session cookie -> 401 OperationOutcome",
            lambda: outcome_check(anon.get("/fhir/r4/Patient/x", headers={"Cookie": f"{SESSION_COOKIE}={'A' * 43}"}), 401),
        )

        def metadata() -> None:
            r = anon.get("/fhir/r4/metadata")
            expect(r.status_code == 200, short(r))
            expect(r.headers.get("content-type", "").startswith(FHIR_JSON), short(r))
            cs = r.json()
            expect(cs.get("resourceType") == "CapabilityStatement", short(r))
            expect(cs.get("fhirVersion", "").startswith("4.0"), f"fhirVersion {cs.get('fhirVersion')}")
            res = [x for rest in cs.get("rest", []) for x in rest.get("resource", [])]
            pat = [x for x in res if x.get("type") == "Patient"]
            expect(len(pat) == 1, "no Patient resource in the CapabilityStatement")
            codes = {i["code"] for i in pat[0].get("interaction", [])}
            need = {"read", "vread", "update", "history-instance", "create", "search-type"}
            expect(need <= codes, f"interactions {sorted(codes)}")
            params = {p["name"] for p in pat[0].get("searchParam", [])}
            expect({"name", "family", "given", "birthdate", "identifier", "phone"} <= params, f"searchParam {sorted(params)}")

        self.r.run("GET /fhir/r4/metadata -> CapabilityStatement (R4, Patient interactions and search params)", metadata)

    def test_totp_replay(self) -> None:
        who = self.staff.get("replay")

        def t() -> None:
            expect(who is not None, "the account was not created")
            assert who is not None
            a = Client(self.server, self.collector, "replay-1")
            code = who.totp.now()
            r = a.login(who)
            expect(r.status_code == 200, f"first login: {short(r)}")
            set_cookie = r.headers.get("set-cookie", "")
            r = a.totp(code)
            expect(r.status_code == 200, f"pyotp code did not sign in: {short(r)}")
            expect(a.get("/api/v1/auth/session").status_code == 200, "session not usable")
            for attr in (f"{SESSION_COOKIE}=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
                expect(attr in set_cookie, f"session cookie lacks {attr}: {set_cookie.split('=')[0]}")
            b = Client(self.server, self.collector, "replay-2")
            r = b.login(who)
            expect(r.status_code == 200, f"second login (password step): {short(r)}")
            r = b.totp(code)
            expect(r.status_code == 401, f"replayed TOTP code was accepted: {short(r)}")
            r = b.get("/fhir/r4/Patient/x")
            expect(r.status_code == 401, f"session after a refused replay is usable: {short(r)}")

        self.r.run("pyotp code signs in (200); the same code replayed in a second login -> 401", t)

    def test_oathtool(self) -> None:
        """oathtool (Debian) computes the code from the base32 secret, as a second authenticator."""
        who = self.staff.get("oath")

        def t() -> None:
            expect(who is not None, "the account was not created")
            assert who is not None
            tool = shutil.which("oathtool")
            if tool is None:
                expect(not self.require_oathtool, "oathtool is not installed (apt-get install oathtool)")
                return
            out = subprocess.run([tool, "--totp", "-b", who.totp.secret], capture_output=True, text=True, timeout=30)
            expect(out.returncode == 0, f"oathtool failed: {out.stderr.strip()}")
            c = Client(self.server, self.collector, "oath")
            r = c.login(who)
            expect(r.status_code == 200, f"login: {short(r)}")
            r = c.totp(out.stdout.strip())
            expect(r.status_code == 200, f"oathtool code did not sign in: {short(r)}")

        self.r.run("an oathtool --totp code signs in (200)", t)

    def test_wrong_password(self) -> None:
        who = self.staff.get("replay")

        def t() -> None:
            expect(who is not None, "the account was not created")
            assert who is not None
            c = Client(self.server, self.collector, "wrongpw")
            r = c.request("POST", "/api/v1/auth/login", json={"username": who.username, "password": who.password + "x"})
            expect(r.status_code == 401, f"wrong password: {short(r)}")
            r = c.request("POST", "/api/v1/auth/login", json={"username": "nobody-e2e", "password": who.password})
            expect(r.status_code == 401, f"unknown user: {short(r)}")

        self.r.run("wrong password and unknown user -> 401", t)

    def test_mfa_incomplete_then_front_desk(self) -> None:
        who = self.staff.get("front")
        c = Client(self.server, self.collector, "front")
        state: dict[str, bool] = {}

        def pending() -> None:
            expect(who is not None, "the account was not created")
            assert who is not None
            r = c.login(who)
            expect(r.status_code == 200, f"login: {short(r)}")
            outcome_check(c.get(f"/fhir/r4/Patient/{self.ids.get('nunez', 'x')}"), 401, "CV-AUTHN-003")
            outcome_check(c.get("/fhir/r4/Patient", params={"family": "nun"}), 401, "CV-AUTHN-003")
            state["pending"] = True

        self.r.run("MFA-incomplete session (after password, before TOTP) -> 401 on FHIR", pending)

        def complete() -> None:
            expect(state.get("pending", False), "no pending session")
            assert who is not None
            r = c.totp(who.totp.now())
            expect(r.status_code == 200, f"totp: {short(r)}")
            pid = self.ids.get("nunez")
            expect(pid is not None, "no patient to read")
            r = c.get(f"/fhir/r4/Patient/{pid}")
            expect(r.status_code == 200, f"front desk read: {short(r)}")
            outcome_check(c.get(f"/fhir/r4/Patient/{pid}/_history"), 403, "CV-AUTHZ-001")

        self.r.run("front_desk completes TOTP, reads a patient (200), is refused _history (403)", complete)

    def test_admin(self) -> None:
        c = self.sign_in("admin", "admin signs in with password + TOTP")
        if c is None:
            self.r.fail("admin role gets 403 on patient read and search", "admin could not sign in")
            return
        pid = self.ids.get("nunez", "x")

        def t() -> None:
            outcome_check(c.get(f"/fhir/r4/Patient/{pid}"), 403, "CV-AUTHZ-001")
            outcome_check(c.get("/fhir/r4/Patient", params={"family": "nun"}), 403, "CV-AUTHZ-001")
            outcome_check(c.post_json("/fhir/r4/Patient", {"resourceType": "Patient", "name": [{"family": "Brunhildia"}]}), 403)

        self.r.run("admin role gets 403 on patient read, search and create", t)

    def test_patients(self, c: Client) -> None:
        r_ = self.r

        def create(key: str, body: dict) -> dict:
            r = c.post_json("/fhir/r4/Patient", body)
            expect(r.status_code == 201, f"create: {short(r)}")
            p = r.json()
            expect(p.get("resourceType") == "Patient" and isinstance(p.get("id"), str), short(r))
            expect(p.get("meta", {}).get("versionId") == "1", f"meta {p.get('meta')}")
            expect(r.headers.get("etag") == 'W/"1"', f"ETag {r.headers.get('etag')}")
            loc = r.headers.get("location", "")
            expect(f"/fhir/r4/Patient/{p['id']}/_history/1" in loc, f"Location {loc}")
            expect(p.get("name") == body["name"], f"names did not round-trip: sent {body['name']} got {p.get('name')}")
            expect(p.get("birthDate") == body.get("birthDate"), "birthDate did not round-trip")
            mrns = [i for i in p.get("identifier", []) if i.get("system") == MRN_SYSTEM]
            expect(len(mrns) == 1 and mrns[0].get("value"), f"no server-assigned MRN: {p.get('identifier')}")
            self.ids[key] = p["id"]
            self.mrns.add(mrns[0]["value"])
            return p

        created: dict[str, dict] = {}
        for key, body, what in (
            ("nunez", P_NUNEZ, "Núñez-Quiroga, Zoë"),
            ("obrien", P_OBRIEN, "O'Brien, Siobhán Mary-Jo"),
            ("yamada", P_YAMADA, "山田 花子"),
        ):
            p = r_.run(f"create Patient {what} -> 201, ETag W/\"1\", Location, MRN, unicode round-trips", lambda b=body, k=key: create(k, b))
            if p:
                created[key] = p

        def paging_create() -> None:
            for g in PAGING_GIVEN:
                body = {"resourceType": "Patient", "name": [{"family": PAGING_FAMILY, "given": [g]}], "birthDate": PAGING_BIRTH}
                r = c.post_json("/fhir/r4/Patient", body)
                expect(r.status_code == 201, f"create {g}: {short(r)}")
                self.paging_ids.add(r.json()["id"])
                self.mrns.update(i["value"] for i in r.json().get("identifier", []) if i.get("system") == MRN_SYSTEM)

        r_.run(f"create {len(PAGING_GIVEN)} patients of one family for paging", paging_create)

        pid = self.ids.get("nunez")
        if pid is None:
            r_.fail("patient lifecycle", "the first patient could not be created; skipping read/update/history")
        else:
            self.lifecycle(c, pid, created.get("nunez", {}))
        self.searches(c)
        self.paging(c)
        self.bad_input(c)

    def lifecycle(self, c: Client, pid: str, created: dict) -> None:
        r_ = self.r
        mrn = next((i["value"] for i in created.get("identifier", []) if i.get("system") == MRN_SYSTEM), None)
        self.mrn = mrn

        def read() -> dict:
            r = c.get(f"/fhir/r4/Patient/{pid}")
            expect(r.status_code == 200, short(r))
            expect(r.headers.get("etag") == 'W/"1"', f"ETag {r.headers.get('etag')}")
            p = r.json()
            expect(p == created, f"read differs from the created resource: {p} vs {created}")
            expect(r.headers.get("last-modified"), "no Last-Modified")
            return p

        current = r_.run("read Patient -> 200 with ETag W/\"1\", same as created", read) or created

        def updated_body() -> dict:
            body = {k: v for k, v in current.items() if k not in ("meta", "text")}
            body = json.loads(json.dumps(body))
            body["name"][0]["given"].append(UPDATE_GIVEN)
            body["telecom"].append({"system": "email", "value": UPDATE_EMAIL})
            return body

        def update() -> None:
            body = updated_body()
            expect(any(i.get("system") == MRN_SYSTEM for i in body.get("identifier", [])), "no MRN to keep")
            r = c.put_json(f"/fhir/r4/Patient/{pid}", body, headers={"If-Match": 'W/"1"'})
            expect(r.status_code == 200, short(r, 600))
            p = r.json()
            expect(r.headers.get("etag") == 'W/"2"', f"ETag {r.headers.get('etag')}")
            expect(p.get("meta", {}).get("versionId") == "2", f"meta {p.get('meta')}")
            expect(p["name"] == body["name"] and p["telecom"] == body["telecom"], "update not applied")
            expect(any(i.get("system") == MRN_SYSTEM and i.get("value") == mrn for i in p.get("identifier", [])), "MRN changed")
            r = c.get(f"/fhir/r4/Patient/{pid}")
            expect(r.status_code == 200 and r.headers.get("etag") == 'W/"2"', f"re-read: {short(r)}")
            expect(r.json() == p, "re-read differs from the update answer")

        r_.run("update Patient with If-Match W/\"1\" (id and MRN kept) -> 200, version 2", update)

        r_.run(
            "update with stale If-Match W/\"1\" -> 412 OperationOutcome",
            lambda: outcome_check(c.put_json(f"/fhir/r4/Patient/{pid}", updated_body(), headers={"If-Match": 'W/"1"'}), 412, "CV-CONFLICT-001"),
        )

        def no_id() -> None:
            body = updated_body()
            body.pop("id")
            outcome_check(c.put_json(f"/fhir/r4/Patient/{pid}", body, headers={"If-Match": 'W/"2"'}), 400)
            body = updated_body()
            body["identifier"] = [i for i in body["identifier"] if i.get("system") != MRN_SYSTEM]
            outcome_check(c.put_json(f"/fhir/r4/Patient/{pid}", body, headers={"If-Match": 'W/"2"'}), 400)
            body = {k: v for k, v in P_NUNEZ.items()}
            body["identifier"] = [{"system": MRN_SYSTEM, "value": "MRN-E2E"}]
            outcome_check(c.post_json("/fhir/r4/Patient", body), 400)

        r_.run("update without the id or without the MRN, or create claiming an MRN -> 400 OperationOutcome", no_id)

        def history() -> None:
            r = c.get(f"/fhir/r4/Patient/{pid}/_history")
            expect(r.status_code == 200, short(r))
            b = r.json()
            expect(b.get("resourceType") == "Bundle" and b.get("type") == "history", f"{b.get('resourceType')} {b.get('type')}")
            versions = [e["resource"]["meta"]["versionId"] for e in b.get("entry", [])]
            expect(versions == ["2", "1"], f"history versions {versions} (want newest first: 2, 1)")
            expect(b.get("total") == 2, f"total {b.get('total')}")
            expect(b["entry"][1]["resource"] == created, "version 1 in history differs from the created resource")

        r_.run("_history -> Bundle history with versions 2, 1", history)

        def vread() -> None:
            r = c.get(f"/fhir/r4/Patient/{pid}/_history/1")
            expect(r.status_code == 200 and r.json() == created, f"vread 1: {short(r)}")
            expect(r.headers.get("etag") == 'W/"1"', f"vread 1 ETag {r.headers.get('etag')}")
            r = c.get(f"/fhir/r4/Patient/{pid}/_history/2")
            expect(r.status_code == 200 and r.json()["meta"]["versionId"] == "2", f"vread 2: {short(r)}")
            outcome_check(c.get(f"/fhir/r4/Patient/{pid}/_history/3"), 404)

        r_.run("vread versions 1 and 2 -> 200; version 3 -> 404", vread)

        r_.run(
            "read unknown Patient -> 404 OperationOutcome",
            lambda: outcome_check(c.get("/fhir/r4/Patient/" + "0" * 32), 404),
        )

    def search(self, c: Client, params: dict[str, str]) -> dict:
        r = c.get("/fhir/r4/Patient", params=params)
        expect(r.status_code == 200, f"search {params}: {short(r)}")
        b = r.json()
        expect(b.get("resourceType") == "Bundle" and b.get("type") == "searchset", f"search {params}: not a searchset")
        for e in b.get("entry") or []:
            expect(e.get("search", {}).get("mode") == "match", "entry without search.mode match")
            expect(e.get("fullUrl", "").endswith(f"/Patient/{e['resource']['id']}"), f"fullUrl {e.get('fullUrl')}")
        return b

    def searches(self, c: Client) -> None:
        r_ = self.r
        n, o, y = self.ids.get("nunez"), self.ids.get("obrien"), self.ids.get("yamada")

        def finds(params: dict[str, str], want: str | None, exactly: bool = False, not_: str | None = None) -> Callable[[], None]:
            def t() -> None:
                expect(want is not None, "the patient was not created")
                b = self.search(c, params)
                ids = bundle_ids(b)
                expect(want in ids, f"{params} did not find the patient (got {len(ids)} results)")
                if exactly:
                    expect(ids == [want] and b.get("total") == 1, f"{params}: expected exactly one result, got {len(ids)} (total {b.get('total')})")
                if not_:
                    expect(not_ not in ids, f"{params} also found a patient it should not")
            return t

        def misses(params: dict[str, str], unwanted: str | None) -> Callable[[], None]:
            def t() -> None:
                expect(unwanted is not None, "the patient was not created")
                ids = bundle_ids(self.search(c, params))
                expect(unwanted not in ids, f"{params} found a patient it should not")
            return t

        r_.run("search family=nun finds Núñez (accent- and case-insensitive prefix)", finds({"family": "nun"}, n))
        r_.run("search family=NÚÑ finds Núñez", finds({"family": nfc("NÚÑ")}, n))
        r_.run("search family=quir finds Núñez-Quiroga (second word of the family name)", finds({"family": "quir"}, n))
        r_.run("search family=nu (2 letters) matches whole words only: not Núñez", misses({"family": "nu"}, n))
        r_.run("search given=zoe finds Zoë", finds({"given": "zoe"}, n))
        r_.run("search given=ZOË (upper case, accented) finds Zoë", finds({"given": nfc("ZOË")}, n))
        r_.run("search given=marisol finds the updated given name", finds({"given": "marisol"}, n))
        r_.run("search name=NUNEZ finds Núñez", finds({"name": "NUNEZ"}, n))
        r_.run("search name=anab finds Anabella", finds({"name": "anab"}, n))
        r_.run("search family:exact=núñez-quiroga finds exactly Núñez", finds({"family:exact": nfc("núñez-quiroga")}, n, exactly=True))
        r_.run("search family=O'Brien finds O'Brien", finds({"family": "O'Brien"}, o))
        r_.run("search family=o'bri finds O'Brien", finds({"family": "o'bri"}, o))
        r_.run("search given=siobhan finds Siobhán", finds({"given": "siobhan"}, o))

        def apostrophe() -> None:
            # Typed without the apostrophe, as people do; carevault-domain's own unit test
            # (accepts_a_typical_patient_and_round_trips) expects the prefix term "obr" for O'Brien.
            for q in ("obr", "obrien", "OBrien"):
                expect(o in bundle_ids(self.search(c, {"family": q})), f"family={q} did not find O'Brien")

        r_.run("search family=obr / obrien / OBrien finds O'Brien (apostrophe-insensitive)", apostrophe)
        r_.run("search family=山田 finds 山田 (CJK whole word)", finds({"family": "山田"}, y, exactly=True))

        def birthdate() -> None:
            expect(n is not None, "the patient was not created")
            for q in ("1980-02-29", "1980-02", "1980", "eq1980-02-29"):
                b = self.search(c, {"birthdate": q})
                ids = bundle_ids(b)
                expect(n in ids, f"birthdate={q} did not find the patient")
                bad = [e["resource"].get("birthDate") for e in b.get("entry") or [] if not str(e["resource"].get("birthDate", "")).startswith(q.removeprefix("eq"))]
                expect(not bad, f"birthdate={q} returned other birth dates")
            expect(n not in bundle_ids(self.search(c, {"birthdate": "1980-03-01"})), "birthdate=1980-03-01 found the patient")

        r_.run("search birthdate (day, month, year, eq) finds exactly matching patients", birthdate)
        r_.run("search identifier=system|value finds exactly that patient",
               finds({"identifier": "http://hospital.example/ids|E2E-4471-Q"}, n, exactly=True))
        r_.run("search identifier=value (case-insensitive) finds the patient", finds({"identifier": "e2e-4471-q"}, n, exactly=True))

        def mrn() -> None:
            expect(self.mrn is not None, "no MRN")
            finds({"identifier": f"{MRN_SYSTEM}|{self.mrn}"}, n, exactly=True)()

        r_.run("search identifier=urn:carevault:mrn|MRN finds exactly that patient", mrn)
        r_.run("search phone=+1 (555) 010-7788 finds the patient", finds({"phone": "+1 (555) 010-7788"}, n, exactly=True))
        r_.run("search phone=15550107788 (digits) finds the patient", finds({"phone": "15550107788"}, n, exactly=True))
        r_.run("search family=nun&birthdate=1975 (AND) does not find Núñez", misses({"family": "nun", "birthdate": "1975"}, n))
        def either() -> None:
            expect(n is not None and o is not None, "the patients were not created")
            ids = bundle_ids(self.search(c, {"family": "nun,o'brien"}))
            expect(n in ids and o in ids, f"family=nun,o'brien found {len(ids)} patients, not both")

        r_.run("search family=nun,o'brien (OR) finds both", either)

        def post_search() -> None:
            expect(n is not None, "the patient was not created")
            r = c.request("POST", "/fhir/r4/Patient/_search", data={"family": "nun", "given": "zoe"})
            expect(r.status_code == 200, short(r))
            expect(n in bundle_ids(r.json()), "POST _search did not find the patient")

        r_.run("POST /Patient/_search (form body) finds the patient", post_search)

        def empty() -> None:
            b = self.search(c, {"family": "zzyzxqvw"})
            expect(b.get("total") == 0 and not b.get("entry"), f"expected no results, got total {b.get('total')}")

        r_.run("search with no match -> empty searchset, total 0", empty)

    def paging(self, c: Client) -> None:
        def t() -> None:
            expect(len(self.paging_ids) == len(PAGING_GIVEN), "the paging patients were not all created")
            first = self.search(c, {"family": PAGING_FAMILY[:6].lower(), "_count": "3"})
            total = first.get("total")
            expect(total == len(PAGING_GIVEN), f"total {total}, want {len(PAGING_GIVEN)}")
            seen: list[str] = []
            page, pages = first, 0
            while True:
                pages += 1
                expect(pages <= 10, "more than 10 pages: the next links do not end")
                ids = bundle_ids(page)
                expect(len(ids) <= 3, f"page {pages} has {len(ids)} entries for _count=3")
                expect(page.get("total") == total, f"page {pages} total {page.get('total')} != {total}")
                seen.extend(ids)
                nxt = [ln["url"] for ln in page.get("link", []) if ln.get("relation") == "next"]
                if not nxt:
                    break
                url = nxt[0]
                expect(url.startswith(self.server.origin + "/fhir/r4/Patient?"), f"next link {url!r} is not on this server")
                r = c.get(url)
                expect(r.status_code == 200, f"next page: {short(r)}")
                page = r.json()
            expect(len(seen) == len(set(seen)), f"a patient appeared on two pages: {seen}")
            expect(len(seen) == total, f"followed {pages} pages and saw {len(seen)} patients, total says {total}")
            expect(set(seen) == self.paging_ids, "the pages do not hold the created patients")
            expect(pages == 3, f"{pages} pages for 7 patients at 3 a page")

        self.r.run("search _count=3 paging: follow Bundle next links until exhausted, entries == total", t)

    def bad_input(self, c: Client) -> None:
        r_ = self.r

        def refused(body: Any, status: int, marker: str | None = None, ctype: str = FHIR_JSON) -> Callable[[], None]:
            def t() -> None:
                data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
                r = c.request("POST", "/fhir/r4/Patient", data=data, headers={"Content-Type": ctype})
                outcome_check(r, status)
                if marker:
                    expect(marker.lower() not in r.text.lower(), "the error echoes the submitted value")
            return t

        r_.run("malformed JSON -> 400 OperationOutcome",
               refused(b'{"resourceType": "Patient", "name": [{"family": "Octavienne"}', 400, "Octavienne"))
        r_.run("wrong resourceType (Observation) -> 400 OperationOutcome",
               refused({"resourceType": "Observation", "status": "final"}, 400))
        r_.run("invalid date 1980-02-30 -> 400 OperationOutcome",
               refused({"resourceType": "Patient", "name": [{"given": ["Ottoline"]}], "birthDate": "1980-02-30"}, 400, "1980-02-30"))
        r_.run("<script> in a name -> 400 OperationOutcome (not echoed)",
               refused({"resourceType": "Patient", "name": [{"family": "<script>alert(1)</script>", "given": ["Quillonia"]}]}, 400, "<script>"))
        r_.run("SQL fragment Robert'); DROP TABLE patients;-- in a family name -> 400 OperationOutcome (not echoed)",
               refused({"resourceType": "Patient", "name": [{"family": "Robert'); DROP TABLE patients;--", "given": ["Thaddeusina"]}]}, 400, "DROP TABLE"))
        r_.run("invalid UTF-8 bytes -> 400 OperationOutcome",
               refused(b'{"resourceType": "Patient", "name": [{"family": "Wilhelmina\xff\xfe"}]}', 400, "Wilhelmina"))
        r_.run("wrong content-type (text/plain) -> 415 OperationOutcome",
               refused({"resourceType": "Patient", "name": [{"family": "Perpetua"}]}, 415, ctype="text/plain"))
        r_.run("unknown element (Patient.photo) -> 400 OperationOutcome",
               refused({"resourceType": "Patient", "name": [{"family": "Brunhildia"}], "photo": []}, 400))

        def too_large() -> None:
            filler = "x" * (1024 * 1024 + 1024)
            body = json.dumps({"resourceType": "Patient", "name": [{"family": "Brunhildia"}], "address": [{"text": filler}]}).encode()
            try:
                r = c.request("POST", "/fhir/r4/Patient", data=body, headers={"Content-Type": FHIR_JSON})
            except requests.ConnectionError as e:
                raise AssertionError(f"the connection failed instead of a 413 answer: {e}") from e
            outcome_check(r, 413)

            def chunks():  # no Content-Length: the server must stop reading at the limit
                for i in range(0, len(body), 64 * 1024):
                    yield body[i:i + 64 * 1024]

            try:
                r = c.request("POST", "/fhir/r4/Patient", data=chunks(), headers={"Content-Type": FHIR_JSON})
            except requests.ConnectionError as e:
                raise AssertionError(f"chunked: the connection failed instead of a 413 answer: {e}") from e
            outcome_check(r, 413)

        r_.run("body over 1 MiB (with Content-Length and chunked) -> 413 OperationOutcome", too_large)

        def bad_search(params: dict[str, str], status: int = 400) -> Callable[[], None]:
            return lambda: outcome_check(c.get("/fhir/r4/Patient", params=params), status)

        r_.run("unknown search parameter (shoe_size) -> 400 OperationOutcome", bad_search({"shoe_size": "9"}))
        r_.run("unsupported modifier family:contains -> 400 OperationOutcome", bad_search({"family:contains": "nun"}))
        r_.run("search birthdate=1980-02-30 -> 400 OperationOutcome", bad_search({"birthdate": "1980-02-30"}))
        r_.run("search _count=1000 -> 400 OperationOutcome", bad_search({"_count": "1000"}))
        r_.run("search with no criteria -> 400 OperationOutcome", bad_search({"_count": "5"}))

        def bad_if_match() -> None:
            pid = self.ids.get("nunez", "x")
            outcome_check(c.put_json(f"/fhir/r4/Patient/{pid}", {"resourceType": "Patient", "id": pid}, headers={"If-Match": "bogus"}), 400)

        r_.run("update with a malformed If-Match -> 400 OperationOutcome", bad_if_match)
        r_.run("unsupported resource type (GET /fhir/r4/Observation) -> 404 OperationOutcome",
               lambda: outcome_check(c.get("/fhir/r4/Observation"), 404))

    def test_logout(self, c: Client) -> None:
        def t() -> None:
            token = c.token()
            expect(token is not None, "no session cookie")
            r = c.request("POST", "/api/v1/auth/logout")
            expect(r.status_code == 204, f"logout: {short(r)}")
            expect("Max-Age=0" in r.headers.get("set-cookie", ""), "logout does not clear the cookie")
            # The browser forgets the cookie; replay the old token to prove the server ended it.
            anon = Client(self.server, self.collector, "after-logout")
            outcome_check(anon.get(f"/fhir/r4/Patient/{self.ids.get('nunez', 'x')}", headers={"Cookie": f"{SESSION_COOKIE}={token}"}), 401)
            r = anon.get("/api/v1/auth/session", headers={"Cookie": f"{SESSION_COOKIE}={token}"})
            expect(r.status_code == 401, f"session after logout: {short(r)}")

        self.r.run("logout -> 204; the old session token then gets 401", t)

    def test_idle_timeout(self) -> None:
        c = self.sign_in("idle", "second clinician signs in with password + TOTP")
        if c is None:
            self.r.fail(f"idle timeout: {IDLE_SECS + 1} s without requests -> 401", "could not sign in")
            return
        pid = self.ids.get("nunez", "x")

        def t() -> None:
            r = c.get(f"/fhir/r4/Patient/{pid}")
            expect(r.status_code == 200, f"before the pause: {short(r)}")
            token = c.token()
            time.sleep(IDLE_SECS + 1)
            expect(c.token() == token, "the client dropped its cookie: this would not test the server")
            # CV-AUTHN-002 (expired on this request) or CV-AUTHN-001 (already ended by the
            # server's session sweeper): either way the server, not the client, ended it.
            outcome_check(c.get(f"/fhir/r4/Patient/{pid}"), 401, ("CV-AUTHN-002", "CV-AUTHN-001"))
            r = c.get("/api/v1/auth/session")
            expect(r.status_code == 401, f"session still alive: {short(r)}")

        self.r.run(f"idle timeout: {IDLE_SECS + 1} s without requests -> 401 (server-enforced, cookie still sent)", t)

    def check_capability_statement(self) -> None:
        """The CapabilityStatement parses with fhir.resources and declares every resource type and
        interaction this run used successfully."""
        anon = Client(self.server, self.collector, "anonymous")

        def t() -> None:
            r = anon.get("/fhir/r4/metadata")
            expect(r.status_code == 200, short(r))
            cs = r.json()
            cls = _fhir_model("CapabilityStatement")
            model = cls.model_validate(cs) if hasattr(cls, "model_validate") else cls.parse_obj(cs)
            expect(model.fhirVersion == "4.0.1", f"fhirVersion {model.fhirVersion}")
            errors = binding_errors(cs, "CapabilityStatement")
            expect(not errors, "; ".join(errors))
            declared: set[tuple[str, str]] = set()
            for rest in cs.get("rest", []):
                for res in rest.get("resource", []):
                    declared |= {(res["type"], i["code"]) for i in res.get("interaction", [])}
                    declared |= {(res["type"], "$" + o["name"]) for o in res.get("operation", [])}
            types = {t for t, _ in declared}
            expect(len(types) >= 15, f"only {sorted(types)} declared")
            touched_types = {t for t, _ in TOUCHED}
            expect(touched_types <= types, f"types used but not declared: {sorted(touched_types - types)}")
            expect(TOUCHED <= declared, f"interactions used but not declared: {sorted(TOUCHED - declared)}")
            expect(bool(TOUCHED), "the run used no FHIR interaction")

        self.r.run(f"CapabilityStatement parses ({FHIR_MODELS}) and declares every type and interaction the run used", t)

    # -- after the server -------------------------------------------------------------------

    def validate_all(self, at_least: int = 21) -> None:
        seen: set[str] = set()
        n = 0
        for origin, res in self.collector.items:
            todo = [(res, origin)]
            if res.get("resourceType") == "Bundle":
                todo += [(e.get("resource", {}), f"{origin} entry {i}") for i, e in enumerate(res.get("entry") or [])]
            for obj, where in todo:
                key = json.dumps(obj, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                n += 1
                self.r.run(f"valid FHIR ({FHIR_MODELS}) {label(obj)} [{where}]", lambda o=obj: validate_resource(o))
        self.r.check("the server emitted FHIR resources to validate", n >= at_least, f"only {n} distinct resources collected")

    def phi_needles(self) -> list[str]:
        """The synthetic values and the MRNs given to them, case-folded, in NFC and NFD."""
        needles: list[str] = []
        for s in [*PHI_NEEDLES, *sorted(self.mrns)]:
            for form in (nfc(s), unicodedata.normalize("NFD", s)):
                f = form.casefold()
                if f not in needles:
                    needles.append(f)
        return needles

    @staticmethod
    def phi_hits(data: bytes, needles: list[str]) -> list[str]:
        """Case-insensitive search of raw bytes: ASCII case folding on the bytes, and full Unicode
        case folding on their UTF-8 reading (invalid bytes become U+FFFD and match nothing)."""
        low = data.lower()
        text = data.decode("utf-8", "replace").casefold()
        return [n for n in needles if n.encode() in low or n in text]

    def phi_scan_data_dir(self, when: str) -> None:
        """Every file under the data folder (database, -wal, -shm, logs, tls, audit, keys)."""
        needles = self.phi_needles()
        files = [p for p in self.data_dir.rglob("*") if p.is_file()]
        hits: list[str] = []
        for p in files:
            try:
                data = p.read_bytes()
            except FileNotFoundError:  # a -wal/-shm file removed while we looked
                continue
            hits += [f"{p.relative_to(self.data_dir)} contains {n!r}" for n in self.phi_hits(data, needles)]
        names = sorted(str(p.relative_to(self.data_dir)) for p in files)
        self.r.check(
            f"no synthetic PHI in the {len(files)} files of the data folder {when} ({len(needles)} needles)",
            not hits and len(files) > 0,
            "; ".join(hits[:20]) if hits else f"no files found ({names})",
        )
        print(f"  scanned: {', '.join(names)}", flush=True)

    def phi_scan(self) -> None:
        self.phi_scan_data_dir("after shutdown")
        needles = self.phi_needles()
        console: list[str] = []
        for p in (self.server.out_path, self.server.err_path):
            data = p.read_bytes() if p.exists() else b""
            console += [f"{p.name} contains {n!r}" for n in self.phi_hits(data, needles)]
        self.r.check("no synthetic PHI in the server's stdout/stderr", not console, "; ".join(console[:20]))
        if self.db_url:
            self.pg_dump_scan(needles)

    def pg_dump_scan(self, needles: list[str]) -> None:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            print("NOTE pg_dump not found: the PostgreSQL dump was not scanned for PHI", flush=True)
            return

        def t() -> None:
            assert self.db_url is not None
            p = subprocess.run([pg_dump, "--no-owner", "--dbname", self.db_url], capture_output=True, timeout=300)
            expect(p.returncode == 0, f"pg_dump exit {p.returncode}: {p.stderr.decode(errors='replace')[-500:]}")
            expect(b"audit_events" in p.stdout, "the dump has no audit_events table")
            hits = self.phi_hits(p.stdout, needles)
            expect(not hits, f"the dump contains {hits[:20]}")

        self.r.run(f"no synthetic PHI in a pg_dump of the database ({len(needles)} needles)", t)

    def audit_verify(self) -> None:
        def t() -> None:
            p = self.server.cli("audit", "verify")
            out = p.stdout.decode(errors="replace")
            expect(p.returncode == 0, f"exit {p.returncode}: {out} {p.stderr.decode(errors='replace')[-800:]}")
            expect("OK" in out, f"output: {out}")
            m = re.search(r"audit log: (\d+) records", out)
            expect(m is not None and int(m.group(1)) > 50, f"too few audit records: {out}")

        self.r.run("carevault audit verify -> exit 0 on the untouched log", t)

    def tamper(self) -> None:
        def t() -> None:
            dbs = [p for p in self.data_dir.rglob("*") if p.is_file() and p.read_bytes()[:16] == b"SQLite format 3\x00"]
            expect(len(dbs) == 1, f"expected one SQLite database in the data folder, found {[str(p) for p in dbs]}")
            con = sqlite3.connect(str(dbs[0]))
            try:
                rows = con.execute("SELECT seq, actor FROM audit_events ORDER BY seq").fetchall()
                expect(len(rows) > 10, f"only {len(rows)} audit rows")
                seq, actor = rows[len(rows) // 2]
                expect(isinstance(actor, str) and len(actor) > 0, f"actor of record {seq} is {actor!r}")
                raw = bytearray(actor.encode())
                raw[-1] = ord("X") if raw[-1] != ord("X") else ord("Y")
                con.execute("UPDATE audit_events SET actor = ? WHERE seq = ?", (raw.decode(), seq))
                con.commit()
            finally:
                con.close()
            p = self.server.cli("audit", "verify")
            err = p.stderr.decode(errors="replace")
            expect(p.returncode != 0, f"verify exited 0 after record {seq} was altered: {p.stdout.decode(errors='replace')}")
            expect(re.search(rf"\brecord {seq}\b", err) is not None, f"stderr does not name record {seq}: {err[-800:]}")

        self.r.run("one byte of audit_events.actor changed -> audit verify exits non-zero naming the record", t)

    # -- the whole run ------------------------------------------------------------------------

    def run(self) -> int:
        print(f"carevault e2e: {self.binary} ({'PostgreSQL' if self.db_url else 'SQLite'}), work dir {self.work}", flush=True)
        try:
            try:
                self.server.start()
                self.server.wait_up()
                self.r.ok("carevault serve starts and answers over HTTPS with its self-signed certificate")
            except Unusable as e:
                self.r.fail("carevault serve starts and answers over HTTPS with its self-signed certificate", str(e))
                raise
            self.add_user("clin", "e2e.clinician", "physician")
            self.add_user("replay", "e2e.replay", "physician")
            self.add_user("oath", "e2e.oath", "front_desk")
            self.add_user("idle", "e2e.idle", "physician")
            self.add_user("front", "e2e.front", "front_desk")
            self.add_user("admin", "e2e.admin", "practice_admin")
            if "clin" not in self.staff:
                raise Unusable("the clinician account could not be created")

            self.test_unauthenticated()
            self.test_totp_replay()
            self.test_oathtool()
            self.test_wrong_password()

            # The main clinician session: requests follow each other closely (idle limit IDLE_SECS).
            c = self.sign_in("clin", "clinician signs in with password + pyotp TOTP code")
            if c is None:
                raise Unusable("the clinician cannot sign in")
            self.test_patients(c)
            self.test_logout(c)

            self.test_mfa_incomplete_then_front_desk()
            self.test_admin()
            self.test_idle_timeout()
            self.check_capability_statement()
            self.phi_scan_data_dir("while the server runs")
        except Unusable as e:
            self.r.fail("server usable", str(e))
        finally:
            code = self.server.stop()
            self.r.check("server stops on SIGTERM with exit 0", code == 0, f"exit {code}; {self.server.tail()}")

        self.validate_all()
        if self.data_dir.exists():
            self.phi_scan()
            self.audit_verify()
            if self.db_url is None:
                self.tamper()
        else:
            self.r.fail("data folder", f"{self.data_dir} was not created")

        if self.r.failures:
            print("\nfailures:", flush=True)
            for f in self.r.failures:
                print(f"  - {f}", flush=True)
        if self.keep or self.r.failed:
            print(f"kept {self.work} for inspection", flush=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        print(f"{self.r.passed} passed, {self.r.failed} failed", flush=True)
        return 1 if self.r.failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="path to the carevault binary")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    ap.add_argument("--require-oathtool", action="store_true", help="fail if oathtool is not installed (CI)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"not an executable: {args.bin}", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    e2e = E2E(args.bin, args.keep)
    e2e.require_oathtool = args.require_oathtool
    return e2e.run()


if __name__ == "__main__":
    sys.exit(main())
