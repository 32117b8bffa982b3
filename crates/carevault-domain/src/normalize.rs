//! Normalization of search text for blind indexes: case- and accent-insensitive.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Folds text for matching: compatibility decomposition, combining marks removed, lower case,
/// apostrophes dropped (O'Brien and OBrien match), other punctuation (hyphens, periods, commas)
/// turned into spaces, runs of white space collapsed. "  Ñúñez-O'Brien " becomes "nunez obrien".
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = true;
    for c in s.nfkd().filter(|c| !is_combining_mark(*c)) {
        if matches!(c, '\'' | '\u{2019}' | '\u{02bc}' | '`') {
            continue;
        }
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    // A few letters do not decompose (ß, ø, æ, ł, đ): map them to their usual Latin spelling.
    if out.chars().any(|c| matches!(c, 'ß' | 'ø' | 'æ' | 'ł' | 'đ' | 'œ' | 'þ')) {
        out = out
            .replace('ß', "ss")
            .replace('ø', "o")
            .replace('æ', "ae")
            .replace('ł', "l")
            .replace('đ', "d")
            .replace('œ', "oe")
            .replace('þ', "th");
    }
    out
}

/// Keeps the digits of a phone number (so "+1 (555) 010-7788" and "15550107788" match).
pub fn phone_digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_and_punctuation() {
        assert_eq!(fold("  Ñúñez-O'Brien "), "nunez obrien");
        assert_eq!(fold("O\u{2019}Brien"), "obrien");
        assert_eq!(fold("ZOË"), "zoe");
        assert_eq!(fold("Strauß"), "strauss");
        assert_eq!(fold("Ørsted"), "orsted");
        assert_eq!(fold("van  der   Berg"), "van der berg");
        assert_eq!(fold("李"), "李");
    }

    #[test]
    fn phone_keeps_digits() {
        assert_eq!(phone_digits("+1 (555) 010-7788"), "15550107788");
    }
}
