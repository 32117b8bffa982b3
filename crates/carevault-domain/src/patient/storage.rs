//! A patient record at rest: the separately sealed parts, and the blind-index terms search
//! tokens are made from.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{FhirDate, Gender, PatientData};
use crate::normalize::{fold, phone_digits};

impl PatientData {
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
            // The family and given names are indexed once, under their own kinds; a `name`
            // search looks under those kinds too (see `search`), so only the other parts
            // (prefix, suffix, text) need the name kinds.
            for p in n.other_parts() {
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

fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
