//! The vault spine through the core API, on SQLite by default and on PostgreSQL when
//! CAREVAULT_TEST_DATABASE_URL is set (CI runs both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use carevault_core::{Clock, CoreError, Vault};
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::{TestVault, PASSWORD};
use sqlx::Executor;

const TREAT: PurposeOfUse = PurposeOfUse::Treatment;

/// A synthetic patient with names no real file would contain.
const FAMILY: &str = "Zqxjvwykstrom";
const GIVEN: &str = "Quorbelline";
const BIRTH: &str = "1963-07-19";
const PHONE: &str = "555-0199-4242";

fn patient_json(family: &str, given: &str) -> Vec<u8> {
    serde_json::json!({
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "birthDate": BIRTH,
        "gender": "female",
        "telecom": [{"system": "phone", "value": PHONE}],
        "address": [{"line": ["77 Xylograph Lane"], "city": "Vexborough", "postalCode": "90210"}]
    })
    .to_string()
    .into_bytes()
}

async fn audit_count(tv: &TestVault) -> i64 {
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM audit_events").fetch_one(&mut c).await.expect("count").get(0);
    n
}

async fn patient_count(tv: &TestVault) -> i64 {
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM patient_versions").fetch_one(&mut c).await.expect("count").get(0);
    n
}

/// A trace-level log of everything this test binary does (all tests, all threads).
fn global_trace_log() -> &'static std::path::Path {
    static LOG: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("carevault-vault-test-{}.log", std::process::id()));
        let file = std::fs::File::create(&path).expect("trace log");
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        path
    })
}

#[tokio::test]
async fn no_plaintext_phi_in_any_file_or_dump() {
    let tv = TestVault::new().await.expect("vault");
    // Everything this test binary logs (every test, every thread) at the most verbose level.
    let trace_log = global_trace_log();
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let p = tv.vault.create_patient(&clin, TREAT, &patient_json(FAMILY, GIVEN)).await.expect("create");
    let read = tv.vault.read_patient(&clin, TREAT, p.id.as_str()).await.expect("read");
    assert_eq!(read.data.name[0].family.as_deref(), Some(FAMILY));
    let page = tv
        .vault
        .search_patients(&clin, TREAT, &[("family".into(), "zqxjv".into()), ("birthdate".into(), BIRTH.into())])
        .await
        .expect("search");
    assert_eq!(page.total, 1);
    let mrn = read.data.mrn().expect("mrn").as_str().to_string();
    tv.vault.shutdown().await;
    let logged = std::fs::read_to_string(trace_log).expect("log");
    assert!(logged.contains("patient read"), "the trace log was written");
    std::fs::write(tv.data_dir().join("logs/trace.log"), logged).expect("copy the log into the data folder");
    let _ = std::fs::remove_file(trace_log);
    let needles = [FAMILY, GIVEN, BIRTH, PHONE, "Xylograph", "Vexborough", "0199-4242", &mrn];
    let hits = tv.grep_data_dir(&needles);
    assert!(hits.is_empty(), "plaintext PHI found in the data folder: {hits:?}");
    if let Some(dump) = tv.pg_dump().expect("pg_dump") {
        assert!(dump.contains("patient_versions"), "the dump holds the schema");
        let lower = dump.to_lowercase();
        for n in needles {
            assert!(!lower.contains(&n.to_lowercase()), "plaintext {n:?} in pg_dump");
        }
    }
}

#[tokio::test]
async fn every_patient_operation_writes_exactly_one_chained_audit_record() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("clinician");
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let v: &Vault = &tv.vault;
    let mut before = audit_count(&tv).await;
    let p = v.create_patient(&clin, TREAT, &patient_json("Aalbers", "Ines")).await.expect("create");
    let id = p.id.as_str().to_string();
    let mut fhir = p.to_fhir();
    fhir["name"][0]["given"] = serde_json::json!(["Ines", "Maria"]);
    let ops: Vec<(&str, Result<(), CoreError>)> = vec![
        ("read", v.read_patient(&clin, TREAT, &id).await.map(|_| ())),
        ("search", v.search_patients(&clin, TREAT, &[("name".into(), "aal".into())]).await.map(|_| ())),
        ("update", v.update_patient(&clin, TREAT, &id, fhir.to_string().as_bytes(), Some(1)).await.map(|_| ())),
        ("history", v.patient_history(&clin, TREAT, &id).await.map(|_| ())),
        ("vread", v.read_patient_version(&clin, TREAT, &id, "1").await.map(|_| ())),
        ("denied", v.read_patient(&admin, PurposeOfUse::SystemAdministration, &id).await.map(|_| ())),
        ("not-found", v.read_patient(&clin, TREAT, "no-such-patient").await.map(|_| ())),
        ("stale", v.update_patient(&clin, TREAT, &id, fhir.to_string().as_bytes(), Some(1)).await.map(|_| ())),
        ("invalid", v.create_patient(&clin, TREAT, b"{\"resourceType\": \"Patient\"").await.map(|_| ())),
        ("bad-search", v.search_patients(&clin, TREAT, &[("shoe".into(), "9".into())]).await.map(|_| ())),
    ];
    let after_create = audit_count(&tv).await;
    assert_eq!(after_create - before, 11, "create plus ten operations, one record each");
    before = after_create;
    let _ = before;
    assert!(ops[0].1.is_ok() && ops[1].1.is_ok() && ops[2].1.is_ok() && ops[3].1.is_ok() && ops[4].1.is_ok());
    assert!(matches!(ops[5].1, Err(CoreError::Forbidden { .. })));
    assert!(matches!(ops[6].1, Err(CoreError::NotFound { .. })));
    assert!(matches!(ops[7].1, Err(CoreError::VersionConflict { .. })));
    assert!(matches!(ops[8].1, Err(CoreError::Invalid(_))));
    assert!(matches!(ops[9].1, Err(CoreError::Invalid(_))));
    // The actions recorded, in order.
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    let rows = sqlx::query("SELECT action, outcome FROM audit_events ORDER BY seq DESC LIMIT 11").fetch_all(&mut c).await.expect("rows");
    let got: Vec<(String, String)> = rows.iter().rev().map(|r| (r.get(0), r.get(1))).collect();
    let want = [
        ("create", "success"),
        ("read", "success"),
        ("search", "success"),
        ("update", "success"),
        ("read", "success"),
        ("read", "success"),
        ("access-denied", "denied"),
        ("read", "not-found"),
        ("update", "conflict"),
        ("create", "invalid"),
        ("search", "invalid"),
    ];
    let got_ref: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got_ref, want);
    let report = tv.vault.verify_audit().await.expect("verify");
    assert!(report.intact(), "{:?}", report.failures);
}

#[tokio::test]
async fn bad_input_leaves_nothing_half_written() {
    let tv = TestVault::new().await.expect("vault");
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let ops = PurposeOfUse::Operations;
    let bodies: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"{\"resourceType\":\"Observation\"}".to_vec(),
        patient_json("Valid", "Name").iter().map(|b| if *b == b'1' { 0xff } else { *b }).collect(),
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": "1980-02-30"}).to_string().into_bytes(),
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "<script>alert(1)</script>"}]}).to_string().into_bytes(),
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "Robert'); DROP TABLE patients;--"}]}).to_string().into_bytes(),
        serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "identifier": [{"system": "urn:carevault:mrn", "value": "0000000000"}]}).to_string().into_bytes(),
    ];
    for body in bodies {
        let (a0, p0) = (audit_count(&tv).await, patient_count(&tv).await);
        let e = tv.vault.create_patient(&fd, ops, &body).await.expect_err("refused");
        assert!(matches!(e, CoreError::Invalid(_)), "{e:?}");
        assert_eq!(audit_count(&tv).await, a0 + 1, "one audit record per refusal");
        assert_eq!(patient_count(&tv).await, p0, "no partial write");
    }
}

#[tokio::test]
async fn authorization_and_purpose_are_enforced_in_the_core() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("clinician");
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let p = tv.vault.create_patient(&fd, PurposeOfUse::Operations, &patient_json("Brandt", "Olle")).await.expect("front desk registers");
    let id = p.id.as_str();
    // operation × role → allowed?
    type Case = (&'static str, Role, PurposeOfUse, bool);
    let cases: &[Case] = &[
        ("read", Role::Physician, PurposeOfUse::Treatment, true),
        ("read", Role::FrontDesk, PurposeOfUse::Operations, true),
        ("read", Role::FrontDesk, PurposeOfUse::Treatment, false),
        ("read", Role::PracticeAdmin, PurposeOfUse::SystemAdministration, false),
        ("read", Role::Physician, PurposeOfUse::EmergencyTreatment, false),
        ("history", Role::Physician, PurposeOfUse::Treatment, true),
        ("history", Role::FrontDesk, PurposeOfUse::Operations, false),
        ("history", Role::PracticeAdmin, PurposeOfUse::SystemAdministration, false),
        ("search", Role::Physician, PurposeOfUse::Treatment, true),
        ("search", Role::FrontDesk, PurposeOfUse::Operations, true),
        ("search", Role::PracticeAdmin, PurposeOfUse::SystemAdministration, false),
        ("create", Role::PracticeAdmin, PurposeOfUse::SystemAdministration, false),
        ("create", Role::Physician, PurposeOfUse::Treatment, true),
    ];
    for (op, role, purpose, allowed) in cases {
        let actor = match role {
            Role::Physician => &clin,
            Role::FrontDesk => &fd,
            _ => &admin,
        };
        let r = match *op {
            "read" => tv.vault.read_patient(actor, *purpose, id).await.map(|_| ()),
            "history" => tv.vault.patient_history(actor, *purpose, id).await.map(|_| ()),
            "search" => tv.vault.search_patients(actor, *purpose, &[("family".into(), "brandt".into())]).await.map(|_| ()),
            "create" => tv.vault.create_patient(actor, *purpose, &patient_json("Cole", "Ann")).await.map(|_| ()),
            other => panic!("operation {other} missing from the matrix"),
        };
        assert_eq!(r.is_ok(), *allowed, "{op} by {role} for {purpose}: {r:?}");
        if !allowed {
            assert!(matches!(r, Err(CoreError::Forbidden { .. })));
        }
    }
}

#[tokio::test]
async fn totp_code_signs_in_once_and_its_replay_fails() {
    let tv = TestVault::new().await.expect("vault");
    let u = tv.vault.add_user("replay.test", Role::Physician, PASSWORD).await.expect("user");
    assert!(u.otpauth_uri.starts_with("otpauth://totp/carevault:replay.test?"));
    let ctx = carevault_core::RequestContext { source_ip: Some([127, 0, 0, 1].into()) };
    let code = carevault_testkit::totp_code(&u.totp_secret_base32, tv.clock.now_secs());
    let step = tv.vault.login(&ctx, "replay.test", PASSWORD).await.expect("password");
    // The pending session reaches no PHI.
    assert!(matches!(tv.vault.authenticate(&ctx, Some(&step.pending_token)).await, Err(CoreError::MfaRequired)));
    tv.vault.verify_totp(&ctx, Some(&step.pending_token), &code).await.expect("first use");
    let step2 = tv.vault.login(&ctx, "replay.test", PASSWORD).await.expect("password again");
    assert!(matches!(tv.vault.verify_totp(&ctx, Some(&step2.pending_token), &code).await, Err(CoreError::InvalidCode)));
    // Next period's code works.
    tv.clock.advance_secs(30);
    let next = carevault_testkit::totp_code(&u.totp_secret_base32, tv.clock.now_secs());
    tv.vault.verify_totp(&ctx, Some(&step2.pending_token), &next).await.expect("fresh code");
    // Wrong password, unknown user: same answer.
    assert!(matches!(tv.vault.login(&ctx, "replay.test", "wrong password here").await, Err(CoreError::InvalidCredentials)));
    assert!(matches!(tv.vault.login(&ctx, "nobody.here", PASSWORD).await, Err(CoreError::InvalidCredentials)));
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_the_address() {
    // A low address-wide limit (the default is 100) so that the spraying below reaches it.
    let config = carevault_core::CoreConfig { ip_failure_limit: 30, ..carevault_testkit::test_config() };
    let tv = TestVault::with_config(config).await.expect("vault");
    tv.vault.add_user("lock.test", Role::FrontDesk, PASSWORD).await.expect("user");
    let ctx = carevault_core::RequestContext { source_ip: Some([10, 9, 8, 7].into()) };
    for _ in 0..5 {
        assert!(matches!(tv.vault.login(&ctx, "lock.test", "not the password!").await, Err(CoreError::InvalidCredentials)));
    }
    // Locked now, even with the right password.
    assert!(matches!(tv.vault.login(&ctx, "lock.test", PASSWORD).await, Err(CoreError::Throttled { .. })));
    tv.clock.advance_secs(31);
    tv.vault.login(&ctx, "lock.test", PASSWORD).await.expect("lock expired");
    // Per-address backoff: failures across usernames from one address. From 15 on, each
    // failure doubles the wait before the next attempt.
    let other = carevault_core::RequestContext { source_ip: Some([10, 9, 8, 6].into()) };
    for i in 0..15 {
        assert!(matches!(tv.vault.login(&other, &format!("ghost{i}"), "whatever password").await, Err(CoreError::InvalidCredentials)));
    }
    let mut waits = Vec::new();
    for i in 0..4 {
        match tv.vault.login(&other, "lock.test", PASSWORD).await {
            Err(CoreError::Throttled { retry_after_secs }) => waits.push(retry_after_secs),
            other => panic!("expected a throttle, got {other:?}"),
        }
        tv.clock.advance_secs(*waits.last().unwrap_or(&1));
        let _ = tv.vault.login(&other, &format!("ghost-late{i}"), "whatever password").await;
    }
    assert!(waits.windows(2).all(|w| w[1] >= 2 * w[0] - 1), "the wait doubles: {waits:?}");
    // Another address is not affected, and the storm raised a security alert.
    let third = carevault_core::RequestContext { source_ip: Some([10, 9, 8, 5].into()) };
    tv.clock.advance_secs(31);
    tv.vault.login(&third, "lock.test", PASSWORD).await.expect("other address");
    let (sec, _) = tv.staff(Role::SecurityOfficer).await.expect("security officer");
    let alerts = tv.vault.alerts(&sec, "security", true).await.expect("alerts");
    assert!(alerts.iter().any(|a| a.kind == "sign-in-storm" && a.reference.as_deref() == Some("10.9.8.6")), "{alerts:?}");
}

#[tokio::test]
async fn idle_and_absolute_timeouts_end_sessions_on_the_server() {
    let config = carevault_core::CoreConfig { session_idle_secs: 60, session_max_secs: 120, ..carevault_testkit::test_config() };
    let tv = TestVault::with_config(config).await.expect("vault");
    let u = tv.vault.add_user("timeout.test", Role::Physician, PASSWORD).await.expect("user");
    let ctx = carevault_core::RequestContext::default();
    let step = tv.vault.login(&ctx, "timeout.test", PASSWORD).await.expect("login");
    let g = tv
        .vault
        .verify_totp(&ctx, Some(&step.pending_token), &carevault_testkit::totp_code(&u.totp_secret_base32, tv.clock.now_secs()))
        .await
        .expect("mfa");
    tv.clock.advance_secs(59);
    tv.vault.authenticate(&ctx, Some(&g.token)).await.expect("still fresh");
    // authenticate() touched the session in the background; let the writer apply it.
    tv.vault.checkpoint().await.expect("flush");
    tv.clock.advance_secs(59);
    tv.vault.authenticate(&ctx, Some(&g.token)).await.expect("kept alive by use");
    tv.vault.checkpoint().await.expect("flush");
    tv.clock.advance_secs(5);
    // 123 s after sign-in: past the absolute limit although recently used.
    assert!(matches!(tv.vault.authenticate(&ctx, Some(&g.token)).await, Err(CoreError::SessionExpired)));
    assert!(matches!(tv.vault.authenticate(&ctx, Some(&g.token)).await, Err(CoreError::Unauthenticated)));

    // Idle: a session left alone is swept by the server, no client involved.
    let step = tv.vault.login(&ctx, "timeout.test", PASSWORD).await.expect("login");
    tv.clock.advance_secs(30);
    let g = tv
        .vault
        .verify_totp(&ctx, Some(&step.pending_token), &carevault_testkit::totp_code(&u.totp_secret_base32, tv.clock.now_secs()))
        .await
        .expect("mfa");
    tv.clock.advance_secs(61);
    assert_eq!(tv.vault.sweep_sessions().await.expect("sweep"), 1);
    assert!(matches!(tv.vault.authenticate(&ctx, Some(&g.token)).await, Err(CoreError::Unauthenticated)));
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    let n: i64 =
        sqlx::query("SELECT COUNT(*) FROM audit_events WHERE action = 'session-expired'").fetch_one(&mut c).await.expect("n").get(0);
    assert_eq!(n, 2);
}

/// Each way of tampering with the stored log is detected, naming the first bad record.
#[tokio::test]
async fn audit_verify_detects_every_mutation() {
    type Tamper = (&'static str, &'static [&'static str], i64);
    let cases: &[Tamper] = &[
        ("changed", &["UPDATE audit_events SET actor = 'user:someone-else' WHERE seq = 4"], 4),
        ("deleted", &["DELETE FROM audit_events WHERE seq = 4"], 4),
        (
            "reordered",
            &[
                "UPDATE audit_events SET seq = -4 WHERE seq = 4",
                "UPDATE audit_events SET seq = 4 WHERE seq = 5",
                "UPDATE audit_events SET seq = 5 WHERE seq = -4",
            ],
            4,
        ),
        ("tail truncated", &["DELETE FROM audit_events WHERE seq >= 7"], 7),
        ("details changed", &["UPDATE audit_events SET outcome = 'denied' WHERE seq = 6"], 6),
    ];
    for (name, statements, first_bad) in cases {
        let tv = TestVault::new().await.expect("vault");
        let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
        let p = tv.vault.create_patient(&clin, TREAT, &patient_json("Ode", "Lis")).await.expect("create");
        for _ in 0..6 {
            tv.vault.read_patient(&clin, TREAT, p.id.as_str()).await.expect("read");
        }
        let before = tv.vault.verify_audit().await.expect("verify");
        assert!(before.intact(), "{name}: intact before tampering: {:?}", before.failures);
        assert!(before.records >= 8);
        let mut c = tv.raw().await.expect("raw");
        for s in *statements {
            c.execute(*s).await.expect("tamper");
        }
        let after = tv.vault.verify_audit().await.expect("verify");
        let first = after.first_failure().unwrap_or_else(|| panic!("{name}: tampering not detected"));
        assert_eq!(first.seq, Some(*first_bad), "{name}: {:?}", after.failures);
    }
}

#[tokio::test]
async fn forged_head_is_caught_by_signatures_and_the_checkpoint_file() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let p = tv.vault.create_patient(&clin, TREAT, &patient_json("Ode", "Lis")).await.expect("create");
    for _ in 0..3 {
        tv.vault.read_patient(&clin, TREAT, p.id.as_str()).await.expect("read");
    }
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    let head: i64 = sqlx::query("SELECT seq FROM audit_head").fetch_one(&mut c).await.expect("head").get(0);
    // Truncate the tail and move the head back onto the new last record, as an attacker with
    // database access (but no signing key) would.
    let keep = head - 2;
    c.execute(format!("DELETE FROM audit_events WHERE seq > {keep}").as_str()).await.expect("truncate");
    c.execute(format!("DELETE FROM audit_checkpoints WHERE seq > {keep}").as_str()).await.expect("checkpoints");
    c.execute(format!("UPDATE audit_head SET seq = {keep}, hash = (SELECT hash FROM audit_events WHERE seq = {keep})").as_str())
        .await
        .expect("head");
    let r = tv.vault.verify_audit().await.expect("verify");
    assert!(!r.intact());
    assert!(r.failures.iter().any(|f| f.message.contains("signature of the audit head")), "{:?}", r.failures);
    assert!(r.failures.iter().any(|f| f.message.contains("checkpoint file") && f.seq == Some(keep + 1)), "{:?}", r.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_reencrypts_while_serving_and_resumes_after_interruption() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let mut ids = Vec::new();
    for i in 0..12 {
        let p = tv.vault.create_patient(&clin, TREAT, &patient_json("Rotator", &format!("Ann{}", "a".repeat(i)))).await.expect("create");
        ids.push(p.id.as_str().to_string());
    }
    // Allergies are re-sealed too (the physician is on the patients' care team).
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let mut allergy_ids = Vec::new();
    for id in ids.iter().take(3) {
        tv.vault
            .add_care_team_member(&fd, fd.default_purpose(), id, clin.user_id().as_str(), "assigned-provider", None)
            .await
            .expect("team");
        let body = serde_json::json!({"resourceType": "AllergyIntolerance", "code": {"text": "Peanut"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "patient": {"reference": format!("Patient/{id}")}});
        allergy_ids.push(tv.vault.create_allergy(&clin, TREAT, body.to_string().as_bytes()).await.expect("allergy").id);
    }
    let st = tv.vault.key_status().await.expect("status");
    assert_eq!(st.current_version, 1);
    assert_eq!(st.rows_behind(), 0);

    // Interrupt a rotation after its first batch: the progress callback holds the task while
    // the test aborts it, so it stops at its next await.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let v = tv.vault.clone();
    let task = tokio::spawn(async move {
        v.rotate_keys(2, move |p| {
            if p.done >= 2 {
                let _ = tx.send(());
                let _ = go_rx.recv_timeout(std::time::Duration::from_secs(10));
            }
        })
        .await
    });
    rx.recv().await.expect("first batch done");
    task.abort();
    let _ = go_tx.send(());
    let _ = task.await;
    let st = tv.vault.key_status().await.expect("status");
    assert_eq!(st.current_version, 2);
    assert!(st.rows_behind() > 0, "rotation was interrupted with rows left");

    // Reads and writes keep working meanwhile, old and new rows alike.
    for id in &ids {
        tv.vault.read_patient(&clin, TREAT, id).await.expect("read during rotation");
    }
    tv.vault.create_patient(&clin, TREAT, &patient_json("Rotator", "Newcomer")).await.expect("write during rotation");

    let p = tv.vault.rotate_keys(5, |_| {}).await.expect("resume");
    assert!(p.resumed);
    assert_eq!(p.target_version, 2);
    let st = tv.vault.key_status().await.expect("status");
    assert_eq!(st.rows_behind(), 0, "{:?}", st.rows_by_version);
    assert!(st.rows_by_version.iter().any(|(t, v, n)| t == "allergies" && *v == 2 && *n == 3), "{:?}", st.rows_by_version);
    for a in &allergy_ids {
        let r = tv.vault.read_allergy(&clin, TREAT, a).await.expect("allergy after rotation");
        assert_eq!(r.to_fhir()["code"]["text"], "Peanut");
    }
    for id in &ids {
        let r = tv.vault.read_patient(&clin, TREAT, id).await.expect("read after rotation");
        assert_eq!(r.data.name[0].family.as_deref(), Some("Rotator"));
    }
    let page = tv
        .vault
        .search_patients(&clin, TREAT, &[("family".into(), "rotator".into()), ("_count".into(), "100".into())])
        .await
        .expect("search");
    assert_eq!(page.total, 13);
    assert!(tv.vault.verify_audit().await.expect("verify").intact());
}

#[tokio::test]
async fn ciphertext_moved_to_another_row_or_column_fails_to_open() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let a = tv.vault.create_patient(&clin, TREAT, &patient_json("Mover", "Alpha")).await.expect("a");
    let b = tv.vault.create_patient(&clin, TREAT, &patient_json("Mover", "Beta")).await.expect("b");
    let mut c = tv.raw().await.expect("raw");
    // Copy a's name ciphertext onto b's row.
    c.execute(
        format!(
            "UPDATE patient_versions SET name = (SELECT name FROM patient_versions WHERE patient_id = '{}') WHERE patient_id = '{}'",
            a.id, b.id
        )
        .as_str(),
    )
    .await
    .expect("move row");
    assert!(matches!(tv.vault.read_patient(&clin, TREAT, b.id.as_str()).await, Err(CoreError::Internal(_))));
    // Swap columns within a's row.
    c.execute(format!("UPDATE patient_versions SET address = telecom WHERE patient_id = '{}'", a.id).as_str()).await.expect("move column");
    assert!(matches!(tv.vault.read_patient(&clin, TREAT, a.id.as_str()).await, Err(CoreError::Internal(_))));
}

#[tokio::test]
async fn search_is_case_and_accent_insensitive_with_paging() {
    let tv = TestVault::new().await.expect("vault");
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("staff");
    let ops = PurposeOfUse::Operations;
    for (f, g) in [("Núñez", "Zoë"), ("NUNEZ", "Zoe"), ("Nuno", "Li"), ("Li", "Wen"), ("O'Brien", "Mary-Jo")] {
        tv.vault.create_patient(&fd, ops, &patient_json(f, g)).await.expect("create");
    }
    let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    let total = |pairs: &[(&str, &str)]| {
        let v = tv.vault.clone();
        let fd = fd.clone();
        let params = q(pairs);
        async move { v.search_patients(&fd, ops, &params).await.expect("search").total }
    };
    assert_eq!(total(&[("family", "nun")]).await, 3);
    assert_eq!(total(&[("family", "NÚÑEZ")]).await, 2);
    assert_eq!(total(&[("family:exact", "nunez")]).await, 2);
    assert_eq!(total(&[("given", "zoe")]).await, 2);
    assert_eq!(total(&[("family", "li")]).await, 1, "short names match whole words");
    assert_eq!(total(&[("name", "li")]).await, 2, "name matches family or given");
    assert_eq!(total(&[("family", "o'brien")]).await, 1);
    assert_eq!(total(&[("family", "nun"), ("given", "zoe")]).await, 2);
    assert_eq!(total(&[("phone", "(555) 0199 4242")]).await, 5);
    assert_eq!(total(&[("birthdate", "1963")]).await, 5);
    assert_eq!(total(&[("birthdate", "1963-07")]).await, 5);
    assert_eq!(total(&[("birthdate", "1963-07-20")]).await, 0);
    assert_eq!(total(&[("family", "nun,li")]).await, 4);
    let page =
        tv.vault.search_patients(&fd, ops, &q(&[("phone", "555 0199 4242"), ("_count", "2"), ("_offset", "4")])).await.expect("page");
    assert_eq!((page.total, page.records.len()), (5, 1));
    let rec = tv.vault.read_patient(&fd, ops, page.records[0].id.as_str()).await.expect("read");
    let mrn = rec.data.mrn().expect("mrn");
    assert_eq!(total(&[("identifier", &format!("urn:carevault:mrn|{}", mrn.as_str()))]).await, 1);
    assert_eq!(total(&[("identifier", mrn.as_str())]).await, 1);
}

#[tokio::test]
async fn startup_refuses_wrong_keys_and_loose_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let mut tv = TestVault::new().await.expect("vault");
    tv.vault.shutdown().await;
    let key = tv.data_dir().join("keys/master.key");
    // Too open.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = tv.reopen().await.expect_err("refused");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // Data folder readable by others.
    std::fs::set_permissions(tv.data_dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let e = tv.reopen().await.expect_err("refused");
    assert!(e.to_string().contains("chmod 700"), "{e}");
    std::fs::set_permissions(tv.data_dir(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // A different master key.
    let good = std::fs::read(&key).expect("key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).expect("write");
    let e = tv.reopen().await.expect_err("refused");
    assert!(e.to_string().contains("master key does not open"), "{e}");
    std::fs::write(&key, &good).expect("restore");
    tv.reopen().await.expect("opens again with the right key");
}

#[tokio::test]
async fn an_actor_held_past_its_session_limit_is_refused() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let p = tv.vault.create_patient(&clin, TREAT, &patient_json("Holdover", "Ann")).await.expect("create");
    tv.clock.advance_secs(12 * 3600 + 1);
    let e = tv.vault.read_patient(&clin, TREAT, p.id.as_str()).await.expect_err("expired");
    assert!(matches!(e, CoreError::SessionExpired), "{e:?}");
}

#[tokio::test]
async fn ids_from_urls_never_reach_the_audit_log_as_free_text() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let junk = "Zqxjvwykstrom Quorbelline 1963-07-19";
    assert!(matches!(tv.vault.read_patient(&clin, TREAT, junk).await, Err(CoreError::NotFound { .. })));
    assert!(matches!(tv.vault.read_patient(&admin, PurposeOfUse::SystemAdministration, junk).await, Err(CoreError::Forbidden { .. })));
    assert!(matches!(tv.vault.patient_history(&clin, TREAT, junk).await, Err(CoreError::NotFound { .. })));
    tv.vault.shutdown().await;
    let hits = tv.grep_data_dir(&["Zqxjvwykstrom", "Quorbelline"]);
    assert!(hits.is_empty(), "{hits:?}");
}
