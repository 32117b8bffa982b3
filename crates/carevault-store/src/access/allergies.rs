//! Versions of allergy records (sealed FHIR content).

use super::get;
use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

#[derive(Clone)]
pub struct AllergyRow {
    pub id: String,
    pub version: i64,
    pub patient_id: String,
    pub recorded_at: i64,
    pub key_version: i64,
    /// Sealed FHIR content.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for AllergyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AllergyRow({}/{})", self.id, self.version)
    }
}

impl AllergyRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(AllergyRow {
            id: get(r, "id")?,
            version: get(r, "version")?,
            patient_id: get(r, "patient_id")?,
            recorded_at: get(r, "recorded_at")?,
            key_version: get(r, "key_version")?,
            body: get(r, "body")?,
        })
    }
}

impl Store {
    pub async fn allergy_current(&self, id: &str) -> Result<Option<AllergyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM allergies WHERE id = $1 AND is_current = 1").bind(id))
            .await?
            .first()
            .map(AllergyRow::from_row)
            .transpose()
    }

    /// Allergy versions in (id, version) order after `after` (a page of a full walk).
    pub async fn allergies_after(&self, after: (&str, i64), limit: i64) -> Result<Vec<AllergyRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM allergies WHERE id > $1 OR (id = $1 AND version > $2) ORDER BY id, version LIMIT $3")
                .bind(after.0)
                .bind(after.1)
                .bind(limit),
        )
        .await?
        .iter()
        .map(AllergyRow::from_row)
        .collect()
    }

    /// Allergy versions sealed under a key older than `below` (key rotation).
    pub async fn allergies_below_key(&self, below: i64, limit: i64) -> Result<Vec<AllergyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM allergies WHERE key_version < $1 ORDER BY id, version LIMIT $2").bind(below).bind(limit))
            .await?
            .iter()
            .map(AllergyRow::from_row)
            .collect()
    }

    pub async fn allergies_for_patient(&self, patient_id: &str) -> Result<Vec<AllergyRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM allergies WHERE patient_id = $1 AND is_current = 1 ORDER BY recorded_at, id").bind(patient_id),
        )
        .await?
        .iter()
        .map(AllergyRow::from_row)
        .collect()
    }
}

impl WriteTx {
    /// Replaces the sealed body of one allergy version (key rotation); false if it changed meanwhile.
    pub async fn reseal_allergy(&mut self, a: &AllergyRow, old_key_version: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE allergies SET body = $1, key_version = $2 WHERE id = $3 AND version = $4 AND key_version = $5")
                .bind(a.body.clone())
                .bind(a.key_version)
                .bind(a.id.clone())
                .bind(a.version)
                .bind(old_key_version)
        )?;
        Ok(r.rows_affected() == 1)
    }

    /// Inserts a new version of an allergy record and makes it current.
    pub async fn insert_allergy(&mut self, a: &AllergyRow) -> Result<()> {
        exec!(self, sqlx::query("UPDATE allergies SET is_current = 0 WHERE id = $1").bind(a.id.clone()))?;
        exec!(
            self,
            sqlx::query(
                "INSERT INTO allergies (id, version, patient_id, recorded_at, key_version, body, is_current) VALUES ($1, $2, $3, $4, $5, $6, 1)"
            )
            .bind(a.id.clone())
            .bind(a.version)
            .bind(a.patient_id.clone())
            .bind(a.recorded_at)
            .bind(a.key_version)
            .bind(a.body.clone())
        )?;
        Ok(())
    }
}
