//! The writes of keys: new data keys, re-sealing under them, and one-time upgrades recorded in
//! store_meta: what a job of this feature changes, applied by the audit writer inside its
//! transaction (and the job's savepoint), so each change commits with its audit records or not at
//! all. Each says whether it waits for free space and how a store error maps to a domain error that
//! fails only its job.

use carevault_store::{AllergyRow, PatientVersionRow, StoreError, WriteTx};

use crate::audit::change::{Applied, Change, OpFailure};
use crate::error::CoreError;

pub(crate) enum KeyChange {
    InsertDataKey {
        version: i64,
        wrapped: Vec<u8>,
        now: i64,
    },
    ResealPatient {
        row: Box<PatientVersionRow>,
        old_key_version: i64,
    },
    ResealUser {
        user_id: String,
        secret: Vec<u8>,
        key_version: i64,
        old_key_version: i64,
    },
    ResealRecord {
        id: String,
        version: i64,
        key_version: i64,
        body: Vec<u8>,
    },
    ResealAllergy {
        row: Box<AllergyRow>,
        old_key_version: i64,
    },
    /// Sets a `store_meta` value (one-time upgrades record that they are complete).
    SetMeta {
        key: String,
        value: String,
    },
}

impl Change for KeyChange {
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a> {
        Box::pin(async move {
            match self {
                Self::InsertDataKey { version, wrapped, now } => tx
                    .insert_key(&carevault_store::KeyRow {
                        purpose: crate::keys::DATA.into(),
                        version: *version,
                        wrapped: wrapped.clone(),
                        public_key: None,
                        created_at: *now,
                    })
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict(_) => {
                            OpFailure::Domain(CoreError::Conflict("a key rotation is already running elsewhere".into()))
                        }
                        other => OpFailure::Store(other),
                    }),
                Self::ResealPatient { row, old_key_version } => {
                    // false: changed concurrently; the rotation loop picks it up again if still old.
                    tx.reseal_patient_version(row, *old_key_version).await?;
                    Ok(())
                }
                Self::ResealUser { user_id, secret, key_version, old_key_version } => {
                    tx.reseal_user(user_id, *old_key_version, secret, *key_version).await?;
                    Ok(())
                }
                Self::ResealRecord { id, version, key_version, body } => {
                    tx.reseal_record(id, *version, *key_version, body).await?;
                    Ok(())
                }
                Self::ResealAllergy { row, old_key_version } => {
                    tx.reseal_allergy(row, *old_key_version).await?;
                    Ok(())
                }
                Self::SetMeta { key, value } => Ok(tx.set_meta(key, value).await?),
            }
        })
    }

    fn waits_for_space(&self) -> bool {
        true
    }
}
