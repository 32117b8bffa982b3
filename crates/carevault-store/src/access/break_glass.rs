//! Break-glass uses and their review.

use super::get;
use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

#[derive(Clone)]
pub struct BreakGlassRow {
    pub id: String,
    pub user_id: String,
    pub patient_id: String,
    pub reason_code: String,
    /// Sealed.
    pub reason_text: Vec<u8>,
    pub opened_at: i64,
    pub expires_at: i64,
    pub review_state: String,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<i64>,
    pub review_outcome: Option<String>,
    /// Sealed.
    pub review_note: Option<Vec<u8>>,
}

impl std::fmt::Debug for BreakGlassRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BreakGlassRow({}, {}, {})", self.id, self.user_id, self.patient_id)
    }
}

impl BreakGlassRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(BreakGlassRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            patient_id: get(r, "patient_id")?,
            reason_code: get(r, "reason_code")?,
            reason_text: get(r, "reason_text")?,
            opened_at: get(r, "opened_at")?,
            expires_at: get(r, "expires_at")?,
            review_state: get(r, "review_state")?,
            reviewed_by: get(r, "reviewed_by")?,
            reviewed_at: get(r, "reviewed_at")?,
            review_outcome: get(r, "review_outcome")?,
            review_note: get(r, "review_note")?,
        })
    }
}

impl Store {
    /// The user's break-glass on this patient that is open at `now`, if any.
    pub async fn active_break_glass(&self, user_id: &str, patient_id: &str, now: i64) -> Result<Option<BreakGlassRow>> {
        self.fetch_all(
            sqlx::query(
                "SELECT * FROM break_glass WHERE user_id = $1 AND patient_id = $2 AND opened_at <= $3 AND expires_at > $3 \
                 ORDER BY expires_at DESC LIMIT 1",
            )
            .bind(user_id)
            .bind(patient_id)
            .bind(now),
        )
        .await?
        .first()
        .map(BreakGlassRow::from_row)
        .transpose()
    }

    pub async fn break_glass(&self, id: &str) -> Result<Option<BreakGlassRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM break_glass WHERE id = $1").bind(id))
            .await?
            .first()
            .map(BreakGlassRow::from_row)
            .transpose()
    }

    /// Break-glass uses in the given review state, oldest first.
    pub async fn break_glass_by_state(&self, state: &str, limit: i64) -> Result<Vec<BreakGlassRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM break_glass WHERE review_state = $1 ORDER BY opened_at, id LIMIT $2").bind(state).bind(limit),
        )
        .await?
        .iter()
        .map(BreakGlassRow::from_row)
        .collect()
    }
}

impl WriteTx {
    pub async fn insert_break_glass(&mut self, b: &BreakGlassRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO break_glass (id, user_id, patient_id, reason_code, reason_text, opened_at, expires_at, review_state) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open')"
            )
            .bind(b.id.clone())
            .bind(b.user_id.clone())
            .bind(b.patient_id.clone())
            .bind(b.reason_code.clone())
            .bind(b.reason_text.clone())
            .bind(b.opened_at)
            .bind(b.expires_at)
        )?;
        Ok(())
    }

    /// Closes an open review; false if it is not open (already closed or unknown).
    pub async fn close_break_glass_review(&mut self, id: &str, by: &str, now: i64, outcome: &str, note: &[u8]) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query(
                "UPDATE break_glass SET review_state = 'closed', reviewed_by = $1, reviewed_at = $2, review_outcome = $3, review_note = $4 \
                 WHERE id = $5 AND review_state = 'open'"
            )
            .bind(by)
            .bind(now)
            .bind(outcome)
            .bind(note.to_vec())
            .bind(id)
        )?;
        Ok(r.rows_affected() == 1)
    }
}
