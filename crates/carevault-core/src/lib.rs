//! The carevault chokepoint. Every access to patient data passes through [`Vault`], which, in
//! this order, authenticates the actor, checks permission and purpose, appends the audit record
//! durably, and only then decrypts. This is the only crate that depends on `carevault-store`
//! and `carevault-crypto`, and it re-exports none of their types: callers cannot reach the
//! database or the keys.
//!
//! Outside this crate an [`Actor`] cannot be made up; only [`Vault::authenticate`] returns one:
//!
//! ```compile_fail
//! fn forge(a: carevault_core::Actor) -> carevault_core::Actor {
//!     carevault_core::Actor { roles: vec!["physician".into()], ..a }
//! }
//! ```
//!
//! and a [`Vault`] offers no way to its store or keys:
//!
//! ```compile_fail
//! fn reach(v: &carevault_core::Vault) {
//!     let _ = &v.inner;
//! }
//! ```

mod access;
mod actor;
mod allergies;
mod approvals;
mod audit;
mod auth;
mod authz;
mod booking;
mod chart;
mod clock;
mod config;
mod datadir;
mod demo;
mod directory;
mod documents;
mod error;
mod integrity;
mod keys;
mod operator;
mod patients;
mod read;
mod rotation;
mod schedule;
mod sealing;
mod storage;
mod vault;

pub use access::{
    audit_csv, AlertView, AssignmentView, AuditEventView, AuditQuery, BreakGlassView, CareTeamMember, GrantRequest, GrantView, RoleView,
    ScopeInput, SessionView, UnitView, UserView, AUDIT_EXPORT_MAX, AUDIT_PAGE_MAX,
};
pub use actor::{Actor, RequestContext};
pub use allergies::AllergyRecord;
pub use approvals::{ApprovalView, Invitation, NewAccount};
pub use audit::tree::{ConsistencyProof, InclusionProof, TreeHead};
pub use audit::verify::{VerifyFailure, VerifyOptions, VerifyReport};
pub use auth::{form_token, random_token, LoginStep, MfaReset, NewUser, PasskeyChallenge, PasskeyView, SessionGrant};
pub use authz::{role_permissions, role_purposes, DenyReason, Privileges};
pub use booking::{AppointmentQuery, AppointmentTypeView, WaitlistRequest, WaitlistView};
pub use chart::{ChartRecord, DocumentMeta, DraftNote};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::CoreConfig;
pub use demo::DemoAccount;
pub use directory::{PractitionerRequest, PractitionerRoleView, PractitionerView};
pub use documents::{consent_to_fhir, ConsentRequest, DocumentUpload, Download};
pub use error::{CoreError, StartupError};
pub use operator::Operator;
pub use patients::{FhirPatient, PatientRecord, SearchPage, MAX_BULK};
pub use rotation::{KeyStatus, RotationProgress};
pub use schedule::{AppointmentView, BookRequest};
pub use storage::StorageHealth;
pub use vault::{prove_consistency_at, prove_inclusion_at, verify_audit_at, InstanceKind, OpenOptions, Vault};

/// Crash-safe writes of private files (mode 0600) for the web crate and the binary: the bytes
/// go to a temporary name, are synced, take the final name in one step, and the folder is synced.
pub mod durable {
    use std::path::Path;

    /// Creates `path`; fails with `AlreadyExists` rather than replacing a file.
    pub fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
        carevault_crypto::files::write_new(path, contents)
    }

    /// Writes `path`, replacing any previous file at once.
    pub fn write_replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
        carevault_crypto::files::write_replace(path, contents)
    }
}

/// Formats Unix microseconds as an RFC 3339 instant (UTC, millisecond precision).
/// Creates the data folder (mode 0700) if it does not exist, so the log can be opened in it
/// before the vault is (`carevault serve`).
pub fn prepare_data_dir(path: &std::path::Path) -> Result<(), StartupError> {
    datadir::DataDir::new(path).prepare(true)
}

pub fn format_instant(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).unwrap_or_default()
}
