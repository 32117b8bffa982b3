#!/usr/bin/env python3
"""End-to-end test of carevault's access-control API (/api/v1) against the real binary.

    /tmp/e2e-venv/bin/python e2e/api_e2e.py --bin target/debug/carevault

It starts `carevault serve` on a fresh data folder, creates officers and clinicians with
`carevault user add`, signs them in with password + TOTP (pyotp), and checks, over HTTPS:
the OpenAPI 3.1 document (validated with openapi-spec-validator), account creation through the
API, precise problem+json refusals (unknown role, self-elevation, malformed JSON), break-glass
with step-up, its privacy alert and review, a clinical record (AllergyIntolerance, validated
with fhir.resources) that needs a care relationship, scheduling (an appointment type, a booking
holding a room, a weekly series and its cancellation, FHIR Appointment search validated with
fhir.resources, the waitlist offered freed time, declined and accepted), recovery codes
(single use), sessions and
"sign out everywhere", and that deactivation cuts a live session. Last, schemathesis fuzzes
every /api/v1 operation with a signed-in administrator: no 5xx, and responses match the
document. With CAREVAULT_DATABASE_URL set, the server uses that (empty, dedicated) database.
Prints `N passed, N failed` and exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import urllib.parse
import calendar
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fhir_e2e as base
from fhir_e2e import E2E, Client, expect, short
from openapi_spec_validator import validate as validate_openapi

PROBLEM = "application/problem+json"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"

# The chart section's synthetic values: each is searched for in the data folder, the console
# and the database dump afterwards (none may be readable there).
CHART_FAMILY = "Chartwellington"
NOTE_MARKER = "Tamborine cough since the harvest fair"
NOTE_EDIT_MARKER = "Wheeze heard over the left base, quillfeather"
ADDENDUM_MARKER = "Addendum: sister Marguerida reports a fever"
CONDITION_NOTE = "Diet-controlled per Ostrowinska"
DOC_MARKER = "Referral marker Zephyrwick-7731"
SIGNER_NAME = "Ottavia Brisbeckham"


def problem(r, status: int, code: str | None = None) -> dict:
    expect(r.status_code == status, f"expected HTTP {status}, got {short(r)}")
    expect(r.headers.get("content-type", "").startswith(PROBLEM), f"not problem+json: {short(r)}")
    body = r.json()
    if code:
        expect(body.get("code") == code, f"expected {code}, got {body}")
    return body


class ApiE2E(E2E):
    def __init__(self, binary: str, keep: bool) -> None:
        # Sessions here must outlive the slower steps (Argon2id sign-ins, schemathesis).
        base.IDLE_SECS = 600
        super().__init__(binary, keep)
        self.dir_ids: dict = {}  # the directory section's location, practitioner, appointment

    def api(self, c: Client, method: str, path: str, body=None):
        return c.request(method, path, json=body) if body is not None else c.request(method, path)

    def run(self) -> int:
        try:
            self.server.start()
            self.r.run("server starts and answers over HTTPS", self.server.wait_up)
        except base.Unusable as e:
            self.r.fail("server", str(e))
            return self.finish()
        for key, role in [("admin", "practice_admin"), ("admin2", "practice_admin"), ("privacy", "privacy_officer"),
                          ("doc", "physician"), ("front", "front_desk"), ("security", "security_officer")]:
            self.add_user(key, f"api.{key}", role)
        c = {k: self.sign_in(k, f"{k} signs in with password + TOTP") for k in list(self.staff)}
        if any(v is None for v in c.values()):
            return self.finish()
        self.test_openapi(c["admin"])
        newbie = self.test_accounts(c["admin"], c["front"], c["privacy"])
        self.test_break_glass(c)
        self.test_directory(c["admin"], c["front"])
        self.test_scheduling(c["admin"], c["front"])
        self.test_chart(c["doc"], c["front"])
        self.test_recovery_and_sessions(c["doc"])
        if newbie:
            self.test_deactivation(c["admin"], newbie)
        self.test_fuzz(c["admin"])
        self.check_capability_statement()
        code = self.server.stop()
        self.r.check("server stops on SIGTERM with exit 0", code == 0, f"exit {code}")
        self.validate_all(at_least=3)
        self.phi_scan()
        self.audit_verify()
        return self.finish()

    def phi_needles(self) -> list[str]:
        """The synthetic patient, the clinical value and the free-text reasons typed in this run:
        none may be readable in the data folder, the console or a dump of the database."""
        return ["glasshouse", "slotwell", "seriesford", "waitwell", "waitlonger", "latex allergy note", "collapsed at the desk",
                "flagged for the vip clinic",
                CHART_FAMILY.lower(), NOTE_MARKER.lower(), NOTE_EDIT_MARKER.lower(), ADDENDUM_MARKER.lower(),
                CONDITION_NOTE.lower(), DOC_MARKER.lower(), SIGNER_NAME.lower()]

    def finish(self) -> int:
        self.server.stop()
        for f in self.r.failures:
            print(f"  - {f}", flush=True)
        if self.keep or self.r.failed:
            print(f"kept {self.work} for inspection", flush=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        print(f"{self.r.passed} passed, {self.r.failed} failed", flush=True)
        return 1 if self.r.failed else 0

    def test_openapi(self, admin: Client) -> None:
        def t() -> None:
            r = admin.get("/api/v1/openapi.json")
            expect(r.status_code == 200, short(r))
            doc = r.json()
            expect(doc.get("openapi") == "3.1.0", f"version {doc.get('openapi')}")
            validate_openapi(doc)
            for path, ops in doc["paths"].items():
                for method, op in ops.items():
                    if path not in ("/health",):
                        expect("400" in op["responses"] or "401" in op["responses"], f"{method} {path} documents no error")
        self.r.run("GET /api/v1/openapi.json is a valid OpenAPI 3.1 document (openapi-spec-validator)", t)

    def test_accounts(self, admin: Client, front: Client, privacy: Client) -> Client | None:
        out: dict = {}
        password = "tulip marble orbit canyon"

        def create() -> None:
            r = self.api(admin, "POST", "/api/v1/users",
                         {"username": "api.newbie", "password": password, "role": "nurse", "organization_id": "default"})
            expect(r.status_code == 201, short(r))
            expect("otpauth" not in r.text and "secret" not in r.text, f"the answer carries a second-factor secret: {short(r)}")
            out.update(r.json())
            expect(out.get("status") == "pending-approval" and out.get("approval_id"), f"not waiting for approval: {out}")
            expect(isinstance(out.get("invitation"), str) and len(out["invitation"]) == 24, f"no invitation: {out}")
            anon = Client(self.server, self.collector, "newbie-early")
            r = anon.request("POST", "/api/v1/auth/login", json={"username": "api.newbie", "password": password})
            problem(r, 403, "CV-AUTHZ-002")
            problem(admin.request("POST", f"/api/v1/approvals/{out['approval_id']}/approve"), 403)
            r = privacy.request("POST", f"/api/v1/approvals/{out['approval_id']}/approve")
            expect(r.status_code == 200 and r.json().get("state") == "approved", short(r))
        self.r.run("an administrator creates a nurse account: an invitation, no secret; it signs in only after an officer approves", create)

        def enroll() -> Client:
            c = Client(self.server, self.collector, "newbie")
            r = c.request("POST", "/api/v1/auth/login", json={"username": "api.newbie", "password": password})
            expect(r.status_code == 200, short(r))
            problem(c.request("POST", "/api/v1/auth/mfa/enroll", json={"invitation": "AAAA-BBBB-CCCC-DDDD-EEEE"}), 403, "CV-AUTHZ-002")
            r = c.request("POST", "/api/v1/auth/mfa/enroll", json={"invitation": out.get("invitation", "")})
            expect(r.status_code == 200, short(r))
            totp = base.pyotp.parse_uri(r.json()["otpauth_uri"])
            self.staff["newbie"] = base.Staff("api.newbie", "nurse", password, totp, out["id"])
            r = c.totp(totp.now())
            expect(r.status_code == 200 and r.json().get("status") == "authenticated", f"totp: {short(r)}")
            return c
        nc = self.r.run("the new account enrols its own authenticator with password + invitation (pyotp) and signs in", enroll)

        def grant() -> None:
            target = self.staff["admin2"].user_id  # revoking ends the holder's sessions: not a user needed later
            body = {"user_id": target, "permission": "sensitive.vip.access", "organization_id": "default",
                    "ends_at": int(base.time.time()) + 3600, "reason": "Flagged for the VIP clinic"}
            r = self.api(admin, "POST", "/api/v1/grants", body)
            expect(r.status_code == 202 and r.json().get("status") == "pending-approval", short(r))
            r = privacy.request("POST", f"/api/v1/approvals/{r.json()['approval_id']}/approve")
            expect(r.status_code == 200, short(r))
            r = admin.get(f"/api/v1/grants?user_id={target}")
            live = [g for g in r.json() if g["active"]] if r.status_code == 200 else []
            expect(len(live) == 1, short(r))
            gid = live[0]["id"]
            problem(self.api(admin, "POST", "/api/v1/grants", {**body, "ends_at": int(base.time.time()) - 60}), 400, "CV-INPUT-001")
            problem(self.api(admin, "POST", "/api/v1/grants", {**body, "permission": "patient.everything"}), 400, "CV-INPUT-001")
            r = admin.request("DELETE", f"/api/v1/grants/{gid}")
            expect(r.status_code == 204, short(r))
        self.r.run("a time-bound VIP grant waits for an officer's approval, then is listed and revoked; past or unknown ones are refused", grant)
        self.r.run("a common password is refused with its reason", lambda: expect(
            "commonly used" in problem(self.api(admin, "POST", "/api/v1/users", {"username": "api.weak", "password": "Qwerty123456",
                                                                            "role": "nurse", "organization_id": "default"}), 400, "CV-INPUT-001")["detail"], "reason"))
        self.r.run("an unknown role name -> 400 problem+json", lambda: problem(
            self.api(admin, "POST", "/api/v1/assignments", {"user_id": out.get("id", "x"), "role": "superuser", "organization_id": "default"}), 400, "CV-INPUT-001"))
        admin_id = self.staff["admin"].user_id
        self.r.run("assigning a role to oneself -> 403 self-elevation", lambda: problem(
            self.api(admin, "POST", "/api/v1/assignments", {"user_id": admin_id, "role": "physician", "organization_id": "default"}), 403, "CV-AUTHZ-002"))
        self.r.run("malformed JSON -> 400 problem+json", lambda: problem(
            admin.request("POST", "/api/v1/assignments", data=b"{nope", headers={"Content-Type": "application/json"}), 400))
        self.r.run("a front-desk user cannot list accounts -> 403", lambda: problem(
            self.api(front, "GET", "/api/v1/users"), 403, "CV-AUTHZ-001"))
        return nc

    def test_break_glass(self, c: dict) -> None:
        front, doc, privacy = c["front"], c["doc"], c["privacy"]
        ids: dict = {}

        def register() -> None:
            r = front.post_json("/fhir/r4/Patient", {"resourceType": "Patient", "name": [{"family": "Glasshouse", "given": ["Api"]}]})
            expect(r.status_code == 201, short(r))
            ids["patient"] = r.json()["id"]
        self.r.run("front desk registers a patient", register)
        allergy = {"resourceType": "AllergyIntolerance", "code": {"text": "Latex allergy note"},
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                   "patient": {"reference": f"Patient/{ids.get('patient', 'x')}"}}
        self.r.run("a physician without a care relationship cannot record an allergy -> 403", lambda: base.outcome_check(
            doc.post_json("/fhir/r4/AllergyIntolerance", allergy), 403, "CV-AUTHZ-001"))
        self.r.run("break-glass with an unknown reason -> 400", lambda: problem(
            self.api(doc, "POST", f"/api/v1/patients/{ids.get('patient')}/break-glass", {"reason": "curious"}), 400, "CV-INPUT-001"))

        def glass() -> None:
            who = self.staff["doc"]
            r = self.api(doc, "POST", "/api/v1/auth/reauth", {"password": who.password, "code": who.totp.at(int(base.time.time()) + 30)})
            expect(r.status_code == 204, f"reauth: {short(r)}")
            r = self.api(doc, "POST", f"/api/v1/patients/{ids.get('patient')}/break-glass",
                         {"reason": "medical-emergency", "reason_text": "collapsed at the desk"})
            expect(r.status_code == 201, short(r))
            ids["bg"] = r.json()["id"]
            r = doc.post_json("/fhir/r4/AllergyIntolerance", allergy)
            expect(r.status_code == 201, f"allergy under break-glass: {short(r)}")
        self.r.run("after a fresh sign-in, break-glass opens the patient and the allergy is recorded", glass)

        def review() -> None:
            r = privacy.get("/api/v1/alerts?category=privacy")
            expect(r.status_code == 200 and any(a["kind"] == "break-glass" for a in r.json()), short(r))
            r = privacy.get("/api/v1/break-glass")
            expect(any(q["id"] == ids.get("bg") and q["reason_text"] == "collapsed at the desk" for q in r.json()), short(r))
            r = self.api(privacy, "POST", f"/api/v1/break-glass/{ids.get('bg')}/review", {"outcome": "inappropriate"})
            problem(r, 400, "CV-INPUT-001")
            r = self.api(privacy, "POST", f"/api/v1/break-glass/{ids.get('bg')}/review", {"outcome": "appropriate"})
            expect(r.status_code == 204, short(r))
        self.r.run("the break-glass raises a privacy alert and a review item the officer closes", review)

    def test_directory(self, admin: Client, front: Client) -> None:
        ids = self.dir_ids

        def location() -> None:
            p = self.server.cli("org", "add", "location", "--organization", "default", "--name", "Main Street", "--time-zone", "America/Chicago")
            expect(p.returncode == 0, p.stderr.decode(errors="replace"))
            ids["loc"] = p.stdout.decode().strip()
            p = self.server.cli("org", "add", "room", "--organization", "default", "--location", ids["loc"], "--name", "Exam 1")
            expect(p.returncode == 0, p.stderr.decode(errors="replace"))
            ids["room"] = p.stdout.decode().strip()
            bad = self.server.cli("org", "add", "location", "--organization", "default", "--name", "Nowhere", "--time-zone", "Mars/Olympus")
            expect(bad.returncode != 0 and b"unknown time zone" in bad.stderr, "an unknown time zone is refused")
        self.r.run("locations get an IANA time zone and rooms from the shell, next to the running server", location)

        def practitioner() -> None:
            body = {"npi": "1245319599", "family": "Ng", "given": "Mei Lin", "organization_id": "default",
                    "location_ids": [ids.get("loc", "x")], "specialty": "Family medicine", "user_id": self.staff["doc"].user_id}
            problem(self.api(admin, "POST", "/api/v1/practitioners", {**body, "npi": "1245319598"}), 400, "CV-INPUT-001")
            problem(self.api(front, "POST", "/api/v1/practitioners", body), 403, "CV-AUTHZ-001")
            r = self.api(admin, "POST", "/api/v1/practitioners", body)
            expect(r.status_code == 201, short(r))
            ids["pr"] = r.json()["id"]
            problem(self.api(admin, "POST", "/api/v1/practitioners", body), 409)
        self.r.run("an administrator registers a practitioner with a valid NPI; a bad check digit, a front-desk user and a duplicate are refused", practitioner)

        def fhir() -> None:
            r = front.get("/fhir/r4/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1245319599")
            expect(r.status_code == 200 and r.json()["total"] == 1, short(r))
            r = front.get(f"/fhir/r4/Practitioner/{ids.get('pr')}")
            expect(r.status_code == 200 and r.json()["identifier"][0]["value"] == "1245319599", short(r))
            r = front.get(f"/fhir/r4/PractitionerRole?practitioner={ids.get('pr')}")
            expect(r.status_code == 200 and r.json()["total"] == 1, short(r))
            r = front.get(f"/fhir/r4/Location/{ids.get('loc')}")
            expect(r.status_code == 200 and r.json()["extension"][0]["valueCode"] == "America/Chicago", short(r))
            r = front.get(f"/fhir/r4/Location/{ids.get('room')}")
            expect(r.status_code == 200 and r.json()["partOf"]["reference"] == f"Location/{ids.get('loc')}", short(r))
            r = front.get("/fhir/r4/Organization/default")
            expect(r.status_code == 200, short(r))
            base.outcome_check(front.get("/fhir/r4/Practitioner?name=ng"), 400)
        self.r.run("the directory reads as FHIR Practitioner, PractitionerRole, Location (time zone, room) and Organization", fhir)

        def schedule() -> None:
            windows = [{"weekday": d, "start_minute": 8 * 60, "end_minute": 17 * 60} for d in range(1, 8)]
            r = admin.request("PUT", f"/api/v1/practitioners/{ids.get('pr')}/availability", json={"location_id": ids.get("loc"), "windows": windows})
            expect(r.status_code == 204, short(r))
            problem(admin.request("PUT", f"/api/v1/practitioners/{ids.get('pr')}/availability",
                                  json={"location_id": ids.get("loc"), "windows": [{"weekday": 9, "start_minute": 0, "end_minute": 60}]}), 400)
            sched = f"{ids.get('pr')}.{ids.get('loc')}"
            r = front.get(f"/fhir/r4/Schedule/{sched}")
            expect(r.status_code == 200, short(r))
            day = (base.time.gmtime(base.time.time() + 7 * 86400))
            ids["date"] = base.time.strftime("%Y-%m-%d", day)
            r = front.get(f"/fhir/r4/Slot?schedule=Schedule/{sched}&start={ids['date']}&duration=30")
            expect(r.status_code == 200 and r.json()["total"] == 18, f"18 half-hour slots from 08:00 to 17:00: {short(r)}")
            ids["slot"] = r.json()["entry"][0]["resource"]
        self.r.run("availability over the API; FHIR Schedule and the day's free Slots in the location's time zone", schedule)

        def fhirpy_books() -> None:
            from fhirpy import SyncFHIRClient
            token = front.token()
            client = SyncFHIRClient(f"{self.server.base}/fhir/r4", extra_headers={"Cookie": f"{base.SESSION_COOKIE}={token}"},
                                    requests_config={"verify": self.server.cert})
            patient = client.resource("Patient", name=[{"family": "Slotwell", "given": ["Fhirpy"]}])
            patient.save()
            slot = ids["slot"]
            appt = client.resource("Appointment", status="booked", start=slot["start"], end=slot["end"], participant=[
                {"actor": {"reference": f"Patient/{patient['id']}"}, "status": "accepted"},
                {"actor": {"reference": f"Practitioner/{ids.get('pr')}"}, "status": "accepted"},
                {"actor": {"reference": f"Location/{ids.get('loc')}"}, "status": "accepted"}])
            appt.save()
            expect(bool(appt.get("id")), "no id assigned")
            again = client.reference("Appointment", appt["id"]).to_resource()
            expect(again["status"] == "booked" and again["start"].startswith(slot["start"][:16]), f"read back: {dict(again)}")
            ids["appt"] = appt["id"]
            ids["appt_patient"] = patient["id"]
            # The same slot again: a conflict, precisely.
            r = front.post_json("/fhir/r4/Appointment", {k: v for k, v in appt.serialize().items() if k not in ("id", "meta", "minutesDuration")})
            base.outcome_check(r, 409)
            r = front.get(f"/fhir/r4/Appointment/{appt['id']}")
            expect(r.status_code == 200, short(r))
            r = front.get(f"/fhir/r4/Slot?schedule=Schedule/{ids.get('pr')}.{ids.get('loc')}&start={ids['date']}&duration=30")
            expect(r.json()["total"] == 17, f"the booked slot is no longer free: {short(r)}")
            r = front.request("POST", f"/api/v1/appointments/{appt['id']}/status", json={"status": "arrived"})
            expect(r.status_code == 204, f"check-in: {short(r)}")
            problem(front.request("POST", f"/api/v1/appointments/{appt['id']}/status", json={"status": "cancelled"}), 400)
            problem(front.request("POST", f"/api/v1/appointments/{appt['id']}/status", json={"status": "booked"}), 409)
            r = front.get(f"/api/v1/appointments/{appt['id']}/history")
            expect(r.status_code == 200 and [(h["from"], h["to"]) for h in r.json()] == [("booked", "arrived")], short(r))
        self.r.run("a real FHIR client (fhirpy) registers a patient, books a free slot and reads the appointment back; check-in and its history", fhirpy_books)

    def test_scheduling(self, admin: Client, front: Client) -> None:
        """Appointment types, rooms, weekly series, FHIR Appointment search and the waitlist, over
        HTTPS, at a location of its own (UTC) ten days ahead."""
        ids: dict = {}
        day = base.time.gmtime(base.time.time() + 10 * 86400)
        date = base.time.strftime("%Y-%m-%d", day)
        next_date = base.time.strftime("%Y-%m-%d", base.time.gmtime(base.time.time() + 11 * 86400))
        far_date = base.time.strftime("%Y-%m-%d", base.time.gmtime(base.time.time() + 25 * 86400))

        def at(hhmm: str) -> str:
            return f"{date}T{hhmm}:00Z"

        def micros(instant: str) -> int:
            return int(calendar.timegm(base.time.strptime(instant, "%Y-%m-%dT%H:%M:%SZ"))) * 1_000_000

        def setup() -> None:
            for key, name in [("loc", "Oak Street"), ("loc2", "Birch Street")]:
                p = self.server.cli("org", "add", "location", "--organization", "default", "--name", name, "--time-zone", "UTC")
                expect(p.returncode == 0, p.stderr.decode(errors="replace"))
                ids[key] = p.stdout.decode().strip()
            for key, loc in [("room", "loc"), ("room2", "loc2")]:
                p = self.server.cli("org", "add", "room", "--organization", "default", "--location", ids[loc], "--name", f"Exam {key}")
                expect(p.returncode == 0, p.stderr.decode(errors="replace"))
                ids[key] = p.stdout.decode().strip()
            body = {"npi": "1003000126", "family": "Okafor", "given": "Ada", "organization_id": "default", "location_ids": [ids["loc"]]}
            r = self.api(admin, "POST", "/api/v1/practitioners", body)
            expect(r.status_code == 201, short(r))
            ids["pr"] = r.json()["id"]
            windows = [{"weekday": d, "start_minute": 8 * 60, "end_minute": 17 * 60} for d in range(1, 8)]
            r = admin.request("PUT", f"/api/v1/practitioners/{ids['pr']}/availability", json={"location_id": ids["loc"], "windows": windows})
            expect(r.status_code == 204, short(r))
            for key, family in [("patient", "Seriesford"), ("w1", "Waitwell"), ("w2", "Waitlonger")]:
                r = front.post_json("/fhir/r4/Patient", {"resourceType": "Patient", "name": [{"family": family, "given": ["Sched"]}]})
                expect(r.status_code == 201, short(r))
                ids[key] = r.json()["id"]
        self.r.run("scheduling set-up: two locations with a room each, a practitioner available 08:00-17:00, three patients", setup)

        def booking(**kw) -> dict:
            return {"patient_id": ids.get("patient", "x"), "practitioner_id": ids.get("pr", "x"), "location_id": ids.get("loc", "x"), **kw}

        def types() -> None:
            body = {"organization_id": "default", "code": "follow-up", "name": "Follow-up visit", "minutes": 20}
            r = self.api(admin, "POST", "/api/v1/appointment-types", body)
            expect(r.status_code == 201 and r.json()["minutes"] == 20 and r.json()["code"] == "follow-up", short(r))
            ids["type"] = r.json()["id"]
            problem(self.api(admin, "POST", "/api/v1/appointment-types", body), 409)
            problem(self.api(admin, "POST", "/api/v1/appointment-types", {**body, "code": "Bad Code"}), 400, "CV-INPUT-001")
            problem(self.api(admin, "POST", "/api/v1/appointment-types", {**body, "minutes": "twenty"}), 400)
            r = front.get("/api/v1/appointment-types")
            expect(r.status_code == 200 and any(t["id"] == ids["type"] for t in r.json()), short(r))
        self.r.run("an appointment type is added (a duplicate code -> 409, bad input -> 400) and listed", types)

        def typed_with_room() -> None:
            r = self.api(front, "POST", "/api/v1/appointments", booking(start=at("09:00"), type_id=ids.get("type"), room_id=ids.get("room")))
            expect(r.status_code == 201, short(r))
            body = r.json()
            expect(body["series_id"] is None and len(body["appointments"]) == 1, short(r))
            a = body["appointments"][0]
            expect(a["room_id"] == ids.get("room") and a["type_id"] == ids.get("type"), short(r))
            expect(a["start"] == micros(at("09:00")) and a["end"] - a["start"] == 20 * 60_000_000, f"20 minutes from the type: {short(r)}")
            ids["typed"] = a["id"]
            # The room is held: another booking of it at an overlapping time is a conflict.
            problem(self.api(front, "POST", "/api/v1/appointments",
                             booking(start=at("09:00"), minutes=20, room_id=ids.get("room"), patient_id=ids.get("w1"))), 409)
            # The type's duration and another one: refused.
            problem(self.api(front, "POST", "/api/v1/appointments", booking(start=at("09:20"), type_id=ids.get("type"), minutes=30)),
                    400, "CV-INPUT-001")
        self.r.run("POST /api/v1/appointments books with a type (its duration) and a room; the room and the duration are checked", typed_with_room)

        def bad_input() -> None:
            problem(self.api(front, "POST", "/api/v1/appointments", booking(start=at("09:20"), minutes=20, room_id=ids.get("room2"))),
                    400, "CV-INPUT-001")
            problem(self.api(front, "POST", "/api/v1/appointments", booking(start=at("10:00"), minutes=30, count=3)), 400, "CV-INPUT-001")
            problem(self.api(front, "POST", "/api/v1/appointments", booking(start=at("10:00"), minutes=30, every_weeks=1)), 400, "CV-INPUT-001")
            problem(self.api(front, "POST", "/api/v1/appointments", booking(start=at("10:00"), minutes=30, every_weeks=9, count=3)), 400)
            problem(self.api(front, "POST", "/api/v1/appointments", booking(start="tomorrow at ten", minutes=30)), 400)
            problem(self.api(front, "POST", "/api/v1/appointments", booking(start=at("10:00"), minutes=30, colour="blue")), 400)
            # Nothing was booked by any of them (the search tells).
            r = front.get("/fhir/r4/Appointment", params=[("practitioner", ids.get("pr")), ("date", date)])
            expect(r.status_code == 200 and r.json()["total"] == 1, f"only the typed booking: {short(r)}")
        self.r.run("bad bookings -> 400 problem+json (a room of another location, a series with only count or every_weeks, ...); nothing booked",
                   bad_input)

        def series() -> None:
            r = self.api(front, "POST", "/api/v1/appointments", booking(start=at("10:00"), minutes=30, every_weeks=1, count=3))
            expect(r.status_code == 201, short(r))
            body = r.json()
            ids["series"] = body["series_id"]
            starts = [a["start"] for a in body["appointments"]]
            week = 7 * 86_400_000_000
            expect(starts == [micros(at("10:00")) + k * week for k in range(3)], f"weekly at 10:00: {starts}")
            expect(all(a["series_id"] == ids["series"] for a in body["appointments"]), short(r))
            ids["occurrences"] = [a["id"] for a in body["appointments"]]
            # A series from a week earlier runs into this one: all or nothing, the taken dates named.
            week_before = f"{base.time.strftime('%Y-%m-%d', base.time.gmtime(base.time.time() + 3 * 86400))}T10:00:00Z"
            p = problem(self.api(front, "POST", "/api/v1/appointments",
                                 booking(start=week_before, minutes=30, every_weeks=1, count=3, patient_id=ids.get("w1"))), 409)
            expect(date in p.get("detail", "") and week_before[:10] not in p.get("detail", ""), f"the taken dates are named: {p}")
            r = front.get("/fhir/r4/Appointment", params=[("patient", ids.get("w1")), ("date", week_before[:10])])
            expect(r.status_code == 200 and r.json()["total"] == 0, f"nothing booked: {short(r)}")
        self.r.run("a weekly series is booked in one request and shares a series id", series)

        def search() -> None:
            params = [("practitioner", ids.get("pr")), ("date", f"ge{date}"), ("date", f"lt{next_date}")]
            r = front.get("/fhir/r4/Appointment", params=params)
            expect(r.status_code == 200, short(r))
            b = r.json()
            base.validate_resource(b)
            expect(b["resourceType"] == "Bundle" and b["type"] == "searchset" and b["total"] == 2, short(r))
            appts = [e["resource"] for e in b["entry"]]
            for a in appts:
                base.validate_resource(a)
            expect([a["id"] for a in appts] == [ids.get("typed"), ids.get("occurrences", ["x"])[0]], f"in order of start: {base.bundle_ids(b)}")
            typed, first = appts
            expect(typed["minutesDuration"] == 20 and typed["appointmentType"]["coding"][0]["code"] == ids.get("type"), str(typed))
            expect({"reference": f"Location/{ids.get('room')}"} in [p["actor"] for p in typed["participant"]], str(typed))
            expect(first["identifier"][0]["value"] == ids.get("series"), str(first))
            r = front.get("/fhir/r4/Appointment", params=[("patient", f"Patient/{ids.get('patient')}"), ("date", f"ge{date}"), ("date", f"lt{far_date}")])
            expect(r.status_code == 200 and r.json()["total"] == 4, f"the patient's four visits: {short(r)}")
            base.outcome_check(front.get("/fhir/r4/Appointment", params=[("practitioner", ids.get("pr"))]), 400)
            base.outcome_check(front.get("/fhir/r4/Appointment", params=[("date", f"ge{date}"), ("date", "lt2099-01-01")]), 400)
            base.outcome_check(front.get("/fhir/r4/Appointment", params=[("date", date), ("status", "tentative")]), 400)
            base.outcome_check(front.get("/fhir/r4/Appointment", params=[("date", date), ("colour", "blue")]), 400)
        self.r.run("GET /fhir/r4/Appointment?practitioner=..&date=ge..&date=lt.. is a valid searchset Bundle (fhir.resources); bad params -> 400",
                   search)

        def waitlist() -> None:
            entries = {}
            for key in ("w1", "w2"):
                r = self.api(front, "POST", "/api/v1/waitlist", {"patient_id": ids.get(key), "practitioner_id": ids.get("pr"),
                                                                "location_id": ids.get("loc"), "minutes": 30, "from": date, "to": date})
                expect(r.status_code == 201 and r.json()["status"] == "waiting", short(r))
                entries[key] = r.json()["id"]
                base.time.sleep(0.01)  # the first one waits longer
            problem(self.api(front, "POST", "/api/v1/waitlist", {"patient_id": ids.get("w1"), "practitioner_id": ids.get("pr"),
                                                                 "location_id": ids.get("loc"), "minutes": 30, "from": next_date, "to": date}),
                    400, "CV-INPUT-001")
            problem(front.get(f"/api/v1/waitlist?location_id={ids.get('loc')}&status=pending"), 400)
            # Nothing offered yet: accepting is a conflict.
            problem(self.api(front, "POST", f"/api/v1/waitlist/{entries['w1']}/accept"), 409)
            # The series' first occurrence (10:00) is cancelled: offered to the longest waiting.
            first = ids.get("occurrences", ["x"])[0]
            r = self.api(front, "POST", f"/api/v1/appointments/{first}/status", {"status": "cancelled", "reason": "pat"})
            expect(r.status_code == 204, short(r))

            def listed(status: str) -> dict:
                r = front.get("/api/v1/waitlist", params={"location_id": ids.get("loc"), "status": status})
                expect(r.status_code == 200, short(r))
                return {e["id"]: e for e in r.json()}
            offered = listed("offered")
            expect(list(offered) == [entries["w1"]] and offered[entries["w1"]]["offered_start"] == micros(at("10:00")), str(offered))
            r = self.api(front, "POST", f"/api/v1/waitlist/{entries['w1']}/decline")
            expect(r.status_code == 204, short(r))
            offered = listed("offered")
            expect(list(offered) == [entries["w2"]] and offered[entries["w2"]]["offered_start"] == micros(at("10:00")), str(offered))
            expect(entries["w1"] in listed("waiting"), "the one who declined keeps waiting")
            r = self.api(front, "POST", f"/api/v1/waitlist/{entries['w2']}/accept")
            expect(r.status_code == 201, short(r))
            a = r.json()
            expect(a["patient_id"] == ids.get("w2") and a["start"] == micros(at("10:00")), short(r))
            booked = listed("booked")
            expect(booked.get(entries["w2"], {}).get("appointment_id") == a["id"], str(booked))
            r = front.get(f"/fhir/r4/Appointment/{a['id']}")
            expect(r.status_code == 200 and {"reference": f"Patient/{ids.get('w2')}"} in [p["actor"] for p in r.json()["participant"]], short(r))
            problem(self.api(front, "POST", f"/api/v1/waitlist/{entries['w2']}/accept"), 409)
            problem(self.api(front, "POST", "/api/v1/waitlist/nope/decline"), 404)
        self.r.run("the waitlist over HTTP: a cancelled time is offered, declined (passed on) and accepted (booked)", waitlist)

        def cancel_series() -> None:
            problem(self.api(front, "POST", f"/api/v1/appointment-series/{ids.get('series')}/cancel", {"reason": "because"}), 400, "CV-INPUT-001")
            r = self.api(front, "POST", f"/api/v1/appointment-series/{ids.get('series')}/cancel", {"reason": "prov"})
            expect(r.status_code == 200 and r.json() == {"cancelled": 2}, f"the two still booked: {short(r)}")
            for occurrence in ids.get("occurrences", []):
                r = front.get(f"/fhir/r4/Appointment/{occurrence}")
                expect(r.status_code == 200 and r.json()["status"] == "cancelled", short(r))
            problem(self.api(front, "POST", "/api/v1/appointment-series/000000000000000000000000/cancel", {"reason": "prov"}), 404)
        self.r.run("cancelling the series cancels its occurrences still booked", cancel_series)

    def test_chart(self, doc: Client, front: Client) -> None:
        """The chart over HTTPS, as a physician with a care relationship: encounters, a SOAP note
        through draft, signature and addendum, its Provenance, ICD-10-CM diagnoses, an attached
        document and its Binary, and a signed consent with its PDF, verification and revocation."""
        import base64
        import hashlib

        d = self.dir_ids
        ids: dict = {}
        doc_user = self.staff["doc"].user_id

        def fhir_ok(r, status: int, rtype: str) -> dict:
            expect(r.status_code == status, f"expected HTTP {status}, got {short(r)}")
            body = r.json()
            expect(body.get("resourceType") == rtype, f"not a {rtype}: {short(r)}")
            base.validate_resource(body)
            return body

        def attachment_text(dr: dict) -> str:
            return base64.b64decode(dr["content"][0]["attachment"]["data"]).decode("utf-8")

        def bundle(r, rtype: str) -> list[dict]:
            b = fhir_ok(r, 200, "Bundle")
            entries = [e["resource"] for e in b.get("entry") or []]
            for e in entries:
                expect(e.get("resourceType") == rtype, f"a {e.get('resourceType')} in a {rtype} search")
                base.validate_resource(e)
            return entries

        def setup() -> None:
            r = front.post_json("/fhir/r4/Patient", {"resourceType": "Patient", "name": [{"family": CHART_FAMILY, "given": ["Chart"]}]})
            expect(r.status_code == 201, short(r))
            ids["patient"] = r.json()["id"]
            walk_in = {"patient_id": ids["patient"], "practitioner_id": d.get("pr", "x"), "location_id": d.get("loc", "x")}
            problem(self.api(doc, "POST", "/api/v1/encounters", walk_in), 403, "CV-AUTHZ-001")
            problem(self.api(doc, "POST", f"/api/v1/patients/{ids['patient']}/care-team",
                             {"user_id": doc_user, "relation": "assigned-provider"}), 403)
            for pid in (ids["patient"], d.get("appt_patient", "x")):
                r = self.api(front, "POST", f"/api/v1/patients/{pid}/care-team", {"user_id": doc_user, "relation": "assigned-provider"})
                expect(r.status_code == 204, f"care team of {pid}: {short(r)}")
        self.r.run("chart: without a care relationship a walk-in encounter -> 403; nobody adds themselves; "
                   "front desk makes the physician the assigned provider", setup)

        def encounters() -> None:
            walk_in = {"patient_id": ids.get("patient", "x"), "practitioner_id": d.get("pr", "x"), "location_id": d.get("loc", "x")}
            e = fhir_ok(self.api(doc, "POST", "/api/v1/encounters", walk_in), 201, "Encounter")
            expect(e["status"] == "in-progress" and e["subject"]["reference"] == f"Patient/{ids.get('patient')}", f"{e}")
            expect(e["participant"][0]["individual"]["reference"] == f"Practitioner/{d.get('pr')}", f"{e}")
            ids["enc"] = e["id"]
            e = fhir_ok(self.api(doc, "POST", "/api/v1/encounters", {"appointment_id": d.get("appt", "x")}), 201, "Encounter")
            expect(e.get("appointment") == [{"reference": f"Appointment/{d.get('appt')}"}], f"{e}")
            expect(e["subject"]["reference"] == f"Patient/{d.get('appt_patient')}", f"{e}")
            ids["enc_appt"] = e["id"]
            problem(self.api(doc, "POST", "/api/v1/encounters", {"appointment_id": d.get("appt", "x")}), 409)
            r = front.get(f"/api/v1/appointments/{d.get('appt')}/history")
            expect(r.status_code == 200 and r.json()[-1]["to"] == "checked-in", f"the appointment is checked in: {short(r)}")
            r = doc.get(f"/fhir/r4/Encounter?patient={ids.get('patient')}")
            expect(any(x["id"] == ids["enc"] for x in bundle(r, "Encounter")), short(r))
        self.r.run("chart: a walk-in encounter and one from the checked-in appointment (FHIR Encounter, validated); "
                   "a second encounter for the appointment -> 409", encounters)

        def walk_in_incomplete() -> None:
            pid, pr, loc = ids.get("patient", "x"), d.get("pr", "x"), d.get("loc", "x")
            for body, field in [({}, "patientId"), ({"patient_id": pid}, "practitionerId"),
                                ({"patient_id": pid, "practitioner_id": pr}, "locationId"), ({"patient_id": pid, "location_id": loc}, "practitionerId")]:
                detail = problem(self.api(doc, "POST", "/api/v1/encounters", body), 400, "CV-INPUT-001").get("detail", "")
                expect(field in detail, f"{body}: the refusal names {field}: {detail!r}")
            # A NUL byte (a 500 on PostgreSQL once) is refused before any handler; an id no
            # record can have is simply not found.
            for body in [{"patient_id": pid, "practitioner_id": pr, "location_id": "\u0000"},
                         {"patient_id": pid, "practitioner_id": "\u0000x", "location_id": loc}]:
                detail = problem(self.api(doc, "POST", "/api/v1/encounters", body), 400, "CV-INPUT-001").get("detail", "")
                expect("NUL" in detail, detail)
            problem(self.api(doc, "POST", "/api/v1/encounters", {"patient_id": pid, "practitioner_id": pr, "location_id": "no such/place"}),
                    404, "CV-NOTFOUND-001")
            r = doc.get("/api/v1/waitlist?location_id=%00")
            expect(r.status_code == 400, f"a NUL in the query string: {short(r)}")
        self.r.run("chart: a walk-in encounter without its patient, practitioner or location -> 400 naming the field; a NUL byte -> 400; an impossible id -> 404", walk_in_incomplete)

        def notes() -> None:
            sections = {"subjective": NOTE_MARKER, "objective": "Temp 37.1 C", "assessment": "Viral cough", "plan": "Fluids"}
            n = fhir_ok(self.api(doc, "POST", f"/api/v1/encounters/{ids.get('enc', 'x')}/notes", sections), 201, "DocumentReference")
            expect(n["docStatus"] == "preliminary", f"a draft is preliminary: {n.get('docStatus')}")
            expect(n["context"]["encounter"] == [{"reference": f"Encounter/{ids.get('enc')}"}], f"{n.get('context')}")
            expect(NOTE_MARKER in attachment_text(n), "the draft's text")
            ids["note"] = n["id"]
            edited = {**sections, "objective": NOTE_EDIT_MARKER}
            n = fhir_ok(self.api(doc, "PUT", f"/api/v1/notes/{n['id']}", edited), 200, "DocumentReference")
            expect(n["docStatus"] == "preliminary" and NOTE_EDIT_MARKER in attachment_text(n), "the edit is kept")
            n = fhir_ok(doc.request("POST", f"/api/v1/notes/{ids['note']}/sign"), 200, "DocumentReference")
            expect(n["docStatus"] == "final", f"signed note: docStatus {n.get('docStatus')}")
            ids["signed"] = n
            problem(self.api(doc, "PUT", f"/api/v1/notes/{ids['note']}", {**edited, "plan": "changed after signing"}), 409)
            problem(doc.request("POST", f"/api/v1/notes/{ids['note']}/sign"), 409)
            again = fhir_ok(doc.get(f"/fhir/r4/DocumentReference/{ids['note']}"), 200, "DocumentReference")
            expect(again == n, f"the signed note changed: {again} != {n}")
            a = fhir_ok(self.api(doc, "POST", f"/api/v1/notes/{ids['note']}/addenda", {"text": ADDENDUM_MARKER}), 201, "DocumentReference")
            expect(a["relatesTo"] == [{"code": "appends", "target": {"reference": f"DocumentReference/{ids['note']}"}}], f"{a.get('relatesTo')}")
            expect(a["docStatus"] == "final" and ADDENDUM_MARKER in attachment_text(a), f"addendum: {a.get('docStatus')}")
            ids["addendum"] = a
        self.r.run("chart: a SOAP note as a draft (preliminary), edited, signed (final); a change after signing -> 409 "
                   "and the note reads back unchanged; an addendum appends to it (all validated)", notes)

        def provenance() -> None:
            r = doc.get(f"/fhir/r4/Provenance?target=DocumentReference/{ids.get('note', 'x')}")
            provs = bundle(r, "Provenance")
            docs = {ids["signed"]["id"]: ids["signed"], ids["addendum"]["id"]: ids["addendum"]}
            expect(len(provs) == 2, f"a Provenance for the note and for its addendum: {len(provs)}")
            for p in provs:
                target = p["target"][0]["reference"]
                expect(target.startswith("DocumentReference/"), target)
                dr = docs.get(target.split("/")[1])
                expect(dr is not None, f"target {target} is neither the note nor its addendum")
                assert dr is not None
                expect(target == f"DocumentReference/{dr['id']}/_history/{dr['meta']['versionId']}", f"{target} names the signed version")
                want = hashlib.sha256(attachment_text(dr).encode("utf-8")).hexdigest()
                sigs = p.get("signature") or []
                expect(len(sigs) == 1, f"one signature: {sigs}")
                data = base64.b64decode(sigs[0]["data"]).decode("ascii")
                expect(data == f"sha256:{want}", f"signature data {data!r}, SHA-256 of the attachment text is {want}")
                expect(dr["content"][0]["attachment"].get("title") == f"SHA-256 {want}", "the attachment title carries the hash")
        self.r.run("chart: Provenance of the note and its addendum (validated); each signature is sha256:<hex> "
                   "of the signed attachment text", provenance)

        def conditions() -> None:
            enc = ids.get("enc", "x")
            c = fhir_ok(self.api(doc, "POST", f"/api/v1/encounters/{enc}/conditions", {"code": "E11.9", "note": CONDITION_NOTE}), 201, "Condition")
            coding = c["code"]["coding"][0]
            expect(coding["system"] == ICD10_SYSTEM and coding["code"] == "E11.9", f"{coding}")
            expect(c["encounter"]["reference"] == f"Encounter/{enc}", f"{c.get('encounter')}")
            ids["cond"] = c["id"]
            problem(self.api(doc, "POST", f"/api/v1/encounters/{enc}/conditions", {"code": "HTN"}), 400, "CV-INPUT-001")
            problem(self.api(doc, "POST", f"/api/v1/encounters/{enc}/conditions", {"code": "E11"}), 400, "CV-INPUT-001")
            found = bundle(doc.get(f"/fhir/r4/Condition?patient={ids.get('patient')}"), "Condition")
            expect([x["id"] for x in found] == [c["id"]], f"{[x['id'] for x in found]}")
            r = doc.get("/api/v1/icd10?q=diabetes")
            expect(r.status_code == 200 and any(x["code"] == "E11.9" for x in r.json()), short(r))
        self.r.run("chart: an ICD-10-CM diagnosis (Condition, validated, ICD-10-CM system); 'HTN' and a category -> 400; "
                   "Condition search; ICD-10 search for 'diabetes' lists E11.9", conditions)

        def documents() -> None:
            pid = ids.get("patient", "x")
            content = f"Dear colleague,\n{DOC_MARKER}\nPlease see this patient.\n".encode()
            r = doc.request("POST", f"/api/v1/patients/{pid}/documents?title=Referral%20letter", data=content,
                            headers={"Content-Type": "text/plain"})
            dr = fhir_ok(r, 201, "DocumentReference")
            att = dr["content"][0]["attachment"]
            expect(att["contentType"].startswith("text/plain") and att["url"] == f"Binary/{dr['id']}", f"{att}")
            expect(att["size"] == len(content) and att["title"] == "Referral letter", f"{att}")
            ids["doc"] = dr["id"]
            png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
            problem(doc.request("POST", f"/api/v1/patients/{pid}/documents?title=Scan", data=png,
                                headers={"Content-Type": "application/pdf"}), 400)
            r = doc.get(f"/fhir/r4/Binary/{dr['id']}")
            expect(r.status_code == 200 and r.content == content, f"the exact bytes back: {short(r)}")
            expect(r.headers.get("content-type", "").startswith("text/plain"), f"content type: {r.headers.get('content-type')}")
            b = fhir_ok(doc.get(f"/fhir/r4/Binary/{dr['id']}", headers={"Accept": base.FHIR_JSON}), 200, "Binary")
            expect(base64.b64decode(b["data"]) == content and b["contentType"].startswith("text/plain"), f"Binary: {b.get('contentType')}")
            found = {x["id"] for x in bundle(doc.get(f"/fhir/r4/DocumentReference?patient={pid}"), "DocumentReference")}
            want = {ids["doc"], ids.get("note"), (ids.get("addendum") or {}).get("id")}
            expect(want <= found, f"missing {want - found}")
        self.r.run("chart: a text document is attached (DocumentReference, validated); a PNG declared as PDF -> 400; "
                   "Binary returns the exact bytes, and as FHIR JSON a valid Binary; DocumentReference search", documents)

        def truncated_upload() -> None:
            """The client promises 5000 bytes, sends 100 and stops: nothing is stored."""
            import socket
            import ssl
            pid = ids.get("patient", "x")
            before = len(bundle(doc.get(f"/fhir/r4/DocumentReference?patient={pid}"), "DocumentReference"))
            ctx = ssl.create_default_context(cafile=str(self.server.cert))
            ctx.check_hostname = False
            host = urllib.parse.urlsplit(self.server.base)
            with socket.create_connection((host.hostname, host.port), timeout=30) as raw:
                with ctx.wrap_socket(raw, server_hostname=host.hostname) as tls:
                    head = (f"POST /api/v1/patients/{pid}/documents?title=Cut HTTP/1.1\r\nHost: {host.netloc}\r\n"
                            f"Cookie: {base.SESSION_COOKIE}={doc.token()}\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 5000\r\nConnection: close\r\n\r\n")
                    tls.sendall(head.encode() + b"x" * 100)
            # The connection is gone before the promised length arrived.
            time.sleep(0.5)
            after = len(bundle(doc.get(f"/fhir/r4/DocumentReference?patient={pid}"), "DocumentReference"))
            expect(after == before, f"nothing stored: {before} -> {after}")
        self.r.run("chart: a truncated upload (Content-Length 5000, 100 bytes sent, then the connection closes): nothing stored", truncated_upload)

        def consents() -> None:
            pid = ids.get("patient", "x")
            r = doc.get("/api/v1/consent-templates")
            expect(r.status_code == 200, short(r))
            kinds = {t["kind"] for t in r.json()}
            expect(kinds == {"treatment", "privacy-practices", "telehealth", "release-of-information"}, f"{kinds}")
            version = max(t["version"] for t in r.json() if t["kind"] == "treatment")
            body = {"kind": "treatment", "template_version": version, "signer_typed_name": SIGNER_NAME,
                    "signature": {"width": 600, "height": 200, "strokes": [[[10, 10], [200, 150], [400, 40]]]}}
            c = fhir_ok(self.api(doc, "POST", f"/api/v1/patients/{pid}/consents", body), 201, "Consent")
            expect(c["status"] == "active" and c["patient"]["reference"] == f"Patient/{pid}", f"{c}")
            ids["consent"] = c["id"]
            found = bundle(doc.get(f"/fhir/r4/Consent?patient={pid}"), "Consent")
            expect(any(x["id"] == c["id"] and x["status"] == "active" for x in found), f"{found}")
            r = doc.get(f"/fhir/r4/Consent/{c['id']}/$pdf")
            expect(r.status_code == 200 and r.headers.get("content-type", "").startswith("application/pdf"), short(r))
            pdf = r.content
            expect(pdf.startswith(b"%PDF-"), f"not a PDF: {pdf[:20]!r}")
            path = self.work / "consent.pdf"
            path.write_bytes(pdf)
            qpdf = shutil.which("qpdf")
            if qpdf:
                q = subprocess.run([qpdf, "--check", str(path)], capture_output=True, timeout=60)
                expect(q.returncode == 0, f"qpdf --check exit {q.returncode}: {(q.stdout + q.stderr).decode(errors='replace')[-800:]}")
            else:
                print("NOTE qpdf not found: the consent PDF was not checked with qpdf", flush=True)
            import pdf_check
            pdf_check.check(str(path))
            r = doc.request("POST", f"/api/v1/consents/{c['id']}/verify", data=pdf, headers={"Content-Type": "application/pdf"})
            expect(r.status_code == 204, f"the PDF as served verifies: {short(r)}")
            bad = bytearray(pdf)
            bad[len(bad) // 2] ^= 0x01
            problem(doc.request("POST", f"/api/v1/consents/{c['id']}/verify", data=bytes(bad),
                                headers={"Content-Type": "application/pdf"}), 422)
        self.r.run("chart: the 4 consent templates; a signed treatment consent (Consent, validated); its PDF passes "
                   "qpdf --check and pdf_check.py, verifies (204) and with one byte flipped does not (422)", consents)

        def revoke() -> None:
            r = doc.request("POST", f"/api/v1/consents/{ids.get('consent', 'x')}/revoke")
            expect(r.status_code == 204, short(r))
            found = bundle(doc.get(f"/fhir/r4/Consent?patient={ids.get('patient', 'x')}"), "Consent")
            expect(any(x["id"] == ids.get("consent") and x["status"] == "inactive" for x in found), f"{found}")
        self.r.run("chart: a revoked consent reads back as inactive", revoke)

    def test_recovery_and_sessions(self, doc: Client) -> None:
        who = self.staff["doc"]
        codes: list = []

        def generate() -> None:
            r = doc.request("POST", "/api/v1/account/recovery-codes")
            expect(r.status_code == 200 and len(r.json()["codes"]) == 10, short(r))
            codes.extend(r.json()["codes"])
        self.r.run("ten recovery codes are issued once", generate)

        def use() -> None:
            for want in (200, 401):
                c = Client(self.server, self.collector, "doc-recovery")
                expect(c.login(who).status_code == 200, "login")
                r = c.request("POST", "/api/v1/auth/mfa/recovery", json={"code": codes[0]})
                expect(r.status_code == want, f"expected {want}: {short(r)}")
        self.r.run("a recovery code signs in once; its reuse is refused", use)

        def everywhere() -> None:
            r = doc.get("/api/v1/account/sessions")
            expect(r.status_code == 200 and any(s["current"] for s in r.json()), short(r))
            r = doc.request("POST", "/api/v1/account/sessions/end-all")
            expect(r.status_code == 204 and "clear-site-data" in {k.lower() for k in r.headers}, short(r))
            expect(doc.get("/api/v1/auth/session").status_code == 401, "session still alive")
        self.r.run("sign out everywhere ends the session (and sends Clear-Site-Data)", everywhere)

    def test_deactivation(self, admin: Client, newbie: Client) -> None:
        def t() -> None:
            expect(newbie.get("/api/v1/auth/session").status_code == 200, "not signed in")
            r = admin.request("POST", f"/api/v1/users/{self.staff['newbie'].user_id}/deactivate")
            expect(r.status_code == 204, short(r))
            problem(newbie.get("/api/v1/auth/session"), 401)
        self.r.run("deactivation cuts the account's live session", t)

    def test_fuzz(self, admin: Client) -> None:
        st = Path(sys.executable).with_name("schemathesis")
        if not st.exists():
            self.r.fail("schemathesis", f"not installed next to {sys.executable}")
            return
        token = admin.token()

        def t() -> None:
            cmd = [str(st), "run", f"{self.server.base}/api/v1/openapi.json", "--url", f"{self.server.base}/api/v1",
                   "--tls-verify", self.server.cert, "-H", f"Cookie: {base.SESSION_COOKIE}={token}",
                   "--checks", "not_a_server_error,content_type_conformance,response_schema_conformance",
                   "--max-examples", os.environ.get("E2E_FUZZ_EXAMPLES", "15"), "--seed", "1", "--workers", "1",
                   "--exclude-path-regex", "^/(auth/logout|account/sessions/end-all|account/password|auth/reauth|auth/login|auth/mfa/.*)$",
                   "--phases", "examples,coverage,fuzzing"]
            p = subprocess.run(cmd, capture_output=True, timeout=900, env={**os.environ, "NO_COLOR": "1"})
            text = (p.stdout + p.stderr).decode(errors="replace")
            (self.work / "schemathesis.log").write_text(text)
            expect(p.returncode == 0, f"schemathesis exit {p.returncode}: {text[-2500:]}")
        self.r.run("schemathesis fuzzes every /api/v1 operation: no 5xx, responses match the document", t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    return ApiE2E(args.bin, args.keep).run()


if __name__ == "__main__":
    sys.exit(main())
