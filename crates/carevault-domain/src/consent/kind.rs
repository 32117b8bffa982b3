//! What a consent is about, and its FHIR codes.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Placeholder;
use crate::error::InputError;

/// The code system of `Consent.category` codes used here.
pub const LOINC_SYSTEM: &str = "http://loinc.org";
/// The code system of `Consent.scope` (FHIR R4).
pub const CONSENT_SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";

/// One FHIR coding (system, code, display) of a consent kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentCoding {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

/// What a consent is about. Serialized as its stable id (`treatment`, `privacy-practices`,
/// `telehealth`, `release-of-information`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentKind {
    /// Consent to examination and treatment.
    Treatment,
    /// Acknowledgement of receipt of the Notice of Privacy Practices.
    PrivacyPractices,
    /// Consent to care delivered by telehealth.
    Telehealth,
    /// Authorization to release health information to a named recipient.
    ReleaseOfInformation,
}

impl ConsentKind {
    pub const ALL: [ConsentKind; 4] =
        [ConsentKind::Treatment, ConsentKind::PrivacyPractices, ConsentKind::Telehealth, ConsentKind::ReleaseOfInformation];

    /// The stable id (used in URLs, storage and the template hash).
    pub fn id(self) -> &'static str {
        match self {
            ConsentKind::Treatment => "treatment",
            ConsentKind::PrivacyPractices => "privacy-practices",
            ConsentKind::Telehealth => "telehealth",
            ConsentKind::ReleaseOfInformation => "release-of-information",
        }
    }

    /// Parses a stable id.
    pub fn parse(id: &str) -> Result<Self, InputError> {
        ConsentKind::ALL.into_iter().find(|k| k.id() == id).ok_or_else(|| {
            InputError::value("kind", "unknown consent kind: one of treatment, privacy-practices, telehealth, release-of-information")
        })
    }

    /// The title of the built-in template.
    pub fn title(self) -> &'static str {
        match self {
            ConsentKind::Treatment => "Consent to Treatment",
            ConsentKind::PrivacyPractices => "Acknowledgement of Receipt of the Notice of Privacy Practices",
            ConsentKind::Telehealth => "Consent to Telehealth Services",
            ConsentKind::ReleaseOfInformation => "Authorization to Release Health Information",
        }
    }

    /// `Consent.category`: the LOINC document code.
    pub fn category(self) -> ConsentCoding {
        let (code, display) = match self {
            ConsentKind::Treatment | ConsentKind::Telehealth => ("59284-0", "Patient Consent"),
            ConsentKind::PrivacyPractices => ("57016-8", "Privacy policy acknowledgment Document"),
            ConsentKind::ReleaseOfInformation => ("64292-6", "Release of information consent"),
        };
        ConsentCoding { system: LOINC_SYSTEM, code, display }
    }

    /// `Consent.scope` (FHIR R4 consentscope).
    pub fn scope(self) -> ConsentCoding {
        let (code, display) = match self {
            ConsentKind::Treatment | ConsentKind::Telehealth => ("treatment", "Treatment"),
            ConsentKind::PrivacyPractices | ConsentKind::ReleaseOfInformation => ("patient-privacy", "Privacy Consent"),
        };
        ConsentCoding { system: CONSENT_SCOPE_SYSTEM, code, display }
    }

    /// The placeholders every template of this kind must contain: every consent names the patient
    /// and the organization; a release of information (a HIPAA authorization, 45 CFR 164.508(c))
    /// also names the recipient, the purpose, the information released and the expiry.
    pub fn required_placeholders(self) -> &'static [Placeholder] {
        use Placeholder::*;
        match self {
            ConsentKind::ReleaseOfInformation => &[PatientName, BirthDate, Organization, Recipient, Purpose, Scope, Expires],
            _ => &[PatientName, BirthDate, Organization],
        }
    }
}

impl fmt::Display for ConsentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}
