//! Organizations, locations, departments and rooms.

use sqlx::any::AnyRow;

use super::get;
use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

/// An organization, a location or a department (`parent` is the organization for locations,
/// and the organization for departments too, with `location_id` set when the department sits
/// in one location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub id: String,
    pub organization_id: Option<String>,
    pub location_id: Option<String>,
    pub name: String,
    pub created_at: i64,
    /// Locations only: the IANA time zone.
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Organization,
    Location,
    Department,
    Room,
}

impl UnitKind {
    fn table(self) -> &'static str {
        match self {
            UnitKind::Organization => "organizations",
            UnitKind::Location => "locations",
            UnitKind::Department => "departments",
            UnitKind::Room => "rooms",
        }
    }
}

impl UnitRow {
    fn from_row(kind: UnitKind, r: &AnyRow) -> Result<Self> {
        Ok(UnitRow {
            id: get(r, "id")?,
            organization_id: if kind == UnitKind::Organization { None } else { get(r, "organization_id")? },
            location_id: if matches!(kind, UnitKind::Department | UnitKind::Room) { get(r, "location_id")? } else { None },
            name: get(r, "name")?,
            created_at: get(r, "created_at")?,
            time_zone: if kind == UnitKind::Location { get(r, "time_zone")? } else { None },
        })
    }
}

impl Store {
    pub async fn units(&self, kind: UnitKind) -> Result<Vec<UnitRow>> {
        let sql = format!("SELECT * FROM {} ORDER BY name", kind.table());
        self.fetch_all(sqlx::query(&sql)).await?.iter().map(|r| UnitRow::from_row(kind, r)).collect()
    }

    pub async fn unit(&self, kind: UnitKind, id: &str) -> Result<Option<UnitRow>> {
        let sql = format!("SELECT * FROM {} WHERE id = $1", kind.table());
        self.fetch_all(sqlx::query(&sql).bind(id)).await?.first().map(|r| UnitRow::from_row(kind, r)).transpose()
    }
}

impl WriteTx {
    pub async fn insert_unit(&mut self, kind: UnitKind, u: &UnitRow) -> Result<()> {
        let q = match kind {
            UnitKind::Organization => sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(u.id.clone())
                .bind(u.name.clone())
                .bind(u.created_at),
            UnitKind::Location => {
                sqlx::query("INSERT INTO locations (id, organization_id, name, created_at, time_zone) VALUES ($1, $2, $3, $4, $5)")
                    .bind(u.id.clone())
                    .bind(u.organization_id.clone())
                    .bind(u.name.clone())
                    .bind(u.created_at)
                    .bind(u.time_zone.clone().unwrap_or_else(|| "UTC".into()))
            }
            UnitKind::Room => {
                sqlx::query("INSERT INTO rooms (id, organization_id, location_id, name, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(u.id.clone())
                    .bind(u.organization_id.clone())
                    .bind(u.location_id.clone())
                    .bind(u.name.clone())
                    .bind(u.created_at)
            }
            UnitKind::Department => {
                sqlx::query("INSERT INTO departments (id, organization_id, location_id, name, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(u.id.clone())
                    .bind(u.organization_id.clone())
                    .bind(u.location_id.clone())
                    .bind(u.name.clone())
                    .bind(u.created_at)
            }
        };
        exec!(self, q)?;
        Ok(())
    }
}
