//! Custom roles, scoped role assignments and time-bound grants.

use super::{get, ScopeCols};
use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRoleRow {
    pub name: String,
    pub description: String,
    /// Permission ids, space-separated.
    pub permissions: String,
    /// PurposeOfUse codes, space-separated.
    pub purposes: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CustomRoleRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(CustomRoleRow {
            name: get(r, "name")?,
            description: get(r, "description")?,
            permissions: get(r, "permissions")?,
            purposes: get(r, "purposes")?,
            created_by: get(r, "created_by")?,
            created_at: get(r, "created_at")?,
            updated_at: get(r, "updated_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    pub id: String,
    pub user_id: String,
    pub role: String,
    pub scope: ScopeCols,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl AssignmentRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(AssignmentRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            role: get(r, "role")?,
            scope: ScopeCols::from_row(r)?,
            expires_at: get(r, "expires_at")?,
            created_by: get(r, "created_by")?,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Clone)]
pub struct GrantRow {
    pub id: String,
    pub user_id: String,
    pub permission: String,
    pub scope: ScopeCols,
    pub patient_id: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    /// Sealed.
    pub reason: Vec<u8>,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

impl std::fmt::Debug for GrantRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrantRow({}, {}, {})", self.id, self.user_id, self.permission)
    }
}

impl GrantRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(GrantRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            permission: get(r, "permission")?,
            scope: ScopeCols::from_row(r)?,
            patient_id: get(r, "patient_id")?,
            starts_at: get(r, "starts_at")?,
            ends_at: get(r, "ends_at")?,
            reason: get(r, "reason")?,
            created_by: get(r, "created_by")?,
            revoked_at: get(r, "revoked_at")?,
            revoked_by: get(r, "revoked_by")?,
        })
    }
}

impl Store {
    pub async fn custom_roles(&self) -> Result<Vec<CustomRoleRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM custom_roles ORDER BY name")).await?.iter().map(CustomRoleRow::from_row).collect()
    }

    pub async fn custom_role(&self, name: &str) -> Result<Option<CustomRoleRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM custom_roles WHERE name = $1").bind(name))
            .await?
            .first()
            .map(CustomRoleRow::from_row)
            .transpose()
    }

    pub async fn assignments_for_user(&self, user_id: &str) -> Result<Vec<AssignmentRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM role_assignments WHERE user_id = $1 ORDER BY created_at, id").bind(user_id))
            .await?
            .iter()
            .map(AssignmentRow::from_row)
            .collect()
    }

    pub async fn assignments_with_role(&self, role: &str) -> Result<Vec<AssignmentRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM role_assignments WHERE role = $1 ORDER BY created_at, id").bind(role))
            .await?
            .iter()
            .map(AssignmentRow::from_row)
            .collect()
    }

    pub async fn assignment(&self, id: &str) -> Result<Option<AssignmentRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM role_assignments WHERE id = $1").bind(id))
            .await?
            .first()
            .map(AssignmentRow::from_row)
            .transpose()
    }

    pub async fn grants_for_user(&self, user_id: &str) -> Result<Vec<GrantRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM access_grants WHERE user_id = $1 ORDER BY starts_at, id").bind(user_id))
            .await?
            .iter()
            .map(GrantRow::from_row)
            .collect()
    }

    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM access_grants WHERE id = $1").bind(id)).await?.first().map(GrantRow::from_row).transpose()
    }

    /// Grants not yet ended and not revoked, for every user of an organization's scope.
    pub async fn live_grants(&self, organization_id: &str, now: i64) -> Result<Vec<GrantRow>> {
        self.fetch_all(
            sqlx::query(
                "SELECT * FROM access_grants WHERE organization_id = $1 AND revoked_at IS NULL AND ends_at > $2 ORDER BY starts_at, id",
            )
            .bind(organization_id)
            .bind(now),
        )
        .await?
        .iter()
        .map(GrantRow::from_row)
        .collect()
    }
}

impl WriteTx {
    /// Inserts or replaces a custom role.
    pub async fn upsert_custom_role(&mut self, r: &CustomRoleRow) -> Result<()> {
        exec!(self, sqlx::query("DELETE FROM custom_roles WHERE name = $1").bind(r.name.clone()))?;
        exec!(
            self,
            sqlx::query(
                "INSERT INTO custom_roles (name, description, permissions, purposes, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )
            .bind(r.name.clone())
            .bind(r.description.clone())
            .bind(r.permissions.clone())
            .bind(r.purposes.clone())
            .bind(r.created_by.clone())
            .bind(r.created_at)
            .bind(r.updated_at)
        )?;
        Ok(())
    }

    pub async fn insert_assignment(&mut self, a: &AssignmentRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO role_assignments (id, user_id, role, organization_id, location_id, department_id, expires_at, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            )
            .bind(a.id.clone())
            .bind(a.user_id.clone())
            .bind(a.role.clone())
            .bind(a.scope.organization_id.clone())
            .bind(a.scope.location_id.clone())
            .bind(a.scope.department_id.clone())
            .bind(a.expires_at)
            .bind(a.created_by.clone())
            .bind(a.created_at)
        )?;
        Ok(())
    }

    pub async fn delete_assignment(&mut self, id: &str) -> Result<bool> {
        Ok(exec!(self, sqlx::query("DELETE FROM role_assignments WHERE id = $1").bind(id))?.rows_affected() == 1)
    }

    /// Number of unexpired assignments of `role` in `organization_id` held by active accounts.
    pub async fn count_live_assignments(&mut self, role: &str, organization_id: &str, now: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM role_assignments a JOIN users u ON u.id = a.user_id \
             WHERE a.role = $1 AND a.organization_id = $2 AND (a.expires_at IS NULL OR a.expires_at > $3) AND u.active = 1",
        )
        .bind(role)
        .bind(organization_id)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(classify)?;
        get(&row, "n")
    }

    pub async fn insert_grant(&mut self, g: &GrantRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO access_grants (id, user_id, permission, organization_id, location_id, department_id, patient_id, starts_at, ends_at, reason, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )
            .bind(g.id.clone())
            .bind(g.user_id.clone())
            .bind(g.permission.clone())
            .bind(g.scope.organization_id.clone())
            .bind(g.scope.location_id.clone())
            .bind(g.scope.department_id.clone())
            .bind(g.patient_id.clone())
            .bind(g.starts_at)
            .bind(g.ends_at)
            .bind(g.reason.clone())
            .bind(g.created_by.clone())
        )?;
        Ok(())
    }

    /// Revokes a live grant; false if it was already revoked.
    pub async fn revoke_grant(&mut self, id: &str, by: &str, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE access_grants SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(by)
                .bind(id)
        )?;
        Ok(r.rows_affected() == 1)
    }
}
