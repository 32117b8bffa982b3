use std::fmt;

/// What an audit event records. The closed list of the vault spine; later steps add more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Read,
    Search,
    Create,
    Update,
    Delete,
    Export,
    Login,
    LoginFailed,
    MfaFailed,
    Logout,
    SessionExpired,
    AccessDenied,
    ConfigChange,
    KeyRotation,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::Read,
        AuditAction::Search,
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Delete,
        AuditAction::Export,
        AuditAction::Login,
        AuditAction::LoginFailed,
        AuditAction::MfaFailed,
        AuditAction::Logout,
        AuditAction::SessionExpired,
        AuditAction::AccessDenied,
        AuditAction::ConfigChange,
        AuditAction::KeyRotation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Read => "read",
            AuditAction::Search => "search",
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Export => "export",
            AuditAction::Login => "login",
            AuditAction::LoginFailed => "login-failed",
            AuditAction::MfaFailed => "mfa-failed",
            AuditAction::Logout => "logout",
            AuditAction::SessionExpired => "session-expired",
            AuditAction::AccessDenied => "access-denied",
            AuditAction::ConfigChange => "config-change",
            AuditAction::KeyRotation => "key-rotation",
        }
    }

    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the recorded attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    /// Refused by authorization or authentication.
    Denied,
    /// Refused because the input was invalid.
    Invalid,
    /// The resource did not exist.
    NotFound,
    /// A conflicting concurrent change (version mismatch).
    Conflict,
    /// The server failed.
    Error,
}

impl Outcome {
    pub const ALL: &'static [Outcome] =
        &[Outcome::Success, Outcome::Denied, Outcome::Invalid, Outcome::NotFound, Outcome::Conflict, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::NotFound => "not-found",
            Outcome::Conflict => "conflict",
            Outcome::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.iter().copied().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bound of an audit time range, as Unix microseconds (UTC). Accepts an RFC 3339 instant, a
/// form's `YYYY-MM-DDTHH:MM[:SS]` (taken as UTC) or a date `YYYY-MM-DD`: a date starts at UTC
/// midnight, or, with `end_of_day` (the "to" bound, which is exclusive), at the next midnight so
/// the whole day is included.
pub fn parse_time_bound(path: &str, s: &str, end_of_day: bool) -> Result<i64, crate::InputError> {
    let s = s.trim();
    let bad = || crate::InputError::value(path, "a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM (UTC)");
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    if s.len() > 10 {
        let dt = s.parse::<jiff::civil::DateTime>().map_err(|_| bad())?;
        return jiff::tz::TimeZone::UTC.to_ambiguous_timestamp(dt).compatible().map(|t| t.as_microsecond()).map_err(|_| bad());
    }
    let d = s.parse::<jiff::civil::Date>().map_err(|_| bad())?;
    let d = if end_of_day { d.tomorrow().map_err(|_| bad())? } else { d };
    jiff::tz::TimeZone::UTC
        .to_ambiguous_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .map(|t| t.as_microsecond())
        .map_err(|_| bad())
}

#[cfg(test)]
mod time_bound_tests {
    use super::parse_time_bound;

    #[test]
    fn dates_times_and_instants() {
        let day = 86_400_000_000i64;
        let d = parse_time_bound("from", "2027-03-14", false).unwrap_or_default();
        assert_eq!(parse_time_bound("to", "2027-03-14", true).unwrap_or_default(), d + day);
        assert_eq!(parse_time_bound("from", "2027-03-14T00:00", false).unwrap_or_default(), d);
        assert_eq!(parse_time_bound("from", "2027-03-14T01:00:00Z", false).unwrap_or_default(), d + 3_600_000_000);
        assert!(parse_time_bound("from", "14/03/2027", false).is_err());
        assert!(parse_time_bound("from", "", false).is_err());
    }
}
