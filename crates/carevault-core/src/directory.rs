//! The practice directory: organizations, locations (with time zones), rooms, practitioners
//! (NPI) and their roles. Not PHI, but reading it is still authorized (`directory.read`) and
//! registering practitioners is audited (`practitioner.manage`).

use carevault_domain::practice::Npi;
use carevault_domain::{AuditAction, InputError, Operation, Outcome, Permission, PurposeOfUse};
use carevault_store::{PractitionerRoleRow, PractitionerRow, UnitKind};

use crate::access::UnitView;
use crate::actor::Actor;
use crate::audit::Draft;
use crate::authz::Target;
use crate::error::CoreError;
use crate::schedule::changes::ScheduleChange;
use crate::vault::Vault;

/// A practitioner to register.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PractitionerRequest {
    pub npi: String,
    pub family: String,
    pub given: String,
    pub organization_id: String,
    /// Locations of the organization where the practitioner works (one role each); none: one
    /// organization-wide role.
    #[serde(default)]
    pub location_ids: Vec<String>,
    #[serde(default)]
    pub specialty: Option<String>,
    /// The staff account the practitioner signs in with, if any.
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PractitionerView {
    pub id: String,
    pub npi: String,
    pub family: String,
    pub given: String,
    pub active: bool,
    pub user_id: Option<String>,
    pub roles: Vec<PractitionerRoleView>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PractitionerRoleView {
    pub id: String,
    pub organization_id: String,
    pub location_id: Option<String>,
    pub specialty: Option<String>,
}

impl PractitionerView {
    fn from_rows(p: PractitionerRow, roles: &[PractitionerRoleRow]) -> PractitionerView {
        PractitionerView {
            roles: roles
                .iter()
                .filter(|r| r.practitioner_id == p.id)
                .map(|r| PractitionerRoleView {
                    id: r.id.clone(),
                    organization_id: r.organization_id.clone(),
                    location_id: r.location_id.clone(),
                    specialty: r.specialty.clone(),
                })
                .collect(),
            id: p.id,
            npi: p.npi,
            family: p.family,
            given: p.given,
            active: p.active,
            user_id: p.user_id,
        }
    }

    /// FHIR R4 Practitioner.
    pub fn to_fhir(&self) -> serde_json::Value {
        serde_json::json!({
            "resourceType": "Practitioner",
            "id": self.id,
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": self.npi}],
            "active": self.active,
            "name": [{"family": self.family, "given": self.given.split_whitespace().collect::<Vec<_>>()}],
        })
    }

    /// FHIR R4 PractitionerRole resources, one per role.
    pub fn roles_to_fhir(&self) -> Vec<serde_json::Value> {
        self.roles
            .iter()
            .map(|r| {
                let mut v = serde_json::json!({
                    "resourceType": "PractitionerRole",
                    "id": r.id,
                    "active": self.active,
                    "practitioner": {"reference": format!("Practitioner/{}", self.id)},
                    "organization": {"reference": format!("Organization/{}", r.organization_id)},
                });
                if let Some(l) = &r.location_id {
                    v["location"] = serde_json::json!([{"reference": format!("Location/{l}")}]);
                }
                if let Some(s) = &r.specialty {
                    v["specialty"] = serde_json::json!([{"text": s}]);
                }
                v
            })
            .collect()
    }
}

impl UnitView {
    /// FHIR R4 Organization or Location (rooms are Locations of physical type `ro`, part of
    /// their location; a location's time zone is the standard `timezone` extension).
    pub fn to_fhir(&self) -> serde_json::Value {
        match self.kind.as_str() {
            "organization" => serde_json::json!({"resourceType": "Organization", "id": self.id, "active": true, "name": self.name}),
            kind => {
                let mut v = serde_json::json!({"resourceType": "Location", "id": self.id, "status": "active", "name": self.name});
                if let Some(o) = &self.organization_id {
                    v["managingOrganization"] = serde_json::json!({"reference": format!("Organization/{o}")});
                }
                if let Some(tz) = &self.time_zone {
                    v["extension"] = serde_json::json!([{"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": tz}]);
                }
                let physical = match kind {
                    "room" => Some(("ro", "Room")),
                    "location" => Some(("bu", "Building")),
                    _ => None,
                };
                if let Some((code, display)) = physical {
                    v["physicalType"] = serde_json::json!({"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": code, "display": display}]});
                }
                if let Some(l) = &self.location_id {
                    v["partOf"] = serde_json::json!({"reference": format!("Location/{l}")});
                }
                v
            }
        }
    }
}

fn check_name(path: &str, s: &str) -> Result<String, CoreError> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.chars().count() <= 100
        && t.chars().all(|c| c.is_alphabetic() || matches!(c, ' ' | '\'' | '-' | '.' | '\u{2019}'));
    if ok {
        Ok(t.to_string())
    } else {
        Err(CoreError::Invalid(InputError::value(path, "1–100 letters, spaces, apostrophes, hyphens and periods")))
    }
}

impl Vault {
    fn directory_purpose(actor: &Actor) -> PurposeOfUse {
        if actor.is_system() {
            return PurposeOfUse::SystemAdministration;
        }
        actor.privileges.purposes().first().copied().unwrap_or(PurposeOfUse::Operations)
    }

    /// The directory of the organizations where the actor may read it.
    pub async fn directory(&self, actor: &Actor) -> Result<(Vec<UnitView>, Vec<PractitionerView>), CoreError> {
        let purpose = Self::directory_purpose(actor);
        self.gate(actor, Operation::DirectoryRead, purpose, &Target::Anywhere, ("Directory", None)).await?;
        let orgs = actor.privileges.organizations_with(Permission::DirectoryRead);
        let units: Vec<UnitView> =
            self.units().await?.into_iter().filter(|u| orgs.contains(u.organization_id.as_ref().unwrap_or(&u.id))).collect();
        let roles = self.inner.store.practitioner_roles(None).await?;
        let practitioners = self
            .inner
            .store
            .practitioners()
            .await?
            .into_iter()
            .map(|p| PractitionerView::from_rows(p, &roles))
            .filter(|p| p.roles.iter().any(|r| orgs.contains(&r.organization_id)))
            .collect();
        Ok((units, practitioners))
    }

    /// One practitioner of the actor's directory.
    pub async fn practitioner(&self, actor: &Actor, id: &str) -> Result<PractitionerView, CoreError> {
        let (_, list) = self.directory(actor).await?;
        list.into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| CoreError::NotFound { resource: format!("Practitioner/{}", crate::audit::audit_safe_id(id)) })
    }

    /// One organization, location or room of the actor's directory.
    pub async fn directory_unit(&self, actor: &Actor, resource: &str, id: &str) -> Result<UnitView, CoreError> {
        let (units, _) = self.directory(actor).await?;
        let want_org = resource == "Organization";
        units
            .into_iter()
            .find(|u| u.id == id && (u.kind == "organization") == want_org)
            .ok_or_else(|| CoreError::NotFound { resource: format!("{resource}/{}", crate::audit::audit_safe_id(id)) })
    }

    /// Registers a practitioner with their NPI and roles at the organization's locations.
    pub async fn add_practitioner(&self, actor: &Actor, req: &PractitionerRequest) -> Result<PractitionerView, CoreError> {
        let purpose = Self::directory_purpose(actor);
        let org = req.organization_id.as_str();
        self.gate(actor, Operation::PractitionerCreate, purpose, &Target::Organization(org), ("Practitioner", None)).await?;
        let checked: Result<(Npi, String, String), CoreError> =
            (|| Ok((Npi::parse("npi", &req.npi)?, check_name("family", &req.family)?, check_name("given", &req.given)?)))();
        let refuse = |e: CoreError| async move {
            let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Create, e.outcome()).by(actor).resource("Practitioner", None);
            match self.inner.writer.append(d).await {
                Ok(_) => e,
                Err(w) => w,
            }
        };
        let (npi, family, given) = match checked {
            Ok(v) => v,
            Err(e) => return Err(refuse(e).await),
        };
        let specialty = match req.specialty.as_deref().map(|s| check_name("specialty", s)).transpose() {
            Ok(s) => s,
            Err(e) => return Err(refuse(e).await),
        };
        for l in &req.location_ids {
            let ok = self.inner.store.unit(UnitKind::Location, l).await?.and_then(|u| u.organization_id).as_deref() == Some(org);
            if !ok {
                return Err(refuse(CoreError::NotFound {
                    resource: format!("Location/{} in Organization/{org}", crate::audit::audit_safe_id(l)),
                })
                .await);
            }
        }
        if let Some(u) = &req.user_id {
            let ok = self.inner.store.user_by_id(u).await?.is_some_and(|u| u.organization_id == org);
            if !ok {
                return Err(refuse(CoreError::NotFound { resource: "an account of this organization".into() }).await);
            }
        }
        let now = self.inner.clock.now_micros();
        let id = hex::encode(carevault_crypto::random_bytes::<16>());
        let row = PractitionerRow {
            id: id.clone(),
            user_id: req.user_id.clone(),
            npi: npi.to_string(),
            family,
            given,
            active: true,
            created_at: now,
        };
        let locations: Vec<Option<String>> =
            if req.location_ids.is_empty() { vec![None] } else { req.location_ids.iter().cloned().map(Some).collect() };
        let roles: Vec<PractitionerRoleRow> = locations
            .into_iter()
            .map(|location_id| PractitionerRoleRow {
                id: hex::encode(carevault_crypto::random_bytes::<16>()),
                practitioner_id: id.clone(),
                organization_id: org.to_string(),
                location_id,
                specialty: specialty.clone(),
                created_at: now,
            })
            .collect();
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success).by(actor).resource("Practitioner", Some(&id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Create, Outcome::Conflict).by(actor).resource("Practitioner", None).purpose(purpose);
        self.inner
            .writer
            .write(
                vec![ScheduleChange::InsertPractitioner { row: Box::new(row.clone()), roles: roles.clone() }.into()],
                vec![ev],
                Some(fail),
            )
            .await?;
        Ok(PractitionerView::from_rows(row, &roles))
    }
}
