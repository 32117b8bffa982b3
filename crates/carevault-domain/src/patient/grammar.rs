//! The grammar of each Patient field, and the checks of each element against it.

use super::{Address, CodeableConcept, Coding, ContactPoint, HumanName, Identifier};
use crate::error::{InputError, IssueCode};
use crate::normalize::phone_digits;

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
    pub(super) fn check(&self, path: &str) -> Result<(), InputError> {
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
    pub(super) fn check(&self, path: &str) -> Result<(), InputError> {
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
    /// The parts other than family and given names.
    pub(super) fn other_parts(&self) -> impl Iterator<Item = &String> {
        self.prefix.iter().chain(self.suffix.iter()).chain(self.text.iter())
    }
}

impl ContactPoint {
    pub(super) fn check(&self, path: &str) -> Result<(), InputError> {
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

    pub(super) fn is_phone(&self) -> bool {
        matches!(self.system.as_deref(), Some("phone" | "sms" | "fax" | "pager"))
    }
}

impl Address {
    pub(super) fn check(&self, path: &str) -> Result<(), InputError> {
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
