//! Rows and statements of the practice directory: practitioners and their roles.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(r: &'r AnyRow, col: &str) -> Result<T> {
    r.try_get::<T, _>(col).map_err(classify)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerRow {
    pub id: String,
    pub user_id: Option<String>,
    pub npi: String,
    pub family: String,
    pub given: String,
    pub active: bool,
    pub created_at: i64,
}

impl PractitionerRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(PractitionerRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            npi: get(r, "npi")?,
            family: get(r, "family")?,
            given: get(r, "given")?,
            active: get::<i64>(r, "active")? != 0,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerRoleRow {
    pub id: String,
    pub practitioner_id: String,
    pub organization_id: String,
    pub location_id: Option<String>,
    pub specialty: Option<String>,
    pub created_at: i64,
}

impl PractitionerRoleRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(PractitionerRoleRow {
            id: get(r, "id")?,
            practitioner_id: get(r, "practitioner_id")?,
            organization_id: get(r, "organization_id")?,
            location_id: get(r, "location_id")?,
            specialty: get(r, "specialty")?,
            created_at: get(r, "created_at")?,
        })
    }
}

impl Store {
    pub async fn practitioners(&self) -> Result<Vec<PractitionerRow>> {
        let rows = sqlx::query("SELECT * FROM practitioners ORDER BY family, given, id").fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(PractitionerRow::from_row).collect()
    }

    pub async fn practitioner(&self, id: &str) -> Result<Option<PractitionerRow>> {
        let row = sqlx::query("SELECT * FROM practitioners WHERE id = $1").bind(id).fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(PractitionerRow::from_row).transpose()
    }

    pub async fn practitioner_roles(&self, practitioner_id: Option<&str>) -> Result<Vec<PractitionerRoleRow>> {
        let rows = match practitioner_id {
            Some(p) => sqlx::query("SELECT * FROM practitioner_roles WHERE practitioner_id = $1 ORDER BY created_at, id")
                .bind(p)
                .fetch_all(&self.read)
                .await
                .map_err(classify)?,
            None => {
                sqlx::query("SELECT * FROM practitioner_roles ORDER BY created_at, id").fetch_all(&self.read).await.map_err(classify)?
            }
        };
        rows.iter().map(PractitionerRoleRow::from_row).collect()
    }
}

impl WriteTx {
    pub async fn insert_practitioner(&mut self, p: &PractitionerRow, roles: &[PractitionerRoleRow]) -> Result<()> {
        sqlx::query("INSERT INTO practitioners (id, user_id, npi, family, given, active, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(p.id.clone())
            .bind(p.user_id.clone())
            .bind(p.npi.clone())
            .bind(p.family.clone())
            .bind(p.given.clone())
            .bind(i64::from(p.active))
            .bind(p.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        for r in roles {
            sqlx::query(
                "INSERT INTO practitioner_roles (id, practitioner_id, organization_id, location_id, specialty, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(r.id.clone())
            .bind(r.practitioner_id.clone())
            .bind(r.organization_id.clone())
            .bind(r.location_id.clone())
            .bind(r.specialty.clone())
            .bind(r.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        }
        Ok(())
    }
}
