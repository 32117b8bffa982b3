//! The FHIR R4 Patient subset carevault stores, parsed and checked at the boundary.
//!
//! Every string is checked against the grammar of its field. Values are always bound as
//! parameters and sealed before storage, so this is not what stops injection; it keeps markup,
//! SQL fragments and control characters out of records that later become documents, letters,
//! exports and claim files, and gives the sender a precise error instead.
//!
//! Here the types and their FHIR rendering; `grammar` (each field's rules), `parse` (the request
//! body), `storage` (the sealed parts and the blind-index terms).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;

use crate::error::InputError;
use crate::ids::{Mrn, MRN_SYSTEM};

mod grammar;
mod parse;
mod storage;
#[cfg(test)]
mod tests;

pub(crate) use grammar::{check_text, check_uri};
pub use parse::parse_patient;
pub(crate) use parse::{json_error_kind, unsupported_element};
pub use storage::{IndexKind, PatientParts, MIN_PREFIX};

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
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
