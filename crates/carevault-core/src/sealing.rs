//! Sealing and opening of stored values. The only module that calls the keyring's `open`.
//! Opening patient data takes an audit [`Receipt`], which only the audit writer issues after
//! the audit record is durable: decrypting PHI without an audit record does not compile.

use std::sync::RwLock;

use carevault_crypto::{Aad, BlindIndexKey, KeyError, Keyring, MasterKey};
use carevault_domain::patient::{IndexKind, PatientData, PatientParts};
use carevault_store::{PatientVersionRow, Store};

use crate::audit::Receipt;
use crate::error::CoreError;
use crate::keys::{unwrap_data_keys, DATA};

const PATIENT_TABLE: &str = "patient_versions";
/// How often the current data-key version is re-read, so that a rotation started by another
/// process (the CLI, another instance) is picked up.
const REFRESH_MICROS: i64 = 2_000_000;

struct State {
    keyring: Keyring,
    refreshed_at: i64,
}

pub(crate) struct Sealer {
    state: RwLock<State>,
    master: MasterKey,
    blind: BlindIndexKey,
}

fn poisoned() -> CoreError {
    CoreError::Internal("keyring lock".into())
}

fn key_err(e: KeyError) -> CoreError {
    tracing::error!(error = %e, "sealed value could not be opened");
    CoreError::Internal("a stored value could not be decrypted".into())
}

/// A sealed value that does not open where it is: altered, or moved to another row, patient,
/// kind, parent or status. Key errors other than that stay internal errors.
fn tampered(e: KeyError, b: &Binding<'_>) -> CoreError {
    match e {
        KeyError::Open | KeyError::Format => {
            tracing::error!(table = b.table, id = b.id, "a sealed value does not belong to its row (altered or moved)");
            CoreError::Tampered { table: b.table.to_string(), id: b.id.to_string(), patient_id: b.patient_id.to_string() }
        }
        other => key_err(other),
    }
}

/// Everything a sealed clinical body is bound to: its table, id and version, and the plain
/// columns the core trusts for access control and signing rules: the patient, the kind, the
/// parent (encounter, note, appointment, consent kind), the status and the SHA-256 of signed
/// content. Moving a body to another row, or changing any of these columns in the database,
/// makes it fail to open.
pub(crate) struct Binding<'a> {
    pub table: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub patient_id: &'a str,
    pub kind: &'a str,
    pub parent_id: Option<&'a str>,
    pub status: &'a str,
    pub content_sha256: Option<&'a str>,
}

impl Binding<'_> {
    /// The AAD's row part: a version tag, then each column length-prefixed (absent and empty
    /// differ), so no two bindings encode alike.
    fn row_id(&self) -> String {
        let mut s = String::from("b2");
        let version = self.version.to_string();
        let parts: [Option<&str>; 7] =
            [Some(self.id), Some(&version), Some(self.patient_id), Some(self.kind), self.parent_id, Some(self.status), self.content_sha256];
        for p in parts {
            match p {
                Some(p) => s.push_str(&format!("|{}:{p}", p.len())),
                None => s.push_str("|-"),
            }
        }
        s
    }
}

impl<'a> Binding<'a> {
    pub(crate) fn record(table: &'a str, r: &'a carevault_store::RecordRow) -> Binding<'a> {
        Binding {
            table,
            id: &r.id,
            version: r.version,
            patient_id: &r.patient_id,
            kind: &r.kind,
            parent_id: r.parent_id.as_deref(),
            status: &r.status,
            content_sha256: r.content_sha256.as_deref(),
        }
    }

    /// Allergies: one row per version; `is_current` is not bound (it changes when the next
    /// version is written) and is never used for access decisions.
    pub(crate) fn allergy(table: &'a str, r: &'a carevault_store::AllergyRow) -> Binding<'a> {
        Binding {
            table,
            id: &r.id,
            version: r.version,
            patient_id: &r.patient_id,
            kind: "allergy",
            parent_id: None,
            status: "",
            content_sha256: None,
        }
    }
}

pub(crate) fn patient_row_id(patient_id: &str, version: i64) -> String {
    format!("{patient_id}/{version}")
}

impl Sealer {
    pub(crate) fn new(master: MasterKey, keyring: Keyring, blind: BlindIndexKey, now: i64) -> Sealer {
        Sealer { state: RwLock::new(State { keyring, refreshed_at: now }), master, blind }
    }

    pub(crate) fn current_version(&self) -> Result<u32, CoreError> {
        Ok(self.state.read().map_err(|_| poisoned())?.keyring.current())
    }

    /// Re-reads the data keys from the store when stale (or when `force`).
    pub(crate) async fn refresh(&self, store: &Store, now: i64, force: bool) -> Result<(), CoreError> {
        let stale = { now - self.state.read().map_err(|_| poisoned())?.refreshed_at > REFRESH_MICROS };
        if !(stale || force) {
            return Ok(());
        }
        let rows = store.keys(DATA).await?;
        let mut st = self.state.write().map_err(|_| poisoned())?;
        unwrap_data_keys(&self.master, &rows, &mut st.keyring).map_err(key_err)?;
        st.refreshed_at = now;
        Ok(())
    }

    pub(crate) fn wrap_new_data_key(&self, version: i64) -> Vec<u8> {
        let k = carevault_crypto::keyring::new_key_material();
        self.master.wrap(&crate::keys::label(DATA, version), &k)
    }

    fn seal(&self, version: Option<u32>, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        match version {
            Some(v) => st.keyring.seal_with(v, aad, plaintext),
            None => st.keyring.seal(aad, plaintext),
        }
        .map_err(key_err)
    }

    /// Seals every part of a patient version under the current key (or `version`).
    pub(crate) fn seal_patient(
        &self,
        patient_id: &str,
        version: i64,
        recorded_at: i64,
        parts: &PatientParts,
        key_version: Option<u32>,
    ) -> Result<PatientVersionRow, CoreError> {
        let kv = match key_version {
            Some(v) => v,
            None => self.current_version()?,
        };
        let row_id = patient_row_id(patient_id, version);
        let s = |column: &str, pt: &[u8]| self.seal(Some(kv), &Aad { table: PATIENT_TABLE, column, row_id: &row_id }, pt);
        Ok(PatientVersionRow {
            patient_id: patient_id.to_string(),
            version,
            recorded_at,
            key_version: i64::from(kv),
            name: s("name", &parts.name)?,
            birth_date: s("birth_date", &parts.birth_date)?,
            telecom: s("telecom", &parts.telecom)?,
            identifier: s("identifier", &parts.identifier)?,
            address: s("address", &parts.address)?,
            other: s("other", &parts.other)?,
        })
    }

    /// Opens a patient version. Needs the receipt of the audit record covering this patient.
    pub(crate) async fn open_patient(
        &self,
        store: &Store,
        now: i64,
        receipt: &Receipt,
        row: &PatientVersionRow,
    ) -> Result<PatientData, CoreError> {
        if !receipt.covers(&row.patient_id) {
            return Err(CoreError::Internal("audit receipt does not cover this patient".into()));
        }
        if !self.state.read().map_err(|_| poisoned())?.keyring.has(u32::try_from(row.key_version).unwrap_or(0)) {
            self.refresh(store, now, true).await?;
        }
        let parts = self.open_parts(row)?;
        PatientData::from_parts(&parts).map_err(|e| {
            tracing::error!(error = %e, patient = %row.patient_id, "stored patient could not be decoded");
            CoreError::Internal("stored record could not be decoded".into())
        })
    }

    fn open_parts(&self, row: &PatientVersionRow) -> Result<PatientParts, CoreError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        let row_id = patient_row_id(&row.patient_id, row.version);
        let o = |column: &str, blob: &[u8]| -> Result<Vec<u8>, CoreError> {
            Ok(st.keyring.open(&Aad { table: PATIENT_TABLE, column, row_id: &row_id }, blob).map_err(key_err)?.to_vec())
        };
        Ok(PatientParts {
            name: o("name", &row.name)?,
            birth_date: o("birth_date", &row.birth_date)?,
            telecom: o("telecom", &row.telecom)?,
            identifier: o("identifier", &row.identifier)?,
            address: o("address", &row.address)?,
            other: o("other", &row.other)?,
        })
    }

    /// Re-seals a patient version under `target` (key rotation). Needs an audit receipt.
    pub(crate) fn reseal_patient(&self, receipt: &Receipt, row: &PatientVersionRow, target: u32) -> Result<PatientVersionRow, CoreError> {
        if !receipt.covers(&row.patient_id) {
            return Err(CoreError::Internal("audit receipt does not cover this patient".into()));
        }
        let parts = self.open_parts(row)?;
        self.seal_patient(&row.patient_id, row.version, row.recorded_at, &parts, Some(target))
    }

    /// Blind-index tokens for (kind, normalized text) terms.
    pub(crate) fn tokens(&self, terms: &[(IndexKind, String)]) -> Vec<(i64, Vec<u8>)> {
        terms.iter().map(|(k, t)| (k.code(), self.blind.token(*k as u8, t).to_vec())).collect()
    }

    /// Audit details may hold PHI (search terms): sealed, bound to the event id.
    pub(crate) fn seal_details(&self, event_id: &str, details: &[u8]) -> Result<Vec<u8>, CoreError> {
        self.seal(None, &Aad { table: "audit_events", column: "details", row_id: event_id }, details)
    }

    /// Credentials (TOTP secrets) are sealed too, but they are not patient data.
    pub(crate) fn seal_credential(&self, user_id: &str, secret: &[u8], version: Option<u32>) -> Result<Vec<u8>, CoreError> {
        self.seal(version, &Aad { table: "users", column: "totp_secret", row_id: user_id }, secret)
    }

    pub(crate) async fn open_credential(&self, store: &Store, now: i64, user_id: &str, blob: &[u8]) -> Result<Vec<u8>, CoreError> {
        let v = Keyring::version_of(blob).map_err(key_err)?;
        if !self.state.read().map_err(|_| poisoned())?.keyring.has(v) {
            self.refresh(store, now, true).await?;
        }
        let st = self.state.read().map_err(|_| poisoned())?;
        Ok(st.keyring.open(&Aad { table: "users", column: "totp_secret", row_id: user_id }, blob).map_err(key_err)?.to_vec())
    }

    /// Free text of the access model that may hold PHI (a grant's or break-glass's reason, a
    /// review note), bound to its table, column and row.
    pub(crate) fn seal_note(&self, table: &str, column: &str, row_id: &str, text: &str) -> Result<Vec<u8>, CoreError> {
        self.seal(None, &Aad { table, column, row_id }, text.as_bytes())
    }

    /// Opens such a note about a patient; reading it is audited first, so it takes the receipt,
    /// which must cover that patient.
    pub(crate) async fn open_note(
        &self,
        store: &Store,
        now: i64,
        receipt: &Receipt,
        patient_id: &str,
        (table, column, row_id): (&str, &str, &str),
        blob: &[u8],
    ) -> Result<String, CoreError> {
        if !receipt.covers(patient_id) {
            return Err(CoreError::Internal("audit receipt does not cover this patient".into()));
        }
        self.ensure_version(store, now, blob).await?;
        let st = self.state.read().map_err(|_| poisoned())?;
        let pt = st.keyring.open(&Aad { table, column, row_id }, blob).map_err(key_err)?;
        String::from_utf8(pt.to_vec()).map_err(|_| CoreError::Internal("stored note is not text".into()))
    }

    async fn ensure_version(&self, store: &Store, now: i64, blob: &[u8]) -> Result<(), CoreError> {
        let v = Keyring::version_of(blob).map_err(key_err)?;
        if !self.state.read().map_err(|_| poisoned())?.keyring.has(v) {
            self.refresh(store, now, true).await?;
        }
        Ok(())
    }

    /// Seals a clinical body (chart records, allergies), bound to every plain column of its row
    /// that the core trusts (see [`Binding`]).
    pub(crate) fn seal_clinical(&self, binding: &Binding<'_>, body: &[u8], key_version: Option<u32>) -> Result<(Vec<u8>, i64), CoreError> {
        let kv = match key_version {
            Some(v) => v,
            None => self.current_version()?,
        };
        let row_id = binding.row_id();
        Ok((self.seal(Some(kv), &Aad { table: binding.table, column: "body", row_id: &row_id }, body)?, i64::from(kv)))
    }

    /// Opens a clinical body; the receipt must cover its patient, and the row's plain columns
    /// must be the ones it was sealed with. A value that does not open is `Tampered`.
    pub(crate) async fn open_clinical(
        &self,
        store: &Store,
        now: i64,
        receipt: &Receipt,
        binding: &Binding<'_>,
        blob: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        self.open_body(store, now, receipt, binding, &binding.row_id(), blob).await
    }

    /// Seals a body the way stores made before the full binding did (id and version only): for
    /// the test of the upgrade that re-seals such bodies.
    #[cfg(test)]
    pub(crate) fn seal_clinical_unbound_for_tests(&self, binding: &Binding<'_>, body: &[u8]) -> Result<(Vec<u8>, i64), CoreError> {
        let kv = self.current_version()?;
        let row_id = patient_row_id(binding.id, binding.version);
        Ok((self.seal(Some(kv), &Aad { table: binding.table, column: "body", row_id: &row_id }, body)?, i64::from(kv)))
    }

    /// Opens a body sealed before bindings covered the plain columns (id and version only):
    /// used once, by the upgrade that re-seals such rows, never by a read.
    pub(crate) async fn open_clinical_unbound(
        &self,
        store: &Store,
        now: i64,
        receipt: &Receipt,
        binding: &Binding<'_>,
        blob: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        self.open_body(store, now, receipt, binding, &patient_row_id(binding.id, binding.version), blob).await
    }

    async fn open_body(
        &self,
        store: &Store,
        now: i64,
        receipt: &Receipt,
        binding: &Binding<'_>,
        row_id: &str,
        blob: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        if !receipt.covers_clinical(binding.patient_id) {
            return Err(CoreError::Internal("audit receipt does not cover this patient's clinical data".into()));
        }
        self.ensure_version(store, now, blob).await?;
        let st = self.state.read().map_err(|_| poisoned())?;
        st.keyring.open(&Aad { table: binding.table, column: "body", row_id }, blob).map(|p| p.to_vec()).map_err(|e| tampered(e, binding))
    }

    /// A keyed hash (blind-index key, its own domain byte) of a short secret such as an
    /// invitation code: a stolen database does not allow guessing it offline.
    pub(crate) fn keyed_hash(&self, domain: u8, text: &str) -> Vec<u8> {
        self.blind.token(domain, text).to_vec()
    }

    /// Keyed hash of a recovery code: a stolen database does not allow guessing codes offline.
    pub(crate) fn recovery_code_hash(&self, user_id: &str, code: &str) -> Vec<u8> {
        self.blind.token(RECOVERY_CODE_DOMAIN, &format!("{user_id}:{code}")).to_vec()
    }
}

impl Sealer {
    /// Credential material other than TOTP secrets (passkeys, WebAuthn ceremony state): sealed,
    /// bound to table, column and row. Not patient data, so no receipt.
    pub(crate) fn seal_secret(&self, (table, column, row_id): (&str, &str, &str), bytes: &[u8]) -> Result<Vec<u8>, CoreError> {
        self.seal(None, &Aad { table, column, row_id }, bytes)
    }

    pub(crate) async fn open_secret(
        &self,
        store: &Store,
        now: i64,
        (table, column, row_id): (&str, &str, &str),
        blob: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        self.ensure_version(store, now, blob).await?;
        let st = self.state.read().map_err(|_| poisoned())?;
        Ok(st.keyring.open(&Aad { table, column, row_id }, blob).map_err(key_err)?.to_vec())
    }

    /// The stable WebAuthn user handle of an account: keyed, so it reveals nothing of the id.
    pub(crate) fn user_handle(&self, user_id: &str) -> [u8; 16] {
        self.blind.token(USER_HANDLE_DOMAIN, user_id)
    }
}

/// Where a document's content key is kept: a field of the record's sealed body, taken out by
/// the chart module before any record leaves the core.
pub(crate) const DOCUMENT_KEY_FIELD: &str = "key";

/// The AAD of a document's sealed stream (bound to its record id).
fn document_aad(id: &str) -> Vec<u8> {
    format!("carevault-document:{id}").into_bytes()
}

/// A document sealed for its file: the stream, what it holds, and the key field to store in
/// the record's sealed body. The key exists only here and, sealed, in that body.
pub(crate) struct SealedDocument {
    pub stream: Vec<u8>,
    pub size: u64,
    pub sha256: String,
    pub key_field: String,
}

impl Sealer {
    /// Seals a document's content under a fresh key of its own.
    pub(crate) fn seal_document(&self, id: &str, content: &[u8]) -> Result<SealedDocument, CoreError> {
        let key = carevault_crypto::keyring::new_key_material();
        let (stream, summary) = carevault_crypto::stream::seal_all(&key, &document_aad(id), content)
            .map_err(|e| CoreError::Internal(format!("document sealing: {e}")))?;
        use base64::Engine;
        Ok(SealedDocument {
            stream,
            size: summary.plaintext_len,
            sha256: hex::encode(summary.plaintext_sha256),
            key_field: base64::engine::general_purpose::STANDARD.encode(key.as_slice()),
        })
    }

    /// Opens a document's stream: the receipt must cover its patient (an export audited before
    /// this call); the key is read from the record's sealed body here and goes nowhere else.
    /// The content must hash to the record's signed SHA-256.
    pub(crate) async fn open_document(
        &self,
        store: &Store,
        now: i64,
        receipt: &Receipt,
        binding: &Binding<'_>,
        body: &[u8],
        stream: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CoreError> {
        use base64::Engine;
        if binding.kind != "document" {
            return Err(CoreError::Internal("not a document".into()));
        }
        let plain = zeroize::Zeroizing::new(self.open_clinical(store, now, receipt, binding, body).await?);
        let fields: serde_json::Value =
            serde_json::from_slice(&plain).map_err(|_| CoreError::Internal("stored record could not be decoded".into()))?;
        let key = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(fields[DOCUMENT_KEY_FIELD].as_str().unwrap_or(""))
                .map_err(|_| CoreError::Internal("document key".into()))?,
        );
        let key: &[u8; 32] = key.as_slice().try_into().map_err(|_| CoreError::Internal("document key".into()))?;
        let (content, summary) = carevault_crypto::stream::open_all(key, &document_aad(binding.id), stream).map_err(|e| {
            tracing::error!(id = binding.id, error = %e, "a document file does not open");
            CoreError::Tampered { table: "documents".into(), id: binding.id.to_string(), patient_id: binding.patient_id.to_string() }
        })?;
        if binding.content_sha256 != Some(hex::encode(summary.plaintext_sha256).as_str()) {
            return Err(CoreError::Tampered {
                table: "documents".into(),
                id: binding.id.to_string(),
                patient_id: binding.patient_id.to_string(),
            });
        }
        Ok(content)
    }
}

const USER_HANDLE_DOMAIN: u8 = 201;

/// Domain byte of recovery-code hashes in the blind-index HMAC (index kinds use 1–13).
const RECOVERY_CODE_DOMAIN: u8 = 200;
