//! Bulk registration, for imports: many patients in one job, with one audit record for the
//! whole batch that names every patient registered (the disclosure index finds it per
//! patient, so each patient's access history and accounting still show their registration).
//!
//! All or nothing: every body is checked first, and an invalid one refuses the batch (audited,
//! naming the entry) before anything is written; a failed write keeps none of it.

use carevault_domain::patient::{IndexKind, PatientData};
use carevault_domain::{AuditAction, InputError, Mrn, Operation, Outcome, PatientId, PurposeOfUse};

use super::{home_scope, PatientRecord, PATIENT};
use crate::access::changes::AccessChange;
use crate::actor::Actor;
use crate::audit::writer::Op;
use crate::audit::Draft;
use crate::authz::{PatientFacts, Target};
use crate::error::CoreError;
use crate::patients::changes::PatientChange;
use crate::vault::Vault;

/// The most patients one call registers (an import sends several batches).
pub const MAX_BULK: usize = 1000;

impl Vault {
    /// Registers `bodies` (FHIR Patient JSON each) as one batch: one job, one audit record
    /// listing every new patient id. Returns the records in the order of `bodies`.
    pub async fn register_patients(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        bodies: &[Vec<u8>],
    ) -> Result<Vec<PatientRecord>, CoreError> {
        let home = home_scope(actor);
        let facts = PatientFacts { id: String::new(), scope: home.clone(), flags: vec![], relationship: false, break_glass: false };
        self.gate(actor, Operation::PatientCreate, purpose, &Target::Patient(&facts), (PATIENT, None)).await?;
        if bodies.is_empty() || bodies.len() > MAX_BULK {
            let e = InputError::value("entry", format!("a batch registers 1 to {MAX_BULK} patients"));
            self.audit_invalid(actor, purpose, AuditAction::Create, None, &e).await?;
            return Err(CoreError::Invalid(e));
        }
        let mut parsed = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            let checked = self.parse_body(body).and_then(|s| {
                if s.data.claims_mrn() {
                    Err(InputError::value(
                        "Patient.identifier",
                        format!("identifiers with system {} are assigned by carevault", carevault_domain::ids::MRN_SYSTEM),
                    ))
                } else {
                    Ok(s)
                }
            });
            match checked {
                Ok(s) => parsed.push(s.data),
                Err(mut e) => {
                    e.path = Some(format!("entry[{i}]{}", e.path.as_deref().map(|p| format!(".{p}")).unwrap_or_default()));
                    self.audit_invalid(actor, purpose, AuditAction::Create, None, &e).await?;
                    return Err(CoreError::Invalid(e));
                }
            }
        }
        let now = self.inner.clock.now_micros();
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let is_demo = self.inner.kind == crate::InstanceKind::Demo;
        let ids: Vec<PatientId> = parsed.iter().map(|_| PatientId::from_random(carevault_crypto::random_bytes::<16>())).collect();
        let id_strings: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        // MRNs are 9 digits: at a million patients a batch of 500 draws an existing one about
        // half the time. So the batch's MRNs are checked against the index (and each other)
        // first and only the taken ones drawn again; the unique index still refuses the job if
        // another registration took one meanwhile, and then the batch draws again.
        for _ in 0..5 {
            self.draw_free_mrns(&mut parsed).await?;
            let mut patients = Vec::with_capacity(parsed.len());
            let mut placements: Vec<Op> = Vec::new();
            for (data, id) in parsed.iter_mut().zip(&ids) {
                let row = self.inner.sealer.seal_patient(id.as_str(), 1, now, &data.to_parts(), None)?;
                let tokens = self.inner.sealer.tokens(&data.index_terms());
                patients.push((row, tokens));
                if home.location_id.is_some() || home.department_id.is_some() {
                    placements.push(
                        AccessChange::SetPlacement {
                            patient_id: id.to_string(),
                            location_id: home.location_id.clone(),
                            department_id: home.department_id.clone(),
                        }
                        .into(),
                    );
                }
            }
            let mut ops: Vec<Op> =
                vec![PatientChange::InsertPatients { patients, is_demo, organization_id: home.organization_id.clone() }.into()];
            ops.extend(placements);
            let d = Draft::new(now, AuditAction::Create, Outcome::Success)
                .by(actor)
                .resource(PATIENT, None)
                .purpose(purpose)
                .disclosing(&id_strings);
            let details = self
                .inner
                .sealer
                .seal_details(&d.event_id, serde_json::json!({"bulk": true, "count": ids.len()}).to_string().as_bytes())?;
            match self.inner.writer.write(ops, vec![d.details(details)], None).await {
                Ok(_) => {
                    return Ok(parsed
                        .into_iter()
                        .zip(ids)
                        .map(|(data, id)| PatientRecord { id, version: 1, last_updated: now, data, flags: vec![] })
                        .collect())
                }
                Err(CoreError::Conflict(c)) if c == "mrn" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CoreError::Internal("could not allocate unique MRNs".into()))
    }
}

impl Vault {
    /// Gives every record of the batch an MRN that neither the index nor another record of the
    /// batch holds.
    async fn draw_free_mrns(&self, batch: &mut [PatientData]) -> Result<(), CoreError> {
        let mrn_token =
            |m: &Mrn| self.inner.sealer.tokens(&[(IndexKind::Mrn, m.as_str().to_string())]).pop().map(|(_, t)| t).unwrap_or_default();
        let mut mrns: Vec<Mrn> = batch.iter().map(|_| Mrn::from_random(carevault_crypto::random_bytes::<8>())).collect();
        for _ in 0..20 {
            let tokens: Vec<Vec<u8>> = mrns.iter().map(mrn_token).collect();
            let taken = self.inner.store.taken_tokens(IndexKind::Mrn.code(), &tokens).await?;
            let mut seen = std::collections::HashSet::new();
            let mut redraw = 0;
            for (m, t) in mrns.iter_mut().zip(&tokens) {
                if taken.contains(t) || !seen.insert(t.clone()) {
                    *m = Mrn::from_random(carevault_crypto::random_bytes::<8>());
                    redraw += 1;
                }
            }
            if redraw == 0 {
                for (data, m) in batch.iter_mut().zip(&mrns) {
                    data.set_mrn(m);
                }
                return Ok(());
            }
        }
        Err(CoreError::Internal("could not allocate unique MRNs".into()))
    }
}
