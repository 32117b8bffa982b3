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
