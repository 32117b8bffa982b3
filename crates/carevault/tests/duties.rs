//! Separation of duties over real HTTPS (issue 12): a practice admin ("no patient data")
//! cannot reach PHI or the audit log by any sequence of its own API calls. No response carries
//! another person's second-factor secret; a new account enrols its own authenticator with the
//! password and a single-use, expiring invitation; accounts, custom roles, assignments and
//! grants that carry PHI, audit or security permissions raise a security alert and take effect
//! only when an officer other than the requester (and not the account concerned) approves.
//! On SQLite and (with CAREVAULT_TEST_DATABASE_URL) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carevault_core::Clock;
use carevault_domain::Role;
use carevault_testkit::{totp_code, App, PASSWORD};
use serde_json::{json, Value};

async fn call(c: &reqwest::Client, rb: reqwest::RequestBuilder) -> (u16, Value) {
    let _ = c;
    let r = rb.send().await.expect("request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn secret_of(uri: &str) -> String {
    uri.split(['?', '&']).find_map(|p| p.strip_prefix("secret=")).expect("secret in the URI").to_string()
}

/// Any response that would carry a TOTP secret or an otpauth URI.
fn carries_secret(v: &Value) -> bool {
    let t = v.to_string();
    t.contains("otpauth") || t.contains("totp_secret") || t.contains("secret=")
}

#[tokio::test]
async fn a_practice_admin_reaches_no_phi_and_no_audit_by_its_own_calls() {
    let app = App::spawn().await.expect("app");
    let (admin, _) = app.signed_in(Role::PracticeAdmin).await.expect("admin");
    let (privacy, privacy_staff) = app.signed_in(Role::PrivacyOfficer).await.expect("privacy officer");
    let (security, security_staff) = app.signed_in(Role::SecurityOfficer).await.expect("security officer");
    let (fd, _) = app.tv.staff(Role::FrontDesk).await.expect("front desk");
    let body = json!({"resourceType": "Patient", "name": [{"family": "Dutiful", "given": ["Ada"]}], "birthDate": "1980-02-03"});
    let patient =
        app.tv.vault.create_patient(&fd, fd.default_purpose(), body.to_string().as_bytes()).await.expect("patient").id.to_string();
    let nurse = app.add_staff(Role::Nurse).await.expect("nurse");

    // The admin's own reach: no patient data, no audit log.
    for path in [format!("/fhir/r4/Patient/{patient}"), "/api/v1/audit/events".to_string()] {
        let (s, _) = call(&admin, admin.get(app.url(&path))).await;
        assert_eq!(s, 403, "{path}");
    }

    // 1. An account with a privileged role: created, no secret returned, an invitation, and it
    //    cannot sign in until an officer approves.
    let (s, acct) = call(
        &admin,
        admin
            .post(app.url("/api/v1/users"))
            .json(&json!({"username": "new.privacy", "password": PASSWORD, "role": "privacy_officer", "organization_id": "default"})),
    )
    .await;
    assert_eq!(s, 201, "{acct}");
    assert!(!carries_secret(&acct), "no second-factor secret in the answer: {acct}");
    assert_eq!(acct["status"], "pending-approval");
    let invitation = acct["invitation"].as_str().expect("invitation").to_string();
    let account_approval = acct["approval_id"].as_str().expect("approval").to_string();
    let new_id = acct["id"].as_str().expect("id").to_string();
    let c = app.client().expect("client");
    let (s, p) = call(&c, c.post(app.url("/api/v1/auth/login")).json(&json!({"username": "new.privacy", "password": PASSWORD}))).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("CV-AUTHZ-002")), "pending account signs in: {p}");

    // 2. A custom role with clinical and audit permissions: filed, not created.
    let role = json!({"description": "Everything", "permissions": ["clinical.note.read", "audit.read"], "purposes": ["TREAT", "HOPERAT"]});
    let (s, r) = call(&admin, admin.put(app.url("/api/v1/roles/snooper")).json(&role)).await;
    assert_eq!((s, r["status"].as_str()), (202, Some("pending-approval")), "{r}");
    let (_, roles) = call(&admin, admin.get(app.url("/api/v1/roles"))).await;
    assert!(!roles.to_string().contains("snooper"), "the role does not exist before approval");
    let (s, _) = call(
        &admin,
        admin.post(app.url("/api/v1/assignments")).json(&json!({"user_id": nurse.id, "role": "snooper", "organization_id": "default"})),
    )
    .await;
    assert_eq!(s, 400, "an unapproved role cannot be assigned");

    // 3. A privileged built-in role and an audit grant to an existing nurse: filed, not in force.
    let (s, a) = call(
        &admin,
        admin
            .post(app.url("/api/v1/assignments"))
            .json(&json!({"user_id": nurse.id, "role": "privacy_officer", "organization_id": "default"})),
    )
    .await;
    assert_eq!(s, 202, "{a}");
    let now = app.tv.clock.now_secs() as i64;
    let grant = json!({"user_id": nurse.id, "permission": "audit.read", "organization_id": "default", "ends_at": now + 3600, "reason": "audit help"});
    let (s, g) = call(&admin, admin.post(app.url("/api/v1/grants")).json(&grant)).await;
    assert_eq!(s, 202, "{g}");
    let grant_approval = g["approval_id"].as_str().expect("approval").to_string();
    let nc = app.client().expect("nurse client");
    app.sign_in(&nc, &nurse).await.expect("nurse signs in");
    let (s, _) = call(&nc, nc.get(app.url("/api/v1/audit/events"))).await;
    assert_eq!(s, 403, "nothing in force before approval");

    // The admin can neither see nor decide the queue; every request raised a security alert.
    let (s, _) = call(&admin, admin.get(app.url("/api/v1/approvals"))).await;
    assert_eq!(s, 403);
    let (s, _) = call(&admin, admin.post(app.url(&format!("/api/v1/approvals/{grant_approval}/approve")))).await;
    assert_eq!(s, 403);
    let (s, queue) = call(&security, security.get(app.url("/api/v1/approvals"))).await;
    assert_eq!(s, 200);
    assert_eq!(queue.as_array().map(Vec::len), Some(4), "{queue}");
    let (_, alerts) = call(&security, security.get(app.url("/api/v1/alerts?category=security"))).await;
    let requested = alerts.as_array().expect("alerts").iter().filter(|a| a["kind"] == "approval-requested").count();
    assert_eq!(requested, 4, "{alerts}");

    // A change to an officer's own account is decided by another officer.
    let (s, a2) = call(
        &admin,
        admin
            .post(app.url("/api/v1/assignments"))
            .json(&json!({"user_id": security_staff.id, "role": "auditor", "organization_id": "default"})),
    )
    .await;
    assert_eq!(s, 202);
    let own = a2["approval_id"].as_str().expect("approval");
    let (s, p) = call(&security, security.post(app.url(&format!("/api/v1/approvals/{own}/approve")))).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("CV-AUTHZ-002")), "{p}");
    let (s, _) = call(&privacy, privacy.post(app.url(&format!("/api/v1/approvals/{own}/reject")))).await;
    assert_eq!(s, 200);

    // Approved by the privacy officer: the grant is in force; deciding twice is a conflict.
    let (s, d) = call(&privacy, privacy.post(app.url(&format!("/api/v1/approvals/{grant_approval}/approve")))).await;
    assert_eq!((s, d["state"].as_str()), (200, Some("approved")), "{d}");
    let (s, _) = call(&privacy, privacy.post(app.url(&format!("/api/v1/approvals/{grant_approval}/approve")))).await;
    assert_eq!(s, 409);
    // A fresh sign-in (on the next code) holds the grant too.
    app.tv.clock.advance_secs(30);
    let nc = app.client().expect("nurse client 2");
    app.sign_in(&nc, &nurse).await.expect("nurse signs in again");
    let (s, _) = call(&nc, nc.get(app.url("/api/v1/audit/events"))).await;
    assert_eq!(s, 200, "the approved grant is in force");

    // 4. The approved account enrols with password + invitation, once.
    let (s, _) = call(&security, security.post(app.url(&format!("/api/v1/approvals/{account_approval}/approve")))).await;
    assert_eq!(s, 200);
    let c = app.client().expect("client");
    let (s, _) = call(&c, c.post(app.url("/api/v1/auth/login")).json(&json!({"username": "new.privacy", "password": PASSWORD}))).await;
    assert_eq!(s, 200);
    let (s, p) = call(&c, c.post(app.url("/api/v1/auth/mfa/enroll")).json(&json!({"invitation": "AAAA-BBBB-CCCC-DDDD-EEEE"}))).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("CV-AUTHZ-002")), "a wrong invitation: {p}");
    let (s, e) = call(&c, c.post(app.url("/api/v1/auth/mfa/enroll")).json(&json!({"invitation": invitation.to_lowercase()}))).await;
    assert_eq!(s, 200, "{e}");
    let secret = secret_of(e["otpauth_uri"].as_str().expect("uri"));
    let (s, _) =
        call(&c, c.post(app.url("/api/v1/auth/mfa/totp")).json(&json!({"code": totp_code(&secret, app.tv.clock.now_secs())}))).await;
    assert_eq!(s, 200, "enrolled and signed in");
    // The invitation was used up: a second enrollment with it is refused.
    let c2 = app.client().expect("client");
    let (s, _) = call(&c2, c2.post(app.url("/api/v1/auth/login")).json(&json!({"username": "new.privacy", "password": PASSWORD}))).await;
    assert_eq!(s, 200);
    let (s, _) = call(&c2, c2.post(app.url("/api/v1/auth/mfa/enroll")).json(&json!({"invitation": invitation}))).await;
    assert_eq!(s, 403, "single use");

    // 5. An MFA reset gives the administrator an invitation, never the new secret.
    let (s, r) = call(&security, security.post(app.url(&format!("/api/v1/users/{new_id}/mfa-reset")))).await;
    assert_eq!(s, 200, "{r}");
    assert!(!carries_secret(&r), "{r}");
    assert!(r["invitation"].is_string());
    let _ = privacy_staff;
}

#[tokio::test]
async fn invitations_expire_and_approval_can_be_turned_off() {
    let mut config = carevault_testkit::test_config();
    config.require_approval = false;
    config.invitation_hours = 1;
    let app = App::spawn_with(config, 1024 * 1024).await.expect("app");
    let (admin, _) = app.signed_in(Role::PracticeAdmin).await.expect("admin");
    let (security, _) = app.signed_in(Role::SecurityOfficer).await.expect("security officer");
    let (s, acct) = call(
        &admin,
        admin
            .post(app.url("/api/v1/users"))
            .json(&json!({"username": "solo.nurse", "password": PASSWORD, "role": "nurse", "organization_id": "default"})),
    )
    .await;
    assert_eq!((s, acct["status"].as_str()), (201, Some("active")), "{acct}");
    assert!(!carries_secret(&acct));
    // Without approvals the privileged change still raises a security alert.
    let (_, alerts) = call(&security, security.get(app.url("/api/v1/alerts?category=security"))).await;
    assert!(alerts.as_array().expect("alerts").iter().any(|a| a["kind"] == "privileged-account"), "{alerts}");
    // Past its lifetime the invitation does not open enrollment.
    app.tv.clock.advance_secs(3601);
    let c = app.client().expect("client");
    let (s, _) = call(&c, c.post(app.url("/api/v1/auth/login")).json(&json!({"username": "solo.nurse", "password": PASSWORD}))).await;
    assert_eq!(s, 200);
    let (s, _) = call(&c, c.post(app.url("/api/v1/auth/mfa/enroll")).json(&json!({"invitation": acct["invitation"]}))).await;
    assert_eq!(s, 403, "expired");
}

/// An officer never approves a change to a role they hold: that would be approving their own
/// elevation (the requester is someone else, and the change names no account).
#[tokio::test]
async fn an_officer_cannot_approve_a_change_to_a_role_they_hold() {
    use carevault_core::CoreError;
    let tv = carevault_testkit::TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let (privacy, _) = tv.staff(Role::PrivacyOfficer).await.expect("privacy officer");
    // A custom officer role (privileged: it decides approvals), approved by the privacy officer.
    let perms = ["access.approve".to_string(), "user.read".to_string()];
    let purposes = ["HSYSADMIN".to_string()];
    let r = v.put_custom_role(&admin, "deputy_officer", "Deputy officer", &perms, &purposes).await;
    let Err(CoreError::ApprovalPending { id }) = r else { panic!("role: {r:?}") };
    v.approve(&privacy, &id).await.expect("approved");
    let (deputy, _) = tv.staff_in("deputy_officer", None).await.expect("deputy");
    // The admin asks to give the role audit access: the deputy, who holds it, may not decide.
    let wider = ["access.approve".to_string(), "user.read".to_string(), "audit.read".to_string()];
    let r = v.put_custom_role(&admin, "deputy_officer", "Deputy officer", &wider, &purposes).await;
    let Err(CoreError::ApprovalPending { id }) = r else { panic!("change: {r:?}") };
    let r = v.approve(&deputy, &id).await;
    assert!(matches!(r, Err(CoreError::Refused { reason: "own-role", .. })), "{r:?}");
    // Another officer may.
    v.approve(&privacy, &id).await.expect("approved by another officer");
}
