//! The write transaction. Core opens one per group commit; each statement here is the only SQL
//! that changes data.
//!
//! The transaction is driven with plain `BEGIN`/`COMMIT` on a connection taken from the write
//! pool, not with sqlx's transaction manager: after a failed `COMMIT` (a full disk, an I/O
//! error, a lost PostgreSQL backend) the engine may or may not have rolled back on its own, and
//! sqlx's bookkeeping of the nesting depth then drifts from the engine's (later "commits" became
//! `RELEASE SAVEPOINT` inside a transaction that never ended, and were acknowledged while
//! nothing reached the disk). So a transaction that did not commit cleanly never goes back to
//! the pool: its connection is closed, which rolls back whatever the engine still holds, and
//! the next transaction starts on a fresh connection.

use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, Row};

use crate::dialect::{classify, Backend};
use crate::rows::*;

/// Rows per multi-row INSERT of audit records (17 parameters each: far below either engine's
/// limit on parameters).
const AUDIT_ROWS_PER_STATEMENT: usize = 128;

/// Appends `rows` groups of `cols` numbered placeholders: `($1, $2), ($3, $4)`.
fn placeholders(sql: &mut String, rows: usize, cols: usize) {
    use std::fmt::Write as _;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            let _ = write!(sql, "{}${}", if c == 0 { "" } else { ", " }, r * cols + c + 1);
        }
        sql.push(')');
    }
}
use crate::{Result, StoreError};

pub struct WriteTx {
    pub(crate) tx: PoolConnection<Any>,
    /// True until `COMMIT` or `ROLLBACK` succeeded; a transaction dropped while open closes its
    /// connection instead of returning it to the pool.
    open: bool,
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            self.tx.close_on_drop();
        }
    }
}

macro_rules! exec {
    ($self:ident, $q:expr) => {
        $q.execute(&mut *$self.tx).await.map_err(classify)
    };
}

impl WriteTx {
    /// Takes the write connection and starts a transaction (on SQLite `BEGIN IMMEDIATE`: the
    /// write lock is taken now, waiting up to the busy timeout for another process).
    pub(crate) async fn begin(pool: &AnyPool, backend: Backend) -> Result<WriteTx> {
        let conn = pool.acquire().await.map_err(classify)?;
        let mut tx = WriteTx { tx: conn, open: true };
        (&mut *tx.tx).execute(crate::dialect::begin_statement(backend)).await.map_err(classify)?;
        Ok(tx)
    }

    /// Commits. On any error nothing of the transaction may be taken as durable; the connection
    /// is closed (see the module documentation).
    pub async fn commit(mut self) -> Result<()> {
        (&mut *self.tx).execute("COMMIT").await.map_err(classify)?;
        self.open = false;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<()> {
        (&mut *self.tx).execute("ROLLBACK").await.map_err(classify)?;
        self.open = false;
        Ok(())
    }

    /// Takes the audit-chain lock (a row lock on PostgreSQL, the write lock on SQLite) and
    /// returns the chain head. Must be the first statement of the transaction.
    pub async fn lock_audit_head(&mut self) -> Result<HeadRow> {
        // One statement: the write that takes the lock returns the head it locked.
        let row: Option<AnyRow> =
            sqlx::query("UPDATE audit_head SET lock_counter = lock_counter + 1 WHERE id = 1 RETURNING seq, hash, signature, tree_frontier")
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(classify)?;
        // The row is made by the first migration; without it the chain cannot be extended.
        let row = row.ok_or_else(|| StoreError::Database("the audit chain head row is missing".into()))?;
        HeadRow::from_row(&row)
    }

    pub async fn set_audit_head(&mut self, seq: i64, hash: &[u8], signature: &[u8], tree_frontier: &[u8]) -> Result<()> {
        exec!(
            self,
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, signature = $3, tree_frontier = $4 WHERE id = 1")
                .bind(seq)
                .bind(hash.to_vec())
                .bind(signature.to_vec())
                .bind(tree_frontier.to_vec())
        )?;
        Ok(())
    }

    /// Stores the root of a complete block of the audit Merkle tree (replacing a stale one when
    /// the tree is rebuilt).
    pub async fn put_tree_block(&mut self, idx: i64, hash: &[u8]) -> Result<()> {
        exec!(
            self,
            sqlx::query("INSERT INTO audit_tree_blocks (idx, hash) VALUES ($1, $2) ON CONFLICT (idx) DO UPDATE SET hash = excluded.hash")
                .bind(idx)
                .bind(hash.to_vec())
        )?;
        Ok(())
    }

    /// Audit events with `seq > after`, ascending, at most `limit`, read inside this
    /// transaction (rebuilding the tree under the chain lock).
    pub async fn audit_events(&mut self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(classify)?;
        rows.iter().map(AuditRow::from_row).collect()
    }

    /// Appends audit records, many to a statement (a batch of the group commit is one or a few
    /// statements, not one per record), with the index of the patients each disclosed.
    pub async fn insert_audits(&mut self, rows: &[AuditRow]) -> Result<()> {
        const COLUMNS: usize = 17;
        for chunk in rows.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let mut sql = String::with_capacity(300 + chunk.len() * 80);
            sql.push_str(
                "INSERT INTO audit_events (seq, event_id, at, actor, session, source_ip, action, outcome, resource_type, resource_id, patient_id, purpose, details, prev_hash, hash, review_flags, disclosed) VALUES ",
            );
            placeholders(&mut sql, chunk.len(), COLUMNS);
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.seq)
                    .bind(e.event_id.clone())
                    .bind(e.at)
                    .bind(e.actor.clone())
                    .bind(e.session.clone())
                    .bind(e.source_ip.clone())
                    .bind(e.action.clone())
                    .bind(e.outcome.clone())
                    .bind(e.resource_type.clone())
                    .bind(e.resource_id.clone())
                    .bind(e.patient_id.clone())
                    .bind(e.purpose.clone())
                    .bind(e.details.clone())
                    .bind(e.prev_hash.clone())
                    .bind(e.hash.clone())
                    .bind(e.review_flags.clone())
                    .bind(e.disclosed.clone());
            }
            exec!(self, q)?;
        }
        // The index of who saw whom: one row per patient a record disclosed, in the same
        // transaction as the record.
        let disclosed: Vec<(i64, String)> = rows.iter().flat_map(|e| e.disclosed_ids().into_iter().map(move |p| (e.seq, p))).collect();
        for chunk in disclosed.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let mut sql = String::from("INSERT INTO audit_disclosures (seq, patient_id) VALUES ");
            placeholders(&mut sql, chunk.len(), 2);
            sql.push_str(" ON CONFLICT (seq, patient_id) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for (seq, pid) in chunk {
                q = q.bind(*seq).bind(pid.as_str());
            }
            exec!(self, q)?;
        }
        Ok(())
    }

    /// Inserts a checkpoint; false if one exists for this sequence number already. A checkpoint
    /// written before tree heads existed gets this one's tree head.
    pub async fn insert_checkpoint(&mut self, c: &CheckpointRow) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query(
                "INSERT INTO audit_checkpoints (seq, hash, at, public_key, signature, root_hash, tree_signature) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO UPDATE SET root_hash = excluded.root_hash, \
                 tree_signature = excluded.tree_signature WHERE audit_checkpoints.root_hash IS NULL"
            )
            .bind(c.seq)
            .bind(c.hash.clone())
            .bind(c.at)
            .bind(c.public_key.clone())
            .bind(c.signature.clone())
            .bind(c.root_hash.clone())
            .bind(c.tree_signature.clone())
        )?;
        Ok(r.rows_affected() == 1)
    }

    /// Savepoints give each job of a group commit its own all-or-nothing scope.
    /// Moves the access generation on (see [`crate::Store::access_generation`]); in the transaction of
    /// the change, so no reader sees the change under the old generation.
    pub async fn bump_access_generation(&mut self) -> Result<()> {
        let r = exec!(self, sqlx::query("UPDATE access_generation SET n = n + 1 WHERE id = 1"))?;
        // A change no cache would notice is not committed (the batch fails).
        if r.rows_affected() != 1 {
            return Err(StoreError::Database("the access generation row is missing".into()));
        }
        Ok(())
    }

    pub async fn savepoint(&mut self) -> Result<()> {
        (&mut *self.tx).execute("SAVEPOINT cv_job").await.map_err(classify)?;
        Ok(())
    }

    pub async fn release_savepoint(&mut self) -> Result<()> {
        (&mut *self.tx).execute("RELEASE SAVEPOINT cv_job").await.map_err(classify)?;
        Ok(())
    }

    pub async fn rollback_to_savepoint(&mut self) -> Result<()> {
        (&mut *self.tx).execute("ROLLBACK TO SAVEPOINT cv_job").await.map_err(classify)?;
        (&mut *self.tx).execute("RELEASE SAVEPOINT cv_job").await.map_err(classify)?;
        Ok(())
    }

    pub async fn meta(&mut self, key: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT value FROM store_meta WHERE key = $1").bind(key).fetch_optional(&mut *self.tx).await.map_err(classify)?;
        row.map(|r| r.try_get::<String, _>(0)).transpose().map_err(classify)
    }

    pub async fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        exec!(
            self,
            sqlx::query("INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(key)
                .bind(value)
        )?;
        Ok(())
    }

    pub async fn keys(&mut self, purpose: &str) -> Result<Vec<KeyRow>> {
        let rows = sqlx::query("SELECT purpose, version, wrapped, public_key, created_at FROM keys WHERE purpose = $1 ORDER BY version")
            .bind(purpose)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(classify)?;
        rows.iter().map(KeyRow::from_row).collect()
    }

    pub async fn insert_key(&mut self, k: &KeyRow) -> Result<()> {
        exec!(
            self,
            sqlx::query("INSERT INTO keys (purpose, version, wrapped, public_key, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(k.purpose.clone())
                .bind(k.version)
                .bind(k.wrapped.clone())
                .bind(k.public_key.clone())
                .bind(k.created_at)
        )?;
        Ok(())
    }

    pub async fn insert_user(&mut self, u: &UserRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO users (id, username, organization_id, password_hash, totp_secret, key_version, totp_last_step, failed_logins, locked_until, active, is_demo, created_at, password_changed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
            )
            .bind(u.id.clone())
            .bind(u.username.clone())
            .bind(u.organization_id.clone())
            .bind(u.password_hash.clone())
            .bind(u.totp_secret.clone())
            .bind(u.key_version)
            .bind(u.totp_last_step)
            .bind(u.failed_logins)
            .bind(u.locked_until)
            .bind(i64::from(u.active))
            .bind(i64::from(u.is_demo))
            .bind(u.created_at)
        )?;
        Ok(())
    }

    /// Records the TOTP step just used; false when it is not newer than the last one (replay).
    pub async fn advance_totp_step(&mut self, user_id: &str, step: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)")
                .bind(step)
                .bind(user_id)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_login_failures(&mut self, user_id: &str, failed: i64, locked_until: Option<i64>) -> Result<()> {
        exec!(
            self,
            sqlx::query("UPDATE users SET failed_logins = $1, locked_until = $2 WHERE id = $3")
                .bind(failed)
                .bind(locked_until)
                .bind(user_id)
        )?;
        Ok(())
    }

    /// Re-seals a user's TOTP secret under a newer key, if nobody changed it meanwhile.
    pub async fn reseal_user(&mut self, user_id: &str, old_key_version: i64, secret: &[u8], key_version: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE users SET totp_secret = $1, key_version = $2 WHERE id = $3 AND key_version = $4")
                .bind(secret.to_vec())
                .bind(key_version)
                .bind(user_id)
                .bind(old_key_version)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_session(&mut self, s: &NewSession) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO sessions (token_hash, public_id, user_id, state, created_at, last_seen_at, expires_at, source_ip, mfa_failures, authenticated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7, 0, $5)"
            )
            .bind(s.token_hash.clone())
            .bind(s.public_id.clone())
            .bind(s.user_id.clone())
            .bind(s.state.clone())
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(s.source_ip.clone())
        )?;
        Ok(())
    }

    /// Deletes a session; false if it was already gone.
    pub async fn delete_session(&mut self, token_hash: &[u8]) -> Result<bool> {
        let r = exec!(self, sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash.to_vec()))?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn delete_user_sessions(&mut self, user_id: &str) -> Result<u64> {
        let r = exec!(self, sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id))?;
        Ok(r.rows_affected())
    }

    pub async fn touch_session(&mut self, token_hash: &[u8], now: i64) -> Result<()> {
        exec!(
            self,
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2 AND last_seen_at < $1")
                .bind(now)
                .bind(token_hash.to_vec())
        )?;
        Ok(())
    }

    /// Counts a failed MFA attempt on a pending session and returns the new count.
    pub async fn session_mfa_failed(&mut self, token_hash: &[u8]) -> Result<i64> {
        exec!(self, sqlx::query("UPDATE sessions SET mfa_failures = mfa_failures + 1 WHERE token_hash = $1").bind(token_hash.to_vec()))?;
        let row = sqlx::query("SELECT mfa_failures FROM sessions WHERE token_hash = $1")
            .bind(token_hash.to_vec())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(classify)?;
        match row {
            Some(r) => r.try_get::<i64, _>(0).map_err(classify),
            None => Ok(i64::MAX),
        }
    }

    /// Moves a patient from version `expected` to `expected + 1`; false when the current version
    /// is not `expected` (a concurrent update won).
    pub async fn bump_patient_version(&mut self, id: &str, expected: i64, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE patients SET current_version = $1, updated_at = $2 WHERE id = $3 AND current_version = $4")
                .bind(expected + 1)
                .bind(now)
                .bind(id)
                .bind(expected)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn current_patient_version(&mut self, id: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT current_version FROM patients WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(classify)?;
        row.map(|r| r.try_get::<i64, _>(0)).transpose().map_err(classify)
    }

    pub async fn insert_patient_version(&mut self, v: &PatientVersionRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO patient_versions (patient_id, version, recorded_at, key_version, name, birth_date, telecom, identifier, address, other) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            )
            .bind(v.patient_id.clone())
            .bind(v.version)
            .bind(v.recorded_at)
            .bind(v.key_version)
            .bind(v.name.clone())
            .bind(v.birth_date.clone())
            .bind(v.telecom.clone())
            .bind(v.identifier.clone())
            .bind(v.address.clone())
            .bind(v.other.clone())
        )?;
        Ok(())
    }

    /// Registers new patients: their rows, first versions and blind-index tokens, many to a
    /// statement (a bulk registration of 500 patients is a handful of statements, a single one
    /// three). The MRN's unique index answers `Conflict("patient_index_mrn_unique")`.
    pub async fn insert_patients(&mut self, new: &[NewPatient<'_>]) -> Result<()> {
        for chunk in new.chunks(100) {
            let mut sql =
                String::from("INSERT INTO patients (id, current_version, created_at, updated_at, is_demo, organization_id) VALUES ");
            placeholders(&mut sql, chunk.len(), 6);
            let mut q = sqlx::query(&sql);
            for n in chunk {
                q = q
                    .bind(n.row.patient_id.as_str())
                    .bind(1i64)
                    .bind(n.row.recorded_at)
                    .bind(n.row.recorded_at)
                    .bind(i64::from(n.is_demo))
                    .bind(n.organization_id);
            }
            exec!(self, q)?;
            let mut sql = String::from(
                "INSERT INTO patient_versions (patient_id, version, recorded_at, key_version, name, birth_date, telecom, identifier, address, other) VALUES ",
            );
            placeholders(&mut sql, chunk.len(), 10);
            let mut q = sqlx::query(&sql);
            for n in chunk {
                let v = n.row;
                q = q
                    .bind(v.patient_id.as_str())
                    .bind(v.version)
                    .bind(v.recorded_at)
                    .bind(v.key_version)
                    .bind(v.name.as_slice())
                    .bind(v.birth_date.as_slice())
                    .bind(v.telecom.as_slice())
                    .bind(v.identifier.as_slice())
                    .bind(v.address.as_slice())
                    .bind(v.other.as_slice());
            }
            exec!(self, q)?;
        }
        // The index rows in key order: neighbouring inserts land on neighbouring pages.
        let mut rows: Vec<(i64, &[u8], &str)> =
            new.iter().flat_map(|n| n.tokens.iter().map(move |(k, t)| (*k, t.as_slice(), n.row.patient_id.as_str()))).collect();
        rows.sort_unstable();
        for chunk in rows.chunks(300) {
            let mut sql = String::from("INSERT INTO patient_index (patient_id, kind, token) VALUES ");
            placeholders(&mut sql, chunk.len(), 3);
            let mut q = sqlx::query(&sql);
            for (kind, token, id) in chunk {
                q = q.bind(*id).bind(*kind).bind(*token);
            }
            q.execute(&mut *self.tx).await.map_err(|e| match classify(e) {
                StoreError::Conflict(_) => StoreError::Conflict("patient_index_mrn_unique".into()),
                other => other,
            })?;
        }
        Ok(())
    }

    /// Re-seals one version under a newer key, if it is still under `old_key_version`.
    pub async fn reseal_patient_version(&mut self, v: &PatientVersionRow, old_key_version: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query(
                "UPDATE patient_versions SET key_version = $1, name = $2, birth_date = $3, telecom = $4, identifier = $5, address = $6, other = $7 \
                 WHERE patient_id = $8 AND version = $9 AND key_version = $10"
            )
            .bind(v.key_version)
            .bind(v.name.clone())
            .bind(v.birth_date.clone())
            .bind(v.telecom.clone())
            .bind(v.identifier.clone())
            .bind(v.address.clone())
            .bind(v.other.clone())
            .bind(v.patient_id.clone())
            .bind(v.version)
            .bind(old_key_version)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn patient_has_token(&mut self, patient_id: &str, kind: i64, token: &[u8]) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM patient_index WHERE patient_id = $1 AND kind = $2 AND token = $3")
            .bind(patient_id)
            .bind(kind)
            .bind(token.to_vec())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(classify)?;
        Ok(row.is_some())
    }

    /// Replaces the blind-index tokens of a patient. A duplicate MRN surfaces as
    /// `Conflict("patient_index_mrn_unique")`.
    pub async fn replace_patient_index(&mut self, patient_id: &str, tokens: &[(i64, Vec<u8>)]) -> Result<()> {
        exec!(self, sqlx::query("DELETE FROM patient_index WHERE patient_id = $1").bind(patient_id))?;
        for chunk in tokens.chunks(100) {
            let mut sql = String::from("INSERT INTO patient_index (patient_id, kind, token) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3));
            }
            let mut q = sqlx::query(&sql).bind(patient_id);
            for (kind, token) in chunk {
                q = q.bind(*kind).bind(token.clone());
            }
            q.execute(&mut *self.tx).await.map_err(|e| match classify(e) {
                StoreError::Conflict(_) => StoreError::Conflict("patient_index_mrn_unique".into()),
                other => other,
            })?;
        }
        Ok(())
    }
}
