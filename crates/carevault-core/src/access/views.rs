//! What the access model shows: accounts, assignments, units, roles, grants, sessions, care
//! teams, break-glass reviews and alerts (never secrets).

use super::*;

/// A user account as administrators see it (no secrets).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub organization_id: String,
    pub active: bool,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    pub assignments: Vec<AssignmentView>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AssignmentView {
    pub id: String,
    pub user_id: String,
    pub role: String,
    pub organization_id: String,
    pub location_id: Option<String>,
    pub department_id: Option<String>,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl From<AssignmentRow> for AssignmentView {
    fn from(a: AssignmentRow) -> Self {
        AssignmentView {
            id: a.id,
            user_id: a.user_id,
            role: a.role,
            organization_id: a.scope.organization_id,
            location_id: a.scope.location_id,
            department_id: a.scope.department_id,
            expires_at: a.expires_at,
            created_by: a.created_by,
            created_at: a.created_at,
        }
    }
}

/// A unit of the organization structure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnitView {
    pub kind: String,
    pub id: String,
    pub organization_id: Option<String>,
    pub location_id: Option<String>,
    pub name: String,
    pub time_zone: Option<String>,
}

/// A role (built-in or custom) with its permissions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleView {
    pub name: String,
    pub builtin: bool,
    pub description: String,
    pub permissions: Vec<String>,
    pub purposes: Vec<String>,
}

/// A time-bound grant to create.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub user_id: String,
    pub permission: String,
    pub organization_id: String,
    #[serde(default)]
    pub location_id: Option<String>,
    #[serde(default)]
    pub department_id: Option<String>,
    #[serde(default)]
    pub patient_id: Option<String>,
    /// Unix seconds.
    pub ends_at: i64,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantView {
    pub id: String,
    pub user_id: String,
    pub permission: String,
    pub organization_id: String,
    pub location_id: Option<String>,
    pub department_id: Option<String>,
    pub patient_id: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub active: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub source_ip: Option<String>,
    pub current: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CareTeamMember {
    pub user_id: String,
    pub relation: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub active: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BreakGlassView {
    pub id: String,
    pub user_id: String,
    pub patient_id: String,
    pub reason_code: String,
    /// Present in the review queue only.
    pub reason_text: Option<String>,
    pub opened_at: i64,
    pub expires_at: i64,
    pub review_state: String,
    pub review_outcome: Option<String>,
    pub reviewed_by: Option<String>,
    /// The user's username (review queue only).
    pub username: Option<String>,
}

impl BreakGlassView {
    pub(super) fn from_row(b: &BreakGlassRow, reason_text: Option<String>) -> Self {
        BreakGlassView {
            id: b.id.clone(),
            user_id: b.user_id.clone(),
            patient_id: b.patient_id.clone(),
            reason_code: b.reason_code.clone(),
            reason_text,
            opened_at: b.opened_at,
            expires_at: b.expires_at,
            review_state: b.review_state.clone(),
            review_outcome: b.review_outcome.clone(),
            reviewed_by: b.reviewed_by.clone(),
            username: None,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertView {
    pub id: String,
    pub category: String,
    pub kind: String,
    pub subject_user: Option<String>,
    pub patient_id: Option<String>,
    pub reference: Option<String>,
    pub raised_at: i64,
    pub state: String,
    /// The subject account's username, when it has one.
    pub subject_username: Option<String>,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> Self {
        AlertView {
            id: a.id,
            category: a.category,
            kind: a.kind,
            subject_user: a.subject_user,
            patient_id: a.patient_id,
            reference: a.reference,
            raised_at: a.raised_at,
            state: a.state,
            subject_username: None,
        }
    }
}
