//! The FHIR R4 Patient subset carevault stores, parsed and checked at the boundary.
//!
//! Every string is checked against the grammar of its field. Values are always bound as
//! parameters and sealed before storage, so this is not what stops injection; it keeps markup,
//! SQL fragments and control characters out of records that later become documents, letters,
//! exports and claim files, and gives the sender a precise error instead.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;

use crate::error::{InputError, IssueCode};
use crate::ids::{Mrn, MRN_SYSTEM};
use crate::normalize::{fold, phone_digits};

/// Elements of Patient that carevault stores. Anything else is refused with `not-supported`,
/// except `meta` and `text`, which the server owns and regenerates.
const SUPPORTED: &[&str] =
    &["resourceType", "id", "meta", "text", "identifier", "active", "name", "telecom", "gender", "birthDate", "address"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Coding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identifier {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HumanName {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suffix: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContactPoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Address {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A FHIR `date`: a year, a year and month, or a full date.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FhirDate {
    Year(i32),
    YearMonth(i32, u8),
    Date(Date),
}

impl FhirDate {
    /// Parses `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, checking the calendar.
    pub fn parse(s: &str, path: &str) -> Result<FhirDate, InputError> {
        let bad = || InputError::value(path, "a date is YYYY, YYYY-MM or YYYY-MM-DD and must exist on the calendar");
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
        let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i32>().ok());
        match b.len() {
            4 if digits(0..4) => Ok(FhirDate::Year(num(0..4).ok_or_else(bad)?)),
            7 if digits(0..4) && b[4] == b'-' && digits(5..7) => {
                let y = num(0..4).ok_or_else(bad)?;
                let m = num(5..7).ok_or_else(bad)?;
                if (1..=12).contains(&m) {
                    Ok(FhirDate::YearMonth(y, m as u8))
                } else {
                    Err(bad())
                }
            }
            10 if digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10) => {
                let y = num(0..4).ok_or_else(bad)?;
                let m = num(5..7).ok_or_else(bad)?;
                let d = num(8..10).ok_or_else(bad)?;
                let month = u8::try_from(m).ok().and_then(|m| time::Month::try_from(m).ok()).ok_or_else(bad)?;
                let day = u8::try_from(d).map_err(|_| bad())?;
                Date::from_calendar_date(y, month, day).map(FhirDate::Date).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }

    pub fn year(self) -> i32 {
        match self {
            FhirDate::Year(y) | FhirDate::YearMonth(y, _) => y,
            FhirDate::Date(d) => d.year(),
        }
    }

    /// The earliest day this date can mean (used to refuse dates in the future).
    pub fn earliest(self) -> Option<Date> {
        match self {
            FhirDate::Year(y) => Date::from_calendar_date(y, time::Month::January, 1).ok(),
            FhirDate::YearMonth(y, m) => Date::from_calendar_date(y, time::Month::try_from(m).ok()?, 1).ok(),
            FhirDate::Date(d) => Some(d),
        }
    }
}

impl fmt::Display for FhirDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FhirDate::Year(y) => write!(f, "{y:04}"),
            FhirDate::YearMonth(y, m) => write!(f, "{y:04}-{m:02}"),
            FhirDate::Date(d) => write!(f, "{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        }
    }
}

impl fmt::Debug for FhirDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FhirDate(<redacted>)")
    }
}

/// Administrative gender (FHIR `AdministrativeGender`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
    Other,
    Unknown,
}

/// The stored content of a patient record, in the parts carevault seals separately.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PatientData {
    pub active: Option<bool>,
    pub identifier: Vec<Identifier>,
    pub name: Vec<HumanName>,
    pub telecom: Vec<ContactPoint>,
    pub gender: Option<Gender>,
    pub birth_date: Option<FhirDate>,
    pub address: Vec<Address>,
}

impl fmt::Debug for PatientData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientData(<redacted>)")
    }
}

redacted_debug!(Identifier, HumanName, ContactPoint, Address);

/// Context a parse needs from the outside world (the parser does no I/O).
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    pub today: Date,
}

/// What the body of a create or update said, beyond the data.
#[derive(Debug, Clone)]
pub struct PatientSubmission {
    pub id: Option<String>,
    pub data: PatientData,
}

// ---------------------------------------------------------------------------------------------
// Field grammars

const MAX_TEXT: usize = 200;

fn no_controls(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

/// Characters that have no place in demographic text: markup, statement separators, quotes
/// used by SQL and shells, template braces.
fn has_forbidden_punctuation(s: &str) -> bool {
    s.chars().any(|c| matches!(c, '<' | '>' | ';' | '"' | '`' | '\\' | '{' | '}' | '|' | '$')) || s.contains("--") || s.contains("/*")
}

fn check_len(s: &str, path: &str, max: usize) -> Result<(), InputError> {
    if s.trim().is_empty() {
        return Err(InputError::value(path, "must not be empty or only white space"));
    }
    if s.chars().count() > max {
        return Err(InputError::value(path, format!("must be at most {max} characters")));
    }
    Ok(())
}

/// Free text (address lines, cities, displays): printable, no markup or statement separators.
pub(crate) fn check_text(s: &str, path: &str, max: usize) -> Result<(), InputError> {
    check_len(s, path, max)?;
    if !no_controls(s) {
        return Err(InputError::value(path, "must not contain control characters"));
    }
    if has_forbidden_punctuation(s) {
        return Err(InputError::value(path, "must not contain markup or statement characters (< > ; \" ` \\ { } | $ -- /*)"));
    }
    Ok(())
}

/// A part of a person's name: letters of any script, combining marks, spaces, apostrophes,
/// hyphens, periods and commas.
fn check_name_part(s: &str, path: &str) -> Result<(), InputError> {
    check_len(s, path, 100)?;
    let ok = s.chars().all(|c| {
        c.is_alphabetic() || unicode_normalization::char::is_combining_mark(c) || matches!(c, ' ' | '\'' | '\u{2019}' | '-' | '.' | ',')
    }) && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(InputError::value(path, "a name may contain letters, spaces, apostrophes, hyphens, periods and commas only"))
    }
}

fn check_suffix(s: &str, path: &str) -> Result<(), InputError> {
    check_len(s, path, 40)?;
    if s.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | ',' | '\'' | '-')) && !s.contains("--") {
        Ok(())
    } else {
        Err(InputError::value(path, "a name suffix may contain letters, digits, spaces and . , ' - only"))
    }
}

fn check_code(s: &str, path: &str, allowed: &[&str]) -> Result<(), InputError> {
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(InputError::value(path, format!("must be one of: {}", allowed.join(", "))))
    }
}

pub(crate) fn check_uri(s: &str, path: &str) -> Result<(), InputError> {
    check_len(s, path, 256)?;
    let ok = s.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '`' | '\\' | '{' | '}' | '|' | ';' | '$'));
    if ok && s.contains(':') {
        Ok(())
    } else {
        Err(InputError::value(path, "must be an absolute URI without spaces, quotes or markup"))
    }
}

fn check_identifier_value(s: &str, path: &str) -> Result<(), InputError> {
    check_len(s, path, 64)?;
    let ok = s.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | ':' | ' ' | '#' | '+')) && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(InputError::value(path, "an identifier may contain letters, digits, spaces and - . _ / : # + only"))
    }
}

fn check_phone(s: &str, path: &str) -> Result<(), InputError> {
    check_len(s, path, 32)?;
    let ok = s.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '.' | 'x' | 'X')) && !s.contains("--");
    let n = phone_digits(s).len();
    if ok && (4..=20).contains(&n) {
        Ok(())
    } else {
        Err(InputError::value(path, "a phone number has 4 to 20 digits and may use spaces and + - ( ) . x"))
    }
}

fn check_email(s: &str, path: &str) -> Result<(), InputError> {
    check_len(s, path, 254)?;
    let mut parts = s.splitn(2, '@');
    let local = parts.next().unwrap_or_default();
    let domain = parts.next().unwrap_or_default();
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '+' | '\''))
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(InputError::value(path, "an email address is local@domain.tld without spaces, quotes or markup"))
    }
}

fn check_coding(c: &Coding, path: &str) -> Result<(), InputError> {
    if let Some(s) = &c.system {
        check_uri(s, &format!("{path}.system"))?;
    }
    if let Some(s) = &c.code {
        check_text(s, &format!("{path}.code"), 64)?;
    }
    if let Some(s) = &c.display {
        check_text(s, &format!("{path}.display"), MAX_TEXT)?;
    }
    Ok(())
}

fn check_concept(c: &CodeableConcept, path: &str) -> Result<(), InputError> {
    for (i, coding) in c.coding.iter().enumerate() {
        check_coding(coding, &format!("{path}.coding[{i}]"))?;
    }
    if let Some(t) = &c.text {
        check_text(t, &format!("{path}.text"), MAX_TEXT)?;
    }
    Ok(())
}

const NAME_USE: &[&str] = &["usual", "official", "temp", "nickname", "anonymous", "old", "maiden"];
const IDENTIFIER_USE: &[&str] = &["usual", "official", "temp", "secondary", "old"];
const TELECOM_SYSTEM: &[&str] = &["phone", "fax", "email", "pager", "url", "sms", "other"];
const TELECOM_USE: &[&str] = &["home", "work", "temp", "old", "mobile"];
const ADDRESS_USE: &[&str] = &["home", "work", "temp", "old", "billing"];
const ADDRESS_TYPE: &[&str] = &["postal", "physical", "both"];

impl Identifier {
    fn check(&self, path: &str) -> Result<(), InputError> {
        if let Some(u) = &self.use_ {
            check_code(u, &format!("{path}.use"), IDENTIFIER_USE)?;
        }
        if let Some(t) = &self.type_ {
            check_concept(t, &format!("{path}.type"))?;
        }
        if let Some(s) = &self.system {
            check_uri(s, &format!("{path}.system"))?;
        }
        match &self.value {
            Some(v) => check_identifier_value(v, &format!("{path}.value"))?,
            None => return Err(InputError::new(IssueCode::Required, Some(format!("{path}.value")), "an identifier needs a value")),
        }
        Ok(())
    }
}

impl HumanName {
    fn check(&self, path: &str) -> Result<(), InputError> {
        if let Some(u) = &self.use_ {
            check_code(u, &format!("{path}.use"), NAME_USE)?;
        }
        if let Some(t) = &self.text {
            check_name_part(t, &format!("{path}.text"))?;
        }
        if let Some(f) = &self.family {
            check_name_part(f, &format!("{path}.family"))?;
        }
        for (i, g) in self.given.iter().enumerate() {
            check_name_part(g, &format!("{path}.given[{i}]"))?;
        }
        for (i, p) in self.prefix.iter().enumerate() {
            check_name_part(p, &format!("{path}.prefix[{i}]"))?;
        }
        for (i, s) in self.suffix.iter().enumerate() {
            check_suffix(s, &format!("{path}.suffix[{i}]"))?;
        }
        if self.text.is_none() && self.family.is_none() && self.given.is_empty() {
            return Err(InputError::new(
                IssueCode::Required,
                Some(path.to_string()),
                "a name needs at least a family name, a given name or a text",
            ));
        }
        Ok(())
    }

    /// Every part a `name` search may match.
    fn parts(&self) -> impl Iterator<Item = &String> {
        self.family.iter().chain(self.given.iter()).chain(self.prefix.iter()).chain(self.suffix.iter()).chain(self.text.iter())
    }
}

impl ContactPoint {
    fn check(&self, path: &str) -> Result<(), InputError> {
        let system = self.system.as_deref();
        if let Some(s) = system {
            check_code(s, &format!("{path}.system"), TELECOM_SYSTEM)?;
        }
        if let Some(u) = &self.use_ {
            check_code(u, &format!("{path}.use"), TELECOM_USE)?;
        }
        if self.rank == Some(0) {
            return Err(InputError::value(&format!("{path}.rank"), "rank is a positive integer"));
        }
        let vpath = format!("{path}.value");
        match (&self.value, system) {
            (None, _) => Err(InputError::new(IssueCode::Required, Some(vpath), "a contact point needs a value")),
            (Some(_), None) => Err(InputError::new(
                IssueCode::Required,
                Some(format!("{path}.system")),
                "a contact point with a value needs a system (FHIR invariant cpt-2)",
            )),
            (Some(v), Some("phone" | "fax" | "sms" | "pager")) => check_phone(v, &vpath),
            (Some(v), Some("email")) => check_email(v, &vpath),
            (Some(v), Some(_)) => check_text(v, &vpath, 256),
        }
    }

    fn is_phone(&self) -> bool {
        matches!(self.system.as_deref(), Some("phone" | "sms" | "fax" | "pager"))
    }
}

impl Address {
    fn check(&self, path: &str) -> Result<(), InputError> {
        if let Some(u) = &self.use_ {
            check_code(u, &format!("{path}.use"), ADDRESS_USE)?;
        }
        if let Some(t) = &self.type_ {
            check_code(t, &format!("{path}.type"), ADDRESS_TYPE)?;
        }
        let fields: [(&str, &Option<String>, usize); 6] = [
            ("text", &self.text, MAX_TEXT),
            ("city", &self.city, 100),
            ("district", &self.district, 100),
            ("state", &self.state, 100),
            ("postalCode", &self.postal_code, 20),
            ("country", &self.country, 100),
        ];
        for (name, v, max) in fields {
            if let Some(v) = v {
                check_text(v, &format!("{path}.{name}"), max)?;
            }
        }
        for (i, l) in self.line.iter().enumerate() {
            check_text(l, &format!("{path}.line[{i}]"), 100)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

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

/// Element names echoed in errors are limited to a safe alphabet (they come from the client).
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

// ---------------------------------------------------------------------------------------------
// Rendering and storage parts

impl PatientData {
    /// Medical record number assigned by carevault, if present.
    pub fn mrn(&self) -> Option<Mrn> {
        self.identifier
            .iter()
            .find(|i| i.system.as_deref() == Some(MRN_SYSTEM))
            .and_then(|i| i.value.as_deref())
            .and_then(|v| Mrn::parse(v).ok())
    }

    /// Adds the carevault MRN identifier (first position).
    pub fn set_mrn(&mut self, mrn: &Mrn) {
        self.identifier.retain(|i| i.system.as_deref() != Some(MRN_SYSTEM));
        self.identifier.insert(
            0,
            Identifier {
                use_: Some("usual".to_string()),
                type_: Some(CodeableConcept {
                    coding: vec![Coding {
                        system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".to_string()),
                        code: Some("MR".to_string()),
                        display: Some("Medical record number".to_string()),
                    }],
                    text: None,
                }),
                system: Some(MRN_SYSTEM.to_string()),
                value: Some(mrn.as_str().to_string()),
            },
        );
    }

    /// Whether the submitted identifiers try to set a carevault MRN themselves.
    pub fn claims_mrn(&self) -> bool {
        self.identifier.iter().any(|i| i.system.as_deref() == Some(MRN_SYSTEM))
    }

    /// The FHIR JSON of this record as a Patient resource.
    pub fn to_fhir(&self, id: &str, version: i64, last_updated: &str) -> Value {
        let mut m = Map::new();
        m.insert("resourceType".into(), Value::from("Patient"));
        m.insert("id".into(), Value::from(id));
        m.insert("meta".into(), serde_json::json!({"versionId": version.to_string(), "lastUpdated": last_updated}));
        if !self.identifier.is_empty() {
            m.insert("identifier".into(), to_value(&self.identifier));
        }
        if let Some(a) = self.active {
            m.insert("active".into(), Value::from(a));
        }
        if !self.name.is_empty() {
            m.insert("name".into(), to_value(&self.name));
        }
        if !self.telecom.is_empty() {
            m.insert("telecom".into(), to_value(&self.telecom));
        }
        if let Some(g) = self.gender {
            m.insert("gender".into(), to_value(&g));
        }
        if let Some(d) = self.birth_date {
            m.insert("birthDate".into(), Value::from(d.to_string()));
        }
        if !self.address.is_empty() {
            m.insert("address".into(), to_value(&self.address));
        }
        Value::Object(m)
    }

    /// Splits the record into the separately sealed parts (JSON bytes each).
    pub fn to_parts(&self) -> PatientParts {
        let other = serde_json::json!({"active": self.active, "gender": self.gender});
        PatientParts {
            name: json_bytes(&self.name),
            birth_date: json_bytes(&self.birth_date.map(|d| d.to_string())),
            telecom: json_bytes(&self.telecom),
            identifier: json_bytes(&self.identifier),
            address: json_bytes(&self.address),
            other: json_bytes(&other),
        }
    }

    /// Rebuilds a record from its opened parts. These bytes were written by `to_parts`; a
    /// failure here means a corrupted store, never user input.
    pub fn from_parts(p: &PatientParts) -> Result<PatientData, String> {
        #[derive(Deserialize)]
        struct Other {
            active: Option<bool>,
            gender: Option<Gender>,
        }
        let other: Other = serde_json::from_slice(&p.other).map_err(|e| e.to_string())?;
        let birth: Option<String> = serde_json::from_slice(&p.birth_date).map_err(|e| e.to_string())?;
        let birth_date = match birth {
            Some(s) => Some(FhirDate::parse(&s, "birthDate").map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(PatientData {
            active: other.active,
            gender: other.gender,
            birth_date,
            name: serde_json::from_slice(&p.name).map_err(|e| e.to_string())?,
            telecom: serde_json::from_slice(&p.telecom).map_err(|e| e.to_string())?,
            identifier: serde_json::from_slice(&p.identifier).map_err(|e| e.to_string())?,
            address: serde_json::from_slice(&p.address).map_err(|e| e.to_string())?,
        })
    }

    /// The blind-index terms of this record: (kind, normalized text). Hashing happens in the
    /// crypto crate; the terms themselves never leave memory.
    pub fn index_terms(&self) -> Vec<(IndexKind, String)> {
        let mut out = Vec::new();
        for n in &self.name {
            if let Some(f) = &n.family {
                add_text_terms(&mut out, f, IndexKind::FamilyExact, IndexKind::FamilyPrefix);
            }
            for g in &n.given {
                add_text_terms(&mut out, g, IndexKind::GivenExact, IndexKind::GivenPrefix);
            }
            for p in n.parts() {
                add_text_terms(&mut out, p, IndexKind::NameExact, IndexKind::NamePrefix);
            }
        }
        if let Some(d) = self.birth_date {
            match d {
                FhirDate::Date(_) => {
                    out.push((IndexKind::BirthDate, d.to_string()));
                    out.push((IndexKind::BirthYearMonth, d.to_string()[..7].to_string()));
                }
                FhirDate::YearMonth(..) => out.push((IndexKind::BirthYearMonth, d.to_string())),
                FhirDate::Year(_) => {}
            }
            out.push((IndexKind::BirthYear, format!("{:04}", d.year())));
        }
        for i in &self.identifier {
            if let Some(v) = &i.value {
                let v = fold(v);
                if let Some(s) = &i.system {
                    out.push((IndexKind::IdentifierSystemValue, format!("{s}|{v}")));
                }
                out.push((IndexKind::IdentifierValue, v));
            }
        }
        if let Some(m) = self.mrn() {
            out.push((IndexKind::Mrn, m.as_str().to_string()));
        }
        for t in self.telecom.iter().filter(|t| t.is_phone()) {
            if let Some(v) = &t.value {
                out.push((IndexKind::Phone, phone_digits(v)));
            }
        }
        out.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        out.dedup();
        out
    }
}

fn add_text_terms(out: &mut Vec<(IndexKind, String)>, s: &str, exact: IndexKind, prefix: IndexKind) {
    let folded = fold(s);
    if folded.is_empty() {
        return;
    }
    let mut values: Vec<&str> = vec![folded.as_str()];
    values.extend(folded.split(' ').filter(|w| *w != folded));
    for v in values {
        out.push((exact, v.to_string()));
        let chars: Vec<(usize, char)> = v.char_indices().collect();
        for n in MIN_PREFIX..=chars.len() {
            let end = chars.get(n).map_or(v.len(), |(i, _)| *i);
            out.push((prefix, v[..end].to_string()));
        }
    }
}

/// Shortest prefix searchable by a prefix index. Shorter queries match whole words only.
pub const MIN_PREFIX: usize = 3;

/// The kinds of blind index. The code is stored with each token and mixed into its HMAC, so a
/// token of one kind never matches another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum IndexKind {
    FamilyExact = 1,
    FamilyPrefix = 2,
    GivenExact = 3,
    GivenPrefix = 4,
    NameExact = 5,
    NamePrefix = 6,
    BirthDate = 7,
    BirthYearMonth = 8,
    BirthYear = 9,
    IdentifierValue = 10,
    IdentifierSystemValue = 11,
    Mrn = 12,
    Phone = 13,
}

impl IndexKind {
    pub fn code(self) -> i64 {
        self as u8 as i64
    }
}

/// The separately sealed parts of a patient record (plaintext JSON; only ever in memory).
pub struct PatientParts {
    pub name: Vec<u8>,
    pub birth_date: Vec<u8>,
    pub telecom: Vec<u8>,
    pub identifier: Vec<u8>,
    pub address: Vec<u8>,
    pub other: Vec<u8>,
}

impl fmt::Debug for PatientParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientParts(<redacted>)")
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
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
}
