//! The FHIR R4 AllergyIntolerance subset carevault stores, parsed and checked at the boundary.
//!
//! Same rules as `patient`: every element is either understood and checked against its grammar,
//! or refused with `not-supported` (except `meta` and `text`, which the server owns). Errors name
//! the element by its FHIRPath and never repeat the submitted value.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;

use crate::error::{InputError, IssueCode};
use crate::ids::PatientId;
use crate::patient::{check_text, check_uri, json_error_kind, unsupported_element, FhirDate};

const RESOURCE: &str = "AllergyIntolerance";

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

pub const CLINICAL_STATUS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
pub const VERIFICATION_STATUS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

/// Short labels: `code.text`, manifestation text, coding displays.
const MAX_LABEL: usize = 200;
const MAX_DESCRIPTION: usize = 1000;
const MAX_NOTE: usize = 2000;
const MAX_CODE: usize = 64;
const MAX_ENTRIES: usize = 20;
const MAX_CODINGS: usize = 10;
/// Earliest year accepted for onset and recorded dates (as for birth dates).
const MIN_YEAR: i32 = 1850;

// ---------------------------------------------------------------------------------------------
// Types

macro_rules! fhir_code_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:literal / $display:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $code)] $variant),*
        }

        impl $name {
            const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $code)),*];

            /// The FHIR code.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),* }
            }

            /// The display the code system gives this code.
            pub fn display(self) -> &'static str {
                match self { $($name::$variant => $display),* }
            }

            fn from_code(s: &str) -> Option<$name> {
                Self::ALL.iter().find(|(_, c)| *c == s).map(|(v, _)| *v)
            }

            fn codes() -> String {
                Self::ALL.iter().map(|(_, c)| *c).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

fhir_code_enum!(
    /// `AllergyIntolerance.clinicalStatus` (allergyintolerance-clinical).
    ClinicalStatus { Active = "active" / "Active", Inactive = "inactive" / "Inactive", Resolved = "resolved" / "Resolved" }
);
fhir_code_enum!(
    /// `AllergyIntolerance.verificationStatus` (allergyintolerance-verification).
    VerificationStatus {
        Unconfirmed = "unconfirmed" / "Unconfirmed",
        Confirmed = "confirmed" / "Confirmed",
        Refuted = "refuted" / "Refuted",
        EnteredInError = "entered-in-error" / "Entered in Error",
    }
);
fhir_code_enum!(
    /// `AllergyIntolerance.type`.
    AllergyType { Allergy = "allergy" / "Allergy", Intolerance = "intolerance" / "Intolerance" }
);
fhir_code_enum!(
    /// `AllergyIntolerance.category`.
    AllergyCategory {
        Food = "food" / "Food",
        Medication = "medication" / "Medication",
        Environment = "environment" / "Environment",
        Biologic = "biologic" / "Biologic",
    }
);
fhir_code_enum!(
    /// `AllergyIntolerance.criticality`.
    Criticality { Low = "low" / "Low Risk", High = "high" / "High Risk", UnableToAssess = "unable-to-assess" / "Unable to Assess Risk" }
);
fhir_code_enum!(
    /// `AllergyIntolerance.reaction.severity`.
    Severity { Mild = "mild" / "Mild", Moderate = "moderate" / "Moderate", Severe = "severe" / "Severe" }
);

/// A coding of a clinical concept. Both `system` (an absolute URI) and `code` are required.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// A clinical concept: at least a text or one coding.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One `AllergyIntolerance.reaction`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    /// Never empty.
    pub manifestation: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A FHIR `dateTime`: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or `YYYY-MM-DDThh:mm:ss[.f]` with a time
/// zone (`Z` or `±hh:mm`). Kept as the submitted text (it is already canonical once checked).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FhirDateTime {
    text: String,
    /// The earliest calendar day the value can mean (its own date part, not converted to UTC).
    earliest: Date,
}

impl FhirDateTime {
    /// Checks the grammar and the calendar (not whether the value lies in the future).
    pub fn parse(s: &str, path: &str) -> Result<FhirDateTime, InputError> {
        let bad = || {
            InputError::value(
                path,
                "a dateTime is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with a time zone (Z or +hh:mm), \
                 and must exist on the calendar",
            )
        };
        if s.len() > 35 {
            return Err(bad());
        }
        let (date, time) = match s.get(..10) {
            Some(d) if s.len() > 10 => (d, s.get(10..).ok_or_else(bad)?),
            _ => (s, ""),
        };
        let date = FhirDate::parse(date, path).map_err(|_| bad())?;
        if !time.is_empty() && (!matches!(date, FhirDate::Date(_)) || !time_ok(time)) {
            return Err(bad());
        }
        let earliest = date.earliest().ok_or_else(bad)?;
        Ok(FhirDateTime { text: s.to_string(), earliest })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The earliest calendar day this value can mean.
    pub fn earliest(&self) -> Date {
        self.earliest
    }
}

/// `Thh:mm:ss[.f{1,9}](Z|(+|-)hh:mm)`, with the ranges of the FHIR `dateTime` regex.
fn time_ok(t: &str) -> bool {
    let b = t.as_bytes();
    let two = |i: usize, max: u8| -> bool {
        match (b.get(i), b.get(i + 1)) {
            (Some(h), Some(l)) if h.is_ascii_digit() && l.is_ascii_digit() => (h - b'0') * 10 + (l - b'0') <= max,
            _ => false,
        }
    };
    // T hh : mm : ss
    if b.first() != Some(&b'T') || !two(1, 23) || b.get(3) != Some(&b':') || !two(4, 59) || b.get(6) != Some(&b':') || !two(7, 60) {
        return false;
    }
    let mut i = 9;
    if b.get(i) == Some(&b'.') {
        let digits = b.get(i + 1..).map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        if !(1..=9).contains(&digits) {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i..) {
        Some(b"Z") => true,
        Some([b'+' | b'-', _, _, b':', _, _]) => (two(i + 1, 13) && two(i + 4, 59)) || b.get(i + 1..) == Some(b"14:00"),
        _ => false,
    }
}

impl TryFrom<String> for FhirDateTime {
    type Error = InputError;
    fn try_from(s: String) -> Result<Self, InputError> {
        FhirDateTime::parse(&s, "dateTime")
    }
}

impl From<FhirDateTime> for String {
    fn from(d: FhirDateTime) -> String {
        d.text
    }
}

impl fmt::Display for FhirDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The stored content of an allergy record (sealed as JSON bytes). The patient and the id live
/// beside it, in the row.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllergyData {
    /// Present unless `verification_status` is entered-in-error (FHIR invariants ait-1, ait-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinical_status: Option<ClinicalStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<VerificationStatus>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<AllergyType>,
    /// No repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<AllergyCategory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Criticality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<FhirDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_date: Option<FhirDateTime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reaction: Vec<Reaction>,
    /// The texts of `note` (Annotation.text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<String>,
}

impl fmt::Debug for AllergyData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AllergyData(..)")
    }
}

redacted_debug!(Coding, CodeableConcept, Reaction, FhirDateTime);

/// Context a parse needs from the outside world (the parser does no I/O).
#[derive(Debug, Clone, Copy)]
pub struct AllergyContext {
    pub today: Date,
}

/// What the body of a create or update said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllergySubmission {
    /// `AllergyIntolerance.id`, if the body had one (FHIR id grammar checked).
    pub id: Option<String>,
    /// The id from `patient.reference` (`Patient/<id>`), checked with `PatientId::parse`.
    pub patient_id: String,
    pub data: AllergyData,
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers

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

// ---------------------------------------------------------------------------------------------
// Parsing

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

// ---------------------------------------------------------------------------------------------
// Rendering

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn status_concept(system: &str, code: &str, display: &str) -> Value {
    serde_json::json!({"coding": [{"system": system, "code": code, "display": display}]})
}

impl AllergyData {
    /// The FHIR JSON of this record as an R4 AllergyIntolerance resource.
    pub fn to_fhir(&self, id: &str, patient_id: &str, version: i64, last_updated: &str) -> Value {
        let mut m = Map::new();
        m.insert("resourceType".into(), Value::from(RESOURCE));
        m.insert("id".into(), Value::from(id));
        m.insert("meta".into(), serde_json::json!({"versionId": version.to_string(), "lastUpdated": last_updated}));
        if let Some(s) = self.clinical_status {
            m.insert("clinicalStatus".into(), status_concept(CLINICAL_STATUS_SYSTEM, s.code(), s.display()));
        }
        if let Some(s) = self.verification_status {
            m.insert("verificationStatus".into(), status_concept(VERIFICATION_STATUS_SYSTEM, s.code(), s.display()));
        }
        if let Some(t) = self.type_ {
            m.insert("type".into(), Value::from(t.code()));
        }
        if !self.category.is_empty() {
            m.insert("category".into(), Value::Array(self.category.iter().map(|c| Value::from(c.code())).collect()));
        }
        if let Some(c) = self.criticality {
            m.insert("criticality".into(), Value::from(c.code()));
        }
        if let Some(c) = &self.code {
            m.insert("code".into(), to_value(c));
        }
        m.insert("patient".into(), serde_json::json!({"reference": format!("Patient/{patient_id}")}));
        if let Some(d) = &self.onset {
            m.insert("onsetDateTime".into(), Value::from(d.as_str()));
        }
        if let Some(d) = &self.recorded_date {
            m.insert("recordedDate".into(), Value::from(d.as_str()));
        }
        if !self.reaction.is_empty() {
            m.insert("reaction".into(), to_value(&self.reaction));
        }
        if !self.note.is_empty() {
            m.insert("note".into(), Value::Array(self.note.iter().map(|t| serde_json::json!({"text": t})).collect()));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            (
                reaction(json!({"manifestation": [{"text": "Rash>"}]})),
                IssueCode::Value,
                "AllergyIntolerance.reaction[0].manifestation[0].text",
            ),
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
        for d in
            ["2020", "2020-02", "2020-02-29", "2020-02-29T23:59:60Z", "2020-01-01T00:00:00.123456789-05:00", "2020-01-01T08:00:00+14:00"]
        {
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
}
