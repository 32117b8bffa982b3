//! The permission catalogue, the built-in roles, the purposes of use, the sensitive-record
//! categories and the catalogue of core operations. Which role holds which permission is
//! decided in one place only: `carevault-core`'s `authz` module.

use std::fmt;

macro_rules! catalogue {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $variant:ident => $id:literal, $desc:literal;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($(#[$vm])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable id used in configuration, the API and the audit log.
            pub fn id(self) -> &'static str {
                match self { $($name::$variant => $id,)+ }
            }

            pub fn description(self) -> &'static str {
                match self { $($name::$variant => $desc,)+ }
            }

            pub fn parse(id: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|p| p.id() == id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.id())
            }
        }
    };
}

catalogue! {
    /// A permission: a closed set. An id that is not in this list cannot be granted or checked,
    /// so an unknown permission is denied by construction. Every permission guards at least one
    /// operation (see [`Operation`]); a test keeps it so.
    pub enum Permission {
        PatientRead => "patient.demographics.read", "Read a patient's demographics (name, birth date, contacts, identifiers, address, care team).";
        PatientSearch => "patient.demographics.search", "Find patients by name, birth date, identifier or phone.";
        PatientCreate => "patient.demographics.create", "Register a new patient.";
        PatientUpdate => "patient.demographics.update", "Change a patient's demographics, home location or department.";
        PatientHistoryRead => "patient.history.read", "Read earlier versions of a patient's demographics.";
        PatientFlagsManage => "patient.flags.manage", "Set or clear a patient's sensitive-record flags.";
        CareTeamManage => "patient.care_team.manage", "Assign a patient's provider and add or end care-team memberships.";
        AllergyRead => "clinical.allergy.read", "Read a patient's allergies and intolerances (needs a care relationship).";
        AllergyCreate => "clinical.allergy.create", "Record an allergy or intolerance (needs a care relationship).";
        SensitiveVip => "sensitive.vip.access", "Open records flagged VIP or employee.";
        SensitiveBehavioralHealth => "sensitive.behavioral_health.access", "Open records flagged behavioral health.";
        SensitiveSubstanceUse => "sensitive.substance_use.access", "Open records flagged substance-use disorder (42 CFR Part 2).";
        SensitiveHivSti => "sensitive.hiv_sti.access", "Open records flagged HIV or sexually transmitted infection.";
        SensitiveReproductive => "sensitive.reproductive.access", "Open records flagged reproductive health.";
        BreakGlassUse => "break_glass.use", "Open one patient's record in an emergency without a care relationship, for a limited time; always reviewed.";
        BreakGlassReview => "break_glass.review", "See the break-glass review queue and close reviews with an outcome.";
        UserRead => "user.read", "List staff accounts, their role assignments, the roles and the organization structure.";
        UserCreate => "user.create", "Create staff accounts.";
        UserDeactivate => "user.deactivate", "Deactivate or reactivate staff accounts (ends their sessions at once).";
        UserMfaReset => "user.mfa.reset", "Reset another user's second factors (needs fresh re-authentication).";
        RoleManage => "role.manage", "Create and change custom roles.";
        RoleAssign => "role.assign", "Assign roles to users within a scope, and remove assignments.";
        GrantManage => "grant.manage", "Give, list and revoke time-bound extra permissions.";
        SessionManage => "session.manage", "See and end other users' sessions.";
        DirectoryRead => "directory.read", "Read the practice directory (organizations, locations, rooms, practitioners and their roles) and reference data (consent templates, ICD-10-CM codes).";
        PractitionerManage => "practitioner.manage", "Register practitioners (with their NPI) and the roles they hold at locations.";
        ScheduleManage => "schedule.manage", "Set practitioners' weekly availability at locations, closures (holidays, leave) and appointment types.";
        ScheduleRead => "schedule.read", "See practitioners' free slots and the appointment types (no patient data).";
        AppointmentBook => "appointment.book", "Book an appointment (or a recurring series) for a patient in a free slot, reschedule it, check the patient in, cancel, mark no-show; keep the waitlist and answer its offers.";
        AppointmentRead => "appointment.read", "See appointments, including whose they are.";
        AppointmentOverbook => "appointment.overbook", "Book inside availability even when the time is already taken (overbooking).";
        EncounterManage => "clinical.encounter.manage", "Open an encounter (from an appointment or a walk-in) and finish it (needs a care relationship).";
        EncounterRead => "clinical.encounter.read", "See a patient's encounters (needs a care relationship).";
        NoteWrite => "clinical.note.write", "Write SOAP notes as drafts, sign them, and add signed addenda (needs a care relationship).";
        NoteRead => "clinical.note.read", "Read a patient's notes, addenda and their provenance (needs a care relationship).";
        NoteCosign => "clinical.note.cosign", "Co-sign a signed note that needs a second signature.";
        ConditionWrite => "clinical.condition.write", "Record diagnoses with ICD-10-CM codes (needs a care relationship).";
        ConditionRead => "clinical.condition.read", "Read a patient's diagnoses (needs a care relationship).";
        DocumentUpload => "clinical.document.upload", "Attach documents (PDF, images, text) to a patient's chart (needs a care relationship).";
        DocumentRead => "clinical.document.read", "List and download a patient's documents; each download is audited as an export.";
        ConsentManage => "consent.manage", "Record a patient's signed consent (tablet or portal) and revoke consents.";
        ConsentRead => "consent.read", "See a patient's consents, their PDF, and verify a consent PDF.";
        ConsentTemplateManage => "consent.template.manage", "Publish new versions of consent templates.";
        AuditRead => "audit.read", "Read the audit log (who did what, when, to which record).";
        AuditVerify => "audit.verify", "Verify the integrity of the audit log.";
        AuditExport => "audit.export", "Export audit records as CSV (needs a recent sign-in).";
        AlertPrivacy => "alert.privacy", "See and close privacy alerts (break-glass use, access to flagged records).";
        AlertSecurity => "alert.security", "See and close security alerts (sign-in storms, MFA resets, deactivations).";
        ApprovalDecide => "access.approve", "See and decide (approve or reject) pending accounts, custom roles, role assignments and grants that carry PHI, audit or security permissions; never one's own request or a change to one's own account.";
    }
}

impl Permission {
    /// Whether holding this permission reaches PHI, the audit trail or the security controls.
    /// An account, custom role, role assignment or grant carrying one is a privileged change:
    /// it raises a security alert and, by default, needs a second officer's approval. The
    /// few that do not: reading the directory and staff list, the schedule's set-up, consent
    /// templates.
    pub fn is_privileged(self) -> bool {
        !matches!(
            self,
            Permission::DirectoryRead
                | Permission::UserRead
                | Permission::PractitionerManage
                | Permission::ScheduleManage
                | Permission::ScheduleRead
                | Permission::ConsentTemplateManage
        )
    }
}

catalogue! {
    /// Sensitive-record categories. A flagged patient can be opened only by someone holding the
    /// category's permission (or through break-glass), and every access is marked for review.
    pub enum SensitiveCategory {
        Vip => "vip", "VIP or employee record.";
        BehavioralHealth => "behavioral-health", "Behavioral health.";
        SubstanceUse => "substance-use", "Substance-use disorder records (42 CFR Part 2).";
        HivSti => "hiv-sti", "HIV and sexually transmitted infections.";
        Reproductive => "reproductive", "Reproductive health.";
    }
}

impl SensitiveCategory {
    /// The permission that opens records of this category.
    pub fn permission(self) -> Permission {
        match self {
            SensitiveCategory::Vip => Permission::SensitiveVip,
            SensitiveCategory::BehavioralHealth => Permission::SensitiveBehavioralHealth,
            SensitiveCategory::SubstanceUse => Permission::SensitiveSubstanceUse,
            SensitiveCategory::HivSti => Permission::SensitiveHivSti,
            SensitiveCategory::Reproductive => Permission::SensitiveReproductive,
        }
    }

    /// The HL7 v3 ActCode (information sensitivity policy) shown in `meta.security`.
    pub fn security_label(self) -> (&'static str, &'static str) {
        match self {
            SensitiveCategory::Vip => ("CEL", "celebrity information sensitivity"),
            SensitiveCategory::BehavioralHealth => ("BH", "behavioral health information sensitivity"),
            SensitiveCategory::SubstanceUse => ("SUD", "substance use disorder information sensitivity"),
            SensitiveCategory::HivSti => ("HIV", "HIV/AIDS information sensitivity"),
            SensitiveCategory::Reproductive => ("SEX", "sexuality and reproductive health information sensitivity"),
        }
    }
}

catalogue! {
    /// Why break-glass was used: the fixed list (free text is added to it).
    pub enum BreakGlassReason {
        MedicalEmergency => "medical-emergency", "Medical emergency: the patient needs care now.";
        CoveringProvider => "covering-provider", "Covering for the patient's provider.";
        PatientRequest => "patient-request", "The patient asked, in person, for this clinician's help.";
        Other => "other", "Other (the free text must say why).";
    }
}

catalogue! {
    /// How an officer closes a break-glass review.
    pub enum ReviewOutcome {
        Appropriate => "appropriate", "The access was justified.";
        Inappropriate => "inappropriate", "The access was not justified; sanctions policy applies.";
        Inconclusive => "inconclusive", "Could not be determined; escalated.";
    }
}

catalogue! {
    /// The built-in least-privilege roles. Custom roles are defined at run time from the
    /// permission catalogue.
    pub enum Role {
        FrontDesk => "front_desk", "Registration, scheduling and check-in: demographics, no clinical data.";
        Nurse => "nurse", "Clinical care for patients in the nurse's care relationships.";
        Physician => "physician", "Clinical care for patients in the physician's care relationships; may use break-glass.";
        Biller => "biller", "Billing: demographics needed for claims, no clinical data.";
        PracticeAdmin => "practice_admin", "Accounts, roles and assignments. No patient data by default.";
        PrivacyOfficer => "privacy_officer", "Reviews break-glass use and privacy alerts; manages sensitive flags.";
        SecurityOfficer => "security_officer", "Accounts' security: deactivation, MFA resets, sessions, security alerts.";
        Auditor => "auditor", "Reads and verifies the audit log; nothing else.";
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.id()
    }
}

/// Why data is being accessed (HL7 v3 PurposeOfUse codes). Every access to patient data names
/// one, and the audit record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurposeOfUse {
    /// TREAT: treatment.
    Treatment,
    /// ETREAT: emergency treatment (break-glass, a later step).
    EmergencyTreatment,
    /// HPAYMT: payment.
    Payment,
    /// HOPERAT: healthcare operations (registration, scheduling).
    Operations,
    /// PATRQT: at the patient's request.
    PatientRequest,
    /// HSYSADMIN: system administration (key rotation, maintenance).
    SystemAdministration,
}

impl PurposeOfUse {
    pub const ALL: &'static [PurposeOfUse] = &[
        PurposeOfUse::Treatment,
        PurposeOfUse::EmergencyTreatment,
        PurposeOfUse::Payment,
        PurposeOfUse::Operations,
        PurposeOfUse::PatientRequest,
        PurposeOfUse::SystemAdministration,
    ];

    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::Payment => "HPAYMT",
            PurposeOfUse::Operations => "HOPERAT",
            PurposeOfUse::PatientRequest => "PATRQT",
            PurposeOfUse::SystemAdministration => "HSYSADMIN",
        }
    }

    pub fn parse(s: &str) -> Option<PurposeOfUse> {
        PurposeOfUse::ALL.iter().copied().find(|p| p.code().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for PurposeOfUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What kind of data an operation touches; it decides which checks apply beyond the
/// permission itself (see `docs/security/access-control.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataClass {
    /// A patient's demographics: permission in a scope covering the patient, plus the
    /// sensitive-flag check.
    Demographic,
    /// A patient's clinical data: as demographic, plus a care relationship or break-glass.
    Clinical,
    /// Accounts, roles, audit, alerts: permission in a scope covering the target.
    Administrative,
    /// The actor's own account and sessions: authentication is enough.
    OwnAccount,
}

macro_rules! operations {
    ($($variant:ident => $id:literal, $perm:expr, $class:ident;)+) => {
        /// Every operation of the core service layer. The authorization matrix test has one
        /// row per operation; an operation missing from it fails the test.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation { $($variant,)+ }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$variant,)+];

            pub fn id(self) -> &'static str {
                match self { $(Operation::$variant => $id,)+ }
            }

            /// The permission the operation needs (`None`: the actor's own account).
            pub fn permission(self) -> Option<Permission> {
                match self { $(Operation::$variant => $perm,)+ }
            }

            pub fn class(self) -> DataClass {
                match self { $(Operation::$variant => DataClass::$class,)+ }
            }

            /// Whether the operation concerns one patient's record (and so the sensitive flags).
            pub fn on_patient(self) -> bool {
                matches!(self.class(), DataClass::Demographic | DataClass::Clinical)
            }
        }
    };
}

use Permission as P;

operations! {
    PatientRead => "patient.read", Some(P::PatientRead), Demographic;
    PatientSearch => "patient.search", Some(P::PatientSearch), Demographic;
    PatientCreate => "patient.create", Some(P::PatientCreate), Demographic;
    PatientUpdate => "patient.update", Some(P::PatientUpdate), Demographic;
    PatientPlacement => "patient.placement.set", Some(P::PatientUpdate), Demographic;
    PatientVersionRead => "patient.vread", Some(P::PatientHistoryRead), Demographic;
    PatientHistory => "patient.history", Some(P::PatientHistoryRead), Demographic;
    PatientFlagsSet => "patient.flags.set", Some(P::PatientFlagsManage), Demographic;
    CareTeamList => "patient.care_team.list", Some(P::PatientRead), Demographic;
    CareTeamAdd => "patient.care_team.add", Some(P::CareTeamManage), Demographic;
    CareTeamEnd => "patient.care_team.end", Some(P::CareTeamManage), Demographic;
    AllergyCreate => "allergy.create", Some(P::AllergyCreate), Clinical;
    AllergyRead => "allergy.read", Some(P::AllergyRead), Clinical;
    AllergyList => "allergy.list", Some(P::AllergyRead), Clinical;
    BreakGlassOpen => "break_glass.open", Some(P::BreakGlassUse), Demographic;
    BreakGlassQueue => "break_glass.queue", Some(P::BreakGlassReview), Administrative;
    BreakGlassClose => "break_glass.close", Some(P::BreakGlassReview), Administrative;
    UserList => "user.list", Some(P::UserRead), Administrative;
    UserCreate => "user.create", Some(P::UserCreate), Administrative;
    UserDeactivate => "user.deactivate", Some(P::UserDeactivate), Administrative;
    UserReactivate => "user.reactivate", Some(P::UserDeactivate), Administrative;
    UserMfaReset => "user.mfa.reset", Some(P::UserMfaReset), Administrative;
    RoleList => "role.list", Some(P::UserRead), Administrative;
    RoleCreate => "role.create", Some(P::RoleManage), Administrative;
    RoleUpdate => "role.update", Some(P::RoleManage), Administrative;
    AssignmentAdd => "assignment.add", Some(P::RoleAssign), Administrative;
    AssignmentRemove => "assignment.remove", Some(P::RoleAssign), Administrative;
    GrantAdd => "grant.add", Some(P::GrantManage), Administrative;
    GrantList => "grant.list", Some(P::GrantManage), Administrative;
    GrantRevoke => "grant.revoke", Some(P::GrantManage), Administrative;
    SessionListUser => "session.list_user", Some(P::SessionManage), Administrative;
    SessionEndUser => "session.end_user", Some(P::SessionManage), Administrative;
    DirectoryRead => "directory.read", Some(P::DirectoryRead), Administrative;
    PractitionerCreate => "practitioner.create", Some(P::PractitionerManage), Administrative;
    AvailabilitySet => "schedule.availability.set", Some(P::ScheduleManage), Administrative;
    ClosureAdd => "schedule.closure.add", Some(P::ScheduleManage), Administrative;
    SlotSearch => "schedule.slots", Some(P::ScheduleRead), Administrative;
    AppointmentTypeAdd => "schedule.appointment_type.add", Some(P::ScheduleManage), Administrative;
    AppointmentTypeList => "schedule.appointment_type.list", Some(P::ScheduleRead), Administrative;
    AppointmentBook => "appointment.book", Some(P::AppointmentBook), Demographic;
    AppointmentRead => "appointment.read", Some(P::AppointmentRead), Demographic;
    AppointmentStatus => "appointment.status", Some(P::AppointmentBook), Demographic;
    AppointmentReschedule => "appointment.reschedule", Some(P::AppointmentBook), Demographic;
    AppointmentOverbook => "appointment.overbook", Some(P::AppointmentOverbook), Demographic;
    AppointmentSearch => "appointment.search", Some(P::AppointmentRead), Demographic;
    AppointmentSeriesBook => "appointment.series.book", Some(P::AppointmentBook), Demographic;
    AppointmentSeriesCancel => "appointment.series.cancel", Some(P::AppointmentBook), Demographic;
    WaitlistAdd => "waitlist.add", Some(P::AppointmentBook), Demographic;
    WaitlistList => "waitlist.list", Some(P::AppointmentRead), Demographic;
    WaitlistAnswer => "waitlist.answer", Some(P::AppointmentBook), Demographic;
    EncounterCreate => "encounter.create", Some(P::EncounterManage), Clinical;
    EncounterFinish => "encounter.finish", Some(P::EncounterManage), Clinical;
    EncounterRead => "encounter.read", Some(P::EncounterRead), Clinical;
    EncounterList => "encounter.list", Some(P::EncounterRead), Clinical;
    NoteCreate => "note.create", Some(P::NoteWrite), Clinical;
    NoteUpdate => "note.update", Some(P::NoteWrite), Clinical;
    NoteSign => "note.sign", Some(P::NoteWrite), Clinical;
    NoteAddendum => "note.addendum", Some(P::NoteWrite), Clinical;
    NoteCosign => "note.cosign", Some(P::NoteCosign), Clinical;
    NoteRead => "note.read", Some(P::NoteRead), Clinical;
    NoteList => "note.list", Some(P::NoteRead), Clinical;
    ConditionCreate => "condition.create", Some(P::ConditionWrite), Clinical;
    ConditionList => "condition.list", Some(P::ConditionRead), Clinical;
    DocumentUpload => "document.upload", Some(P::DocumentUpload), Clinical;
    DocumentList => "document.list", Some(P::DocumentRead), Clinical;
    DocumentDownload => "document.download", Some(P::DocumentRead), Clinical;
    ConsentSign => "consent.sign", Some(P::ConsentManage), Demographic;
    ConsentRevoke => "consent.revoke", Some(P::ConsentManage), Demographic;
    ConsentList => "consent.list", Some(P::ConsentRead), Demographic;
    ConsentPdf => "consent.pdf", Some(P::ConsentRead), Demographic;
    ConsentTemplateAdd => "consent.template.add", Some(P::ConsentTemplateManage), Administrative;
    ConsentTemplateList => "consent.template.list", Some(P::DirectoryRead), Administrative;
    CodeSearch => "terminology.icd10.search", Some(P::DirectoryRead), Administrative;
    AuditRead => "audit.read", Some(P::AuditRead), Administrative;
    AuditVerify => "audit.verify", Some(P::AuditVerify), Administrative;
    AuditExport => "audit.export", Some(P::AuditExport), Administrative;
    PrivacyAlerts => "alert.privacy.list", Some(P::AlertPrivacy), Administrative;
    ApprovalList => "approval.list", Some(P::ApprovalDecide), Administrative;
    ApprovalDecide => "approval.decide", Some(P::ApprovalDecide), Administrative;
    SecurityAlerts => "alert.security.list", Some(P::AlertSecurity), Administrative;
    PrivacyAlertClose => "alert.privacy.close", Some(P::AlertPrivacy), Administrative;
    SecurityAlertClose => "alert.security.close", Some(P::AlertSecurity), Administrative;
    OwnSessions => "own.sessions", None, OwnAccount;
    OwnPasswordChange => "own.password.change", None, OwnAccount;
    OwnRecoveryCodes => "own.recovery_codes", None, OwnAccount;
    OwnReauthenticate => "own.reauthenticate", None, OwnAccount;
    OwnPasskeys => "own.passkeys", None, OwnAccount;
}

impl Permission {
    /// The operations this permission opens.
    pub fn operations(self) -> Vec<Operation> {
        let sensitive = self.sensitive_category().is_some();
        Operation::ALL.iter().copied().filter(|o| o.permission() == Some(self) || (sensitive && o.on_patient())).collect()
    }

    /// The sensitive category this permission opens, if it is one of those.
    pub fn sensitive_category(self) -> Option<SensitiveCategory> {
        SensitiveCategory::ALL.iter().copied().find(|c| c.permission() == self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.id()), Some(*p));
            assert!(seen.insert(p.id()));
            assert!(!p.description().is_empty());
        }
        assert_eq!(Permission::parse("patient.everything"), None);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Role::parse("superuser"), None);
        assert_eq!(PurposeOfUse::parse("treat"), Some(PurposeOfUse::Treatment));
        let mut ops = std::collections::HashSet::new();
        for o in Operation::ALL {
            assert!(ops.insert(o.id()), "{} twice", o.id());
        }
    }

    /// No padding: every permission opens at least one operation.
    #[test]
    fn every_permission_guards_something() {
        for p in Permission::ALL {
            assert!(!p.operations().is_empty(), "{p} guards no operation");
        }
    }
}
