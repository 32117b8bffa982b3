use carevault_domain::InputError;

/// Errors of the chokepoint, each with a stable code. The web crate maps them to HTTP
/// explicitly; messages never contain PHI.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("the session has expired; sign in again")]
    SessionExpired,
    #[error("the second factor has not been completed")]
    MfaRequired,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("invalid or already used authentication code")]
    InvalidCode,
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: i64 },
    #[error("'{operation}' is not allowed for this account here ({reason})")]
    Forbidden { operation: &'static str, reason: &'static str },
    #[error("this action needs a fresh sign-in: confirm your password and second factor first")]
    ReauthRequired,
    #[error("refused: {message}")]
    Refused { reason: &'static str, message: String },
    #[error("{0}")]
    Invalid(InputError),
    #[error("{resource} not found")]
    NotFound { resource: String },
    #[error("version conflict: the resource is at version {current}, not {expected}")]
    VersionConflict { expected: i64, current: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("the audit log could not be written; nothing was read or changed")]
    AuditUnavailable,
    #[error("the data store is unavailable")]
    StoreUnavailable,
    #[error(
        "the server's disk is nearly full (below its free-space reserve): changes are refused until space is freed; reading continues"
    )]
    StorageLow,
    /// Not an error of the request: a privileged change was filed and waits for a second
    /// officer's approval (HTTP 202).
    #[error("the change waits for the approval of a privacy or security officer other than you (request {id})")]
    ApprovalPending { id: String },
    /// A sealed value did not open where it is stored: altered, or moved to another row,
    /// patient, kind, parent or status in the database. Audited and alerted; nothing returned.
    #[error("a stored record failed its integrity check (altered or moved in the database); the security officer has been alerted")]
    Tampered { table: String, id: String, patient_id: String },
    #[error("internal error ({0})")]
    Internal(String),
}

impl CoreError {
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Unauthenticated => "CV-AUTHN-001",
            CoreError::SessionExpired => "CV-AUTHN-002",
            CoreError::MfaRequired => "CV-AUTHN-003",
            CoreError::InvalidCredentials => "CV-AUTHN-004",
            CoreError::InvalidCode => "CV-AUTHN-005",
            CoreError::Throttled { .. } => "CV-AUTHN-006",
            CoreError::Forbidden { .. } => "CV-AUTHZ-001",
            CoreError::Refused { .. } => "CV-AUTHZ-002",
            CoreError::ReauthRequired => "CV-AUTHN-007",
            CoreError::Invalid(_) => "CV-INPUT-001",
            CoreError::NotFound { .. } => "CV-NOTFOUND-001",
            CoreError::VersionConflict { .. } => "CV-CONFLICT-001",
            CoreError::Conflict(_) => "CV-CONFLICT-002",
            CoreError::AuditUnavailable => "CV-AUDIT-001",
            CoreError::StoreUnavailable => "CV-STORE-001",
            CoreError::StorageLow => "CV-STORE-002",
            CoreError::Tampered { .. } => "CV-INTEGRITY-001",
            CoreError::ApprovalPending { .. } => "CV-APPROVAL-001",
            CoreError::Internal(_) => "CV-INTERNAL-001",
        }
    }

    pub(crate) fn outcome(&self) -> carevault_domain::Outcome {
        use carevault_domain::Outcome;
        match self {
            CoreError::Unauthenticated
            | CoreError::SessionExpired
            | CoreError::MfaRequired
            | CoreError::InvalidCredentials
            | CoreError::InvalidCode
            | CoreError::Throttled { .. }
            | CoreError::Forbidden { .. }
            | CoreError::ReauthRequired
            | CoreError::Refused { .. } => Outcome::Denied,
            CoreError::Invalid(_) => Outcome::Invalid,
            CoreError::ApprovalPending { .. } => Outcome::Success,
            CoreError::NotFound { .. } => Outcome::NotFound,
            CoreError::VersionConflict { .. } | CoreError::Conflict(_) => Outcome::Conflict,
            CoreError::AuditUnavailable
            | CoreError::StoreUnavailable
            | CoreError::StorageLow
            | CoreError::Internal(_)
            | CoreError::Tampered { .. } => Outcome::Error,
        }
    }
}

impl From<InputError> for CoreError {
    fn from(e: InputError) -> Self {
        CoreError::Invalid(e)
    }
}

impl From<carevault_store::StoreError> for CoreError {
    fn from(e: carevault_store::StoreError) -> Self {
        use carevault_store::StoreError as S;
        match e {
            S::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                CoreError::StoreUnavailable
            }
            S::Conflict(c) => CoreError::Conflict(c),
            other => {
                tracing::error!(error = %other, "store error");
                CoreError::Internal("store".into())
            }
        }
    }
}

/// Why the vault could not start. Each is a clear message for the operator and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("data folder {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("{0}")]
    Keys(String),
    #[error("the database could not be opened: {0}")]
    Store(String),
    #[error("the database is corrupted or is not a carevault database: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Refused(String),
    #[error("the stored data could not be upgraded to this version: {0}")]
    Upgrade(String),
}

impl From<carevault_store::StoreError> for StartupError {
    fn from(e: carevault_store::StoreError) -> Self {
        match e {
            carevault_store::StoreError::Corrupt(m) => StartupError::Corrupt(m),
            other => StartupError::Store(other.to_string()),
        }
    }
}

impl From<carevault_crypto::KeyError> for StartupError {
    fn from(e: carevault_crypto::KeyError) -> Self {
        StartupError::Keys(e.to_string())
    }
}
