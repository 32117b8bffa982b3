//! The writes of the access model: organization structure, custom roles, assignments, grants, care
//! relationships, placement, flags, break-glass, alerts, account activation: what a job of this
//! feature changes, applied by the audit writer inside its transaction (and the job's savepoint),
//! so each change commits with its audit records or not at all. Each says whether it waits for free
//! space and how a store error maps to a domain error that fails only its job.

use carevault_store::{
    AlertRow, AssignmentRow, BreakGlassRow, CareRelationshipRow, CustomRoleRow, GrantRow, StoreError, UnitKind, UnitRow, WriteTx,
};

use crate::audit::change::{found, Applied, Change, OpFailure};
use crate::error::CoreError;

pub(crate) enum AccessChange {
    InsertUnit {
        kind: UnitKind,
        row: UnitRow,
    },
    UpsertCustomRole(CustomRoleRow),
    InsertAssignment(AssignmentRow),
    DeleteAssignment {
        id: String,
    },
    /// Fails the job if the organization would be left without an active practice admin.
    GuardLastAdmin {
        organization_id: String,
        now: i64,
    },
    InsertGrant(Box<GrantRow>),
    RevokeGrant {
        id: String,
        by: String,
        now: i64,
    },
    SetPlacement {
        patient_id: String,
        location_id: Option<String>,
        department_id: Option<String>,
    },
    ReplaceFlags {
        patient_id: String,
        categories: Vec<String>,
        by: String,
        now: i64,
    },
    UpsertCare(CareRelationshipRow),
    EndCare {
        patient_id: String,
        user_id: String,
        relation: String,
        now: i64,
    },
    InsertBreakGlass(Box<BreakGlassRow>),
    CloseReview {
        id: String,
        by: String,
        now: i64,
        outcome: String,
        note: Vec<u8>,
    },
    InsertAlert(AlertRow),
    CloseAlert {
        id: String,
        category: String,
        by: String,
        now: i64,
    },
    SetUserActive {
        user_id: String,
        active: bool,
        now: i64,
    },
}

impl Change for AccessChange {
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a> {
        Box::pin(async move {
            match self {
                Self::InsertUnit { kind, row } => tx.insert_unit(*kind, row).await.map_err(|e| match e {
                    StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a unit with this name already exists there".into())),
                    other => OpFailure::Store(other),
                }),
                Self::UpsertCustomRole(r) => Ok(tx.upsert_custom_role(r).await?),
                Self::InsertAssignment(a) => Ok(tx.insert_assignment(a).await?),
                Self::DeleteAssignment { id } => found(tx.delete_assignment(id).await?, "assignment"),
                Self::GuardLastAdmin { organization_id, now } => {
                    if tx.count_live_assignments(carevault_domain::Role::PracticeAdmin.id(), organization_id, *now).await? == 0 {
                        Err(OpFailure::Domain(CoreError::Refused {
                            reason: "last-admin",
                            message: "the organization would be left without an active practice admin".into(),
                        }))
                    } else {
                        Ok(())
                    }
                }
                Self::InsertGrant(g) => Ok(tx.insert_grant(g).await?),
                Self::RevokeGrant { id, by, now } => found(tx.revoke_grant(id, by, *now).await?, "active grant"),
                Self::SetPlacement { patient_id, location_id, department_id } => {
                    found(tx.set_patient_placement(patient_id, location_id.as_deref(), department_id.as_deref()).await?, "patient")
                }
                Self::ReplaceFlags { patient_id, categories, by, now } => {
                    Ok(tx.replace_patient_flags(patient_id, categories, by, *now).await?)
                }
                Self::UpsertCare(c) => Ok(tx.upsert_care_relationship(c).await?),
                Self::EndCare { patient_id, user_id, relation, now } => {
                    found(tx.end_care_relationship(patient_id, user_id, relation, *now).await?, "current care relationship")
                }
                Self::InsertBreakGlass(b) => Ok(tx.insert_break_glass(b).await?),
                Self::CloseReview { id, by, now, outcome, note } => {
                    found(tx.close_break_glass_review(id, by, *now, outcome, note).await?, "open review")
                }
                Self::InsertAlert(a) => Ok(tx.insert_alert(a).await?),
                Self::CloseAlert { id, category, by, now } => found(tx.close_alert(id, category, by, *now).await?, "open alert"),
                Self::SetUserActive { user_id, active, now } => {
                    tx.set_user_active(user_id, *active, *now).await?;
                    Ok(())
                }
            }
        })
    }

    fn waits_for_space(&self) -> bool {
        !matches!(self, Self::InsertBreakGlass { .. } | Self::InsertAlert { .. } | Self::SetUserActive { .. })
    }

    /// Accounts, custom roles, assignments and grants. A patient's placement, flags, care team
    /// and break-glass are read on every request, not cached (a new variant counts as
    /// affecting access until listed here).
    fn affects_access(&self) -> bool {
        !matches!(
            self,
            Self::InsertUnit { .. }
                | Self::SetPlacement { .. }
                | Self::ReplaceFlags { .. }
                | Self::UpsertCare(_)
                | Self::EndCare { .. }
                | Self::InsertBreakGlass(_)
                | Self::CloseReview { .. }
                | Self::InsertAlert(_)
                | Self::CloseAlert { .. }
                | Self::GuardLastAdmin { .. }
        )
    }
}
