//! Blocklist of common and breached passwords (NIST SP 800-63B §5.1.1.2: "passwords obtained from
//! previous breach corpuses" and "dictionary words" are refused).
//!
//! The list is `data/common-passwords.txt`, bundled into the binary: one lower-cased entry per line
//! (8 to 64 characters), sorted bytewise, deduplicated, LF line ends. Its source, licence and the
//! way to regenerate it are in `data/README.md`. Screening is case-insensitive: the candidate is
//! folded with Unicode lower case before the lookup.

use std::sync::OnceLock;

/// The bundled list, sorted bytewise, one entry per line.
const DATA: &str = include_str!("../../data/common-passwords.txt");

/// The lines of [`DATA`], split once on first use. `str`'s ordering is bytewise, so the file's
/// order is the order `binary_search` expects.
fn entries() -> &'static [&'static str] {
    static ENTRIES: OnceLock<Vec<&'static str>> = OnceLock::new();
    ENTRIES.get_or_init(|| DATA.lines().filter(|l| !l.is_empty()).collect())
}

/// Whether `password`, lower-cased, is on the bundled list of common and breached passwords.
pub(crate) fn is_common(password: &str) -> bool {
    let folded = password.to_lowercase();
    entries().binary_search(&folded.as_str()).is_ok()
}

/// How many entries the bundled list has.
#[cfg(test)]
pub(crate) fn len() -> usize {
    entries().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_large_sorted_unique_and_long_enough() {
        let e = entries();
        assert!(len() >= 100_000, "only {} entries", len());
        assert_eq!(len(), e.len());
        assert!(e.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()), "not strictly sorted bytewise");
        for entry in e {
            let n = entry.chars().count();
            assert!((8..=64).contains(&n), "entry {entry:?} has {n} characters");
            assert_eq!(*entry, entry.trim(), "entry {entry:?} is not trimmed");
            assert_eq!(*entry, entry.to_lowercase(), "entry {entry:?} is not lower case");
            assert!(!entry.chars().any(char::is_control), "entry {entry:?} has a control character");
        }
    }

    #[test]
    fn file_is_lf_terminated_without_blank_lines() {
        assert!(DATA.ends_with('\n'));
        assert!(!DATA.contains('\r'));
        assert!(!DATA.contains("\n\n"));
        assert_eq!(DATA.lines().count(), len());
    }

    #[test]
    fn finds_common_passwords_case_insensitively() {
        for p in ["password1234", "qwertyuiop", "iloveyou12", "1q2w3e4r5t6y", "qwerty123456", "trustno1", "sunshine1"] {
            assert!(is_common(p), "{p} not found");
            assert!(is_common(&p.to_uppercase()), "{p} upper case not found");
        }
        assert!(is_common("PassWord1234"));
        assert!(is_common("QwErTyUiOp"));
        assert!(is_common("ILoveYou12"));
    }

    #[test]
    fn first_and_last_entries_are_found() {
        let e = entries();
        for p in [e[0], e[e.len() - 1], e[e.len() / 2]] {
            assert!(is_common(p), "{p} not found");
        }
    }

    #[test]
    fn rejects_uncommon_and_short() {
        assert!(!is_common("vT7#qLz9!mWp2@Rx4$Kd"));
        assert!(!is_common("Xq8fJ2mZr9Lw4Tb6Yc1N"));
        assert!(!is_common(""));
        assert!(!is_common("123456"), "entries shorter than 8 are never listed");
        assert!(!is_common("password1234 "), "the candidate is not trimmed");
    }

    #[test]
    fn unicode_lower_case_is_applied() {
        // U+212A KELVIN SIGN lower-cases to ASCII 'k' under Unicode rules (ASCII folding would miss it).
        assert!(is_common("\u{212A}IMBERLY"));
        // A non-ASCII letter is not its ASCII look-alike.
        assert!(!is_common("PASSWÖRD1234"));
    }
}
