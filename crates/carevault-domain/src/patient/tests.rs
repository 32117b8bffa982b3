use super::*;

fn ctx() -> ParseContext {
    ParseContext { today: time::macros::date!(2026 - 11 - 23) }
}

fn parse(v: Value) -> Result<PatientSubmission, InputError> {
    parse_patient(v.to_string().as_bytes(), &ctx())
}

#[test]
fn accepts_a_typical_patient_and_round_trips() {
    let p = parse(serde_json::json!({
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "O'Brien-Núñez", "given": ["Zoë", "Ann"]}],
        "birthDate": "1980-02-29",
        "gender": "female",
        "telecom": [{"system": "phone", "value": "+1 (555) 010-7788", "use": "mobile"}],
        "identifier": [{"system": "http://hospital.example/ids", "value": "A-1234"}],
        "address": [{"line": ["12 Elm St. #4"], "city": "Springfield", "postalCode": "01101"}]
    }))
    .expect("valid");
    let parts = p.data.to_parts();
    let back = PatientData::from_parts(&parts).expect("round trip");
    assert!(back == p.data);
    let terms = p.data.index_terms();
    assert!(terms.contains(&(IndexKind::FamilyPrefix, "obr".into())));
    assert!(terms.contains(&(IndexKind::FamilyExact, "nunez".into())));
    assert!(terms.contains(&(IndexKind::GivenExact, "zoe".into())));
    assert!(terms.contains(&(IndexKind::BirthDate, "1980-02-29".into())));
    assert!(terms.contains(&(IndexKind::Phone, "15550107788".into())));
    assert!(terms.contains(&(IndexKind::IdentifierValue, "a 1234".into())));
}

#[test]
fn refuses_bad_input_precisely() {
    let cases = [
        (serde_json::json!({"resourceType": "Observation"}), "resourceType"),
        (serde_json::json!({"resourceType": "Patient"}), "Patient.name"),
        (serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": "1980-02-30"}), "Patient.birthDate"),
        (serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": "2099-01-01"}), "Patient.birthDate"),
        (serde_json::json!({"resourceType": "Patient", "name": [{"family": "<script>alert(1)</script>"}]}), "Patient.name[0].family"),
        (
            serde_json::json!({"resourceType": "Patient", "name": [{"family": "Robert'); DROP TABLE patients;--"}]}),
            "Patient.name[0].family",
        ),
        (
            serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "telecom": [{"system": "phone", "value": "1; DROP"}]}),
            "Patient.telecom[0].value",
        ),
        (
            serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "address": [{"city": "a<b"}]}),
            "Patient.address[0].city",
        ),
        (serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "photo": []}), "Patient"),
        (serde_json::json!({"resourceType": "Patient", "name": [{"family": "X", "bogus": 1}]}), "Patient.name[0]"),
        (serde_json::json!({"resourceType": "Patient", "name": [{"family": "X"}], "gender": "robot"}), "Patient.gender"),
    ];
    for (body, path) in cases {
        let e = parse(body.clone()).expect_err(&body.to_string());
        assert_eq!(e.path.as_deref(), Some(path), "{body}: {e}");
    }
    let e = parse_patient(b"{\"resourceType\": \"Patient\",", &ctx()).expect_err("eof");
    assert!(e.message.contains("malformed JSON"));
    let e = parse_patient(b"{\"resourceType\": \"Pat\xffient\"}", &ctx()).expect_err("utf8");
    assert!(e.message.contains("UTF-8"));
    // A name an O'Brien can live with.
    assert!(parse(serde_json::json!({"resourceType": "Patient", "name": [{"family": "O'Brien", "given": ["Mary-Jo"]}]})).is_ok());
}

#[test]
fn errors_do_not_echo_values() {
    let e = parse(serde_json::json!({"resourceType": "Patient", "name": [{"family": "Zyxwvut<"}]})).expect_err("bad");
    assert!(!e.to_string().contains("Zyxwvut"));
    let e = parse(serde_json::json!({"resourceType": "Patient", "name": [{"given": "Zyxwvut"}]})).expect_err("bad");
    assert!(!e.to_string().contains("Zyxwvut"), "{e}");
    assert!(e.to_string().contains("wrong JSON type"), "{e}");
}
