//! TOTP (RFC 6238): SHA-1, 6 digits, 30-second steps, one step of drift either way, so that
//! authenticator apps, pyotp and oathtool agree. Replay is refused by remembering the last step
//! used, which the caller stores.

use totp_rs::{Algorithm, Secret, TOTP};
use zeroize::Zeroizing;

pub const DIGITS: usize = 6;
pub const STEP_SECS: u64 = 30;
pub const SKEW_STEPS: u64 = 1;

/// A 160-bit TOTP secret.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<secret>)")
    }
}

impl TotpSecret {
    pub fn generate() -> TotpSecret {
        TotpSecret(Zeroizing::new(crate::random_bytes::<20>().to_vec()))
    }

    pub fn from_bytes(b: &[u8]) -> TotpSecret {
        TotpSecret(Zeroizing::new(b.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, issuer: &str, account: &str) -> Result<TOTP, String> {
        TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECS, self.0.to_vec(), Some(issuer.to_string()), account.to_string())
            .map_err(|e| e.to_string())
    }

    /// The provisioning URI an authenticator app scans (`otpauth://totp/Issuer:account?...`).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<String, String> {
        Ok(self.totp(issuer, account)?.get_url())
    }

    pub fn base32(&self) -> String {
        Secret::Raw(self.0.to_vec()).to_encoded().to_string()
    }

    /// The code for time `unix_secs` (for tests and demo output).
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.totp("carevault", "x").map(|t| t.generate(unix_secs)).unwrap_or_default()
    }

    /// Checks `code` at `unix_secs` with ±1 step. Returns the matched step if it is later than
    /// `last_used_step` (a code already used, or an older one, is a replay).
    pub fn verify(&self, code: &str, unix_secs: u64, last_used_step: Option<u64>) -> TotpCheck {
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return TotpCheck::Malformed;
        }
        let Ok(t) = self.totp("carevault", "x") else {
            return TotpCheck::Invalid;
        };
        let now_step = unix_secs / STEP_SECS;
        let mut matched = None;
        for step in now_step.saturating_sub(SKEW_STEPS)..=now_step + SKEW_STEPS {
            // Compare every candidate, in constant time, so timing does not reveal which matched.
            if crate::ct_eq(t.generate(step * STEP_SECS).as_bytes(), code.as_bytes()) {
                matched = Some(step);
            }
        }
        match (matched, last_used_step) {
            (None, _) => TotpCheck::Invalid,
            (Some(s), Some(last)) if s <= last => TotpCheck::Replayed,
            (Some(s), _) => TotpCheck::Valid { step: s },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    Valid { step: u64 },
    Replayed,
    Invalid,
    Malformed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last 6 digits.
        let s = TotpSecret::from_bytes(b"12345678901234567890");
        for (t, code) in [(59u64, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")] {
            assert_eq!(s.code_at(t), code);
        }
    }

    #[test]
    fn skew_and_replay() {
        let s = TotpSecret::generate();
        let now = 1_800_000_000u64;
        let code = s.code_at(now);
        let TotpCheck::Valid { step } = s.verify(&code, now, None) else { panic!("valid") };
        assert_eq!(s.verify(&code, now, Some(step)), TotpCheck::Replayed);
        assert!(matches!(s.verify(&s.code_at(now - 30), now, None), TotpCheck::Valid { .. }));
        assert!(matches!(s.verify(&s.code_at(now + 30), now, None), TotpCheck::Valid { .. }));
        assert_eq!(s.verify(&s.code_at(now - 90), now, None), TotpCheck::Invalid);
        assert_eq!(s.verify("12a456", now, None), TotpCheck::Malformed);
        let uri = s.otpauth_uri("carevault", "alice").expect("uri");
        assert!(uri.starts_with("otpauth://totp/carevault:alice?"), "{uri}");
        assert!(uri.contains(&s.base32()));
    }
}
