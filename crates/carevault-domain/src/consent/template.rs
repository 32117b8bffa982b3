//! Versioned consent templates, their placeholders and the built-in version 1 texts.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::document::{segments, to_hex, Segment};
use super::ConsentKind;
use crate::error::{InputError, IssueCode};

/// A placeholder a template body may contain, written `{{name}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    PatientName,
    BirthDate,
    Organization,
    Recipient,
    Purpose,
    Scope,
    Expires,
}

impl Placeholder {
    pub const ALL: [Placeholder; 7] = [
        Placeholder::PatientName,
        Placeholder::BirthDate,
        Placeholder::Organization,
        Placeholder::Recipient,
        Placeholder::Purpose,
        Placeholder::Scope,
        Placeholder::Expires,
    ];

    /// The name between the braces (and the field of [`DocumentFields`](super::DocumentFields) that fills it).
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::PatientName => "patient_name",
            Placeholder::BirthDate => "birth_date",
            Placeholder::Organization => "organization",
            Placeholder::Recipient => "recipient",
            Placeholder::Purpose => "purpose",
            Placeholder::Scope => "scope",
            Placeholder::Expires => "expires",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Self> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The longest value accepted, in characters.
    pub(super) fn max_chars(self) -> usize {
        match self {
            Placeholder::Scope | Placeholder::Purpose => 2000,
            _ => 200,
        }
    }
}

/// A versioned consent template. The built-in ones are version 1 ([`builtin_templates`]); the
/// caller stores further versions. A consent records the kind, version and [`Template::sha256`]
/// of the template it was signed against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub kind: ConsentKind,
    pub version: u32,
    pub title: String,
    pub body: String,
}

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 50_000;

impl Template {
    /// Checks a template before it is stored or used: version at least 1; a one-line title;
    /// a body without control characters (other than line breaks and tabs) whose placeholders
    /// are all known, well-formed (`{{name}}`) and include the kind's
    /// [required ones](ConsentKind::required_placeholders).
    pub fn check(&self) -> Result<(), InputError> {
        if self.version == 0 {
            return Err(InputError::value("template.version", "a template version starts at 1"));
        }
        let title = self.title.trim();
        if title.is_empty() {
            return Err(InputError::new(IssueCode::Required, Some("template.title".to_string()), "a template needs a title"));
        }
        if self.title.chars().count() > MAX_TITLE_CHARS || self.title.chars().any(char::is_control) {
            return Err(InputError::value("template.title", "a title is one line of at most 200 characters"));
        }
        if self.body.trim().is_empty() {
            return Err(InputError::new(IssueCode::Required, Some("template.body".to_string()), "a template needs a body"));
        }
        if self.body.chars().count() > MAX_BODY_CHARS {
            return Err(InputError::value("template.body", "a template body is at most 50000 characters"));
        }
        if self.body.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(InputError::value("template.body", "a template body has no control characters other than line breaks and tabs"));
        }
        let used = self.placeholders()?;
        for required in self.kind.required_placeholders() {
            if !used.contains(required) {
                return Err(InputError::value(
                    "template.body",
                    format!("a {} template must contain the placeholder {{{{{}}}}}", self.kind.id(), required.name()),
                ));
            }
        }
        Ok(())
    }

    /// The placeholders the body uses, in order of first use.
    pub fn placeholders(&self) -> Result<Vec<Placeholder>, InputError> {
        let mut used = Vec::new();
        for segment in segments(&self.body, "template.body")? {
            if let Segment::Placeholder(name) = segment {
                let p = Placeholder::from_name(name)
                    .ok_or_else(|| InputError::value("template.body", format!("unknown placeholder {{{{{name}}}}}")))?;
                if !used.contains(&p) {
                    used.push(p);
                }
            }
        }
        Ok(used)
    }

    /// The SHA-256 (lower-case hex) that names this exact template: of the UTF-8 bytes of
    /// `"{kind id}\n{version}\n{length of title in bytes}\n{title}\n{body}"`. The title is
    /// included because it is part of the signed document.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("{}\n{}\n{}\n", self.kind.id(), self.version, self.title.len()).as_bytes());
        h.update(self.title.as_bytes());
        h.update(b"\n");
        h.update(self.body.as_bytes());
        to_hex(&h.finalize())
    }
}

/// The built-in version 1 templates, one per kind. Plain, clinic-neutral wording; a clinic that
/// needs other wording (its counsel's) stores its own template as a later version.
pub fn builtin_templates() -> Vec<Template> {
    ConsentKind::ALL
        .into_iter()
        .map(|kind| Template { kind, version: 1, title: kind.title().to_string(), body: builtin_body(kind).to_string() })
        .collect()
}

/// The built-in version 1 template of one kind.
pub fn builtin_template(kind: ConsentKind) -> Template {
    Template { kind, version: 1, title: kind.title().to_string(), body: builtin_body(kind).to_string() }
}

fn builtin_body(kind: ConsentKind) -> &'static str {
    match kind {
        ConsentKind::Treatment => {
            "Patient: {{patient_name}}
Date of birth: {{birth_date}}
Provider: {{organization}}

I consent to the examinations, tests and treatment that the clinicians of {{organization}} recommend and explain to me. I understand that I may ask questions at any time, that no particular result has been promised to me, and that I may refuse or stop any treatment.

Before a procedure with significant risks, the clinician will explain its purpose, risks, benefits and alternatives, and may ask for my separate consent to it.

This consent remains in effect until I revoke it in writing. Revoking it does not affect care given before the revocation."
        }
        ConsentKind::PrivacyPractices => {
            "Patient: {{patient_name}}
Date of birth: {{birth_date}}
Provider: {{organization}}

I acknowledge that I have received the Notice of Privacy Practices of {{organization}}. The notice describes how my health information may be used and disclosed, and my rights regarding it, including the right to see and get a copy of my records, to ask for corrections, and to file a complaint.

I understand that {{organization}} may change its notice, and that I may ask for the current version at any time.

Signing this acknowledgement does not mean that I agree to any particular use or disclosure of my health information."
        }
        ConsentKind::Telehealth => {
            "Patient: {{patient_name}}
Date of birth: {{birth_date}}
Provider: {{organization}}

I consent to receive health care from {{organization}} by telehealth (live video, telephone or secure messaging) instead of, or in addition to, visits in person.

I understand that telehealth has limits: the clinician cannot examine me in person, a technical problem may interrupt a visit, and despite reasonable safeguards an electronic connection carries some risk to privacy. The clinician may decide that I need to be seen in person.

I will take part from a place where I can speak privately. In an emergency I will call the local emergency number instead of using telehealth.

I may withdraw this consent at any time and ask for care in person instead."
        }
        ConsentKind::ReleaseOfInformation => {
            "Patient: {{patient_name}}
Date of birth: {{birth_date}}

I authorize {{organization}} to release my health information, as described below, to:

Recipient: {{recipient}}
Purpose: {{purpose}}
Information to be released: {{scope}}
This authorization expires: {{expires}}

I understand that I may revoke this authorization in writing at any time, except to the extent that action has already been taken in reliance on it. My treatment, payment, enrollment or eligibility for benefits does not depend on whether I sign it.

Information disclosed under this authorization may be disclosed again by the recipient and may then no longer be protected by federal privacy law."
        }
    }
}
