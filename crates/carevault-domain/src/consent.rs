//! Consents: the templates a patient signs, the canonical text that is signed, the drawn
//! signature, the signed record and its PDF.
//!
//! The signed object is the *document*: the template's title and body with the patient's
//! details filled in, followed by an explicit statement of intent to sign, canonicalized (`\n`
//! line endings, NFC, no trailing white space). Its SHA-256 is recorded with the consent, printed
//! in the PDF and the document itself is embedded in the PDF as `consent-document.txt`, so anyone
//! can extract it and recompute the hash. The PDF is a pure function of the record (no clock, a
//! file `/ID` derived from the hashes): verifying a PDF means rendering the record again and
//! comparing bytes ([`verify_pdf`]).

use std::fmt;

use pdf_writer::types::{LineCapStyle, LineJoinStyle};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;

use crate::error::{InputError, IssueCode};

// ---------------------------------------------------------------------------------------------
// Kinds and their FHIR codes
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

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

    /// The name between the braces (and the field of [`DocumentFields`] that fills it).
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

    fn from_name(name: &str) -> Option<Self> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The longest value accepted, in characters.
    fn max_chars(self) -> usize {
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

// ---------------------------------------------------------------------------------------------
// The rendered document
// ---------------------------------------------------------------------------------------------

/// The statement of intent appended to every document; `{{signer}}` is the typed name.
pub const INTENT_STATEMENT: &str = "By signing below I, {{signer}}, confirm that I have read this document and agree to it. \
I intend my typed name and drawn signature to be my legal signature.";

/// Appended to the intent statement when someone other than the patient signs.
pub const REPRESENTATIVE_STATEMENT: &str =
    "I am signing on behalf of {{patient_name}} as their {{relationship}} and I am authorized to do so.";

/// The values that fill a template. `birth_date` and `expires` are text as the caller wants it
/// shown (e.g. `1980-04-01`). `signer_relationship` is `None` or `self` when the patient signs,
/// otherwise e.g. `parent` or `legal guardian`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DocumentFields {
    pub patient_name: String,
    pub birth_date: String,
    pub organization: String,
    pub recipient: Option<String>,
    pub purpose: Option<String>,
    pub scope: Option<String>,
    pub expires: Option<String>,
    pub signer_typed_name: String,
    pub signer_relationship: Option<String>,
}

redacted_debug!(DocumentFields);

impl DocumentFields {
    fn get(&self, p: Placeholder) -> Option<&str> {
        match p {
            Placeholder::PatientName => Some(&self.patient_name),
            Placeholder::BirthDate => Some(&self.birth_date),
            Placeholder::Organization => Some(&self.organization),
            Placeholder::Recipient => self.recipient.as_deref(),
            Placeholder::Purpose => self.purpose.as_deref(),
            Placeholder::Scope => self.scope.as_deref(),
            Placeholder::Expires => self.expires.as_deref(),
        }
    }

    /// The relationship of a representative signer, or `None` when the patient signs.
    fn representative(&self) -> Result<Option<&str>, InputError> {
        match self.signer_relationship.as_deref().map(str::trim) {
            None => Ok(None),
            Some(r) if r.eq_ignore_ascii_case("self") => Ok(None),
            Some(_) => field_value(self.signer_relationship.as_deref(), "fields.signer_relationship", 100).map(Some),
        }
    }
}

/// A field's value: trimmed, present, one line, not too long. Messages never repeat the value.
fn field_value<'a>(value: Option<&'a str>, path: &str, max_chars: usize) -> Result<&'a str, InputError> {
    let v = value.map(str::trim).unwrap_or("");
    if v.is_empty() {
        return Err(InputError::new(IssueCode::Required, Some(path.to_string()), "required by the consent template"));
    }
    if v.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err(InputError::value(path, "must be one line without control characters"));
    }
    if v.chars().count() > max_chars {
        return Err(InputError::value(path, format!("at most {max_chars} characters")));
    }
    Ok(v)
}

/// Fills `template` with `fields` and appends the intent statement: the canonical document that
/// is signed. Errors: the template fails [`Template::check`]; a field its placeholders need is
/// missing or empty (`required`, path `fields.<name>`); a value is not one line or too long.
pub fn render_document(template: &Template, fields: &DocumentFields) -> Result<String, InputError> {
    template.check()?;
    let mut out = String::with_capacity(template.body.len() + 512);
    out.push_str(template.title.trim());
    out.push_str("\n\n");
    for segment in segments(&template.body, "template.body")? {
        match segment {
            Segment::Text(t) => out.push_str(t),
            Segment::Placeholder(name) => {
                let p = Placeholder::from_name(name)
                    .ok_or_else(|| InputError::value("template.body", format!("unknown placeholder {{{{{name}}}}}")))?;
                out.push_str(field_value(fields.get(p), &format!("fields.{}", p.name()), p.max_chars())?);
            }
        }
    }
    let signer = field_value(Some(&fields.signer_typed_name), "fields.signer_typed_name", 200)?;
    out.push_str("\n\n");
    out.push_str(&fill(INTENT_STATEMENT, &[("signer", signer)]));
    if let Some(relationship) = fields.representative()? {
        let patient = field_value(Some(&fields.patient_name), "fields.patient_name", 200)?;
        out.push(' ');
        out.push_str(&fill(REPRESENTATIVE_STATEMENT, &[("patient_name", patient), ("relationship", relationship)]));
    }
    Ok(canonicalize(&out))
}

/// Substitutes the placeholders of one of this module's constants (single pass: a value that
/// itself contains `{{...}}` is not expanded again).
fn fill(constant: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(constant.len() + 64);
    let mut rest = constant;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| values.iter().find(|(k, _)| *k == &after[..end]).map(|(_, v)| (end, *v))) {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

enum Segment<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits a template body into text and `{{name}}` placeholders. A `{{` without its `}}`, a
/// stray `}}`, or a name that is not lower-case letters and `_`, is an error.
fn segments<'a>(body: &'a str, path: &str) -> Result<Vec<Segment<'a>>, InputError> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let open = rest.find("{{");
        let close = rest.find("}}");
        match (open, close) {
            (None, None) => break,
            (None, Some(_)) => return Err(InputError::value(path, "'}}' outside a placeholder")),
            (Some(o), Some(c)) if c < o => return Err(InputError::value(path, "'}}' outside a placeholder")),
            (Some(_), None) => return Err(InputError::value(path, "a placeholder opened with '{{' is not closed with '}}'")),
            (Some(o), Some(_)) => {
                out.push(Segment::Text(&rest[..o]));
                let after = &rest[o + 2..];
                let end = after.find("}}").unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return Err(InputError::value(path, "a placeholder is written {{name}} with a known lower-case name"));
                }
                out.push(Segment::Placeholder(name));
                rest = after.get(end + 2..).unwrap_or("");
            }
        }
    }
    out.push(Segment::Text(rest));
    Ok(out)
}

/// The canonical form of a document: `\n` line endings (CR LF, CR and Unicode line/paragraph
/// separators become `\n`), NFC, tabs as spaces, no trailing white space on any line, no blank
/// lines at the start or end, at most one blank line in a row, and no final line break.
pub fn canonicalize(text: &str) -> String {
    let unified: String = text
        .replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => '\n',
            '\t' => ' ',
            c => c,
        })
        .nfc()
        .collect();
    let mut lines: Vec<&str> = Vec::new();
    for line in unified.split('\n') {
        let line = line.trim_end();
        if line.is_empty() && lines.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// SHA-256 of the document's UTF-8 bytes.
pub fn document_sha256(doc: &str) -> [u8; 32] {
    Sha256::digest(doc.as_bytes()).into()
}

/// [`document_sha256`] as lower-case hex.
pub fn document_sha256_hex(doc: &str) -> String {
    to_hex(&document_sha256(doc))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The drawn signature
// ---------------------------------------------------------------------------------------------

/// A signature drawn on a canvas of `width` × `height` units (pixels of the signing pad): strokes
/// of `[x, y]` points, y pointing down. Points on the canvas edge (`x == width`) are inside.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawnSignature {
    pub width: u16,
    pub height: u16,
    pub strokes: Vec<Vec<[u16; 2]>>,
}

redacted_debug!(DrawnSignature);

impl DrawnSignature {
    pub const WIDTH: std::ops::RangeInclusive<u16> = 100..=2000;
    pub const HEIGHT: std::ops::RangeInclusive<u16> = 50..=1000;
    pub const MAX_STROKES: usize = 100;
    pub const MAX_POINTS_PER_STROKE: usize = 2000;
    pub const MAX_POINTS: usize = 20_000;
    /// The narrowest drawing accepted (bounding box width in canvas units): not a dot.
    pub const MIN_EXTENT: u16 = 10;

    pub fn check(&self) -> Result<(), InputError> {
        if !Self::WIDTH.contains(&self.width) {
            return Err(InputError::value("signature.width", "the canvas is 100 to 2000 units wide"));
        }
        if !Self::HEIGHT.contains(&self.height) {
            return Err(InputError::value("signature.height", "the canvas is 50 to 1000 units high"));
        }
        if self.strokes.is_empty() {
            return Err(InputError::new(IssueCode::Required, Some("signature.strokes".to_string()), "the signature has no strokes"));
        }
        if self.strokes.len() > Self::MAX_STROKES {
            return Err(InputError::value("signature.strokes", "at most 100 strokes"));
        }
        let mut total = 0usize;
        for (i, stroke) in self.strokes.iter().enumerate() {
            if stroke.is_empty() || stroke.len() > Self::MAX_POINTS_PER_STROKE {
                return Err(InputError::value(&format!("signature.strokes[{i}]"), "a stroke has 1 to 2000 points"));
            }
            total += stroke.len();
            if let Some(j) = stroke.iter().position(|[x, y]| *x > self.width || *y > self.height) {
                return Err(InputError::value(&format!("signature.strokes[{i}][{j}]"), "the point is outside the canvas"));
            }
        }
        if total > Self::MAX_POINTS {
            return Err(InputError::value("signature.strokes", "at most 20000 points in all"));
        }
        let (min_x, max_x) = self.points().fold((u16::MAX, 0), |(lo, hi), [x, _]| (lo.min(x), hi.max(x)));
        if max_x.saturating_sub(min_x) < Self::MIN_EXTENT {
            return Err(InputError::value("signature.strokes", "the drawing is too small to be a signature"));
        }
        Ok(())
    }

    fn points(&self) -> impl Iterator<Item = [u16; 2]> + '_ {
        self.strokes.iter().flatten().copied()
    }

    /// The stable serialization that is hashed: compact JSON with the keys in this order,
    /// `{"width":W,"height":H,"strokes":[[[x,y],...],...]}` (what `serde_json::to_vec` writes).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut s = format!("{{\"width\":{},\"height\":{},\"strokes\":[", self.width, self.height);
        for (i, stroke) in self.strokes.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('[');
            for (j, [x, y]) in stroke.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                s.push_str(&format!("[{x},{y}]"));
            }
            s.push(']');
        }
        s.push_str("]}");
        s.into_bytes()
    }

    /// SHA-256 of [`canonical_bytes`](Self::canonical_bytes).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// [`sha256`](Self::sha256) as lower-case hex.
    pub fn sha256_hex(&self) -> String {
        to_hex(&self.sha256())
    }
}

// ---------------------------------------------------------------------------------------------
// The signed consent
// ---------------------------------------------------------------------------------------------

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_REVOKED: &str = "revoked";

/// A signed consent as stored. `document` is the canonical document ([`render_document`]);
/// the hashes are lower-case hex.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedConsent {
    pub id: String,
    pub kind: ConsentKind,
    pub template_version: u32,
    pub template_sha256: String,
    pub title: String,
    pub document: String,
    pub document_sha256: String,
    pub signer_typed_name: String,
    pub signer_relationship: Option<String>,
    /// RFC 3339, UTC.
    pub signed_at_utc: String,
    /// The signer's local time as shown to them (RFC 3339 with offset, or as the caller formats it).
    pub signed_at_local: String,
    /// The signing device (e.g. the browser's user agent).
    pub device: String,
    pub ip: String,
    pub signature: DrawnSignature,
    pub signature_sha256: String,
    /// `active` or `revoked`.
    pub status: String,
    pub revoked_at: Option<String>,
}

impl fmt::Debug for SignedConsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedConsent")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("template_version", &self.template_version)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Where and when a consent is signed (given by the caller: this crate has no clock).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningContext {
    pub id: String,
    /// RFC 3339 in UTC (`Z` or `+00:00`).
    pub signed_at_utc: String,
    pub signed_at_local: String,
    pub device: String,
    pub ip: String,
}

redacted_debug!(SigningContext);

/// Builds the record of a consent signed now: checks the signature, renders the document, and
/// computes the hashes. The typed name and relationship come from `fields`.
pub fn sign(
    template: &Template,
    fields: &DocumentFields,
    signature: DrawnSignature,
    ctx: SigningContext,
) -> Result<SignedConsent, InputError> {
    signature.check()?;
    let document = render_document(template, fields)?;
    let id = field_value(Some(&ctx.id), "id", 64)?.to_string();
    let utc = field_value(Some(&ctx.signed_at_utc), "signed_at_utc", 64)?;
    match OffsetDateTime::parse(utc, &Rfc3339) {
        Ok(t) if t.offset().is_utc() => {}
        _ => return Err(InputError::value("signed_at_utc", "an RFC 3339 time in UTC")),
    }
    let local = field_value(Some(&ctx.signed_at_local), "signed_at_local", 64)?.to_string();
    let device = field_value(Some(&ctx.device), "device", 512)?.to_string();
    let ip = field_value(Some(&ctx.ip), "ip", 64)?.to_string();
    let relationship = fields.representative()?.map(str::to_string);
    Ok(SignedConsent {
        id,
        kind: template.kind,
        template_version: template.version,
        template_sha256: template.sha256(),
        title: template.title.trim().to_string(),
        document_sha256: document_sha256_hex(&document),
        document,
        signer_typed_name: fields.signer_typed_name.trim().to_string(),
        signer_relationship: relationship,
        signed_at_utc: utc.to_string(),
        signed_at_local: local,
        device,
        ip,
        signature_sha256: signature.sha256_hex(),
        signature,
        status: STATUS_ACTIVE.to_string(),
        revoked_at: None,
    })
}

impl SignedConsent {
    pub fn is_revoked(&self) -> bool {
        self.status == STATUS_REVOKED
    }
}

/// Why a PDF or record failed [`verify_pdf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The record's document does not hash to its recorded `document_sha256`.
    #[error("the consent's document does not match its recorded SHA-256")]
    DocumentHashMismatch,
    /// The record's drawn signature does not hash to its recorded `signature_sha256`.
    #[error("the consent's signature does not match its recorded SHA-256")]
    SignatureHashMismatch,
    /// The PDF is not byte for byte the one rendered from the record.
    #[error("the PDF differs from the one rendered from the consent record")]
    PdfDiffers,
}

/// Verifies a PDF against the stored record: the record's document and signature hash to the
/// recorded values, and the PDF is exactly [`render_pdf`] of the record.
pub fn verify_pdf(pdf: &[u8], c: &SignedConsent) -> Result<(), VerifyError> {
    if document_sha256_hex(&c.document) != c.document_sha256 {
        return Err(VerifyError::DocumentHashMismatch);
    }
    if c.signature.sha256_hex() != c.signature_sha256 {
        return Err(VerifyError::SignatureHashMismatch);
    }
    if render_pdf(c) != pdf {
        return Err(VerifyError::PdfDiffers);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The PDF
// ---------------------------------------------------------------------------------------------

/// The name of the embedded canonical document.
pub const EMBEDDED_DOCUMENT_NAME: &str = "consent-document.txt";

// A4 in points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN_X: f32 = 60.0;
const TOP: f32 = PAGE_H - 60.0;
const BOTTOM: f32 = 60.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN_X;

const BODY_SIZE: f32 = 10.5;
const BODY_LEADING: f32 = 14.5;
const TITLE_SIZE: f32 = 16.0;
const SMALL_SIZE: f32 = 8.5;
const SMALL_LEADING: f32 = 11.5;

const SIG_BOX_W: f32 = 260.0;
const SIG_BOX_H: f32 = 100.0;
const SIG_PAD: f32 = 8.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
        }
    }

    fn widths(self) -> &'static [u16; 224] {
        match self {
            Font::Regular => &HELVETICA_WIDTHS,
            Font::Bold => &HELVETICA_BOLD_WIDTHS,
        }
    }

    /// Width in points of WinAnsi-encoded text.
    fn width(self, text: &[u8], size: f32) -> f32 {
        let w = self.widths();
        let units: u32 = text.iter().map(|b| b.checked_sub(32).map_or(0, |i| u32::from(w[usize::from(i)]))).sum();
        units as f32 * size / 1000.0
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Color {
    Black,
    Gray,
    Red,
}

enum Op {
    Text {
        font: Font,
        size: f32,
        color: Color,
        x: f32,
        y: f32,
        bytes: Vec<u8>,
    },
    /// The signature box with its top-left corner at (x, y).
    Signature {
        x: f32,
        y: f32,
    },
}

/// Lays text out top to bottom over as many pages as it needs.
struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
    substituted: bool,
}

impl Layout {
    fn new() -> Self {
        Layout { pages: vec![Vec::new()], y: TOP, substituted: false }
    }

    fn page(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    /// Starts a new page unless `height` points still fit on this one.
    fn ensure(&mut self, height: f32) {
        if self.y - height < BOTTOM && self.y < TOP {
            self.new_page();
        }
    }

    fn space(&mut self, height: f32) {
        self.y -= height;
    }

    /// A paragraph (one line of the document), word-wrapped to the text width.
    fn paragraph(&mut self, font: Font, size: f32, leading: f32, color: Color, text: &str) {
        let (bytes, substituted) = win_ansi(text);
        self.substituted |= substituted;
        for line in wrap(&bytes, font, size, TEXT_W) {
            self.ensure(leading);
            self.y -= leading;
            let y = self.y + (leading - size) / 2.0 + size * 0.2;
            self.page().push(Op::Text { font, size, color, x: MARGIN_X, y, bytes: line });
        }
    }
}

/// Renders the consent as a PDF (A4): the title, the document word-wrapped in Helvetica, the
/// drawn signature as vector strokes in a box, the signing details and hashes, `REVOKED` when
/// revoked, and the canonical document embedded as `consent-document.txt`. Deterministic: the
/// same record gives the same bytes.
pub fn render_pdf(c: &SignedConsent) -> Vec<u8> {
    let doc_hash = document_sha256(&c.document);
    let doc_hex = to_hex(&doc_hash);
    let sig_hex = c.signature.sha256_hex();
    let revoked = c.is_revoked().then(|| match c.revoked_at.as_deref() {
        Some(at) => format!("REVOKED {at}"),
        None => "REVOKED".to_string(),
    });

    let mut l = Layout::new();
    // Title and, when revoked, the banner under it.
    l.paragraph(Font::Bold, TITLE_SIZE, TITLE_SIZE * 1.3, Color::Black, &c.title);
    if let Some(r) = &revoked {
        l.paragraph(Font::Bold, 12.0, 16.0, Color::Red, r);
    }
    l.space(BODY_LEADING * 0.6);

    // The document; its first line is the title already shown above.
    let mut lines: Vec<&str> = c.document.split('\n').collect();
    if lines.first() == Some(&c.title.as_str()) {
        let skip = if lines.get(1) == Some(&"") { 2 } else { 1 };
        lines.drain(..skip);
    }
    // Its last paragraph (the statement of intent) is kept on the page of the signature.
    let last = lines.iter().rposition(|line| !line.trim().is_empty()).map(|i| lines.remove(i));
    for line in lines {
        if line.trim().is_empty() {
            l.space(BODY_LEADING * 0.6);
        } else {
            l.paragraph(Font::Regular, BODY_SIZE, BODY_LEADING, Color::Black, line);
        }
    }

    // The statement of intent and the signature block stay together on one page.
    let details = signing_details(c, &doc_hex, &sig_hex);
    let intent_h = last.map_or(0.0, |line| wrap(&win_ansi(line).0, Font::Regular, BODY_SIZE, TEXT_W).len() as f32 * BODY_LEADING);
    let block = BODY_LEADING
        + 16.0
        + 4.0
        + SIG_BOX_H
        + 4.0
        + 16.0
        + if revoked.is_some() { 16.0 } else { 0.0 }
        + 4.0
        + SMALL_LEADING * (details.len() as f32 + 1.5);
    l.ensure(intent_h + block);
    if let Some(line) = last {
        l.paragraph(Font::Regular, BODY_SIZE, BODY_LEADING, Color::Black, line);
    }
    l.space(BODY_LEADING);
    l.paragraph(Font::Bold, 11.0, 16.0, Color::Black, "Signature");
    l.space(4.0);
    let top = l.y;
    l.page().push(Op::Signature { x: MARGIN_X, y: top });
    l.y -= SIG_BOX_H + 4.0;
    l.paragraph(Font::Bold, 11.0, 16.0, Color::Black, &c.signer_typed_name);
    if let Some(r) = &revoked {
        l.paragraph(Font::Bold, 12.0, 16.0, Color::Red, r);
    }
    l.space(4.0);
    for line in &details {
        l.paragraph(Font::Regular, SMALL_SIZE, SMALL_LEADING, Color::Black, line);
    }
    l.space(SMALL_LEADING * 0.5);
    l.paragraph(
        Font::Regular,
        SMALL_SIZE,
        SMALL_LEADING,
        Color::Gray,
        "The exact signed text is embedded in this PDF as consent-document.txt (UTF-8); its SHA-256 is the document hash above.",
    );
    if l.substituted {
        l.paragraph(
            Font::Regular,
            SMALL_SIZE,
            SMALL_LEADING,
            Color::Gray,
            "Characters that the PDF font cannot show are printed as '?'; the embedded document has them exactly.",
        );
    }

    write_pdf(c, l.pages, &doc_hash, &doc_hex, &sig_hex, revoked.as_deref())
}

fn signing_details(c: &SignedConsent, doc_hex: &str, sig_hex: &str) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(r) = c.signer_relationship.as_deref().filter(|r| !r.trim().eq_ignore_ascii_case("self")) {
        d.push(format!("Signed as: {r}"));
    }
    d.push(format!("Signed at (UTC): {}", c.signed_at_utc));
    d.push(format!("Signed at (local time): {}", c.signed_at_local));
    d.push(format!("Device: {}", c.device));
    d.push(format!("IP address: {}", c.ip));
    d.push(format!("Consent ID: {}", c.id));
    d.push(format!("Template: {} version {}", c.kind.id(), c.template_version));
    d.push(format!("Template SHA-256: {}", c.template_sha256));
    d.push(format!("Document SHA-256: {doc_hex}"));
    d.push(format!("Signature SHA-256: {sig_hex}"));
    d
}

fn write_pdf(c: &SignedConsent, pages: Vec<Vec<Op>>, doc_hash: &[u8; 32], doc_hex: &str, sig_hex: &str, revoked: Option<&str>) -> Vec<u8> {
    let catalog_id = Ref::new(1);
    let tree_id = Ref::new(2);
    let info_id = Ref::new(3);
    let regular_id = Ref::new(4);
    let bold_id = Ref::new(5);
    let spec_id = Ref::new(6);
    let file_id = Ref::new(7);
    let first_page = 8;
    let page_count = i32::try_from(pages.len()).unwrap_or(i32::MAX);
    let page_ids: Vec<Ref> = (0..page_count).map(|i| Ref::new(first_page + 2 * i)).collect();

    let mut pdf = Pdf::new();
    pdf.set_version(1, 7);
    // The file identifier: from the document hash (first) and from the hashes and status of this
    // rendering (second), so it is fixed for a record and changes when the record is revoked.
    let mut second = Sha256::new();
    second.update(doc_hash);
    second.update(sig_hex.as_bytes());
    second.update(c.status.as_bytes());
    second.update(revoked.unwrap_or("").as_bytes());
    pdf.set_file_id((doc_hash[..16].to_vec(), second.finalize()[..16].to_vec()));

    {
        let mut catalog = pdf.catalog(catalog_id);
        catalog.pages(tree_id);
        catalog.lang(TextStr("en"));
        catalog.names().embedded_files().names().insert(Str(EMBEDDED_DOCUMENT_NAME.as_bytes()), spec_id);
        catalog.finish();
    }
    pdf.pages(tree_id).kids(page_ids.iter().copied()).count(page_count);

    {
        let template = format!("{} {}", c.kind.id(), c.template_version);
        let mut info = pdf.document_info(info_id);
        info.title(TextStr(&c.title));
        info.subject(TextStr(&format!("Document SHA-256: {doc_hex}")));
        info.producer(TextStr("carevault"));
        info.pair(Name(b"ConsentId"), TextStr(&c.id));
        info.pair(Name(b"ConsentTemplate"), TextStr(&template));
        info.pair(Name(b"DocumentSHA256"), TextStr(doc_hex));
        info.pair(Name(b"SignatureSHA256"), TextStr(sig_hex));
        info.pair(Name(b"ConsentStatus"), TextStr(&c.status));
        info.finish();
    }

    pdf.type1_font(regular_id).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold_id).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));

    {
        let mut spec = pdf.file_spec(spec_id);
        spec.path(Str(EMBEDDED_DOCUMENT_NAME.as_bytes()));
        spec.unic_file(TextStr(EMBEDDED_DOCUMENT_NAME));
        spec.description(TextStr("The signed consent document (UTF-8 text); its SHA-256 is the document hash printed in this PDF."));
        spec.embedded_file_with_unicode(file_id);
        spec.finish();
    }
    {
        let bytes = c.document.as_bytes();
        let mut file = pdf.embedded_file(file_id, bytes);
        file.subtype(Name(b"text/plain"));
        file.params().size(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
        file.finish();
    }

    let footer_prefix = format!("Consent {} - {}", c.id, c.title);
    for (i, ops) in pages.iter().enumerate() {
        let page_id = page_ids.get(i).copied().unwrap_or(Ref::new(first_page));
        let content_id = Ref::new(page_id.get() + 1);
        let mut content = Content::new();
        for op in ops {
            match op {
                Op::Text { font, size, color, x, y, bytes } => text(&mut content, *font, *size, *color, *x, *y, bytes),
                Op::Signature { x, y } => signature(&mut content, &c.signature, *x, *y),
            }
        }
        // Header on continuation pages, the revocation on every page, the footer.
        if let Some(r) = revoked {
            let (bytes, _) = win_ansi(r);
            let w = Font::Bold.width(&bytes, 10.0);
            text(&mut content, Font::Bold, 10.0, Color::Red, PAGE_W - MARGIN_X - w, PAGE_H - 36.0, &bytes);
        }
        let (footer, _) = win_ansi(&format!("{footer_prefix} - page {} of {}", i + 1, pages.len()));
        let footer = wrap(&footer, Font::Regular, 7.5, TEXT_W).into_iter().next().unwrap_or_default();
        text(&mut content, Font::Regular, 7.5, Color::Gray, MARGIN_X, 34.0, &footer);

        let data = content.finish();
        pdf.stream(content_id, &data);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree_id);
        page.contents(content_id);
        let mut resources = page.resources();
        resources.fonts().pair(Font::Regular.resource(), regular_id).pair(Font::Bold.resource(), bold_id);
        resources.finish();
        page.finish();
    }

    pdf.finish()
}

fn set_fill(content: &mut Content, color: Color) {
    match color {
        Color::Black => content.set_fill_gray(0.0),
        Color::Gray => content.set_fill_gray(0.35),
        Color::Red => content.set_fill_rgb(0.75, 0.0, 0.0),
    };
}

fn text(content: &mut Content, font: Font, size: f32, color: Color, x: f32, y: f32, bytes: &[u8]) {
    content.begin_text();
    set_fill(content, color);
    content.set_font(font.resource(), size);
    content.set_text_matrix([1.0, 0.0, 0.0, 1.0, x, y]);
    content.show(Str(bytes));
    content.end_text();
}

/// The signature box (top-left corner at x, y) with the strokes scaled to fit inside, centered,
/// aspect ratio kept, canvas y flipped to PDF's upward y.
fn signature(content: &mut Content, sig: &DrawnSignature, x: f32, y: f32) {
    content.save_state();
    content.set_stroke_gray(0.6);
    content.set_line_width(0.5);
    content.rect(x, y - SIG_BOX_H, SIG_BOX_W, SIG_BOX_H);
    content.stroke();
    // A line to sign on, as on paper.
    content.move_to(x + SIG_PAD, y - SIG_BOX_H + SIG_PAD + 4.0);
    content.line_to(x + SIG_BOX_W - SIG_PAD, y - SIG_BOX_H + SIG_PAD + 4.0);
    content.stroke();

    let mut points = sig.strokes.iter().flatten();
    if let Some(first) = points.next() {
        let (min_x, max_x, min_y, max_y) = points
            .fold((first[0], first[0], first[1], first[1]), |(a, b, c, d), [px, py]| (a.min(*px), b.max(*px), c.min(*py), d.max(*py)));
        let w = f32::from(max_x - min_x).max(1.0);
        let h = f32::from(max_y - min_y).max(1.0);
        let inner_w = SIG_BOX_W - 2.0 * SIG_PAD;
        let inner_h = SIG_BOX_H - 2.0 * SIG_PAD;
        let scale = (inner_w / w).min(inner_h / h);
        let left = x + SIG_PAD + (inner_w - w * scale) / 2.0;
        let top = y - SIG_PAD - (inner_h - h * scale) / 2.0;
        let map = |[px, py]: [u16; 2]| (left + f32::from(px - min_x) * scale, top - f32::from(py - min_y) * scale);

        content.set_stroke_gray(0.0);
        content.set_line_width(1.4);
        content.set_line_cap(LineCapStyle::RoundCap);
        content.set_line_join(LineJoinStyle::RoundJoin);
        for stroke in &sig.strokes {
            let Some(first) = stroke.first() else { continue };
            let (sx, sy) = map(*first);
            content.move_to(sx, sy);
            if stroke.len() == 1 {
                content.line_to(sx, sy);
            }
            for p in &stroke[1..] {
                let (px, py) = map(*p);
                content.line_to(px, py);
            }
            content.stroke();
        }
    }
    content.restore_state();
}

/// Encodes text for a WinAnsiEncoding font: one byte per character; characters outside the
/// encoding (and control characters) become `?`. Returns whether anything was substituted.
fn win_ansi(text: &str) -> (Vec<u8>, bool) {
    let mut substituted = false;
    let bytes = text
        .chars()
        .map(|c| {
            win_ansi_byte(c).unwrap_or_else(|| {
                substituted = true;
                b'?'
            })
        })
        .collect();
    (bytes, substituted)
}

fn win_ansi_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    match code {
        0x20..=0x7e | 0xa0..=0xff => u8::try_from(code).ok(),
        _ => {
            // The characters Windows-1252 puts at 0x80..=0x9f.
            let b = match c {
                '€' => 0x80,
                '‚' => 0x82,
                'ƒ' => 0x83,
                '„' => 0x84,
                '…' => 0x85,
                '†' => 0x86,
                '‡' => 0x87,
                'ˆ' => 0x88,
                '‰' => 0x89,
                'Š' => 0x8a,
                '‹' => 0x8b,
                'Œ' => 0x8c,
                'Ž' => 0x8e,
                '\u{2018}' => 0x91,
                '\u{2019}' => 0x92,
                '\u{201c}' => 0x93,
                '\u{201d}' => 0x94,
                '•' => 0x95,
                '–' => 0x96,
                '—' => 0x97,
                '˜' => 0x98,
                '™' => 0x99,
                'š' => 0x9a,
                '›' => 0x9b,
                'œ' => 0x9c,
                'ž' => 0x9e,
                'Ÿ' => 0x9f,
                _ => return None,
            };
            Some(b)
        }
    }
}

/// Greedy word wrap of encoded text to `max_width` points; a word longer than a line is broken.
/// Runs of spaces collapse (the exact text is in the embedded document).
fn wrap(text: &[u8], font: Font, size: f32, max_width: f32) -> Vec<Vec<u8>> {
    let space = font.width(b" ", size);
    let mut lines = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut line_w = 0.0f32;
    for word in text.split(|b| *b == b' ').filter(|w| !w.is_empty()) {
        let word_w = font.width(word, size);
        if !line.is_empty() && line_w + space + word_w <= max_width {
            line.push(b' ');
            line.extend_from_slice(word);
            line_w += space + word_w;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
            line_w = 0.0;
        }
        if word_w <= max_width {
            line.extend_from_slice(word);
            line_w = word_w;
            continue;
        }
        // Longer than a line: break it at the last byte that fits.
        for &b in word {
            let w = font.width(&[b], size);
            if !line.is_empty() && line_w + w > max_width {
                lines.push(std::mem::take(&mut line));
                line_w = 0.0;
            }
            line.push(b);
            line_w += w;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

// Advance widths (1/1000 em) of Helvetica and Helvetica-Bold for WinAnsiEncoding codes 32..=255,
// from the Adobe Core 14 font metrics (0 for codes WinAnsi leaves undefined).
#[rustfmt::skip]
const HELVETICA_WIDTHS: [u16; 224] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, 0,
    556, 0, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0,
    0, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 0, 500, 667,
    278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 556, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
];

#[rustfmt::skip]
const HELVETICA_BOLD_WIDTHS: [u16; 224] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, 0,
    556, 0, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0,
    0, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 0, 500, 667,
    278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333,
    400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611,
    722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278,
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611,
    556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
];

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn fields() -> DocumentFields {
        DocumentFields {
            patient_name: "Ana María Núñez".to_string(),
            birth_date: "1984-03-09".to_string(),
            organization: "Riverside Family Clinic".to_string(),
            signer_typed_name: "Ana María Núñez".to_string(),
            ..DocumentFields::default()
        }
    }

    fn roi_fields() -> DocumentFields {
        DocumentFields {
            recipient: Some("Dr. Lee, Lakeside Cardiology".to_string()),
            purpose: Some("continuity of care".to_string()),
            scope: Some("cardiology notes and ECGs from 2023".to_string()),
            expires: Some("2026-12-31".to_string()),
            ..fields()
        }
    }

    fn drawing() -> DrawnSignature {
        DrawnSignature {
            width: 600,
            height: 200,
            strokes: vec![vec![[40, 150], [80, 60], [120, 140], [160, 70], [200, 130]], vec![[230, 100], [420, 95]], vec![[450, 80]]],
        }
    }

    fn ctx() -> SigningContext {
        SigningContext {
            id: "0b9f2c1e-6a43-4d1c-9a55-2f1f7f3c6d10".to_string(),
            signed_at_utc: "2025-05-01T14:03:22Z".to_string(),
            signed_at_local: "2025-05-01T10:03:22-04:00".to_string(),
            device: "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
                .to_string(),
            ip: "203.0.113.24".to_string(),
        }
    }

    fn consent(kind: ConsentKind, f: &DocumentFields) -> SignedConsent {
        sign(&builtin_template(kind), f, drawing(), ctx()).unwrap()
    }

    fn page_count(pdf: &[u8]) -> usize {
        let s = String::from_utf8_lossy(pdf);
        let start = s.find("/Type /Pages").unwrap();
        let count = &s[start..];
        let at = count.find("/Count ").unwrap() + 7;
        count[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    // --- kinds and templates ---

    #[test]
    fn kinds_have_stable_ids_and_fhir_codes() {
        for k in ConsentKind::ALL {
            assert_eq!(ConsentKind::parse(k.id()).unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.id()));
            assert_eq!(k.category().system, "http://loinc.org");
            assert_eq!(k.scope().system, "http://terminology.hl7.org/CodeSystem/consentscope");
        }
        assert!(ConsentKind::parse("research").is_err());
        assert_eq!(ConsentKind::Treatment.category().code, "59284-0");
        assert_eq!(ConsentKind::Telehealth.category().code, "59284-0");
        assert_eq!(ConsentKind::PrivacyPractices.category().code, "57016-8");
        assert_eq!(ConsentKind::ReleaseOfInformation.category().code, "64292-6");
        assert_eq!(ConsentKind::Treatment.scope().code, "treatment");
        assert_eq!(ConsentKind::Telehealth.scope().code, "treatment");
        assert_eq!(ConsentKind::PrivacyPractices.scope().code, "patient-privacy");
        assert_eq!(ConsentKind::ReleaseOfInformation.scope().code, "patient-privacy");
    }

    #[test]
    fn builtin_templates_are_valid_and_distinct() {
        let all = builtin_templates();
        assert_eq!(all.len(), 4);
        let mut hashes: Vec<String> = all.iter().map(Template::sha256).collect();
        for t in &all {
            t.check().unwrap();
            assert_eq!(t.version, 1);
            assert_eq!(t.sha256().len(), 64);
        }
        hashes.dedup();
        assert_eq!(hashes.len(), 4);
        let roi = builtin_template(ConsentKind::ReleaseOfInformation);
        let used = roi.placeholders().unwrap();
        for p in ["patient_name", "birth_date", "organization", "recipient", "purpose", "scope", "expires"] {
            assert!(used.iter().any(|u| u.name() == p), "{p}");
        }
    }

    #[test]
    fn template_hash_names_kind_version_title_and_body() {
        let t = builtin_template(ConsentKind::Treatment);
        let h = t.sha256();
        assert_eq!(h, builtin_template(ConsentKind::Treatment).sha256());
        assert_ne!(h, Template { version: 2, ..t.clone() }.sha256());
        assert_ne!(h, Template { body: format!("{} ", t.body), ..t.clone() }.sha256());
        assert_ne!(h, Template { title: "Consent".to_string(), ..t.clone() }.sha256());
        assert_ne!(h, Template { kind: ConsentKind::Telehealth, ..t.clone() }.sha256());
        // The documented layout, so another implementation can recompute it.
        let expected = Sha256::digest(format!("treatment\n1\n{}\n{}\n{}", t.title.len(), t.title, t.body).as_bytes());
        assert_eq!(h, to_hex(&expected));
    }

    #[test]
    fn template_check_rejects_bad_templates() {
        let t = builtin_template(ConsentKind::Treatment);
        let err = |t: Template| t.check().unwrap_err();
        assert_eq!(err(Template { version: 0, ..t.clone() }).path.as_deref(), Some("template.version"));
        assert_eq!(err(Template { title: " ".to_string(), ..t.clone() }).code, IssueCode::Required);
        assert_eq!(err(Template { title: "A\nB".to_string(), ..t.clone() }).path.as_deref(), Some("template.title"));
        let e = err(Template { body: format!("{} {{{{insurer}}}}", t.body), ..t.clone() });
        assert!(e.message.contains("unknown placeholder {{insurer}}"), "{e}");
        let e = err(Template { body: format!("{} {{{{patient_name", t.body), ..t.clone() });
        assert!(e.message.contains("not closed"), "{e}");
        let e = err(Template { body: format!("{} }}}}", t.body), ..t.clone() });
        assert!(e.message.contains("outside"), "{e}");
        let e = err(Template { body: format!("{} {{{{ patient_name }}}}", t.body), ..t.clone() });
        assert!(e.message.contains("{{name}}"), "{e}");
        let e = err(Template { body: t.body.replace("{{birth_date}}", "____"), ..t.clone() });
        assert!(e.message.contains("{{birth_date}}"), "{e}");
        let roi = builtin_template(ConsentKind::ReleaseOfInformation);
        let e = err(Template { body: roi.body.replace("{{expires}}", "never"), ..roi.clone() });
        assert!(e.message.contains("{{expires}}"), "{e}");
        assert!(err(Template { body: format!("{}\u{7}", t.body), ..t }).message.contains("control"));
    }

    // --- the document ---

    #[test]
    fn document_fills_placeholders_and_ends_with_the_intent_statement() {
        let doc = render_document(&builtin_template(ConsentKind::Treatment), &fields()).unwrap();
        assert!(doc.starts_with(
            "Consent to Treatment\n\nPatient: Ana María Núñez\nDate of birth: 1984-03-09\nProvider: Riverside Family Clinic\n"
        ));
        assert!(!doc.contains("{{") && !doc.contains("}}"));
        assert!(doc.ends_with(
            "By signing below I, Ana María Núñez, confirm that I have read this document and agree to it. \
             I intend my typed name and drawn signature to be my legal signature."
        ));
        assert!(!doc.contains("on behalf of"));
        let roi = render_document(&builtin_template(ConsentKind::ReleaseOfInformation), &roi_fields()).unwrap();
        assert!(roi.contains("Recipient: Dr. Lee, Lakeside Cardiology\nPurpose: continuity of care\n"));
        assert!(roi.contains("This authorization expires: 2026-12-31"));
    }

    #[test]
    fn a_representative_says_so() {
        let f =
            DocumentFields { signer_typed_name: "Marta Núñez".to_string(), signer_relationship: Some("parent".to_string()), ..fields() };
        let doc = render_document(&builtin_template(ConsentKind::Treatment), &f).unwrap();
        assert!(doc.ends_with("legal signature. I am signing on behalf of Ana María Núñez as their parent and I am authorized to do so."));
        let own = DocumentFields { signer_relationship: Some(" Self ".to_string()), ..fields() };
        assert!(!render_document(&builtin_template(ConsentKind::Treatment), &own).unwrap().contains("on behalf"));
    }

    #[test]
    fn values_are_not_expanded_again() {
        let f = DocumentFields { patient_name: "{{organization}}".to_string(), ..fields() };
        let doc = render_document(&builtin_template(ConsentKind::Treatment), &f).unwrap();
        assert!(doc.contains("Patient: {{organization}}\n"));
        let f =
            DocumentFields { signer_typed_name: "X {{relationship}}".to_string(), signer_relationship: Some("parent".into()), ..fields() };
        let doc = render_document(&builtin_template(ConsentKind::Treatment), &f).unwrap();
        assert!(doc.contains("I, X {{relationship}}, confirm"));
    }

    #[test]
    fn missing_or_bad_fields_are_precise_errors() {
        let treatment = builtin_template(ConsentKind::Treatment);
        let roi = builtin_template(ConsentKind::ReleaseOfInformation);
        let e = render_document(&roi, &fields()).unwrap_err();
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.recipient")));
        let e = render_document(&roi, &DocumentFields { expires: None, ..roi_fields() }).unwrap_err();
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.expires")));
        let e = render_document(&roi, &DocumentFields { scope: Some("  ".into()), ..roi_fields() }).unwrap_err();
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.scope")));
        let e = render_document(&treatment, &DocumentFields { birth_date: String::new(), ..fields() }).unwrap_err();
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.birth_date")));
        let e = render_document(&treatment, &DocumentFields { signer_typed_name: String::new(), ..fields() }).unwrap_err();
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.signer_typed_name")));
        let e = render_document(&treatment, &DocumentFields { patient_name: "Ana\n\nI also agree to X".into(), ..fields() }).unwrap_err();
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::Value, Some("fields.patient_name")));
        assert!(!e.message.contains("agree"), "never repeats the value");
        let e = render_document(&treatment, &DocumentFields { organization: "x".repeat(201), ..fields() }).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("fields.organization"));
        let e = render_document(&treatment, &DocumentFields { signer_relationship: Some("a\tb".into()), ..fields() }).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("fields.signer_relationship"));
        let bad = Template { body: format!("{} {{{{ssn}}}}", treatment.body), ..treatment };
        let e = render_document(&bad, &fields()).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("template.body"));
    }

    #[test]
    fn documents_are_canonical() {
        let t = Template {
            kind: ConsentKind::Treatment,
            version: 2,
            title: "Consent to Treatment ".to_string(),
            body:
                "\r\n\r\nPatient: {{patient_name}}  \r\nBorn:\t{{birth_date}}\rAt {{organization}}.\u{2028}Cafe\u{301}\n\n\n\nEnd.   \n\n"
                    .to_string(),
        };
        let f = DocumentFields { patient_name: "Zoe\u{308} Lo\u{301}pez".to_string(), ..fields() };
        let doc = render_document(&t, &f).unwrap();
        assert!(doc.starts_with(
            "Consent to Treatment\n\nPatient: Zoë López\nBorn: 1984-03-09\nAt Riverside Family Clinic.\nCafé\n\nEnd.\n\nBy signing"
        ));
        assert!(!doc.contains('\r') && !doc.contains('\t'));
        assert!(doc.lines().all(|l| l == l.trim_end()));
        assert!(!doc.contains("\n\n\n"));
        assert_eq!(doc, doc.trim_end());
        assert_eq!(doc, doc.nfc().collect::<String>());
        assert_eq!(canonicalize(&doc), doc, "idempotent");
        // The NFD and NFC spellings of a name give the same document and hash.
        let nfc = render_document(&t, &DocumentFields { patient_name: "Zoë López".to_string(), ..fields() }).unwrap();
        assert_eq!(document_sha256(&nfc), document_sha256(&doc));
    }

    #[test]
    fn document_hash_is_sha256_of_the_utf8_bytes() {
        assert_eq!(document_sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(document_sha256("é"), <[u8; 32]>::from(Sha256::digest([0xc3, 0xa9])));
    }

    // --- the drawn signature ---

    #[test]
    fn signature_validation() {
        drawing().check().unwrap();
        let e = |s: DrawnSignature| s.check().unwrap_err();
        let with = |strokes: Vec<Vec<[u16; 2]>>| DrawnSignature { strokes, ..drawing() };
        assert_eq!(e(DrawnSignature { width: 99, ..drawing() }).path.as_deref(), Some("signature.width"));
        assert_eq!(e(DrawnSignature { width: 2001, ..drawing() }).path.as_deref(), Some("signature.width"));
        assert_eq!(e(DrawnSignature { height: 49, ..drawing() }).path.as_deref(), Some("signature.height"));
        assert_eq!(e(DrawnSignature { height: 1001, ..drawing() }).path.as_deref(), Some("signature.height"));
        DrawnSignature { width: 100, height: 50, strokes: vec![vec![[0, 0], [100, 50]]] }.check().unwrap();
        DrawnSignature { width: 2000, height: 1000, strokes: vec![vec![[0, 0], [2000, 1000]]] }.check().unwrap();
        assert_eq!(e(with(vec![])).code, IssueCode::Required);
        assert_eq!(e(with(vec![vec![[10, 10]]; 101])).path.as_deref(), Some("signature.strokes"));
        let mut hundred = vec![vec![[10, 10]]; 99];
        hundred.push(vec![[10, 10], [30, 10]]);
        with(hundred).check().unwrap();
        assert_eq!(e(with(vec![vec![[1, 1], [50, 1]], vec![]])).path.as_deref(), Some("signature.strokes[1]"));
        assert_eq!(e(with(vec![vec![[1, 1]; 2001]])).path.as_deref(), Some("signature.strokes[0]"));
        let mut long: Vec<[u16; 2]> = vec![[1, 1]; 1999];
        long.push([50, 1]);
        with(vec![long]).check().unwrap();
        assert_eq!(e(with(vec![vec![[1, 1], [601, 1]]])).path.as_deref(), Some("signature.strokes[0][1]"));
        assert_eq!(e(with(vec![vec![[1, 1], [50, 1]], vec![[5, 5], [5, 201]]])).path.as_deref(), Some("signature.strokes[1][1]"));
        with(vec![vec![[600, 200], [0, 0]]]).check().unwrap();
        // 11 strokes of 2000 points = 22000 > 20000; 10 of them are fine.
        let many = |n| with((0..n).map(|i| (0..2000).map(|j| [(j % 500) as u16, i as u16]).collect()).collect());
        many(10).check().unwrap();
        assert!(e(many(11)).message.contains("20000"));
        // A dot, or a drawing narrower than 10 units, is not a signature.
        assert!(e(with(vec![vec![[300, 100]]])).message.contains("too small"));
        assert!(e(with(vec![vec![[300, 10], [309, 190]]])).message.contains("too small"));
        with(vec![vec![[300, 100], [310, 100]]]).check().unwrap();
    }

    #[test]
    fn signature_json_and_canonical_bytes() {
        let s = drawing();
        let bytes = s.canonical_bytes();
        assert_eq!(bytes, serde_json::to_vec(&s).unwrap());
        assert!(bytes.starts_with(br#"{"width":600,"height":200,"strokes":[[[40,150],[80,60]"#));
        let back: DrawnSignature = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        // Whitespace and key order of the client's JSON do not change the hash.
        let loose: DrawnSignature = serde_json::from_str(
            r#"{ "strokes": [[[40,150],[80,60],[120,140],[160,70],[200,130]],[[230,100],[420,95]],[[450,80]]], "height": 200, "width": 600 }"#,
        )
        .unwrap();
        assert_eq!(loose.sha256(), s.sha256());
        assert_eq!(s.sha256_hex(), to_hex(&Sha256::digest(&bytes)));
        assert!(serde_json::from_str::<DrawnSignature>(r#"{"width":600,"height":200,"strokes":[],"extra":1}"#).is_err());
        assert!(serde_json::from_str::<DrawnSignature>(r#"{"width":600,"height":200,"strokes":[[[1,2,3]]]}"#).is_err());
        assert!(serde_json::from_str::<DrawnSignature>(r#"{"width":600,"height":200,"strokes":[[[-1,2]]]}"#).is_err());
        assert_eq!(format!("{s:?}"), "DrawnSignature(<redacted>)");
    }

    // --- signing ---

    #[test]
    fn sign_builds_a_consistent_record() {
        let c = consent(ConsentKind::Treatment, &fields());
        assert_eq!(c.kind, ConsentKind::Treatment);
        assert_eq!(c.template_version, 1);
        assert_eq!(c.template_sha256, builtin_template(ConsentKind::Treatment).sha256());
        assert_eq!(c.document_sha256, document_sha256_hex(&c.document));
        assert_eq!(c.signature_sha256, drawing().sha256_hex());
        assert_eq!(c.status, "active");
        assert_eq!(c.signer_relationship, None);
        assert!(!format!("{c:?}").contains("Ana"), "Debug hides PHI");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SignedConsent>(&json).unwrap(), c);

        let t = builtin_template(ConsentKind::Treatment);
        let dot = DrawnSignature { strokes: vec![vec![[5, 5]]], ..drawing() };
        assert!(sign(&t, &fields(), dot, ctx()).is_err());
        let local = SigningContext { signed_at_utc: "2025-05-01T10:03:22-04:00".into(), ..ctx() };
        assert_eq!(sign(&t, &fields(), drawing(), local).unwrap_err().path.as_deref(), Some("signed_at_utc"));
        let garbage = SigningContext { signed_at_utc: "yesterday".into(), ..ctx() };
        assert!(sign(&t, &fields(), drawing(), garbage).is_err());
        let rep = DocumentFields { signer_relationship: Some("legal guardian".into()), ..fields() };
        assert_eq!(sign(&t, &rep, drawing(), ctx()).unwrap().signer_relationship.as_deref(), Some("legal guardian"));
    }

    // --- the PDF ---

    #[test]
    fn pdf_is_deterministic() {
        for kind in ConsentKind::ALL {
            let c = consent(kind, &roi_fields());
            let a = render_pdf(&c);
            let b = render_pdf(&c.clone());
            assert_eq!(a, b);
            let again = render_pdf(&serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap());
            assert_eq!(a, again, "a stored and reloaded record renders the same bytes");
        }
    }

    /// A fixed record renders to fixed bytes across builds, not only within one run. If this
    /// fails after a change to the layout, the templates or the pdf-writer version, PDFs handed
    /// out before no longer verify by re-rendering: keep the old rendering for old records.
    #[test]
    fn pdf_bytes_are_pinned() {
        let c = consent(ConsentKind::Treatment, &fields());
        assert_eq!(to_hex(&Sha256::digest(render_pdf(&c))), "03656fbc49b7b68ddba735c1e69c9b214d45a1274cee137a3e7f076d6360a9ff");
    }

    #[test]
    fn pdf_structure() {
        let c = consent(ConsentKind::Treatment, &fields());
        let pdf = render_pdf(&c);
        assert!(pdf.starts_with(b"%PDF-1.7\n"));
        assert!(pdf.ends_with(b"%%EOF\n") || pdf.ends_with(b"%%EOF"));
        assert_eq!(page_count(&pdf), 1);
        for needle in [
            "/EmbeddedFiles".as_bytes(),
            b"(consent-document.txt)",
            b"/Subtype /text#2Fplain",
            b"/BaseFont /Helvetica",
            b"/Encoding /WinAnsiEncoding",
            b"/ConsentId (0b9f2c1e-6a43-4d1c-9a55-2f1f7f3c6d10)",
            format!("/Subject (Document SHA-256: {})", c.document_sha256).as_bytes(),
            format!("(Document SHA-256: {})", c.document_sha256).as_bytes(),
            format!("(Signature SHA-256: {})", c.signature_sha256).as_bytes(),
            b"(Template: treatment version 1)",
            b"(Consent to Treatment)",
        ] {
            assert!(contains(&pdf, needle), "missing {}", String::from_utf8_lossy(needle));
        }
        // The canonical document is embedded verbatim (uncompressed).
        assert!(contains(&pdf, c.document.as_bytes()));
        assert!(contains(&pdf, format!("/Size {}", c.document.len()).as_bytes()));
        // The signature is drawn as paths: one moveto per stroke.
        let moves = String::from_utf8_lossy(&pdf).matches(" m\n").count();
        assert!(moves > drawing().strokes.len(), "{moves}: the signing line and each stroke");
        // Nothing about the clock: no dates in the Info dictionary.
        assert!(!contains(&pdf, b"/CreationDate") && !contains(&pdf, b"/ModDate"));
        assert!(!contains(&pdf, b"REVOKED"));
        // The file ID starts with the document hash.
        let id_hex: String = c.document_sha256[..32].to_uppercase();
        assert!(contains(&String::from_utf8_lossy(&pdf).to_uppercase().into_bytes(), format!("/ID [<{id_hex}>",).as_bytes()));
    }

    #[test]
    fn revoked_consents_say_so() {
        let mut c = consent(ConsentKind::Telehealth, &fields());
        let active = render_pdf(&c);
        c.status = STATUS_REVOKED.to_string();
        c.revoked_at = Some("2025-06-02T09:00:00Z".to_string());
        let revoked = render_pdf(&c);
        assert!(contains(&revoked, b"(REVOKED 2025-06-02T09:00:00Z)"));
        assert_ne!(active, revoked);
        assert_eq!(verify_pdf(&active, &c), Err(VerifyError::PdfDiffers), "an old active copy does not verify as the revoked record");
        assert_eq!(verify_pdf(&revoked, &c), Ok(()));
    }

    #[test]
    fn verify_accepts_the_rendered_pdf_and_rejects_tampering() {
        let c = consent(ConsentKind::ReleaseOfInformation, &roi_fields());
        let pdf = render_pdf(&c);
        assert_eq!(verify_pdf(&pdf, &c), Ok(()));

        // One flipped byte anywhere in the PDF.
        for at in [0, pdf.len() / 3, pdf.len() / 2, pdf.len() - 1] {
            let mut bad = pdf.clone();
            bad[at] ^= 0x01;
            assert_eq!(verify_pdf(&bad, &c), Err(VerifyError::PdfDiffers), "byte {at}");
        }
        assert_eq!(verify_pdf(&pdf[..pdf.len() - 1], &c), Err(VerifyError::PdfDiffers));

        // The stored document was changed (hash not updated).
        let mut tampered = c.clone();
        tampered.document = tampered.document.replace("continuity of care", "marketing");
        assert_eq!(verify_pdf(&pdf, &tampered), Err(VerifyError::DocumentHashMismatch));
        // ... and with the hash updated too, the PDF no longer matches the record.
        tampered.document_sha256 = document_sha256_hex(&tampered.document);
        assert_eq!(verify_pdf(&pdf, &tampered), Err(VerifyError::PdfDiffers));

        // The stored signature was changed.
        let mut forged = c.clone();
        forged.signature.strokes[0][0] = [41, 150];
        assert_eq!(verify_pdf(&pdf, &forged), Err(VerifyError::SignatureHashMismatch));
        let mut forged = c.clone();
        forged.signature_sha256 = "0".repeat(64);
        assert_eq!(verify_pdf(&pdf, &forged), Err(VerifyError::SignatureHashMismatch));

        // Any other field of the record (here the IP address) changes the PDF.
        let other = SignedConsent { ip: "198.51.100.7".into(), ..c.clone() };
        assert_eq!(verify_pdf(&pdf, &other), Err(VerifyError::PdfDiffers));
    }

    #[test]
    fn long_documents_take_several_pages() {
        let t = Template {
            kind: ConsentKind::Treatment,
            version: 7,
            title: "Consent to Treatment".to_string(),
            body: format!(
                "Patient: {{{{patient_name}}}} ({{{{birth_date}}}}) at {{{{organization}}}}.\n\n{}",
                (1..=60)
                    .map(|i| format!("{i}. I understand that this is paragraph {i} of a long consent, written to fill more than one page of the PDF with wrapped text."))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            ),
        };
        let c = sign(&t, &fields(), drawing(), ctx()).unwrap();
        let pdf = render_pdf(&c);
        let pages = page_count(&pdf);
        assert!(pages > 1, "{pages}");
        assert!(contains(&pdf, format!("page {pages} of {pages})").as_bytes()));
        assert_eq!(render_pdf(&c), pdf);
        assert_eq!(verify_pdf(&pdf, &c), Ok(()));
        // A word longer than a line is broken, not lost.
        let t2 = Template { body: format!("{}\n\n{}", t.body, "x".repeat(400)), ..t };
        let c2 = sign(&t2, &fields(), drawing(), ctx()).unwrap();
        assert!(page_count(&render_pdf(&c2)) >= pages);
    }

    #[test]
    fn names_outside_win_ansi_do_not_break_the_pdf() {
        for name in ["Đặng Thị Hương", "王秀英", "Ωμέγα Ψ", "Zoë O’Brien – “Ann” €5", "👩‍⚕️ test"] {
            let f = DocumentFields { patient_name: name.to_string(), signer_typed_name: name.to_string(), ..fields() };
            let c = sign(&builtin_template(ConsentKind::PrivacyPractices), &f, drawing(), ctx()).unwrap();
            let pdf = render_pdf(&c);
            assert_eq!(render_pdf(&c), pdf);
            assert_eq!(verify_pdf(&pdf, &c), Ok(()));
            // The exact text is embedded as UTF-8.
            assert!(contains(&pdf, name.as_bytes()));
        }
        let (bytes, substituted) = win_ansi("Đặng Thị Hương");
        assert_eq!(bytes, b"??ng Th? H??ng");
        assert!(substituted);
        let (bytes, substituted) = win_ansi("Zoë O’Brien – “Ann” €5 ß");
        assert_eq!(bytes, b"Zo\xeb O\x92Brien \x96 \x93Ann\x94 \x805 \xdf");
        assert!(!substituted);
        assert_eq!(win_ansi("a\u{7f}\u{81}b").0, b"a??b");
        // The note about substituted characters appears only when needed.
        let cjk = DocumentFields { patient_name: "王秀英".into(), signer_typed_name: "王秀英".into(), ..fields() };
        let pdf = render_pdf(&consent(ConsentKind::Treatment, &cjk));
        assert!(contains(&pdf, b"printed as '?'"));
        assert!(!contains(&render_pdf(&consent(ConsentKind::Treatment, &fields())), b"printed as '?'"));
    }

    #[test]
    fn wrapping_keeps_lines_inside_the_text_width() {
        let text = win_ansi(&"Lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(20)).0;
        let lines = wrap(&text, Font::Regular, BODY_SIZE, TEXT_W);
        assert!(lines.len() > 5);
        for l in &lines {
            assert!(Font::Regular.width(l, BODY_SIZE) <= TEXT_W);
            assert!(!l.starts_with(b" ") && !l.ends_with(b" "));
        }
        let joined: Vec<u8> = lines.join(&b' ');
        assert_eq!(joined, text.trim_ascii_end());
        let long = wrap(&[b'W'; 300], Font::Bold, 12.0, 100.0);
        assert!(long.len() > 1 && long.iter().all(|l| Font::Bold.width(l, 12.0) <= 100.0));
        assert_eq!(long.concat().len(), 300);
        // Known metrics (H 722, e 556, l 222, v 500, t 278, i 222, c 500, a 556).
        assert_eq!(Font::Regular.width(b"Helvetica", 1000.0), 4112.0);
    }
}
