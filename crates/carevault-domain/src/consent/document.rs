//! The rendered document: the template filled in, the statement of intent, its canonical form
//! and its SHA-256.

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use super::{Placeholder, Template};
use crate::error::{InputError, IssueCode};

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
    pub(super) fn representative(&self) -> Result<Option<&str>, InputError> {
        match self.signer_relationship.as_deref().map(str::trim) {
            None => Ok(None),
            Some(r) if r.eq_ignore_ascii_case("self") => Ok(None),
            Some(_) => field_value(self.signer_relationship.as_deref(), "fields.signer_relationship", 100).map(Some),
        }
    }
}

/// A field's value: trimmed, present, one line, not too long. Messages never repeat the value.
pub(super) fn field_value<'a>(value: Option<&'a str>, path: &str, max_chars: usize) -> Result<&'a str, InputError> {
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

pub(super) enum Segment<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits a template body into text and `{{name}}` placeholders. A `{{` without its `}}`, a
/// stray `}}`, or a name that is not lower-case letters and `_`, is an error.
pub(super) fn segments<'a>(body: &'a str, path: &str) -> Result<Vec<Segment<'a>>, InputError> {
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

pub(super) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}
