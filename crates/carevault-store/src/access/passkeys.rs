//! Passkeys and the WebAuthn ceremonies that register and use them.

use super::get;
use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

#[derive(Clone)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub credential_id: Vec<u8>,
    pub name: String,
    /// Sealed.
    pub passkey: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl std::fmt::Debug for PasskeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasskeyRow({}, {})", self.id, self.user_id)
    }
}

impl PasskeyRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(PasskeyRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            credential_id: get(r, "credential_id")?,
            name: get(r, "name")?,
            passkey: get(r, "passkey")?,
            created_at: get(r, "created_at")?,
            last_used_at: get(r, "last_used_at")?,
        })
    }
}

/// A WebAuthn ceremony in progress (registration or authentication); used once.
#[derive(Clone)]
pub struct CeremonyRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    /// Sealed.
    pub state: Vec<u8>,
    pub expires_at: i64,
}

impl CeremonyRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(CeremonyRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            kind: get(r, "kind")?,
            state: get(r, "state")?,
            expires_at: get(r, "expires_at")?,
        })
    }
}

impl Store {
    pub async fn passkeys_for_user(&self, user_id: &str) -> Result<Vec<PasskeyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id").bind(user_id))
            .await?
            .iter()
            .map(PasskeyRow::from_row)
            .collect()
    }

    pub async fn ceremony(&self, id: &str) -> Result<Option<CeremonyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM webauthn_ceremonies WHERE id = $1").bind(id))
            .await?
            .first()
            .map(CeremonyRow::from_row)
            .transpose()
    }
}

impl WriteTx {
    pub async fn insert_passkey(&mut self, p: &PasskeyRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO passkeys (id, user_id, credential_id, name, passkey, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)"
            )
            .bind(p.id.clone())
            .bind(p.user_id.clone())
            .bind(p.credential_id.clone())
            .bind(p.name.clone())
            .bind(p.passkey.clone())
            .bind(p.created_at)
        )?;
        Ok(())
    }

    /// Renames one of the user's passkeys; false if the user has no such passkey.
    pub async fn rename_passkey(&mut self, user_id: &str, id: &str, name: &str) -> Result<bool> {
        let r = exec!(self, sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3").bind(name).bind(id).bind(user_id))?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes one passkey of the user (`Some(id)`) or all of them.
    pub async fn delete_passkeys(&mut self, user_id: &str, id: Option<&str>) -> Result<u64> {
        let r = match id {
            Some(id) => exec!(self, sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2").bind(id).bind(user_id))?,
            None => exec!(self, sqlx::query("DELETE FROM passkeys WHERE user_id = $1").bind(user_id))?,
        };
        Ok(r.rows_affected())
    }

    pub async fn passkey_used(&mut self, credential_id: &[u8], passkey: Option<&[u8]>, now: i64) -> Result<()> {
        match passkey {
            Some(p) => exec!(
                self,
                sqlx::query("UPDATE passkeys SET passkey = $1, last_used_at = $2 WHERE credential_id = $3")
                    .bind(p.to_vec())
                    .bind(now)
                    .bind(credential_id.to_vec())
            )?,
            None => exec!(
                self,
                sqlx::query("UPDATE passkeys SET last_used_at = $1 WHERE credential_id = $2").bind(now).bind(credential_id.to_vec())
            )?,
        };
        Ok(())
    }

    pub async fn insert_ceremony(&mut self, c: &CeremonyRow) -> Result<()> {
        exec!(
            self,
            sqlx::query("DELETE FROM webauthn_ceremonies WHERE user_id = $1 AND expires_at < $2")
                .bind(c.user_id.clone())
                .bind(c.expires_at - 600_000_000)
        )?;
        exec!(
            self,
            sqlx::query("INSERT INTO webauthn_ceremonies (id, user_id, kind, state, expires_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(c.id.clone())
                .bind(c.user_id.clone())
                .bind(c.kind.clone())
                .bind(c.state.clone())
                .bind(c.expires_at)
        )?;
        Ok(())
    }

    /// Consumes a ceremony: false if it was already used (or never existed).
    pub async fn take_ceremony(&mut self, id: &str) -> Result<bool> {
        Ok(exec!(self, sqlx::query("DELETE FROM webauthn_ceremonies WHERE id = $1").bind(id))?.rows_affected() == 1)
    }
}
