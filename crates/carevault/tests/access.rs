//! The access model end to end through the core, on SQLite and (with
//! CAREVAULT_TEST_DATABASE_URL) PostgreSQL: the authorization matrix of every core operation ×
//! every built-in role × scenario, deactivation, break-glass, passwords, grants, self-elevation.
//!
//! Long on purpose: the matrix's expected cells (`expected`), the world it runs in (`setup`) and
//! the call of every operation (`run`) change together when an operation or a role is added, so
//! they stay in one file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use carevault_core::{Actor, AuditQuery, BookRequest, Clock, CoreError, GrantRequest, ScopeInput, WaitlistRequest};
use carevault_domain::{Operation, Role};
use carevault_testkit::{Staff, TestVault, PASSWORD};
use serde_json::json;

fn patient(family: &str) -> Vec<u8> {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Matrix"]}], "birthDate": "1970-01-01"})
        .to_string()
        .into_bytes()
}

fn allergy(patient_id: &str) -> Vec<u8> {
    json!({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"text": "Penicillin"},
        "patient": {"reference": format!("Patient/{patient_id}")}
    })
    .to_string()
    .into_bytes()
}

/// Scenario columns for operations on one patient.
const SUFFIX: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];
const OWN: usize = 0; // in the actor's organization, with a care relationship
const OTHER: usize = 1; // same organization, no relationship
const ORG2: usize = 2; // another organization
const FLAG: usize = 3; // flagged VIP, with a relationship
const BG: usize = 4; // flagged VIP, no relationship, after the actor tried break-glass

// Cells for the eight roles in order: front_desk, nurse, physician, biller, practice_admin,
// privacy_officer, security_officer, auditor. Patient operations: five scenario letters.
const N5: &str = "NNNNN";
const DEMO: &str = "YYNNN"; // demographic, no VIP permission, no break-glass
const DEMO_BG: &str = "YYNNY"; // demographic, with break-glass
const DEMO_VIP: &str = "YYNYY"; // demographic, holds the VIP permission
const CLIN_BG: &str = "YNNNY"; // clinical: relationship needed, break-glass opens
const GLASS: &str = "YYNYY"; // break-glass itself: anywhere in the organization

/// The hand-written policy. Patient operations: one five-letter cell per role. Other
/// operations: one letter per role (allowed within the own organization); in another
/// organization and with an expired assignment they are always refused (own-account
/// operations excepted).
fn expected() -> HashMap<&'static str, Vec<&'static str>> {
    let rows: &[(&str, [&str; 8])] = &[
        ("patient.read", [DEMO, DEMO_BG, DEMO_BG, DEMO, N5, DEMO_VIP, N5, N5]),
        ("patient.search", [DEMO, DEMO, DEMO, DEMO, N5, DEMO_VIP, N5, N5]),
        ("patient.update", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("patient.placement.set", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("patient.vread", [N5, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("patient.history", [N5, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("patient.flags.set", [N5, N5, DEMO_BG, N5, N5, DEMO_VIP, N5, N5]),
        ("patient.care_team.list", [DEMO, DEMO_BG, DEMO_BG, DEMO, N5, DEMO_VIP, N5, N5]),
        ("patient.care_team.add", [DEMO, N5, DEMO_BG, N5, N5, N5, N5, N5]),
        ("patient.care_team.end", [DEMO, N5, DEMO_BG, N5, N5, N5, N5, N5]),
        ("allergy.create", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("allergy.read", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("allergy.list", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("break_glass.open", [N5, GLASS, GLASS, N5, N5, N5, N5, N5]),
        ("appointment.book", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("appointment.read", [DEMO, DEMO_BG, DEMO_BG, DEMO, N5, N5, N5, N5]),
        ("appointment.status", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("appointment.reschedule", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("appointment.overbook", [N5, N5, DEMO_BG, N5, N5, N5, N5, N5]),
        // Searches and lists filter by the patients' scope and flags; break-glass does not
        // widen them (as patient.search).
        ("appointment.search", [DEMO, DEMO, DEMO, DEMO, N5, N5, N5, N5]),
        ("appointment.series.book", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("appointment.series.cancel", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("waitlist.add", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("waitlist.list", [DEMO, DEMO, DEMO, DEMO, N5, N5, N5, N5]),
        ("waitlist.answer", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        //                    fd   nurse phys  biller admin privacy security auditor
        ("patient.create", ["Y", "N", "Y", "N", "N", "N", "N", "N"]),
        ("break_glass.queue", ["N", "N", "N", "N", "N", "Y", "N", "N"]),
        ("break_glass.close", ["N", "N", "N", "N", "N", "Y", "N", "N"]),
        ("user.list", ["N", "N", "N", "N", "Y", "Y", "Y", "N"]),
        ("user.create", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("user.deactivate", ["N", "N", "N", "N", "Y", "N", "Y", "N"]),
        ("user.reactivate", ["N", "N", "N", "N", "Y", "N", "Y", "N"]),
        ("user.mfa.reset", ["N", "N", "N", "N", "Y", "N", "Y", "N"]),
        ("role.list", ["N", "N", "N", "N", "Y", "Y", "Y", "N"]),
        ("role.create", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("role.update", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("assignment.add", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("assignment.remove", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("grant.add", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("grant.list", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("grant.revoke", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("session.list_user", ["N", "N", "N", "N", "Y", "N", "Y", "N"]),
        ("session.end_user", ["N", "N", "N", "N", "Y", "N", "Y", "N"]),
        ("directory.read", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "N"]),
        ("practitioner.create", ["N", "N", "N", "N", "Y", "N", "N", "N"]),
        ("schedule.availability.set", ["Y", "N", "N", "N", "Y", "N", "N", "N"]),
        ("schedule.closure.add", ["Y", "N", "N", "N", "Y", "N", "N", "N"]),
        ("schedule.slots", ["Y", "Y", "Y", "N", "Y", "N", "N", "N"]),
        //                    fd   nurse phys  biller admin privacy security auditor
        ("encounter.create", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("encounter.finish", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("encounter.read", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("encounter.list", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("note.create", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("note.update", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("note.sign", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("note.addendum", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("note.cosign", [N5, N5, CLIN_BG, N5, N5, N5, N5, N5]),
        ("note.read", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("note.list", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("condition.create", [N5, N5, CLIN_BG, N5, N5, N5, N5, N5]),
        ("condition.list", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("document.upload", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("document.list", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("document.download", [N5, CLIN_BG, CLIN_BG, N5, N5, N5, N5, N5]),
        ("consent.sign", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("consent.revoke", [DEMO, DEMO_BG, DEMO_BG, N5, N5, N5, N5, N5]),
        ("consent.list", [DEMO, DEMO_BG, DEMO_BG, N5, N5, DEMO_VIP, N5, N5]),
        ("consent.pdf", [DEMO, DEMO_BG, DEMO_BG, N5, N5, DEMO_VIP, N5, N5]),
        ("consent.template.add", ["N", "N", "N", "N", "Y", "Y", "N", "N"]),
        ("consent.template.list", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "N"]),
        ("terminology.icd10.search", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "N"]),
        ("schedule.appointment_type.add", ["Y", "N", "N", "N", "Y", "N", "N", "N"]),
        ("schedule.appointment_type.list", ["Y", "Y", "Y", "N", "Y", "N", "N", "N"]),
        ("audit.read", ["N", "N", "N", "N", "N", "Y", "Y", "Y"]),
        ("audit.verify", ["N", "N", "N", "N", "N", "N", "Y", "Y"]),
        // Export (a bulk copy leaving the system): privacy officer and auditor, not the
        // security officer, who reads the log in place.
        ("audit.export", ["N", "N", "N", "N", "N", "Y", "N", "Y"]),
        ("alert.privacy.list", ["N", "N", "N", "N", "N", "Y", "N", "N"]),
        ("alert.privacy.close", ["N", "N", "N", "N", "N", "Y", "N", "N"]),
        ("alert.security.list", ["N", "N", "N", "N", "N", "N", "Y", "N"]),
        ("alert.security.close", ["N", "N", "N", "N", "N", "N", "Y", "N"]),
        ("approval.list", ["N", "N", "N", "N", "N", "Y", "Y", "N"]),
        ("approval.decide", ["N", "N", "N", "N", "N", "Y", "Y", "N"]),
        ("own.sessions", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "Y"]),
        ("own.password.change", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "Y"]),
        ("own.recovery_codes", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "Y"]),
        ("own.reauthenticate", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "Y"]),
        ("own.passkeys", ["Y", "Y", "Y", "Y", "Y", "Y", "Y", "Y"]),
    ];
    rows.iter().map(|(op, cells)| (*op, cells.to_vec())).collect()
}

struct World {
    tv: TestVault,
    org_b: String,
    /// [own, other, org2, flag, bg]
    patients: [String; 5],
    allergies: [String; 5],
    bodies: HashMap<String, Vec<u8>>,
    /// Accounts to act on: (org A, org B).
    targets: Vec<(String, String)>,
    privacy_alert: String,
    security_alert: String,
    review: String,
    assignment: String,
    fd_a: Actor,
    doc_a: Actor,
    /// (location, practitioner) of each organization, with availability every day.
    place_a: (String, String),
    place_b: (String, String),
    /// One appointment per scenario patient.
    appointments: Vec<String>,
    /// Per scenario patient: an encounter, a draft note on it, a document and a consent (all
    /// by a physician of the patient's organization).
    encounters: Vec<String>,
    notes: Vec<String>,
    documents: Vec<String>,
    consents: Vec<String>,
    /// The UTC date of those appointments.
    appointment_day: String,
    /// One weekly series (two occurrences) per scenario patient.
    series: Vec<String>,
    /// One waitlist entry (waiting, no offer) per scenario patient.
    waitlist: Vec<String>,
}

fn allowed(r: &Result<(), CoreError>) -> bool {
    !matches!(r, Err(CoreError::Forbidden { .. }))
}

async fn setup() -> World {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let org_b = v.add_unit("organization", "Other Clinic", None, None, None).await.expect("org b");
    let (fd_a, _) = tv.staff_in("front_desk", None).await.expect("fd a");
    let (fd_b, _) = tv.staff_in("front_desk", Some(&org_b)).await.expect("fd b");
    let (doc_b, doc_b_staff) = tv.staff_in("physician", Some(&org_b)).await.expect("doc b");
    let (privacy, _) = tv.staff_in("privacy_officer", None).await.expect("privacy");
    let (admin, _) = tv.staff_in("practice_admin", None).await.expect("admin");
    let p = |a: &Actor| a.default_purpose();
    let mut patients = Vec::new();
    let mut bodies = HashMap::new();
    for (i, who) in [&fd_a, &fd_a, &fd_b, &fd_a, &fd_a].iter().enumerate() {
        let rec = v.create_patient(who, p(who), &patient(&format!("Matrix{}", SUFFIX[i]))).await.expect("patient");
        bodies.insert(rec.id.to_string(), rec.to_fhir().to_string().into_bytes());
        patients.push(rec.id.to_string());
    }
    // A physician of each organization with a relationship to every patient records allergies.
    let (doc_a, _) = tv.staff_in("physician", None).await.expect("doc a");
    let doc_a_id = doc_a.user_id().to_string();
    for i in [OWN, OTHER, FLAG, BG] {
        v.add_care_team_member(&fd_a, p(&fd_a), &patients[i], &doc_a_id, "care-team", None).await.expect("team");
    }
    v.add_care_team_member(&fd_b, p(&fd_b), &patients[ORG2], &doc_b_staff.id, "assigned-provider", None).await.expect("team b");
    for i in [FLAG, BG] {
        v.set_patient_flags(&privacy, p(&privacy), &patients[i], &["vip".into()]).await.expect("flag");
    }
    let mut allergies = Vec::new();
    for (i, pid) in patients.iter().enumerate() {
        let who = if i == ORG2 { &doc_b } else { &doc_a };
        if i == FLAG || i == BG {
            v.break_glass(who, pid, "covering-provider", "matrix setup").await.expect("setup glass");
        }
        allergies.push(v.create_allergy(who, p(who), &allergy(pid)).await.expect("allergy").id);
    }
    let mut targets = Vec::new();
    for n in 0..12 {
        let a = v.add_user_in(&format!("target.a{n}"), "front_desk", None, PASSWORD).await.expect("target a").id;
        let b = v.add_user_in(&format!("target.b{n}"), "front_desk", Some(&org_b), PASSWORD).await.expect("target b").id;
        targets.push((a, b));
    }
    let queue = v.break_glass_queue(&privacy, "open").await.expect("queue");
    let review = queue.first().expect("a review").id.clone();
    let privacy_alert = v.alerts(&privacy, "privacy", true).await.expect("alerts").first().expect("privacy alert").id.clone();
    let (sec, _) = tv.staff_in("security_officer", None).await.expect("sec");
    v.deactivate_user(&sec, &targets[11].0).await.expect("deactivate");
    let security_alert = v.alerts(&sec, "security", true).await.expect("alerts").first().expect("security alert").id.clone();
    // A biller's role reaches PHI: the assignment waits for an officer, then exists.
    let pending = v
        .add_assignment(&admin, &targets[10].0, "biller", ScopeInput { organization_id: "default".into(), ..Default::default() }, None)
        .await;
    let Err(CoreError::ApprovalPending { id: approval }) = pending else { panic!("assignment: {pending:?}") };
    v.approve(&privacy, &approval).await.expect("approved");
    let assignment = v
        .list_users(&admin)
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.id == targets[10].0)
        .and_then(|u| u.assignments.into_iter().find(|a| a.role == "biller"))
        .expect("assignment")
        .id;
    let allergies: [String; 5] = allergies.try_into().expect("5");
    let patients: [String; 5] = patients.try_into().expect("5");
    let place_a = place(&tv, &admin, "default").await;
    let (admin_b, _) = tv.staff_in("practice_admin", Some(&org_b)).await.expect("admin b");
    let place_b = place(&tv, &admin_b, &org_b).await;
    let day = 86_400_000_000i64;
    let mut appointments = Vec::new();
    let appointment_day = utc_date((tv.clock.now_micros() / day + 3) * day);
    for (i, pid) in patients.iter().enumerate() {
        let (who, (loc, pr)) = if i == ORG2 { (&fd_b, &place_b) } else { (&doc_a, &place_a) };
        let start = (tv.clock.now_micros() / day + 3) * day + (9 * 60 + 30 * i as i64) * 60_000_000;
        appointments.push(v.book_appointment(who, who.default_purpose(), pid, pr, loc, start, 30).await.expect("appointment").id);
    }
    let (mut encounters, mut notes, mut documents, mut consents) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, pid) in patients.iter().enumerate() {
        let (who, (loc, pr)) = if i == ORG2 { (&doc_b, &place_b) } else { (&doc_a, &place_a) };
        let walk_in = json!({"patientId": pid, "practitionerId": pr, "locationId": loc});
        let enc = v.start_encounter(who, p(who), &walk_in).await.expect("encounter").id;
        notes.push(v.create_note(who, p(who), &enc, &json!({"subjective": "matrix"}), None).await.expect("note").id);
        encounters.push(enc);
        documents.push(v.upload_document(who, p(who), matrix_document(pid)).await.expect("document").id);
        consents.push(v.sign_consent(who, p(who), matrix_consent(pid)).await.expect("consent").id);
    }
    // An appointment type in each organization; a series and a waitlist entry per patient (the
    // entries' day holds no appointment, so no cancellation below offers them anything).
    v.add_appointment_type(&admin, "default", "matrix-visit", "Matrix visit", 30).await.expect("type a");
    v.add_appointment_type(&admin_b, &org_b, "matrix-visit", "Matrix visit", 30).await.expect("type b");
    let mut series = Vec::new();
    let mut waitlist = Vec::new();
    for (i, pid) in patients.iter().enumerate() {
        let (who, (loc, pr)) = if i == ORG2 { (&fd_b, &place_b) } else { (&doc_a, &place_a) };
        let start = (tv.clock.now_micros() / day + 5) * day + (12 * 60 + 30 * i as i64) * 60_000_000;
        let req = BookRequest {
            patient_id: pid.clone(),
            practitioner_id: pr.clone(),
            location_id: loc.clone(),
            start,
            minutes: Some(30),
            ..Default::default()
        };
        let booked = v.book_series(who, who.default_purpose(), &req, 1, 2).await.expect("series");
        series.push(booked[0].series_id.clone().expect("series id"));
        let on = utc_date(tv.clock.now_micros() + 60 * day);
        let req = WaitlistRequest {
            patient_id: pid.clone(),
            practitioner_id: pr.clone(),
            location_id: loc.clone(),
            minutes: 30,
            from: on.clone(),
            to: on,
        };
        waitlist.push(v.waitlist_add(who, who.default_purpose(), &req).await.expect("waitlist").id);
    }
    World {
        tv,
        org_b,
        patients,
        allergies,
        bodies,
        targets,
        privacy_alert,
        security_alert,
        review,
        assignment,
        fd_a,
        doc_a,
        place_a,
        place_b,
        appointments,
        encounters,
        notes,
        documents,
        consents,
        appointment_day,
        series,
        waitlist,
    }
}

/// The UTC calendar date of an instant (Unix microseconds).
fn utc_date(micros: i64) -> String {
    carevault_domain::schedule::local_date(&carevault_domain::practice::TimeZoneName::utc(), micros).expect("date").to_string()
}

/// `Forbidden` when `found` is false: a search or list answered, but without the scenario's
/// record (it was filtered out).
fn found_or_forbidden(operation: &'static str, found: bool) -> Result<(), CoreError> {
    if found {
        Ok(())
    } else {
        Err(CoreError::Forbidden { operation, reason: "not in results" })
    }
}

/// A location (UTC) with a practitioner available all day, every day.
async fn place(tv: &TestVault, admin: &Actor, org: &str) -> (String, String) {
    let v = &tv.vault;
    let loc = v.add_unit("location", &format!("Clinic {org}"), Some(org), None, Some("UTC")).await.expect("location");
    let npi = if org == "default" { "1245319599" } else { "1003000126" };
    let req = carevault_core::PractitionerRequest {
        npi: npi.into(),
        family: "Slot".into(),
        given: "Keeper".into(),
        organization_id: org.into(),
        location_ids: vec![loc.clone()],
        ..Default::default()
    };
    let pr = v.add_practitioner(admin, &req).await.expect("practitioner").id;
    let windows: Vec<carevault_domain::schedule::WeeklyWindow> =
        (1..=7).map(|d| carevault_domain::schedule::WeeklyWindow { weekday: d, start_minute: 0, end_minute: 1440 }).collect();
    v.set_availability(admin, &pr, &loc, &windows).await.expect("availability");
    (loc, pr)
}

/// Runs one operation as `a` against scenario `s` (a patient index, or for the others: 0 =
/// own organization, 2 = other organization).
async fn run(w: &World, a: &Actor, op: Operation, s: usize) -> Result<(), CoreError> {
    let v = &w.tv.vault;
    let pur = a.default_purpose();
    let pid = &w.patients[s];
    let target = if s == ORG2 { &w.targets[0].1 } else { &w.targets[0].0 };
    let org = if s == ORG2 { w.org_b.as_str() } else { "default" };
    match op {
        Operation::PatientRead => unit(v.read_patient(a, pur, pid).await),
        Operation::PatientSearch => {
            let page = v.search_patients(a, pur, &[("family".into(), format!("Matrix{}", SUFFIX[s]))]).await?;
            if page.records.iter().any(|r| r.id.as_str() == pid) {
                Ok(())
            } else {
                Err(CoreError::Forbidden { operation: "patient.search", reason: "not in results" })
            }
        }
        Operation::PatientCreate => unit(v.create_patient(a, pur, &patient("Matrixnew")).await),
        Operation::PatientUpdate => {
            let body = w.bodies[pid].clone();
            let mut j: serde_json::Value = serde_json::from_slice(&body).unwrap();
            j["meta"] = json!({});
            unit(v.update_patient(a, pur, pid, j.to_string().as_bytes(), None).await)
        }
        Operation::PatientPlacement => v.set_patient_placement(a, pur, pid, None, None).await,
        Operation::PatientVersionRead => unit(v.read_patient_version(a, pur, pid, "1").await),
        Operation::PatientHistory => unit(v.patient_history(a, pur, pid).await),
        Operation::PatientFlagsSet => {
            let flags = if s == FLAG || s == BG { vec!["vip".to_string()] } else { vec![] };
            unit(v.set_patient_flags(a, pur, pid, &flags).await)
        }
        Operation::CareTeamList => unit(v.care_team(a, pur, pid).await),
        Operation::CareTeamAdd => v.add_care_team_member(a, pur, pid, &w.targets[1].0, "care-team", None).await,
        Operation::CareTeamEnd => v.end_care_team_member(a, pur, pid, &w.targets[2].0, "care-team").await,
        Operation::AllergyCreate => unit(v.create_allergy(a, pur, &allergy(pid)).await),
        Operation::AllergyRead => unit(v.read_allergy(a, pur, &w.allergies[s]).await),
        Operation::AllergyList => unit(v.patient_allergies(a, pur, pid).await),
        Operation::BreakGlassOpen => unit(v.break_glass(a, pid, "medical-emergency", "").await),
        Operation::AppointmentBook => {
            let (loc, pr) = &w.place_a;
            // Tomorrow 09:00 UTC: a free slot the first time, a conflict afterwards.
            let day = 86_400_000_000i64;
            let start = (w.tv.clock.now_micros() / day + 1) * day + 9 * 3_600_000_000;
            unit(v.book_appointment(a, pur, pid, pr, loc, start, 30).await)
        }
        Operation::AppointmentRead => unit(v.read_appointment(a, pur, &w.appointments[s]).await),
        // Check-in the first time, a conflict (not a refusal) afterwards.
        Operation::AppointmentStatus => v.set_appointment_status(a, pur, &w.appointments[s], "arrived", None).await,
        // The appointment was checked in above: a conflict (not a refusal) for those allowed.
        Operation::AppointmentReschedule => {
            unit(v.reschedule_appointment(a, pur, &w.appointments[s], w.tv.clock.now_micros() + 10 * 86_400_000_000).await)
        }
        Operation::AppointmentOverbook => {
            let (loc, pr) = &w.place_a;
            let day = 86_400_000_000i64;
            let start = (w.tv.clock.now_micros() / day + 1) * day + 9 * 3_600_000_000;
            unit(v.overbook_appointment(a, pur, pid, pr, loc, start, 30).await)
        }
        Operation::AppointmentSearch => {
            // The day of the setup appointments (all five patients, both organizations).
            let found = v.search_appointments(a, pur, &[("date".into(), w.appointment_day.clone())]).await?;
            found_or_forbidden("appointment.search", found.iter().any(|x| x.id == w.appointments[s]))
        }
        Operation::AppointmentSeriesBook => {
            let (loc, pr) = &w.place_a;
            // In six days at 09:00 UTC, weekly, twice: booked the first time, a conflict afterwards.
            let day = 86_400_000_000i64;
            let start = (w.tv.clock.now_micros() / day + 6) * day + 9 * 3_600_000_000;
            let req = BookRequest {
                patient_id: pid.clone(),
                practitioner_id: pr.clone(),
                location_id: loc.clone(),
                start,
                minutes: Some(30),
                ..Default::default()
            };
            unit(v.book_series(a, pur, &req, 1, 2).await)
        }
        // Cancels the series the first time, nothing left to cancel (Ok(0)) afterwards.
        Operation::AppointmentSeriesCancel => unit(v.cancel_series(a, pur, &w.series[s], "pat").await),
        Operation::WaitlistAdd => {
            let (loc, pr) = &w.place_a;
            let on = utc_date(w.tv.clock.now_micros() + 61 * 86_400_000_000);
            let req = WaitlistRequest {
                patient_id: pid.clone(),
                practitioner_id: pr.clone(),
                location_id: loc.clone(),
                minutes: 30,
                from: on.clone(),
                to: on,
            };
            unit(v.waitlist_add(a, pur, &req).await)
        }
        Operation::WaitlistList => {
            let (loc, _) = if s == ORG2 { &w.place_b } else { &w.place_a };
            let entries = v.waitlist(a, pur, loc, Some("waiting")).await?;
            found_or_forbidden("waitlist.list", entries.iter().any(|e| e.id == w.waitlist[s]))
        }
        // The entry has no open offer: a conflict (not a refusal) for those allowed.
        Operation::WaitlistAnswer => unit(v.answer_waitlist_offer(a, pur, &w.waitlist[s], false).await),
        Operation::AppointmentTypeAdd => {
            let code: String =
                format!("run-{}", hex(a)).to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            unit(v.add_appointment_type(a, org, &code, "Matrix run", 20).await)
        }
        Operation::AppointmentTypeList => {
            let types = v.appointment_types(a).await?;
            found_or_forbidden("schedule.appointment_type.list", types.iter().any(|t| t.organization_id == org))
        }
        Operation::AvailabilitySet => {
            let (loc, pr) = if s == ORG2 { &w.place_b } else { &w.place_a };
            let windows: Vec<carevault_domain::schedule::WeeklyWindow> =
                (1..=7).map(|d| carevault_domain::schedule::WeeklyWindow { weekday: d, start_minute: 0, end_minute: 1440 }).collect();
            v.set_availability(a, pr, loc, &windows).await
        }
        Operation::ClosureAdd => {
            let (loc, _) = if s == ORG2 { &w.place_b } else { &w.place_a };
            unit(v.add_closure(a, loc, None, "2031-12-25", "2031-12-25", "holiday").await)
        }
        Operation::SlotSearch => {
            let (loc, pr) = if s == ORG2 { &w.place_b } else { &w.place_a };
            unit(v.free_slots(a, pr, loc, "2030-01-07", 1, 30).await)
        }
        Operation::BreakGlassQueue => unit(v.break_glass_queue(a, "open").await),
        Operation::BreakGlassClose => v.close_break_glass_review(a, &w.review, "appropriate", "").await,
        Operation::UserList => unit(v.list_users(a).await),
        Operation::UserCreate => unit(v.create_user(a, &format!("new.{}", hex(a)), "front_desk", org, "tulip marble orbit canyon").await),
        Operation::UserDeactivate => v.deactivate_user(a, &if s == ORG2 { w.targets[3].1.clone() } else { w.targets[3].0.clone() }).await,
        Operation::UserReactivate => v.reactivate_user(a, target).await,
        Operation::UserMfaReset => unit(v.reset_mfa(a, &if s == ORG2 { w.targets[4].1.clone() } else { w.targets[4].0.clone() }).await),
        Operation::RoleList => unit(v.list_roles(a).await),
        Operation::RoleCreate => unit(
            v.put_custom_role(a, &format!("scribe_{}", hex(a)), "Scribe", &["patient.demographics.read".into()], &["HOPERAT".into()]).await,
        ),
        Operation::RoleUpdate => {
            unit(v.put_custom_role(a, "matrix_role", "Matrix", &["patient.demographics.read".into()], &["HOPERAT".into()]).await)
        }
        Operation::AssignmentAdd => {
            unit(v.add_assignment(a, target, "biller", ScopeInput { organization_id: org.into(), ..Default::default() }, None).await)
        }
        Operation::AssignmentRemove => v.remove_assignment(a, &w.assignment).await,
        Operation::GrantAdd => {
            let req = GrantRequest {
                user_id: target.clone(),
                permission: "sensitive.vip.access".into(),
                organization_id: org.into(),
                ends_at: w.tv.clock.now_secs() as i64 + 3600,
                reason: "matrix".into(),
                ..Default::default()
            };
            unit(v.add_grant(a, &req).await)
        }
        Operation::GrantList => unit(v.list_grants(a, Some(target)).await),
        Operation::GrantRevoke => v.revoke_grant(a, "gr-unknown").await,
        Operation::SessionListUser => unit(v.user_sessions(a, target).await),
        Operation::SessionEndUser => v.end_user_sessions(a, target).await,
        Operation::DirectoryRead => unit(v.directory(a).await),
        Operation::PractitionerCreate => {
            let req = carevault_core::PractitionerRequest {
                npi: "1234567893".into(),
                family: "Matrix".into(),
                given: "Doc".into(),
                organization_id: org.into(),
                ..Default::default()
            };
            unit(v.add_practitioner(a, &req).await)
        }
        Operation::EncounterCreate => {
            let (loc, pr) = if s == ORG2 { &w.place_b } else { &w.place_a };
            unit(v.start_encounter(a, pur, &json!({"patientId": pid, "practitionerId": pr, "locationId": loc})).await)
        }
        // The first allowed call finishes it; later ones are conflicts, not refusals.
        Operation::EncounterFinish => unit(v.finish_encounter(a, pur, &w.encounters[s]).await),
        Operation::EncounterRead => unit(v.read_encounter(a, pur, &w.encounters[s]).await),
        Operation::EncounterList => unit(v.patient_encounters(a, pur, pid).await),
        // On a finished encounter this is a conflict for those allowed.
        Operation::NoteCreate => unit(v.create_note(a, pur, &w.encounters[s], &json!({"subjective": "x"}), None).await),
        // Not the author: refused as such (not a permission refusal) for those allowed.
        Operation::NoteUpdate => unit(v.update_note(a, pur, &w.notes[s], &json!({"subjective": "y"})).await),
        Operation::NoteSign => unit(v.sign_note(a, pur, &w.notes[s]).await),
        // The note is a draft: a conflict for those allowed.
        Operation::NoteAddendum => unit(v.add_addendum(a, pur, &w.notes[s], "addendum").await),
        Operation::NoteCosign => unit(v.cosign_note(a, pur, &w.notes[s]).await),
        Operation::NoteRead => unit(v.read_note(a, pur, &w.notes[s]).await),
        Operation::NoteList => unit(v.patient_notes(a, pur, pid).await),
        Operation::ConditionCreate => unit(v.add_condition(a, pur, &w.encounters[s], "E11.9", None).await),
        Operation::ConditionList => unit(v.patient_conditions(a, pur, pid).await),
        Operation::DocumentUpload => unit(v.upload_document(a, pur, matrix_document(pid)).await),
        Operation::DocumentList => unit(v.patient_documents(a, pur, pid).await),
        Operation::DocumentDownload => unit(v.download_document(a, pur, &w.documents[s]).await.map(|d| d.content_type)),
        Operation::ConsentSign => unit(v.sign_consent(a, pur, matrix_consent(pid)).await),
        Operation::ConsentRevoke => unit(v.revoke_consent(a, pur, &w.consents[s]).await),
        Operation::ConsentList => unit(v.patient_consents(a, pur, pid).await),
        Operation::ConsentPdf => unit(v.consent_pdf(a, pur, &w.consents[s]).await),
        Operation::ConsentTemplateAdd => {
            let t = carevault_domain::consent::builtin_template(carevault_domain::consent::ConsentKind::Telehealth);
            unit(v.add_consent_template(a, "telehealth", &t.title, &t.body).await)
        }
        Operation::ConsentTemplateList => unit(v.consent_templates(a).await),
        Operation::CodeSearch => unit(v.search_icd10(a, "E11", 5).await),
        Operation::AuditRead => unit(v.audit_events(a, 0, 5).await),
        Operation::AuditVerify => unit(v.verify_audit_as(a).await),
        Operation::AuditExport => unit(v.audit_export_csv(a, &carevault_core::AuditQuery::default()).await),
        Operation::PrivacyAlerts => unit(v.alerts(a, "privacy", true).await),
        Operation::ApprovalList => unit(v.approvals(a, "pending").await),
        // An unknown request: not found for those allowed.
        Operation::ApprovalDecide => unit(v.approve(a, "ap-000000000000000000000000").await),
        Operation::PrivacyAlertClose => v.close_alert(a, &w.privacy_alert).await,
        Operation::SecurityAlerts => unit(v.alerts(a, "security", true).await),
        Operation::SecurityAlertClose => v.close_alert(a, &w.security_alert).await,
        Operation::OwnSessions => unit(v.my_sessions(a).await),
        Operation::OwnPasswordChange => v.change_password(a, "wrong current password", "tulip marble orbit canyon").await,
        Operation::OwnRecoveryCodes => unit(v.recovery_codes_left(a).await.map(|_| ())).and(unit(v.generate_recovery_codes(a).await)),
        Operation::OwnReauthenticate => v.reauthenticate(a, "wrong password", "000000").await,
        Operation::OwnPasskeys => unit(v.my_passkeys(a).await),
    }
}

fn unit<T>(r: Result<T, CoreError>) -> Result<(), CoreError> {
    r.map(|_| ())
}

fn hex(a: &Actor) -> String {
    a.user_id().as_str().chars().take(8).collect()
}

/// The matrix: every core operation × every built-in role × scenario, against the hand-written
/// policy. An operation missing from the table fails the test.
#[tokio::test]
async fn authorization_matrix() {
    let w = setup().await;
    let table = expected();
    for op in Operation::ALL {
        assert!(table.contains_key(op.id()), "operation {} is missing from the matrix", op.id());
    }
    // The setup admin and a role-less observer must not be the actors under test.
    let mut expired = Vec::new();
    for role in Role::ALL {
        expired.push(expired_actor(&w, *role).await);
    }
    // Signed in last, so step-up (break-glass) finds a fresh sign-in; each has a care
    // relationship with the "own" and the flagged patient.
    let mut actors = Vec::new();
    for role in Role::ALL {
        let (a, _) = w.tv.staff_in(role.id(), None).await.expect("actor");
        let id = a.user_id().to_string();
        w.tv.vault.add_care_team_member(&w.fd_a, w.fd_a.default_purpose(), &w.patients[OWN], &id, "care-team", None).await.expect("own");
        w.tv.vault
            .add_care_team_member(&w.doc_a, w.doc_a.default_purpose(), &w.patients[FLAG], &id, "care-team", None)
            .await
            .expect("flag");
        actors.push(a);
    }
    let mut failures = Vec::new();
    // Break-glass itself runs last: once opened (scenario "flag"), it would open that patient
    // for the operations after it.
    let mut ops: Vec<Operation> = Operation::ALL.to_vec();
    ops.sort_by_key(|o| *o == Operation::BreakGlassOpen);
    for op in &ops {
        let cells = &table[op.id()];
        for (i, role) in Role::ALL.iter().enumerate() {
            let a = &actors[i];
            if op.on_patient() && *op != Operation::PatientCreate {
                for s in [OWN, OTHER, ORG2, FLAG, BG] {
                    if s == BG {
                        let _ = w.tv.vault.break_glass(a, &w.patients[BG], "medical-emergency", "").await;
                    }
                    let want = cells[i].as_bytes()[s] == b'Y';
                    let got = allowed(&run(&w, a, *op, s).await);
                    if want != got {
                        failures.push(format!("{} / {role} / scenario {s}: expected {want}, got {got}", op.id()));
                    }
                }
            } else {
                let want = cells[i] == "Y";
                let got = allowed(&run(&w, a, *op, OWN).await);
                if want != got {
                    failures.push(format!("{} / {role} / own organization: expected {want}, got {got}", op.id()));
                }
                if op.class() == carevault_domain::DataClass::Administrative && op.permission().is_some() {
                    let other = allowed(&run(&w, a, *op, ORG2).await);
                    let scoped = matches!(
                        op,
                        Operation::UserCreate
                            | Operation::UserDeactivate
                            | Operation::UserReactivate
                            | Operation::UserMfaReset
                            | Operation::AssignmentAdd
                            | Operation::GrantAdd
                            | Operation::GrantList
                            | Operation::SessionListUser
                            | Operation::SessionEndUser
                            | Operation::PractitionerCreate
                            | Operation::AvailabilitySet
                            | Operation::ClosureAdd
                            | Operation::SlotSearch
                            | Operation::AppointmentTypeAdd
                            | Operation::AppointmentTypeList
                    );
                    if scoped && other {
                        failures.push(format!("{} / {role} / other organization: allowed", op.id()));
                    }
                }
            }
            // With an expired assignment only the own account's operations remain.
            let want_expired = op.permission().is_none();
            let got = allowed(&run(&w, &expired[i], *op, OWN).await);
            if got != want_expired {
                failures.push(format!("{} / {role} / expired assignment: expected {want_expired}, got {got}", op.id()));
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
}

/// A user whose only assignment of `role` has expired.
async fn expired_actor(w: &World, role: Role) -> Actor {
    let v = &w.tv.vault;
    let (admin, _) = w.tv.staff_in("practice_admin", None).await.expect("admin");
    let (_, staff) = w.tv.staff_in("auditor", None).await.expect("base");
    let until = w.tv.clock.now_secs() as i64 + 60;
    let r = v
        .add_assignment(&admin, &staff.id, role.id(), ScopeInput { organization_id: "default".into(), ..Default::default() }, Some(until))
        .await;
    if let Err(CoreError::ApprovalPending { id }) = r {
        let (officer, _) = w.tv.staff_in("security_officer", None).await.expect("officer");
        v.approve(&officer, &id).await.expect("approve expiring assignment");
    } else {
        r.expect("expiring assignment");
    }
    let users = v.list_users(&admin).await.expect("users");
    let base = users
        .iter()
        .find(|u| u.id == staff.id)
        .expect("user")
        .assignments
        .iter()
        .find(|x| x.expires_at.is_none())
        .expect("base")
        .id
        .clone();
    v.remove_assignment(&admin, &base).await.expect("remove base");
    w.tv.clock.advance_secs(61);
    sign_in(w, &staff).await
}

async fn sign_in(w: &World, staff: &Staff) -> Actor {
    w.tv.clock.advance_secs(30);
    w.tv.sign_in(staff).await.expect("sign in")
}

#[tokio::test]
async fn deactivation_cuts_a_live_session_and_role_changes_end_sessions() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (_admin_keep, _) = tv.staff_in("practice_admin", None).await.expect("admin");
    let (admin, _) = tv.staff_in("practice_admin", None).await.expect("admin");
    let (nurse, nurse_staff) = tv.staff_in("nurse", None).await.expect("nurse");
    let ctx = carevault_core::RequestContext::default();
    assert!(v.my_sessions(&nurse).await.is_ok());
    v.deactivate_user(&admin, &nurse_staff.id).await.expect("deactivate");
    // The live actor's next request: its session is gone.
    assert!(matches!(v.authenticate(&ctx, Some("stale")).await, Err(CoreError::Unauthenticated)));
    assert!(v.my_sessions(&nurse).await.expect("own op").is_empty(), "no session survives");
    tv.clock.advance_secs(30);
    assert!(tv.sign_in(&nurse_staff).await.is_err(), "a deactivated account cannot sign in");
    v.reactivate_user(&admin, &nurse_staff.id).await.expect("reactivate");
    let nurse = sign_in_again(&tv, &nurse_staff).await;
    // A role change ends the sessions that hold the old privileges.
    let users = v.list_users(&admin).await.expect("users");
    let asg = users.iter().find(|u| u.id == nurse_staff.id).expect("nurse").assignments[0].id.clone();
    v.remove_assignment(&admin, &asg).await.expect("remove");
    assert!(v.my_sessions(&nurse).await.expect("own").is_empty());
    // Self-deactivation and removing the last admin are refused.
    let me = admin.user_id().to_string();
    assert!(matches!(v.deactivate_user(&admin, &me).await, Err(CoreError::Refused { reason: "self-deactivation", .. })));
    let mine = v.list_users(&admin).await.expect("users").into_iter().find(|u| u.id == me).expect("me").assignments[0].id.clone();
    v.deactivate_user(&admin, &_admin_keep.user_id().to_string()).await.expect("deactivate the other admin");
    assert!(matches!(v.remove_assignment(&admin, &mine).await, Err(CoreError::Refused { reason: "last-admin", .. })));
}

async fn sign_in_again(tv: &TestVault, staff: &Staff) -> Actor {
    tv.clock.advance_secs(30);
    tv.sign_in(staff).await.expect("sign in")
}

#[tokio::test]
async fn break_glass_opens_one_patient_for_its_window_with_alert_and_review() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (fd, _) = tv.staff_in("front_desk", None).await.expect("fd");
    let (doc, _) = tv.staff_in("physician", None).await.expect("doc");
    let (privacy, _) = tv.staff_in("privacy_officer", None).await.expect("privacy");
    let p1 = v.create_patient(&fd, fd.default_purpose(), &patient("Glassone")).await.expect("p1").id.to_string();
    let p2 = v.create_patient(&fd, fd.default_purpose(), &patient("Glasstwo")).await.expect("p2").id.to_string();
    let t = doc.default_purpose();
    assert!(matches!(v.patient_allergies(&doc, t, &p1).await, Err(CoreError::Forbidden { reason: "no-care-relationship", .. })));
    // Unknown reason, and "other" without text: refused.
    let r = v.break_glass(&doc, &p1, "curious", "").await;
    assert!(matches!(r, Err(CoreError::Invalid(_))), "{r:?}");
    assert!(matches!(v.break_glass(&doc, &p1, "other", " ").await, Err(CoreError::Invalid(_))));
    // Step-up: an old sign-in is not enough.
    tv.clock.advance_secs(6 * 60);
    assert!(matches!(v.break_glass(&doc, &p1, "medical-emergency", "").await, Err(CoreError::ReauthRequired)));
    let (doc, _) = tv.staff_in("physician", None).await.expect("a freshly signed-in physician");
    let bg = v.break_glass(&doc, &p1, "medical-emergency", "unconscious in the waiting room").await.expect("glass");
    assert_eq!(bg.expires_at - bg.opened_at, 60 * 60 * 1_000_000);
    assert!(v.patient_allergies(&doc, t, &p1).await.is_ok(), "open for this patient");
    assert!(v.patient_allergies(&doc, t, &p2).await.is_err(), "and only this one");
    // The alert and the review item.
    let alerts = v.alerts(&privacy, "privacy", true).await.expect("alerts");
    assert!(alerts.iter().any(|a| a.kind == "break-glass" && a.patient_id.as_deref() == Some(&p1)));
    let queue = v.break_glass_queue(&privacy, "open").await.expect("queue");
    let item = queue.iter().find(|q| q.id == bg.id).expect("review item");
    assert_eq!(item.reason_text.as_deref(), Some("unconscious in the waiting room"));
    // The audit marks the access.
    let (auditor, _) = tv.staff_in("auditor", None).await.expect("auditor");
    let events = v.audit_events(&auditor, 0, 1000).await.expect("events");
    assert!(events.iter().any(|e| e.patient_id.as_deref() == Some(&p1) && e.review_flags.as_deref() == Some("break-glass")));
    // Exactly its window.
    tv.clock.advance_secs(60 * 60 - 2);
    assert!(v.patient_allergies(&doc, t, &p1).await.is_ok(), "still open just before the end");
    tv.clock.advance_secs(2);
    assert!(matches!(v.patient_allergies(&doc, t, &p1).await, Err(CoreError::Forbidden { reason: "no-care-relationship", .. })));
    // Nobody closes their own review; an officer closes it with an outcome.
    assert!(matches!(v.close_break_glass_review(&privacy, &bg.id, "inappropriate", "").await, Err(CoreError::Invalid(_))));
    v.close_break_glass_review(&privacy, &bg.id, "appropriate", "").await.expect("close");
    assert!(v.break_glass_queue(&privacy, "open").await.expect("queue").iter().all(|q| q.id != bg.id));
}

/// Audit search: by user, patient, action and time range (from inclusive, to exclusive), newest
/// first, paged by sequence number, audited; the CSV export needs audit.export and a recent
/// sign-in, is audited as an export and holds the plain columns only.
#[tokio::test]
async fn audit_search_filters_and_the_csv_export() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (fd, _) = tv.staff_in("front_desk", None).await.expect("fd");
    let (doc, doc_staff) = tv.staff_in("physician", None).await.expect("doc");
    let (security, _) = tv.staff_in("security_officer", None).await.expect("security");
    let (privacy, _) = tv.staff_in("privacy_officer", None).await.expect("privacy");
    let p1 = v.create_patient(&fd, fd.default_purpose(), &patient("Auditone")).await.expect("p1").id.to_string();
    let p2 = v.create_patient(&fd, fd.default_purpose(), &patient("Audittwo")).await.expect("p2").id.to_string();
    tv.clock.advance_secs(60);
    let t0 = v.now_micros();
    v.read_patient(&doc, doc.default_purpose(), &p1).await.expect("read p1");
    v.read_patient(&doc, doc.default_purpose(), &p2).await.expect("read p2");
    tv.clock.advance_secs(60);
    let t1 = v.now_micros();
    v.read_patient(&fd, fd.default_purpose(), &p1).await.expect("fd reads p1");
    let (auditor, auditor_staff) = tv.staff_in("auditor", None).await.expect("auditor");
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    };

    // By patient: its creation and both reads, newest first, nothing about p2.
    let rows = v.audit_search(&auditor, &q(&|q| q.patient = Some(p1.clone()))).await.expect("by patient");
    assert!(rows.iter().all(|e| e.patient_id.as_deref() == Some(&p1) || e.resource_id.as_deref() == Some(&p1)), "{rows:?}");
    assert!(rows.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    assert_eq!(rows.iter().filter(|e| e.action == "read").count(), 2);
    assert!(rows.iter().any(|e| e.action == "create"));
    // By user (username or actor column) and action.
    let by_doc = v.audit_search(&auditor, &q(&|q| q.user = Some(doc_staff.username.clone()))).await.expect("by user");
    assert!(!by_doc.is_empty() && by_doc.iter().all(|e| e.actor == format!("user:{}", doc_staff.id)));
    assert!(by_doc.iter().all(|e| e.username.as_deref() == Some(doc_staff.username.as_str())));
    let reads = v
        .audit_search(
            &auditor,
            &q(&|q| {
                q.user = Some(format!("user:{}", doc_staff.id));
                q.action = Some("read".into());
            }),
        )
        .await
        .expect("by user and action");
    assert_eq!(reads.len(), 2);
    // Time range: from is inclusive, to exclusive.
    let fmt = carevault_core::format_instant;
    let window = v
        .audit_search(
            &auditor,
            &q(&|q| {
                q.from = Some(fmt(t0));
                q.to = Some(fmt(t1));
                q.action = Some("read".into());
            }),
        )
        .await
        .expect("window");
    assert_eq!(window.len(), 2, "{window:?}");
    assert!(window.iter().all(|e| e.at >= t0 && e.at < t1 && e.actor == format!("user:{}", doc_staff.id)));
    let from_t1 = v.audit_search(&auditor, &q(&|q| q.from = Some(fmt(t1)))).await.expect("from t1");
    assert!(from_t1.iter().all(|e| e.at >= t1) && from_t1.iter().any(|e| e.at == t1));
    // Paging back by sequence number.
    let page1 = v.audit_search(&auditor, &q(&|q| q.limit = Some(2))).await.expect("page 1");
    assert_eq!(page1.len(), 2);
    let last = page1[1].seq;
    let older = q(&|q| {
        q.limit = Some(2);
        q.before = Some(last);
    });
    let page2 = v.audit_search(&auditor, &older).await.expect("page 2");
    assert!(page2.iter().all(|e| e.seq < last) && page2.len() == 2);
    // Bad filters are refused precisely, and audited.
    for bad in [
        q(&|q| q.action = Some("frobnicate".into())),
        q(&|q| q.patient = Some("not a patient id!".into())),
        q(&|q| q.user = Some("nobody-here".into())),
        q(&|q| q.from = Some("14/03/2027".into())),
        q(&|q| {
            q.from = Some(fmt(t1));
            q.to = Some(fmt(t0));
        }),
    ] {
        assert!(matches!(v.audit_search(&auditor, &bad).await, Err(CoreError::Invalid(_))), "{bad:?}");
    }
    // Searching is itself recorded, with the patient it was about.
    let mine = v.audit_search(&privacy, &q(&|q| q.user = Some(auditor_staff.username.clone()))).await.expect("auditor's trail");
    assert!(mine
        .iter()
        .any(|e| e.action == "search" && e.resource_type.as_deref() == Some("AuditEvent") && e.patient_id.as_deref() == Some(&p1)));
    assert!(mine.iter().any(|e| e.action == "search" && e.outcome == "invalid"));
    // Reading the log needs audit.read.
    assert!(matches!(v.audit_search(&fd, &AuditQuery::default()).await, Err(CoreError::Forbidden { .. })));

    // Export: not the security officer (reads in place), not the front desk.
    assert!(matches!(v.audit_export_csv(&security, &AuditQuery::default()).await, Err(CoreError::Forbidden { .. })));
    assert!(matches!(v.audit_export_csv(&fd, &AuditQuery::default()).await, Err(CoreError::Forbidden { .. })));
    let csv = v.audit_export_csv(&auditor, &q(&|q| q.patient = Some(p1.clone()))).await.expect("export");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "time,sequence,user,action,outcome,resource type,resource id,patient,purpose,source ip,review flags,patients disclosed"
    );
    assert_eq!(lines.len() - 1, rows.len() + 1, "the records of p1 and the auditor's search about p1");
    assert!(lines[1..].iter().all(|l| l.split(',').count() == 12 && l.contains(&p1)));
    assert!(csv.contains(&doc_staff.username));
    let exported = v.audit_search(&privacy, &q(&|q| q.action = Some("export".into()))).await.expect("exports");
    assert!(exported.iter().any(|e| e.actor == format!("user:{}", auditor_staff.id) && e.outcome == "success"));
    // Step-up: a sign-in older than the step-up window is not enough (refused and audited).
    tv.clock.advance_secs(6 * 60);
    assert!(matches!(v.audit_export_csv(&auditor, &AuditQuery::default()).await, Err(CoreError::ReauthRequired)));
    assert!(matches!(v.audit_export_csv(&privacy, &AuditQuery::default()).await, Err(CoreError::ReauthRequired)));
    let (privacy, _) = tv.staff_in("privacy_officer", None).await.expect("a freshly signed-in privacy officer");
    assert!(v.audit_export_csv(&privacy, &AuditQuery::default()).await.is_ok());
    let refused = v
        .audit_search(
            &privacy,
            &q(&|q| {
                q.user = Some(auditor_staff.username.clone());
                q.action = Some("access-denied".into());
            }),
        )
        .await
        .expect("refusals");
    assert!(!refused.is_empty());
}

#[test]
fn audit_csv_quotes_as_rfc_4180() {
    let e = carevault_core::AuditEventView {
        seq: 7,
        at: 0,
        actor: "system:a,b".into(),
        action: "read".into(),
        outcome: "success".into(),
        resource_type: Some("Patient".into()),
        resource_id: None,
        patient_id: None,
        purpose: Some("TREAT".into()),
        review_flags: Some("sensitive:vip break-glass".into()),
        patients: vec!["p1".into(), "p2".into()],
        username: None,
        source_ip: Some("say \"hi\"\nthere".into()),
    };
    let csv = carevault_core::audit_csv(&[e]);
    assert_eq!(
        csv.split("\r\n").nth(1),
        Some("1970-01-01T00:00:00.000Z,7,\"system:a,b\",read,success,Patient,,,TREAT,\"say \"\"hi\"\"\nthere\",sensitive:vip break-glass,p1 p2")
    );
}

#[tokio::test]
async fn passwords_grants_and_self_elevation() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    // A common password from the bundled breached list is refused, with the reason.
    let e = v.add_user_in("common.pw", "nurse", None, "Qwerty123456").await.expect_err("common");
    assert!(e.to_string().contains("commonly used"), "{e}");
    let (admin, _) = tv.staff_in("practice_admin", None).await.expect("admin");
    let (_, nurse) = tv.staff_in("nurse", None).await.expect("nurse");
    let now = tv.clock.now_secs() as i64;
    let base = GrantRequest {
        user_id: nurse.id.clone(),
        permission: "sensitive.vip.access".into(),
        organization_id: "default".into(),
        ends_at: now + 3600,
        reason: "covering the VIP clinic this week".into(),
        ..Default::default()
    };
    for (bad, code) in [
        (GrantRequest { permission: "patient.everything".into(), ..base.clone() }, "permission"),
        (GrantRequest { ends_at: now - 1, ..base.clone() }, "ends_at"),
        (GrantRequest { ends_at: now + 90 * 86_400, ..base.clone() }, "ends_at"),
        (GrantRequest { reason: "  ".into(), ..base.clone() }, "reason"),
    ] {
        match v.add_grant(&admin, &bad).await {
            Err(CoreError::Invalid(e)) => assert_eq!(e.path.as_deref(), Some(code)),
            other => panic!("{code}: {other:?}"),
        }
    }
    let me = GrantRequest { user_id: admin.user_id().to_string(), ..base.clone() };
    assert!(matches!(v.add_grant(&admin, &me).await, Err(CoreError::Refused { reason: "self-elevation", .. })));
    let mine = v
        .add_assignment(
            &admin,
            admin.user_id().as_str(),
            "physician",
            ScopeInput { organization_id: "default".into(), ..Default::default() },
            None,
        )
        .await;
    assert!(matches!(mine, Err(CoreError::Refused { reason: "self-elevation", .. })));
    assert!(matches!(
        v.add_assignment(&admin, &nurse.id, "superuser", ScopeInput { organization_id: "default".into(), ..Default::default() }, None)
            .await,
        Err(CoreError::Invalid(_))
    ));
    // A VIP grant reaches PHI: it exists only once an officer other than the requester approves.
    let pending = v.add_grant(&admin, &base).await;
    let Err(CoreError::ApprovalPending { id: approval }) = pending else { panic!("grant: {pending:?}") };
    assert!(v.list_grants(&admin, Some(&nurse.id)).await.expect("list").is_empty(), "nothing before approval");
    let (privacy, _) = tv.staff_in("privacy_officer", None).await.expect("privacy officer");
    v.approve(&privacy, &approval).await.expect("approve");
    let g = v.list_grants(&admin, Some(&nurse.id)).await.expect("list").pop().expect("grant");
    assert!(g.active);
    let grants = v.list_grants(&admin, Some(&nurse.id)).await.expect("list");
    assert_eq!(grants.len(), 1);
    v.revoke_grant(&admin, &g.id).await.expect("revoke");
    assert!(!v.list_grants(&admin, Some(&nurse.id)).await.expect("list")[0].active);
}

#[tokio::test]
async fn unused_accounts_are_deactivated_after_the_configured_period() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (_, idle) = tv.staff_in("biller", None).await.expect("idle user");
    let (sec, _) = tv.staff_in("security_officer", None).await.expect("security");
    // 89 days: nothing happens.
    tv.clock.advance_secs(89 * 86_400);
    assert_eq!(v.deactivate_unused_accounts().await.expect("job"), 0);
    let (_, recent) = tv.staff_in("nurse", None).await.expect("recent user");
    tv.clock.advance_secs(2 * 86_400);
    // 91 days after their last sign-in, the two older accounts (not the recent one) go.
    assert_eq!(v.deactivate_unused_accounts().await.expect("job"), 2);
    tv.clock.advance_secs(30);
    assert!(tv.sign_in(&idle).await.is_err(), "a deactivated account cannot sign in");
    assert!(tv.sign_in(&recent).await.is_ok(), "the recently used account is untouched");
    let (sec2, _) = tv.staff_in("security_officer", None).await.expect("security");
    let alerts = v.alerts(&sec2, "security", true).await.expect("alerts");
    assert_eq!(alerts.iter().filter(|a| a.kind == "account-inactive").count(), 2);
    assert!(alerts.iter().any(|a| a.subject_user.as_deref() == Some(idle.id.as_str())));
    assert!(alerts.iter().any(|a| a.subject_user.as_deref() == Some(sec.user_id().as_str())));
}

/// Officers see and close only their own organization's break-glass reviews and alerts, and
/// nobody creates their own care relationship.
#[tokio::test]
async fn officers_stay_in_their_organization_and_relationships_are_not_self_made() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let org_b = v.add_unit("organization", "Other Clinic", None, None, None).await.expect("org b");
    let (fd, _) = tv.staff_in("front_desk", None).await.expect("fd");
    let (doc, _) = tv.staff_in("physician", None).await.expect("doc");
    let (privacy_a, _) = tv.staff_in("privacy_officer", None).await.expect("privacy a");
    let (privacy_b, _) = tv.staff_in("privacy_officer", Some(&org_b)).await.expect("privacy b");
    let pid = v.create_patient(&fd, fd.default_purpose(), &patient("Elsewhere")).await.expect("patient").id.to_string();
    // A physician cannot make their own relationship; break-glass is the way in.
    let me = doc.user_id().to_string();
    assert!(matches!(
        v.add_care_team_member(&doc, doc.default_purpose(), &pid, &me, "care-team", None).await,
        Err(CoreError::Refused { reason: "self-elevation", .. })
    ));
    assert!(matches!(v.patient_allergies(&doc, doc.default_purpose(), &pid).await, Err(CoreError::Forbidden { .. })));
    let bg = v.break_glass(&doc, &pid, "medical-emergency", "collapsed").await.expect("glass");
    // The other clinic's officer sees neither the review nor the alert, and cannot close them.
    assert!(v.break_glass_queue(&privacy_b, "open").await.expect("queue").is_empty());
    assert!(v.alerts(&privacy_b, "privacy", true).await.expect("alerts").is_empty());
    assert!(matches!(v.close_break_glass_review(&privacy_b, &bg.id, "appropriate", "").await, Err(CoreError::Forbidden { .. })));
    let alert = v.alerts(&privacy_a, "privacy", true).await.expect("alerts");
    assert_eq!(alert.len(), 1);
    assert!(matches!(v.close_alert(&privacy_b, &alert[0].id).await, Err(CoreError::Forbidden { .. })));
    // The own clinic's officer does both.
    assert_eq!(v.break_glass_queue(&privacy_a, "open").await.expect("queue").len(), 1);
    v.close_break_glass_review(&privacy_a, &bg.id, "appropriate", "").await.expect("close review");
    v.close_alert(&privacy_a, &alert[0].id).await.expect("close alert");
}

fn matrix_document(pid: &str) -> carevault_core::DocumentUpload {
    carevault_core::DocumentUpload {
        patient_id: pid.into(),
        encounter_id: None,
        title: "Matrix letter".into(),
        content_type: Some("text/plain".into()),
        content: b"matrix document".to_vec(),
    }
}

fn matrix_consent(pid: &str) -> carevault_core::ConsentRequest {
    carevault_core::ConsentRequest {
        patient_id: pid.into(),
        kind: "treatment".into(),
        template_version: 1,
        signer_typed_name: "Matrix Signer".into(),
        signer_relationship: None,
        signature: carevault_domain::consent::DrawnSignature {
            width: 600,
            height: 200,
            strokes: vec![vec![[10, 10], [200, 150], [400, 40]]],
        },
        recipient: None,
        purpose: None,
        scope: None,
        expires: None,
        device: "matrix".into(),
        ip: "127.0.0.1".into(),
    }
}
