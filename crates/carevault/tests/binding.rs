//! Every sealed clinical value is bound to where it belongs (issue 12): a chart record's or an
//! allergy's body opens only in its own row, with the patient, kind, parent, status and signed
//! hash it was sealed with. Changing one of those plain columns in the database, or copying a
//! body to another row, patient or table, gives a tamper error, audited and alerted, and never
//! another patient's data. On SQLite and (with CAREVAULT_TEST_DATABASE_URL) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carevault_core::{Actor, CoreError};
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::TestVault;
use serde_json::json;
use sqlx::Executor;

const TREAT: PurposeOfUse = PurposeOfUse::Treatment;

struct Clinic {
    tv: TestVault,
    doc: Actor,
    a: String,
    b: String,
    pr: String,
    loc: String,
}

async fn clinic() -> Clinic {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let (doc, doc_staff) = tv.staff(Role::Physician).await.expect("physician");
    let (loc, pr) = tv.location_and_practitioner(&admin, "UTC").await.expect("location and practitioner");
    let mut ids = Vec::new();
    for family in ["Bindwell", "Otherton"] {
        let body = json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ada"]}], "birthDate": "1980-02-03"});
        let id = v.create_patient(&fd, fd.default_purpose(), body.to_string().as_bytes()).await.expect("patient").id.to_string();
        v.add_care_team_member(&fd, fd.default_purpose(), &id, &doc_staff.id, "care-team", None).await.expect("care team");
        ids.push(id);
    }
    let b = ids.pop().expect("b");
    let a = ids.pop().expect("a");
    Clinic { tv, doc, a, b, pr, loc }
}

async fn note_for(c: &Clinic, patient: &str, text: &str) -> (String, String) {
    let req = json!({"patientId": patient, "practitionerId": c.pr, "locationId": c.loc});
    let enc = c.tv.vault.start_encounter(&c.doc, TREAT, &req).await.expect("encounter").id;
    let note = c.tv.vault.create_note(&c.doc, TREAT, &enc, &json!({"subjective": text}), None).await.expect("note").id;
    (enc, note)
}

fn allergy(patient_id: &str, substance: &str) -> Vec<u8> {
    json!({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"text": substance},
        "patient": {"reference": format!("Patient/{patient_id}")}
    })
    .to_string()
    .into_bytes()
}

async fn sql(tv: &TestVault, statement: &str) {
    let mut c = tv.raw().await.expect("raw");
    c.execute(statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The audit records marked `tamper` and the open integrity alerts.
async fn tamper_evidence(tv: &TestVault) -> (usize, usize) {
    let (auditor, _) = tv.staff_in("auditor", None).await.expect("auditor");
    let n = tv
        .vault
        .audit_events(&auditor, 0, 10_000)
        .await
        .expect("audit")
        .iter()
        .filter(|e| e.review_flags.as_deref() == Some("tamper"))
        .count();
    let (sec, _) = tv.staff_in("security_officer", None).await.expect("security officer");
    let alerts = tv.vault.alerts(&sec, "security", true).await.expect("alerts").iter().filter(|a| a.kind == "integrity").count();
    (n, alerts)
}

fn is_tamper<T>(r: &Result<T, CoreError>) -> bool {
    matches!(r, Err(CoreError::Tampered { .. }))
}

#[tokio::test]
async fn chart_records_are_bound_to_patient_kind_parent_status_and_row() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let (enc_a, note_a) = note_for(&c, &c.a, "Secret of patient A").await;
    let (_enc_b, note_b) = note_for(&c, &c.b, "Patient B's own note").await;
    let (_, note_a2) = note_for(&c, &c.a, "A second note of A").await;
    v.sign_note(&c.doc, TREAT, &note_a2).await.expect("sign");
    let mut expected = 0;

    // 1. Re-pointing A's note to patient B: not shown as B's, a tamper error.
    sql(&c.tv, &format!("UPDATE records SET patient_id = '{}' WHERE id = '{note_a}'", c.b)).await;
    let r = v.read_note(&c.doc, TREAT, &note_a).await;
    assert!(is_tamper(&r), "moved patient: {r:?}");
    let notes_b = v.patient_notes(&c.doc, TREAT, &c.b).await;
    assert!(is_tamper(&notes_b), "B's note list must not show A's note: {notes_b:?}");
    expected += 2;
    sql(&c.tv, &format!("UPDATE records SET patient_id = '{}' WHERE id = '{note_a}'", c.a)).await;
    assert!(v.read_note(&c.doc, TREAT, &note_a).await.is_ok(), "restored");

    // 2. Copying A's body onto B's note row.
    sql(&c.tv, &format!("UPDATE records SET body = (SELECT body FROM records WHERE id = '{note_a}') WHERE id = '{note_b}'")).await;
    let r = v.read_note(&c.doc, TREAT, &note_b).await;
    assert!(is_tamper(&r), "copied body: {r:?}");
    expected += 1;

    // 3. Flipping a signed note back to draft: it does not reopen for editing.
    sql(&c.tv, &format!("UPDATE records SET status = 'draft' WHERE id = '{note_a2}'")).await;
    let r = v.update_note(&c.doc, TREAT, &note_a2, &json!({"subjective": "rewritten"})).await;
    assert!(is_tamper(&r), "reopened note: {r:?}");
    expected += 1;

    // 4. Kind and parent.
    sql(&c.tv, &format!("UPDATE records SET kind = 'condition' WHERE id = '{note_a}'")).await;
    let r = v.patient_conditions(&c.doc, TREAT, &c.a).await;
    assert!(is_tamper(&r), "changed kind: {r:?}");
    expected += 1;
    sql(&c.tv, &format!("UPDATE records SET kind = 'note', parent_id = 'ffffffffffffffffffffffffffffffff' WHERE id = '{note_a}'")).await;
    let r = v.read_note(&c.doc, TREAT, &note_a).await;
    assert!(is_tamper(&r), "changed parent: {r:?}");
    expected += 1;
    sql(&c.tv, &format!("UPDATE records SET parent_id = '{enc_a}' WHERE id = '{note_a}'")).await;
    assert!(v.read_note(&c.doc, TREAT, &note_a).await.is_ok(), "restored");

    // 5. Another column: a chart body in the allergies table.
    let al = v.create_allergy(&c.doc, TREAT, &allergy(&c.a, "Latex")).await.expect("allergy");
    sql(&c.tv, &format!("UPDATE allergies SET body = (SELECT body FROM records WHERE id = '{note_a}') WHERE id = '{}'", al.id)).await;
    let r = v.read_allergy(&c.doc, TREAT, &al.id).await;
    assert!(is_tamper(&r), "chart body in allergies: {r:?}");
    expected += 1;

    let (records, alerts) = tamper_evidence(&c.tv).await;
    assert_eq!(records, expected, "one audit record marked tamper per refusal");
    assert_eq!(alerts, expected, "one security alert per refusal");
}

#[tokio::test]
async fn allergies_are_bound_to_patient_and_row() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let a1 = v.create_allergy(&c.doc, TREAT, &allergy(&c.a, "Penicillin")).await.expect("allergy a");
    let b1 = v.create_allergy(&c.doc, TREAT, &allergy(&c.b, "Peanut")).await.expect("allergy b");

    sql(&c.tv, &format!("UPDATE allergies SET patient_id = '{}' WHERE id = '{}'", c.b, a1.id)).await;
    let r = v.patient_allergies(&c.doc, TREAT, &c.b).await;
    assert!(is_tamper(&r), "A's allergy listed as B's: {r:?}");
    sql(&c.tv, &format!("UPDATE allergies SET patient_id = '{}' WHERE id = '{}'", c.a, a1.id)).await;
    assert_eq!(v.patient_allergies(&c.doc, TREAT, &c.a).await.expect("restored").len(), 1);

    sql(&c.tv, &format!("UPDATE allergies SET body = (SELECT body FROM allergies WHERE id = '{}') WHERE id = '{}'", a1.id, b1.id)).await;
    let r = v.read_allergy(&c.doc, TREAT, &b1.id).await;
    assert!(is_tamper(&r), "copied allergy body: {r:?}");
    assert_eq!(tamper_evidence(&c.tv).await, (2, 2));
}

/// Document metadata crossing the core's boundary carries no key material (it did: the
/// record's body held each document's AES key), and a document file swapped for another
/// record's is a tamper error, not the other patient's document.
#[tokio::test]
async fn document_keys_stay_in_the_core_and_files_are_bound_to_their_record() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let up = |patient: &str, text: &str| carevault_core::DocumentUpload {
        patient_id: patient.into(),
        encounter_id: None,
        title: "Referral".into(),
        content_type: Some("text/plain".into()),
        content: text.as_bytes().to_vec(),
    };
    let da = v.upload_document(&c.doc, TREAT, up(&c.a, "Letter about patient A\n")).await.expect("upload a");
    let db = v.upload_document(&c.doc, TREAT, up(&c.b, "Letter about patient B\n")).await.expect("upload b");
    let no_key = |r: &carevault_core::ChartRecord| {
        assert!(
            r.body.get("key").is_none(),
            "a content key crossed the boundary: {:?}",
            r.body.as_object().map(|o| o.keys().collect::<Vec<_>>())
        );
        let meta = r.document.as_ref().expect("typed metadata");
        assert_eq!(meta.title, "Referral");
        assert_eq!(meta.content_type, "text/plain");
        let fhir = r.document_to_fhir().to_string();
        assert!(!fhir.contains("\"key\""), "FHIR carries no key");
    };
    no_key(&da);
    no_key(&v.read_document_reference(&c.doc, TREAT, &da.id).await.expect("read"));
    for r in v.patient_documents(&c.doc, TREAT, &c.a).await.expect("list") {
        no_key(&r);
    }
    let dl = v.download_document(&c.doc, TREAT, &da.id).await.expect("download");
    no_key(&dl.record);
    assert_eq!(dl.content.as_slice(), b"Letter about patient A\n");

    // B's sealed file put in place of A's: refused as tampering, never B's letter as A's.
    let dir = c.tv.data_dir().join("documents");
    std::fs::copy(dir.join(format!("{}.cvs", db.id)), dir.join(format!("{}.cvs", da.id))).expect("swap");
    let r = v.download_document(&c.doc, TREAT, &da.id).await;
    assert!(matches!(r, Err(CoreError::Tampered { .. })), "swapped file: {:?}", r.as_ref().map(|d| d.content.len()));
    assert_eq!(tamper_evidence(&c.tv).await, (1, 1));
}
