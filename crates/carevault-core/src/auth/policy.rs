//! Password and username rules (NIST SP 800-63B): length, not composition; a blocklist of
//! common and breached passwords; the reason is always shown.

use carevault_domain::InputError;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;

const BLOCKLIST: &[&str] = &[
    "password1234",
    "password12345",
    "password123!",
    "passwordpassword",
    "123456789012",
    "1234567890123",
    "12345678901234",
    "qwertyuiopas",
    "qwerty123456",
    "qwertyqwerty",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "asdfghjkl123",
    "abc123456789",
    "iloveyou1234",
    "welcome12345",
    "welcome2024!",
    "welcome2025!",
    "welcome2026!",
    "changeme1234",
    "changemenow!",
    "letmein12345",
    "administrator",
    "administrator1",
    "p@ssw0rd1234",
    "football1234",
    "baseball1234",
    "monkey123456",
    "sunshine1234",
    "princess1234",
    "superman1234",
    "trustno1trustno1",
    "iloveyouiloveyou",
    "starwars1234",
    "spring2026!!",
    "summer2026!!",
    "autumn2026!!",
    "winter2026!!",
    "doctor123456",
    "nurse1234567",
    "hospital1234",
    "medical12345",
    "patient12345",
    "clinic123456",
    "clinicpassword",
    "hipaacompliant",
    "carevault123",
    "carevault1234",
    "correcthorsebatterystaple",
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

pub fn check_password(p: &str, username: &str) -> Result<(), InputError> {
    let n = p.chars().count();
    let bad = |m: &str| Err(InputError::value("password", m));
    if n < MIN_PASSWORD_CHARS {
        return bad("must be at least 12 characters long (a passphrase of several words is easiest)");
    }
    if n > MAX_PASSWORD_CHARS {
        return bad("must be at most 256 characters long");
    }
    if p.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    let lower = p.to_lowercase();
    if BLOCKLIST.contains(&lower.as_str()) {
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
    }
}
