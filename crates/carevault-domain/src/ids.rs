use std::fmt;

use crate::error::InputError;

fn fhir_id_ok(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn uuid_from_bytes(b: [u8; 16]) -> String {
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A new random id (UUID v4 text) from 16 bytes of CSPRNG output.
            pub fn from_random(bytes: [u8; 16]) -> Self {
                $name(uuid_from_bytes(bytes))
            }
            /// Parses an id received from outside (FHIR `id` grammar).
            pub fn parse(s: &str) -> Result<Self, InputError> {
                if fhir_id_ok(s) {
                    Ok($name(s.to_string()))
                } else {
                    Err(InputError::value(
                        $what,
                        "an id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'",
                    ))
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

string_id!(
    /// The logical id of a patient (also its FHIR `Patient.id`). Not PHI: random, meaningless.
    PatientId,
    "Patient.id"
);
string_id!(
    /// The id of a staff account.
    UserId,
    "User.id"
);

/// The identifier system under which carevault assigns medical record numbers.
pub const MRN_SYSTEM: &str = "urn:carevault:mrn";

/// A medical record number: nine digits and a Luhn check digit. It is PHI (an identifier), so
/// its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Mrn(String);

fn luhn_digit(digits: &[u8]) -> u8 {
    // Luhn over the payload, doubling from the rightmost payload digit.
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - (sum % 10)) % 10) as u8
}

impl Mrn {
    /// Builds an MRN from random bytes (the caller supplies CSPRNG output).
    pub fn from_random(bytes: [u8; 8]) -> Self {
        let n = u64::from_le_bytes(bytes) % 1_000_000_000;
        let payload: Vec<u8> = format!("{n:09}").bytes().map(|b| b - b'0').collect();
        let check = luhn_digit(&payload);
        let mut s: String = payload.iter().map(|d| char::from(b'0' + d)).collect();
        s.push(char::from(b'0' + check));
        Mrn(s)
    }

    pub fn parse(s: &str) -> Result<Self, InputError> {
        let ok = s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) && {
            let d: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
            luhn_digit(&d[..9]) == d[9]
        };
        if ok {
            Ok(Mrn(s.to_string()))
        } else {
            Err(InputError::value("Patient.identifier", "an MRN is ten digits with a valid check digit"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Mrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Mrn(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_mrns_validate() {
        for i in 0u64..500 {
            let m = Mrn::from_random((i * 7_919_993).to_le_bytes());
            assert!(Mrn::parse(m.as_str()).is_ok(), "{}", m.as_str());
        }
        assert!(Mrn::parse("1234567890").is_err() || Mrn::parse("1234567891").is_err());
        assert!(Mrn::parse("12345").is_err());
    }

    #[test]
    fn ids_follow_fhir_grammar() {
        let id = PatientId::from_random([7u8; 16]);
        assert!(PatientId::parse(id.as_str()).is_ok());
        assert_eq!(id.as_str().len(), 36);
        assert!(PatientId::parse("a b").is_err());
        assert!(PatientId::parse("").is_err());
        assert!(PatientId::parse(&"x".repeat(65)).is_err());
        assert!(PatientId::parse("1;DROP").is_err());
    }
}
