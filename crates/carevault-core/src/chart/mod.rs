//! The chart through the chokepoint: encounters, SOAP notes (draft until signed; signing locks
//! the content, records its SHA-256 and a Provenance; afterwards only signed addenda; co-signature
//! where needed) and diagnoses with ICD-10-CM codes. Every record is one `records` row whose body
//! is sealed (AES-256-GCM, bound to table, id and version); reading it is audited first.

pub(crate) mod changes;

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

    // ----- encounters -----

    /// Opens an encounter: from a booked/arrived appointment (its patient, practitioner and
    /// location; the appointment moves to checked-in) or a walk-in (patient, practitioner and
    /// location given).
    pub async fn start_encounter(&self, actor: &Actor, purpose: PurposeOfUse, req: &Value) -> Result<ChartRecord, CoreError> {
        let appointment = req.get("appointmentId").and_then(Value::as_str);
        let (patient, practitioner, location, appt) = match appointment {
            Some(aid) => {
                let row = if aid.len() == 32 && aid.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.inner.store.appointment(aid).await?
                } else {
                    None
                };
                let Some(row) = row else {
                    self.gate(actor, Operation::EncounterCreate, purpose, &crate::authz::Target::Anywhere, ("Encounter", None)).await?;
                    return Err(CoreError::NotFound { resource: format!("Appointment/{}", crate::audit::audit_safe_id(aid)) });
                };
                (row.patient_id.clone(), row.practitioner_id.clone(), row.location_id.clone(), Some(row))
            }
            None => {
                let field = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_string);
                // All three are required: a missing practitioner or location is a malformed
                // request (400), not a reference to a record that does not exist (404).
                let (Some(patient), Some(practitioner), Some(location)) =
                    (field("patientId"), field("practitionerId"), field("locationId"))
                else {
                    self.gate(actor, Operation::EncounterCreate, purpose, &crate::authz::Target::Anywhere, ("Encounter", None)).await?;
                    let missing =
                        ["patientId", "practitionerId", "locationId"].into_iter().find(|k| field(k).is_none()).unwrap_or("patientId");
                    return Err(bad(missing, "a walk-in encounter needs patientId, practitionerId and locationId (or give appointmentId)"));
                };
                (patient, practitioner, location, None)
            }
        };
        let (_, allowed) =
            self.gate_patient(actor, Operation::EncounterCreate, purpose, AuditAction::Create, "Encounter", &patient).await?;
        let now = self.inner.clock.now_micros();
        let checked: Result<(), CoreError> = async {
            // Ids that no record can have are not looked up (PostgreSQL refuses a NUL byte in
            // a text parameter: that was a 500).
            let plausible = |s: &str| s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !plausible(&location) {
                return Err(CoreError::NotFound { resource: format!("Location/{}", crate::audit::audit_safe_id(&location)) });
            }
            if !plausible(&practitioner) {
                return Err(CoreError::NotFound { resource: "a role of this practitioner at this location".into() });
            }
            self.practice_place(&practitioner, &location).await?;
            if let Some(a) = &appt {
                if !["booked", "arrived", "checked-in"].contains(&a.status.as_str()) {
                    return Err(CoreError::Conflict(format!(
                        "the appointment is {}; an encounter needs a booked or arrived one",
                        a.status
                    )));
                }
                let open = self.inner.store.child_records(&a.id).await?;
                if open.iter().any(|r| r.kind == "encounter") {
                    return Err(CoreError::Conflict("this appointment already has an encounter".into()));
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = checked {
            return Err(self.refuse_on(actor, purpose, AuditAction::Create, ("Encounter", None, &patient), e).await);
        }
        let mut extra = Vec::new();
        if let Some(a) = &appt {
            if a.status != "checked-in" {
                extra.push(
                    ScheduleChange::AppointmentStatus {
                        id: a.id.clone(),
                        from: a.status.clone(),
                        to: "checked-in".into(),
                        reason: None,
                        actor: actor.audit_name(),
                        at: now,
                    }
                    .into(),
                );
            }
        }
        let body = json!({
            "practitionerId": practitioner,
            "locationId": location,
            "appointmentId": appt.as_ref().map(|a| a.id.clone()),
            "class": if appt.is_some() { "AMB" } else { "AMB-walk-in" },
            "start": now,
        });
        let parent = appt.as_ref().map(|a| a.id.as_str());
        self.insert_chart_record(actor, purpose, &allowed, None, ("encounter", &patient, parent, "in-progress"), body, None, extra).await
    }

    /// Finishes an encounter (no more notes can be started on it; addenda remain possible).
    pub async fn finish_encounter(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<ChartRecord, CoreError> {
        let (row, allowed) = self.gated_record(actor, purpose, Operation::EncounterFinish, AuditAction::Update, &["encounter"], id).await?;
        if row.status != "in-progress" {
            let e = CoreError::Conflict(format!("the encounter is {}", row.status));
            return Err(self.refuse_on(actor, purpose, AuditAction::Update, ("Encounter", Some(id), &row.patient_id), e).await);
        }
        let receipt = self.audit_read_for_change(actor, purpose, &row, &allowed).await?;
        let rec = self.open_chart(&receipt, &row).await?;
        let mut body = rec.body;
        body["end"] = json!(self.inner.clock.now_micros());
        // The encounter and its appointment (fulfilled) change in one transaction.
        let mut extra = (Vec::new(), Vec::new());
        if let Some(aid) = row.parent_id.as_deref() {
            if let Some(a) = self.inner.store.appointment(aid).await?.filter(|a| a.status == "checked-in") {
                let now = self.inner.clock.now_micros();
                extra.0.push(
                    ScheduleChange::AppointmentStatus {
                        id: a.id,
                        from: "checked-in".into(),
                        to: "fulfilled".into(),
                        reason: None,
                        actor: actor.audit_name(),
                        at: now,
                    }
                    .into(),
                );
                extra.1.push(
                    Draft::new(now, AuditAction::Update, Outcome::Success)
                        .by(actor)
                        .resource("Appointment", Some(aid))
                        .patient(&row.patient_id)
                        .purpose(purpose),
                );
            }
        }
        self.update_chart_record(actor, purpose, &allowed, &row, ("finished", body, None), extra).await
    }

    /// Reading a record's current body in order to change it is itself audited (a read).
    async fn audit_read_for_change(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        row: &RecordRow,
        allowed: &Allowed,
    ) -> Result<Receipt, CoreError> {
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource(resource_of(&row.kind), Some(&row.id))
            .patient(&row.patient_id)
            .purpose(purpose)
            .review(allowed);
        self.inner.writer.append(d).await
    }

    pub async fn read_encounter(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<ChartRecord, CoreError> {
        self.read_record(actor, purpose, Operation::EncounterRead, &["encounter"], id).await
    }

    pub async fn patient_encounters(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<ChartRecord>, CoreError> {
        self.list_records(actor, purpose, Operation::EncounterList, &["encounter"], patient_id).await
    }

    // ----- notes -----

    /// Starts a SOAP note on an in-progress encounter, as a draft of the author.
    /// `needs_cosign_by`: a user who must co-sign after signing (e.g. a supervising physician).
    pub async fn create_note(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        encounter_id: &str,
        sections: &Value,
        needs_cosign_by: Option<&str>,
    ) -> Result<ChartRecord, CoreError> {
        let (enc, allowed) =
            self.gated_record(actor, purpose, Operation::NoteCreate, AuditAction::Create, &["encounter"], encounter_id).await?;
        let checked = async {
            if enc.status != "in-progress" {
                return Err(CoreError::Conflict(format!("the encounter is {}; notes start on an in-progress encounter", enc.status)));
            }
            if let Some(u) = needs_cosign_by {
                if u == actor.user_id.as_str() || self.inner.store.user_by_id(u).await?.is_none() {
                    return Err(bad("cosigner", "another existing user"));
                }
            }
            soap_sections(sections)
        }
        .await;
        let body = match checked {
            Ok(mut b) => {
                b["cosigner"] = json!(needs_cosign_by);
                b
            }
            Err(e) => {
                return Err(self.refuse_on(actor, purpose, AuditAction::Create, ("DocumentReference", None, &enc.patient_id), e).await)
            }
        };
        self.insert_chart_record(actor, purpose, &allowed, None, ("note", &enc.patient_id, Some(&enc.id), "draft"), body, None, vec![])
            .await
    }

    /// Replaces the sections of a draft note (its author only). A signed note cannot change.
    pub async fn update_note(&self, actor: &Actor, purpose: PurposeOfUse, id: &str, sections: &Value) -> Result<ChartRecord, CoreError> {
        let (row, allowed) = self.gated_record(actor, purpose, Operation::NoteUpdate, AuditAction::Update, &["note"], id).await?;
        let refuse = |e| self.refuse_on(actor, purpose, AuditAction::Update, ("DocumentReference", Some(id), &row.patient_id), e);
        if row.status != "draft" {
            return Err(refuse(CoreError::Conflict(format!(
                "the note is {}: a signed note cannot be changed; add an addendum",
                row.status
            )))
            .await);
        }
        if row.created_by != actor.user_id.as_str() {
            return Err(refuse(CoreError::Refused { reason: "not-author", message: "only the author edits a draft note".into() }).await);
        }
        let new = match soap_sections(sections) {
            Ok(b) => b,
            Err(e) => return Err(refuse(e).await),
        };
        let receipt = self.audit_read_for_change(actor, purpose, &row, &allowed).await?;
        let old = self.open_chart(&receipt, &row).await?;
        let mut body = new;
        body["cosigner"] = old.body["cosigner"].clone();
        self.update_chart_record(actor, purpose, &allowed, &row, ("draft", body, None), (vec![], vec![])).await
    }

    /// Signs a draft note (its author): the content is locked, its SHA-256 recorded in the row
    /// and in the audit record, and the signature kept for the Provenance. A note that needs a
    /// co-signature becomes `signed` awaiting it; otherwise `final`.
    pub async fn sign_note(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<ChartRecord, CoreError> {
        let (row, allowed) = self.gated_record(actor, purpose, Operation::NoteSign, AuditAction::Update, &["note"], id).await?;
        let refuse = |e| self.refuse_on(actor, purpose, AuditAction::Update, ("DocumentReference", Some(id), &row.patient_id), e);
        if row.status != "draft" {
            return Err(refuse(CoreError::Conflict(format!("the note is already {}", row.status))).await);
        }
        if row.created_by != actor.user_id.as_str() {
            return Err(refuse(CoreError::Refused { reason: "not-author", message: "only the author signs a note".into() }).await);
        }
        let receipt = self.audit_read_for_change(actor, purpose, &row, &allowed).await?;
        let rec = self.open_chart(&receipt, &row).await?;
        let content = signed_content("note", &rec.body);
        let hash = hex::encode(carevault_crypto::sha256(&[content.as_bytes()]));
        let now = self.inner.clock.now_micros();
        let mut body = rec.body;
        body["signature"] = json!({"by": actor.user_id.as_str(), "name": actor.audit_name(), "at": now, "sha256": hash});
        let status = if body["cosigner"].is_string() { "signed" } else { "final" };
        self.update_chart_record(actor, purpose, &allowed, &row, (status, body, Some(hash)), (vec![], vec![])).await
    }

    /// Co-signs a signed note that names the actor as its co-signer: the co-signature covers
    /// the same SHA-256; the note becomes `final`.
    pub async fn cosign_note(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<ChartRecord, CoreError> {
        let (row, allowed) = self.gated_record(actor, purpose, Operation::NoteCosign, AuditAction::Update, &["note"], id).await?;
        let refuse = |e| self.refuse_on(actor, purpose, AuditAction::Update, ("DocumentReference", Some(id), &row.patient_id), e);
        if row.status != "signed" {
            return Err(refuse(CoreError::Conflict(format!(
                "the note is {}; only a signed note awaiting co-signature can be co-signed",
                row.status
            )))
            .await);
        }
        let receipt = self.audit_read_for_change(actor, purpose, &row, &allowed).await?;
        let rec = self.open_chart(&receipt, &row).await?;
        if rec.body["cosigner"].as_str() != Some(actor.user_id.as_str()) {
            return Err(refuse(CoreError::Refused { reason: "not-cosigner", message: "this note names another co-signer".into() }).await);
        }
        let content = signed_content("note", &rec.body);
        let hash = hex::encode(carevault_crypto::sha256(&[content.as_bytes()]));
        if row.content_sha256.as_deref() != Some(hash.as_str()) {
            return Err(CoreError::Internal("the signed note's content no longer matches its hash".into()));
        }
        let now = self.inner.clock.now_micros();
        let mut body = rec.body;
        body["cosignature"] = json!({"by": actor.user_id.as_str(), "name": actor.audit_name(), "at": now, "sha256": hash});
        self.update_chart_record(actor, purpose, &allowed, &row, ("final", body, Some(hash)), (vec![], vec![])).await
    }

    /// Adds a signed addendum to a signed note (written and signed at once: an addendum is
    /// never a draft). The note itself stays as signed.
    pub async fn add_addendum(&self, actor: &Actor, purpose: PurposeOfUse, note_id: &str, text: &str) -> Result<ChartRecord, CoreError> {
        let (row, allowed) = self.gated_record(actor, purpose, Operation::NoteAddendum, AuditAction::Create, &["note"], note_id).await?;
        let refuse = |e| self.refuse_on(actor, purpose, AuditAction::Create, ("DocumentReference", None, &row.patient_id), e);
        if row.status == "draft" {
            return Err(refuse(CoreError::Conflict("the note is still a draft: edit it instead of adding an addendum".into())).await);
        }
        let text = match text_field(&json!({"text": text}), "text", "text", 20_000, true) {
            Ok(Some(t)) => t,
            Ok(None) => String::new(),
            Err(e) => return Err(refuse(e).await),
        };
        let now = self.inner.clock.now_micros();
        let mut body = json!({"text": text});
        let hash = hex::encode(carevault_crypto::sha256(&[signed_content("addendum", &body).as_bytes()]));
        body["signature"] = json!({"by": actor.user_id.as_str(), "name": actor.audit_name(), "at": now, "sha256": hash});
        self.insert_chart_record(
            actor,
            purpose,
            &allowed,
            None,
            ("addendum", &row.patient_id, Some(&row.id), "final"),
            body,
            Some(hash),
            vec![],
        )
        .await
    }

    /// A note with its addenda (all audited as one read of the patient's record).
    pub async fn read_note(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<(ChartRecord, Vec<ChartRecord>), CoreError> {
        let row = self.locate_record(actor, purpose, Operation::NoteRead, AuditAction::Read, &["note", "addendum"], id).await?;
        let a = Access {
            actor,
            purpose,
            op: Operation::NoteRead,
            action: AuditAction::Read,
            resource: "DocumentReference",
            id: Some(id),
            patient_id: &row.patient_id,
        };
        self.audited_read(
            a,
            || format!("DocumentReference/{id}"),
            async || {
                let addenda = if row.kind == "note" {
                    self.inner.store.child_records(&row.id).await?.into_iter().filter(|r| r.kind == "addendum").collect()
                } else {
                    Vec::new()
                };
                Ok(Some((row.clone(), addenda)))
            },
            async |receipt: &Receipt, _: &PatientFacts, (row, children): (RecordRow, Vec<RecordRow>)| {
                let note = self.open_chart(receipt, &row).await?;
                let mut addenda = Vec::with_capacity(children.len());
                for r in &children {
                    addenda.push(self.open_chart(receipt, r).await?);
                }
                Ok((note, addenda))
            },
        )
        .await
    }

    /// A patient's notes and addenda.
    pub async fn patient_notes(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<ChartRecord>, CoreError> {
        self.list_records(actor, purpose, Operation::NoteList, &["note", "addendum"], patient_id).await
    }

    /// The actor's own unsigned draft notes (at most 50, oldest first): ids, patients and times
    /// only, nothing is decrypted. Audited as a search of each patient's notes.
    pub async fn my_draft_notes(&self, actor: &Actor) -> Result<Vec<DraftNote>, CoreError> {
        let purpose = actor.default_purpose();
        self.gate(actor, Operation::NoteList, purpose, &crate::authz::Target::Anywhere, ("DocumentReference", None)).await?;
        let rows = self.inner.store.draft_notes_by(actor.user_id.as_str(), 50).await?;
        let mut patients: Vec<&str> = rows.iter().map(|r| r.patient_id.as_str()).collect();
        patients.sort_unstable();
        patients.dedup();
        let now = self.inner.clock.now_micros();
        let events: Vec<Draft> = patients
            .iter()
            .map(|p| {
                Draft::new(now, AuditAction::Search, Outcome::Success)
                    .by(actor)
                    .resource("DocumentReference", None)
                    .patient(p)
                    .purpose(purpose)
            })
            .collect();
        if !events.is_empty() {
            self.inner.writer.write(vec![], events, None).await?;
        }
        Ok(rows
            .into_iter()
            .map(|r| DraftNote {
                id: r.id,
                patient_id: r.patient_id,
                encounter_id: r.parent_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect())
    }

    // ----- conditions -----

    /// Records a diagnosis on an encounter: an ICD-10-CM code that exists and is billable.
    pub async fn add_condition(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        encounter_id: &str,
        code: &str,
        note: Option<&str>,
    ) -> Result<ChartRecord, CoreError> {
        let (enc, allowed) =
            self.gated_record(actor, purpose, Operation::ConditionCreate, AuditAction::Create, &["encounter"], encounter_id).await?;
        let checked = async {
            let c = Icd10Code::parse(code)?;
            self.ensure_icd10().await?;
            let Some((description, billable)) = self.inner.store.icd10_code(c.as_str()).await? else {
                return Err(bad("code", "not an ICD-10-CM code known here (import the CMS code file with `carevault icd10 import`)"));
            };
            if !billable {
                return Err(bad("code", "a category, not a billable code: choose a more specific code"));
            }
            let note = text_field(&json!({"note": note}), "note", "note", 2000, false)?;
            Ok(json!({"code": c.display(), "display": description, "clinicalStatus": "active", "note": note, "encounterId": enc.id}))
        }
        .await;
        let body = match checked {
            Ok(b) => b,
            Err(e) => return Err(self.refuse_on(actor, purpose, AuditAction::Create, ("Condition", None, &enc.patient_id), e).await),
        };
        self.insert_chart_record(
            actor,
            purpose,
            &allowed,
            None,
            ("condition", &enc.patient_id, Some(&enc.id), "active"),
            body,
            None,
            vec![],
        )
        .await
    }

    pub async fn patient_conditions(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<ChartRecord>, CoreError> {
        self.list_records(actor, purpose, Operation::ConditionList, &["condition"], patient_id).await
    }
}

impl ChartRecord {
    /// FHIR R4 rendering: Encounter, Condition, or DocumentReference (notes and addenda).
    pub fn to_fhir(&self) -> Value {
        let meta = json!({"versionId": self.version.to_string(), "lastUpdated": crate::format_instant(self.updated_at)});
        let patient = json!({"reference": format!("Patient/{}", self.patient_id)});
        match self.kind.as_str() {
            "encounter" => {
                let mut e = json!({
                    "resourceType": "Encounter", "id": self.id, "meta": meta,
                    "status": self.status,
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                    "subject": patient,
                    "participant": [{"individual": {"reference": format!("Practitioner/{}", self.body["practitionerId"].as_str().unwrap_or(""))}}],
                    "location": [{"location": {"reference": format!("Location/{}", self.body["locationId"].as_str().unwrap_or(""))}}],
                    "period": {"start": crate::format_instant(self.body["start"].as_i64().unwrap_or(self.created_at))},
                });
                if let Some(end) = self.body["end"].as_i64() {
                    e["period"]["end"] = json!(crate::format_instant(end));
                }
                if let Some(a) = self.body["appointmentId"].as_str() {
                    e["appointment"] = json!([{"reference": format!("Appointment/{a}")}]);
                }
                e
            }
            "condition" => json!({
                "resourceType": "Condition", "id": self.id, "meta": meta,
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
                "code": {"coding": [{"system": carevault_domain::icd10::SYSTEM, "code": self.body["code"], "display": self.body["display"]}]},
                "subject": patient,
                "encounter": {"reference": format!("Encounter/{}", self.parent_id.as_deref().unwrap_or(""))},
                "recordedDate": crate::format_instant(self.created_at),
            }),
            _ => self.note_to_fhir(meta, patient),
        }
    }

    fn note_to_fhir(&self, meta: Value, patient: Value) -> Value {
        use base64::Engine;
        let text = signed_content(&self.kind, &self.body);
        let doc_status = match self.status.as_str() {
            "draft" => "preliminary",
            _ => "final",
        };
        let (code, display) = if self.kind == "addendum" { ("55107-7", "Addendum Document") } else { ("11506-3", "Progress note") };
        let mut d = json!({
            "resourceType": "DocumentReference", "id": self.id, "meta": meta,
            "status": "current",
            "docStatus": doc_status,
            "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note"}]}],
            "subject": patient,
            "date": crate::format_instant(self.created_at),
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())}}],
        });
        if self.kind == "addendum" {
            d["relatesTo"] = json!([{"code": "appends", "target": {"reference": format!("DocumentReference/{}", self.parent_id.as_deref().unwrap_or(""))}}]);
        } else if let Some(enc) = &self.parent_id {
            d["context"] = json!({"encounter": [{"reference": format!("Encounter/{enc}")}]});
        }
        if let Some(h) = &self.content_sha256 {
            d["content"][0]["attachment"]["title"] = json!(format!("SHA-256 {h}"));
        }
        d
    }

    /// FHIR R4 Provenance of a signed note or addendum: the author's signature (and the
    /// co-signer's), each over the SHA-256 of the signed content. None for a draft.
    pub fn provenance(&self) -> Option<Value> {
        use base64::Engine;
        let sig = self.body.get("signature")?;
        let one = |s: &Value, code: &str, display: &str| {
            json!({
                "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": code, "display": display}],
                "when": crate::format_instant(s["at"].as_i64().unwrap_or(0)),
                "who": {"display": s["name"].as_str().unwrap_or("")},
                "sigFormat": "text/plain",
                "data": base64::engine::general_purpose::STANDARD.encode(format!("sha256:{}", s["sha256"].as_str().unwrap_or(""))),
            })
        };
        let mut signatures = vec![one(sig, "1.2.840.10065.1.12.1.1", "Author's Signature")];
        let mut agents = vec![json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"display": sig["name"].as_str().unwrap_or("")},
        })];
        if let Some(c) = self.body.get("cosignature") {
            signatures.push(one(c, "1.2.840.10065.1.12.1.2", "Coauthor's Signature"));
            agents.push(json!({
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "verifier"}]},
                "who": {"display": c["name"].as_str().unwrap_or("")},
            }));
        }
        Some(json!({
            "resourceType": "Provenance",
            "id": format!("{}-{}", self.id, self.version),
            "target": [{"reference": format!("DocumentReference/{}/_history/{}", self.id, self.version)}],
            "recorded": crate::format_instant(sig["at"].as_i64().unwrap_or(0)),
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion", "code": "LA", "display": "legally authenticated"}]},
            "agent": agents,
            "signature": signatures,
        }))
    }
}

/// ICD-10-CM reference data: the bundled starter set, the CMS importer, search.
impl Vault {
    /// Loads the bundled starter set when no code is in the store yet.
    async fn ensure_icd10(&self) -> Result<(), CoreError> {
        if self.inner.store.icd10_count().await? > 0 {
            return Ok(());
        }
        let codes: Vec<(String, String, bool)> =
            carevault_domain::icd10::starter_set().into_iter().map(|e| (e.code.as_str().to_string(), e.description, e.billable)).collect();
        self.write_icd10(codes, "starter").await.map(|_| ())
    }

    async fn write_icd10(&self, codes: Vec<(String, String, bool)>, release: &str) -> Result<usize, CoreError> {
        let n = codes.len();
        for chunk in codes.chunks(2000) {
            let ev = Draft::new(self.inner.clock.now_micros(), AuditAction::ConfigChange, Outcome::Success)
                .resource("CodeSystem", Some("icd-10-cm"))
                .actor_name("system".into());
            self.inner
                .writer
                .write(vec![ChartChange::UpsertIcd10 { codes: chunk.to_vec(), release: release.into() }.into()], vec![ev], None)
                .await?;
        }
        Ok(n)
    }

    /// Imports a CMS ICD-10-CM code file (codes or order format): every line is checked
    /// before anything is written. Returns the number of codes.
    pub(crate) async fn import_icd10(&self, text: &str, release: &str) -> Result<usize, CoreError> {
        let entries = carevault_domain::icd10::parse_cms(text).map_err(|e| bad("file", &e.to_string()))?;
        let release = release.trim();
        if release.is_empty() || release.len() > 40 || !release.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(bad("release", "1 to 40 characters: letters, digits, '-', '.'"));
        }
        let codes = entries.into_iter().map(|e| (e.code.as_str().to_string(), e.description, e.billable)).collect();
        self.write_icd10(codes, release).await
    }

    /// Searches ICD-10-CM codes by code prefix or description words (reference data).
    pub async fn search_icd10(&self, actor: &Actor, query: &str, limit: usize) -> Result<Vec<(String, String, bool)>, CoreError> {
        self.gate(actor, Operation::CodeSearch, actor.default_purpose(), &crate::authz::Target::Anywhere, ("CodeSystem", None)).await?;
        self.ensure_icd10().await?;
        let q = query.trim();
        if q.is_empty() || q.chars().count() > 100 {
            return Err(bad("q", "1 to 100 characters"));
        }
        let prefix: String = q.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
        let words: Vec<String> = q
            .split_whitespace()
            .map(|w| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase())
            .filter(|w| !w.is_empty())
            .take(6)
            .collect();
        let prefix = if q.contains(' ') || prefix.is_empty() { "\u{1}".to_string() } else { prefix };
        let rows = self.inner.store.icd10_search(&prefix, &words, i64::try_from(limit.clamp(1, 100)).unwrap_or(20)).await?;
        Ok(rows.into_iter().map(|(c, d, b)| (Icd10Code::parse(&c).map(|x| x.display()).unwrap_or(c), d, b)).collect())
    }
}
