//! The chart: encounters, SOAP notes and addenda, diagnoses (ICD-10-CM), documents, consents
//! and their templates.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use carevault_core::{ChartRecord, CoreError};
use serde::Deserialize;
use serde_json::json;

use crate::api::{answer, created, done, ok, ApiQuery, BodyFirst};
use crate::auth::{Api, Purposed, SignedIn};
use crate::error::{problem, ApiError};
use crate::server::AppState;

/// A chart record as the API answers it: its FHIR resource.
fn fhir_of(r: Result<ChartRecord, CoreError>, created: bool) -> Response {
    answer(if created { StatusCode::CREATED } else { StatusCode::OK }, r.map(|rec| rec.to_fhir()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EncounterBody {
    appointment_id: Option<String>,
    patient_id: Option<String>,
    practitioner_id: Option<String>,
    location_id: Option<String>,
}

/// `POST /api/v1/encounters`: `{"appointment_id"}` or a walk-in `{"patient_id","practitioner_id","location_id"}`.
pub(crate) async fn start_encounter(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<EncounterBody, Purposed<Api>>) -> Response {
    let req = json!({"appointmentId": b.appointment_id, "patientId": b.patient_id, "practitionerId": b.practitioner_id, "locationId": b.location_id});
    let req = serde_json::Value::Object(
        req.as_object().map(|m| m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
    );
    fhir_of(st.vault.start_encounter(&who.actor, who.purpose, &req).await, true)
}

/// `POST /api/v1/encounters/{id}/finish`.
pub(crate) async fn finish_encounter(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    fhir_of(st.vault.finish_encounter(&who.actor, who.purpose, &id).await, false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    subjective: Option<String>,
    objective: Option<String>,
    assessment: Option<String>,
    plan: Option<String>,
    /// A user who must co-sign after the author signs.
    cosigner: Option<String>,
}

impl NoteBody {
    fn sections(&self) -> serde_json::Value {
        json!({"subjective": self.subjective, "objective": self.objective, "assessment": self.assessment, "plan": self.plan})
    }
}

/// `POST /api/v1/encounters/{id}/notes`: a draft SOAP note.
pub(crate) async fn create_note(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<NoteBody, Purposed<Api>>,
) -> Response {
    fhir_of(st.vault.create_note(&who.actor, who.purpose, &id, &b.sections(), b.cosigner.as_deref()).await, true)
}

/// `PUT /api/v1/notes/{id}`: replaces a draft's sections (a signed note is refused).
pub(crate) async fn update_note(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<NoteBody, Purposed<Api>>,
) -> Response {
    fhir_of(st.vault.update_note(&who.actor, who.purpose, &id, &b.sections()).await, false)
}

/// `POST /api/v1/notes/{id}/sign` and `/cosign`.
pub(crate) async fn sign_note(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    fhir_of(st.vault.sign_note(&who.actor, who.purpose, &id).await, false)
}

pub(crate) async fn cosign_note(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    fhir_of(st.vault.cosign_note(&who.actor, who.purpose, &id).await, false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddendumBody {
    text: String,
}

/// `POST /api/v1/notes/{id}/addenda` `{"text"}`: a signed addendum.
pub(crate) async fn add_addendum(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<AddendumBody, Purposed<Api>>,
) -> Response {
    fhir_of(st.vault.add_addendum(&who.actor, who.purpose, &id, &b.text).await, true)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConditionBody {
    code: String,
    note: Option<String>,
}

/// `POST /api/v1/encounters/{id}/conditions` `{"code","note"}`: a diagnosis (ICD-10-CM).
pub(crate) async fn add_condition(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<ConditionBody, Purposed<Api>>,
) -> Response {
    fhir_of(st.vault.add_condition(&who.actor, who.purpose, &id, &b.code, b.note.as_deref()).await, true)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeQuery {
    q: String,
    limit: Option<usize>,
}

/// `GET /api/v1/icd10?q=`: ICD-10-CM codes by code prefix or description words.
pub(crate) async fn icd10_search(State(st): State<AppState>, ApiQuery(q): ApiQuery<CodeQuery>, who: SignedIn<Api>) -> Response {
    ok(st
        .vault
        .search_icd10(&who.actor, &q.q, q.limit.unwrap_or(20))
        .await
        .map(|list| list.into_iter().map(|(c, d, b)| json!({"code": c, "display": d, "billable": b})).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    title: String,
    encounter_id: Option<String>,
}

/// `POST /api/v1/patients/{id}/documents?title=..`: the body is the document itself, with its
/// Content-Type; the type is checked against the content.
pub(crate) async fn upload_document(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    who: Purposed<Api>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The route's limit is the configured document limit: a body is read whole or refused.
    let limit = st.vault.config().document_max_bytes;
    let content = match crate::extract::read_body(&headers, body, limit).await {
        Ok(b) => b.to_vec(),
        Err(e) => return problem(e.status(), "CV-INPUT-003", &e.reason()),
    };
    let declared = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let up =
        carevault_core::DocumentUpload { patient_id: id, encounter_id: q.encounter_id, title: q.title, content_type: declared, content };
    created(st.vault.upload_document(&who.actor, who.purpose, up).await.map(|rec| rec.document_to_fhir()))
}

/// `GET /api/v1/consent-templates`.
pub(crate) async fn consent_templates(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.consent_templates(&who.actor).await.map(|list| {
        list.iter()
            .map(|t| json!({"kind": t.kind.id(), "version": t.version, "title": t.title, "body": t.body, "sha256": t.sha256()}))
            .collect::<Vec<_>>()
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateBody {
    kind: String,
    title: String,
    body: String,
}

/// `POST /api/v1/consent-templates` `{"kind","title","body"}`: publishes the next version.
pub(crate) async fn add_consent_template(
    State(st): State<AppState>,
    BodyFirst(b, who): BodyFirst<TemplateBody, SignedIn<Api>>,
) -> Response {
    created(
        st.vault
            .add_consent_template(&who.actor, &b.kind, &b.title, &b.body)
            .await
            .map(|t| json!({"kind": t.kind.id(), "version": t.version, "sha256": t.sha256()})),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentBody {
    kind: String,
    template_version: u32,
    signer_typed_name: String,
    signer_relationship: Option<String>,
    signature: carevault_domain::consent::DrawnSignature,
    recipient: Option<String>,
    purpose: Option<String>,
    scope: Option<String>,
    expires: Option<String>,
}

/// `POST /api/v1/patients/{id}/consents`: the patient's signature on the current template
/// (typed name, drawn signature; device and address are taken from the request).
pub(crate) async fn sign_consent(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    BodyFirst(b, who): BodyFirst<ConsentBody, Purposed<Api>>,
) -> Response {
    let device = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_string();
    let req = carevault_core::ConsentRequest {
        patient_id: id.clone(),
        kind: b.kind,
        template_version: b.template_version,
        signer_typed_name: b.signer_typed_name,
        signer_relationship: b.signer_relationship,
        signature: b.signature,
        recipient: b.recipient,
        purpose: b.purpose,
        scope: b.scope,
        expires: b.expires,
        device,
        ip: who.ctx.ip_string().unwrap_or_default(),
    };
    created(st.vault.sign_consent(&who.actor, who.purpose, req).await.map(|c| carevault_core::consent_to_fhir(&c, &id)))
}

/// `POST /api/v1/consents/{id}/revoke`.
pub(crate) async fn revoke_consent(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    done(st.vault.revoke_consent(&who.actor, who.purpose, &id).await.map(|_| ()))
}

/// `POST /api/v1/consents/{id}/verify`: the body is a consent PDF; 204 when it is exactly the
/// signed consent (hashes recomputed), 422 otherwise.
pub(crate) async fn verify_consent(
    State(st): State<AppState>,
    Path(id): Path<String>,
    who: Purposed<Api>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let pdf = match crate::extract::read_body(&headers, body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return problem(e.status(), "CV-INPUT-003", &e.reason()),
    };
    match st.vault.verify_consent_pdf(&who.actor, who.purpose, &id, &pdf).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(CoreError::Invalid(e)) => problem(StatusCode::UNPROCESSABLE_ENTITY, "CV-CONSENT-001", &e.message),
        Err(e) => ApiError(e).into_response(),
    }
}
