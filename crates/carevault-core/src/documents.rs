//! Documents (attachments) and consents through the chokepoint.
//!
//! A document's content is sealed as a chunked AEAD stream (carevault-crypto `stream`: STREAM
//! over AES-256-GCM, order and truncation protected) under a fresh per-document key, written to
//! `documents/<id>.cvs` in the data folder: only ciphertext touches the disk. The key, the title,
//! the content type (decided by the content, not the name) and the SHA-256 of the plaintext are
//! in the record's sealed body. Downloads are audited as exports.
//!
//! Consents: versioned templates (version 1 of each kind built in), signed by the patient with
//! a typed name, a drawn signature and the statement of intent against the current version;
//! the record keeps the exact rendered document, its SHA-256 and the signing context; a signed
//! consent renders to a PDF that `verify_consent_pdf` checks by recomputing the hashes.

use carevault_domain::consent::{self, ConsentKind, DocumentFields, DrawnSignature, SignedConsent, SigningContext, Template};
use carevault_domain::{AuditAction, Operation, Outcome, PurposeOfUse};
use carevault_store::{ConsentTemplateRow, RecordRow};
use serde_json::{json, Value};

use crate::actor::Actor;
use crate::audit::{Draft, Receipt};
use crate::chart::changes::ChartChange;
use crate::chart::{bad, ChartRecord};
use crate::error::CoreError;
use crate::read::Access;
use crate::vault::Vault;

/// A document to attach.
#[derive(Clone, Default)]
pub struct DocumentUpload {
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub title: String,
    /// The type the client declared (checked against the content).
    pub content_type: Option<String>,
    pub content: Vec<u8>,
}

impl std::fmt::Debug for DocumentUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DocumentUpload({} bytes)", self.content.len())
    }
}

/// A downloaded document: its metadata and plaintext.
pub struct Download {
    pub record: ChartRecord,
    pub content_type: String,
    pub content: zeroize::Zeroizing<Vec<u8>>,
}

/// What a signer gives when signing a consent.
#[derive(Clone)]
pub struct ConsentRequest {
    pub patient_id: String,
    pub kind: String,
    /// The template version the signer saw; an older one than the current is refused.
    pub template_version: u32,
    pub signer_typed_name: String,
    pub signer_relationship: Option<String>,
    pub signature: DrawnSignature,
    /// Only for release of information.
    pub recipient: Option<String>,
    pub purpose: Option<String>,
    pub scope: Option<String>,
    pub expires: Option<String>,
    pub device: String,
    pub ip: String,
}

impl std::fmt::Debug for ConsentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConsentRequest({} v{})", self.kind, self.template_version)
    }
}

impl Vault {
    fn document_path(&self, id: &str) -> std::path::PathBuf {
        self.inner.data_dir.documents_dir().join(format!("{id}.cvs"))
    }

    /// Attaches a document: checked (size, content type by content), sealed to its own file,
    /// then recorded; a failure leaves no file behind.
    pub async fn upload_document(&self, actor: &Actor, purpose: PurposeOfUse, up: DocumentUpload) -> Result<ChartRecord, CoreError> {
        let (_, allowed) =
            self.gate_patient(actor, Operation::DocumentUpload, purpose, AuditAction::Create, "DocumentReference", &up.patient_id).await?;
        let refuse = |e| self.refuse_on(actor, purpose, AuditAction::Create, ("DocumentReference", None, &up.patient_id), e);
        let max = self.inner.config.document_max_bytes;
        if up.content.len() > max {
            return Err(refuse(bad("content", &format!("a document may be at most {max} bytes"))).await);
        }
        let content_type = match carevault_domain::sniff::check_declared(up.content_type.as_deref(), &up.content) {
            Ok(t) => t,
            Err(e) => return Err(refuse(CoreError::Invalid(e)).await),
        };
        let title = up.title.trim();
        if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
            return Err(refuse(bad("title", "1 to 200 characters, no control characters")).await);
        }
        if let Some(enc) = &up.encounter_id {
            let ok = self.inner.store.record(enc).await?.is_some_and(|r| r.kind == "encounter" && r.patient_id == up.patient_id);
            if !ok {
                return Err(refuse(bad("encounter", "not an encounter of this patient")).await);
            }
        }
        if self.inner.storage.below_reserve() {
            return Err(refuse(CoreError::StorageLow).await);
        }
        let id = crate::chart::new_record_id();
        let sealed = self.inner.sealer.seal_document(&id, &up.content)?;
        let path = self.document_path(&id);
        // Crash-safe: the sealed stream gets its name only once it is whole and synced.
        let written = tokio::task::spawn_blocking({
            let path = path.clone();
            let stream = sealed.stream;
            move || carevault_crypto::files::write_new(&path, &stream)
        })
        .await
        .map_err(|_| CoreError::Internal("document writer stopped".into()))?;
        if let Err(e) = written {
            tracing::error!(error = %e, "a document file could not be written");
            // A full disk or an I/O error is the storage's fault, not the request's: 503.
            return Err(refuse(CoreError::StoreUnavailable).await);
        }
        let sha = sealed.sha256;
        let mut body = json!({
            "title": title,
            "contentType": content_type,
            "size": sealed.size,
            "sha256": sha,
        });
        body[crate::sealing::DOCUMENT_KEY_FIELD] = json!(sealed.key_field);
        let res = self
            .insert_chart_record(
                actor,
                purpose,
                &allowed,
                Some(id),
                ("document", &up.patient_id, up.encounter_id.as_deref(), "current"),
                body,
                Some(sha),
                vec![],
            )
            .await;
        if res.is_err() {
            // Nothing half-written: the record is not there, so neither is its file.
            let _ = std::fs::remove_file(&path);
        }
        res
    }

    /// `DocumentReference/{id}`: a note or addendum (`note.read`) or an attached document's
    /// metadata (`document.list`), decided by the record's kind: one lookup, one audit record.
    pub async fn read_document_reference(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<ChartRecord, CoreError> {
        let kind = if crate::chart::is_record_id(id) { self.inner.store.record(id).await?.map(|r| r.kind) } else { None };
        match kind.as_deref() {
            Some("document") => self.read_record(actor, purpose, Operation::DocumentList, &["document"], id).await,
            _ => self.read_note(actor, purpose, id).await.map(|(note, _)| note),
        }
    }

    /// A patient's documents (metadata only).
    pub async fn patient_documents(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<ChartRecord>, CoreError> {
        self.list_records(actor, purpose, Operation::DocumentList, &["document"], patient_id).await
    }

    /// Downloads a document: audited as an export before anything is decrypted. Released at
    /// the patient's request (purpose PATRQT) only with an active release-of-information consent.
    pub async fn download_document(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<Download, CoreError> {
        let row = self.locate_record(actor, purpose, Operation::DocumentDownload, AuditAction::Export, &["document"], id).await?;
        let a = Access {
            actor,
            purpose,
            op: Operation::DocumentDownload,
            action: AuditAction::Export,
            resource: "DocumentReference",
            id: Some(id),
            patient_id: &row.patient_id,
        };
        self.audited_read(
            a,
            || format!("DocumentReference/{id}"),
            // The release condition is part of fetching: refused (and audited) before the export
            // record, so nothing is opened.
            async || {
                if purpose == PurposeOfUse::PatientRequest
                    && !self.has_active_consent(&row.patient_id, ConsentKind::ReleaseOfInformation).await?
                {
                    let e = CoreError::Refused {
                        reason: "no-consent",
                        message: "releasing a document at the patient's request needs an active release-of-information consent".into(),
                    };
                    return Err(self
                        .refuse_on(actor, purpose, AuditAction::Export, ("DocumentReference", Some(id), &row.patient_id), e)
                        .await);
                }
                let sealed =
                    tokio::fs::read(self.document_path(&row.id)).await.map_err(|e| CoreError::Internal(format!("document file: {e}")))?;
                Ok(Some((row.clone(), sealed)))
            },
            async |receipt: &Receipt, _: &crate::authz::PatientFacts, (row, sealed): (RecordRow, Vec<u8>)| {
                let record = self.open_chart(receipt, &row).await?;
                let now = self.inner.clock.now_micros();
                let binding = crate::sealing::Binding::record(crate::chart::TABLE, &row);
                let content = match self.inner.sealer.open_document(&self.inner.store, now, receipt, &binding, &row.body, &sealed).await {
                    Ok(c) => c,
                    Err(e) => return Err(self.integrity_failure(receipt, e).await),
                };
                let content_type =
                    record.document.as_ref().map_or_else(|| "application/octet-stream".to_string(), |d| d.content_type.clone());
                Ok(Download { record, content_type, content })
            },
        )
        .await
    }

    // ----- consents -----

    /// The stored templates, after putting the built-in ones (version 1 of each kind) there if
    /// missing (a single read when nothing is missing).
    pub(crate) async fn ensure_consent_templates(&self) -> Result<Vec<ConsentTemplateRow>, CoreError> {
        let have = self.inner.store.consent_templates().await?;
        let now = self.inner.clock.now_micros();
        let mut ops = Vec::new();
        for t in consent::builtin_templates() {
            if !have.iter().any(|h| h.kind == t.kind.id() && h.version == i64::from(t.version)) {
                ops.push(ChartChange::InsertConsentTemplate(Box::new(template_row(&t, now))).into());
            }
        }
        if ops.is_empty() {
            return Ok(have);
        }
        let ev = Draft::new(now, AuditAction::ConfigChange, Outcome::Success).resource("ConsentTemplate", None).actor_name("system".into());
        self.inner.writer.write(ops, vec![ev], None).await?;
        Ok(self.inner.store.consent_templates().await?)
    }

    /// Every template version, oldest first (reference data).
    pub async fn consent_templates(&self, actor: &Actor) -> Result<Vec<Template>, CoreError> {
        let purpose = actor.default_purpose();
        self.gate(actor, Operation::ConsentTemplateList, purpose, &crate::authz::Target::Anywhere, ("ConsentTemplate", None)).await?;
        Ok(self.ensure_consent_templates().await?.iter().filter_map(template_of).collect())
    }

    /// Publishes the next version of a template; consents signed from then on must use it.
    /// Bad input (unknown kind, a body without its required placeholders) is audited.
    pub async fn add_consent_template(&self, actor: &Actor, kind: &str, title: &str, body: &str) -> Result<Template, CoreError> {
        let purpose = actor.default_purpose();
        self.gate(actor, Operation::ConsentTemplateAdd, purpose, &crate::authz::Target::Anywhere, ("ConsentTemplate", None)).await?;
        let kind = match ConsentKind::parse(kind) {
            Ok(k) => k,
            Err(e) => return Err(self.audit_input(actor, purpose, AuditAction::ConfigChange, "ConsentTemplate", e).await),
        };
        let current = self.current_template(kind).await?;
        let t = Template { kind, version: current.version + 1, title: title.trim().to_string(), body: body.replace("\r\n", "\n") };
        if let Err(e) = t.check() {
            return Err(self.audit_input(actor, purpose, AuditAction::ConfigChange, "ConsentTemplate", e).await);
        }
        let now = self.inner.clock.now_micros();
        let ev = Draft::new(now, AuditAction::ConfigChange, Outcome::Success).by(actor).resource("ConsentTemplate", None).purpose(purpose);
        let lost =
            Draft::new(now, AuditAction::ConfigChange, Outcome::Conflict).by(actor).resource("ConsentTemplate", None).purpose(purpose);
        self.inner
            .writer
            .write(vec![ChartChange::InsertConsentTemplate(Box::new(template_row(&t, now))).into()], vec![ev], Some(lost))
            .await?;
        Ok(t)
    }

    async fn current_template(&self, kind: ConsentKind) -> Result<Template, CoreError> {
        let rows = self.ensure_consent_templates().await?;
        rows.iter()
            .filter(|r| r.kind == kind.id())
            .filter_map(template_of)
            .max_by_key(|t| t.version)
            .ok_or_else(|| CoreError::Internal("no consent template".into()))
    }

    /// Records a patient's signature on the current template of a kind.
    pub async fn sign_consent(&self, actor: &Actor, purpose: PurposeOfUse, req: ConsentRequest) -> Result<SignedConsent, CoreError> {
        let (facts, allowed) =
            self.gate_patient(actor, Operation::ConsentSign, purpose, AuditAction::Create, "Consent", &req.patient_id).await?;
        let refuse = |e| self.refuse_on(actor, purpose, AuditAction::Create, ("Consent", None, &req.patient_id), e);
        let prepared = self.prepare_consent(actor, purpose, &req, &facts).await;
        let signed = match prepared {
            Ok(s) => s,
            Err(e) => return Err(refuse(e).await),
        };
        let body = serde_json::to_value(&signed).map_err(|_| CoreError::Internal("encode".into()))?;
        // A consent's parent column names its kind, so "is there an active consent of this
        // kind" needs no decryption.
        self.insert_chart_record(
            actor,
            purpose,
            &allowed,
            Some(signed.id.clone()),
            ("consent", &req.patient_id, Some(signed.kind.id()), consent::STATUS_ACTIVE),
            body,
            Some(signed.document_sha256.clone()),
            vec![],
        )
        .await?;
        Ok(signed)
    }

    async fn prepare_consent(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        req: &ConsentRequest,
        facts: &crate::authz::PatientFacts,
    ) -> Result<SignedConsent, CoreError> {
        let kind = ConsentKind::parse(&req.kind)?;
        let template = self.current_template(kind).await?;
        if req.template_version != template.version {
            return Err(CoreError::Conflict(format!(
                "the consent was shown from template version {} but the current version is {}: show the current one and sign again",
                req.template_version, template.version
            )));
        }
        // The document shows the patient's name and birth date: reading them is a read like any
        // other (gate, audit, open).
        let patient = self.read_patient(actor, purpose, &req.patient_id).await?;
        let name = patient.data.name.first();
        let patient_name = name
            .and_then(|n| n.text.clone())
            .or_else(|| name.map(|n| format!("{} {}", n.given.join(" "), n.family.clone().unwrap_or_default()).trim().to_string()))
            .unwrap_or_default();
        let birth_date = patient.data.birth_date.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "unknown".into());
        let organization = self
            .inner
            .store
            .unit(carevault_store::UnitKind::Organization, &facts.scope.organization_id)
            .await?
            .map(|u| u.name)
            .unwrap_or_else(|| "the practice".into());
        let fields = DocumentFields {
            patient_name,
            birth_date,
            organization,
            recipient: req.recipient.clone(),
            purpose: req.purpose.clone(),
            scope: req.scope.clone(),
            expires: req.expires.clone(),
            signer_typed_name: req.signer_typed_name.clone(),
            signer_relationship: req.signer_relationship.clone(),
        };
        let now = self.inner.clock.now_micros();
        let ctx = SigningContext {
            id: crate::chart::new_record_id(),
            signed_at_utc: crate::format_instant(now),
            signed_at_local: crate::format_instant(now),
            device: clean(&req.device, 200),
            ip: clean(&req.ip, 64),
        };
        Ok(consent::sign(&template, &fields, req.signature.clone(), ctx)?)
    }

    /// Revokes an active consent (kept, marked revoked with the time).
    pub async fn revoke_consent(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<SignedConsent, CoreError> {
        let (row, allowed) = self.gated_record(actor, purpose, Operation::ConsentRevoke, AuditAction::Update, &["consent"], id).await?;
        if row.status != consent::STATUS_ACTIVE {
            let e = CoreError::Conflict(format!("the consent is {}", row.status));
            return Err(self.refuse_on(actor, purpose, AuditAction::Update, ("Consent", Some(id), &row.patient_id), e).await);
        }
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource("Consent", Some(id))
            .patient(&row.patient_id)
            .purpose(purpose)
            .review(&allowed);
        let receipt = self.inner.writer.append(d).await?;
        let rec = self.open_chart(&receipt, &row).await?;
        let mut c: SignedConsent = serde_json::from_value(rec.body).map_err(|_| CoreError::Internal("stored consent".into()))?;
        c.status = consent::STATUS_REVOKED.into();
        c.revoked_at = Some(crate::format_instant(self.inner.clock.now_micros()));
        let body = serde_json::to_value(&c).map_err(|_| CoreError::Internal("encode".into()))?;
        self.update_chart_record(
            actor,
            purpose,
            &allowed,
            &row,
            (consent::STATUS_REVOKED, body, row.content_sha256.clone()),
            (vec![], vec![]),
        )
        .await?;
        Ok(c)
    }

    /// A patient's consents, newest last.
    pub async fn patient_consents(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<SignedConsent>, CoreError> {
        let recs = self.list_records(actor, purpose, Operation::ConsentList, &["consent"], patient_id).await?;
        recs.into_iter().map(|r| serde_json::from_value(r.body).map_err(|_| CoreError::Internal("stored consent".into()))).collect()
    }

    /// One consent (audited as a read).
    pub async fn read_consent(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<SignedConsent, CoreError> {
        let rec = self.read_record(actor, purpose, Operation::ConsentPdf, &["consent"], id).await?;
        serde_json::from_value(rec.body).map_err(|_| CoreError::Internal("stored consent".into()))
    }

    /// The PDF of a signed consent (with the signature and the hashes).
    pub async fn consent_pdf(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<Vec<u8>, CoreError> {
        let c = self.read_consent(actor, purpose, id).await?;
        Ok(consent::render_pdf(&c))
    }

    /// Verifies a consent PDF against the stored record: the document's and the signature's
    /// SHA-256 are recomputed, and the PDF must be exactly the one the record renders.
    pub async fn verify_consent_pdf(&self, actor: &Actor, purpose: PurposeOfUse, id: &str, pdf: &[u8]) -> Result<(), CoreError> {
        let c = self.read_consent(actor, purpose, id).await?;
        consent::verify_pdf(pdf, &c).map_err(|e| CoreError::Invalid(carevault_domain::InputError::value("pdf", e.to_string())))
    }

    /// Whether the patient has an active (signed, not revoked) consent of a kind.
    pub(crate) async fn has_active_consent(&self, patient_id: &str, kind: ConsentKind) -> Result<bool, CoreError> {
        Ok(self
            .inner
            .store
            .patient_records(patient_id, "consent")
            .await?
            .iter()
            .any(|r| r.status == consent::STATUS_ACTIVE && r.parent_id.as_deref() == Some(kind.id())))
    }
}

impl ChartRecord {
    /// FHIR DocumentReference of an attached document (the content is at `Binary/{id}`).
    pub fn document_to_fhir(&self) -> Value {
        let mut d = json!({
            "resourceType": "DocumentReference", "id": self.id,
            "meta": {"versionId": self.version.to_string(), "lastUpdated": crate::format_instant(self.updated_at)},
            "status": "current",
            "type": {"text": "Attached document"},
            "subject": {"reference": format!("Patient/{}", self.patient_id)},
            "date": crate::format_instant(self.created_at),
            "description": self.document.as_ref().map(|m| m.title.clone()),
            "content": [{"attachment": {
                "contentType": self.document.as_ref().map(|m| m.content_type.clone()),
                "url": format!("Binary/{}", self.id),
                "size": self.document.as_ref().map(|m| m.size),
                "title": self.document.as_ref().map(|m| m.title.clone()),
            }}],
            "extension": [{"url": "urn:carevault:sha256", "valueString": self.content_sha256}],
        });
        if let Some(enc) = &self.parent_id {
            d["context"] = json!({"encounter": [{"reference": format!("Encounter/{enc}")}]});
        }
        d
    }
}

/// FHIR R4 Consent of a signed consent.
pub fn consent_to_fhir(c: &SignedConsent, patient_id: &str) -> Value {
    let kind = c.kind;
    let cat = kind.category();
    let scope = kind.scope();
    json!({
        "resourceType": "Consent",
        "id": c.id,
        "status": if c.is_revoked() { "inactive" } else { "active" },
        "scope": {"coding": [{"system": scope.system, "code": scope.code, "display": scope.display}]},
        "category": [{"coding": [{"system": cat.system, "code": cat.code, "display": cat.display}]}],
        "patient": {"reference": format!("Patient/{patient_id}")},
        "dateTime": c.signed_at_utc,
        "policy": [{"uri": format!("urn:carevault:consent-template:{}:{}", kind.id(), c.template_version)}],
        "sourceAttachment": {"contentType": "application/pdf", "url": format!("Consent/{}/$pdf", c.id), "title": c.title},
        "verification": [{"verified": true, "verificationDate": c.signed_at_utc}],
    })
}

fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn template_row(t: &Template, now: i64) -> ConsentTemplateRow {
    ConsentTemplateRow {
        kind: t.kind.id().into(),
        version: i64::from(t.version),
        title: t.title.clone(),
        body: t.body.clone(),
        sha256: t.sha256(),
        created_at: now,
    }
}

fn template_of(r: &ConsentTemplateRow) -> Option<Template> {
    Some(Template {
        kind: ConsentKind::parse(&r.kind).ok()?,
        version: u32::try_from(r.version).ok()?,
        title: r.title.clone(),
        body: r.body.clone(),
    })
}
