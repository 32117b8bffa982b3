//! Parsing an AllergyIntolerance from a request body: each element against its grammar, the
//! invariants, and the limits on sizes and dates.

use serde_json::{Map, Value};

use super::{
    AllergyCategory, AllergyContext, AllergyData, AllergySubmission, AllergyType, ClinicalStatus, CodeableConcept, Coding, Criticality,
    FhirDateTime, Reaction, Severity, VerificationStatus, CLINICAL_STATUS_SYSTEM, RESOURCE, VERIFICATION_STATUS_SYSTEM,
};
use crate::error::{InputError, IssueCode};
use crate::ids::PatientId;
use crate::patient::{check_text, check_uri, json_error_kind, unsupported_element};

/// Elements of AllergyIntolerance that carevault stores. `meta` and `text` are accepted and
/// ignored: the server regenerates them.
const SUPPORTED: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "text",
    "clinicalStatus",
    "verificationStatus",
    "type",
    "category",
    "criticality",
    "code",
    "patient",
    "onsetDateTime",
    "recordedDate",
    "reaction",
    "note",
];

/// Short labels: `code.text`, manifestation text, coding displays.
const MAX_LABEL: usize = 200;
const MAX_DESCRIPTION: usize = 1000;
const MAX_NOTE: usize = 2000;
const MAX_CODE: usize = 64;
const MAX_ENTRIES: usize = 20;
const MAX_CODINGS: usize = 10;
/// Earliest year accepted for onset and recorded dates (as for birth dates).
const MIN_YEAR: i32 = 1850;

fn path_of(parent: &str, key: &str) -> String {
    format!("{parent}.{key}")
}

fn required(path: &str, message: &str) -> InputError {
    InputError::new(IssueCode::Required, Some(path.to_string()), message)
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, InputError> {
    v.as_object().ok_or_else(|| InputError::structure(Some(path), "must be a JSON object"))
}

fn as_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, InputError> {
    v.as_str().ok_or_else(|| InputError::structure(Some(path), "must be a string"))
}

fn as_array<'a>(v: &'a Value, path: &str, max: usize) -> Result<&'a [Value], InputError> {
    let items = v.as_array().ok_or_else(|| InputError::structure(Some(path), "must be an array"))?;
    if items.len() > max {
        return Err(InputError::value(path, format!("at most {max} entries are accepted")));
    }
    Ok(items)
}

/// Refuses any key of `obj` not in `allowed`, naming the parent and the allowed names (never
/// the client's name).
fn only_keys(obj: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), InputError> {
    if obj.keys().any(|k| !allowed.contains(&k.as_str())) {
        return Err(unsupported_element(path, allowed));
    }
    Ok(())
}

fn opt_text(obj: &Map<String, Value>, path: &str, key: &str, max: usize) -> Result<Option<String>, InputError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => {
            let p = path_of(path, key);
            let s = as_str(v, &p)?;
            check_text(s, &p, max)?;
            Ok(Some(s.to_string()))
        }
    }
}

fn code_value<T>(v: &Value, path: &str, from_code: fn(&str) -> Option<T>, codes: fn() -> String) -> Result<T, InputError> {
    let s = as_str(v, path)?;
    from_code(s).ok_or_else(|| InputError::value(path, format!("must be one of: {}", codes())))
}

/// A FHIR `code`: no leading, trailing or repeated white space, plus the free-text rules.
fn check_code_token(s: &str, path: &str) -> Result<(), InputError> {
    check_text(s, path, MAX_CODE)?;
    let mut prev_space = true;
    for c in s.chars() {
        let space = c.is_whitespace();
        if space && (c != ' ' || prev_space) {
            return Err(InputError::value(path, "a code has no leading, trailing or repeated white space"));
        }
        prev_space = space;
    }
    if prev_space {
        return Err(InputError::value(path, "a code has no leading, trailing or repeated white space"));
    }
    Ok(())
}

/// An absolute URI: a scheme (`[A-Za-z][A-Za-z0-9+.-]*`), a colon, and something after it.
fn check_absolute_uri(s: &str, path: &str) -> Result<(), InputError> {
    check_uri(s, path)?;
    let (scheme, rest) = s.split_once(':').unwrap_or_default();
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
    if scheme_ok && !rest.is_empty() {
        Ok(())
    } else {
        Err(InputError::value(path, "must be an absolute URI (scheme:rest)"))
    }
}

/// The FHIR `id` grammar.
fn check_resource_id(s: &str, path: &str) -> Result<(), InputError> {
    if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        Ok(())
    } else {
        Err(InputError::value(path, "an id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'"))
    }
}

fn parse_coding(v: &Value, path: &str) -> Result<Coding, InputError> {
    let obj = as_object(v, path)?;
    only_keys(obj, path, &["system", "code", "display"])?;
    let system_path = path_of(path, "system");
    let system = as_str(obj.get("system").ok_or_else(|| required(&system_path, "a coding needs a system"))?, &system_path)?;
    check_absolute_uri(system, &system_path)?;
    let code_path = path_of(path, "code");
    let code = as_str(obj.get("code").ok_or_else(|| required(&code_path, "a coding needs a code"))?, &code_path)?;
    check_code_token(code, &code_path)?;
    let display = opt_text(obj, path, "display", MAX_LABEL)?;
    Ok(Coding { system: system.to_string(), code: code.to_string(), display })
}

fn parse_concept(v: &Value, path: &str) -> Result<CodeableConcept, InputError> {
    let obj = as_object(v, path)?;
    only_keys(obj, path, &["coding", "text"])?;
    let mut coding = Vec::new();
    if let Some(c) = obj.get("coding") {
        let cpath = path_of(path, "coding");
        for (i, item) in as_array(c, &cpath, MAX_CODINGS)?.iter().enumerate() {
            coding.push(parse_coding(item, &format!("{cpath}[{i}]"))?);
        }
    }
    let text = opt_text(obj, path, "text", MAX_LABEL)?;
    if coding.is_empty() && text.is_none() {
        return Err(required(path, "a concept needs a text or at least one coding"));
    }
    Ok(CodeableConcept { coding, text })
}

/// A status CodeableConcept bound to one code system: exactly one coding from `system`. The
/// display, if sent, is checked and then regenerated from the code.
fn parse_status<T>(v: &Value, path: &str, system: &str, from_code: fn(&str) -> Option<T>, codes: fn() -> String) -> Result<T, InputError> {
    let obj = as_object(v, path)?;
    only_keys(obj, path, &["coding"])?;
    let cpath = path_of(path, "coding");
    let coding = as_array(obj.get("coding").ok_or_else(|| required(&cpath, "a status needs a coding"))?, &cpath, MAX_CODINGS)?;
    let first = match coding {
        [] => return Err(required(&cpath, "a status needs a coding")),
        [one] => one,
        [_, ..] => return Err(InputError::not_supported(Some(&format!("{cpath}[1]")), "only one coding is supported for a status")),
    };
    let p0 = format!("{cpath}[0]");
    let c = as_object(first, &p0)?;
    only_keys(c, &p0, &["system", "code", "display"])?;
    let spath = path_of(&p0, "system");
    let s = as_str(c.get("system").ok_or_else(|| required(&spath, "a status coding needs a system"))?, &spath)?;
    if s != system {
        return Err(InputError::value(&spath, format!("must be {system}")));
    }
    let code_path = path_of(&p0, "code");
    let code =
        code_value(c.get("code").ok_or_else(|| required(&code_path, "a status coding needs a code"))?, &code_path, from_code, codes)?;
    opt_text(c, &p0, "display", MAX_LABEL)?;
    Ok(code)
}

fn parse_date_time(v: &Value, path: &str, ctx: &AllergyContext) -> Result<FhirDateTime, InputError> {
    let d = FhirDateTime::parse(as_str(v, path)?, path)?;
    if d.earliest().year() < MIN_YEAR {
        return Err(InputError::value(path, format!("must not be before {MIN_YEAR}")));
    }
    // One day of slack: "today" is the server's UTC date, and it is already tomorrow east of UTC.
    let latest = ctx.today.next_day().unwrap_or(ctx.today);
    if d.earliest() > latest {
        return Err(InputError::value(path, "must not be in the future"));
    }
    Ok(d)
}

fn parse_reaction(v: &Value, path: &str) -> Result<Reaction, InputError> {
    let obj = as_object(v, path)?;
    only_keys(obj, path, &["manifestation", "severity", "description"])?;
    let mpath = path_of(path, "manifestation");
    let items =
        as_array(obj.get("manifestation").ok_or_else(|| required(&mpath, "a reaction needs a manifestation"))?, &mpath, MAX_ENTRIES)?;
    if items.is_empty() {
        return Err(required(&mpath, "a reaction needs a manifestation"));
    }
    let manifestation = items.iter().enumerate().map(|(i, m)| parse_concept(m, &format!("{mpath}[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    let severity = match obj.get("severity") {
        None => None,
        Some(s) => Some(code_value(s, &path_of(path, "severity"), Severity::from_code, Severity::codes)?),
    };
    let description = opt_text(obj, path, "description", MAX_DESCRIPTION)?;
    Ok(Reaction { manifestation, severity, description })
}

fn parse_note(v: &Value, path: &str) -> Result<String, InputError> {
    let obj = as_object(v, path)?;
    only_keys(obj, path, &["text"])?;
    opt_text(obj, path, "text", MAX_NOTE)?.ok_or_else(|| required(&path_of(path, "text"), "a note needs a text"))
}

/// `patient.reference` must be a relative `Patient/<id>` reference to a local patient.
fn parse_patient_ref(v: &Value) -> Result<String, InputError> {
    let path = "AllergyIntolerance.patient";
    let obj = as_object(v, path)?;
    only_keys(obj, path, &["reference"])?;
    let rpath = "AllergyIntolerance.patient.reference";
    let r = as_str(obj.get("reference").ok_or_else(|| required(rpath, "the patient is given as a reference 'Patient/<id>'"))?, rpath)?;
    let bad = || InputError::value(rpath, "must be a relative reference 'Patient/<id>' to a patient on this server");
    let id = r.strip_prefix("Patient/").ok_or_else(bad)?;
    let id = PatientId::parse(id).map_err(|_| bad())?;
    Ok(id.as_str().to_string())
}

/// Parses a FHIR R4 AllergyIntolerance from a request body: UTF-8, JSON, `resourceType`,
/// supported elements, each field's grammar, and the invariants ait-1 and ait-2.
pub fn parse_allergy(body: &[u8], ctx: &AllergyContext) -> Result<AllergySubmission, InputError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| InputError::structure(None, format!("the body is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        InputError::structure(None, format!("malformed JSON at line {} column {}: {}", e.line(), e.column(), json_error_kind(&e)))
    })?;
    let Value::Object(obj) = value else {
        return Err(InputError::structure(None, "a resource is a JSON object"));
    };
    match obj.get("resourceType") {
        Some(Value::String(t)) if t == RESOURCE => {}
        Some(Value::String(_)) => {
            return Err(InputError::new(
                IssueCode::Invalid,
                Some("resourceType".to_string()),
                "this endpoint accepts resourceType 'AllergyIntolerance' only",
            ))
        }
        _ => return Err(required("resourceType", "resourceType is required")),
    }
    only_keys(&obj, RESOURCE, SUPPORTED)?;
    let p = |key: &str| path_of(RESOURCE, key);

    let id = match obj.get("id") {
        None => None,
        Some(v) => {
            let s = as_str(v, &p("id"))?;
            check_resource_id(s, &p("id"))?;
            Some(s.to_string())
        }
    };
    let clinical_status = match obj.get("clinicalStatus") {
        None => None,
        Some(v) => Some(parse_status(v, &p("clinicalStatus"), CLINICAL_STATUS_SYSTEM, ClinicalStatus::from_code, ClinicalStatus::codes)?),
    };
    let verification_status = match obj.get("verificationStatus") {
        None => None,
        Some(v) => Some(parse_status(
            v,
            &p("verificationStatus"),
            VERIFICATION_STATUS_SYSTEM,
            VerificationStatus::from_code,
            VerificationStatus::codes,
        )?),
    };
    let type_ = match obj.get("type") {
        None => None,
        Some(v) => Some(code_value(v, &p("type"), AllergyType::from_code, AllergyType::codes)?),
    };
    let mut category = Vec::new();
    if let Some(v) = obj.get("category") {
        let cpath = p("category");
        for (i, item) in as_array(v, &cpath, MAX_ENTRIES)?.iter().enumerate() {
            let ipath = format!("{cpath}[{i}]");
            let c = code_value(item, &ipath, AllergyCategory::from_code, AllergyCategory::codes)?;
            if category.contains(&c) {
                return Err(InputError::value(&ipath, "a category must not be repeated"));
            }
            category.push(c);
        }
    }
    let criticality = match obj.get("criticality") {
        None => None,
        Some(v) => Some(code_value(v, &p("criticality"), Criticality::from_code, Criticality::codes)?),
    };
    let code = match obj.get("code") {
        None => None,
        Some(v) => Some(parse_concept(v, &p("code"))?),
    };
    let patient_id = parse_patient_ref(obj.get("patient").ok_or_else(|| required(&p("patient"), "an allergy needs a patient"))?)?;
    let onset = match obj.get("onsetDateTime") {
        None => None,
        Some(v) => Some(parse_date_time(v, &p("onsetDateTime"), ctx)?),
    };
    let recorded_date = match obj.get("recordedDate") {
        None => None,
        Some(v) => Some(parse_date_time(v, &p("recordedDate"), ctx)?),
    };
    let mut reaction = Vec::new();
    if let Some(v) = obj.get("reaction") {
        let rpath = p("reaction");
        for (i, item) in as_array(v, &rpath, MAX_ENTRIES)?.iter().enumerate() {
            reaction.push(parse_reaction(item, &format!("{rpath}[{i}]"))?);
        }
    }
    let mut note = Vec::new();
    if let Some(v) = obj.get("note") {
        let npath = p("note");
        for (i, item) in as_array(v, &npath, MAX_ENTRIES)?.iter().enumerate() {
            note.push(parse_note(item, &format!("{npath}[{i}]"))?);
        }
    }

    let entered_in_error = verification_status == Some(VerificationStatus::EnteredInError);
    match (clinical_status.is_some(), entered_in_error) {
        (false, false) => {
            return Err(required(
                &p("clinicalStatus"),
                "clinicalStatus is required unless verificationStatus is entered-in-error (FHIR invariant ait-1)",
            ))
        }
        (true, true) => {
            return Err(InputError::new(
                IssueCode::Invalid,
                Some(p("clinicalStatus")),
                "clinicalStatus must be absent when verificationStatus is entered-in-error (FHIR invariant ait-2)",
            ))
        }
        _ => {}
    }

    Ok(AllergySubmission {
        id,
        patient_id,
        data: AllergyData {
            clinical_status,
            verification_status,
            type_,
            category,
            criticality,
            code,
            onset,
            recorded_date,
            reaction,
            note,
        },
    })
}
