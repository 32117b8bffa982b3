//! Consents captured on a tablet (the document, typed name, drawn signature drawn by
//! `static/signature.js`), shown with the signature re-drawn as SVG, its PDF, verification and
//! revocation.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::{ConsentRequest, CoreError};
use carevault_domain::consent::{self, ConsentKind, DocumentFields, DrawnSignature, SignedConsent, Template};
use maud::{html, Markup};
use serde::Deserialize;

use super::{alert, badge, directory_people, patient_name};
use crate::server::AppState;
use crate::ui::{after, csrf_field, error_page, explain, page_status, post_form, ui_form, Ui};

#[derive(Deserialize, Default)]
pub(super) struct ConsentQuery {
    template: Option<String>,
    recipient: Option<String>,
    purpose: Option<String>,
    scope: Option<String>,
    expires: Option<String>,
}

/// The signer's name as it appears in the document shown before signing (the typed name takes
/// its place when signed).
const SIGNER_PLACEHOLDER: &str = "(the name typed below)";

/// What the consent form carries besides the signature.
#[derive(Default, Clone)]
struct ConsentInput {
    kind: String,
    recipient: String,
    purpose: String,
    scope: String,
    expires: String,
    typed_name: String,
    relationship: String,
}

impl ConsentInput {
    fn opt(s: &str) -> Option<String> {
        Some(s.trim().to_string()).filter(|v| !v.is_empty())
    }
}

/// The current version of each template kind.
fn current_templates(all: Vec<Template>) -> Vec<Template> {
    let mut out: Vec<Template> = Vec::new();
    for t in all {
        match out.iter_mut().find(|o| o.kind == t.kind) {
            Some(o) if o.version < t.version => *o = t,
            Some(_) => {}
            None => out.push(t),
        }
    }
    out.sort_by_key(|t| ConsentKind::ALL.iter().position(|k| *k == t.kind));
    out
}

/// The document as shown before signing, and its SHA-256 (what the form carries back).
async fn preview(
    ui: &Ui,
    st: &AppState,
    patient: &str,
    t: &Template,
    input: &ConsentInput,
) -> Result<Result<(String, String), String>, CoreError> {
    let p = st.vault.read_patient(&ui.actor, ui.purpose, patient).await?;
    let (units, _) = directory_people(ui, st).await;
    let organization = units
        .iter()
        .find(|u| u.kind == "organization" && u.id == ui.actor.organization_id())
        .map(|u| u.name.clone())
        .unwrap_or_else(|| "the practice".into());
    let fields = DocumentFields {
        patient_name: patient_name(&p),
        birth_date: p.data.birth_date.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
        organization,
        recipient: ConsentInput::opt(&input.recipient),
        purpose: ConsentInput::opt(&input.purpose),
        scope: ConsentInput::opt(&input.scope),
        expires: ConsentInput::opt(&input.expires),
        signer_typed_name: SIGNER_PLACEHOLDER.into(),
        signer_relationship: None,
    };
    Ok(match consent::render_document(t, &fields) {
        Ok(doc) => {
            let h = consent::document_sha256_hex(&doc);
            Ok((doc, h))
        }
        Err(e) => Err(e.to_string()),
    })
}

async fn render_consent_form(
    ui: &Ui,
    st: &AppState,
    patient: &str,
    input: &ConsentInput,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let templates = match st.vault.consent_templates(&ui.actor).await {
        Ok(t) => current_templates(t),
        Err(e) => return error_page(Some(ui), &e),
    };
    let Some(t) = templates.iter().find(|t| t.kind.id() == input.kind).or_else(|| templates.first()).cloned() else {
        return error_page(Some(ui), &CoreError::Internal("no consent template".into()));
    };
    let roi = t.kind == ConsentKind::ReleaseOfInformation;
    let shown = match preview(ui, st, patient, &t, input).await {
        Ok(s) => s,
        Err(e) => return error_page(Some(ui), &e),
    };
    let action = format!("/ui/patients/{patient}/consents");
    let content = html! {
        div class="tablet" {
            h1 { "Consent: " (t.title) }
            (alert(error))
            form method="get" action=(format!("/ui/patients/{patient}/consents/new")) class="stack" {
                label for="consent-template" { "Consent form" }
                select id="consent-template" name="template" {
                    @for o in &templates { option value=(o.kind.id()) selected[o.kind == t.kind] { (o.title) " (version " (o.version) ")" } }
                }
                @if roi {
                    label for="roi-recipient" { "Recipient" }
                    input id="roi-recipient" name="recipient" type="text" maxlength="200" value=(input.recipient);
                    label for="roi-purpose" { "Purpose" }
                    input id="roi-purpose" name="purpose" type="text" maxlength="200" value=(input.purpose);
                    label for="roi-scope" { "Information to be released" }
                    input id="roi-scope" name="scope" type="text" maxlength="500" value=(input.scope);
                    label for="roi-expires" { "Expires" }
                    input id="roi-expires" name="expires" type="text" maxlength="100" value=(input.expires);
                }
                button type="submit" class="secondary" { "Show this form" }
            }
            @match &shown {
                Err(m) => {
                    p class="error" role="alert" { "The document cannot be shown yet: " (m) "." @if roi { " Fill in the release details above and press \"Show this form\"." } }
                }
                Ok((doc, hash)) => {
                    h2 { "Please read" }
                    div class="document" tabindex="0" role="region" aria-label="Consent document" { (doc) }
                    form method="post" action=(action) class="stack" id="consent-form" {
                        (csrf_field(&ui.csrf))
                        input type="hidden" name="kind" value=(t.kind.id());
                        input type="hidden" name="template_version" value=(t.version);
                        input type="hidden" name="document_sha256" value=(hash);
                        @if roi {
                            input type="hidden" name="recipient" value=(input.recipient);
                            input type="hidden" name="purpose" value=(input.purpose);
                            input type="hidden" name="scope" value=(input.scope);
                            input type="hidden" name="expires" value=(input.expires);
                        }
                        label for="signer-name" { "Full name" }
                        input id="signer-name" name="signer_typed_name" type="text" required maxlength="200" autocomplete="off" value=(input.typed_name);
                        label for="signer-relationship" { "Relationship to the patient (if not the patient)" }
                        input id="signer-relationship" name="signer_relationship" type="text" maxlength="100" autocomplete="off" value=(input.relationship);
                        div id="signature-label" class="label" { "Signature" }
                        canvas class="signature" id="signature-pad" width="800" height="220" role="application" aria-label="Signature"
                            aria-describedby="signature-keys" tabindex="0"
                            data-input="signature-data" data-agree="agree" data-submit="sign-consent" data-clear="clear-signature" {
                            "Draw your signature here with a finger or a stylus."
                        }
                        p id="signature-keys" class="hint" {
                            "Draw with a finger, stylus or mouse. With the keyboard: focus the pad, press Space to put the pen down or lift it, and move it with the arrow keys (Shift moves further)."
                        }
                        input type="hidden" name="signature" id="signature-data" value="";
                        p id="signature-status" role="status" class="hint" { "No signature yet." }
                        div class="actions" { button type="button" id="clear-signature" class="secondary" { "Clear signature" } }
                        div class="row" {
                            input id="agree" name="agree" type="checkbox" value="yes" required;
                            label for="agree" { "I have read and agree to this document" }
                        }
                        button type="submit" id="sign-consent" disabled { "Sign consent" }
                    }
                    script src="/static/signature.js" defer {}
                }
            }
            p { a href=(format!("/ui/patients/{patient}")) { "Back to the chart" } }
        }
    };
    page_status(ui, status, "Capture a consent", content)
}

/// `GET /ui/patients/{id}/consents/new?template=KIND`
pub(super) async fn consent_new(
    ui: Ui,
    State(st): State<AppState>,
    Path(pid): Path<String>,
    q: Result<Query<ConsentQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let input = ConsentInput {
        kind: q.template.unwrap_or_else(|| "treatment".into()),
        recipient: q.recipient.unwrap_or_default(),
        purpose: q.purpose.unwrap_or_default(),
        scope: q.scope.unwrap_or_default(),
        expires: q.expires.unwrap_or_default(),
        ..ConsentInput::default()
    };
    render_consent_form(&ui, &st, &pid, &input, StatusCode::OK, None).await
}

/// `POST /ui/patients/{id}/consents`: the patient's signature on the current template.
pub(super) async fn consent_sign(ui: Ui, State(st): State<AppState>, Path(pid): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let input = ConsentInput {
        kind: f.get("kind").to_string(),
        recipient: f.get("recipient").to_string(),
        purpose: f.get("purpose").to_string(),
        scope: f.get("scope").to_string(),
        expires: f.get("expires").to_string(),
        typed_name: f.get("signer_typed_name").to_string(),
        relationship: f.get("signer_relationship").to_string(),
    };
    let again = |status: StatusCode, m: String| {
        let (ui, st, pid, input) = (&ui, &st, &pid, &input);
        async move { render_consent_form(ui, st, pid, input, status, Some(&m)).await }
    };
    let Ok(version) = f.get("template_version").parse::<u32>() else {
        return again(StatusCode::BAD_REQUEST, "The form is missing its template version; sign the form shown now.".into()).await;
    };
    if f.get("agree") != "yes" {
        return again(StatusCode::BAD_REQUEST, "Tick \"I have read and agree to this document\" to sign.".into()).await;
    }
    if input.typed_name.is_empty() {
        return again(StatusCode::BAD_REQUEST, "Type your full name.".into()).await;
    }
    let signature: DrawnSignature = match serde_json::from_str(f.get("signature")) {
        Ok(s) => s,
        Err(_) => return again(StatusCode::BAD_REQUEST, "Draw your signature in the box before signing.".into()).await,
    };
    // The document the patient read must be the one signed: the template version is checked by
    // the core (audited); the rendered document (the patient's name, birth date, the release
    // details) is compared here.
    let templates = match st.vault.consent_templates(&ui.actor).await {
        Ok(t) => current_templates(t),
        Err(e) => return error_page(Some(&ui), &e),
    };
    if let Some(t) = templates.iter().find(|t| t.kind.id() == input.kind && t.version == version) {
        match preview(&ui, &st, &pid, t, &input).await {
            Ok(Ok((_, hash))) if hash == f.get("document_sha256") => {}
            Ok(_) => {
                let m = "The document changed after it was shown (for example the patient's details). Read the current document and sign again.";
                return again(StatusCode::CONFLICT, m.into()).await;
            }
            Err(e) => return error_page(Some(&ui), &e),
        }
    }
    let device = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_string();
    let req = ConsentRequest {
        patient_id: pid.clone(),
        kind: input.kind.clone(),
        template_version: version,
        signer_typed_name: input.typed_name.clone(),
        signer_relationship: ConsentInput::opt(&input.relationship),
        signature,
        recipient: ConsentInput::opt(&input.recipient),
        purpose: ConsentInput::opt(&input.purpose),
        scope: ConsentInput::opt(&input.scope),
        expires: ConsentInput::opt(&input.expires),
        device,
        ip: ui.ctx.ip_string().unwrap_or_default(),
    };
    match st.vault.sign_consent(&ui.actor, ui.purpose, req).await {
        Ok(c) => Redirect::to(&format!("/ui/consents/{}", c.id)).into_response(),
        Err(e @ (CoreError::Invalid(_) | CoreError::Conflict(_))) => {
            let status = crate::error::status_of(&e, false);
            again(status, explain(&e).1).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// A stroke's points for an SVG polyline (a single point is doubled so that it shows as a dot).
fn polyline_points(stroke: &[[u16; 2]]) -> String {
    let mut pts: Vec<String> = stroke.iter().map(|[x, y]| format!("{x},{y}")).collect();
    if let [one] = pts.as_slice() {
        let p = one.clone();
        pts.push(p);
    }
    pts.join(" ")
}

/// The drawn signature as inline SVG (no script).
fn signature_svg(s: &DrawnSignature) -> Markup {
    html! {
        svg class="signature-drawn" xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {} {}", s.width, s.height))
            width=(s.width) height=(s.height) role="img" aria-label="The drawn signature" {
            rect x="0" y="0" width=(s.width) height=(s.height) fill="#ffffff" stroke="#5b6b80" stroke-width="1" {}
            @for stroke in &s.strokes {
                polyline points=(polyline_points(stroke)) fill="none" stroke="#111111" stroke-width="3" stroke-linecap="round" stroke-linejoin="round" {}
            }
        }
    }
}

async fn render_consent(ui: &Ui, st: &AppState, id: &str, status: StatusCode, result: Option<Result<String, String>>) -> Response {
    let c: SignedConsent = match st.vault.read_consent(&ui.actor, ui.purpose, id).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(ui), &e),
    };
    let content = html! {
        div class="tablet" {
            h1 { (c.title) }
            @match &result {
                Some(Ok(m)) => { p class="notice" role="status" { (m) } }
                Some(Err(m)) => { p class="error" role="alert" { (m) } }
                None => {}
            }
            dl class="facts" {
                dt { "Status" } dd { (badge(&c.status)) }
                dt { "Signed by" } dd { (c.signer_typed_name) @if let Some(r) = &c.signer_relationship { " (" (r) ")" } }
                dt { "Signed at" } dd { (c.signed_at_utc) }
                @if let Some(r) = &c.revoked_at { dt { "Revoked at" } dd { (r) } }
                dt { "Template" } dd { (c.kind.id()) ", version " (c.template_version) }
                dt { "Device" } dd { (c.device) }
                dt { "Address" } dd { (c.ip) }
                dt { "Document SHA-256" } dd { code class="hash" { (c.document_sha256) } }
                dt { "Signature SHA-256" } dd { code class="hash" { (c.signature_sha256) } }
            }
            h2 { "Document" }
            div class="document" tabindex="0" role="region" aria-label="Signed consent document" { (c.document) }
            h2 { "Signature" }
            (signature_svg(&c.signature))
            div class="actions" {
                a class="button" href=(format!("/ui/consents/{id}/pdf")) { "Download PDF" }
                (post_form(ui, &format!("/ui/consents/{id}/verify"), "inline", html! { button type="submit" class="secondary" { "Verify" } }))
            }
            @if !c.is_revoked() {
                section aria-labelledby="revoke-h" {
                    h2 id="revoke-h" { "Revoke" }
                    (post_form(ui, &format!("/ui/consents/{id}/revoke"), "stack", html! {
                        div class="row" {
                            input id="revoke-confirm" name="confirm" type="checkbox" value="yes" required;
                            label for="revoke-confirm" { "The patient revokes this consent" }
                        }
                        button type="submit" class="danger" { "Revoke" }
                    }))
                }
            }
        }
    };
    page_status(ui, status, "Consent", content)
}

/// `GET /ui/consents/{id}`
pub(super) async fn consent_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    render_consent(&ui, &st, &id, StatusCode::OK, None).await
}

/// `GET /ui/consents/{id}/pdf`
pub(super) async fn consent_pdf(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let pdf = match st.vault.consent_pdf(&ui.actor, ui.purpose, &id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let name: String = id.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
    let mut r = pdf.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"consent-{name}.pdf\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `POST /ui/consents/{id}/verify`: the record's PDF is rendered again and checked (document
/// and signature hashes recomputed).
pub(super) async fn consent_verify(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    let p = ui.purpose;
    let pdf = match st.vault.consent_pdf(&ui.actor, p, &id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let result = match st.vault.verify_consent_pdf(&ui.actor, p, &id, &pdf).await {
        Ok(()) => Ok("Verified: the document and the signature match their recorded SHA-256, and the PDF is the one this record renders."
            .to_string()),
        Err(CoreError::Invalid(e)) => Err(format!("Verification failed: {}.", e.message)),
        Err(e) => return error_page(Some(&ui), &e),
    };
    render_consent(&ui, &st, &id, StatusCode::OK, Some(result)).await
}

/// `POST /ui/consents/{id}/revoke` (with the confirmation box).
pub(super) async fn consent_revoke(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if f.get("confirm") != "yes" {
        let m = "Tick \"The patient revokes this consent\" to revoke it.".to_string();
        return render_consent(&ui, &st, &id, StatusCode::BAD_REQUEST, Some(Err(m))).await;
    }
    after(&ui, st.vault.revoke_consent(&ui.actor, ui.purpose, &id).await, |c| format!("/ui/consents/{}", c.id))
}
