//! The OpenAPI 3.1 description of `/api/v1`, served at `/api/v1/openapi.json`. One table lists
//! every operation; a test checks it against the router, so a route cannot go undocumented.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::api::json_response;

/// (method, path, operationId, summary, request body fields (name, type, required), success status)
type Entry = (&'static str, &'static str, &'static str, &'static str, &'static [(&'static str, &'static str, bool)], u16);

const S: &str = "string";
const I: &str = "integer";
const A: &str = "array";
const O: &str = "object";

pub(crate) const OPERATIONS: &[Entry] = &[
    (
        "post",
        "/auth/login",
        "login",
        "First factor: username and password; opens an MFA-pending session",
        &[("username", S, true), ("password", S, true)],
        200,
    ),
    ("post", "/auth/mfa/totp", "mfaTotp", "Second factor: a TOTP code; opens the full session", &[("code", S, true)], 200),
    (
        "post",
        "/auth/mfa/enroll",
        "mfaEnroll",
        "First-sign-in enrollment: with the MFA-pending session of an account that never completed a second factor and the invitation code its administrator gave it (single use, expiring), returns the holder's own otpauth URI; /auth/mfa/totp with its first code completes sign-in",
        &[("invitation", S, true)],
        200,
    ),
    ("post", "/auth/mfa/recovery", "mfaRecovery", "Second factor: a single-use recovery code", &[("code", S, true)], 200),
    (
        "post",
        "/auth/mfa/passkey/start",
        "mfaPasskeyStart",
        "Second factor by passkey: WebAuthn request options and a ceremony id",
        &[],
        200,
    ),
    (
        "post",
        "/auth/mfa/passkey/finish",
        "mfaPasskeyFinish",
        "Second factor by passkey: the authenticator's assertion; opens the full session",
        &[("ceremony_id", S, true), ("credential", O, true)],
        200,
    ),
    ("get", "/account/passkeys", "myPasskeys", "The own passkeys", &[], 200),
    (
        "post",
        "/account/passkeys/register/start",
        "passkeyRegisterStart",
        "WebAuthn creation options for a new passkey (step-up required)",
        &[],
        200,
    ),
    (
        "post",
        "/account/passkeys/register/finish",
        "passkeyRegisterFinish",
        "Registers the passkey from the authenticator's answer, with a name",
        &[("ceremony_id", S, true), ("name", S, true), ("credential", O, true)],
        201,
    ),
    ("put", "/account/passkeys/{id}", "renamePasskey", "Renames one of the own passkeys", &[("name", S, true)], 204),
    (
        "delete",
        "/account/passkeys/{id}",
        "revokePasskey",
        "Revokes one of the own passkeys (step-up required); other sessions end",
        &[],
        204,
    ),
    ("post", "/auth/logout", "logout", "Ends this session", &[], 204),
    ("get", "/auth/session", "session", "Who is signed in, with roles, permissions and purposes", &[], 200),
    (
        "post",
        "/auth/reauth",
        "reauthenticate",
        "Step-up: password and TOTP again (needed for sensitive actions)",
        &[("password", S, true), ("code", S, true)],
        204,
    ),
    (
        "get",
        "/health",
        "health",
        "Health without data: 204 all well; 200 audit evidence files lag; 503 changes refused (storage low or failing)",
        &[],
        204,
    ),
    (
        "post",
        "/account/password",
        "changePassword",
        "Changes the own password (needs the current one); other sessions end",
        &[("current_password", S, true), ("new_password", S, true)],
        204,
    ),
    ("get", "/account/sessions", "mySessions", "The own sessions", &[], 200),
    ("delete", "/account/sessions/{id}", "endMySession", "Ends one of the own sessions", &[], 204),
    ("post", "/account/sessions/end-all", "signOutEverywhere", "Ends every own session, this one included", &[], 204),
    ("post", "/account/recovery-codes", "recoveryCodes", "Ten new single-use recovery codes (step-up required); shown once", &[], 200),
    ("get", "/users", "listUsers", "Accounts of the organizations the caller administers", &[], 200),
    (
        "post",
        "/users",
        "createUser",
        "Creates an account with one role. The answer carries a single-use, expiring invitation code (never a second-factor secret); a role with PHI, audit or security permissions makes the account wait for an officer's approval",
        &[("username", S, true), ("password", S, true), ("role", S, true), ("organization_id", S, true)],
        201,
    ),
    ("post", "/users/{id}/deactivate", "deactivateUser", "Deactivates an account; its sessions end at once", &[], 204),
    ("post", "/users/{id}/reactivate", "reactivateUser", "Reactivates an account", &[], 204),
    ("post", "/users/{id}/mfa-reset", "resetMfa", "Resets another user's second factors (step-up required)", &[], 200),
    ("get", "/users/{id}/sessions", "userSessions", "Another user's sessions", &[], 200),
    ("delete", "/users/{id}/sessions", "endUserSessions", "Ends every session of another user", &[], 204),
    ("get", "/approvals", "approvals", "Privileged changes waiting for (or decided by) an officer (?state=pending|approved|rejected)", &[], 200),
    (
        "post",
        "/approvals/{id}/approve",
        "approve",
        "Approves a pending privileged change: an officer other than the requester and the account concerned (step-up required)",
        &[],
        200,
    ),
    ("post", "/approvals/{id}/reject", "reject", "Rejects a pending privileged change (a pending account is deactivated)", &[], 200),
    ("get", "/roles", "listRoles", "Built-in and custom roles with their permissions", &[], 200),
    (
        "put",
        "/roles/{name}",
        "putRole",
        "Creates or replaces a custom role (step-up required)",
        &[("description", S, true), ("permissions", A, true), ("purposes", A, true)],
        200,
    ),
    ("get", "/permissions", "permissions", "The permission catalogue", &[], 200),
    (
        "post",
        "/assignments",
        "addAssignment",
        "Assigns a role within an organization, location or department (step-up required)",
        &[
            ("user_id", S, true),
            ("role", S, true),
            ("organization_id", S, true),
            ("location_id", S, false),
            ("department_id", S, false),
            ("expires_at", I, false),
        ],
        201,
    ),
    ("delete", "/assignments/{id}", "removeAssignment", "Removes an assignment; the user's sessions end (step-up required)", &[], 204),
    ("get", "/grants", "listGrants", "Time-bound grants (optionally of one user: ?user_id=)", &[], 200),
    (
        "post",
        "/grants",
        "addGrant",
        "Gives one permission until a time, with a reason (step-up required)",
        &[
            ("user_id", S, true),
            ("permission", S, true),
            ("organization_id", S, true),
            ("location_id", S, false),
            ("department_id", S, false),
            ("patient_id", S, false),
            ("ends_at", I, true),
            ("reason", S, true),
        ],
        201,
    ),
    ("delete", "/grants/{id}", "revokeGrant", "Revokes a grant at once", &[], 204),
    ("get", "/patients/{id}/care-team", "careTeam", "A patient's care relationships", &[], 200),
    (
        "post",
        "/patients/{id}/care-team",
        "addCareTeam",
        "Adds an assigned provider or care-team member",
        &[("user_id", S, true), ("relation", S, true), ("ends_at", I, false)],
        204,
    ),
    ("delete", "/patients/{id}/care-team/{user}/{relation}", "endCareTeam", "Ends a care relationship", &[], 204),
    ("put", "/patients/{id}/flags", "setFlags", "Replaces the sensitive-record flags", &[("categories", A, true)], 200),
    (
        "put",
        "/patients/{id}/placement",
        "setPlacement",
        "Sets the patient's home location and department",
        &[("location_id", S, false), ("department_id", S, false)],
        204,
    ),
    (
        "post",
        "/patients/{id}/break-glass",
        "breakGlass",
        "Emergency access to one patient for a limited time (step-up required; reviewed)",
        &[("reason", S, true), ("reason_text", S, false)],
        201,
    ),
    ("get", "/break-glass", "breakGlassQueue", "The break-glass review queue (?state=open|closed)", &[], 200),
    (
        "post",
        "/break-glass/{id}/review",
        "closeReview",
        "Closes a review with an outcome",
        &[("outcome", S, true), ("note", S, false)],
        204,
    ),
    ("get", "/alerts", "alerts", "Alerts of a category (?category=privacy|security&all=true)", &[], 200),
    ("post", "/alerts/{id}/close", "closeAlert", "Closes an alert", &[], 204),
    (
        "get",
        "/directory",
        "directory",
        "The practice directory: organizations, locations (time zones), rooms, practitioners and their roles",
        &[],
        200,
    ),
    (
        "post",
        "/practitioners",
        "addPractitioner",
        "Registers a practitioner with their NPI and roles at the organization's locations",
        &[
            ("npi", S, true),
            ("family", S, true),
            ("given", S, true),
            ("organization_id", S, true),
            ("location_ids", A, false),
            ("specialty", S, false),
            ("user_id", S, false),
        ],
        201,
    ),
    (
        "put",
        "/practitioners/{id}/availability",
        "setAvailability",
        "Replaces a practitioner's weekly availability at a location (wall-clock minutes in its time zone)",
        &[("location_id", S, true), ("windows", "array-of-objects", true)],
        204,
    ),
    (
        "post",
        "/appointments/{id}/status",
        "appointmentStatus",
        "Moves an appointment: arrived, checked-in, fulfilled, cancelled (reason pat|prov|maint|oth), noshow",
        &[("status", S, true), ("reason", S, false)],
        204,
    ),
    (
        "post",
        "/appointments/{id}/reschedule",
        "reschedule",
        "Moves a booked appointment to another free slot; the history links both",
        &[("start", S, true)],
        201,
    ),
    (
        "post",
        "/encounters",
        "startEncounter",
        "Opens an encounter from an appointment (appointment_id) or a walk-in (patient, practitioner, location)",
        &[("appointment_id", S, false), ("patient_id", S, false), ("practitioner_id", S, false), ("location_id", S, false)],
        201,
    ),
    ("post", "/encounters/{id}/finish", "finishEncounter", "Finishes an encounter (its appointment becomes fulfilled)", &[], 200),
    (
        "post",
        "/encounters/{id}/notes",
        "createNote",
        "Starts a draft SOAP note on an in-progress encounter; cosigner names who must co-sign",
        &[("subjective", S, false), ("objective", S, false), ("assessment", S, false), ("plan", S, false), ("cosigner", S, false)],
        201,
    ),
    (
        "post",
        "/encounters/{id}/conditions",
        "addCondition",
        "Records a diagnosis with a billable ICD-10-CM code",
        &[("code", S, true), ("note", S, false)],
        201,
    ),
    (
        "put",
        "/notes/{id}",
        "updateNote",
        "Replaces the sections of the author's draft note (a signed note is refused: add an addendum)",
        &[("subjective", S, false), ("objective", S, false), ("assessment", S, false), ("plan", S, false), ("cosigner", S, false)],
        200,
    ),
    ("post", "/notes/{id}/sign", "signNote", "Signs a draft note: locked, SHA-256 recorded, Provenance", &[], 200),
    ("post", "/notes/{id}/cosign", "cosignNote", "Co-signs a signed note that names the caller as co-signer", &[], 200),
    ("post", "/notes/{id}/addenda", "addAddendum", "Adds a signed addendum to a signed note", &[("text", S, true)], 201),
    ("get", "/icd10", "icd10Search", "ICD-10-CM codes by code prefix or description words", &[], 200),
    (
        "post",
        "/patients/{id}/documents",
        "uploadDocument",
        "Attaches a document: the body is the file, its type is checked by content",
        &[],
        201,
    ),
    (
        "post",
        "/patients/{id}/consents",
        "signConsent",
        "Records the patient's signature (typed name, drawn signature) on the current template version",
        &[
            ("kind", S, true),
            ("template_version", I, true),
            ("signer_typed_name", S, true),
            ("signer_relationship", S, false),
            ("signature", O, true),
            ("recipient", S, false),
            ("purpose", S, false),
            ("scope", S, false),
            ("expires", S, false),
        ],
        201,
    ),
    ("get", "/consent-templates", "consentTemplates", "Every consent template version", &[], 200),
    (
        "post",
        "/consent-templates",
        "addConsentTemplate",
        "Publishes the next version of a consent template",
        &[("kind", S, true), ("title", S, true), ("body", S, true)],
        201,
    ),
    ("post", "/consents/{id}/revoke", "revokeConsent", "Revokes an active consent", &[], 204),
    ("post", "/consents/{id}/verify", "verifyConsent", "Verifies a consent PDF (the body) against the signed record", &[], 204),
    (
        "post",
        "/appointments",
        "book",
        "Books a free slot (duration or appointment type, optional room), or a weekly series with every_weeks and count: all or nothing",
        &[
            ("patient_id", S, true),
            ("practitioner_id", S, true),
            ("location_id", S, true),
            ("start", S, true),
            ("minutes", I, false),
            ("type_id", S, false),
            ("room_id", S, false),
            ("every_weeks", I, false),
            ("count", I, false),
        ],
        201,
    ),
    (
        "post",
        "/appointment-series/{id}/cancel",
        "cancelSeries",
        "Cancels the future occurrences of a series still booked; freed time goes to the waitlist",
        &[("reason", S, true)],
        200,
    ),
    ("get", "/appointment-types", "appointmentTypes", "The appointment types of the actor's organizations", &[], 200),
    (
        "post",
        "/appointment-types",
        "addAppointmentType",
        "Adds an appointment type (code, name, duration) to an organization",
        &[("organization_id", S, true), ("code", S, true), ("name", S, true), ("minutes", I, true)],
        201,
    ),
    ("get", "/waitlist", "waitlist", "The waitlist of a location (patients the actor may see)", &[], 200),
    (
        "post",
        "/waitlist",
        "waitlistAdd",
        "Puts a patient on the waitlist for a practitioner at a location between two local dates",
        &[
            ("patient_id", S, true),
            ("practitioner_id", S, true),
            ("location_id", S, true),
            ("minutes", I, true),
            ("from", S, true),
            ("to", S, true),
        ],
        201,
    ),
    ("post", "/waitlist/{id}/accept", "waitlistAccept", "Books the time offered to a waitlist entry", &[], 201),
    (
        "post",
        "/waitlist/{id}/decline",
        "waitlistDecline",
        "Declines an offer: the entry keeps waiting, the time goes to the next",
        &[],
        204,
    ),
    (
        "post",
        "/appointments/overbook",
        "overbook",
        "Books inside availability even when the time is taken (appointment.overbook)",
        &[("patient_id", S, true), ("practitioner_id", S, true), ("location_id", S, true), ("start", S, true), ("minutes", I, true)],
        201,
    ),
    ("get", "/appointments/{id}/history", "appointmentHistory", "Every status change of an appointment", &[], 200),
    (
        "post",
        "/locations/{id}/closures",
        "addClosure",
        "Closes a location (holiday) or one practitioner there (leave) for local dates from..to, inclusive",
        &[("practitioner_id", S, false), ("from", S, true), ("to", S, true), ("kind", S, true)],
        201,
    ),
    (
        "get",
        "/audit/events",
        "auditEvents",
        "Audit records after a sequence number (?after=&limit=), or, with any of user, patient, action, from (inclusive), to (exclusive; a date includes that day), before (a sequence number), a search newest first (at most 500); patient also finds the records that returned that patient among others (their patients list)",
        &[],
        200,
    ),
    ("get", "/audit/verify", "auditVerify", "Verifies the audit chain", &[], 200),
    ("get", "/openapi.json", "openapi", "This document", &[], 200),
];

/// Query parameters: (method, path, [(name, type, required, allowed values)]).
type QueryParams = (&'static str, &'static str, &'static [(&'static str, &'static str, bool, &'static [&'static str])]);

const QUERY: &[QueryParams] = &[
    ("get", "/grants", &[("user_id", S, false, &[])]),
    ("get", "/break-glass", &[("state", S, false, &["open", "closed"])]),
    ("get", "/approvals", &[("state", S, false, &["pending", "approved", "rejected"])]),
    ("get", "/alerts", &[("category", S, true, &["privacy", "security"]), ("all", "boolean", false, &[])]),
    (
        "get",
        "/audit/events",
        &[
            ("after", I, false, &[]),
            ("limit", I, false, &[]),
            ("user", S, false, &[]),
            ("patient", S, false, &[]),
            ("action", S, false, &[]),
            ("from", S, false, &[]),
            ("to", S, false, &[]),
            ("before", I, false, &[]),
        ],
    ),
    ("get", "/icd10", &[("q", S, true, &[]), ("limit", I, false, &[])]),
    ("post", "/patients/{id}/documents", &[("title", S, true, &[]), ("encounter_id", S, false, &[])]),
    ("get", "/waitlist", &[("location_id", S, true, &[]), ("status", S, false, &["waiting", "offered", "booked", "withdrawn"])]),
];

fn params(method: &str, path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    for (m, p, list) in QUERY {
        if *m == method && *p == path {
            for (name, ty, required, values) in *list {
                let mut schema = json!({"type": ty});
                if !values.is_empty() {
                    schema["enum"] = json!(values);
                }
                out.push(json!({"name": name, "in": "query", "required": required, "schema": schema}));
            }
        }
    }
    out
}

fn problem_ref() -> Value {
    json!({"description": "Error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// One audit record as `GET /audit/events` returns it (`carevault_core::AuditEventView`).
fn audit_event_schema() -> Value {
    let text_or_null = || json!({"type": ["string", "null"]});
    json!({"type": "object", "properties": {
        "seq": {"type": "integer", "description": "Sequence number in the hash chain"},
        "at": {"type": "integer", "description": "Microseconds since 1970"},
        "actor": {"type": "string", "description": "user:<id> or system:<job>"},
        "action": {"type": "string"},
        "outcome": {"type": "string"},
        "resource_type": text_or_null(),
        "resource_id": text_or_null(),
        "patient_id": {"type": ["string", "null"], "description": "The one patient the record is about"},
        "purpose": text_or_null(),
        "review_flags": text_or_null(),
        "patients": {"type": "array", "items": {"type": "string"},
            "description": "The patients whose data a search, list or queue returned under this record (ids, sorted); empty for other records. The patient filter finds the record under each of them."},
        "username": text_or_null(),
        "source_ip": text_or_null(),
    }, "required": ["seq", "at", "actor", "action", "outcome", "resource_type", "resource_id", "patient_id", "purpose",
                    "review_flags", "patients", "username", "source_ip"]})
}

/// The whole document.
pub(crate) fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, id, summary, fields, status) in OPERATIONS {
        let mut op = json!({
            "operationId": id,
            "summary": summary,
            "responses": {
                status.to_string(): if *status == 204 { json!({"description": "Done"}) } else {
                    json!({"description": "OK", "content": {"application/json": {"schema": {}}}})
                },
                "400": problem_ref(), "401": problem_ref(), "403": problem_ref(), "404": problem_ref(), "409": problem_ref(),
                "413": problem_ref(), "415": problem_ref(), "429": problem_ref(), "503": problem_ref(),
            }
        });
        if *id == "health" {
            op["responses"]["200"] = json!({"description": "Degraded: the audit evidence files lag behind the database",
                "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"status": {"type": "string"}, "detail": {"type": "string"}}, "required": ["status", "detail"]}}}});
        }
        if ["putRole", "addAssignment", "addGrant"].contains(id) {
            op["responses"]["202"] = json!({"description": "Filed for a second officer's approval (the change carries PHI, audit or security permissions)",
                "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"status": {"type": "string", "enum": ["pending-approval"]}, "approval_id": {"type": "string"},
                        "code": {"type": "string"}, "detail": {"type": "string"}},
                    "required": ["status", "approval_id"]}}}});
        }
        if *id == "auditEvents" {
            op["responses"]["200"] = json!({"description": "Audit records (plain columns; sealed details stay sealed)",
                "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}}}});
        }
        let p = params(method, path);
        if !p.is_empty() {
            op["parameters"] = Value::Array(p);
        }
        if !fields.is_empty() {
            let mut props = Map::new();
            for (name, ty, _) in *fields {
                let schema = match *ty {
                    A => json!({"type": "array", "items": {"type": "string"}}),
                    "array-of-objects" => json!({"type": "array", "items": {"type": "object"}}),
                    _ => json!({"type": ty}),
                };
                props.insert((*name).to_string(), schema);
            }
            let required: Vec<&str> = fields.iter().filter(|f| f.2).map(|f| f.0).collect();
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "properties": props, "required": required
            }}}});
        }
        let entry = paths.entry((*path).to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "carevault API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Staff sign-in, accounts, roles, scopes, grants, care teams, break-glass, alerts and audit. Every call is authorized and audited by the carevault core. Errors are RFC 9457 problem+json."},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": {"Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string"}
            }, "required": ["type", "title", "status", "code"]},
            "AuditEvent": audit_event_schema()},
            "securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "__Host-carevault_session"}}
        },
        "security": [{"session": []}],
        "paths": paths,
    })
}

pub(crate) async fn document() -> Response {
    json_response(StatusCode::OK, build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/api/v1` route in the router is documented, and nothing else is.
    #[test]
    fn document_matches_the_router() {
        let src = include_str!("server.rs");
        let mut routed = Vec::new();
        for line in src.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
            let Some(path) = line.split('"').nth(1) else { continue };
            for m in ["get", "post", "put", "delete"] {
                for module in ["crate::api::", "crate::admin::", "crate::openapi::"] {
                    if line.contains(&format!("{m}({module}")) {
                        routed.push((m.to_string(), path.to_string()));
                    }
                }
            }
        }
        routed.sort();
        routed.dedup();
        let mut documented: Vec<(String, String)> = OPERATIONS.iter().map(|e| (e.0.to_string(), e.1.to_string())).collect();
        documented.sort();
        assert_eq!(routed, documented);
        let doc = build();
        assert_eq!(doc["openapi"], "3.1.0");
        // The audit events' shape names every field of the core's view, the disclosed patients too.
        let schema = &doc["components"]["schemas"]["AuditEvent"];
        assert_eq!(schema["properties"]["patients"]["type"], "array");
        assert_eq!(
            doc["paths"]["/audit/events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
            "#/components/schemas/AuditEvent"
        );
        let view = carevault_core::AuditEventView {
            seq: 1,
            at: 0,
            actor: "system:init".into(),
            action: "search".into(),
            outcome: "success".into(),
            resource_type: None,
            resource_id: None,
            patient_id: None,
            purpose: None,
            review_flags: None,
            patients: vec!["p1".into()],
            username: None,
            source_ip: None,
        };
        let mut fields: Vec<String> = serde_json::to_value(view).unwrap().as_object().unwrap().keys().cloned().collect();
        let mut documented: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
        fields.sort();
        documented.sort();
        assert_eq!(fields, documented);
    }
}
