//! The clinical pages: visits (encounters) with SOAP notes (draft → signed → co-signed, signed
//! addenda) and ICD-10-CM diagnoses; documents (multipart upload, metadata, the content served
//! sandboxed); consents captured on a tablet (the document, typed name, drawn signature drawn
//! by `static/signature.js`), shown with the signature re-drawn as SVG, its PDF, verification
//! and revocation. Every call goes through the vault, which authorizes and audits it.
//!
//! Layout: this file holds the routes and what the pages share; `visits` (encounters, notes,
//! diagnoses), `documents` and `consents` hold the pages.

mod consents;
mod documents;
mod visits;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{CoreError, PatientRecord};
use maud::{html, Markup};

use super::{explain, when, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients/{id}/encounters", post(visits::start_visit))
        .route("/encounters/{id}", get(visits::encounter_page))
        .route("/encounters/{id}/notes", post(visits::create_note))
        .route("/encounters/{id}/conditions", post(visits::add_diagnosis))
        .route("/encounters/{id}/finish", post(visits::finish_visit))
        .route("/notes/{id}", get(visits::note_page).post(visits::save_note))
        .route("/notes/{id}/sign", post(visits::sign_note))
        .route("/notes/{id}/cosign", post(visits::cosign_note))
        .route("/notes/{id}/addenda", post(visits::add_addendum))
        .route("/patients/{id}/documents/new", get(documents::document_new))
        .route("/patients/{id}/documents", post(documents::document_upload).layer(DefaultBodyLimit::max(documents::UPLOAD_BODY_LIMIT)))
        .route("/documents/{id}", get(documents::document_page))
        .route("/documents/{id}/content", get(documents::document_content))
        .route("/patients/{id}/consents/new", get(consents::consent_new))
        .route("/patients/{id}/consents", post(consents::consent_sign))
        .route("/consents/{id}", get(consents::consent_page))
        .route("/consents/{id}/pdf", get(consents::consent_pdf))
        .route("/consents/{id}/verify", post(consents::consent_verify))
        .route("/consents/{id}/revoke", post(consents::consent_revoke))
}

// ----- shared bits -----

fn patient_name(p: &PatientRecord) -> String {
    let n = p.data.name.first();
    n.and_then(|n| n.text.clone())
        .or_else(|| n.map(|n| format!("{} {}", n.given.join(" "), n.family.clone().unwrap_or_default()).trim().to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "(no name)".into())
}

fn badge(status: &str) -> Markup {
    let class = match status {
        "final" | "active" | "finished" | "current" => "badge ok",
        "revoked" | "cancelled" | "entered-in-error" => "badge bad",
        _ => "badge",
    };
    html! { span class=(class) { (status) } }
}

fn alert(msg: Option<&str>) -> Markup {
    html! { @if let Some(m) = msg { p class="error" role="alert" { (m) } } }
}

/// The message of a refused input, or `None` for other errors (shown on the error page).
fn invalid_message(e: &CoreError) -> Option<String> {
    match e {
        CoreError::Invalid(_) => Some(explain(e).1),
        _ => None,
    }
}

/// The actor's practitioner entry, for walk-in visits and co-signer names.
async fn directory_people(ui: &Ui, st: &AppState) -> (Vec<carevault_core::UnitView>, Vec<carevault_core::PractitionerView>) {
    st.vault.directory(&ui.actor).await.unwrap_or_default()
}

// ----- home page -----

/// "My tasks" on the home page: the actor's unsigned draft notes (ids, patients and times; the
/// core audits the listing). Notes waiting for the actor's co-signature are not listed: the
/// co-signer is only inside each note's sealed body.
pub(crate) async fn home_section(ui: &Ui, st: &AppState) -> Option<Markup> {
    if !ui.can(carevault_domain::Permission::NoteWrite) {
        return None;
    }
    let drafts = st.vault.my_draft_notes(&ui.actor).await.ok()?;
    Some(html! {
        section aria-labelledby="tasks-h" {
            h2 id="tasks-h" { "My tasks" }
            @if drafts.is_empty() {
                p { "No unsigned notes." }
            } @else {
                p { "Notes you have not signed yet:" }
                ul {
                    @for d in &drafts {
                        li {
                            a href=(format!("/ui/notes/{}", d.id)) { "Draft note, started " (when(d.created_at)) }
                            " (last saved " (when(d.updated_at)) ") · "
                            a href=(format!("/ui/patients/{}", d.patient_id)) { "patient's chart" }
                        }
                    }
                }
            }
        }
    })
}
