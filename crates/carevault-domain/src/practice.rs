//! The practice's structure: provider identifiers (NPI) and the time zones of locations.

use std::fmt;

use crate::error::InputError;

/// A National Provider Identifier: 10 digits whose last is a Luhn check digit computed over
/// the prefix `80840` followed by the first nine (CMS, "NPI check digit").
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Npi(String);

impl Npi {
    pub fn parse(path: &str, s: &str) -> Result<Npi, InputError> {
        let s = s.trim();
        if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InputError::value(path, "an NPI is 10 digits"));
        }
        if !matches!(s.as_bytes()[0], b'1' | b'2') {
            return Err(InputError::value(path, "an NPI starts with 1 (individual) or 2 (organization)"));
        }
        let digits: Vec<u32> = format!("80840{}", &s[..9]).bytes().map(|b| u32::from(b - b'0')).collect();
        // Luhn: double every second digit from the right of the payload (the check digit's
        // neighbour first).
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| {
                if i % 2 == 0 {
                    let x = d * 2;
                    if x > 9 {
                        x - 9
                    } else {
                        x
                    }
                } else {
                    *d
                }
            })
            .sum();
        let check = (10 - sum % 10) % 10;
        if u32::from(s.as_bytes()[9] - b'0') != check {
            return Err(InputError::value(path, "the NPI's check digit is wrong"));
        }
        Ok(Npi(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Npi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Npi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Npi({})", self.0)
    }
}

/// An IANA time-zone name known to the bundled time-zone database (`America/Chicago`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    /// Coordinated Universal Time.
    pub fn utc() -> TimeZoneName {
        TimeZoneName("UTC".into())
    }

    pub fn parse(path: &str, s: &str) -> Result<TimeZoneName, InputError> {
        let s = s.trim();
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+')) {
            return Err(InputError::value(path, "an IANA time-zone name such as America/Chicago"));
        }
        match jiff::tz::TimeZone::get(s) {
            Ok(_) => Ok(TimeZoneName(s.to_string())),
            Err(_) => Err(InputError::value(path, "unknown time zone (use an IANA name such as America/Chicago)")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZoneName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npi_check_digit() {
        // The worked example of the CMS specification, and a few other valid numbers.
        for ok in ["1234567893", "1245319599", "1003000126"] {
            assert!(Npi::parse("npi", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("1234567890", "check"),
            ("123456789", "10"),
            ("12345678931", "10"),
            ("3234567893", "starts"),
            ("12345b7893", "10"),
            ("", "10"),
        ] {
            let e = Npi::parse("npi", bad).expect_err(bad);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
        // Every single-digit change is caught.
        let good = "1234567893";
        for i in 0..10 {
            for d in b'0'..=b'9' {
                let mut b = good.as_bytes().to_vec();
                if b[i] == d {
                    continue;
                }
                b[i] = d;
                let s = String::from_utf8(b).expect("ascii");
                assert!(Npi::parse("npi", &s).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn time_zones() {
        for ok in ["America/Chicago", "Europe/Berlin", "UTC", "Pacific/Auckland"] {
            assert_eq!(TimeZoneName::parse("tz", ok).expect(ok).as_str(), ok);
        }
        for bad in ["Mars/Olympus", "", "America/Chicago; DROP", "../../etc/passwd", "EST5EDT<script>"] {
            assert!(TimeZoneName::parse("tz", bad).is_err(), "{bad}");
        }
    }
}
