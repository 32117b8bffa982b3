//! The one place that decides who may do what, and for which purposes. Everything not listed
//! is denied.

use carevault_domain::{Permission, PurposeOfUse, Role};

use crate::actor::{Actor, ActorKind};
use crate::error::CoreError;

/// Whether `role` holds `permission` (the role's catalogue).
pub fn allowed(role: Role, permission: Permission) -> bool {
    use Permission::*;
    match role {
        // Practice admin: accounts and settings, no PHI by default.
        Role::Admin => matches!(permission, UserManage | AuditVerify),
        Role::Clinician => matches!(permission, PatientDemographicsRead | PatientDemographicsWrite | PatientSearch | PatientHistoryRead),
        Role::FrontDesk => matches!(permission, PatientDemographicsRead | PatientDemographicsWrite | PatientSearch),
    }
}

/// Purposes of use a role may claim.
pub fn purpose_allowed(role: Role, purpose: PurposeOfUse) -> bool {
    use PurposeOfUse::*;
    match role {
        Role::Admin => matches!(purpose, SystemAdministration),
        Role::Clinician => matches!(purpose, Treatment | Payment | Operations | PatientRequest),
        Role::FrontDesk => matches!(purpose, Operations | Payment | PatientRequest),
    }
}

/// The purpose assumed when a request names none.
pub fn default_purpose(role: Role) -> PurposeOfUse {
    match role {
        Role::Admin => PurposeOfUse::SystemAdministration,
        Role::Clinician => PurposeOfUse::Treatment,
        Role::FrontDesk => PurposeOfUse::Operations,
    }
}

/// Checks the actor's permission and purpose.
pub(crate) fn check(actor: &Actor, permission: Permission, purpose: PurposeOfUse) -> Result<(), CoreError> {
    let ok = match actor.kind {
        ActorKind::System => purpose == PurposeOfUse::SystemAdministration,
        ActorKind::Staff => allowed(actor.role, permission) && purpose_allowed(actor.role, purpose),
    };
    if ok {
        Ok(())
    } else {
        Err(CoreError::Forbidden { permission: permission.id(), purpose: purpose.code() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authorization matrix: every permission × role, written out. A permission added to
    /// the catalogue without a row here fails this test.
    #[test]
    fn matrix() {
        use Permission::*;
        let table: &[(Permission, [bool; 3])] = &[
            //                            admin  clinician front_desk
            (PatientDemographicsRead, [false, true, true]),
            (PatientDemographicsWrite, [false, true, true]),
            (PatientSearch, [false, true, true]),
            (PatientHistoryRead, [false, true, false]),
            (UserManage, [true, false, false]),
            (AuditVerify, [true, false, false]),
        ];
        for p in Permission::ALL {
            let row = table.iter().find(|(q, _)| q == p).unwrap_or_else(|| panic!("{p} missing from the matrix"));
            for (i, role) in [Role::Admin, Role::Clinician, Role::FrontDesk].iter().enumerate() {
                assert_eq!(allowed(*role, *p), row.1[i], "{role} / {p}");
            }
        }
        for r in Role::ALL {
            assert!(purpose_allowed(*r, default_purpose(*r)));
            assert!(!purpose_allowed(*r, PurposeOfUse::EmergencyTreatment), "break-glass is a later step");
        }
    }
}
