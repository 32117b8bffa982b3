//! Rows and statements of the access model, one file per concern: `units` (organization
//! structure), `roles` (custom roles, scoped role assignments, time-bound grants), `care` (the
//! patient's scope and sensitive flags, care relationships), `break_glass`, `alerts`, `users`
//! (activation, passwords, TOTP, recovery codes, sessions), `passkeys` (and WebAuthn
//! ceremonies), `allergies`. Free text that may hold PHI arrives here sealed.

use sqlx::any::AnyRow;

use crate::dialect::classify;
use crate::{Result, Store};

use crate::rows::get;

macro_rules! exec {
    ($self:ident, $q:expr) => {
        $q.execute(&mut *$self.tx).await.map_err(classify)
    };
}

mod alerts;
mod allergies;
mod break_glass;
mod care;
mod passkeys;
mod roles;
mod units;
mod users;

pub use alerts::AlertRow;
pub use allergies::AllergyRow;
pub use break_glass::BreakGlassRow;
pub use care::{CareRelationshipRow, PatientAccessRow};
pub use passkeys::{CeremonyRow, PasskeyRow};
pub use roles::{AssignmentRow, CustomRoleRow, GrantRow};
pub use units::{UnitKind, UnitRow};

/// Where an assignment or grant applies: an organization, optionally narrowed to one location
/// and/or one department.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeCols {
    pub organization_id: String,
    pub location_id: Option<String>,
    pub department_id: Option<String>,
}

impl ScopeCols {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(ScopeCols {
            organization_id: get(r, "organization_id")?,
            location_id: get(r, "location_id")?,
            department_id: get(r, "department_id")?,
        })
    }
}

impl Store {
    async fn fetch_all<'q>(&self, q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> Result<Vec<AnyRow>> {
        q.fetch_all(&self.read).await.map_err(classify)
    }
}
