//! Privacy and security alerts.

use super::get;
use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: String,
    pub category: String,
    pub kind: String,
    pub subject_user: Option<String>,
    pub patient_id: Option<String>,
    pub reference: Option<String>,
    pub raised_at: i64,
    pub state: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<i64>,
}

impl AlertRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(AlertRow {
            id: get(r, "id")?,
            category: get(r, "category")?,
            kind: get(r, "kind")?,
            subject_user: get(r, "subject_user")?,
            patient_id: get(r, "patient_id")?,
            reference: get(r, "reference")?,
            raised_at: get(r, "raised_at")?,
            state: get(r, "state")?,
            closed_by: get(r, "closed_by")?,
            closed_at: get(r, "closed_at")?,
        })
    }
}

impl Store {
    pub async fn alerts(&self, category: &str, open_only: bool, limit: i64) -> Result<Vec<AlertRow>> {
        let sql = if open_only {
            "SELECT * FROM alerts WHERE category = $1 AND state = 'open' ORDER BY raised_at, id LIMIT $2"
        } else {
            "SELECT * FROM alerts WHERE category = $1 ORDER BY raised_at, id LIMIT $2"
        };
        self.fetch_all(sqlx::query(sql).bind(category).bind(limit)).await?.iter().map(AlertRow::from_row).collect()
    }

    pub async fn alert(&self, id: &str) -> Result<Option<AlertRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM alerts WHERE id = $1").bind(id)).await?.first().map(AlertRow::from_row).transpose()
    }

    /// Whether an alert of this kind about this subject was raised since `since`.
    pub async fn alert_raised_since(&self, kind: &str, reference: &str, since: i64) -> Result<bool> {
        let rows = self
            .fetch_all(
                sqlx::query("SELECT 1 AS x FROM alerts WHERE kind = $1 AND reference = $2 AND raised_at >= $3 LIMIT 1")
                    .bind(kind)
                    .bind(reference)
                    .bind(since),
            )
            .await?;
        Ok(!rows.is_empty())
    }
}

impl WriteTx {
    pub async fn insert_alert(&mut self, a: &AlertRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO alerts (id, category, kind, subject_user, patient_id, reference, raised_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open')"
            )
            .bind(a.id.clone())
            .bind(a.category.clone())
            .bind(a.kind.clone())
            .bind(a.subject_user.clone())
            .bind(a.patient_id.clone())
            .bind(a.reference.clone())
            .bind(a.raised_at)
        )?;
        Ok(())
    }

    pub async fn close_alert(&mut self, id: &str, category: &str, by: &str, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query(
                "UPDATE alerts SET state = 'closed', closed_by = $1, closed_at = $2 WHERE id = $3 AND category = $4 AND state = 'open'"
            )
            .bind(by)
            .bind(now)
            .bind(id)
            .bind(category)
        )?;
        Ok(r.rows_affected() == 1)
    }
}
