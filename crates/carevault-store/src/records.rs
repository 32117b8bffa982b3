//! Rows of the chart (`records`): encounters, notes, conditions, documents and consents, each a
//! sealed body with the few plain columns access control and the signing rules need; consent
//! templates; ICD-10-CM codes.

use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

use crate::rows::get;

#[derive(Clone, PartialEq, Eq)]
pub struct RecordRow {
    pub id: String,
    /// encounter, note, addendum, condition, document, consent.
    pub kind: String,
    pub patient_id: String,
    /// The encounter of a note, condition or document; the note of an addendum; the
    /// appointment of an encounter; for a consent, its kind (so whether an active consent of a
    /// kind exists needs no decryption).
    pub parent_id: Option<String>,
    pub status: String,
    pub version: i64,
    pub key_version: i64,
    pub body: Vec<u8>,
    /// Hex SHA-256 of the signed content (notes, addenda, consents, document plaintext).
    pub content_sha256: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for RecordRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordRow({} {} v{} {})", self.kind, self.id, self.version, self.status)
    }
}

impl RecordRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(RecordRow {
            id: get(r, "id")?,
            kind: get(r, "kind")?,
            patient_id: get(r, "patient_id")?,
            parent_id: get(r, "parent_id")?,
            status: get(r, "status")?,
            version: get(r, "version")?,
            key_version: get(r, "key_version")?,
            body: get(r, "body")?,
            content_sha256: get(r, "content_sha256")?,
            created_by: get(r, "created_by")?,
            created_at: get(r, "created_at")?,
            updated_at: get(r, "updated_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentTemplateRow {
    pub kind: String,
    pub version: i64,
    pub title: String,
    pub body: String,
    pub sha256: String,
    pub created_at: i64,
}

impl ConsentTemplateRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(ConsentTemplateRow {
            kind: get(r, "kind")?,
            version: get(r, "version")?,
            title: get(r, "title")?,
            body: get(r, "body")?,
            sha256: get(r, "sha256")?,
            created_at: get(r, "created_at")?,
        })
    }
}

impl Store {
    pub async fn record(&self, id: &str) -> Result<Option<RecordRow>> {
        let row = sqlx::query("SELECT * FROM records WHERE id = $1").bind(id).fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(RecordRow::from_row).transpose()
    }

    /// A patient's records of one kind, oldest first.
    pub async fn patient_records(&self, patient_id: &str, kind: &str) -> Result<Vec<RecordRow>> {
        let rows = sqlx::query("SELECT * FROM records WHERE patient_id = $1 AND kind = $2 ORDER BY created_at, id")
            .bind(patient_id)
            .bind(kind)
            .fetch_all(&self.read)
            .await
            .map_err(classify)?;
        rows.iter().map(RecordRow::from_row).collect()
    }

    /// The draft notes written by `user_id`, oldest first, at most `limit` (the author's tasks).
    pub async fn draft_notes_by(&self, user_id: &str, limit: i64) -> Result<Vec<RecordRow>> {
        let rows = sqlx::query(
            "SELECT * FROM records WHERE kind = 'note' AND status = 'draft' AND created_by = $1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(classify)?;
        rows.iter().map(RecordRow::from_row).collect()
    }

    /// The records whose parent is `parent_id` (a note's addenda, an encounter's notes).
    pub async fn child_records(&self, parent_id: &str) -> Result<Vec<RecordRow>> {
        let rows = sqlx::query("SELECT * FROM records WHERE parent_id = $1 ORDER BY created_at, id")
            .bind(parent_id)
            .fetch_all(&self.read)
            .await
            .map_err(classify)?;
        rows.iter().map(RecordRow::from_row).collect()
    }

    /// Records sealed under a key version older than `target` (key rotation), at most `limit`.
    /// Records in id order after `after` (a page of a full walk).
    pub async fn records_after(&self, after: &str, limit: i64) -> Result<Vec<RecordRow>> {
        let rows = sqlx::query("SELECT * FROM records WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(classify)?;
        rows.iter().map(RecordRow::from_row).collect()
    }

    pub async fn records_below_key(&self, target: i64, limit: i64) -> Result<Vec<RecordRow>> {
        let rows = sqlx::query("SELECT * FROM records WHERE key_version < $1 ORDER BY id LIMIT $2")
            .bind(target)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(classify)?;
        rows.iter().map(RecordRow::from_row).collect()
    }

    pub async fn consent_templates(&self) -> Result<Vec<ConsentTemplateRow>> {
        let rows = sqlx::query("SELECT * FROM consent_templates ORDER BY kind, version").fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(ConsentTemplateRow::from_row).collect()
    }

    /// An ICD-10-CM code (dotless): (description, billable).
    pub async fn icd10_code(&self, code: &str) -> Result<Option<(String, bool)>> {
        let row = sqlx::query("SELECT description, billable FROM icd10_codes WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.read)
            .await
            .map_err(classify)?;
        row.map(|r| Ok((get(&r, "description")?, get::<i64>(&r, "billable")? != 0))).transpose()
    }

    pub async fn icd10_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM icd10_codes").fetch_one(&self.read).await.map_err(classify)?;
        get(&row, "n")
    }

    /// Codes starting with `prefix` (dotless, upper case), or whose description contains every
    /// word of `words` (lower case), at most `limit`, shortest codes first.
    pub async fn icd10_search(&self, prefix: &str, words: &[String], limit: i64) -> Result<Vec<(String, String, bool)>> {
        let mut sql = String::from("SELECT code, description, billable FROM icd10_codes WHERE (code LIKE $1");
        for i in 0..words.len() {
            sql.push_str(if i == 0 { ") OR (" } else { " AND " });
            sql.push_str(&format!("LOWER(description) LIKE ${}", i + 3));
        }
        // Shorter (more general) codes first, then by code: "diabetes" finds E11.9 before E11.21.
        sql.push_str(") ORDER BY LENGTH(code), code LIMIT $2");
        let mut q = sqlx::query(&sql).bind(format!("{prefix}%")).bind(limit);
        for w in words {
            q = q.bind(format!("%{w}%"));
        }
        let rows = q.fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(|r| Ok((get(r, "code")?, get(r, "description")?, get::<i64>(r, "billable")? != 0))).collect()
    }
}

impl WriteTx {
    pub async fn insert_record(&mut self, r: &RecordRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO records (id, kind, patient_id, parent_id, status, version, key_version, body, content_sha256, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.id.clone())
        .bind(r.kind.clone())
        .bind(r.patient_id.clone())
        .bind(r.parent_id.clone())
        .bind(r.status.clone())
        .bind(r.version)
        .bind(r.key_version)
        .bind(r.body.clone())
        .bind(r.content_sha256.clone())
        .bind(r.created_by.clone())
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// Replaces a record's status, body and hash if it is still at `expected_version` with
    /// `expected_status` (optimistic: false when another change came first). The new row's
    /// version must be the next one.
    pub async fn update_record(&mut self, r: &RecordRow, expected_version: i64, expected_status: &str) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE records SET status = $1, version = $2, key_version = $3, body = $4, content_sha256 = $5, updated_at = $6 \
             WHERE id = $7 AND version = $8 AND status = $9",
        )
        .bind(r.status.clone())
        .bind(r.version)
        .bind(r.key_version)
        .bind(r.body.clone())
        .bind(r.content_sha256.clone())
        .bind(r.updated_at)
        .bind(r.id.clone())
        .bind(expected_version)
        .bind(expected_status)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(res.rows_affected() == 1)
    }

    /// Re-seals a record under another key version without changing anything else (rotation).
    pub async fn reseal_record(&mut self, id: &str, version: i64, key_version: i64, body: &[u8]) -> Result<bool> {
        let res = sqlx::query("UPDATE records SET key_version = $1, body = $2 WHERE id = $3 AND version = $4")
            .bind(key_version)
            .bind(body.to_vec())
            .bind(id)
            .bind(version)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn insert_consent_template(&mut self, t: &ConsentTemplateRow) -> Result<()> {
        sqlx::query("INSERT INTO consent_templates (kind, version, title, body, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(t.kind.clone())
            .bind(t.version)
            .bind(t.title.clone())
            .bind(t.body.clone())
            .bind(t.sha256.clone())
            .bind(t.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Inserts or replaces ICD-10-CM codes (code, description, billable) of a release.
    pub async fn upsert_icd10(&mut self, codes: &[(String, String, bool)], release: &str) -> Result<()> {
        for (code, description, billable) in codes {
            sqlx::query("DELETE FROM icd10_codes WHERE code = $1").bind(code.clone()).execute(&mut *self.tx).await.map_err(classify)?;
            sqlx::query("INSERT INTO icd10_codes (code, description, billable, release) VALUES ($1, $2, $3, $4)")
                .bind(code.clone())
                .bind(description.clone())
                .bind(i64::from(*billable))
                .bind(release)
                .execute(&mut *self.tx)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}
