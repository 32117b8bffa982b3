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
