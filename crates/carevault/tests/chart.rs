//! The chart through the core, on SQLite and (with CAREVAULT_TEST_DATABASE_URL) PostgreSQL:
//! signed notes are immutable (only signed addenda, co-signature), ICD-10-CM diagnoses,
//! documents sealed on disk and checked by content, consents against the current template,
//! and no plaintext PHI anywhere in the data folder or the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use carevault_core::{consent_to_fhir, Actor, ConsentRequest, CoreConfig, CoreError, DocumentUpload, PractitionerRequest};
use carevault_domain::consent::DrawnSignature;
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::{Staff, TestVault};
use serde_json::json;
use sha2::Digest;

const TREAT: PurposeOfUse = PurposeOfUse::Treatment;

struct Clinic {
    tv: TestVault,
    admin: Actor,
    fd: Actor,
    doc: Actor,
    doc_staff: Staff,
    doc2: Actor,
    doc2_staff: Staff,
    patient: String,
    loc: String,
    pr: String,
}

/// A string unique to this run, letters only (so it is a valid name and never part of an id).
fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let micros = carevault_core::Clock::now_micros(&carevault_core::SystemClock);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tail: String = format!("{micros}{}{n}", std::process::id()).bytes().map(|b| char::from(b'a' + (b - b'0'))).collect();
    format!("{prefix}{tail}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A vault with a location, a practitioner, a patient with `family` as name and two physicians
/// on the patient's care team.
async fn clinic_with(config: CoreConfig, family: &str) -> Clinic {
    let tv = TestVault::with_config(config).await.expect("vault");
    let v = &tv.vault;
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let (doc, doc_staff) = tv.staff(Role::Physician).await.expect("physician");
    let (doc2, doc2_staff) = tv.staff(Role::Physician).await.expect("physician 2");
    let loc = v.add_unit("location", "Main Street", Some("default"), None, Some("UTC")).await.expect("location");
    let req = PractitionerRequest {
        npi: "1245319599".into(),
        family: "Ng".into(),
        given: "Mei".into(),
        organization_id: "default".into(),
        location_ids: vec![loc.clone()],
        ..Default::default()
    };
    let pr = v.add_practitioner(&admin, &req).await.expect("practitioner").id;
    let body = json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ada"]}], "birthDate": "1980-02-03"}).to_string();
    let patient = v.create_patient(&fd, fd.default_purpose(), body.as_bytes()).await.expect("patient").id.to_string();
    for s in [&doc_staff, &doc2_staff] {
        v.add_care_team_member(&fd, fd.default_purpose(), &patient, &s.id, "care-team", None).await.expect("care team");
    }
    Clinic { tv, admin, fd, doc, doc_staff, doc2, doc2_staff, patient, loc, pr }
}

async fn clinic() -> Clinic {
    clinic_with(carevault_testkit::test_config(), "Chartson").await
}

async fn walk_in(c: &Clinic) -> String {
    let req = json!({"patientId": c.patient, "practitionerId": c.pr, "locationId": c.loc});
    let enc = c.tv.vault.start_encounter(&c.doc, TREAT, &req).await.expect("encounter");
    assert_eq!((enc.kind.as_str(), enc.status.as_str()), ("encounter", "in-progress"));
    enc.id
}

async fn audit_of(c: &Clinic) -> Vec<carevault_core::AuditEventView> {
    let (auditor, _) = c.tv.staff_in("auditor", None).await.expect("auditor");
    c.tv.vault.audit_events(&auditor, 0, 1000).await.expect("audit events")
}

fn signature() -> DrawnSignature {
    DrawnSignature { width: 400, height: 150, strokes: vec![vec![[10, 100], [60, 40], [120, 110], [200, 30]], vec![[220, 90], [300, 95]]] }
}

fn consent_request(c: &Clinic, kind: &str, version: u32, typed_name: &str) -> ConsentRequest {
    let roi = kind == "release-of-information";
    ConsentRequest {
        patient_id: c.patient.clone(),
        kind: kind.into(),
        template_version: version,
        signer_typed_name: typed_name.into(),
        signer_relationship: None,
        signature: signature(),
        recipient: roi.then(|| "Dr. Receiving Clinic".to_string()),
        purpose: roi.then(|| "continuity of care".to_string()),
        scope: roi.then(|| "visit notes".to_string()),
        expires: roi.then(|| "2031-12-31".to_string()),
        device: "test tablet".into(),
        ip: "127.0.0.1".into(),
    }
}

fn document_files(tv: &TestVault) -> usize {
    std::fs::read_dir(tv.data_dir().join("documents")).map(|d| d.flatten().count()).unwrap_or(0)
}

#[tokio::test]
async fn signed_note_is_immutable() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let enc = walk_in(&c).await;
    let note =
        v.create_note(&c.doc, TREAT, &enc, &json!({"subjective": "Cough for 3 days.", "objective": "T 37.9"}), None).await.expect("note");
    assert_eq!((note.status.as_str(), note.version), ("draft", 1));
    assert!(note.provenance().is_none(), "a draft has no provenance");
    // Only the author edits or signs a draft.
    let other = v.update_note(&c.doc2, TREAT, &note.id, &json!({"subjective": "hijack"})).await;
    assert!(matches!(other, Err(CoreError::Refused { reason: "not-author", .. })), "{other:?}");
    assert!(matches!(v.sign_note(&c.doc2, TREAT, &note.id).await, Err(CoreError::Refused { reason: "not-author", .. })));
    // An addendum needs a signed note.
    assert!(matches!(v.add_addendum(&c.doc, TREAT, &note.id, "too early").await, Err(CoreError::Conflict(_))));
    let sections = json!({"subjective": "Cough for 4 days.", "assessment": "Acute bronchitis.", "plan": "Fluids, rest."});
    let draft = v.update_note(&c.doc, TREAT, &note.id, &sections).await.expect("update draft");
    assert_eq!((draft.status.as_str(), draft.version), ("draft", 2));

    let signed = v.sign_note(&c.doc, TREAT, &note.id).await.expect("sign");
    assert_eq!((signed.status.as_str(), signed.version), ("final", 3));
    let expected_text = "Subjective:\nCough for 4 days.\n\nAssessment:\nAcute bronchitis.\n\nPlan:\nFluids, rest.\n\n";
    let hash = sha256_hex(expected_text.as_bytes());
    assert_eq!(signed.content_sha256.as_deref(), Some(hash.as_str()));
    // The FHIR attachment carries exactly the signed content, and its hash matches.
    let fhir = signed.to_fhir();
    assert_eq!(fhir["docStatus"], "final");
    let data =
        base64::engine::general_purpose::STANDARD.decode(fhir["content"][0]["attachment"]["data"].as_str().expect("data")).expect("b64");
    assert_eq!(sha256_hex(&data), hash);
    assert_eq!(fhir["content"][0]["attachment"]["title"], format!("SHA-256 {hash}"));

    // Signed: no edit, no second signature, by anyone; nothing changes.
    let e = v.update_note(&c.doc, TREAT, &note.id, &json!({"subjective": "changed after signing"})).await;
    assert!(matches!(e, Err(CoreError::Conflict(_))), "{e:?}");
    assert!(matches!(v.sign_note(&c.doc, TREAT, &note.id).await, Err(CoreError::Conflict(_))));
    assert!(matches!(v.update_note(&c.doc2, TREAT, &note.id, &json!({"subjective": "x"})).await, Err(CoreError::Conflict(_))));
    let (reread, none) = v.read_note(&c.doc, TREAT, &note.id).await.expect("read");
    assert!(none.is_empty());
    assert_eq!((reread.version, reread.status.as_str()), (3, "final"));
    assert_eq!(reread.body, signed.body);
    assert_eq!(reread.content_sha256.as_deref(), Some(hash.as_str()));
    let events = audit_of(&c).await;
    assert!(
        events.iter().any(|e| e.resource_id.as_deref() == Some(note.id.as_str()) && e.action == "update" && e.outcome == "conflict"),
        "the refused edit is audited"
    );
    assert!(events.iter().any(|e| e.resource_id.as_deref() == Some(note.id.as_str()) && e.action == "update" && e.outcome == "denied"));

    // A signed addendum appends to it.
    let add = v.add_addendum(&c.doc2, TREAT, &note.id, "Chest X-ray clear.").await.expect("addendum");
    assert_eq!((add.kind.as_str(), add.status.as_str()), ("addendum", "final"));
    assert_eq!(add.parent_id.as_deref(), Some(note.id.as_str()));
    assert_eq!(add.content_sha256, Some(sha256_hex(b"Chest X-ray clear.")));
    let af = add.to_fhir();
    assert_eq!(af["relatesTo"][0]["code"], "appends");
    assert_eq!(af["relatesTo"][0]["target"]["reference"], format!("DocumentReference/{}", note.id));
    assert!(add.provenance().is_some());
    let (n, addenda) = v.read_note(&c.doc, TREAT, &note.id).await.expect("read with addenda");
    assert_eq!(n.version, 3, "the note itself is unchanged by the addendum");
    assert_eq!(addenda.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec![add.id.as_str()]);
    assert_eq!(v.patient_notes(&c.doc, TREAT, &c.patient).await.expect("notes").len(), 2);

    // Provenance: the author's signature over the hash.
    let prov = n.provenance().expect("provenance");
    assert_eq!(prov["resourceType"], "Provenance");
    assert_eq!(prov["target"][0]["reference"], format!("DocumentReference/{}/_history/3", note.id));
    let sigs = prov["signature"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0]["type"][0]["display"], "Author's Signature");
    assert_eq!(sigs[0]["who"]["display"], format!("user:{}", c.doc.user_id()));
    let sig_data = base64::engine::general_purpose::STANDARD.decode(sigs[0]["data"].as_str().expect("sig data")).expect("b64");
    assert_eq!(String::from_utf8(sig_data).expect("utf8"), format!("sha256:{hash}"));
    assert!(v.verify_audit().await.expect("verify").intact());
}

#[tokio::test]
async fn cosignature_flow() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let enc = walk_in(&c).await;
    let s = json!({"assessment": "Resident note.", "plan": "Follow up in 2 weeks."});
    // Naming oneself or nobody real as co-signer is refused.
    let me = c.doc_staff.id.clone();
    assert!(matches!(v.create_note(&c.doc, TREAT, &enc, &s, Some(&me)).await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.create_note(&c.doc, TREAT, &enc, &s, Some("no-such-user")).await, Err(CoreError::Invalid(_))));
    let note = v.create_note(&c.doc, TREAT, &enc, &s, Some(&c.doc2_staff.id)).await.expect("note");
    // Co-signing a draft is refused.
    assert!(matches!(v.cosign_note(&c.doc2, TREAT, &note.id).await, Err(CoreError::Conflict(_))));
    let signed = v.sign_note(&c.doc, TREAT, &note.id).await.expect("sign");
    assert_eq!(signed.status, "signed", "awaiting the co-signature");
    let hash = signed.content_sha256.clone().expect("hash");
    assert_eq!(hash, sha256_hex(b"Assessment:\nResident note.\n\nPlan:\nFollow up in 2 weeks.\n\n"));
    // Still locked while awaiting it.
    assert!(matches!(v.update_note(&c.doc, TREAT, &note.id, &s).await, Err(CoreError::Conflict(_))));
    // Only the named co-signer co-signs (the author is not it; the front desk may not at all).
    assert!(matches!(v.cosign_note(&c.doc, TREAT, &note.id).await, Err(CoreError::Refused { reason: "not-cosigner", .. })));
    assert!(matches!(v.cosign_note(&c.fd, c.fd.default_purpose(), &note.id).await, Err(CoreError::Forbidden { .. })));
    let (still, _) = v.read_note(&c.doc, TREAT, &note.id).await.expect("read");
    assert_eq!((still.status.as_str(), still.version), ("signed", signed.version));
    let fin = v.cosign_note(&c.doc2, TREAT, &note.id).await.expect("cosign");
    assert_eq!(fin.status, "final");
    assert_eq!(fin.content_sha256.as_deref(), Some(hash.as_str()));
    assert!(matches!(v.cosign_note(&c.doc2, TREAT, &note.id).await, Err(CoreError::Conflict(_))));
    let prov = fin.provenance().expect("provenance");
    let sigs = prov["signature"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[1]["who"]["display"], format!("user:{}", c.doc2.user_id()));
    for s in sigs {
        let d = base64::engine::general_purpose::STANDARD.decode(s["data"].as_str().expect("data")).expect("b64");
        assert_eq!(String::from_utf8(d).expect("utf8"), format!("sha256:{hash}"));
    }
}

#[tokio::test]
async fn my_draft_notes_lists_only_the_authors_unsigned_notes() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let enc = walk_in(&c).await;
    let s = json!({"plan": "Task list."});
    let a = v.create_note(&c.doc, TREAT, &enc, &s, None).await.expect("note a");
    let b = v.create_note(&c.doc, TREAT, &enc, &s, None).await.expect("note b");
    v.sign_note(&c.doc, TREAT, &b.id).await.expect("sign b");
    let mine = v.my_draft_notes(&c.doc).await.expect("drafts");
    assert_eq!(mine.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![a.id.as_str()]);
    assert_eq!((mine[0].patient_id.as_str(), mine[0].encounter_id.as_deref()), (c.patient.as_str(), Some(enc.as_str())));
    assert!(v.my_draft_notes(&c.doc2).await.expect("none").is_empty(), "another author's drafts are not listed");
    assert!(matches!(v.my_draft_notes(&c.fd).await, Err(CoreError::Forbidden { .. })), "the front desk reads no notes");
}

fn order_line(n: u32, code: &str, billable: bool, short: &str, long: &str) -> String {
    format!("{n:05} {code:<7} {} {short:<60} {long}", u8::from(billable))
}

#[tokio::test]
async fn icd10_conditions() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let enc = walk_in(&c).await;
    let count = |c: &Clinic| {
        let (v, doc, p) = (c.tv.vault.clone(), c.doc.clone(), c.patient.clone());
        async move { v.patient_conditions(&doc, TREAT, &p).await.expect("conditions").len() }
    };
    // Search: by words and by code prefix (the starter set is loaded on first use).
    // Results come in code order, so "diabetes" with a limit of 10 stops in E11.2x; E11.9 is
    // found with a larger limit or more words.
    let hits = v.search_icd10(&c.doc, "diabetes", 10).await.expect("search");
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.1.to_lowercase().contains("diabetes")), "{hits:?}");
    let hits = v.search_icd10(&c.doc, "diabetes", 100).await.expect("search");
    assert!(hits.iter().any(|h| h.0 == "E11.9"), "{hits:?}");
    let hits = v.search_icd10(&c.doc, "type 2 diabetes without", 10).await.expect("search");
    assert!(hits.iter().any(|h| h.0 == "E11.9"), "{hits:?}");
    let hits = v.search_icd10(&c.doc, "E11", 10).await.expect("search");
    assert!(hits.len() > 1 && hits.iter().all(|h| h.0.starts_with("E11")), "{hits:?}");
    assert!(matches!(v.search_icd10(&c.doc, "  ", 10).await, Err(CoreError::Invalid(_))));

    let cond = v.add_condition(&c.doc, TREAT, &enc, "E11.9", Some("diet controlled")).await.expect("E11.9");
    let f = cond.to_fhir();
    assert_eq!(f["resourceType"], "Condition");
    let coding = &f["code"]["coding"][0];
    assert_eq!(coding["system"], "http://hl7.org/fhir/sid/icd-10-cm");
    assert_eq!(coding["code"], "E11.9");
    assert!(coding["display"].as_str().is_some_and(|d| d.contains("Type 2 diabetes")), "{coding}");
    assert_eq!(f["encounter"]["reference"], format!("Encounter/{enc}"));
    assert_eq!(count(&c).await, 1);

    // Import: a codes-format file (code padded to 8 columns) adds codes; a bad line is named.
    let good = "Z9981   Dependence on supplemental oxygen\nZ9989   Dependence on other enabling machines and devices\n";
    assert_eq!(v.import_icd10(good, "2026-test").await.expect("import"), 2);
    let z = v.search_icd10(&c.doc, "Z998", 10).await.expect("search");
    assert_eq!(z.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), vec!["Z99.81", "Z99.89"]);
    let bad = "Z9911   Dependence on respirator [ventilator] status\nHTN     Hypertension\n";
    match v.import_icd10(bad, "2026-test").await {
        Err(CoreError::Invalid(e)) => assert!(e.message.contains("line 2"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(v.search_icd10(&c.doc, "Z9911", 10).await.expect("search").is_empty(), "nothing of a refused file is written");
    // An order-format file marks E11 as a category (not billable).
    let order = [order_line(1, "E11", false, "Type 2 diabetes mellitus", "Type 2 diabetes mellitus")].join("\n");
    assert_eq!(v.import_icd10(&order, "2026-test").await.expect("order import"), 1);

    // Refused diagnoses: bad shape, unknown code, category; none leaves a record.
    for (code, says) in [("HTN", ""), ("Z99.999X", "not an ICD-10-CM code known here"), ("E11", "a category")] {
        match v.add_condition(&c.doc, TREAT, &enc, code, None).await {
            Err(CoreError::Invalid(e)) => assert!(e.message.contains(says), "{code}: {e:?}"),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(count(&c).await, 1, "{code} left a record");
    }
    // A nurse may read but not record diagnoses.
    let (nurse, _) = c.tv.staff(Role::Nurse).await.expect("nurse");
    assert!(matches!(v.add_condition(&nurse, TREAT, &enc, "I10", None).await, Err(CoreError::Forbidden { .. })));
    assert_eq!(count(&c).await, 1);
}

#[tokio::test]
async fn documents_are_encrypted_and_checked() {
    let config = CoreConfig { document_max_bytes: 4096, ..carevault_testkit::test_config() };
    let c = clinic_with(config, "Docson").await;
    let v = &c.tv.vault;
    let marker = unique("Docmarker");
    let content = format!("Lab result for the patient: {marker}\nAll values normal.\n").into_bytes();
    let up = |content: Vec<u8>, ty: Option<&str>| DocumentUpload {
        patient_id: c.patient.clone(),
        encounter_id: None,
        title: "Lab result".into(),
        content_type: ty.map(str::to_string),
        content,
    };
    let rec = v.upload_document(&c.doc, TREAT, up(content.clone(), Some("text/plain"))).await.expect("upload");
    assert_eq!(rec.content_sha256, Some(sha256_hex(&content)));
    assert_eq!(document_files(&c.tv), 1);
    let sealed = std::fs::read(c.tv.data_dir().join("documents").join(format!("{}.cvs", rec.id))).expect("sealed file");
    assert!(!sealed.windows(marker.len()).any(|w| w == marker.as_bytes()), "only ciphertext on disk");
    let dl = v.download_document(&c.doc, TREAT, &rec.id).await.expect("download");
    assert_eq!(dl.content.as_slice(), content.as_slice());
    assert_eq!(dl.content_type, "text/plain");
    assert_eq!(rec.document_to_fhir()["content"][0]["attachment"]["contentType"], "text/plain");
    let events = audit_of(&c).await;
    assert!(events.iter().any(|e| e.action == "export"
        && e.outcome == "success"
        && e.resource_id.as_deref() == Some(rec.id.as_str())
        && e.patient_id.as_deref() == Some(c.patient.as_str())));

    // Refused uploads leave neither a record nor a file.
    let png = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01".to_vec();
    let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>".to_vec();
    let big = vec![b'a'; 4097];
    for (name, body, ty) in [("png as pdf", png, "application/pdf"), ("html as text", html, "text/plain"), ("too big", big, "text/plain")] {
        let r = v.upload_document(&c.doc, TREAT, up(body, Some(ty))).await;
        assert!(matches!(r, Err(CoreError::Invalid(_))), "{name}: {r:?}");
        assert_eq!(v.patient_documents(&c.doc, TREAT, &c.patient).await.expect("list").len(), 1, "{name}");
        assert_eq!(document_files(&c.tv), 1, "{name}");
    }

    // A flipped byte in the sealed file: the download fails as tampering (audited, alerted),
    // nothing is returned.
    let path = c.tv.data_dir().join("documents").join(format!("{}.cvs", rec.id));
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let r = v.download_document(&c.doc, TREAT, &rec.id).await;
    assert!(matches!(r, Err(CoreError::Tampered { .. })), "{:?}", r.as_ref().err());

    // Release at the patient's request needs an active release-of-information consent.
    let other = v.upload_document(&c.doc, TREAT, up(b"Referral letter\n".to_vec(), None)).await.expect("upload 2");
    let r = v.download_document(&c.doc, PurposeOfUse::PatientRequest, &other.id).await;
    assert!(matches!(r, Err(CoreError::Refused { reason: "no-consent", .. })), "{:?}", r.as_ref().err());
    // A different kind of consent does not open it.
    v.sign_consent(&c.fd, c.fd.default_purpose(), consent_request(&c, "treatment", 1, "Ada Docson")).await.expect("treatment consent");
    assert!(matches!(
        v.download_document(&c.doc, PurposeOfUse::PatientRequest, &other.id).await,
        Err(CoreError::Refused { reason: "no-consent", .. })
    ));
    let roi = v
        .sign_consent(&c.fd, c.fd.default_purpose(), consent_request(&c, "release-of-information", 1, "Ada Docson"))
        .await
        .expect("roi consent");
    let dl = v.download_document(&c.doc, PurposeOfUse::PatientRequest, &other.id).await.expect("released");
    assert_eq!(dl.content.as_slice(), b"Referral letter\n");
    // Revoked: refused again.
    v.revoke_consent(&c.fd, c.fd.default_purpose(), &roi.id).await.expect("revoke");
    assert!(matches!(
        v.download_document(&c.doc, PurposeOfUse::PatientRequest, &other.id).await,
        Err(CoreError::Refused { reason: "no-consent", .. })
    ));
}

#[tokio::test]
async fn consents() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let p = c.fd.default_purpose();
    let templates = v.consent_templates(&c.fd).await.expect("templates");
    let mut kinds: Vec<&str> = templates.iter().map(|t| t.kind.id()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, vec!["privacy-practices", "release-of-information", "telehealth", "treatment"]);
    assert!(templates.iter().all(|t| t.version == 1));

    let signed = v.sign_consent(&c.fd, p, consent_request(&c, "treatment", 1, "Ada Chartson")).await.expect("sign");
    assert_eq!((signed.status.as_str(), signed.template_version), ("active", 1));
    assert!(signed.document.contains("Ada Chartson"));
    assert_eq!(signed.document_sha256, sha256_hex(signed.document.as_bytes()));
    // A drawing that is a dot is not a signature.
    let mut dot = consent_request(&c, "privacy-practices", 1, "Ada Chartson");
    dot.signature = DrawnSignature { width: 400, height: 150, strokes: vec![vec![[10, 10], [12, 11]]] };
    assert!(matches!(v.sign_consent(&c.fd, p, dot).await, Err(CoreError::Invalid(_))));
    // The front desk cannot publish templates; the practice admin can.
    let body = "I, {{patient_name}} (born {{birth_date}}), consent to treatment at {{organization}}. Version two.";
    assert!(matches!(v.add_consent_template(&c.fd, "treatment", "Consent to treatment", body).await, Err(CoreError::Forbidden { .. })));
    // Bad templates are refused precisely and audited; nothing is published.
    assert!(matches!(v.add_consent_template(&c.admin, "no-such-kind", "X", body).await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.add_consent_template(&c.admin, "treatment", "X", "no placeholders at all").await, Err(CoreError::Invalid(_))));
    let invalid =
        audit_of(&c).await.iter().filter(|e| e.resource_type.as_deref() == Some("ConsentTemplate") && e.outcome == "invalid").count();
    assert_eq!(invalid, 2, "both refusals are audited");
    assert!(v.consent_templates(&c.fd).await.expect("templates").iter().all(|t| t.version == 1));
    let t2 = v.add_consent_template(&c.admin, "treatment", "Consent to treatment", body).await.expect("template v2");
    assert_eq!(t2.version, 2);
    // Signing what was shown from version 1 is now a conflict, and nothing is written.
    let before = v.patient_consents(&c.fd, p, &c.patient).await.expect("list").len();
    let stale = v.sign_consent(&c.fd, p, consent_request(&c, "treatment", 1, "Ada Chartson")).await;
    assert!(matches!(stale, Err(CoreError::Conflict(_))), "{stale:?}");
    assert_eq!(v.patient_consents(&c.fd, p, &c.patient).await.expect("list").len(), before);
    let v2 = v.sign_consent(&c.fd, p, consent_request(&c, "treatment", 2, "Ada Chartson")).await.expect("sign v2");
    assert!(v2.document.contains("Version two."));

    // The PDF, and its verification.
    let pdf = v.consent_pdf(&c.fd, p, &signed.id).await.expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    v.verify_consent_pdf(&c.fd, p, &signed.id, &pdf).await.expect("verifies");
    let mut bad = pdf.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    assert!(matches!(v.verify_consent_pdf(&c.fd, p, &signed.id, &bad).await, Err(CoreError::Invalid(_))));
    // Another consent's PDF does not verify this one.
    let pdf2 = v.consent_pdf(&c.fd, p, &v2.id).await.expect("pdf 2");
    assert!(matches!(v.verify_consent_pdf(&c.fd, p, &signed.id, &pdf2).await, Err(CoreError::Invalid(_))));

    // Revocation.
    assert_eq!(consent_to_fhir(&signed, &c.patient)["status"], "active");
    let revoked = v.revoke_consent(&c.fd, p, &signed.id).await.expect("revoke");
    assert_eq!(revoked.status, "revoked");
    assert!(revoked.revoked_at.is_some());
    let fhir = consent_to_fhir(&revoked, &c.patient);
    assert_eq!(fhir["status"], "inactive");
    assert_eq!(fhir["patient"]["reference"], format!("Patient/{}", c.patient));
    assert_eq!(v.read_consent(&c.fd, p, &signed.id).await.expect("read").status, "revoked");
    assert!(matches!(v.revoke_consent(&c.fd, p, &signed.id).await, Err(CoreError::Conflict(_))));
}

#[tokio::test]
async fn no_plaintext_phi_on_disk() {
    let family = unique("Quillfeather");
    let c = clinic_with(carevault_testkit::test_config(), &family).await;
    let v = &c.tv.vault;
    let note_marker = unique("Notemarker");
    let addendum_marker = unique("Addmarker");
    let condition_marker = unique("Condmarker");
    let doc_marker = unique("Docmarker");
    let signer = unique("Signername");
    let enc = walk_in(&c).await;
    let note =
        v.create_note(&c.doc, TREAT, &enc, &json!({"subjective": format!("Patient reports {note_marker}.")}), None).await.expect("note");
    v.sign_note(&c.doc, TREAT, &note.id).await.expect("sign");
    v.add_addendum(&c.doc, TREAT, &note.id, &format!("Also {addendum_marker}.")).await.expect("addendum");
    v.add_condition(&c.doc, TREAT, &enc, "I10", Some(&condition_marker)).await.expect("condition");
    let title = format!("Scan {doc_marker}");
    let up = DocumentUpload {
        patient_id: c.patient.clone(),
        encounter_id: Some(enc.clone()),
        title,
        content_type: Some("text/plain".into()),
        content: format!("Report about {doc_marker} and {family}.\n").into_bytes(),
    };
    v.upload_document(&c.doc, TREAT, up).await.expect("upload");
    let consent = v.sign_consent(&c.fd, c.fd.default_purpose(), consent_request(&c, "treatment", 1, &signer)).await.expect("consent");
    assert!(consent.document.contains(&family), "the consent shows the patient's name");
    // Everything is readable back through the vault...
    let (n, a) = v.read_note(&c.doc, TREAT, &note.id).await.expect("read");
    assert!(n.body["subjective"].as_str().is_some_and(|s| s.contains(&note_marker)));
    assert!(a[0].body["text"].as_str().is_some_and(|s| s.contains(&addendum_marker)));

    // ...and nowhere in plaintext: not in any file of the data folder (database, WAL, documents,
    // audit logs; the search is case-insensitive)...
    let needles: Vec<&str> = vec![&family, &note_marker, &addendum_marker, &condition_marker, &doc_marker, &signer];
    let hits = c.tv.grep_data_dir(&needles);
    assert!(hits.is_empty(), "plaintext PHI on disk: {hits:?}");
    // The scan does see plaintext where there is some (usernames are not sealed).
    if !c.tv.backend.is_postgres() {
        assert!(!c.tv.grep_data_dir(&[c.doc_staff.username.as_str()]).is_empty(), "the scan finds a known plaintext");
    }
    assert!(document_files(&c.tv) == 1);
    // ...nor in the PostgreSQL schema.
    if c.tv.backend.is_postgres() {
        match c.tv.pg_dump() {
            Ok(Some(dump)) => {
                assert!(dump.contains("CREATE TABLE"), "the dump has the schema");
                assert!(dump.contains(&c.doc_staff.username), "the dump holds the data (a username is plaintext)");
                let lower = dump.to_lowercase();
                for n in &needles {
                    assert!(!lower.contains(&n.to_lowercase()), "{n} in pg_dump");
                }
            }
            Ok(None) => {}
            Err(e) => println!("skipping the pg_dump check: {e:#}"),
        }
    }
    // After a clean shutdown (WAL checkpointed) still nothing.
    c.tv.vault.shutdown().await;
    let hits = c.tv.grep_data_dir(&needles);
    assert!(hits.is_empty(), "plaintext PHI on disk after shutdown: {hits:?}");
}

/// An appointment with the practitioner a physician is gives that physician a care
/// relationship (within the configured window), without any care-team entry; the encounter
/// opened from it checks the appointment in, and finishing it fulfils the appointment in the
/// same transaction; a finished encounter takes no new note.
#[tokio::test]
async fn an_appointment_opens_the_chart_to_its_practitioner_and_its_encounter_fulfils_it() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let (doc, doc_staff) = tv.staff(Role::Physician).await.expect("physician");
    let loc = v.add_unit("location", "Elm Street", Some("default"), None, Some("UTC")).await.expect("location");
    let req = PractitionerRequest {
        npi: "1245319599".into(),
        family: "Okafor".into(),
        given: "Ada".into(),
        organization_id: "default".into(),
        location_ids: vec![loc.clone()],
        user_id: Some(doc_staff.id.clone()),
        ..Default::default()
    };
    let pr = v.add_practitioner(&admin, &req).await.expect("practitioner").id;
    let windows: Vec<carevault_domain::schedule::WeeklyWindow> =
        (1..=7).map(|d| carevault_domain::schedule::WeeklyWindow { weekday: d, start_minute: 0, end_minute: 1440 }).collect();
    v.set_availability(&admin, &pr, &loc, &windows).await.expect("availability");
    let body =
        json!({"resourceType": "Patient", "name": [{"family": "Windowson", "given": ["Ida"]}], "birthDate": "1970-01-02"}).to_string();
    let patient = v.create_patient(&fd, fd.default_purpose(), body.as_bytes()).await.expect("patient").id.to_string();
    // No relationship yet: the chart is closed to the physician.
    let walk_in = json!({"patientId": patient, "practitionerId": pr, "locationId": loc});
    assert!(matches!(v.start_encounter(&doc, TREAT, &walk_in).await, Err(CoreError::Forbidden { .. })));
    let day = 86_400_000_000i64;
    let start = (carevault_core::Clock::now_micros(tv.clock.as_ref()) / day + 1) * day + 10 * 3_600_000_000;
    let appt = v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, start, 30).await.expect("appointment");
    // The booked appointment (tomorrow, inside the 30-day window) opens it.
    let enc = v.start_encounter(&doc, TREAT, &json!({"appointmentId": appt.id})).await.expect("encounter from the appointment");
    assert_eq!(enc.parent_id.as_deref(), Some(appt.id.as_str()));
    assert_eq!(v.read_appointment(&fd, fd.default_purpose(), &appt.id).await.expect("appointment").status, "checked-in");
    assert!(matches!(v.start_encounter(&doc, TREAT, &json!({"appointmentId": appt.id})).await, Err(CoreError::Conflict(_))));
    let finished = v.finish_encounter(&doc, TREAT, &enc.id).await.expect("finish");
    assert_eq!(finished.status, "finished");
    assert!(finished.to_fhir()["period"]["end"].is_string());
    assert_eq!(v.read_appointment(&fd, fd.default_purpose(), &appt.id).await.expect("appointment").status, "fulfilled");
    assert!(matches!(v.create_note(&doc, TREAT, &enc.id, &json!({"subjective": "late"}), None).await, Err(CoreError::Conflict(_))));
    assert!(matches!(v.finish_encounter(&doc, TREAT, &enc.id).await, Err(CoreError::Conflict(_))));
    // Past the window, with no appointment and no encounter of the physician's around, the
    // chart closes again.
    tv.clock.advance_secs(40 * 86_400);
    let doc = tv.sign_in(&doc_staff).await.expect("sign in again");
    assert!(matches!(v.patient_encounters(&doc, TREAT, &patient).await, Err(CoreError::Forbidden { .. })));
}

/// Key rotation re-seals the chart's records (notes, documents' keys, consents), and every one
/// still opens afterwards; nothing is left under the old key.
#[tokio::test]
async fn key_rotation_reseals_the_chart() {
    let c = clinic().await;
    let v = &c.tv.vault;
    let enc = walk_in(&c).await;
    let note = v.create_note(&c.doc, TREAT, &enc, &json!({"subjective": "before rotation"}), None).await.expect("note");
    v.sign_note(&c.doc, TREAT, &note.id).await.expect("sign");
    let up = DocumentUpload {
        patient_id: c.patient.clone(),
        encounter_id: Some(enc.clone()),
        title: "Rotation".into(),
        content_type: Some("text/plain".into()),
        content: b"sealed before the rotation".to_vec(),
    };
    let doc = v.upload_document(&c.doc, TREAT, up).await.expect("upload");
    let consent =
        v.sign_consent(&c.fd, c.fd.default_purpose(), consent_request(&c, "treatment", 1, "Ada Chartson")).await.expect("consent");
    let before = v.key_status().await.expect("status");
    let records_before: i64 = before.rows_by_version.iter().filter(|(t, _, _)| t == "records").map(|(_, _, n)| n).sum();
    assert!(records_before >= 4, "encounter, note, document and consent are records: {records_before}");
    let done = v.rotate_keys(2, |_| {}).await.expect("rotate");
    let after = v.key_status().await.expect("status");
    assert_eq!(after.rows_behind(), 0, "nothing left under the old key");
    assert!(after.rows_by_version.iter().filter(|(t, _, _)| t == "records").all(|(_, kv, _)| *kv == i64::from(done.target_version)));
    let (read, _) = v.read_note(&c.doc, TREAT, &note.id).await.expect("note after rotation");
    assert_eq!(read.body["subjective"], "before rotation");
    let d = v.download_document(&c.doc, TREAT, &doc.id).await.expect("document after rotation");
    assert_eq!(d.content.as_slice(), b"sealed before the rotation");
    let pdf = v.consent_pdf(&c.fd, c.fd.default_purpose(), &consent.id).await.expect("consent after rotation");
    v.verify_consent_pdf(&c.fd, c.fd.default_purpose(), &consent.id, &pdf).await.expect("verifies after rotation");
}
