//! ICD-10-CM diagnosis codes: the code itself, parsed from what a user types; the importer
//! for CMS's "ICD-10-CM Code Descriptions in Tabular Order" text files (both layouts); a
//! small starter set of common outpatient codes bundled with the binary; and a search helper.
//!
//! The code shape checked here is the shape only: a well-formed code may still not exist in
//! the current release. Existence is a lookup in an imported code set.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{InputError, IssueCode};
use crate::normalize::fold;

/// The FHIR code system of ICD-10-CM.
pub const SYSTEM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// The path named in errors about a code.
const PATH: &str = "code";
/// Codes have 3 to 7 characters, not counting the dot.
const MIN_LEN: usize = 3;
const MAX_LEN: usize = 7;
/// The dot, when present, follows the category (the first three characters).
const CATEGORY_LEN: usize = 3;

/// Common primary-care and outpatient billable codes in the CMS codes layout. Source, release
/// and selection: `data/icd10cm-starter.README.md`.
const STARTER: &str = include_str!("../data/icd10cm-starter.txt");

// ---------------------------------------------------------------------------------------------
// The code

/// An ICD-10-CM code, stored upper case without the dot (`E119`, `S72001A`), as in CMS's files.
/// [`Icd10Code::display`] (and `Display`) give the dotted form used in records and FHIR
/// (`E11.9`, `S72.001A`).
///
/// Shape: a letter A-Z (U included: U07.1 is COVID-19); a digit, or the letter A (category QA0,
/// added in April 2026); then 1 to 5 letters or digits; 3 to 7 characters in all. A dot is
/// allowed only right after the third character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Icd10Code(String);

fn code_error(message: &str) -> InputError {
    InputError::value(PATH, message)
}

impl Icd10Code {
    /// Parses a code as a user typed it: surrounding white space is ignored, letters may be
    /// lower case, the dot is optional. Error messages never repeat the input.
    pub fn parse(input: &str) -> Result<Self, InputError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(InputError::new(IssueCode::Required, Some(PATH.to_string()), "an ICD-10-CM code is required"));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
            return Err(code_error("an ICD-10-CM code has only letters, digits and a dot"));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(code_error("the first character of an ICD-10-CM code is a letter"));
        }
        let mut dots = s.match_indices('.').map(|(i, _)| i);
        let dot = dots.next();
        if dots.next().is_some() {
            return Err(code_error("an ICD-10-CM code has at most one dot"));
        }
        if let Some(i) = dot {
            if i != CATEGORY_LEN {
                return Err(code_error("the dot of an ICD-10-CM code comes right after the third character"));
            }
            if i + 1 == s.len() {
                return Err(code_error("the dot of an ICD-10-CM code is followed by 1 to 4 characters"));
            }
        }
        let code: String = s.bytes().filter(|b| *b != b'.').map(|b| char::from(b.to_ascii_uppercase())).collect();
        if code.len() < MIN_LEN {
            return Err(code_error("an ICD-10-CM code has at least 3 characters"));
        }
        if code.len() > MAX_LEN {
            return Err(code_error("an ICD-10-CM code has at most 7 characters, not counting the dot"));
        }
        if !code.chars().nth(1).is_some_and(|c| c.is_ascii_digit() || c == 'A') {
            return Err(code_error("the second character of an ICD-10-CM code is a digit (or A, as in QA0)"));
        }
        Ok(Icd10Code(code))
    }

    /// The code without the dot, upper case (`E119`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dotted form (`E11.9`; a three-character category such as `I10` has no dot).
    pub fn display(&self) -> String {
        match self.0.split_at_checked(CATEGORY_LEN) {
            Some((category, rest)) if !rest.is_empty() => format!("{category}.{rest}"),
            _ => self.0.clone(),
        }
    }
}

impl fmt::Display for Icd10Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl FromStr for Icd10Code {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Icd10Code::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// CMS files

/// One line of a CMS file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeEntry {
    pub code: Icd10Code,
    /// The long description, trimmed.
    pub description: String,
    /// Whether the code is valid for billing (a leaf); category headers are not.
    pub billable: bool,
}

/// The two layouts of CMS's "ICD-10-CM Code Descriptions in Tabular Order".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmsFormat {
    /// `icd10cm_codes_YYYY.txt`: the code left-justified in 8 columns, then the description.
    /// Every code in it is billable.
    Codes,
    /// `icd10cm_order_YYYY.txt`: order number (5 digits), space, code (7 columns), space,
    /// billable flag 0/1, space, short description (60 columns), space, long description.
    Order,
}

impl CmsFormat {
    fn name(self) -> &'static str {
        match self {
            CmsFormat::Codes => "codes",
            CmsFormat::Order => "order",
        }
    }

    /// The layout a line is in: order lines start with five digits and a space.
    fn of_line(line: &str) -> CmsFormat {
        let b = line.as_bytes();
        if b.len() > ORDER_NUMBER_LEN && b[..ORDER_NUMBER_LEN].iter().all(u8::is_ascii_digit) && b[ORDER_NUMBER_LEN] == b' ' {
            CmsFormat::Order
        } else {
            CmsFormat::Codes
        }
    }
}

/// What is wrong with a line of a CMS file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportErrorKind {
    /// The file has no line with a code.
    NoEntries,
    /// The code is not an ICD-10-CM code (the inner error says why).
    BadCode(InputError),
    /// The description is missing or blank.
    MissingDescription,
    /// The order layout's billable flag is not 0 or 1.
    BadBillable,
    /// The line does not follow the order layout (which column is wrong).
    BadLayout(&'static str),
    /// The line is in the other layout than the file's first line.
    MixedFormats { file: CmsFormat },
    /// The line contains a control character (other than the line end).
    ControlCharacter,
    /// The code was already on an earlier line.
    Duplicate { code: Icd10Code, first_line: usize },
}

impl fmt::Display for ImportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportErrorKind::NoEntries => f.write_str("the file has no codes"),
            ImportErrorKind::BadCode(e) => write!(f, "bad code: {}", e.message),
            ImportErrorKind::MissingDescription => f.write_str("the description is missing"),
            ImportErrorKind::BadBillable => f.write_str("the billable flag (column 15) is not 0 or 1"),
            ImportErrorKind::BadLayout(what) => write!(f, "not in the order layout: {what}"),
            ImportErrorKind::MixedFormats { file } => {
                let other = match file {
                    CmsFormat::Codes => CmsFormat::Order,
                    CmsFormat::Order => CmsFormat::Codes,
                };
                write!(f, "the line is in the {} layout but the file started in the {} layout", other.name(), file.name())
            }
            ImportErrorKind::ControlCharacter => f.write_str("the line contains a control character"),
            ImportErrorKind::Duplicate { code, first_line } => write!(f, "duplicate code {code}, first on line {first_line}"),
        }
    }
}

/// A CMS file that was refused: the line (1-based; `None` for the file as a whole) and why.
/// Nothing is imported from a file with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub line: Option<usize>,
    pub kind: ImportErrorKind,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for ImportError {}

const ORDER_NUMBER_LEN: usize = 5;
/// Byte columns of the order layout (0-based, end exclusive).
const ORDER_CODE: (usize, usize) = (6, 13);
const ORDER_FLAG: usize = 14;
const ORDER_SHORT_END: usize = 76;
const ORDER_LONG: usize = 77;

fn parse_order_line(line: &str) -> Result<(&str, bool, &str), ImportErrorKind> {
    let b = line.as_bytes();
    let at = |i: usize| b.get(i).copied();
    if at(ORDER_CODE.0 - 1) != Some(b' ') {
        return Err(ImportErrorKind::BadLayout("no space after the order number (column 6)"));
    }
    let code = line.get(ORDER_CODE.0..ORDER_CODE.1).ok_or(ImportErrorKind::BadLayout("the line ends inside the code (columns 7-13)"))?;
    if code.starts_with(' ') {
        return Err(ImportErrorKind::BadLayout("the code does not start in column 7"));
    }
    if at(ORDER_CODE.1) != Some(b' ') {
        return Err(ImportErrorKind::BadLayout("no space after the code (column 14)"));
    }
    let billable = match at(ORDER_FLAG) {
        Some(b'0') => false,
        Some(b'1') => true,
        _ => return Err(ImportErrorKind::BadBillable),
    };
    if at(ORDER_FLAG + 1) != Some(b' ') {
        return Err(ImportErrorKind::BadLayout("no space after the billable flag (column 16)"));
    }
    let long = match line.get(ORDER_LONG..) {
        Some(long) if !long.trim().is_empty() => {
            if at(ORDER_SHORT_END) != Some(b' ') {
                return Err(ImportErrorKind::BadLayout("no space between the short and the long description (column 77)"));
            }
            long
        }
        _ => return Err(ImportErrorKind::MissingDescription),
    };
    Ok((code, billable, long))
}

fn parse_codes_line(line: &str) -> Result<(&str, &str), ImportErrorKind> {
    // The code ends at the first space (CMS pads it to 8 columns).
    let (code, rest) = line.split_once(' ').unwrap_or((line, ""));
    if rest.trim().is_empty() {
        return Err(ImportErrorKind::MissingDescription);
    }
    Ok((code, rest))
}

/// Parses a CMS "ICD-10-CM Code Descriptions in Tabular Order" file, in either layout (see
/// [`CmsFormat`]; the first non-empty line decides, and every line must follow it). A UTF-8
/// BOM, CRLF line ends and blank lines are accepted; descriptions are trimmed. Returns the
/// entries in file order, or the first error: a bad code, a missing description, a bad
/// billable flag, a line in the other layout, a control character or a repeated code.
pub fn parse_cms(text: &str) -> Result<Vec<CodeEntry>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut format = None;
    let mut entries = Vec::new();
    let mut first_line: HashMap<Icd10Code, usize> = HashMap::new();
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fail = |kind| ImportError { line: Some(n), kind };
        if line.trim().is_empty() {
            continue;
        }
        if line.chars().any(char::is_control) {
            return Err(fail(ImportErrorKind::ControlCharacter));
        }
        let this = CmsFormat::of_line(line);
        let file = *format.get_or_insert(this);
        if this != file {
            return Err(fail(ImportErrorKind::MixedFormats { file }));
        }
        let (code, billable, description) = match file {
            CmsFormat::Order => parse_order_line(line).map_err(fail)?,
            CmsFormat::Codes => parse_codes_line(line).map(|(code, description)| (code, true, description)).map_err(fail)?,
        };
        let code = Icd10Code::parse(code).map_err(|e| fail(ImportErrorKind::BadCode(e)))?;
        if let Some(first) = first_line.get(&code) {
            return Err(fail(ImportErrorKind::Duplicate { code, first_line: *first }));
        }
        first_line.insert(code.clone(), n);
        entries.push(CodeEntry { code, description: description.trim().to_string(), billable });
    }
    if entries.is_empty() {
        return Err(ImportError { line: None, kind: ImportErrorKind::NoEntries });
    }
    Ok(entries)
}

/// The bundled starter set: about a thousand common primary-care and outpatient billable codes
/// with their official descriptions (`data/icd10cm-starter.README.md` names the release). A
/// test checks the file parses; were it ever broken, this returns an empty list rather than
/// failing at run time.
pub fn starter_set() -> Vec<CodeEntry> {
    parse_cms(STARTER).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Search

/// Whether an entry matches a search query: the query is a prefix of the code (with or without
/// the dot, any case: `e11`, `E11.`, `e11.9`), or every word of the query starts a word of the
/// description (case- and accent-insensitive: `diab mell` matches "Type 2 diabetes mellitus
/// without complications"). A blank query matches every entry.
pub fn matches(entry: &CodeEntry, query: &str) -> bool {
    let q = query.trim();
    if q.is_empty() {
        return true;
    }
    code_prefix_matches(&entry.code, q) || words_match(&entry.description, q)
}

fn code_prefix_matches(code: &Icd10Code, query: &str) -> bool {
    let dot = query.find('.');
    if let Some(i) = dot {
        // A dot anywhere but after the category (or a second dot) is not a code prefix.
        if i != CATEGORY_LEN || query[i + 1..].contains('.') {
            return false;
        }
    }
    if !query.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
        return false;
    }
    let prefix: String = query.bytes().filter(|b| *b != b'.').map(|b| char::from(b.to_ascii_uppercase())).collect();
    code.as_str().starts_with(&prefix)
}

fn words_match(description: &str, query: &str) -> bool {
    let description = fold(description);
    let words: Vec<&str> = description.split(' ').collect();
    let query = fold(query);
    !query.is_empty() && query.split(' ').all(|q| words.iter().any(|w| w.starts_with(q)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    /// The code field of the codes layout (7 characters and a space).
    const CODES_FIELD: usize = 8;

    fn code(s: &str) -> Icd10Code {
        Icd10Code::parse(s).unwrap()
    }

    fn message(s: &str) -> String {
        let e = Icd10Code::parse(s).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("code"), "{s:?}");
        e.message
    }

    #[test]
    fn valid_codes_are_normalized() {
        for (input, stored, dotted) in [
            ("E11.9", "E119", "E11.9"),
            ("e119", "E119", "E11.9"),
            ("  e11.9\t", "E119", "E11.9"),
            ("I10", "I10", "I10"),
            ("i10", "I10", "I10"),
            ("J06.9", "J069", "J06.9"),
            ("M54.50", "M5450", "M54.50"),
            ("Z00.00", "Z0000", "Z00.00"),
            ("F32.A", "F32A", "F32.A"),
            ("f32a", "F32A", "F32.A"),
            ("U07.1", "U071", "U07.1"),
            ("S72.001A", "S72001A", "S72.001A"),
            ("S72001A", "S72001A", "S72.001A"),
            ("S93.401a", "S93401A", "S93.401A"),
            ("T14.90XA", "T1490XA", "T14.90XA"),
            ("C4A.0", "C4A0", "C4A.0"),
            ("Z3A.01", "Z3A01", "Z3A.01"),
            ("QA0.0101", "QA00101", "QA0.0101"),
            ("A09", "A09", "A09"),
        ] {
            let c = code(input);
            assert_eq!(c.as_str(), stored, "{input:?}");
            assert_eq!(c.display(), dotted, "{input:?}");
            assert_eq!(c.to_string(), dotted, "{input:?}");
            assert_eq!(input.parse::<Icd10Code>().unwrap(), c);
            // The dotted form parses back to the same code.
            assert_eq!(code(&c.display()), c);
        }
    }

    #[test]
    fn invalid_codes_are_refused_with_the_rule() {
        let e = Icd10Code::parse("   ").unwrap_err();
        assert_eq!(e.code, IssueCode::Required);
        assert_eq!(e.message, "an ICD-10-CM code is required");
        assert_eq!(Icd10Code::parse("").unwrap_err(), e);

        let charset = "an ICD-10-CM code has only letters, digits and a dot";
        for s in ["E11-9", "E11 9", "E11,9", "É11.9", "E11.9;", "E１1"] {
            assert_eq!(message(s), charset, "{s:?}");
        }
        assert_eq!(message("E11..9"), "an ICD-10-CM code has at most one dot");
        assert_eq!(message("S72.001.A"), "an ICD-10-CM code has at most one dot");
        assert_eq!(message("E11 .9"), charset);
        let dot = "the dot of an ICD-10-CM code comes right after the third character";
        for s in ["E1.19", "E119.", "S7200.1A"] {
            assert_eq!(message(s), dot, "{s:?}");
        }
        assert_eq!(message("E11."), "the dot of an ICD-10-CM code is followed by 1 to 4 characters");
        assert_eq!(message("E1"), "an ICD-10-CM code has at least 3 characters");
        assert_eq!(message("e"), "an ICD-10-CM code has at least 3 characters");
        let long = "an ICD-10-CM code has at most 7 characters, not counting the dot";
        assert_eq!(message("S72.001AA"), long);
        assert_eq!(message("S72001AA"), long);
        let first = "the first character of an ICD-10-CM code is a letter";
        for s in ["119", "11.9", "99213", "0E11", ".E119", "1"] {
            assert_eq!(message(s), first, "{s:?}");
        }
        let second = "the second character of an ICD-10-CM code is a digit (or A, as in QA0)";
        for s in ["HTN", "COPD", "DM2", "EE11", "GERD", "IB1.1"] {
            assert_eq!(message(s), second, "{s:?}");
        }
        // Messages never repeat the input (it may be PHI).
        let e = Icd10Code::parse("SECRET-NAME").unwrap_err();
        assert!(!e.to_string().contains("SECRET"));
    }

    #[test]
    fn fhir_system() {
        assert_eq!(SYSTEM, "http://hl7.org/fhir/sid/icd-10-cm");
    }

    const CODES: &str = "A000    Cholera due to Vibrio cholerae 01, biovar cholerae\n\
                         E119    Type 2 diabetes mellitus without complications   \n\
                         I10     Essential (primary) hypertension\n\
                         S72001A Fracture of unspecified part of neck of right femur, initial encounter for closed fracture\n";

    fn order_line(n: u32, code: &str, billable: char, short: &str, long: &str) -> String {
        format!("{n:05} {code:<7} {billable} {short:<60} {long}")
    }

    fn order_file(end: &str) -> String {
        [
            order_line(1, "A00", '0', "Cholera", "Cholera"),
            order_line(
                2,
                "A000",
                '1',
                "Cholera due to Vibrio cholerae 01, biovar cholerae",
                "Cholera due to Vibrio cholerae 01, biovar cholerae",
            ),
            order_line(3, "E11", '0', "Type 2 diabetes mellitus", "Type 2 diabetes mellitus"),
            order_line(4, "E119", '1', "Type 2 diabetes mellitus without complications", "Type 2 diabetes mellitus without complications"),
            order_line(
                5,
                "S72001A",
                '1',
                "Fx unsp part of neck of right femur, init for clos fx",
                "Fracture of unspecified part of neck of right femur, initial encounter for closed fracture",
            ),
        ]
        .iter()
        .map(|l| format!("{l}{end}"))
        .collect()
    }

    fn entry(e: &CodeEntry) -> (String, &str, bool) {
        (e.code.display(), e.description.as_str(), e.billable)
    }

    fn import_error(text: &str) -> (Option<usize>, ImportErrorKind, String) {
        let e = parse_cms(text).unwrap_err();
        let shown = e.to_string();
        (e.line, e.kind, shown)
    }

    #[test]
    fn codes_layout() {
        let entries = parse_cms(CODES).unwrap();
        let got: Vec<_> = entries.iter().map(entry).collect();
        assert_eq!(
            got,
            vec![
                ("A00.0".to_string(), "Cholera due to Vibrio cholerae 01, biovar cholerae", true),
                ("E11.9".to_string(), "Type 2 diabetes mellitus without complications", true),
                ("I10".to_string(), "Essential (primary) hypertension", true),
                (
                    "S72.001A".to_string(),
                    "Fracture of unspecified part of neck of right femur, initial encounter for closed fracture",
                    true
                ),
            ]
        );
        // No final newline, trailing blank lines, a BOM, CRLF: the same entries.
        assert_eq!(parse_cms(CODES.trim_end()).unwrap(), entries);
        assert_eq!(parse_cms(&format!("{CODES}\n\n  \n")).unwrap(), entries);
        assert_eq!(parse_cms(&format!("\u{feff}{CODES}")).unwrap(), entries);
        assert_eq!(parse_cms(&CODES.replace('\n', "\r\n")).unwrap(), entries);
        assert_eq!(parse_cms(&format!("\u{feff}{}\r\n\r\n", CODES.replace('\n', "\r\n"))).unwrap(), entries);
    }

    #[test]
    fn order_layout() {
        let entries = parse_cms(&order_file("\n")).unwrap();
        let got: Vec<_> = entries.iter().map(entry).collect();
        assert_eq!(
            got,
            vec![
                ("A00".to_string(), "Cholera", false),
                ("A00.0".to_string(), "Cholera due to Vibrio cholerae 01, biovar cholerae", true),
                ("E11".to_string(), "Type 2 diabetes mellitus", false),
                ("E11.9".to_string(), "Type 2 diabetes mellitus without complications", true),
                (
                    "S72.001A".to_string(),
                    "Fracture of unspecified part of neck of right femur, initial encounter for closed fracture",
                    true
                ),
            ]
        );
        // CRLF with trailing blank lines, and a BOM.
        assert_eq!(parse_cms(&format!("{}\r\n\r\n", order_file("\r\n"))).unwrap(), entries);
        assert_eq!(parse_cms(&format!("\u{feff}{}", order_file("\n"))).unwrap(), entries);
        // A short description of exactly 60 characters.
        let full = order_line(1, "E119", '1', &"x".repeat(60), "Type 2 diabetes mellitus without complications");
        assert_eq!(parse_cms(&full).unwrap()[0].description, "Type 2 diabetes mellitus without complications");
    }

    #[test]
    fn import_errors_name_the_line() {
        // A bad code on line 3 (after a blank line 2).
        let text = "E119    Type 2 diabetes mellitus without complications\n\n11.9    Nonsense\nI10     Essential (primary) hypertension\n";
        let (line, kind, shown) = import_error(text);
        assert_eq!(line, Some(3));
        assert_eq!(kind, ImportErrorKind::BadCode(InputError::value("code", "the first character of an ICD-10-CM code is a letter")));
        assert_eq!(shown, "line 3: bad code: the first character of an ICD-10-CM code is a letter");

        let (line, _, shown) = import_error("E119    Diabetes\nE11999AB Too long\n");
        assert_eq!(line, Some(2));
        assert_eq!(shown, "line 2: bad code: an ICD-10-CM code has at most 7 characters, not counting the dot");

        // Duplicate (also when written once with the dot).
        let (line, kind, shown) = import_error("E119    Diabetes\r\nI10     Hypertension\r\nE11.9   Diabetes again\r\n");
        assert_eq!((line, kind), (Some(3), ImportErrorKind::Duplicate { code: code("E11.9"), first_line: 1 }));
        assert_eq!(shown, "line 3: duplicate code E11.9, first on line 1");
        let dup = format!("{}{}\n", order_file("\n"), order_line(6, "E119", '1', "Dup", "Duplicate"));
        assert_eq!(import_error(&dup).2, "line 6: duplicate code E11.9, first on line 4");

        // Missing descriptions.
        assert_eq!(import_error("E119    Diabetes\nI10\n").2, "line 2: the description is missing");
        assert_eq!(import_error("E119    Diabetes\nI10        \n").2, "line 2: the description is missing");
        let no_long = format!("{}\n", order_line(1, "E119", '1', "Type 2 diabetes mellitus w/o complications", ""));
        assert_eq!(import_error(&no_long).2, "line 1: the description is missing");
        assert_eq!(import_error(no_long.trim_end()).2, "line 1: the description is missing");

        // Billable flag.
        let bad_flag = order_line(1, "E119", '2', "Type 2 diabetes", "Type 2 diabetes mellitus without complications");
        assert_eq!(
            import_error(&bad_flag),
            (Some(1), ImportErrorKind::BadBillable, "line 1: the billable flag (column 15) is not 0 or 1".into())
        );
        let no_flag = order_line(1, "E119", ' ', "Type 2 diabetes", "Type 2 diabetes mellitus without complications");
        assert_eq!(import_error(&no_flag).1, ImportErrorKind::BadBillable);

        // Layout.
        let shifted = format!("00001  E119  1 {:<60} Type 2 diabetes mellitus without complications", "Type 2 diabetes");
        assert_eq!(import_error(&shifted).2, "line 1: not in the order layout: the code does not start in column 7");
        let blank_code = order_line(1, "", '1', "Type 2 diabetes", "Type 2 diabetes mellitus without complications");
        assert_eq!(import_error(&blank_code).2, "line 1: not in the order layout: the code does not start in column 7");
        let spaced_code = order_line(1, "E11 9", '1', "Type 2 diabetes", "Type 2 diabetes mellitus without complications");
        assert_eq!(import_error(&spaced_code).2, "line 1: bad code: an ICD-10-CM code has only letters, digits and a dot");
        let long_short = order_line(1, "E119", '1', &"x".repeat(61), "Type 2 diabetes mellitus without complications");
        assert_eq!(
            import_error(&long_short).2,
            "line 1: not in the order layout: no space between the short and the long description (column 77)"
        );
        assert_eq!(import_error("00001 E119").2, "line 1: not in the order layout: the line ends inside the code (columns 7-13)");

        // Mixed layouts, both ways.
        let mixed = format!("{}E119    Diabetes\n", order_file("\n"));
        let (line, kind, shown) = import_error(&mixed);
        assert_eq!((line, kind), (Some(6), ImportErrorKind::MixedFormats { file: CmsFormat::Order }));
        assert_eq!(shown, "line 6: the line is in the codes layout but the file started in the order layout");
        let mixed = format!("{CODES}{}", order_file("\n"));
        assert_eq!(import_error(&mixed).2, "line 5: the line is in the order layout but the file started in the codes layout");

        // Control characters (a tab, a NUL, a lone CR inside a line).
        for bad in ["E119    Type 2\tdiabetes", "E119    Type 2 diabetes\u{0}", "E119    Type 2\rdiabetes", "E119    Type\u{85}2"] {
            let text = format!("I10     Hypertension\n{bad}\n");
            assert_eq!(import_error(&text).2, "line 2: the line contains a control character", "{bad:?}");
        }

        // Nothing to import.
        for empty in ["", "\n\n", "\u{feff}", "\u{feff}\r\n  \r\n"] {
            let (line, kind, shown) = import_error(empty);
            assert_eq!((line, kind), (None, ImportErrorKind::NoEntries));
            assert_eq!(shown, "the file has no codes");
        }
    }

    #[test]
    fn starter_set_is_sound() {
        let entries = parse_cms(STARTER).unwrap();
        assert_eq!(starter_set(), entries);
        assert!(entries.len() > 500, "{}", entries.len());
        let codes: HashSet<&str> = entries.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes.len(), entries.len(), "no duplicates");
        for c in ["E119", "I10", "J069", "M5450", "Z0000", "F411", "F32A", "N390", "R519", "U071", "Z23", "S93401A"] {
            assert!(codes.contains(c), "{c}");
        }
        assert!(entries.iter().all(|e| e.billable && !e.description.is_empty()));
        // The file is in the plain codes layout: LF, no BOM, no blank or padded lines.
        assert!(!STARTER.contains('\r') && !STARTER.starts_with('\u{feff}'));
        assert!(STARTER.lines().all(|l| l.len() > CODES_FIELD && l == l.trim_end() && l.as_bytes()[CODES_FIELD - 1] == b' '));
    }

    #[test]
    fn search() {
        let starter = starter_set();
        let find = |q: &str| -> Vec<String> { starter.iter().filter(|e| matches(e, q)).map(|e| e.code.display()).collect() };
        let e119 = CodeEntry { code: code("E11.9"), description: "Type 2 diabetes mellitus without complications".into(), billable: true };
        for q in ["E11.9", "e119", "E11", "e11.", "E", " e1 ", "diabetes", "DIAB mell", "mellitus type", "2 diab", "without compl"] {
            assert!(matches(&e119, q), "{q:?}");
        }
        for q in ["E12", "E11.8", "E1.1", "E11..", "I10", "diabetic", "abetes", "type 1", "diabetes insipidus", "E11 diabetes"] {
            assert!(!matches(&e119, q), "{q:?}");
        }
        assert!(matches(&e119, "") && matches(&e119, "   "));

        assert_eq!(find("I10"), vec!["I10"]);
        assert_eq!(find("essential hypert"), vec!["I10"]);
        let covid = find("covid-19");
        for c in ["U07.1", "U09.9", "Z20.822"] {
            assert!(covid.contains(&c.to_string()), "{c} {covid:?}");
        }
        assert_eq!(find("COVID 19"), covid);
        assert!(find("alzheimer's").contains(&"G30.9".to_string()));
        assert!(find("Alzheimer").contains(&"G30.9".to_string()));
        let low_back = find("low back pain");
        assert!(low_back.contains(&"M54.50".to_string()) && low_back.iter().all(|c| c.starts_with('M')), "{low_back:?}");
        assert!(find("m54.5").iter().all(|c| c.starts_with("M54.5")));
        assert!(!find("m54.5").is_empty());
    }

    #[test]
    fn full_cms_files_when_present() {
        // The full CMS files are not in the repository; they are checked when a developer has
        // put them at these paths (see data/icd10cm-starter.README.md), and skipped otherwise.
        for path in ["/tmp/icd10cm_full.txt", "/tmp/icd10cm_codes_2026.txt", "/tmp/icd10cm_order_2025.txt", "/tmp/icd10cm_codes_2025.txt"] {
            let Ok(text) = std::fs::read_to_string(path) else {
                eprintln!("skipped: {path} is not present");
                continue;
            };
            let entries = parse_cms(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            let billable = entries.iter().filter(|e| e.billable).count();
            eprintln!("{path}: {} entries, {billable} billable", entries.len());
            assert!(billable > 70_000, "{path}: {billable}");
            // Every starter code is in the release it was taken from, with the same description.
            if path.ends_with("_2026.txt") {
                let all: HashMap<&Icd10Code, &CodeEntry> = entries.iter().map(|e| (&e.code, e)).collect();
                for s in starter_set() {
                    assert_eq!(all.get(&s.code).map(|e| (&e.description, e.billable)), Some((&s.description, true)), "{}", s.code);
                }
            }
        }
    }
}
