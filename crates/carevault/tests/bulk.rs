//! Bulk registration (imports): one job and one audit record per batch naming every patient,
//! all or nothing, the same permission as a single registration, no plaintext on disk. On
//! SQLite and (with CAREVAULT_TEST_DATABASE_URL) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use carevault_core::{AuditQuery, CoreError};
use carevault_domain::Role;
use carevault_testkit::TestVault;
use serde_json::json;

fn patient(family: &str, n: usize) -> Vec<u8> {
    let given: String = n.to_string().bytes().map(|d| char::from(b'a' + (d - b'0'))).collect();
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [format!("Q{given}")]}], "birthDate": "1962-07-08"})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_batch_is_one_job_and_one_audit_record_naming_every_patient() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (desk, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let (auditor, _) = tv.staff(Role::Auditor).await.expect("auditor");
    let bodies: Vec<Vec<u8>> = (0..50).map(|n| patient("Bulkimportson", n)).collect();
    let before = v.verify_audit().await.expect("verify").records;
    let recs = v.register_patients(&desk, desk.default_purpose(), &bodies).await.expect("register");
    assert_eq!(recs.len(), 50);
    // One record for the batch.
    assert_eq!(v.verify_audit().await.expect("verify").records, before + 1);
    let ids: Vec<String> = recs.iter().map(|r| r.id.to_string()).collect();
    // Every patient is readable, with its own MRN, and its registration is in its history.
    let mut mrns = std::collections::BTreeSet::new();
    for (n, r) in recs.iter().enumerate() {
        let read = v.read_patient(&desk, desk.default_purpose(), r.id.as_str()).await.expect("read");
        let fhir = read.to_fhir();
        assert_eq!(
            fhir["name"][0]["given"][0],
            json!(format!("Q{}", n.to_string().bytes().map(|d| char::from(b'a' + (d - b'0'))).collect::<String>()))
        );
        mrns.insert(fhir["identifier"][0]["value"].as_str().expect("mrn").to_string());
    }
    assert_eq!(mrns.len(), 50, "every patient has its own MRN");
    for id in [&ids[0], &ids[49]] {
        let q = AuditQuery { patient: Some(id.clone()), action: Some("create".into()), ..Default::default() };
        let rows = v.audit_search(&auditor, &q).await.expect("audit search");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let mut all = ids.clone();
        all.sort();
        assert_eq!(rows[0].patients, all, "the batch's record names every patient");
    }
    // Search finds them like any patient.
    let page = v
        .search_patients(&desk, desk.default_purpose(), &[("family".into(), "Bulkimportson".into()), ("_count".into(), "100".into())])
        .await
        .expect("search");
    assert_eq!(page.total, 50);
    assert!(tv.grep_data_dir(&["Bulkimportson"]).is_empty(), "no plaintext name on disk");
}

#[tokio::test]
async fn one_invalid_entry_refuses_the_batch_and_writes_nothing() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (desk, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let mut bodies: Vec<Vec<u8>> = (0..10).map(|n| patient("Halfwayson", n)).collect();
    bodies[7] = br#"{"resourceType":"Patient","name":[{"family":"X"}],"birthDate":"1980-02-30"}"#.to_vec();
    match v.register_patients(&desk, desk.default_purpose(), &bodies).await {
        Err(CoreError::Invalid(e)) => assert_eq!(e.path.as_deref().map(|p| p.starts_with("entry[7]")), Some(true), "{e:?}"),
        other => panic!("expected a refusal: {other:?}"),
    }
    let page = v.search_patients(&desk, desk.default_purpose(), &[("family".into(), "Halfwayson".into())]).await.expect("search");
    assert_eq!(page.total, 0, "nothing of the batch was written");
    // An empty batch and one too large are refused too.
    assert!(matches!(v.register_patients(&desk, desk.default_purpose(), &[]).await, Err(CoreError::Invalid(_))));
    let big: Vec<Vec<u8>> = (0..=carevault_core::MAX_BULK).map(|n| patient("Toomanyson", n)).collect();
    assert!(matches!(v.register_patients(&desk, desk.default_purpose(), &big).await, Err(CoreError::Invalid(_))));
}

#[tokio::test]
async fn bulk_registration_needs_the_registration_permission() {
    let tv = TestVault::new().await.expect("vault");
    let (auditor, _) = tv.staff(Role::Auditor).await.expect("auditor");
    let bodies = vec![patient("Nopermson", 1)];
    let r = tv.vault.register_patients(&auditor, auditor.default_purpose(), &bodies).await;
    assert!(matches!(r, Err(CoreError::Forbidden { .. })), "{r:?}");
}
