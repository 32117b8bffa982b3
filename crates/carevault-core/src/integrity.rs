//! Sealed clinical values that do not belong where they are stored, and the one-time upgrade
//! that bound every sealed clinical body to its row's plain columns.
//!
//! A chart record or allergy is sealed with an AAD covering its table, id, version, patient,
//! kind, parent, status and signed-content hash ([`Binding`]). If any of those columns is
//! changed in the database, or a body is copied to another row, opening fails: the read is
//! refused with `Tampered`, an audit record marked `tamper` and a security alert are written,
//! and no data is returned.
//!
//! Stores created before this binding sealed bodies under their id and version only. On the
//! first start with this version every such body is opened with that older binding (under an
//! audit record of the system actor covering its patients) and sealed again with the full one;
//! then `store_meta.sealed_binding` records that the upgrade is complete and the older binding
//! is never accepted again.

use carevault_domain::{AuditAction, Outcome, PurposeOfUse};

use crate::access::changes::AccessChange;
use crate::access::SECURITY;
use crate::actor::Actor;
use crate::audit::{Draft, Receipt};
use crate::error::CoreError;
use crate::rotation::changes::KeyChange;
use crate::sealing::Binding;
use crate::vault::Vault;

/// `store_meta` key and value once every clinical body carries the full binding.
const META_KEY: &str = "sealed_binding";
const META_DONE: &str = "2";
const BATCH: i64 = 200;

impl Vault {
    /// Turns a failure to open a clinical body into the answer: a tampered value is audited
    /// (marked `tamper`, naming the row and its patient) and raises a security alert, durably,
    /// before the refusal is returned. Other errors pass through.
    pub(crate) async fn integrity_failure(&self, receipt: &Receipt, e: CoreError) -> CoreError {
        let CoreError::Tampered { table, id, patient_id } = &e else {
            return e;
        };
        let now = self.inner.clock.now_micros();
        let mut d = Draft::new(now, AuditAction::Read, Outcome::Error)
            .actor_name(receipt.actor().to_string())
            .resource(table, Some(id))
            .patient(patient_id);
        d.review = Some("tamper".into());
        let alert = crate::access::alert(SECURITY, "integrity", None, Some(patient_id), Some(id), now);
        if let Err(w) = self.inner.writer.write(vec![AccessChange::InsertAlert(alert).into()], vec![d], None).await {
            tracing::error!(error = %w, "the integrity failure could not be recorded");
        }
        e
    }

    /// Re-seals clinical bodies sealed before the full binding (see the module documentation).
    /// Runs once; idempotent if interrupted (a body already bound is left as it is).
    pub(crate) async fn upgrade_sealed_bindings(&self) -> Result<u64, CoreError> {
        let store = &self.inner.store;
        if store.meta(META_KEY).await?.as_deref() == Some(META_DONE) {
            return Ok(0);
        }
        let system = Actor::system("sealed-binding-upgrade");
        let purpose = PurposeOfUse::SystemAdministration;
        let mut upgraded = 0u64;
        let mut after = String::new();
        loop {
            let rows = store.records_after(&after, BATCH).await?;
            let Some(last) = rows.last() else { break };
            after = last.id.clone();
            let receipt = self.upgrade_receipt(&system, purpose, rows.iter().map(|r| r.patient_id.clone()).collect(), "records").await?;
            let now = self.inner.clock.now_micros();
            let mut ops = Vec::new();
            for r in &rows {
                let b = Binding::record(crate::chart::TABLE, r);
                if self.inner.sealer.open_clinical(store, now, &receipt, &b, &r.body).await.is_ok() {
                    continue;
                }
                let plain = self.inner.sealer.open_clinical_unbound(store, now, &receipt, &b, &r.body).await?;
                let (body, key_version) = self.inner.sealer.seal_clinical(&b, &plain, Some(u32::try_from(r.key_version).unwrap_or(0)))?;
                ops.push(KeyChange::ResealRecord { id: r.id.clone(), version: r.version, key_version, body }.into());
            }
            upgraded += ops.len() as u64;
            if !ops.is_empty() {
                self.inner.writer.write(ops, vec![], None).await?;
            }
        }
        let mut after = (String::new(), 0i64);
        loop {
            let rows = store.allergies_after((&after.0, after.1), BATCH).await?;
            let Some(last) = rows.last() else { break };
            after = (last.id.clone(), last.version);
            let receipt = self.upgrade_receipt(&system, purpose, rows.iter().map(|r| r.patient_id.clone()).collect(), "allergies").await?;
            let now = self.inner.clock.now_micros();
            let mut ops = Vec::new();
            for r in &rows {
                let b = Binding::allergy(crate::allergies::TABLE, r);
                if self.inner.sealer.open_clinical(store, now, &receipt, &b, &r.body).await.is_ok() {
                    continue;
                }
                let plain = self.inner.sealer.open_clinical_unbound(store, now, &receipt, &b, &r.body).await?;
                let (body, key_version) = self.inner.sealer.seal_clinical(&b, &plain, Some(u32::try_from(r.key_version).unwrap_or(0)))?;
                ops.push(
                    KeyChange::ResealAllergy {
                        row: Box::new(carevault_store::AllergyRow { body, key_version, ..r.clone() }),
                        old_key_version: r.key_version,
                    }
                    .into(),
                );
            }
            upgraded += ops.len() as u64;
            if !ops.is_empty() {
                self.inner.writer.write(ops, vec![], None).await?;
            }
        }
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::ConfigChange, Outcome::Success)
            .by(&system)
            .resource("SealedBinding", Some(META_DONE))
            .purpose(purpose);
        self.inner.writer.write(vec![KeyChange::SetMeta { key: META_KEY.into(), value: META_DONE.into() }.into()], vec![d], None).await?;
        if upgraded > 0 {
            tracing::info!(upgraded, "sealed clinical values are now bound to their patient, kind, parent and status");
        }
        Ok(upgraded)
    }

    async fn upgrade_receipt(&self, system: &Actor, purpose: PurposeOfUse, mut ids: Vec<String>, what: &str) -> Result<Receipt, CoreError> {
        ids.sort();
        ids.dedup();
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Update, Outcome::Success)
            .by(system)
            .resource("SealedBinding", Some(what))
            .purpose(purpose)
            .covering(&ids);
        self.inner.writer.append(d).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use carevault_store::AllergyRow;

    use super::*;
    use crate::chart::changes::ChartChange;
    use crate::vault::OpenOptions;

    /// A store from before the full binding: an allergy sealed under its id and version only.
    /// The upgrade re-seals it once (after which it opens with the full binding and no longer
    /// with the old one), records that it is done, and does nothing the next time.
    #[tokio::test]
    async fn bodies_sealed_before_the_binding_are_resealed_once() {
        let dir = tempfile::tempdir().expect("dir");
        let v = Vault::open(OpenOptions::new(dir.path().join("data"))).await.expect("open");
        let store = &v.inner.store;
        let pid = "6d7f1c1e-0000-4000-8000-000000000001";
        store
            .execute_for_tests(&format!(
                "INSERT INTO patients (id, current_version, created_at, updated_at, is_demo) VALUES ('{pid}', 1, 1, 1, 0)"
            ))
            .await
            .expect("patient");
        let mut row = AllergyRow {
            id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
            version: 1,
            patient_id: pid.into(),
            recorded_at: 1,
            key_version: 0,
            body: vec![],
        };
        let plain = br#"{"legacy": true}"#;
        (row.body, row.key_version) =
            v.inner.sealer.seal_clinical_unbound_for_tests(&Binding::allergy(crate::allergies::TABLE, &row), plain).expect("seal");
        v.inner.writer.write(vec![ChartChange::InsertAllergy(Box::new(row.clone())).into()], vec![], None).await.expect("insert");
        store.execute_for_tests("DELETE FROM store_meta WHERE key = 'sealed_binding'").await.expect("meta");

        let system = Actor::system("test");
        let receipt = v.upgrade_receipt(&system, PurposeOfUse::SystemAdministration, vec![pid.into()], "test").await.expect("receipt");
        let now = v.inner.clock.now_micros();
        let b = Binding::allergy(crate::allergies::TABLE, &row);
        // Before the upgrade the full binding does not open it.
        assert!(matches!(v.inner.sealer.open_clinical(store, now, &receipt, &b, &row.body).await, Err(CoreError::Tampered { .. })));

        assert_eq!(v.upgrade_sealed_bindings().await.expect("upgrade"), 1);
        let stored = store.allergies_for_patient(pid).await.expect("rows").pop().expect("row");
        let b = Binding::allergy(crate::allergies::TABLE, &stored);
        let receipt = v.upgrade_receipt(&system, PurposeOfUse::SystemAdministration, vec![pid.into()], "test").await.expect("receipt");
        assert_eq!(v.inner.sealer.open_clinical(store, now, &receipt, &b, &stored.body).await.expect("opens"), plain.to_vec());
        assert!(
            v.inner.sealer.open_clinical_unbound(store, now, &receipt, &b, &stored.body).await.is_err(),
            "the old binding no longer opens it"
        );
        assert_eq!(store.meta(META_KEY).await.expect("meta").as_deref(), Some(META_DONE));
        assert_eq!(v.upgrade_sealed_bindings().await.expect("again"), 0, "runs once");
        v.shutdown().await;
    }
}
