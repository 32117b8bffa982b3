//! The writes of patient registration and demographic changes: what a job of this feature changes,
//! applied by the audit writer inside its transaction (and the job's savepoint), so each change
//! commits with its audit records or not at all. Each says whether it waits for free space and how
//! a store error maps to a domain error that fails only its job.

use carevault_store::{NewPatient, PatientVersionRow, StoreError, WriteTx};

use crate::audit::change::{Applied, Change, OpFailure};
use crate::error::CoreError;

/// A sealed first version with its blind-index tokens (kind, token).
pub(crate) type Sealed = (PatientVersionRow, Vec<(i64, Vec<u8>)>);

pub(crate) enum PatientChange {
    InsertPatient {
        row: Box<PatientVersionRow>,
        tokens: Vec<(i64, Vec<u8>)>,
        is_demo: bool,
        organization_id: String,
    },
    /// A bulk registration: every patient's rows in a few multi-row statements.
    InsertPatients {
        patients: Vec<Sealed>,
        is_demo: bool,
        organization_id: String,
    },
    UpdatePatient {
        row: Box<PatientVersionRow>,
        expected: i64,
        tokens: Vec<(i64, Vec<u8>)>,
        mrn_token: (i64, Vec<u8>),
    },
}

impl Change for PatientChange {
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a> {
        Box::pin(async move {
            match self {
                Self::InsertPatient { row, tokens, is_demo, organization_id } => {
                    insert(tx, &[NewPatient { row, organization_id, is_demo: *is_demo, tokens }]).await
                }
                Self::InsertPatients { patients, is_demo, organization_id } => {
                    let new: Vec<NewPatient<'_>> =
                        patients.iter().map(|(row, tokens)| NewPatient { row, organization_id, is_demo: *is_demo, tokens }).collect();
                    insert(tx, &new).await
                }
                Self::UpdatePatient { row, expected, tokens, mrn_token } => {
                    let id = &row.patient_id;
                    let Some(current) = tx.current_patient_version(id).await? else {
                        return Err(OpFailure::Domain(CoreError::NotFound { resource: format!("Patient/{id}") }));
                    };
                    if current != *expected {
                        return Err(OpFailure::Domain(CoreError::VersionConflict { expected: *expected, current }));
                    }
                    if !tx.patient_has_token(id, mrn_token.0, &mrn_token.1).await? {
                        return Err(OpFailure::Domain(CoreError::Invalid(carevault_domain::InputError::value(
                            "Patient.identifier",
                            "the medical record number assigned by carevault must be kept unchanged",
                        ))));
                    }
                    if !tx.bump_patient_version(id, *expected, row.recorded_at).await? {
                        return Err(OpFailure::Domain(CoreError::VersionConflict { expected: *expected, current }));
                    }
                    tx.insert_patient_version(row).await?;
                    tx.replace_patient_index(id, tokens).await.map_err(|e| match e {
                        StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("mrn".into())),
                        other => OpFailure::Store(other),
                    })
                }
            }
        })
    }

    fn waits_for_space(&self) -> bool {
        true
    }
}

/// New patients' rows; an MRN already taken is the job's conflict (drawn again by the caller).
async fn insert(tx: &mut WriteTx, new: &[NewPatient<'_>]) -> Result<(), OpFailure> {
    tx.insert_patients(new).await.map_err(|e| match e {
        StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("mrn".into())),
        other => OpFailure::Store(other),
    })
}
