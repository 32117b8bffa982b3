//! Password and username rules (NIST SP 800-63B): length, not composition; a blocklist of
//! common and breached passwords; the reason is always shown.

use carevault_domain::InputError;

/// The default minimum; the setting `password_min_chars` may lower it to 8, never below.
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const FLOOR_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Passwords carevault itself makes likely (product, clinic words); the bundled list of common
/// and breached passwords (`data/common-passwords.txt`) covers the rest.
const LOCAL_BLOCKLIST: &[&str] = &[
    "carevault123",
    "carevault1234",
    "carevaultcarevault",
    "clinicpassword",
    "hipaacompliant",
    "hipaacompliant1",
    "patient12345",
    "hospital1234",
    "medical12345",
    "doctor123456",
    "nurse1234567",
    "welcome2026!",
    "spring2026!!",
    "summer2026!!",
    "autumn2026!!",
    "winter2026!!",
];

/// Usernames: 3 to 64 of a-z, 0-9, '.', '_', '-' (folded to lower case).
pub fn check_username(u: &str) -> Result<String, InputError> {
    let u = u.trim().to_lowercase();
    if (3..=64).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
        Ok(u)
    } else {
        Err(InputError::value("username", "a username is 3 to 64 characters of a-z, 0-9, '.', '_' and '-'"))
    }
}

fn is_trivial_pattern(p: &str) -> bool {
    let c: Vec<char> = p.chars().collect();
    let all_same = c.windows(2).all(|w| w[0] == w[1]);
    let ascending = c.windows(2).all(|w| (w[1] as u32) == (w[0] as u32) + 1);
    let descending = c.windows(2).all(|w| (w[0] as u32) == (w[1] as u32) + 1);
    all_same || ascending || descending
}

#[cfg(test)]
fn check_password(p: &str, username: &str) -> Result<(), InputError> {
    check_password_min(p, username, MIN_PASSWORD_CHARS)
}

/// The NIST SP 800-63B rules: a length floor (`min`, at least 8), up to 256 characters of any
/// Unicode, no composition rules, screened against common and breached passwords.
pub fn check_password_min(p: &str, username: &str, min: usize) -> Result<(), InputError> {
    let min = min.max(FLOOR_PASSWORD_CHARS);
    let n = p.chars().count();
    let bad = |m: &str| Err(InputError::value("password", m));
    if n < min {
        return Err(InputError::value(
            "password",
            format!("must be at least {min} characters long (a passphrase of several words is easiest)"),
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return bad("must be at most 256 characters long");
    }
    if p.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    let lower = p.to_lowercase();
    if LOCAL_BLOCKLIST.contains(&lower.as_str()) || super::blocklist::is_common(&lower) {
        return bad("is on the list of commonly used or breached passwords; choose another");
    }
    if is_trivial_pattern(&lower) {
        return bad("is a repeated or sequential pattern; choose another");
    }
    if username.len() >= 3 && lower.contains(username) {
        return bad("must not contain the username");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(check_password("short", "bob").is_err());
        assert!(check_password("Password1234", "bob").is_err());
        assert!(check_password("aaaaaaaaaaaaaaaa", "bob").is_err());
        assert!(check_password("abcdefghijklmnop", "bob").is_err());
        assert!(check_password("my-bob-secret-phrase", "bob").is_err());
        assert!(check_password("tulip marble orbit canyon", "bob").is_ok());
        assert!(check_password("ünïcödé pässphrâse ✓", "bob").is_ok());
        assert!(check_password(&"x".repeat(64).replace('x', "xy"), "bob").is_ok());
        assert_eq!(check_username(" Alice ").expect("ok"), "alice");
        assert!(check_username("a b").is_err());
        assert!(check_username("robert'); drop").is_err());
        // From the bundled breached-password list, in any case.
        assert!(check_password("Qwerty123456", "bob").is_err());
        assert!(check_password("iloveyou12", "bob").is_err(), "too short anyway");
        assert!(check_password_min("iloveyou12", "bob", 8).is_err(), "common");
        assert!(check_password_min("tulip marble", "bob", 4).is_ok(), "floor of 8 applies, 12 chars pass");
        assert!(check_password_min("tulipmar", "bob", 4).is_ok());
        assert!(check_password_min("tulipma", "bob", 4).is_err());
    }
}
