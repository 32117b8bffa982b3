//! The one path of every read of a patient's data: **gate → fetch → audit → open.**
//!
//! 1. *gate*: permission, scope, purpose of use, sensitive flags and, for clinical data, the
//!    care relationship or an open break-glass (`gate_patient`; a refusal is audited before it
//!    is returned);
//! 2. *fetch*: the sealed rows (still ciphertext); none found is audited as not found;
//! 3. *audit*: the access record (action, resource, patient, purpose, review marks) is appended
//!    and made durable; its `Receipt` is the only thing that lets the sealing module open;
//! 4. *open*: the rows are decrypted under that receipt.
//!
//! Reads call [`Vault::audited_read`] with what to fetch and how to open; nothing decrypts
//! before step 3, and no read can skip a step.

use carevault_domain::{AuditAction, Operation, Outcome, PurposeOfUse};

use crate::actor::Actor;
use crate::audit::{Draft, Receipt};
use crate::authz::PatientFacts;
use crate::error::CoreError;
use crate::vault::Vault;

/// Who reads what, as the gate and the audit record see it.
pub(crate) struct Access<'a> {
    pub actor: &'a Actor,
    pub purpose: PurposeOfUse,
    pub op: Operation,
    /// `Read`, `Search` (a list) or `Export` (a download).
    pub action: AuditAction,
    pub resource: &'a str,
    /// The resource's id, if one is read (`None` for a patient's list).
    pub id: Option<&'a str>,
    pub patient_id: &'a str,
}

impl Vault {
    /// Gate → fetch → audit → open (see the module documentation). `fetch` returns `None` when
    /// there is nothing (audited as not found, answered `NotFound { resource: not_found }`).
    pub(crate) async fn audited_read<R, T>(
        &self,
        a: Access<'_>,
        not_found: impl FnOnce() -> String,
        fetch: impl AsyncFnOnce() -> Result<Option<R>, CoreError>,
        open: impl AsyncFnOnce(&Receipt, &PatientFacts, R) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        self.audited_read_from(a, None, not_found, fetch, open).await
    }

    /// [`Vault::audited_read`] when the patient's access row was read with the data, in one
    /// statement (`access`); the gate decides on it exactly as on its own read.
    pub(crate) async fn audited_read_from<R, T>(
        &self,
        a: Access<'_>,
        access: Option<Option<carevault_store::PatientAccessRow>>,
        not_found: impl FnOnce() -> String,
        fetch: impl AsyncFnOnce() -> Result<Option<R>, CoreError>,
        open: impl AsyncFnOnce(&Receipt, &PatientFacts, R) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let (facts, allowed) = self.gate_patient_from(a.actor, a.op, a.purpose, a.action, a.resource, a.patient_id, access).await?;
        let Some(rows) = fetch().await? else {
            let d = Draft::new(self.inner.clock.now_micros(), a.action, Outcome::NotFound)
                .by(a.actor)
                .resource(a.resource, a.id)
                .purpose(a.purpose);
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: not_found() });
        };
        let d = Draft::new(self.inner.clock.now_micros(), a.action, Outcome::Success)
            .by(a.actor)
            .resource(a.resource, a.id)
            .patient(a.patient_id)
            .purpose(a.purpose)
            .review(&allowed);
        let receipt = self.inner.writer.append(d).await?;
        tracing::debug!(audit_seq = ?receipt.last_seq(), resource = a.resource, "patient read");
        open(&receipt, &facts, rows).await
    }
}
