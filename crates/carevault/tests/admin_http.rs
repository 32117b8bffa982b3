//! The access-control API over real HTTPS: passkeys end to end with a software authenticator,
//! recovery codes, break-glass and review, deactivation cutting a live session, problem+json
//! errors, and the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carevault_core::Clock;
use carevault_domain::Role;
use carevault_testkit::{App, SoftAuthenticator, PASSWORD};
use serde_json::{json, Value};

async fn body(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    let text = r.text().await.unwrap_or_default();
    if s >= 400 {
        assert_eq!(ct, "application/problem+json", "errors are problem+json: {text}");
    }
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn passkey_registration_and_sign_in_end_to_end() {
    let app = App::spawn().await.expect("app");
    let (c, staff) = app.signed_in(Role::Nurse).await.expect("nurse");
    let mut key = SoftAuthenticator::new(&app.base).expect("authenticator");
    // Register (fresh sign-in, so no step-up needed).
    let (s, start) = body(c.post(app.url("/api/v1/account/passkeys/register/start")).send().await.expect("start")).await;
    assert_eq!(s, 200, "{start}");
    let credential = key.create(&start["options"]).expect("create");
    let finish = json!({"ceremony_id": start["ceremony_id"], "name": "Ward laptop key", "credential": credential});
    let (s, pk) = body(c.post(app.url("/api/v1/account/passkeys/register/finish")).json(&finish).send().await.expect("finish")).await;
    assert_eq!(s, 201, "{pk}");
    // The ceremony is single-use.
    let (s, _) = body(c.post(app.url("/api/v1/account/passkeys/register/finish")).json(&finish).send().await.expect("again")).await;
    assert_eq!(s, 401);
    let (_, list) = body(c.get(app.url("/api/v1/account/passkeys")).send().await.expect("list")).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let id = pk["id"].as_str().expect("id").to_string();
    let (s, _) =
        body(c.put(app.url(&format!("/api/v1/account/passkeys/{id}"))).json(&json!({"name": "Badge key"})).send().await.expect("rename"))
            .await;
    assert_eq!(s, 204);

    // Sign in again: password, then the passkey instead of TOTP.
    let c2 = app.client().expect("client");
    let r = c2
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": staff.username, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let (s, start) = body(c2.post(app.url("/api/v1/auth/mfa/passkey/start")).send().await.expect("start")).await;
    assert_eq!(s, 200, "{start}");
    let assertion = key.get(&start["options"]).expect("get");
    // A tampered assertion is refused and audited.
    let mut forged = assertion.clone();
    forged["response"]["signature"] = json!("AAAA");
    let (s, _) = body(
        c2.post(app.url("/api/v1/auth/mfa/passkey/finish"))
            .json(&json!({"ceremony_id": start["ceremony_id"], "credential": forged}))
            .send()
            .await
            .expect("forged"),
    )
    .await;
    assert_eq!(s, 401);
    // The failed attempt consumed that ceremony; a new one signs in.
    let (_, start) = body(c2.post(app.url("/api/v1/auth/mfa/passkey/start")).send().await.expect("start")).await;
    let assertion = key.get(&start["options"]).expect("get");
    let (s, who) = body(
        c2.post(app.url("/api/v1/auth/mfa/passkey/finish"))
            .json(&json!({"ceremony_id": start["ceremony_id"], "credential": assertion}))
            .send()
            .await
            .expect("finish"),
    )
    .await;
    assert_eq!(s, 200, "{who}");
    assert_eq!(who["status"], "authenticated");
    let (s, _) = body(c2.get(app.url("/api/v1/auth/session")).send().await.expect("session")).await;
    assert_eq!(s, 200);

    // Another user's passkey cannot complete this user's ceremony.
    let (c3, other) = app.signed_in(Role::Physician).await.expect("physician");
    let mut other_key = SoftAuthenticator::new(&app.base).expect("authenticator");
    let (_, st) = body(c3.post(app.url("/api/v1/account/passkeys/register/start")).send().await.expect("start")).await;
    let cred = other_key.create(&st["options"]).expect("create");
    let (s, _) = body(
        c3.post(app.url("/api/v1/account/passkeys/register/finish"))
            .json(&json!({"ceremony_id": st["ceremony_id"], "name": "k", "credential": cred}))
            .send()
            .await
            .expect("finish"),
    )
    .await;
    assert_eq!(s, 201);
    let c4 = app.client().expect("client");
    c4.post(app.url("/api/v1/auth/login")).json(&json!({"username": other.username, "password": PASSWORD})).send().await.expect("login");
    let (_, st) = body(c4.post(app.url("/api/v1/auth/mfa/passkey/start")).send().await.expect("start")).await;
    // The nurse's valid assertion, made for the nurse's own ceremony, sent to the physician's.
    let c6 = app.client().expect("client");
    c6.post(app.url("/api/v1/auth/login")).json(&json!({"username": staff.username, "password": PASSWORD})).send().await.expect("login");
    let (_, own) = body(c6.post(app.url("/api/v1/auth/mfa/passkey/start")).send().await.expect("start")).await;
    let nurse_assertion = key.get(&own["options"]).expect("nurse assertion");
    let cross = json!({"ceremony_id": st["ceremony_id"], "credential": nurse_assertion});
    let (s, _) = body(c4.post(app.url("/api/v1/auth/mfa/passkey/finish")).json(&cross).send().await.expect("cross")).await;
    assert_eq!(s, 401, "a cross-user assertion is refused");
    let (s, _) = body(c4.get(app.url("/api/v1/auth/session")).send().await.expect("session")).await;
    assert_eq!(s, 401, "and grants nothing");

    // Revoking needs a fresh sign-in; after it the passkey no longer signs in.
    app.tv.clock.advance_secs(6 * 60);
    let (s, p) = body(c.delete(app.url(&format!("/api/v1/account/passkeys/{id}"))).send().await.expect("revoke")).await;
    assert_eq!((s, p["code"].as_str()), (401, Some("CV-AUTHN-007")));
    let code = staff.code_at(app.tv.clock.now_secs());
    let (s, _) =
        body(c.post(app.url("/api/v1/auth/reauth")).json(&json!({"password": PASSWORD, "code": code})).send().await.expect("reauth")).await;
    assert_eq!(s, 204);
    let (s, _) = body(c.delete(app.url(&format!("/api/v1/account/passkeys/{id}"))).send().await.expect("revoke")).await;
    assert_eq!(s, 204);
    let c5 = app.client().expect("client");
    c5.post(app.url("/api/v1/auth/login")).json(&json!({"username": staff.username, "password": PASSWORD})).send().await.expect("login");
    let (s, p) = body(c5.post(app.url("/api/v1/auth/mfa/passkey/start")).send().await.expect("start")).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("CV-AUTHZ-002")));
}

#[tokio::test]
async fn recovery_codes_break_glass_deactivation_and_openapi_over_https() {
    let app = App::spawn().await.expect("app");
    let (fd, _) = app.signed_in(Role::FrontDesk).await.expect("front desk");
    let (doc, doc_staff) = app.signed_in(Role::Physician).await.expect("physician");
    let (privacy, _) = app.signed_in(Role::PrivacyOfficer).await.expect("privacy");
    let (admin, _) = app.signed_in(Role::PracticeAdmin).await.expect("admin");
    let _keep = app.add_staff(Role::PracticeAdmin).await.expect("second admin");

    // Recovery codes: shown once, each works once.
    let (s, codes) = body(doc.post(app.url("/api/v1/account/recovery-codes")).send().await.expect("codes")).await;
    assert_eq!(s, 200);
    let code = codes["codes"][0].as_str().expect("code").to_string();
    assert_eq!(codes["codes"].as_array().map(Vec::len), Some(10));
    for (attempt, want) in [(&code, 200), (&code, 401)] {
        let c = app.client().expect("client");
        c.post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": doc_staff.username, "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        let (s, _) =
            body(c.post(app.url("/api/v1/auth/mfa/recovery")).json(&json!({"code": attempt})).send().await.expect("recovery")).await;
        assert_eq!(s, want);
    }

    // Break-glass on a patient the physician has no relationship with.
    let r = fd
        .post(app.url("/fhir/r4/Patient"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "name": [{"family": "Glassman"}]}).to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let pid = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let allergy = json!({"resourceType": "AllergyIntolerance", "code": {"text": "Latex"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "patient": {"reference": format!("Patient/{pid}")}})
    .to_string();
    let post_allergy =
        || doc.post(app.url("/fhir/r4/AllergyIntolerance")).header("content-type", "application/fhir+json").body(allergy.clone()).send();
    assert_eq!(post_allergy().await.expect("allergy").status(), 403);
    let (s, p) =
        body(doc.post(app.url(&format!("/api/v1/patients/{pid}/break-glass"))).json(&json!({"reason": "bogus"})).send().await.expect("bg"))
            .await;
    assert_eq!((s, p["code"].as_str()), (400, Some("CV-INPUT-001")));
    let (s, bg) = body(
        doc.post(app.url(&format!("/api/v1/patients/{pid}/break-glass")))
            .json(&json!({"reason": "medical-emergency", "reason_text": "collapsed at reception"}))
            .send()
            .await
            .expect("bg"),
    )
    .await;
    assert_eq!(s, 201, "{bg}");
    assert_eq!(post_allergy().await.expect("allergy").status(), 201);
    let (_, queue) = body(privacy.get(app.url("/api/v1/break-glass")).send().await.expect("queue")).await;
    assert_eq!(queue[0]["reason_text"], "collapsed at reception");
    let (_, alerts) = body(privacy.get(app.url("/api/v1/alerts?category=privacy")).send().await.expect("alerts")).await;
    assert!(alerts.as_array().expect("alerts").iter().any(|a| a["kind"] == "break-glass"));
    let (s, _) = body(
        privacy
            .post(app.url(&format!("/api/v1/break-glass/{}/review", bg["id"].as_str().expect("id"))))
            .json(&json!({"outcome": "appropriate"}))
            .send()
            .await
            .expect("review"),
    )
    .await;
    assert_eq!(s, 204);
    // Front desk cannot see the queue: a precise 403.
    let (s, p) = body(fd.get(app.url("/api/v1/break-glass")).send().await.expect("queue")).await;
    assert_eq!((s, p["code"].as_str()), (403, Some("CV-AUTHZ-001")));

    // Deactivation cuts the physician's live session at once.
    let (s, _) = body(admin.post(app.url(&format!("/api/v1/users/{}/deactivate", doc_staff.id))).send().await.expect("deactivate")).await;
    assert_eq!(s, 204);
    let (s, _) = body(doc.get(app.url("/api/v1/auth/session")).send().await.expect("session")).await;
    assert_eq!(s, 401);
    // Unknown role name, self-elevation: precise refusals.
    let (s, p) = body(
        admin
            .post(app.url("/api/v1/assignments"))
            .json(&json!({"user_id": doc_staff.id, "role": "superuser", "organization_id": "default"}))
            .send()
            .await
            .expect("assign"),
    )
    .await;
    assert_eq!((s, p["code"].as_str()), (400, Some("CV-INPUT-001")));
    let (_, who) = body(admin.get(app.url("/api/v1/auth/session")).send().await.expect("who")).await;
    let me = who["user"]["id"].as_str().expect("me").to_string();
    let (s, p) = body(
        admin
            .post(app.url("/api/v1/assignments"))
            .json(&json!({"user_id": me, "role": "physician", "organization_id": "default"}))
            .send()
            .await
            .expect("assign"),
    )
    .await;
    assert_eq!((s, p["code"].as_str()), (403, Some("CV-AUTHZ-002")));
    let (s, _) = body(
        admin.post(app.url("/api/v1/assignments")).body("{not json").header("content-type", "application/json").send().await.expect("bad"),
    )
    .await;
    assert_eq!(s, 400);

    // The OpenAPI document.
    let (s, doc) = body(admin.get(app.url("/api/v1/openapi.json")).send().await.expect("openapi")).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/patients/{id}/break-glass"]["post"].is_object());
}
