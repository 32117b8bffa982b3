//! Sessions and privileges are cached in memory (core `auth::cache`), and the cache is correct:
//! every change to what a signed-in user may do is seen on the very next request, whether this
//! server made it or another instance on the same database did, and the idle limit stays exact
//! although the last-seen time reaches the database at most once a second. On SQLite and (with
//! CAREVAULT_TEST_DATABASE_URL) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use std::sync::Arc;

use carevault_core::{Clock, GrantRequest};
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::{test_config, App};
use serde_json::json;

fn patient(family: &str) -> Vec<u8> {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Cache"]}], "birthDate": "1971-02-03"}).to_string().into_bytes()
}

async fn status(c: &reqwest::Client, url: String) -> u16 {
    c.get(url).send().await.expect("request").status().as_u16()
}

/// A grant is seen on the next request, its revocation (which ends the holder's sessions) too, and so is its end time passing
/// while the session stays in use (no change is written then: the cached privileges expire).
#[tokio::test]
async fn a_grant_its_revocation_and_its_end_are_seen_on_the_very_next_request() {
    let app = App::spawn().await.expect("app");
    let v = &app.tv.vault;
    let (privacy, privacy_staff) = app.tv.staff_in("privacy_officer", None).await.expect("privacy officer");
    let (admin, admin_staff) = app.tv.staff_in("practice_admin", None).await.expect("admin");
    let (front, _) = app.tv.staff(Role::FrontDesk).await.expect("front desk");
    let vip = v.create_patient(&front, PurposeOfUse::Operations, &patient("Cachevip")).await.expect("patient").id.to_string();
    v.set_patient_flags(&privacy, privacy.default_purpose(), &vip, &["vip".into()]).await.expect("flag");
    let (c, desk) = app.signed_in(Role::FrontDesk).await.expect("front desk client");
    let read = app.url(&format!("/fhir/r4/Patient/{vip}"));
    assert_eq!(status(&c, read.clone()).await, 403, "a flagged patient without a grant");
    // Warm: the session is cached now.
    assert_eq!(status(&c, read.clone()).await, 403);

    let now = app.tv.clock.now_secs() as i64;
    let req = GrantRequest {
        user_id: desk.id.clone(),
        permission: "sensitive.vip.access".into(),
        organization_id: "default".into(),
        ends_at: now + 600,
        reason: "covering the VIP desk".into(),
        ..Default::default()
    };
    let Err(carevault_core::CoreError::ApprovalPending { id }) = v.add_grant(&admin, &req).await else { panic!("grant needs approval") };
    assert_eq!(status(&c, read.clone()).await, 403, "nothing before approval");
    v.approve(&privacy, &id).await.expect("approve");
    assert_eq!(status(&c, read.clone()).await, 200, "the approved grant on the very next request");

    // The grant runs out while the session is in use: refused from its end on.
    app.tv.clock.advance_secs(590);
    assert_eq!(status(&c, read.clone()).await, 200, "ten seconds before the grant ends");
    app.tv.clock.advance_secs(10);
    assert_eq!(status(&c, read.clone()).await, 403, "at the grant's end");

    // A second grant, revoked: refused on the very next request. (The officers sign in again:
    // their step-up has lapsed meanwhile.)
    let admin = app.tv.sign_in(&admin_staff).await.expect("admin again");
    let privacy = app.tv.sign_in(&privacy_staff).await.expect("privacy officer again");
    let now = app.tv.clock.now_secs() as i64;
    let req = GrantRequest { ends_at: now + 3600, ..req };
    let pending = v.add_grant(&admin, &req).await;
    let Err(carevault_core::CoreError::ApprovalPending { id }) = pending else { panic!("grant needs approval: {pending:?}") };
    v.approve(&privacy, &id).await.expect("approve");
    assert_eq!(status(&c, read.clone()).await, 200);
    let g = v.list_grants(&admin, Some(&desk.id)).await.expect("grants").into_iter().find(|g| g.active).expect("active grant");
    v.revoke_grant(&admin, &g.id).await.expect("revoke");
    // Revoking ends the holder's sessions, which the cache held.
    assert_eq!(status(&c, read.clone()).await, 401, "revoked: refused on the very next request");
}

/// Another instance on the same database (another server of a group, or the operator's CLI)
/// deactivates the account and ends sessions: this server refuses on the very next request,
/// though its cache holds the session.
#[tokio::test]
async fn changes_made_by_another_instance_are_seen_on_the_very_next_request() {
    let app = App::spawn().await.expect("app");
    // The organization keeps an administrator (the last one may not be deactivated).
    app.tv.staff_in("practice_admin", None).await.expect("admin");
    let (c, staff) = app.signed_in(Role::FrontDesk).await.expect("client");
    let (c2, staff2) = app.signed_in(Role::FrontDesk).await.expect("second client");
    let session = app.url("/api/v1/auth/session");
    for _ in 0..3 {
        assert_eq!(status(&c, session.clone()).await, 200);
        assert_eq!(status(&c2, session.clone()).await, 200);
    }
    let other = carevault_testkit::open_vault(
        &app.tv.data_dir(),
        &app.tv.backend,
        app.tv.clock.clone() as Arc<dyn Clock>,
        test_config(),
        carevault_core::InstanceKind::Production,
        false,
    )
    .await
    .expect("second instance");
    let (security, _) = {
        // An officer made through the second instance.
        let u = other.add_user("cache-security", Role::SecurityOfficer, carevault_testkit::PASSWORD).await.expect("officer");
        let officer = carevault_testkit::Staff { username: "cache-security".into(), secret: u.totp_secret_base32, id: u.id };
        let ctx = carevault_core::RequestContext { source_ip: None };
        let step = other.login(&ctx, &officer.username, carevault_testkit::PASSWORD).await.expect("login");
        let code = officer.code_at(app.tv.clock.now_secs());
        let grant = other.verify_totp(&ctx, Some(&step.pending_token), &code).await.expect("mfa");
        (other.authenticate(&ctx, Some(&grant.token)).await.expect("officer session"), officer)
    };
    other.deactivate_user(&security, &staff.id).await.expect("deactivate");
    assert_eq!(status(&c, session.clone()).await, 401, "deactivated elsewhere: refused on the very next request");
    assert_eq!(status(&c2, session.clone()).await, 200, "another user is not affected");
    other.end_user_sessions(&security, &staff2.id).await.expect("end sessions");
    assert_eq!(status(&c2, session.clone()).await, 401, "sessions ended elsewhere: refused on the very next request");
    other.shutdown().await;
}

/// Sign-out ends the cached session at once: the same token, presented again (by a copy of
/// the cookie, say), is refused.
#[tokio::test]
async fn sign_out_is_seen_on_the_very_next_request() {
    let app = App::spawn().await.expect("app");
    let v = &app.tv.vault;
    let staff = app.add_staff(Role::Physician).await.expect("staff");
    let ctx = carevault_core::RequestContext { source_ip: None };
    let step = v.login(&ctx, &staff.username, carevault_testkit::PASSWORD).await.expect("login");
    let code = staff.code_at(app.tv.clock.now_secs());
    let token = v.verify_totp(&ctx, Some(&step.pending_token), &code).await.expect("mfa").token;
    for _ in 0..3 {
        v.authenticate(&ctx, Some(&token)).await.expect("signed in");
    }
    v.logout(&ctx, Some(&token)).await.expect("logout");
    let after = v.authenticate(&ctx, Some(&token)).await;
    assert!(matches!(after, Err(carevault_core::CoreError::Unauthenticated)), "{after:?}");
}

/// The idle limit counts from the last request exactly, though the database copy of the
/// last-seen time is written at most once a second: requests keep the session alive for as
/// long as they come, and the first one a full idle period after the last is refused.
#[tokio::test]
async fn the_idle_limit_is_exact_although_last_seen_is_written_in_batches() {
    let config = carevault_core::CoreConfig { session_idle_secs: 120, ..test_config() };
    let app = App::spawn_with(config, 1 << 20).await.expect("app");
    let (c, _) = app.signed_in(Role::Physician).await.expect("client");
    let session = app.url("/api/v1/auth/session");
    for _ in 0..5 {
        app.tv.clock.advance_secs(119);
        assert_eq!(status(&c, session.clone()).await, 200, "119 s after the last request");
    }
    // Several requests within the same second write nothing more, and keep it alive.
    for _ in 0..5 {
        assert_eq!(status(&c, session.clone()).await, 200);
    }
    app.tv.clock.advance_secs(120);
    assert_eq!(status(&c, session.clone()).await, 401, "a full idle period after the last request");
    // The sweep (another process reading the database copy) agrees: nothing is left.
    let mut raw = app.tv.raw().await.expect("raw");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE state = 'active'").fetch_one(&mut raw).await.expect("count");
    assert_eq!(n, 0);
}

/// Without the access generation's row no cached session could ever be seen as stale: requests
/// and access changes fail closed (5xx) instead of serving or acknowledging what no cache would
/// notice.
#[tokio::test]
async fn a_missing_access_generation_fails_closed() {
    let app = App::spawn().await.expect("app");
    app.tv.staff_in("practice_admin", None).await.expect("admin");
    let (security, _) = app.tv.staff(Role::SecurityOfficer).await.expect("officer");
    let (c, staff) = app.signed_in(Role::FrontDesk).await.expect("client");
    let session = app.url("/api/v1/auth/session");
    assert_eq!(status(&c, session.clone()).await, 200);
    let mut raw = app.tv.raw().await.expect("raw");
    sqlx::query("DELETE FROM access_generation").execute(&mut raw).await.expect("delete the row");
    let s = status(&c, session.clone()).await;
    assert!((500..600).contains(&s), "a request with a cached session: {s}");
    let r = app.tv.vault.deactivate_user(&security, &staff.id).await;
    assert!(r.is_err(), "an access change that no cache would notice is not acknowledged: {r:?}");
}
