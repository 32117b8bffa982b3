//! Accounts and their credentials: activation, sign-in time, password, TOTP secret, recovery
//! codes, sessions.

use super::get;
use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

impl Store {
    pub async fn unused_recovery_codes(&self, user_id: &str) -> Result<i64> {
        let rows = self
            .fetch_all(sqlx::query("SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL").bind(user_id))
            .await?;
        rows.first().map(|r| get::<i64>(r, "n")).transpose().map(Option::unwrap_or_default)
    }

    pub async fn sessions_for_user(&self, user_id: &str) -> Result<Vec<crate::SessionRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at").bind(user_id))
            .await?
            .iter()
            .map(crate::SessionRow::from_row)
            .collect()
    }

    /// Active accounts whose last sign-in (or creation, if they never signed in) is before `cutoff`.
    pub async fn users_unused_since(&self, cutoff: i64) -> Result<Vec<crate::UserRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM users WHERE active = 1 AND COALESCE(last_login_at, created_at) < $1 ORDER BY id LIMIT 500")
                .bind(cutoff),
        )
        .await?
        .iter()
        .map(crate::UserRow::from_row)
        .collect()
    }
}

impl WriteTx {
    pub async fn set_user_active(&mut self, user_id: &str, active: bool, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE users SET active = $1, deactivated_at = $2, last_login_at = CASE WHEN $1 = 1 THEN $3 ELSE last_login_at END WHERE id = $4 AND active <> $1")
                .bind(i64::from(active))
                .bind(if active { None } else { Some(now) })
                .bind(now)
                .bind(user_id)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_last_login(&mut self, user_id: &str, now: i64) -> Result<()> {
        exec!(self, sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2").bind(now).bind(user_id))?;
        Ok(())
    }

    pub async fn set_password(&mut self, user_id: &str, hash: &str, now: i64) -> Result<()> {
        exec!(
            self,
            sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3").bind(hash).bind(now).bind(user_id)
        )?;
        Ok(())
    }

    /// Replaces a user's TOTP secret (MFA reset) and forgets the last used step.
    pub async fn replace_totp(&mut self, user_id: &str, secret: &[u8], key_version: i64) -> Result<()> {
        exec!(
            self,
            sqlx::query("UPDATE users SET totp_secret = $1, key_version = $2, totp_last_step = NULL WHERE id = $3")
                .bind(secret.to_vec())
                .bind(key_version)
                .bind(user_id)
        )?;
        Ok(())
    }

    pub async fn replace_recovery_codes(&mut self, user_id: &str, hashes: &[Vec<u8>], now: i64) -> Result<()> {
        exec!(self, sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id))?;
        for h in hashes {
            exec!(
                self,
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(user_id)
                    .bind(h.clone())
                    .bind(now)
            )?;
        }
        Ok(())
    }

    /// Spends a recovery code; false if it is unknown or already used.
    pub async fn use_recovery_code(&mut self, user_id: &str, hash: &[u8], now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL")
                .bind(now)
                .bind(user_id)
                .bind(hash.to_vec())
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_session_authenticated(&mut self, token_hash: &[u8], now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE sessions SET authenticated_at = $1 WHERE token_hash = $2").bind(now).bind(token_hash.to_vec())
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn delete_session_by_public_id(&mut self, user_id: &str, public_id: &str) -> Result<bool> {
        let r = exec!(self, sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND public_id = $2").bind(user_id).bind(public_id))?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends every session of the user except `keep` (a token hash).
    pub async fn delete_other_sessions(&mut self, user_id: &str, keep: &[u8]) -> Result<u64> {
        let r = exec!(self, sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2").bind(user_id).bind(keep.to_vec()))?;
        Ok(r.rows_affected())
    }
}
