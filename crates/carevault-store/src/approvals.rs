//! Separation of duties: enrollment invitations and the approvals queue.

use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

macro_rules! exec {
    ($self:ident, $q:expr) => {
        $q.execute(&mut *$self.tx).await.map_err(classify)
    };
}

use crate::rows::get;

/// A pending enrollment invitation (the code itself is never stored).
#[derive(Clone)]
pub struct InvitationRow {
    pub user_id: String,
    pub code_hash: Vec<u8>,
    pub expires_at: i64,
    pub created_by: String,
    pub created_at: i64,
}

impl std::fmt::Debug for InvitationRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InvitationRow({})", self.user_id)
    }
}

/// A change waiting for a second officer. `payload` is sealed (its parameters).
#[derive(Clone)]
pub struct ApprovalRow {
    pub id: String,
    /// `user.create`, `role.put`, `assignment.add` or `grant.add`.
    pub kind: String,
    pub organization_id: String,
    /// The account the change is about (created, given a role or a grant), if any.
    pub subject_user: Option<String>,
    /// The requester's audit name (`user:<id>`).
    pub requested_by: String,
    pub requested_at: i64,
    pub expires_at: i64,
    /// `pending`, `approved`, `rejected` (an expired pending request is refused when decided).
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// What is asked, in words and ids (never PHI).
    pub summary: String,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for ApprovalRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApprovalRow({} {} {})", self.id, self.kind, self.state)
    }
}

impl ApprovalRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<ApprovalRow> {
        Ok(ApprovalRow {
            id: get(r, "id")?,
            kind: get(r, "kind")?,
            organization_id: get(r, "organization_id")?,
            subject_user: get(r, "subject_user")?,
            requested_by: get(r, "requested_by")?,
            requested_at: get(r, "requested_at")?,
            expires_at: get(r, "expires_at")?,
            state: get(r, "state")?,
            decided_by: get(r, "decided_by")?,
            decided_at: get(r, "decided_at")?,
            summary: get(r, "summary")?,
            payload: get(r, "payload")?,
        })
    }
}

impl Store {
    pub async fn invitation(&self, user_id: &str) -> Result<Option<InvitationRow>> {
        let row = sqlx::query("SELECT * FROM enrollment_invitations WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await
            .map_err(classify)?;
        row.map(|r| {
            Ok(InvitationRow {
                user_id: get(&r, "user_id")?,
                code_hash: get(&r, "code_hash")?,
                expires_at: get(&r, "expires_at")?,
                created_by: get(&r, "created_by")?,
                created_at: get(&r, "created_at")?,
            })
        })
        .transpose()
    }

    pub async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>> {
        let row = sqlx::query("SELECT * FROM approvals WHERE id = $1").bind(id).fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(ApprovalRow::from_row).transpose()
    }

    /// Requests in a state, oldest first.
    pub async fn approvals(&self, state: &str, limit: i64) -> Result<Vec<ApprovalRow>> {
        sqlx::query("SELECT * FROM approvals WHERE state = $1 ORDER BY requested_at, id LIMIT $2")
            .bind(state)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(classify)?
            .iter()
            .map(ApprovalRow::from_row)
            .collect()
    }

    /// Whether an account still waits for the approval of its creation.
    pub async fn account_pending_approval(&self, user_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM approvals WHERE subject_user = $1 AND kind = 'user.create' AND state = 'pending'")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await
            .map_err(classify)?;
        Ok(row.is_some())
    }
}

impl WriteTx {
    /// Replaces the account's invitation (one at a time).
    pub async fn put_invitation(&mut self, i: &InvitationRow) -> Result<()> {
        exec!(self, sqlx::query("DELETE FROM enrollment_invitations WHERE user_id = $1").bind(i.user_id.clone()))?;
        exec!(
            self,
            sqlx::query(
                "INSERT INTO enrollment_invitations (user_id, code_hash, expires_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5)"
            )
            .bind(i.user_id.clone())
            .bind(i.code_hash.clone())
            .bind(i.expires_at)
            .bind(i.created_by.clone())
            .bind(i.created_at)
        )?;
        Ok(())
    }

    /// Uses up an invitation: true when this call removed the live one with that hash (a
    /// second use, a wrong code or an expired invitation changes nothing).
    pub async fn take_invitation(&mut self, user_id: &str, code_hash: &[u8], now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("DELETE FROM enrollment_invitations WHERE user_id = $1 AND code_hash = $2 AND expires_at > $3")
                .bind(user_id)
                .bind(code_hash.to_vec())
                .bind(now)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_approval(&mut self, a: &ApprovalRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO approvals (id, kind, organization_id, subject_user, requested_by, requested_at, expires_at, state, summary, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)"
            )
            .bind(a.id.clone())
            .bind(a.kind.clone())
            .bind(a.organization_id.clone())
            .bind(a.subject_user.clone())
            .bind(a.requested_by.clone())
            .bind(a.requested_at)
            .bind(a.expires_at)
            .bind(a.summary.clone())
            .bind(a.payload.clone())
        )?;
        Ok(())
    }

    /// Decides a pending request; false when it was no longer pending (decided meanwhile).
    pub async fn decide_approval(&mut self, id: &str, state: &str, by: &str, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE approvals SET state = $1, decided_by = $2, decided_at = $3 WHERE id = $4 AND state = 'pending'")
                .bind(state)
                .bind(by)
                .bind(now)
                .bind(id)
        )?;
        Ok(r.rows_affected() == 1)
    }
}
