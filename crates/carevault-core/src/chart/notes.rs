//! SOAP notes: drafts, signing (the content's SHA-256 and a Provenance), co-signature, signed
//! addenda, reading a note with its addenda, and the author's draft list.

use super::*;

impl Vault {
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
}
