//! FHIR search parameters for Patient, parsed strictly: an unknown parameter, modifier or
//! comparator is an error, never silently ignored (a silently ignored filter returns more
//! patients than the user asked for).

use crate::error::{InputError, IssueCode};
use crate::normalize::{fold, phone_digits};
use crate::patient::{FhirDate, IndexKind, MIN_PREFIX};

pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 100;

/// One criterion: the patient must have a token equal to one of `alternatives` (OR); all
/// criteria of a query must hold (AND).
#[derive(Clone, PartialEq, Eq)]
pub struct Criterion {
    pub param: &'static str,
    pub alternatives: Vec<(IndexKind, String)>,
}

impl std::fmt::Debug for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Criterion({}, <{} redacted>)", self.param, self.alternatives.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientQuery {
    pub criteria: Vec<Criterion>,
    pub count: usize,
    pub offset: usize,
    /// The accepted parameters as given, to echo in Bundle links (sealed in the audit record).
    pub echo: Vec<(String, String)>,
}

fn err(param: &str, msg: impl Into<String>) -> InputError {
    InputError::new(IssueCode::Invalid, Some(format!("search parameter '{param}'")), msg)
}

fn text_criterion(
    param: &'static str,
    modifier: Option<&str>,
    value: &str,
    exact: IndexKind,
    prefix: IndexKind,
) -> Result<Criterion, InputError> {
    let mut alternatives = Vec::new();
    for v in value.split(',') {
        let f = fold(v);
        if f.is_empty() {
            return Err(err(param, "needs letters to search for"));
        }
        match modifier {
            Some("exact") => alternatives.push((exact, f)),
            None => {
                if f.chars().count() >= MIN_PREFIX {
                    alternatives.push((prefix, f));
                } else {
                    // Short queries match whole words only, so 'Li' finds Li but not Lincoln.
                    alternatives.push((exact, f));
                }
            }
            Some(_) => {
                return Err(InputError::not_supported(
                    Some(&format!("search parameter '{param}'")),
                    "this modifier is not supported (use ':exact' or none)",
                ))
            }
        }
    }
    Ok(Criterion { param, alternatives })
}

/// The search parameters of Patient this server supports.
pub const PATIENT_PARAMS: &[&str] = &["name", "family", "given", "birthdate", "identifier", "phone", "_count", "_offset", "_format"];

/// How a refusal names a parameter: by its own name when the server knows it, else not at all
/// (the client's text is never echoed).
fn known(name: &str) -> String {
    match PATIENT_PARAMS.iter().find(|p| **p == name) {
        Some(p) => format!("search parameter '{p}'"),
        None => "query".to_string(),
    }
}

/// Parses the query string pairs of `GET /Patient?…` (already percent-decoded).
pub fn parse_patient_query(pairs: &[(String, String)]) -> Result<PatientQuery, InputError> {
    let mut q = PatientQuery { criteria: Vec::new(), count: DEFAULT_COUNT, offset: 0, echo: Vec::new() };
    for (key, value) in pairs {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key.as_str(), None),
        };
        if value.chars().any(char::is_control) || value.len() > 256 {
            return Err(InputError::new(IssueCode::Invalid, Some(known(name)), "value is too long or contains control characters"));
        }
        let no_modifier = || -> Result<(), InputError> {
            match modifier {
                None => Ok(()),
                Some(_) => Err(InputError::not_supported(Some(&known(name)), "modifiers are not supported on this parameter")),
            }
        };
        match name {
            "name" => {
                // Any part of a name: family and given names are indexed under their own
                // kinds only, the other parts under the name kinds.
                let mut c = text_criterion("name", modifier, value, IndexKind::NameExact, IndexKind::NamePrefix)?;
                let mut alternatives = Vec::with_capacity(c.alternatives.len() * 3);
                for (kind, v) in c.alternatives {
                    let (family, given) = if kind == IndexKind::NameExact {
                        (IndexKind::FamilyExact, IndexKind::GivenExact)
                    } else {
                        (IndexKind::FamilyPrefix, IndexKind::GivenPrefix)
                    };
                    alternatives.push((family, v.clone()));
                    alternatives.push((given, v.clone()));
                    alternatives.push((kind, v));
                }
                c.alternatives = alternatives;
                q.criteria.push(c);
            }
            "family" => q.criteria.push(text_criterion("family", modifier, value, IndexKind::FamilyExact, IndexKind::FamilyPrefix)?),
            "given" => q.criteria.push(text_criterion("given", modifier, value, IndexKind::GivenExact, IndexKind::GivenPrefix)?),
            "birthdate" => {
                no_modifier()?;
                let mut alternatives = Vec::new();
                for v in value.split(',') {
                    let v = match v.get(..2) {
                        Some("eq") => &v[2..],
                        Some(p) if p.chars().all(|c| c.is_ascii_lowercase()) => {
                            return Err(InputError::not_supported(
                                Some("search parameter 'birthdate'"),
                                "comparators other than eq are not supported: birth dates are searched by exact day, month or year",
                            ));
                        }
                        _ => v,
                    };
                    let d = FhirDate::parse(v, "search parameter 'birthdate'")?;
                    let kind = match d {
                        FhirDate::Date(_) => IndexKind::BirthDate,
                        FhirDate::YearMonth(..) => IndexKind::BirthYearMonth,
                        FhirDate::Year(_) => IndexKind::BirthYear,
                    };
                    alternatives.push((kind, d.to_string()));
                }
                q.criteria.push(Criterion { param: "birthdate", alternatives });
            }
            "identifier" => {
                no_modifier()?;
                let mut alternatives = Vec::new();
                for v in value.split(',') {
                    match v.split_once('|') {
                        Some((system, val)) if !system.is_empty() && !val.is_empty() => {
                            alternatives.push((IndexKind::IdentifierSystemValue, format!("{system}|{}", fold(val))));
                        }
                        Some(("", val)) if !val.is_empty() => alternatives.push((IndexKind::IdentifierValue, fold(val))),
                        None if !v.is_empty() => alternatives.push((IndexKind::IdentifierValue, fold(v))),
                        _ => return Err(err("identifier", "use 'value' or 'system|value'")),
                    }
                }
                q.criteria.push(Criterion { param: "identifier", alternatives });
            }
            "phone" => {
                no_modifier()?;
                let mut alternatives = Vec::new();
                for v in value.split(',') {
                    let d = phone_digits(v);
                    if d.len() < 4 || v.chars().any(|c| !(c.is_ascii_digit() || " +-().".contains(c))) {
                        return Err(err("phone", "a phone number has at least 4 digits and may use spaces and + - ( ) ."));
                    }
                    alternatives.push((IndexKind::Phone, d));
                }
                q.criteria.push(Criterion { param: "phone", alternatives });
            }
            "_count" => {
                no_modifier()?;
                q.count = value
                    .parse::<usize>()
                    .ok()
                    .filter(|c| *c <= MAX_COUNT)
                    .ok_or_else(|| err("_count", format!("must be a whole number from 0 to {MAX_COUNT}")))?;
            }
            "_offset" => {
                no_modifier()?;
                q.offset =
                    value.parse::<usize>().ok().filter(|c| *c <= 1_000_000).ok_or_else(|| err("_offset", "must be a whole number"))?;
            }
            "_format" if matches!(value.as_str(), "json" | "application/json" | "application/fhir+json") => {}
            _ => return Err(InputError::not_supported(
                Some("query"),
                "a search parameter is unknown or unsupported; supported: name, family, given, birthdate, identifier, phone, _count, _offset",
            )),
        }
        if !name.starts_with('_') {
            q.echo.push((key.clone(), value.clone()));
        }
    }
    if q.criteria.is_empty() {
        return Err(InputError::new(
            IssueCode::Required,
            None,
            "a patient search needs at least one of: name, family, given, birthdate, identifier, phone",
        ));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[(&str, &str)]) -> Result<PatientQuery, InputError> {
        parse_patient_query(&s.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn parses_supported_parameters() {
        let q = p(&[("family", "Núñ"), ("birthdate", "1980-02-29"), ("_count", "5")]).expect("ok");
        assert_eq!(q.count, 5);
        assert_eq!(q.criteria[0].alternatives, vec![(IndexKind::FamilyPrefix, "nun".to_string())]);
        assert_eq!(q.criteria[1].alternatives, vec![(IndexKind::BirthDate, "1980-02-29".to_string())]);
        let q = p(&[("family", "Li")]).expect("ok");
        assert_eq!(q.criteria[0].alternatives, vec![(IndexKind::FamilyExact, "li".to_string())]);
        let q = p(&[("identifier", "urn:x|AB-1")]).expect("ok");
        assert_eq!(q.criteria[0].alternatives, vec![(IndexKind::IdentifierSystemValue, "urn:x|ab 1".to_string())]);
    }

    #[test]
    fn refuses_unknown_and_unsupported() {
        assert!(p(&[("shoe_size", "9")]).is_err());
        assert!(p(&[("family:contains", "smi")]).is_err());
        assert!(p(&[("birthdate", "gt1980")]).is_err());
        assert!(p(&[("birthdate", "1980-13-01")]).is_err());
        assert!(p(&[("_count", "1000")]).is_err());
        assert!(p(&[("_count", "5")]).is_err());
        assert!(p(&[("phone", "12")]).is_err());
    }
}
