//! Data-key rotation without downtime: a new key version becomes current at once (new writes
//! use it within seconds in every process), then existing rows are re-encrypted in batches.
//! An interrupted rotation resumes where it stopped: the rows still under an older key are the
//! work left. Audit details stay under the key they were written with, because the hash chain
//! covers their ciphertext; old key versions are kept so they remain readable.

pub(crate) mod changes;

use carevault_domain::{AuditAction, Outcome, PurposeOfUse};

use crate::actor::Actor;
use crate::audit::Draft;
use crate::error::CoreError;
use crate::rotation::changes::KeyChange;
use crate::sealing::Binding;
use crate::vault::Vault;

#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub current_version: u32,
    /// (version, created at in Unix microseconds)
    pub versions: Vec<(i64, i64)>,
    /// (table, key version, rows)
    pub rows_by_version: Vec<(String, i64, i64)>,
}

impl KeyStatus {
    /// Rows still sealed under an older key (an unfinished rotation).
    pub fn rows_behind(&self) -> i64 {
        self.rows_by_version.iter().filter(|(_, v, _)| *v < i64::from(self.current_version)).map(|(_, _, n)| n).sum()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RotationProgress {
    pub target_version: u32,
    pub done: u64,
    pub total: u64,
    pub resumed: bool,
}

impl Vault {
    pub(crate) async fn key_status(&self) -> Result<KeyStatus, CoreError> {
        let now = self.inner.clock.now_micros();
        self.inner.sealer.refresh(&self.inner.store, now, true).await?;
        let versions = self.inner.store.keys(crate::keys::DATA).await?.into_iter().map(|k| (k.version, k.created_at)).collect();
        Ok(KeyStatus {
            current_version: self.inner.sealer.current_version()?,
            versions,
            rows_by_version: self.inner.store.key_version_counts().await?,
        })
    }

    /// Rotates the data key (or resumes an unfinished rotation), re-encrypting `batch` rows per
    /// transaction and reporting progress after each batch.
    pub(crate) async fn rotate_keys(
        &self,
        batch: usize,
        mut progress: impl FnMut(RotationProgress),
    ) -> Result<RotationProgress, CoreError> {
        let system = Actor::system("key-rotation");
        let purpose = PurposeOfUse::SystemAdministration;
        let store = &self.inner.store;
        let status = self.key_status().await?;
        let resumed = status.rows_behind() > 0;
        let target = if resumed {
            status.current_version
        } else {
            let next = status.current_version + 1;
            let now = self.inner.clock.now_micros();
            let wrapped = self.inner.sealer.wrap_new_data_key(i64::from(next));
            let d = Draft::new(now, AuditAction::KeyRotation, Outcome::Success)
                .by(&system)
                .resource("DataKey", Some(&next.to_string()))
                .purpose(purpose);
            let fail = d.clone();
            self.inner
                .writer
                .write(vec![KeyChange::InsertDataKey { version: i64::from(next), wrapped, now }.into()], vec![d], Some(fail))
                .await?;
            self.inner.sealer.refresh(store, now, true).await?;
            next
        };
        let total = u64::try_from(self.key_status().await?.rows_behind()).unwrap_or(0);
        let mut p = RotationProgress { target_version: target, done: 0, total, resumed };
        progress(p);
        let limit = i64::try_from(batch.max(1)).unwrap_or(500);
        loop {
            let rows = store.patient_versions_below_key(i64::from(target), limit).await?;
            if rows.is_empty() {
                break;
            }
            let receipt = self
                .rotation_receipt(&system, purpose, target, "resealed_rows", rows.iter().map(|r| r.patient_id.clone()).collect())
                .await?;
            let mut ops = Vec::with_capacity(rows.len());
            for r in &rows {
                let new = self.inner.sealer.reseal_patient(&receipt, r, target)?;
                ops.push(KeyChange::ResealPatient { row: Box::new(new), old_key_version: r.key_version }.into());
            }
            self.inner.writer.write(ops, vec![], None).await?;
            p.done = (p.done + rows.len() as u64).min(p.total.max(p.done + rows.len() as u64));
            p.total = p.total.max(p.done);
            progress(p);
        }
        loop {
            let rows = store.allergies_below_key(i64::from(target), limit).await?;
            if rows.is_empty() {
                break;
            }
            let receipt = self
                .rotation_receipt(&system, purpose, target, "resealed_allergies", rows.iter().map(|r| r.patient_id.clone()).collect())
                .await?;
            let ops = self.reseal_allergies(&receipt, &rows, target).await?;
            self.inner.writer.write(ops, vec![], None).await?;
            p.done += rows.len() as u64;
            p.total = p.total.max(p.done);
            progress(p);
        }
        loop {
            let rows = store.records_below_key(i64::from(target), limit).await?;
            if rows.is_empty() {
                break;
            }
            let receipt = self
                .rotation_receipt(&system, purpose, target, "resealed_records", rows.iter().map(|r| r.patient_id.clone()).collect())
                .await?;
            let now = self.inner.clock.now_micros();
            let mut ops = Vec::with_capacity(rows.len());
            for r in &rows {
                let binding = Binding::record(crate::chart::TABLE, r);
                let plain = self.inner.sealer.open_clinical(store, now, &receipt, &binding, &r.body).await?;
                let (body, key_version) = self.inner.sealer.seal_clinical(&binding, &plain, Some(target))?;
                ops.push(KeyChange::ResealRecord { id: r.id.clone(), version: r.version, key_version, body }.into());
            }
            self.inner.writer.write(ops, vec![], None).await?;
            p.done += rows.len() as u64;
            p.total = p.total.max(p.done);
            progress(p);
        }
        loop {
            let users = store.users_below_key(i64::from(target), limit).await?;
            if users.is_empty() {
                break;
            }
            let now = self.inner.clock.now_micros();
            let mut ops = Vec::with_capacity(users.len());
            for u in &users {
                let secret = self.inner.sealer.open_credential(store, now, &u.id, &u.totp_secret).await?;
                let sealed = self.inner.sealer.seal_credential(&u.id, &secret, Some(target))?;
                ops.push(
                    KeyChange::ResealUser {
                        user_id: u.id.clone(),
                        secret: sealed,
                        key_version: i64::from(target),
                        old_key_version: u.key_version,
                    }
                    .into(),
                );
            }
            self.inner.writer.write(ops, vec![], None).await?;
            p.done += users.len() as u64;
            p.total = p.total.max(p.done);
            progress(p);
        }
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::KeyRotation, Outcome::Success)
            .by(&system)
            .resource("DataKey", Some(&target.to_string()))
            .purpose(purpose);
        let details = self
            .inner
            .sealer
            .seal_details(&d.event_id, serde_json::json!({"completed": true, "resealed": p.done}).to_string().as_bytes())?;
        self.inner.writer.append(d.details(details)).await?;
        Ok(p)
    }

    /// The audit record of one re-sealed batch (the system actor, the target key version, how
    /// many rows of which kind, the patients covered): its receipt lets the batch be opened.
    async fn rotation_receipt(
        &self,
        system: &Actor,
        purpose: PurposeOfUse,
        target: u32,
        what: &str,
        mut ids: Vec<String>,
    ) -> Result<crate::audit::Receipt, CoreError> {
        let rows = ids.len();
        ids.sort();
        ids.dedup();
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::KeyRotation, Outcome::Success)
            .by(system)
            .resource("DataKey", Some(&target.to_string()))
            .purpose(purpose)
            .covering(&ids);
        let details =
            self.inner.sealer.seal_details(&d.event_id, serde_json::json!({what: rows, "patients": ids}).to_string().as_bytes())?;
        self.inner.writer.append(d.details(details)).await
    }
}
