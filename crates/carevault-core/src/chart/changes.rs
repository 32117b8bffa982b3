//! The writes of the chart: records (encounters, notes, diagnoses, documents, consents), allergies,
//! consent templates, ICD-10-CM codes: what a job of this feature changes, applied by the audit
//! writer inside its transaction (and the job's savepoint), so each change commits with its audit
//! records or not at all. Each says whether it waits for free space and how a store error maps to a
//! domain error that fails only its job.

use carevault_store::{AllergyRow, ConsentTemplateRow, RecordRow, StoreError, WriteTx};

use crate::audit::change::{Applied, Change, OpFailure};
use crate::error::CoreError;

pub(crate) enum ChartChange {
    InsertRecord(Box<RecordRow>),
    /// Fails the job with a conflict when the record is no longer at that version and status.
    UpdateRecord {
        row: Box<RecordRow>,
        expected_version: i64,
        expected_status: String,
    },
    InsertConsentTemplate(Box<ConsentTemplateRow>),
    UpsertIcd10 {
        codes: Vec<(String, String, bool)>,
        release: String,
    },
    InsertAllergy(Box<AllergyRow>),
}

impl Change for ChartChange {
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a> {
        Box::pin(async move {
            match self {
                Self::InsertRecord(r) => Ok(tx.insert_record(r).await?),
                Self::UpdateRecord { row, expected_version, expected_status } => {
                    if tx.update_record(row, *expected_version, expected_status).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::Conflict("the record changed meanwhile; reload it".into())))
                    }
                }
                Self::InsertConsentTemplate(t) => tx.insert_consent_template(t).await.map_err(|e| match e {
                    StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this template version exists already".into())),
                    other => OpFailure::Store(other),
                }),
                Self::UpsertIcd10 { codes, release } => Ok(tx.upsert_icd10(codes, release).await?),
                Self::InsertAllergy(a) => Ok(tx.insert_allergy(a).await?),
            }
        })
    }

    fn waits_for_space(&self) -> bool {
        true
    }
}
