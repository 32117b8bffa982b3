//! The one place that decides who may do what, to which record, for which purpose. A decision
//! takes the actor's privileges (role assignments and time-bound grants, each with a scope), the
//! operation, the purpose of use and what the operation touches. Everything not allowed here
//! is denied.

use carevault_domain::{DataClass, Operation, Permission, PurposeOfUse, Role, SensitiveCategory};
use carevault_store::ScopeCols;

use crate::actor::{Actor, ActorKind};
use crate::error::CoreError;

/// The permissions of a built-in role.
pub fn role_permissions(role: Role) -> &'static [Permission] {
    use Permission::*;
    match role {
        Role::FrontDesk => &[
            ConsentManage,
            ConsentRead,
            PatientRead,
            PatientSearch,
            PatientCreate,
            PatientUpdate,
            CareTeamManage,
            DirectoryRead,
            ScheduleManage,
            ScheduleRead,
            AppointmentBook,
            AppointmentRead,
        ],
        Role::Nurse => &[
            EncounterManage,
            EncounterRead,
            NoteWrite,
            NoteRead,
            ConditionRead,
            DocumentUpload,
            DocumentRead,
            ConsentManage,
            ConsentRead,
            PatientRead,
            PatientSearch,
            PatientUpdate,
            PatientHistoryRead,
            AllergyRead,
            AllergyCreate,
            SensitiveHivSti,
            SensitiveReproductive,
            BreakGlassUse,
            DirectoryRead,
            ScheduleRead,
            AppointmentBook,
            AppointmentRead,
        ],
        Role::Physician => &[
            EncounterManage,
            EncounterRead,
            NoteWrite,
            NoteRead,
            NoteCosign,
            ConditionWrite,
            ConditionRead,
            DocumentUpload,
            DocumentRead,
            ConsentManage,
            ConsentRead,
            PatientRead,
            PatientSearch,
            PatientCreate,
            PatientUpdate,
            PatientHistoryRead,
            PatientFlagsManage,
            CareTeamManage,
            AllergyRead,
            AllergyCreate,
            SensitiveBehavioralHealth,
            SensitiveHivSti,
            SensitiveReproductive,
            BreakGlassUse,
            DirectoryRead,
            ScheduleRead,
            AppointmentBook,
            AppointmentRead,
            AppointmentOverbook,
        ],
        Role::Biller => &[PatientRead, PatientSearch, DirectoryRead, AppointmentRead],
        Role::PracticeAdmin => &[
            ConsentTemplateManage,
            UserRead,
            UserCreate,
            UserDeactivate,
            UserMfaReset,
            RoleManage,
            RoleAssign,
            GrantManage,
            SessionManage,
            DirectoryRead,
            PractitionerManage,
            ScheduleManage,
            ScheduleRead,
        ],
        Role::PrivacyOfficer => &[
            ConsentRead,
            ConsentTemplateManage,
            PatientRead,
            PatientSearch,
            PatientFlagsManage,
            SensitiveVip,
            BreakGlassReview,
            AuditRead,
            AuditExport,
            AlertPrivacy,
            ApprovalDecide,
            UserRead,
            DirectoryRead,
        ],
        Role::SecurityOfficer => {
            &[UserRead, UserDeactivate, UserMfaReset, SessionManage, AuditRead, AuditVerify, AlertSecurity, ApprovalDecide, DirectoryRead]
        }
        Role::Auditor => &[AuditRead, AuditVerify, AuditExport],
    }
}

/// The purposes of use a built-in role may claim. ETREAT (emergency) is never listed: it comes
/// only with an open break-glass.
pub fn role_purposes(role: Role) -> &'static [PurposeOfUse] {
    use PurposeOfUse::*;
    match role {
        Role::FrontDesk => &[Operations, Payment, PatientRequest],
        Role::Nurse => &[Treatment, Operations, PatientRequest],
        Role::Physician => &[Treatment, Payment, Operations, PatientRequest],
        Role::Biller => &[Payment, Operations],
        Role::PracticeAdmin => &[SystemAdministration, Operations],
        Role::PrivacyOfficer => &[Operations, PatientRequest, SystemAdministration],
        Role::SecurityOfficer => &[SystemAdministration],
        Role::Auditor => &[SystemAdministration, Operations],
    }
}

/// One source of privileges: a role assignment or a grant, with where it applies.
#[derive(Debug, Clone)]
pub(crate) struct Entitlement {
    pub permissions: Vec<Permission>,
    pub purposes: Vec<PurposeOfUse>,
    pub scope: ScopeCols,
    /// A grant narrowed to one patient.
    pub patient: Option<String>,
    /// `role:<name>@<assignment id>` or `grant:<id>`.
    pub source: String,
}

impl Entitlement {
    fn holds(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }

    /// Whether this entitlement applies to a patient placed at `scope`.
    fn covers_patient(&self, patient_id: &str, scope: &ScopeCols) -> bool {
        self.scope.organization_id == scope.organization_id
            && self.scope.location_id.as_ref().is_none_or(|l| scope.location_id.as_ref() == Some(l))
            && self.scope.department_id.as_ref().is_none_or(|d| scope.department_id.as_ref() == Some(d))
            && self.patient.as_ref().is_none_or(|p| p == patient_id)
    }

    /// Administrative work needs an organization-wide entitlement.
    fn covers_organization(&self, org: &str) -> bool {
        self.scope.organization_id == org
            && self.scope.location_id.is_none()
            && self.scope.department_id.is_none()
            && self.patient.is_none()
    }
}

/// Everything an actor may currently do: loaded fresh with every request, so a revoked role or
/// grant stops working at once.
#[derive(Debug, Clone, Default)]
pub struct Privileges {
    pub(crate) entitlements: Vec<Entitlement>,
}

impl Privileges {
    /// Every permission held anywhere.
    pub fn permissions(&self) -> Vec<Permission> {
        let mut v: Vec<Permission> = self.entitlements.iter().flat_map(|e| e.permissions.iter().copied()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn holds(&self, p: Permission) -> bool {
        self.entitlements.iter().any(|e| e.holds(p))
    }

    /// Where the privileges come from: `role:<name>@<assignment>` and `grant:<id>`.
    pub fn sources(&self) -> Vec<String> {
        self.entitlements.iter().map(|e| e.source.clone()).collect()
    }

    /// Purposes the actor may claim somewhere.
    pub fn purposes(&self) -> Vec<PurposeOfUse> {
        let mut v: Vec<PurposeOfUse> = Vec::new();
        for p in self.entitlements.iter().flat_map(|e| e.purposes.iter().copied()) {
            if !v.contains(&p) {
                v.push(p);
            }
        }
        v
    }

    /// The organizations in which the actor holds `p` (administrative scope).
    pub(crate) fn organizations_with(&self, p: Permission) -> Vec<String> {
        let mut v: Vec<String> =
            self.entitlements.iter().filter(|e| e.holds(p) && e.patient.is_none()).map(|e| e.scope.organization_id.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The purpose assumed when a request names none: treatment for those who treat, then
/// operations, payment, administration.
pub fn default_purpose(privileges: &Privileges) -> PurposeOfUse {
    let have = privileges.purposes();
    [PurposeOfUse::Treatment, PurposeOfUse::Operations, PurposeOfUse::Payment, PurposeOfUse::SystemAdministration]
        .into_iter()
        .find(|p| have.contains(p))
        .unwrap_or(PurposeOfUse::Operations)
}

/// What the access decision needs to know about one patient.
#[derive(Debug, Clone)]
pub(crate) struct PatientFacts {
    pub id: String,
    pub scope: ScopeCols,
    pub flags: Vec<SensitiveCategory>,
    /// The actor has a care relationship with the patient now.
    pub relationship: bool,
    /// The actor has an open break-glass on the patient now.
    pub break_glass: bool,
}

/// What an operation touches.
pub(crate) enum Target<'a> {
    /// Not one record (search, queues): results are filtered afterwards.
    Anywhere,
    Patient(&'a PatientFacts),
    /// An account, role assignment or alert of this organization.
    Organization(&'a str),
}

/// Why access was refused. The code is stable: it appears in errors and in the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    NoPermission,
    PurposeNotAllowed,
    OutOfScope,
    SensitiveRecord,
    NoCareRelationship,
}

impl DenyReason {
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::NoPermission => "no-permission",
            DenyReason::PurposeNotAllowed => "purpose-not-allowed",
            DenyReason::OutOfScope => "out-of-scope",
            DenyReason::SensitiveRecord => "sensitive-record",
            DenyReason::NoCareRelationship => "no-care-relationship",
        }
    }
}

/// An allowed access, with the marks its audit record carries for review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Allowed {
    pub marks: Vec<String>,
    pub via_break_glass: bool,
}

impl Allowed {
    pub(crate) fn review_flags(&self) -> Option<String> {
        (!self.marks.is_empty()).then(|| self.marks.join(" "))
    }
}

/// The decision. Pure: every fact it needs is in its arguments.
pub(crate) fn decide(privileges: &Privileges, op: Operation, purpose: PurposeOfUse, target: &Target<'_>) -> Result<Allowed, DenyReason> {
    let Some(permission) = op.permission() else {
        return Ok(Allowed::default());
    };
    let holders: Vec<&Entitlement> = privileges.entitlements.iter().filter(|e| e.holds(permission)).collect();
    if holders.is_empty() {
        return Err(DenyReason::NoPermission);
    }
    let purpose_ok = |set: &[&Entitlement]| set.iter().any(|e| e.purposes.contains(&purpose));
    match target {
        Target::Anywhere => {
            // ETREAT is decided per patient (it needs an open break-glass there).
            if purpose == PurposeOfUse::EmergencyTreatment || purpose_ok(&holders) {
                Ok(Allowed::default())
            } else {
                Err(DenyReason::PurposeNotAllowed)
            }
        }
        Target::Organization(org) => {
            let covering: Vec<&Entitlement> = holders.iter().copied().filter(|e| e.covers_organization(org)).collect();
            if covering.is_empty() {
                Err(DenyReason::OutOfScope)
            } else if purpose_ok(&covering) {
                Ok(Allowed::default())
            } else {
                Err(DenyReason::PurposeNotAllowed)
            }
        }
        Target::Patient(f) => decide_patient(privileges, op, purpose, &holders, f),
    }
}

fn decide_patient(
    privileges: &Privileges,
    op: Operation,
    purpose: PurposeOfUse,
    holders: &[&Entitlement],
    f: &PatientFacts,
) -> Result<Allowed, DenyReason> {
    let same_org: Vec<&Entitlement> = holders.iter().copied().filter(|e| e.scope.organization_id == f.scope.organization_id).collect();
    if op == Operation::BreakGlassOpen {
        // Break-glass itself needs the permission in the patient's organization, nothing more:
        // it exists for the patient outside the user's usual scope and relationships.
        return if same_org.is_empty() {
            Err(DenyReason::OutOfScope)
        } else {
            Ok(Allowed { marks: vec!["break-glass".into()], via_break_glass: true })
        };
    }
    let mut via_break_glass = false;
    let mut covering: Vec<&Entitlement> = holders.iter().copied().filter(|e| e.covers_patient(&f.id, &f.scope)).collect();
    if covering.is_empty() {
        // An open break-glass widens location and department scope, never the organization.
        if f.break_glass && !same_org.is_empty() {
            via_break_glass = true;
            covering = same_org;
        } else {
            return Err(DenyReason::OutOfScope);
        }
    }
    if purpose == PurposeOfUse::EmergencyTreatment {
        if !f.break_glass {
            return Err(DenyReason::PurposeNotAllowed);
        }
        via_break_glass = true;
    } else if !covering.iter().any(|e| e.purposes.contains(&purpose)) {
        return Err(DenyReason::PurposeNotAllowed);
    }
    let mut marks = Vec::new();
    for flag in &f.flags {
        marks.push(format!("sensitive:{}", flag.id()));
        let opens = privileges.entitlements.iter().any(|e| e.holds(flag.permission()) && e.covers_patient(&f.id, &f.scope));
        if !opens {
            if f.break_glass {
                via_break_glass = true;
            } else {
                return Err(DenyReason::SensitiveRecord);
            }
        }
    }
    if op.class() == DataClass::Clinical && !f.relationship {
        if f.break_glass {
            via_break_glass = true;
        } else {
            return Err(DenyReason::NoCareRelationship);
        }
    }
    if via_break_glass {
        marks.insert(0, "break-glass".into());
    }
    Ok(Allowed { marks, via_break_glass })
}

/// Checks the actor (staff or system) for an operation on a target.
pub(crate) fn check(actor: &Actor, op: Operation, purpose: PurposeOfUse, target: &Target<'_>) -> Result<Allowed, CoreError> {
    match actor.kind {
        ActorKind::System if purpose == PurposeOfUse::SystemAdministration => Ok(Allowed::default()),
        ActorKind::System => Err(CoreError::Forbidden { operation: op.id(), reason: DenyReason::PurposeNotAllowed.code() }),
        ActorKind::Staff => {
            decide(&actor.privileges, op, purpose, target).map_err(|r| CoreError::Forbidden { operation: op.id(), reason: r.code() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(role: Role, org: &str, loc: Option<&str>) -> Entitlement {
        Entitlement {
            permissions: role_permissions(role).to_vec(),
            purposes: role_purposes(role).to_vec(),
            scope: ScopeCols { organization_id: org.into(), location_id: loc.map(Into::into), department_id: None },
            patient: None,
            source: format!("role:{role}"),
        }
    }

    fn facts(org: &str, loc: Option<&str>, flags: &[SensitiveCategory], rel: bool, bg: bool) -> PatientFacts {
        PatientFacts {
            id: "p1".into(),
            scope: ScopeCols { organization_id: org.into(), location_id: loc.map(Into::into), department_id: None },
            flags: flags.to_vec(),
            relationship: rel,
            break_glass: bg,
        }
    }

    #[test]
    fn every_role_has_a_purpose_and_every_permission_a_holder_or_a_grant_path() {
        for r in Role::ALL {
            assert!(!role_purposes(*r).is_empty());
            assert!(!role_purposes(*r).contains(&PurposeOfUse::EmergencyTreatment));
        }
        // The practice admin holds no permission that opens patient data.
        for p in role_permissions(Role::PracticeAdmin) {
            assert!(p.operations().iter().all(|o| !o.on_patient()), "{p}");
        }
    }

    #[test]
    fn scope_relationship_flags_and_break_glass() {
        use SensitiveCategory::*;
        let doc = Privileges { entitlements: vec![ent(Role::Physician, "a", Some("north"))] };
        let t = PurposeOfUse::Treatment;
        let read = Operation::PatientRead;
        let clin = Operation::AllergyRead;
        let ok = |op, f: &PatientFacts| decide(&doc, op, t, &Target::Patient(f));
        assert!(ok(read, &facts("a", Some("north"), &[], false, false)).is_ok());
        assert_eq!(ok(read, &facts("a", Some("south"), &[], false, false)), Err(DenyReason::OutOfScope));
        assert_eq!(ok(read, &facts("b", Some("north"), &[], true, true)), Err(DenyReason::OutOfScope));
        assert_eq!(ok(clin, &facts("a", Some("north"), &[], false, false)), Err(DenyReason::NoCareRelationship));
        assert!(ok(clin, &facts("a", Some("north"), &[], true, false)).is_ok());
        assert_eq!(ok(read, &facts("a", Some("north"), &[Vip], true, false)), Err(DenyReason::SensitiveRecord));
        let marked = ok(read, &facts("a", Some("north"), &[BehavioralHealth], true, false));
        assert_eq!(marked.map(|a| a.marks), Ok(vec!["sensitive:behavioral-health".to_string()]));
        let bg = ok(clin, &facts("a", Some("south"), &[Vip], false, true));
        assert_eq!(bg.map(|a| a.marks), Ok(vec!["break-glass".to_string(), "sensitive:vip".to_string()]));
        assert_eq!(
            decide(&doc, read, PurposeOfUse::EmergencyTreatment, &Target::Patient(&facts("a", Some("north"), &[], true, false))),
            Err(DenyReason::PurposeNotAllowed)
        );
        assert_eq!(decide(&doc, read, PurposeOfUse::SystemAdministration, &Target::Anywhere), Err(DenyReason::PurposeNotAllowed));
        assert_eq!(
            decide(&doc, Operation::UserList, PurposeOfUse::SystemAdministration, &Target::Organization("a")),
            Err(DenyReason::NoPermission)
        );
    }
}
