//! The FHIR R4 AllergyIntolerance subset carevault stores, parsed and checked at the boundary.
//!
//! Same rules as `patient`: every element is either understood and checked against its grammar,
//! or refused with `not-supported` (except `meta` and `text`, which the server owns). Errors name
//! the element by its FHIRPath and never repeat the submitted value.
//!
//! Here the types and their FHIR rendering; `parse` reads a request body into them.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;

use crate::error::InputError;
use crate::patient::FhirDate;

mod parse;
#[cfg(test)]
mod tests;

pub use parse::parse_allergy;

const RESOURCE: &str = "AllergyIntolerance";

pub const CLINICAL_STATUS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
pub const VERIFICATION_STATUS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

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
