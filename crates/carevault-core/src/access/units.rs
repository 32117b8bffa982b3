//! The organization structure: organizations, locations and departments (the operator's shell).

use super::*;
use crate::access::changes::AccessChange;

impl Vault {
    // ----- organization structure (operator's shell) -----

    /// Adds an organization, location or department (`carevault org add …`).
    pub(crate) async fn add_unit(
        &self,
        kind: &str,
        name: &str,
        organization_id: Option<&str>,
        location_id: Option<&str>,
        time_zone: Option<&str>,
    ) -> Result<String, CoreError> {
        let operator = Actor::system("operator");
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
            return Err(bad("name", "1–120 printable characters"));
        }
        let kind = match kind {
            "organization" => UnitKind::Organization,
            "location" => UnitKind::Location,
            "department" => UnitKind::Department,
            "room" => UnitKind::Room,
            _ => return Err(bad("kind", "organization, location, department or room")),
        };
        let time_zone = match (kind, time_zone) {
            (UnitKind::Location, Some(tz)) => Some(carevault_domain::practice::TimeZoneName::parse("time_zone", tz)?.to_string()),
            (UnitKind::Location, None) => return Err(bad("time_zone", "a location needs its IANA time zone (e.g. America/Chicago)")),
            (_, Some(_)) => return Err(bad("time_zone", "only locations have a time zone")),
            (_, None) => None,
        };
        if kind == UnitKind::Room && location_id.is_none() {
            return Err(bad("location", "a room belongs to a location"));
        }
        if kind != UnitKind::Organization {
            let org = organization_id.ok_or_else(|| bad("organization", "required"))?;
            if self.inner.store.unit(UnitKind::Organization, org).await?.is_none() {
                return Err(CoreError::NotFound { resource: format!("Organization/{org}") });
            }
            if let Some(l) = location_id {
                let loc = self.inner.store.unit(UnitKind::Location, l).await?;
                if loc.and_then(|l| l.organization_id).as_deref() != Some(org) {
                    return Err(CoreError::NotFound { resource: format!("Location/{l} in Organization/{org}") });
                }
            }
        }
        let prefix = match kind {
            UnitKind::Organization => "org",
            UnitKind::Location => "loc",
            UnitKind::Department => "dep",
            UnitKind::Room => "room",
        };
        let id = new_id(prefix);
        let now = self.clock_now();
        let row = UnitRow {
            id: id.clone(),
            organization_id: organization_id.map(str::to_string).filter(|_| kind != UnitKind::Organization),
            location_id: location_id.map(str::to_string).filter(|_| matches!(kind, UnitKind::Department | UnitKind::Room)),
            name: name.to_string(),
            created_at: now,
            time_zone,
        };
        let ev = Draft::new(now, AuditAction::ConfigChange, Outcome::Success).by(&operator).resource(prefix, Some(&id));
        self.inner.writer.write(vec![AccessChange::InsertUnit { kind, row }.into()], vec![ev], None).await?;
        Ok(id)
    }

    /// The organization structure: every organization, location (with its time zone),
    /// department and room.
    pub async fn units(&self) -> Result<Vec<UnitView>, CoreError> {
        let mut out = Vec::new();
        for (kind, name) in [
            (UnitKind::Organization, "organization"),
            (UnitKind::Location, "location"),
            (UnitKind::Department, "department"),
            (UnitKind::Room, "room"),
        ] {
            for u in self.inner.store.units(kind).await? {
                out.push(UnitView {
                    kind: name.to_string(),
                    id: u.id,
                    organization_id: u.organization_id,
                    location_id: u.location_id,
                    name: u.name,
                    time_zone: u.time_zone,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn check_scope(&self, scope: &ScopeCols) -> Result<(), CoreError> {
        if self.inner.store.unit(UnitKind::Organization, &scope.organization_id).await?.is_none() {
            return Err(CoreError::NotFound { resource: format!("Organization/{}", scope.organization_id) });
        }
        if let Some(l) = &scope.location_id {
            let ok =
                self.inner.store.unit(UnitKind::Location, l).await?.and_then(|u| u.organization_id) == Some(scope.organization_id.clone());
            if !ok {
                return Err(CoreError::NotFound { resource: format!("Location/{l}") });
            }
        }
        if let Some(d) = &scope.department_id {
            let ok = self.inner.store.unit(UnitKind::Department, d).await?.and_then(|u| u.organization_id)
                == Some(scope.organization_id.clone());
            if !ok {
                return Err(CoreError::NotFound { resource: format!("Department/{d}") });
            }
        }
        Ok(())
    }
}
