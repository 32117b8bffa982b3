//! Allergies and intolerances (FHIR AllergyIntolerance): clinical data. Reading or recording
//! them needs the permission, a care relationship with the patient (or an open break-glass) and,
//! for a flagged record, the category's permission; then the audit record; then decryption.

use carevault_domain::allergy::{parse_allergy, AllergyContext, AllergyData};
use carevault_domain::{AuditAction, InputError, Operation, Outcome, PurposeOfUse};
use carevault_store::AllergyRow;

use crate::actor::Actor;
use crate::audit::writer::Op;
use crate::audit::{Draft, Receipt};
use crate::authz::PatientFacts;
use crate::chart::changes::ChartChange;
use crate::error::CoreError;
use crate::read::Access;
use crate::rotation::changes::KeyChange;
use crate::sealing::Binding;
use crate::vault::Vault;

pub(crate) const TABLE: &str = "allergies";
const RESOURCE: &str = "AllergyIntolerance";

/// A decrypted allergy record.
#[derive(Clone)]
pub struct AllergyRecord {
    pub id: String,
    pub patient_id: String,
    pub version: i64,
    pub last_updated: i64,
    pub data: AllergyData,
}

impl std::fmt::Debug for AllergyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AllergyRecord({}/{})", self.id, self.version)
    }
}

impl AllergyRecord {
    pub fn to_fhir(&self) -> serde_json::Value {
        self.data.to_fhir(&self.id, &self.patient_id, self.version, &crate::format_instant(self.last_updated))
    }
}

impl Vault {
    async fn open_allergy(&self, receipt: &Receipt, row: &AllergyRow) -> Result<AllergyRecord, CoreError> {
        let now = self.inner.clock.now_micros();
        let body = match self.inner.sealer.open_clinical(&self.inner.store, now, receipt, &Binding::allergy(TABLE, row), &row.body).await {
            Ok(b) => b,
            Err(e) => return Err(self.integrity_failure(receipt, e).await),
        };
        let data: AllergyData =
            serde_json::from_slice(&body).map_err(|_| CoreError::Internal("stored allergy could not be decoded".into()))?;
        Ok(AllergyRecord {
            id: row.id.clone(),
            patient_id: row.patient_id.clone(),
            version: row.version,
            last_updated: row.recorded_at,
            data,
        })
    }

    /// Re-seals allergy versions under `target` (key rotation); the receipt covers their patients.
    pub(crate) async fn reseal_allergies(&self, receipt: &Receipt, rows: &[AllergyRow], target: u32) -> Result<Vec<Op>, CoreError> {
        let now = self.inner.clock.now_micros();
        let mut ops = Vec::with_capacity(rows.len());
        for r in rows {
            let plain = self.inner.sealer.open_clinical(&self.inner.store, now, receipt, &Binding::allergy(TABLE, r), &r.body).await?;
            let (body, key_version) = self.inner.sealer.seal_clinical(&Binding::allergy(TABLE, r), &plain, Some(target))?;
            ops.push(
                KeyChange::ResealAllergy { row: Box::new(AllergyRow { body, key_version, ..r.clone() }), old_key_version: r.key_version }
                    .into(),
            );
        }
        Ok(ops)
    }

    /// Records an allergy from a FHIR AllergyIntolerance body.
    pub async fn create_allergy(&self, actor: &Actor, purpose: PurposeOfUse, body: &[u8]) -> Result<AllergyRecord, CoreError> {
        let now = self.inner.clock.now_micros();
        let sub = match parse_allergy(body, &AllergyContext { today: self.inner.clock.today() }) {
            Ok(s) => s,
            Err(e) => {
                // The permission is checked first, so bad input from someone without it is a denial.
                self.gate(actor, Operation::AllergyCreate, purpose, &crate::authz::Target::Anywhere, (RESOURCE, None)).await?;
                return Err(self.audit_input(actor, purpose, AuditAction::Create, RESOURCE, e).await);
            }
        };
        let (_, allowed) =
            self.gate_patient(actor, Operation::AllergyCreate, purpose, AuditAction::Create, RESOURCE, &sub.patient_id).await?;
        if sub.id.is_some() {
            let e = InputError::value("AllergyIntolerance.id", "the server assigns the id; use update to change a record");
            return Err(self.audit_input(actor, purpose, AuditAction::Create, RESOURCE, e).await);
        }
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let id = hex::encode(carevault_crypto::random_bytes::<16>());
        let plain = serde_json::to_vec(&sub.data).map_err(|_| CoreError::Internal("encode".into()))?;
        let mut row =
            AllergyRow { id: id.clone(), version: 1, patient_id: sub.patient_id.clone(), recorded_at: now, key_version: 0, body: vec![] };
        (row.body, row.key_version) = self.inner.sealer.seal_clinical(&Binding::allergy(TABLE, &row), &plain, None)?;
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource(RESOURCE, Some(&id))
            .patient(&sub.patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.write(vec![ChartChange::InsertAllergy(Box::new(row)).into()], vec![ev], None).await?;
        Ok(AllergyRecord { id, patient_id: sub.patient_id, version: 1, last_updated: now, data: sub.data })
    }

    /// Reads one allergy record.
    pub async fn read_allergy(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<AllergyRecord, CoreError> {
        // Which patient a record belongs to is looked up before authorization; an unknown id
        // is refused the same way to anyone without the permission.
        let row = if is_id(id) { self.inner.store.allergy_current(id).await? } else { None };
        let Some(row) = row else {
            self.gate(actor, Operation::AllergyRead, purpose, &crate::authz::Target::Anywhere, (RESOURCE, None)).await?;
            let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Read, Outcome::NotFound)
                .by(actor)
                .resource(RESOURCE, None)
                .purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("{RESOURCE}/{}", crate::audit::audit_safe_id(id)) });
        };
        let a = Access {
            actor,
            purpose,
            op: Operation::AllergyRead,
            action: AuditAction::Read,
            resource: RESOURCE,
            id: Some(id),
            patient_id: &row.patient_id,
        };
        self.audited_read(
            a,
            || format!("{RESOURCE}/{id}"),
            async || Ok(Some(row.clone())),
            async |receipt: &Receipt, _: &PatientFacts, row: AllergyRow| self.open_allergy(receipt, &row).await,
        )
        .await
    }

    /// Every current allergy record of a patient.
    pub async fn patient_allergies(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<AllergyRecord>, CoreError> {
        let a =
            Access { actor, purpose, op: Operation::AllergyList, action: AuditAction::Search, resource: RESOURCE, id: None, patient_id };
        self.audited_read(
            a,
            || format!("Patient/{patient_id}"),
            async || Ok(Some(self.inner.store.allergies_for_patient(patient_id).await?)),
            async |receipt: &Receipt, _: &PatientFacts, rows: Vec<AllergyRow>| {
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(self.open_allergy(receipt, r).await?);
                }
                Ok(out)
            },
        )
        .await
    }

    /// Audits refused input and returns the error to give back.
    pub(crate) async fn audit_input(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        action: AuditAction,
        resource: &str,
        e: InputError,
    ) -> CoreError {
        let d = Draft::new(self.inner.clock.now_micros(), action, Outcome::Invalid).by(actor).resource(resource, None).purpose(purpose);
        let details = serde_json::json!({"path": e.path, "code": e.code.as_str(), "message": e.message});
        let sealed = match self.inner.sealer.seal_details(&d.event_id, details.to_string().as_bytes()) {
            Ok(s) => s,
            Err(err) => return err,
        };
        match self.inner.writer.append(d.details(sealed)).await {
            Ok(_) => CoreError::Invalid(e),
            Err(err) => err,
        }
    }
}

fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
