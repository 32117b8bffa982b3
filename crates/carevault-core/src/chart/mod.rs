//! The chart through the chokepoint: encounters, SOAP notes (draft until signed; signing locks
//! the content, records its SHA-256 and a Provenance; afterwards only signed addenda; co-signature
//! where needed) and diagnoses with ICD-10-CM codes. Every record is one `records` row whose body
//! is sealed (AES-256-GCM, bound to its id, version, patient, kind, parent, status and signed hash);
//! reading it is audited first (`Vault::audited_read`). This file holds the records' common
//! paths (sealing, locating, reading, listing, inserting, updating); `encounters`, `notes`,
//! `conditions` (and ICD-10-CM) and `fhir` (rendering) the rest.

pub(crate) mod changes;
mod conditions;
mod encounters;
mod fhir;
mod notes;

use carevault_domain::icd10::Icd10Code;
use carevault_domain::{AuditAction, InputError, Operation, Outcome, PurposeOfUse};
use carevault_store::RecordRow;
use serde_json::{json, Value};

use crate::actor::Actor;
use crate::audit::writer::Op;
use crate::audit::{Draft, Receipt};
use crate::authz::Allowed;
use crate::authz::PatientFacts;
use crate::chart::changes::ChartChange;
use crate::error::CoreError;
use crate::read::Access;
use crate::schedule::changes::ScheduleChange;
use crate::sealing::Binding;
use crate::vault::Vault;

pub(crate) const TABLE: &str = "records";

pub(crate) fn bad(path: &str, message: &str) -> CoreError {
    CoreError::Invalid(InputError::value(path, message))
}

pub(crate) fn new_record_id() -> String {
    hex::encode(carevault_crypto::random_bytes::<16>())
}

pub(crate) fn is_record_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// FHIR resource type of a record kind.
fn resource_of(kind: &str) -> &'static str {
    match kind {
        "encounter" => "Encounter",
        "condition" => "Condition",
        "consent" => "Consent",
        _ => "DocumentReference",
    }
}

/// A decrypted chart record.
#[derive(Clone)]
pub struct ChartRecord {
    pub id: String,
    pub kind: String,
    pub patient_id: String,
    pub parent_id: Option<String>,
    pub status: String,
    pub version: i64,
    pub content_sha256: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The decrypted body (for a document: its metadata, never its content key).
    pub body: Value,
    /// An attached document's metadata, typed: what crosses the core's boundary about a
    /// document. Its content key stays inside the sealing module.
    pub document: Option<DocumentMeta>,
}

/// An attached document's metadata (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta {
    pub title: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// Takes the content key out of a document's body (it stays in the sealed row) and reads its
/// metadata; other kinds have none.
pub(crate) fn document_meta(kind: &str, body: &mut Value) -> Option<DocumentMeta> {
    if kind != "document" {
        return None;
    }
    if let Some(o) = body.as_object_mut() {
        o.remove(crate::sealing::DOCUMENT_KEY_FIELD);
    }
    Some(DocumentMeta {
        title: body["title"].as_str().unwrap_or_default().to_string(),
        content_type: body["contentType"].as_str().unwrap_or("application/octet-stream").to_string(),
        size: body["size"].as_u64().unwrap_or(0),
        sha256: body["sha256"].as_str().unwrap_or_default().to_string(),
    })
}

/// One of the actor's draft notes, as listed on their task list (no content).
#[derive(Debug, Clone)]
pub struct DraftNote {
    pub id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for ChartRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChartRecord({} {} v{} {})", self.kind, self.id, self.version, self.status)
    }
}

fn text_field(body: &Value, key: &str, path: &str, max: usize, required: bool) -> Result<Option<String>, CoreError> {
    match body.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(bad(path, "required")),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.chars().count() > max {
                return Err(bad(path, &format!("at most {max} characters")));
            }
            if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
                return Err(bad(path, "no control characters"));
            }
            if required && t.is_empty() {
                return Err(bad(path, "must not be empty"));
            }
            Ok(Some(t.replace("\r\n", "\n")))
        }
        Some(_) => Err(bad(path, "a string")),
    }
}

/// The four SOAP sections of a note, validated: each up to 20,000 characters, at least one given.
pub(crate) fn soap_sections(body: &Value) -> Result<Value, CoreError> {
    let mut out = serde_json::Map::new();
    for k in ["subjective", "objective", "assessment", "plan"] {
        if let Some(t) = text_field(body, k, k, 20_000, false)? {
            out.insert(k.into(), Value::String(t));
        }
    }
    if out.values().all(|v| v.as_str().is_none_or(str::is_empty)) {
        return Err(bad("subjective", "a note needs at least one of subjective, objective, assessment, plan"));
    }
    Ok(Value::Object(out))
}

/// The exact text a signature covers: the sections in fixed order.
pub(crate) fn signed_content(kind: &str, body: &Value) -> String {
    let mut s = String::new();
    if kind == "addendum" {
        s.push_str(body["text"].as_str().unwrap_or(""));
        return s;
    }
    for (k, title) in [("subjective", "Subjective"), ("objective", "Objective"), ("assessment", "Assessment"), ("plan", "Plan")] {
        if let Some(t) = body[k].as_str() {
            s.push_str(title);
            s.push_str(":\n");
            s.push_str(t);
            s.push_str("\n\n");
        }
    }
    s
}

impl Vault {
    /// Seals `body` into `row`, bound to the row's plain columns (set them all first).
    pub(crate) fn seal_record(&self, row: &mut RecordRow, body: &Value) -> Result<(), CoreError> {
        let plain = serde_json::to_vec(body).map_err(|_| CoreError::Internal("encode".into()))?;
        let (sealed, key_version) = self.inner.sealer.seal_clinical(&Binding::record(TABLE, row), &plain, None)?;
        row.body = sealed;
        row.key_version = key_version;
        Ok(())
    }

    pub(crate) async fn open_chart(&self, receipt: &Receipt, row: &RecordRow) -> Result<ChartRecord, CoreError> {
        let now = self.inner.clock.now_micros();
        let plain = match self.inner.sealer.open_clinical(&self.inner.store, now, receipt, &Binding::record(TABLE, row), &row.body).await {
            Ok(p) => p,
            Err(e) => return Err(self.integrity_failure(receipt, e).await),
        };
        let mut body: Value =
            serde_json::from_slice(&plain).map_err(|_| CoreError::Internal("stored record could not be decoded".into()))?;
        let document = document_meta(&row.kind, &mut body);
        Ok(ChartRecord {
            document,
            id: row.id.clone(),
            kind: row.kind.clone(),
            patient_id: row.patient_id.clone(),
            parent_id: row.parent_id.clone(),
            status: row.status.clone(),
            version: row.version,
            content_sha256: row.content_sha256.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            body,
        })
    }

    /// Loads a record of one of `kinds` and gates `op` on its patient; unknown ids are audited
    /// as not found (after the permission check, so probing tells nothing).
    pub(crate) async fn gated_record(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        op: Operation,
        action: AuditAction,
        kinds: &[&str],
        id: &str,
    ) -> Result<(RecordRow, Allowed), CoreError> {
        let row = self.locate_record(actor, purpose, op, action, kinds, id).await?;
        let (_, allowed) = self.gate_patient(actor, op, purpose, action, resource_of(&row.kind), &row.patient_id).await?;
        Ok((row, allowed))
    }

    /// Finds a record of one of `kinds` by id (its plain columns: whose it is), before the gate;
    /// an unknown id is refused to anyone without the permission, else audited as not found.
    pub(crate) async fn locate_record(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        op: Operation,
        action: AuditAction,
        kinds: &[&str],
        id: &str,
    ) -> Result<RecordRow, CoreError> {
        let row = if is_record_id(id) { self.inner.store.record(id).await?.filter(|r| kinds.contains(&r.kind.as_str())) } else { None };
        let resource = resource_of(kinds.first().copied().unwrap_or("note"));
        let Some(row) = row else {
            self.gate(actor, op, purpose, &crate::authz::Target::Anywhere, (resource, None)).await?;
            let d =
                Draft::new(self.inner.clock.now_micros(), action, Outcome::NotFound).by(actor).resource(resource, None).purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("{resource}/{}", crate::audit::audit_safe_id(id)) });
        };
        Ok(row)
    }

    /// Audits a refusal on a record (its patient known) and returns the error.
    pub(crate) async fn refuse_on(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        action: AuditAction,
        (resource, id, patient): (&str, Option<&str>, &str),
        e: CoreError,
    ) -> CoreError {
        let d = Draft::new(self.inner.clock.now_micros(), action, e.outcome())
            .by(actor)
            .resource(resource, id)
            .patient(patient)
            .purpose(purpose);
        match self.inner.writer.append(d).await {
            Ok(_) => e,
            Err(w) => w,
        }
    }

    /// Inserts a new record, audited as a create on its patient.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_chart_record(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        allowed: &Allowed,
        id: Option<String>,
        (kind, patient_id, parent_id, status): (&str, &str, Option<&str>, &str),
        body: Value,
        content_sha256: Option<String>,
        extra_ops: Vec<Op>,
    ) -> Result<ChartRecord, CoreError> {
        let now = self.inner.clock.now_micros();
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let id = id.unwrap_or_else(new_record_id);
        let mut row = RecordRow {
            id: id.clone(),
            kind: kind.into(),
            patient_id: patient_id.into(),
            parent_id: parent_id.map(str::to_string),
            status: status.into(),
            version: 1,
            key_version: 0,
            body: Vec::new(),
            content_sha256: content_sha256.clone(),
            created_by: actor.user_id.as_str().to_string(),
            created_at: now,
            updated_at: now,
        };
        self.seal_record(&mut row, &body)?;
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource(resource_of(kind), Some(&id))
            .patient(patient_id)
            .purpose(purpose)
            .review(allowed);
        let mut ops = vec![ChartChange::InsertRecord(Box::new(row)).into()];
        ops.extend(extra_ops);
        self.inner.writer.write(ops, vec![ev], None).await?;
        let mut body = body;
        let document = document_meta(kind, &mut body);
        Ok(ChartRecord {
            document,
            id,
            kind: kind.into(),
            patient_id: patient_id.into(),
            parent_id: parent_id.map(str::to_string),
            status: status.into(),
            version: 1,
            content_sha256,
            created_by: actor.user_id.as_str().to_string(),
            created_at: now,
            updated_at: now,
            body,
        })
    }

    /// Replaces a record's body and status as its next version, only if it is still at the
    /// version and status read (a concurrent change loses with a conflict).
    pub(crate) async fn update_chart_record(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        allowed: &Allowed,
        old: &RecordRow,
        (status, body, content_sha256): (&str, Value, Option<String>),
        (extra_ops, extra_events): (Vec<Op>, Vec<Draft>),
    ) -> Result<ChartRecord, CoreError> {
        let now = self.inner.clock.now_micros();
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let version = old.version + 1;
        let mut row = RecordRow {
            status: status.into(),
            version,
            key_version: 0,
            body: Vec::new(),
            content_sha256: content_sha256.clone(),
            updated_at: now,
            ..old.clone()
        };
        self.seal_record(&mut row, &body)?;
        let resource = resource_of(&old.kind);
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource(resource, Some(&old.id))
            .patient(&old.patient_id)
            .purpose(purpose)
            .review(allowed);
        let lost = Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource(resource, Some(&old.id)).purpose(purpose);
        let op =
            ChartChange::UpdateRecord { row: Box::new(row), expected_version: old.version, expected_status: old.status.clone() }.into();
        let mut ops = vec![op];
        ops.extend(extra_ops);
        let mut events = vec![ev];
        events.extend(extra_events);
        self.inner.writer.write(ops, events, Some(lost)).await?;
        let mut body = body;
        let document = document_meta(&old.kind, &mut body);
        Ok(ChartRecord {
            document,
            id: old.id.clone(),
            kind: old.kind.clone(),
            patient_id: old.patient_id.clone(),
            parent_id: old.parent_id.clone(),
            status: status.into(),
            version,
            content_sha256,
            created_by: old.created_by.clone(),
            created_at: old.created_at,
            updated_at: now,
            body,
        })
    }

    /// Reads one record (audited), decrypted.
    pub(crate) async fn read_record(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        op: Operation,
        kinds: &[&str],
        id: &str,
    ) -> Result<ChartRecord, CoreError> {
        let row = self.locate_record(actor, purpose, op, AuditAction::Read, kinds, id).await?;
        let a = Access {
            actor,
            purpose,
            op,
            action: AuditAction::Read,
            resource: resource_of(&row.kind),
            id: Some(id),
            patient_id: &row.patient_id,
        };
        self.audited_read(
            a,
            || format!("{}/{id}", resource_of(&row.kind)),
            async || Ok(Some(row.clone())),
            async |receipt: &Receipt, _: &PatientFacts, row: RecordRow| self.open_chart(receipt, &row).await,
        )
        .await
    }

    /// Every record of some kinds of one patient (audited as one search), decrypted, oldest first.
    pub(crate) async fn list_records(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        op: Operation,
        kinds: &[&str],
        patient_id: &str,
    ) -> Result<Vec<ChartRecord>, CoreError> {
        let resource = resource_of(kinds.first().copied().unwrap_or("note"));
        let a = Access { actor, purpose, op, action: AuditAction::Search, resource, id: None, patient_id };
        self.audited_read(
            a,
            || format!("Patient/{patient_id}"),
            async || {
                let mut rows = Vec::new();
                for k in kinds {
                    rows.extend(self.inner.store.patient_records(patient_id, k).await?);
                }
                if kinds.len() > 1 {
                    rows.sort_by_key(|r| (r.created_at, r.id.clone()));
                }
                Ok(Some(rows))
            },
            async |receipt: &Receipt, _: &PatientFacts, rows: Vec<RecordRow>| {
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(self.open_chart(receipt, r).await?);
                }
                Ok(out)
            },
        )
        .await
    }
}
