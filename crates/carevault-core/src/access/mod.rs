//! The access model through the chokepoint: organization structure, roles and scoped
//! assignments, time-bound grants, care relationships, sensitive flags, break-glass with its
//! review queue, alerts, deprovisioning, sessions and step-up. Every operation here is
//! authorized by [`crate::authz`] and audited, like patient data. One file per concern:
//! `privileges` (loading them per request), `gate`, `units`, `roles` (and assignments), `grants`,
//! `users` (accounts and sessions), `care` (care teams, placement, flags), `break_glass`, `alerts`,
//! `audit_view`; `views` holds what they show.

pub(crate) mod changes;

use carevault_domain::{
    AuditAction, BreakGlassReason, InputError, Operation, Outcome, Permission, PurposeOfUse, ReviewOutcome, Role, SensitiveCategory,
};
use carevault_store::{
    AlertRow, AssignmentRow, BreakGlassRow, CareRelationshipRow, CustomRoleRow, GrantRow, ScopeCols, SessionRow, UnitKind, UnitRow, UserRow,
};

use crate::actor::Actor;
use crate::audit::Draft;
use crate::authz::{self, Allowed, Entitlement, PatientFacts, Privileges, Target};
use crate::error::CoreError;
use crate::vault::Vault;

const MAX_REASON_CHARS: usize = 500;
pub(crate) const PRIVACY: &str = "privacy";
pub(crate) const SECURITY: &str = "security";

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(carevault_crypto::random_bytes::<12>()))
}

fn bad(path: &str, message: impl Into<String>) -> CoreError {
    CoreError::Invalid(InputError::value(path, message))
}

/// Free text typed by staff (reasons, notes): trimmed, bounded, no control characters.
fn check_reason(path: &str, text: &str, required: bool) -> Result<String, CoreError> {
    let t = text.trim();
    if t.is_empty() && required {
        return Err(CoreError::Invalid(InputError::new(carevault_domain::IssueCode::Required, Some(path.into()), "a reason is required")));
    }
    if t.chars().count() > MAX_REASON_CHARS {
        return Err(bad(path, format!("at most {MAX_REASON_CHARS} characters")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad(path, "control characters are not allowed"));
    }
    Ok(t.to_string())
}

/// Role names of custom roles: lower-case letters, digits and underscores, not a built-in name.
fn check_role_name(name: &str) -> Result<(), CoreError> {
    let ok = (3..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(bad("name", "3–40 characters: lower-case letters, digits and '_', starting with a letter"));
    }
    if Role::parse(name).is_some() {
        return Err(CoreError::Refused { reason: "builtin-role", message: format!("'{name}' is a built-in role and cannot be changed") });
    }
    Ok(())
}

mod alerts;
mod audit_view;
mod break_glass;
mod care;
mod gate;
mod grants;
mod privileges;
mod roles;
mod units;
mod users;
mod views;

pub use audit_view::*;
pub(crate) use privileges::load_privileges;
pub use views::*;

/// Where an assignment applies, as requested.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeInput {
    pub organization_id: String,
    #[serde(default)]
    pub location_id: Option<String>,
    #[serde(default)]
    pub department_id: Option<String>,
}

impl ScopeInput {
    fn into_cols(self) -> ScopeCols {
        ScopeCols { organization_id: self.organization_id, location_id: self.location_id, department_id: self.department_id }
    }
}

pub(crate) fn alert(
    category: &str,
    kind: &str,
    subject_user: Option<&str>,
    patient_id: Option<&str>,
    reference: Option<&str>,
    now: i64,
) -> AlertRow {
    AlertRow {
        id: new_id("al"),
        category: category.into(),
        kind: kind.into(),
        subject_user: subject_user.map(str::to_string),
        patient_id: patient_id.map(str::to_string),
        reference: reference.map(str::to_string),
        raised_at: now,
        state: "open".into(),
        closed_by: None,
        closed_at: None,
    }
}
