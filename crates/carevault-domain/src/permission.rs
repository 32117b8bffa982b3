//! The permission catalogue, roles and purposes of use. Which role holds which permission is
//! decided in one place only: `carevault-core`'s `authz` module.

use std::fmt;

/// A permission: a closed set. An id that is not in this list cannot be granted or checked, so
/// an unknown permission is denied by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    PatientDemographicsRead,
    PatientDemographicsWrite,
    PatientSearch,
    PatientHistoryRead,
    UserManage,
    AuditVerify,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::PatientDemographicsRead,
        Permission::PatientDemographicsWrite,
        Permission::PatientSearch,
        Permission::PatientHistoryRead,
        Permission::UserManage,
        Permission::AuditVerify,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Permission::PatientDemographicsRead => "patient.demographics.read",
            Permission::PatientDemographicsWrite => "patient.demographics.write",
            Permission::PatientSearch => "patient.search",
            Permission::PatientHistoryRead => "patient.history.read",
            Permission::UserManage => "user.manage",
            Permission::AuditVerify => "audit.verify",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Permission::PatientDemographicsRead => "Read a patient's demographics (name, birth date, contacts, identifiers, address)",
            Permission::PatientDemographicsWrite => "Register a patient or change a patient's demographics",
            Permission::PatientSearch => "Find patients by name, birth date, identifier or phone",
            Permission::PatientHistoryRead => "Read earlier versions of a patient's demographics",
            Permission::UserManage => "Create and change staff accounts",
            Permission::AuditVerify => "Verify the integrity of the audit log",
        }
    }

    pub fn parse(id: &str) -> Option<Permission> {
        Permission::ALL.iter().copied().find(|p| p.id() == id)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Staff roles. The full access model (scopes, care relationships) is a later step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Clinician,
    FrontDesk,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Clinician, Role::FrontDesk];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::FrontDesk => "front_desk",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    }
}
