use serde_json::json;

use super::*;
use crate::error::IssueCode;

fn ctx() -> AllergyContext {
    AllergyContext { today: time::macros::date!(2026 - 11 - 23) }
}

fn parse(v: &Value) -> Result<AllergySubmission, InputError> {
    parse_allergy(v.to_string().as_bytes(), &ctx())
}

fn active() -> Value {
    json!({"coding": [{"system": CLINICAL_STATUS_SYSTEM, "code": "active"}]})
}

fn verification(code: &str) -> Value {
    json!({"coding": [{"system": VERIFICATION_STATUS_SYSTEM, "code": code}]})
}

/// A minimal valid body with `key` set to `value` (or removed when `value` is null).
fn with(key: &str, value: Value) -> Value {
    let mut b = json!({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": active(),
        "code": {"text": "Penicillin"},
        "patient": {"reference": "Patient/p-1"}
    });
    if let Some(o) = b.as_object_mut() {
        if value.is_null() {
            o.remove(key);
        } else {
            o.insert(key.to_string(), value);
        }
    }
    b
}

fn full() -> Value {
    json!({
        "resourceType": "AllergyIntolerance",
        "id": "a-17",
        "meta": {"versionId": "9", "lastUpdated": "2020-01-01T00:00:00Z"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "clinicalStatus": {"coding": [{"system": CLINICAL_STATUS_SYSTEM, "code": "active", "display": "Active"}]},
        "verificationStatus": verification("confirmed"),
        "type": "allergy",
        "category": ["medication", "food"],
        "criticality": "high",
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "764146007", "display": "Penicillin"}],
            "text": "Penicillin G"
        },
        "patient": {"reference": "Patient/0b8a6f2e-1c1d-4a4e-9f1e-2f0c3a5b6d7e"},
        "onsetDateTime": "2004",
        "recordedDate": "2026-11-22T14:30:05.123+02:00",
        "reaction": [
            {
                "manifestation": [
                    {"coding": [{"system": "http://snomed.info/sct", "code": "39579001", "display": "Anaphylactic reaction"}]},
                    {"text": "Hives, itching"}
                ],
                "severity": "severe",
                "description": "Throat swelling within 10 minutes of first dose."
            },
            {"manifestation": [{"text": "Rash"}]}
        ],
        "note": [{"text": "Confirmed by allergist (2005)."}, {"text": "Carries an epinephrine auto-injector."}]
    })
}

#[test]
fn full_example_round_trips() {
    let s = parse(&full()).expect("valid");
    assert_eq!(s.id.as_deref(), Some("a-17"));
    assert_eq!(s.patient_id, "0b8a6f2e-1c1d-4a4e-9f1e-2f0c3a5b6d7e");
    let d = &s.data;
    assert_eq!(d.clinical_status, Some(ClinicalStatus::Active));
    assert_eq!(d.verification_status, Some(VerificationStatus::Confirmed));
    assert_eq!(d.type_, Some(AllergyType::Allergy));
    assert_eq!(d.category, vec![AllergyCategory::Medication, AllergyCategory::Food]);
    assert_eq!(d.criticality, Some(Criticality::High));
    assert_eq!(d.reaction.len(), 2);
    assert_eq!(d.reaction[0].severity, Some(Severity::Severe));
    assert_eq!(d.note.len(), 2);

    let fhir = d.to_fhir("a-17", &s.patient_id, 3, "2026-11-23T10:00:00Z");
    assert_eq!(fhir["resourceType"], "AllergyIntolerance");
    assert_eq!(fhir["meta"]["versionId"], "3");
    assert_eq!(fhir["meta"]["lastUpdated"], "2026-11-23T10:00:00Z");
    assert_eq!(fhir["patient"]["reference"], "Patient/0b8a6f2e-1c1d-4a4e-9f1e-2f0c3a5b6d7e");
    assert_eq!(fhir["clinicalStatus"]["coding"][0]["system"], CLINICAL_STATUS_SYSTEM);
    assert_eq!(fhir["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert_eq!(fhir["onsetDateTime"], "2004");
    assert_eq!(fhir["recordedDate"], "2026-11-22T14:30:05.123+02:00");
    assert_eq!(fhir["reaction"][0]["severity"], "severe");
    assert_eq!(fhir["note"][1]["text"], "Carries an epinephrine auto-injector.");
    assert!(fhir.get("text").is_none());

    let again = parse(&fhir).expect("rendered resource parses");
    assert_eq!(again, s);

    // The sealed form (JSON bytes) round-trips too.
    let bytes = serde_json::to_vec(d).expect("serialize");
    let back: AllergyData = serde_json::from_slice(&bytes).expect("deserialize");
    assert_eq!(&back, d);
}

#[test]
fn minimal_example_round_trips() {
    let s = parse(&with("id", Value::Null)).expect("valid");
    assert_eq!(s.id, None);
    let again = parse(&s.data.to_fhir("x", &s.patient_id, 1, "2026-11-23T10:00:00Z")).expect("valid");
    assert_eq!(again.data, s.data);
    // Entered in error, no clinical status: valid (ait-1 does not apply, ait-2 holds).
    let mut b = with("clinicalStatus", Value::Null);
    b["verificationStatus"] = verification("entered-in-error");
    let s = parse(&b).expect("valid");
    let fhir = s.data.to_fhir("x", &s.patient_id, 2, "2026-11-23T10:00:00Z");
    assert!(fhir.get("clinicalStatus").is_none());
    assert_eq!(parse(&fhir).expect("valid").data, s.data);
}

#[test]
fn invariants_ait_1_and_ait_2() {
    // ait-1: no clinicalStatus and no verificationStatus.
    let e = parse(&with("clinicalStatus", Value::Null)).expect_err("ait-1");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("AllergyIntolerance.clinicalStatus")));
    assert!(e.message.contains("ait-1"));
    // ait-1: verificationStatus other than entered-in-error.
    for code in ["unconfirmed", "confirmed", "refuted"] {
        let mut b = with("clinicalStatus", Value::Null);
        b["verificationStatus"] = verification(code);
        let e = parse(&b).expect_err(code);
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("AllergyIntolerance.clinicalStatus")), "{code}");
    }
    // ait-2: entered-in-error with a clinicalStatus.
    let e = parse(&with("verificationStatus", verification("entered-in-error"))).expect_err("ait-2");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Invalid, Some("AllergyIntolerance.clinicalStatus")));
    assert!(e.message.contains("ait-2"));
}

#[test]
fn bad_values_give_precise_codes_and_paths() {
    use IssueCode::{NotSupported, Required, Structure};
    let cs = |c: Value| with("clinicalStatus", c);
    let reaction = |r: Value| with("reaction", json!([r]));
    let cases: Vec<(Value, IssueCode, &str)> = vec![
        // clinicalStatus / verificationStatus
        (
            cs(json!({"coding": [{"system": CLINICAL_STATUS_SYSTEM, "code": "gone"}]})),
            IssueCode::Value,
            "AllergyIntolerance.clinicalStatus.coding[0].code",
        ),
        (
            cs(json!({"coding": [{"system": "http://example.org/cs", "code": "active"}]})),
            IssueCode::Value,
            "AllergyIntolerance.clinicalStatus.coding[0].system",
        ),
        (cs(json!({"coding": [{"code": "active"}]})), Required, "AllergyIntolerance.clinicalStatus.coding[0].system"),
        (cs(json!({"coding": [{"system": CLINICAL_STATUS_SYSTEM}]})), Required, "AllergyIntolerance.clinicalStatus.coding[0].code"),
        (cs(json!({"coding": []})), Required, "AllergyIntolerance.clinicalStatus.coding"),
        (cs(json!({"text": "active"})), NotSupported, "AllergyIntolerance.clinicalStatus"),
        (cs(json!("active")), Structure, "AllergyIntolerance.clinicalStatus"),
        (
            cs(json!({"coding": [{"system": CLINICAL_STATUS_SYSTEM, "code": 1}]})),
            Structure,
            "AllergyIntolerance.clinicalStatus.coding[0].code",
        ),
        (
            cs(json!({"coding": [{"system": CLINICAL_STATUS_SYSTEM, "code": "active", "display": "<b>"}]})),
            IssueCode::Value,
            "AllergyIntolerance.clinicalStatus.coding[0].display",
        ),
        (
            cs(
                json!({"coding": [{"system": CLINICAL_STATUS_SYSTEM, "code": "active"}, {"system": CLINICAL_STATUS_SYSTEM, "code": "active"}]}),
            ),
            NotSupported,
            "AllergyIntolerance.clinicalStatus.coding[1]",
        ),
        (with("verificationStatus", verification("maybe")), IssueCode::Value, "AllergyIntolerance.verificationStatus.coding[0].code"),
        (
            with("verificationStatus", json!({"coding": [{"system": CLINICAL_STATUS_SYSTEM, "code": "confirmed"}]})),
            IssueCode::Value,
            "AllergyIntolerance.verificationStatus.coding[0].system",
        ),
        // type, category, criticality
        (with("type", json!("sensitivity")), IssueCode::Value, "AllergyIntolerance.type"),
        (with("type", json!(["allergy"])), Structure, "AllergyIntolerance.type"),
        (with("category", json!(["food", "drug"])), IssueCode::Value, "AllergyIntolerance.category[1]"),
        (with("category", json!(["food", "food"])), IssueCode::Value, "AllergyIntolerance.category[1]"),
        (with("category", json!("food")), Structure, "AllergyIntolerance.category"),
        (with("criticality", json!("medium")), IssueCode::Value, "AllergyIntolerance.criticality"),
        // code
        (with("code", json!({})), Required, "AllergyIntolerance.code"),
        (with("code", json!({"coding": []})), Required, "AllergyIntolerance.code"),
        (with("code", json!({"text": "<script>alert(1)</script>"})), IssueCode::Value, "AllergyIntolerance.code.text"),
        (with("code", json!({"text": "Peanut\u{0007}"})), IssueCode::Value, "AllergyIntolerance.code.text"),
        (with("code", json!({"text": "x".repeat(201)})), IssueCode::Value, "AllergyIntolerance.code.text"),
        (with("code", json!({"text": "   "})), IssueCode::Value, "AllergyIntolerance.code.text"),
        (with("code", json!({"text": 7})), Structure, "AllergyIntolerance.code.text"),
        (
            with("code", json!({"coding": [{"system": "snomed", "code": "1"}]})),
            IssueCode::Value,
            "AllergyIntolerance.code.coding[0].system",
        ),
        (
            with("code", json!({"coding": [{"system": "1http:x", "code": "1"}]})),
            IssueCode::Value,
            "AllergyIntolerance.code.coding[0].system",
        ),
        (
            with("code", json!({"coding": [{"system": "http://snomed.info/sct", "code": " 1"}]})),
            IssueCode::Value,
            "AllergyIntolerance.code.coding[0].code",
        ),
        (
            with("code", json!({"coding": [{"system": "http://snomed.info/sct", "code": "1  2"}]})),
            IssueCode::Value,
            "AllergyIntolerance.code.coding[0].code",
        ),
        (
            with("code", json!({"coding": [{"system": "http://snomed.info/sct", "code": "1;DROP"}]})),
            IssueCode::Value,
            "AllergyIntolerance.code.coding[0].code",
        ),
        (with("code", json!({"coding": [{"system": "http://snomed.info/sct"}]})), Required, "AllergyIntolerance.code.coding[0].code"),
        (
            with("code", json!({"coding": [{"system": "http://snomed.info/sct", "code": "1", "userSelected": true}]})),
            NotSupported,
            "AllergyIntolerance.code.coding[0]",
        ),
        (with("code", json!({"text": "x", "extension": []})), NotSupported, "AllergyIntolerance.code"),
        // reaction
        (
            reaction(json!({"manifestation": [{"text": "Rash"}], "severity": "extreme"})),
            IssueCode::Value,
            "AllergyIntolerance.reaction[0].severity",
        ),
        (reaction(json!({"manifestation": []})), Required, "AllergyIntolerance.reaction[0].manifestation"),
        (reaction(json!({"severity": "mild"})), Required, "AllergyIntolerance.reaction[0].manifestation"),
        (reaction(json!({"manifestation": {"text": "Rash"}})), Structure, "AllergyIntolerance.reaction[0].manifestation"),
        (reaction(json!({"manifestation": [{}]})), Required, "AllergyIntolerance.reaction[0].manifestation[0]"),
        (reaction(json!({"manifestation": [{"text": "Rash>"}]})), IssueCode::Value, "AllergyIntolerance.reaction[0].manifestation[0].text"),
        (
            reaction(json!({"manifestation": [{"text": "Rash"}], "description": "x'); DROP TABLE allergies;--"})),
            IssueCode::Value,
            "AllergyIntolerance.reaction[0].description",
        ),
        (
            reaction(json!({"manifestation": [{"text": "Rash"}], "substance": {"text": "x"}})),
            NotSupported,
            "AllergyIntolerance.reaction[0]",
        ),
        (with("reaction", json!({"manifestation": []})), Structure, "AllergyIntolerance.reaction"),
        (
            with("reaction", Value::Array(vec![json!({"manifestation": [{"text": "Rash"}]}); 21])),
            IssueCode::Value,
            "AllergyIntolerance.reaction",
        ),
        // note
        (with("note", json!([{"text": "ok"}, {}])), Required, "AllergyIntolerance.note[1].text"),
        (with("note", json!([{"text": "ok", "authorString": "Dr X"}])), NotSupported, "AllergyIntolerance.note[0]"),
        (with("note", json!([{"text": "a{{b}}"}])), IssueCode::Value, "AllergyIntolerance.note[0].text"),
        (with("note", json!([{"text": "x".repeat(2001)}])), IssueCode::Value, "AllergyIntolerance.note[0].text"),
        // dates
        (with("onsetDateTime", json!("2020-02-30")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!("2020-01-01T10:00:00")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!("2020-01-01T24:00:00Z")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!("2020-01-01T10:00Z")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!("2020-01-01T10:00:00.Z")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!("2020-01-01T10:00:00+15:00")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!("2020-01T10:00:00Z")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!("1849")), IssueCode::Value, "AllergyIntolerance.onsetDateTime"),
        (with("onsetDateTime", json!(2020)), Structure, "AllergyIntolerance.onsetDateTime"),
        (with("recordedDate", json!("20-11-2026")), IssueCode::Value, "AllergyIntolerance.recordedDate"),
        // id
        (with("id", json!("a b")), IssueCode::Value, "AllergyIntolerance.id"),
        (with("id", json!(17)), Structure, "AllergyIntolerance.id"),
    ];
    for (body, code, path) in cases {
        let e = parse(&body).expect_err(&body.to_string());
        assert_eq!((e.code, e.path.as_deref()), (code, Some(path)), "{body}: {e}");
    }
}

#[test]
fn accepts_valid_date_time_forms() {
    for d in ["2020", "2020-02", "2020-02-29", "2020-02-29T23:59:60Z", "2020-01-01T00:00:00.123456789-05:00", "2020-01-01T08:00:00+14:00"] {
        let s = parse(&with("onsetDateTime", json!(d))).expect(d);
        assert_eq!(s.data.onset.as_ref().map(FhirDateTime::as_str), Some(d));
    }
}

#[test]
fn future_dates_are_refused() {
    // today is 2026-11-23; one day of slack for time zones east of UTC.
    for key in ["onsetDateTime", "recordedDate"] {
        for d in ["2026-11-25", "2026-12", "2027", "2026-11-25T00:30:00+01:00"] {
            let e = parse(&with(key, json!(d))).expect_err(d);
            assert_eq!((e.code, e.path.as_deref()), (IssueCode::Value, Some(format!("AllergyIntolerance.{key}").as_str())), "{d}");
            assert!(e.message.contains("future"), "{e}");
        }
        for d in ["2026-11-23", "2026-11-24", "2026-11", "2026", "2026-11-24T08:00:00+10:00"] {
            assert!(parse(&with(key, json!(d))).is_ok(), "{key} {d}");
        }
    }
}

#[test]
fn unknown_elements_are_refused() {
    for key in ["onsetAge", "asserter", "extension", "contained", "encounter", "lastOccurrence", "modifierExtension"] {
        let e = parse(&with(key, json!("x"))).expect_err(key);
        // The parent is named, with the supported elements; the client's name is not.
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::NotSupported, Some("AllergyIntolerance")));
        assert!(e.message.contains("clinicalStatus") && !e.message.contains(key), "{e}");
    }
    let e = parse(&with("<img src=x>", json!(1))).expect_err("unknown");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::NotSupported, Some("AllergyIntolerance")));
    assert!(!e.to_string().contains("img"), "{e}");
}

#[test]
fn wrong_resource_type_and_bad_bodies_are_refused() {
    let e = parse(&with("resourceType", json!("Patient"))).expect_err("Patient");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Invalid, Some("resourceType")));
    let e = parse(&with("resourceType", Value::Null)).expect_err("missing");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("resourceType")));
    let e = parse(&with("resourceType", json!(["AllergyIntolerance"]))).expect_err("array");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("resourceType")));
    let e = parse_allergy(b"{\"resourceType\": \"AllergyIntolerance\",", &ctx()).expect_err("eof");
    assert_eq!(e.code, IssueCode::Structure);
    assert!(e.message.contains("malformed JSON"));
    let e = parse_allergy(b"{\"resourceType\": \"All\xffergyIntolerance\"}", &ctx()).expect_err("utf8");
    assert!(e.message.contains("UTF-8"));
    let e = parse_allergy(b"[]", &ctx()).expect_err("array");
    assert_eq!((e.code, e.path), (IssueCode::Structure, None));
}

#[test]
fn patient_reference_forms_are_refused() {
    let e = parse(&with("patient", Value::Null)).expect_err("missing");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("AllergyIntolerance.patient")));
    let e = parse(&with("patient", json!({}))).expect_err("no reference");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("AllergyIntolerance.patient.reference")));
    let e = parse(&with("patient", json!("Patient/p-1"))).expect_err("string");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Structure, Some("AllergyIntolerance.patient")));
    let e = parse(&with("patient", json!({"reference": 1}))).expect_err("number");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Structure, Some("AllergyIntolerance.patient.reference")));
    let e = parse(&with("patient", json!({"reference": "Patient/p-1", "display": "Jane"}))).expect_err("display");
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::NotSupported, Some("AllergyIntolerance.patient")));
    for r in [
        "Practitioner/p-1",
        "patient/p-1",
        "Patient/",
        "Patient",
        "p-1",
        "Patient/p 1",
        "Patient/p-1/_history/2",
        "Patient/p-1?x=1",
        "http://other.example/fhir/Patient/p-1",
        "urn:uuid:0b8a6f2e-1c1d-4a4e-9f1e-2f0c3a5b6d7e",
        "#contained-1",
        " Patient/p-1",
        "Patient/<script>",
    ] {
        let e = parse(&with("patient", json!({"reference": r}))).expect_err(r);
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Value, Some("AllergyIntolerance.patient.reference")), "{r}");
    }
    let long = format!("Patient/{}", "a".repeat(65));
    assert!(parse(&with("patient", json!({"reference": long}))).is_err());
}

#[test]
fn errors_and_debug_do_not_echo_values() {
    let secret = "Zyxwvut";
    let bodies = [
        with("code", json!({"text": format!("{secret}<")})),
        with("code", json!({"text": [secret]})),
        with("type", json!(secret)),
        with("onsetDateTime", json!(secret)),
        with("patient", json!({"reference": format!("Patient/{secret} x")})),
        with("note", json!([{"text": format!("{secret}\u{0000}")}])),
    ];
    for b in bodies {
        let e = parse(&b).expect_err("bad");
        assert!(!e.to_string().contains(secret), "{e}");
    }
    let s = parse(&full()).expect("valid");
    assert_eq!(format!("{:?}", s.data), "AllergyData(..)");
    let dbg = format!("{s:?} {:?} {:?}", s.data.code, s.data.reaction);
    assert!(!dbg.contains("Penicillin") && !dbg.contains("Rash") && !dbg.contains("2004"), "{dbg}");
}

#[test]
fn sealed_bytes_are_checked_when_opened() {
    assert!(serde_json::from_slice::<AllergyData>(br#"{"onset": "yesterday"}"#).is_err());
    assert!(serde_json::from_slice::<AllergyData>(br#"{"bogus": 1}"#).is_err());
    assert!(serde_json::from_slice::<AllergyData>(br#"{"clinicalStatus": "gone"}"#).is_err());
    let d: AllergyData = serde_json::from_slice(br#"{"verificationStatus": "entered-in-error"}"#).expect("valid");
    assert_eq!(d.verification_status, Some(VerificationStatus::EnteredInError));
}
