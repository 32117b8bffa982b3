//! Parsing a Patient from a request body.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Address, ContactPoint, FhirDate, Gender, HumanName, Identifier, ParseContext, PatientData, PatientSubmission};
use crate::error::{InputError, IssueCode};

/// Elements of Patient that carevault stores. Anything else is refused with `not-supported`,
/// except `meta` and `text`, which the server owns and regenerates.
const SUPPORTED: &[&str] =
    &["resourceType", "id", "meta", "text", "identifier", "active", "name", "telecom", "gender", "birthDate", "address"];

fn element<T: for<'de> Deserialize<'de>>(v: &Value, path: &str) -> Result<T, InputError> {
    T::deserialize(v).map_err(|e| InputError::structure(Some(path), describe_serde_error(&e.to_string())))
}

/// Rewrites a serde message so that it names the rule but never echoes what was submitted.
fn describe_serde_error(msg: &str) -> String {
    crate::error::describe_serde_message(msg)
}

fn array_of<T: for<'de> Deserialize<'de>>(
    obj: &Map<String, Value>,
    key: &str,
    check: impl Fn(&T, &str) -> Result<(), InputError>,
) -> Result<Vec<T>, InputError> {
    let Some(v) = obj.get(key) else {
        return Ok(Vec::new());
    };
    let path = format!("Patient.{key}");
    let Some(items) = v.as_array() else {
        return Err(InputError::structure(Some(&path), "must be an array"));
    };
    if items.len() > 20 {
        return Err(InputError::value(&path, "at most 20 entries are accepted"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let t: T = element(item, &p)?;
        check(&t, &p)?;
        out.push(t);
    }
    Ok(out)
}

/// Parses a FHIR R4 Patient from a request body: UTF-8, JSON, `resourceType`, supported
/// elements, each field's grammar.
pub fn parse_patient(body: &[u8], ctx: &ParseContext) -> Result<PatientSubmission, InputError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| InputError::structure(None, format!("the body is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        InputError::structure(None, format!("malformed JSON at line {} column {}: {}", e.line(), e.column(), json_error_kind(&e)))
    })?;
    let Value::Object(obj) = value else {
        return Err(InputError::structure(None, "a resource is a JSON object"));
    };
    match obj.get("resourceType") {
        Some(Value::String(t)) if t == "Patient" => {}
        Some(Value::String(_)) => {
            return Err(InputError::new(
                IssueCode::Invalid,
                Some("resourceType".to_string()),
                "this endpoint accepts resourceType 'Patient' only",
            ))
        }
        _ => return Err(InputError::new(IssueCode::Required, Some("resourceType".to_string()), "resourceType is required")),
    }
    if obj.keys().any(|key| !SUPPORTED.contains(&key.as_str())) {
        return Err(unsupported_element("Patient", SUPPORTED));
    }
    let id = match obj.get("id") {
        None => None,
        Some(Value::String(s)) => Some(crate::ids::PatientId::parse(s)?.as_str().to_string()),
        Some(_) => return Err(InputError::structure(Some("Patient.id"), "must be a string")),
    };
    let active = match obj.get("active") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(InputError::structure(Some("Patient.active"), "must be true or false")),
    };
    let gender = match obj.get("gender") {
        None => None,
        Some(v) => Some(
            element::<Gender>(v, "Patient.gender")
                .map_err(|_| InputError::value("Patient.gender", "must be one of: male, female, other, unknown"))?,
        ),
    };
    let birth_date = match obj.get("birthDate") {
        None => None,
        Some(Value::String(s)) => {
            let d = FhirDate::parse(s, "Patient.birthDate")?;
            if d.year() < 1850 {
                return Err(InputError::value("Patient.birthDate", "must not be before 1850"));
            }
            // One day of slack: "today" is the server's UTC date, and it is already tomorrow
            // east of UTC.
            let latest = ctx.today.next_day().unwrap_or(ctx.today);
            if d.earliest().is_none_or(|e| e > latest) {
                return Err(InputError::value("Patient.birthDate", "must not be in the future"));
            }
            Some(d)
        }
        Some(_) => return Err(InputError::structure(Some("Patient.birthDate"), "must be a string")),
    };
    let identifier = array_of::<Identifier>(&obj, "identifier", Identifier::check)?;
    let name = array_of::<HumanName>(&obj, "name", HumanName::check)?;
    let telecom = array_of::<ContactPoint>(&obj, "telecom", ContactPoint::check)?;
    let address = array_of::<Address>(&obj, "address", Address::check)?;
    if name.is_empty() {
        return Err(InputError::new(IssueCode::Required, Some("Patient.name".to_string()), "a patient needs at least one name"));
    }
    Ok(PatientSubmission { id, data: PatientData { active, identifier, name, telecom, gender, birth_date, address } })
}

/// An element of `path` whose name the server does not know. The name is not repeated (it
/// is the client's text); the path and the names that are supported are.
pub(crate) fn unsupported_element(path: &str, supported: &[&str]) -> InputError {
    InputError::not_supported(
        Some(path),
        format!("holds an element this server does not support; the supported elements are: {}", supported.join(", ")),
    )
}

/// serde_json's message without any echoed input.
pub(crate) fn json_error_kind(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Io => "read error",
    }
}
