//! The clinical pages: visits (encounters) with SOAP notes (draft → signed → co-signed, signed
//! addenda) and ICD-10-CM diagnoses; documents (multipart upload, metadata, the content served
//! sandboxed); consents captured on a tablet (the document, typed name, drawn signature drawn
//! by `static/signature.js`), shown with the signature re-drawn as SVG, its PDF, verification
//! and revocation. Every call goes through the vault, which authorizes and audits it.

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{ChartRecord, ConsentRequest, CoreError, DocumentUpload, PatientRecord};
use carevault_domain::consent::{self, ConsentKind, DocumentFields, DrawnSignature, SignedConsent, Template};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{after, csrf_field, error_page, explain, message_page, page_status, post_form, ui_form, when, FormData, Ui};
use crate::server::AppState;

/// Largest multipart body read for an upload (the configured document limit is checked while
/// reading; this only caps what axum buffers per request).
const UPLOAD_BODY_LIMIT: usize = 65 * 1024 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients/{id}/encounters", post(start_visit))
        .route("/encounters/{id}", get(encounter_page))
        .route("/encounters/{id}/notes", post(create_note))
        .route("/encounters/{id}/conditions", post(add_diagnosis))
        .route("/encounters/{id}/finish", post(finish_visit))
        .route("/notes/{id}", get(note_page).post(save_note))
        .route("/notes/{id}/sign", post(sign_note))
        .route("/notes/{id}/cosign", post(cosign_note))
        .route("/notes/{id}/addenda", post(add_addendum))
        .route("/patients/{id}/documents/new", get(document_new))
        .route("/patients/{id}/documents", post(document_upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)))
        .route("/documents/{id}", get(document_page))
        .route("/documents/{id}/content", get(document_content))
        .route("/patients/{id}/consents/new", get(consent_new))
        .route("/patients/{id}/consents", post(consent_sign))
        .route("/consents/{id}", get(consent_page))
        .route("/consents/{id}/pdf", get(consent_pdf))
        .route("/consents/{id}/verify", post(consent_verify))
        .route("/consents/{id}/revoke", post(consent_revoke))
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

fn form_expired() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form was not sent from a current carevault page (its security token is missing or out of date). Go back, reload the page and try again.",
    )
}

/// The four SOAP textareas with the given values.
fn soap_fields(prefix: &str, values: &Value) -> Markup {
    html! {
        @for (k, title) in [("subjective", "Subjective"), ("objective", "Objective"), ("assessment", "Assessment"), ("plan", "Plan")] {
            label for=(format!("{prefix}-{k}")) { (title) }
            textarea id=(format!("{prefix}-{k}")) name=(k) rows="4" maxlength="20000" { (values[k].as_str().unwrap_or("")) }
        }
    }
}

fn sections_of(f: &FormData) -> Value {
    let s = |k: &str| Some(f.raw(k).to_string()).filter(|v| !v.trim().is_empty());
    json!({"subjective": s("subjective"), "objective": s("objective"), "assessment": s("assessment"), "plan": s("plan")})
}

fn note_blocks(body: &Value) -> Markup {
    html! {
        @for (k, title) in [("subjective", "Subjective"), ("objective", "Objective"), ("assessment", "Assessment"), ("plan", "Plan")] {
            @if let Some(t) = body[k].as_str().filter(|t| !t.is_empty()) {
                h3 { (title) }
                pre class="note" { (t) }
            }
        }
    }
}

/// The actor's practitioner entry, for walk-in visits and co-signer names.
async fn directory_people(ui: &Ui, st: &AppState) -> (Vec<carevault_core::UnitView>, Vec<carevault_core::PractitionerView>) {
    st.vault.directory(&ui.actor).await.unwrap_or_default()
}

fn person_name(people: &[carevault_core::PractitionerView], user_id: &str) -> Option<String> {
    people.iter().find(|p| p.user_id.as_deref() == Some(user_id)).map(|p| format!("{} {}", p.given, p.family))
}

/// A staff member in words: "you", their directory name, else the name the record keeps.
fn who(ui: &Ui, people: &[carevault_core::PractitionerView], user_id: &str, recorded: Option<&str>) -> String {
    if user_id == ui.actor.user_id().as_str() {
        return format!("{} (you)", ui.actor.username());
    }
    person_name(people, user_id).or_else(|| recorded.map(str::to_string)).unwrap_or_else(|| format!("user {user_id}"))
}

/// Who signed (`signature` or `cosignature` of a record body) and when.
fn signer(ui: &Ui, people: &[carevault_core::PractitionerView], s: &Value) -> String {
    format!("{}, {}", who(ui, people, s["by"].as_str().unwrap_or(""), s["name"].as_str()), when(s["at"].as_i64().unwrap_or(0)))
}

// ----- encounters -----

/// Where a walk-in by the actor takes place: their practitioner entry and its only location.
fn walk_in_place(ui: &Ui, units: &[carevault_core::UnitView], people: &[carevault_core::PractitionerView]) -> Option<(String, String)> {
    let me = people.iter().find(|p| p.user_id.as_deref() == Some(ui.actor.user_id().as_str()))?;
    let mut places: Vec<String> = Vec::new();
    for r in &me.roles {
        match &r.location_id {
            Some(l) => places.push(l.clone()),
            None => places.extend(
                units
                    .iter()
                    .filter(|u| u.kind == "location" && u.organization_id.as_deref() == Some(&r.organization_id))
                    .map(|u| u.id.clone()),
            ),
        }
    }
    places.sort();
    places.dedup();
    match places.as_slice() {
        [one] => Some((me.id.clone(), one.clone())),
        _ => None,
    }
}

/// The form that asks where and with whom a walk-in visit happens.
async fn choose_place(ui: &Ui, st: &AppState, patient: &str, status: StatusCode, error: Option<&str>) -> Response {
    let (units, people) = directory_people(ui, st).await;
    let locations: Vec<_> = units.iter().filter(|u| u.kind == "location").collect();
    let content = html! {
        h1 { "Start a visit" }
        (alert(error))
        @if people.is_empty() || locations.is_empty() {
            p class="error" role="alert" { "No practitioner or location is registered in the practice directory, so a walk-in visit cannot be started. Ask your practice administrator to add them." }
        } @else {
            p { "Choose who sees the patient, and where." }
            (post_form(ui, &format!("/ui/patients/{patient}/encounters"), "stack", html! {
                label for="visit-practitioner" { "Practitioner" }
                select id="visit-practitioner" name="practitioner" required {
                    @for p in &people {
                        option value=(p.id) selected[p.user_id.as_deref() == Some(ui.actor.user_id().as_str())] { (p.given) " " (p.family) }
                    }
                }
                label for="visit-location" { "Location" }
                select id="visit-location" name="location" required {
                    @for l in &locations { option value=(l.id) { (l.name) } }
                }
                button type="submit" { "Start a visit" }
            }))
        }
        p { a href=(format!("/ui/patients/{patient}")) { "Back to the chart" } }
    };
    page_status(ui, status, "Start a visit", content)
}

/// `POST /ui/patients/{id}/encounters`: from an appointment (field `appointment`) or a walk-in.
async fn start_visit(ui: Ui, State(st): State<AppState>, Path(pid): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let req = if let Some(a) = f.opt("appointment") {
        json!({"appointmentId": a})
    } else {
        let (pr, loc) = match (f.opt("practitioner"), f.opt("location")) {
            (Some(p), Some(l)) => (p.to_string(), l.to_string()),
            _ => {
                let (units, people) = directory_people(&ui, &st).await;
                match walk_in_place(&ui, &units, &people) {
                    Some(x) => x,
                    None => return choose_place(&ui, &st, &pid, StatusCode::OK, None).await,
                }
            }
        };
        json!({"patientId": pid, "practitionerId": pr, "locationId": loc})
    };
    match st.vault.start_encounter(&ui.actor, ui.actor.default_purpose(), &req).await {
        Ok(e) => Redirect::to(&format!("/ui/encounters/{}", e.id)).into_response(),
        Err(e @ CoreError::Invalid(_)) if f.opt("appointment").is_none() => {
            choose_place(&ui, &st, &pid, StatusCode::BAD_REQUEST, Some(&explain(&e).1)).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `GET /ui/encounters/{id}`
async fn encounter_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    render_encounter(&ui, &st, &id, StatusCode::OK, &json!({}), None).await
}

async fn render_encounter(ui: &Ui, st: &AppState, id: &str, status: StatusCode, values: &Value, error: Option<&str>) -> Response {
    let p = ui.actor.default_purpose();
    let enc = match st.vault.read_encounter(&ui.actor, p, id).await {
        Ok(e) => e,
        Err(e) => return error_page(Some(ui), &e),
    };
    let pid = enc.patient_id.clone();
    let name = st.vault.read_patient(&ui.actor, p, &pid).await.map(|r| patient_name(&r)).unwrap_or_else(|_| "the patient".into());
    let notes: Result<Vec<ChartRecord>, CoreError> = st
        .vault
        .patient_notes(&ui.actor, p, &pid)
        .await
        .map(|l| l.into_iter().filter(|n| n.kind == "note" && n.parent_id.as_deref() == Some(id)).collect());
    let conditions: Result<Vec<ChartRecord>, CoreError> = st
        .vault
        .patient_conditions(&ui.actor, p, &pid)
        .await
        .map(|l| l.into_iter().filter(|c| c.parent_id.as_deref() == Some(id)).collect());
    let (_, people) = directory_people(ui, st).await;
    let me = ui.actor.user_id().as_str().to_string();
    let start = enc.body["start"].as_i64().unwrap_or(enc.created_at);
    let open = enc.status == "in-progress";
    let content = html! {
        h1 { "Visit " (when(start)) " · " a href=(format!("/ui/patients/{pid}")) { (name) } }
        (alert(error))
        dl class="facts" {
            dt { "Status" } dd { (badge(&enc.status)) }
            dt { "Started" } dd { (when(start)) }
            @if let Some(end) = enc.body["end"].as_i64() { dt { "Finished" } dd { (when(end)) } }
            dt { "Kind" } dd { @if enc.body["appointmentId"].is_string() { "booked appointment" } @else { "walk-in" } }
        }
        section aria-labelledby="notes-h" {
            h2 id="notes-h" { "Notes" }
            @match &notes {
                Ok(list) if list.is_empty() => { p { "No notes yet." } }
                Ok(list) => {
                    ul {
                        @for n in list {
                            li {
                                a href=(format!("/ui/notes/{}", n.id)) { "Progress note, " (when(n.created_at)) }
                                " " (badge(&n.status))
                                @if n.status == "draft" && n.created_by == me { " (your draft)" }
                            }
                        }
                    }
                }
                Err(e) => { p class="denied" { (explain(e).1) } }
            }
        }
        @if open {
            section aria-labelledby="write-h" {
                h2 id="write-h" { "Write a note" }
                (post_form(ui, &format!("/ui/encounters/{id}/notes"), "stack", html! {
                    (soap_fields("new", values))
                    @let others: Vec<_> = people.iter().filter(|p| p.user_id.as_deref().is_some_and(|u| u != me)).collect();
                    @if !others.is_empty() {
                        label for="new-cosigner" { "Co-signer" }
                        select id="new-cosigner" name="cosigner" {
                            option value="" { "None needed" }
                            @for o in others {
                                @let uid = o.user_id.clone().unwrap_or_default();
                                option value=(uid) selected[values["cosigner"].as_str() == Some(uid.as_str())] { (o.given) " " (o.family) }
                            }
                        }
                    }
                    button type="submit" { "Save draft" }
                }))
            }
        }
        section aria-labelledby="dx-h" {
            h2 id="dx-h" { "Diagnoses" }
            @match &conditions {
                Ok(list) if list.is_empty() => { p { "No diagnosis recorded for this visit." } }
                Ok(list) => {
                    ul {
                        @for c in list {
                            li { strong { (c.body["code"].as_str().unwrap_or("")) } " " (c.body["display"].as_str().unwrap_or("")) }
                        }
                    }
                }
                Err(e) => { p class="denied" { (explain(e).1) } }
            }
            (post_form(ui, &format!("/ui/encounters/{id}/conditions"), "stack", html! {
                label for="dx-code" { "Diagnosis code (ICD-10-CM)" }
                input id="dx-code" name="code" type="text" required maxlength="10" autocomplete="off" value=(values["code"].as_str().unwrap_or(""));
                button type="submit" { "Add diagnosis" }
            }))
        }
        section aria-labelledby="more-h" {
            h2 id="more-h" { "More" }
            div class="actions" {
                a href=(format!("/ui/patients/{pid}/documents/new?encounter={id}")) { "Upload a document" }
                a href=(format!("/ui/patients/{pid}")) { "Back to the chart" }
            }
            @if open {
                (post_form(ui, &format!("/ui/encounters/{id}/finish"), "inline", html! { button type="submit" { "Finish visit" } }))
            }
        }
    };
    page_status(ui, status, "Visit", content)
}

/// `POST /ui/encounters/{id}/notes`: a draft note → its page.
async fn create_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sections = sections_of(&f);
    let r = st.vault.create_note(&ui.actor, ui.actor.default_purpose(), &id, &sections, f.opt("cosigner")).await;
    match r {
        Ok(n) => Redirect::to(&format!("/ui/notes/{}", n.id)).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => {
                let mut values = sections;
                values["cosigner"] = json!(f.opt("cosigner"));
                render_encounter(&ui, &st, &id, StatusCode::BAD_REQUEST, &values, Some(&m)).await
            }
            None => error_page(Some(&ui), &e),
        },
    }
}

/// `POST /ui/encounters/{id}/conditions`: a diagnosis with an ICD-10-CM code.
async fn add_diagnosis(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.add_condition(&ui.actor, ui.actor.default_purpose(), &id, f.get("code"), None).await {
        Ok(_) => Redirect::to(&format!("/ui/encounters/{id}")).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => render_encounter(&ui, &st, &id, StatusCode::BAD_REQUEST, &json!({"code": f.get("code")}), Some(&m)).await,
            None => error_page(Some(&ui), &e),
        },
    }
}

/// `POST /ui/encounters/{id}/finish`
async fn finish_visit(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    after(&ui, st.vault.finish_encounter(&ui.actor, ui.actor.default_purpose(), &id).await, |e| format!("/ui/encounters/{}", e.id))
}

// ----- notes -----

/// `GET /ui/notes/{id}`
async fn note_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    render_note(&ui, &st, &id, StatusCode::OK, None, None).await
}

/// What a re-rendered note page keeps of a refused form.
enum Kept {
    Draft(Value),
    Addendum(String),
}

async fn render_note(ui: &Ui, st: &AppState, id: &str, status: StatusCode, kept: Option<Kept>, error: Option<&str>) -> Response {
    let (note, addenda) = match st.vault.read_note(&ui.actor, ui.actor.default_purpose(), id).await {
        Ok(x) => x,
        Err(e) => return error_page(Some(ui), &e),
    };
    if note.kind == "addendum" {
        if let Some(parent) = &note.parent_id {
            return Redirect::to(&format!("/ui/notes/{parent}")).into_response();
        }
    }
    let (_, people) = directory_people(ui, st).await;
    let me = ui.actor.user_id().as_str();
    let mine = note.created_by == me;
    let author = who(ui, &people, &note.created_by, note.body["signature"]["name"].as_str());
    let cosigner = note.body["cosigner"].as_str();
    let draft_values = match &kept {
        Some(Kept::Draft(v)) => v.clone(),
        _ => note.body.clone(),
    };
    let addendum_text = match &kept {
        Some(Kept::Addendum(t)) => t.clone(),
        _ => String::new(),
    };
    let signed = note.status != "draft";
    let content = html! {
        h1 { "Progress note" }
        (alert(error))
        dl class="facts" {
            dt { "Status" } dd { (badge(&note.status)) }
            dt { "Author" } dd { (author) }
            dt { "Written" } dd { (when(note.created_at)) }
            dt { "Last changed" } dd { (when(note.updated_at)) }
            @if let Some(enc) = &note.parent_id { dt { "Visit" } dd { a href=(format!("/ui/encounters/{enc}")) { "Open the visit" } } }
            dt { "Patient" } dd { a href=(format!("/ui/patients/{}", note.patient_id)) { "Open the chart" } }
            @if let Some(c) = cosigner {
                dt { "Co-signer" }
                dd { (who(ui, &people, c, None)) }
            }
            @if let Some(s) = note.body.get("signature") {
                dt { "Signed" } dd { (signer(ui, &people, s)) }
                dt { "Signature SHA-256" } dd { code class="hash" { (s["sha256"].as_str().unwrap_or("")) } }
            }
            @if let Some(s) = note.body.get("cosignature") {
                dt { "Co-signed" } dd { (signer(ui, &people, s)) }
            }
        }
        section aria-labelledby="content-h" {
            h2 id="content-h" { "Note" }
            (note_blocks(&note.body))
        }
        @if !signed && mine {
            section aria-labelledby="edit-h" {
                h2 id="edit-h" { "Edit the draft" }
                (post_form(ui, &format!("/ui/notes/{id}"), "stack", html! {
                    (soap_fields("edit", &draft_values))
                    button type="submit" { "Save draft" }
                }))
            }
            section aria-labelledby="sign-h" {
                h2 id="sign-h" { "Sign" }
                p { "Signing locks the note: afterwards it can only be amended with signed addenda." }
                (post_form(ui, &format!("/ui/notes/{id}/sign"), "stack", html! {
                    div class="row" {
                        input id="sign-confirm" name="confirm" type="checkbox" value="yes" required;
                        label for="sign-confirm" { "I have reviewed this note and sign it" }
                    }
                    button type="submit" { "Sign note" }
                }))
            }
        } @else if !signed {
            p role="status" { "This draft can be edited and signed only by its author." }
        }
        @if note.status == "signed" && cosigner == Some(me) {
            section aria-labelledby="cosign-h" {
                h2 id="cosign-h" { "Co-signature" }
                p { "You are named as this note's co-signer. Your co-signature covers the same content (SHA-256 above)." }
                (post_form(ui, &format!("/ui/notes/{id}/cosign"), "inline", html! { button type="submit" { "Co-sign note" } }))
            }
        }
        @if signed {
            section aria-labelledby="addenda-h" {
                h2 id="addenda-h" { "Addenda" }
                @if addenda.is_empty() { p { "No addenda." } }
                @for a in &addenda {
                    article class="card" {
                        pre class="note" { (a.body["text"].as_str().unwrap_or("")) }
                        p class="hint" {
                            (signer(ui, &people, &a.body["signature"]))
                            " · SHA-256 " code class="hash" { (a.content_sha256.as_deref().unwrap_or("")) }
                        }
                    }
                }
                (post_form(ui, &format!("/ui/notes/{id}/addenda"), "stack", html! {
                    label for="addendum" { "Addendum" }
                    textarea id="addendum" name="text" rows="4" maxlength="20000" required { (addendum_text) }
                    button type="submit" { "Add addendum" }
                }))
            }
        }
    };
    page_status(ui, status, "Progress note", content)
}

/// `POST /ui/notes/{id}`: saves the draft.
async fn save_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sections = sections_of(&f);
    match st.vault.update_note(&ui.actor, ui.actor.default_purpose(), &id, &sections).await {
        Ok(_) => Redirect::to(&format!("/ui/notes/{id}")).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => render_note(&ui, &st, &id, StatusCode::BAD_REQUEST, Some(Kept::Draft(sections)), Some(&m)).await,
            None => error_page(Some(&ui), &e),
        },
    }
}

/// `POST /ui/notes/{id}/sign`: needs the confirmation box.
async fn sign_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if f.get("confirm") != "yes" {
        let m = "Tick \"I have reviewed this note and sign it\" to sign the note.";
        return render_note(&ui, &st, &id, StatusCode::BAD_REQUEST, None, Some(m)).await;
    }
    after(&ui, st.vault.sign_note(&ui.actor, ui.actor.default_purpose(), &id).await, |n| format!("/ui/notes/{}", n.id))
}

/// `POST /ui/notes/{id}/cosign`
async fn cosign_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    after(&ui, st.vault.cosign_note(&ui.actor, ui.actor.default_purpose(), &id).await, |n| format!("/ui/notes/{}", n.id))
}

/// `POST /ui/notes/{id}/addenda`
async fn add_addendum(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.add_addendum(&ui.actor, ui.actor.default_purpose(), &id, f.raw("text")).await {
        Ok(_) => Redirect::to(&format!("/ui/notes/{id}")).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => render_note(&ui, &st, &id, StatusCode::BAD_REQUEST, Some(Kept::Addendum(f.raw("text").to_string())), Some(&m)).await,
            None => error_page(Some(&ui), &e),
        },
    }
}

// ----- documents -----

#[derive(Deserialize, Default)]
struct NewDocQuery {
    encounter: Option<String>,
}

fn upload_form(ui: &Ui, patient: &str, title: &str, encounter: Option<&str>, max: usize, error: Option<&str>) -> Markup {
    html! {
        h1 { "Upload a document" }
        (alert(error))
        p { "PDF, PNG, JPEG, GIF, WebP, TIFF or plain text, up to " (max / (1024 * 1024)) " MB. The type is checked from the content." }
        // The form token comes first: the server checks it before reading the file.
        form method="post" action=(format!("/ui/patients/{patient}/documents")) enctype="multipart/form-data" class="stack" {
            (csrf_field(&ui.csrf))
            @if let Some(e) = encounter { input type="hidden" name="encounter" value=(e); }
            label for="doc-title" { "Title" }
            input id="doc-title" name="title" type="text" required maxlength="200" value=(title);
            label for="doc-file" { "File" }
            input id="doc-file" name="file" type="file" required
                accept=".pdf,.png,.jpg,.jpeg,.gif,.webp,.tif,.tiff,.txt,application/pdf,image/png,image/jpeg,image/gif,image/webp,image/tiff,text/plain";
            button type="submit" { "Upload" }
        }
        p { a href=(format!("/ui/patients/{patient}")) { "Back to the chart" } }
    }
}

/// `GET /ui/patients/{id}/documents/new`
async fn document_new(
    ui: Ui,
    State(st): State<AppState>,
    Path(pid): Path<String>,
    q: Result<Query<NewDocQuery>, QueryRejection>,
) -> Response {
    let enc = q.ok().and_then(|Query(q)| q.encounter).filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_hexdigit()));
    let max = st.vault.config().document_max_bytes;
    page_status(&ui, StatusCode::OK, "Upload a document", upload_form(&ui, &pid, "", enc.as_deref(), max, None))
}

enum FieldError {
    TooLarge,
    Broken,
}

/// Reads a multipart field, at most `limit` bytes.
async fn read_field(field: &mut Field<'_>, limit: usize) -> Result<Vec<u8>, FieldError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|_| FieldError::Broken)? {
        if buf.len() + chunk.len() > limit {
            return Err(FieldError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `POST /ui/patients/{id}/documents` (multipart: `csrf` first, then `title`, `file`,
/// optionally `encounter`).
async fn document_upload(
    ui: Ui,
    State(st): State<AppState>,
    Path(pid): Path<String>,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let max = st.vault.config().document_max_bytes;
    let Ok(mut mp) = mp else {
        return message_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Form not accepted", "This address takes a file upload form only.");
    };
    let broken = || message_page(StatusCode::BAD_REQUEST, "Upload not accepted", "The upload was incomplete or malformed. Try again.");
    let (mut csrf_ok, mut title, mut encounter, mut file) = (false, String::new(), None::<String>, None::<(Option<String>, Vec<u8>)>);
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return broken(),
        };
        let name = field.name().unwrap_or_default().to_string();
        if !csrf_ok {
            // Nothing is read before the form token is known to be right.
            if name != "csrf" {
                return form_expired();
            }
            let given = match read_field(&mut field, 256).await {
                Ok(v) => v,
                Err(_) => return form_expired(),
            };
            if ui.csrf.is_empty() || !super::constant_time_eq(&given, ui.csrf.as_bytes()) {
                return form_expired();
            }
            csrf_ok = true;
            continue;
        }
        match name.as_str() {
            "title" | "encounter" => {
                let v = match read_field(&mut field, 4096).await {
                    Ok(v) => String::from_utf8_lossy(&v).trim().to_string(),
                    Err(_) => return broken(),
                };
                if name == "title" {
                    title = v;
                } else if !v.is_empty() {
                    encounter = Some(v);
                }
            }
            "file" => {
                let declared = field.content_type().map(str::to_string);
                match read_field(&mut field, max).await {
                    Ok(v) => file = Some((declared, v)),
                    Err(FieldError::TooLarge) => {
                        let m = format!("The file is larger than the {} MB allowed.", max / (1024 * 1024));
                        let form = upload_form(&ui, &pid, &title, encounter.as_deref(), max, Some(&m));
                        return page_status(&ui, StatusCode::PAYLOAD_TOO_LARGE, "Upload a document", form);
                    }
                    Err(FieldError::Broken) => return broken(),
                }
            }
            _ => {
                if read_field(&mut field, 4096).await.is_err() {
                    return broken();
                }
            }
        }
    }
    if !csrf_ok {
        return form_expired();
    }
    let again = |status: StatusCode, m: &str| {
        page_status(&ui, status, "Upload a document", upload_form(&ui, &pid, &title, encounter.as_deref(), max, Some(m)))
    };
    let Some((declared, content)) = file.filter(|(_, c)| !c.is_empty()) else {
        return again(StatusCode::BAD_REQUEST, "Choose a file to upload.");
    };
    if title.is_empty() {
        return again(StatusCode::BAD_REQUEST, "Give the document a title.");
    }
    let up =
        DocumentUpload { patient_id: pid.clone(), encounter_id: encounter.clone(), title: title.clone(), content_type: declared, content };
    match st.vault.upload_document(&ui.actor, ui.actor.default_purpose(), up).await {
        Ok(d) => Redirect::to(&format!("/ui/documents/{}", d.id)).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => again(StatusCode::BAD_REQUEST, &m),
            None => error_page(Some(&ui), &e),
        },
    }
}

/// `GET /ui/documents/{id}`: the metadata (a note's id goes to the note page).
async fn document_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let d = match st.vault.read_document_reference(&ui.actor, ui.actor.default_purpose(), &id).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let Some(meta) = d.document.clone() else {
        return Redirect::to(&format!("/ui/notes/{id}")).into_response();
    };
    let title = if meta.title.is_empty() { "Document".to_string() } else { meta.title };
    let ty = meta.content_type.as_str();
    let size = meta.size;
    let content = html! {
        h1 { (title) }
        dl class="facts" {
            dt { "Type" } dd { (ty) }
            dt { "Size" } dd { (size) " bytes" }
            dt { "Uploaded" } dd { (when(d.created_at)) }
            dt { "SHA-256" } dd { code class="hash" { (d.content_sha256.as_deref().unwrap_or("")) } }
            dt { "Patient" } dd { a href=(format!("/ui/patients/{}", d.patient_id)) { "Open the chart" } }
            @if let Some(enc) = &d.parent_id { dt { "Visit" } dd { a href=(format!("/ui/encounters/{enc}")) { "Open the visit" } } }
        }
        p { a class="button" href=(format!("/ui/documents/{id}/content")) { "Open document" } }
        p class="hint" { "Opening a document is recorded in the audit log as an export." }
        @if ty.starts_with("image/") {
            figure {
                img src=(format!("/ui/documents/{id}/content")) alt=(title) class="document-image";
                figcaption { (title) }
            }
        }
    };
    page_status(&ui, StatusCode::OK, "Document", content)
}

/// A file name safe for a header: letters, digits, `.`, `-`, `_`; with the type's extension.
fn safe_filename(title: &str, content_type: &str) -> String {
    let mut base: String =
        title.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).take(80).collect();
    base = base.trim_matches(['.', '_']).to_string();
    if base.is_empty() {
        base = "document".into();
    }
    let ext = match content_type {
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/tiff" => "tiff",
        "text/plain" => "txt",
        _ => "bin",
    };
    if base.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// `GET /ui/documents/{id}/content`: the document (audited as an export), inline, sandboxed.
async fn document_content(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let d = match st.vault.download_document(&ui.actor, ui.actor.default_purpose(), &id).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let name = safe_filename(d.record.document.as_ref().map_or("", |m| m.title.as_str()), &d.content_type);
    let mut r = d.content.to_vec().into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&d.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Kept by the security-header middleware (it adds its own policy in front).
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    r
}

// ----- consents -----

#[derive(Deserialize, Default)]
struct ConsentQuery {
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
    let p = st.vault.read_patient(&ui.actor, ui.actor.default_purpose(), patient).await?;
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
async fn consent_new(
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
async fn consent_sign(ui: Ui, State(st): State<AppState>, Path(pid): Path<String>, headers: HeaderMap, body: Body) -> Response {
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
    match st.vault.sign_consent(&ui.actor, ui.actor.default_purpose(), req).await {
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
    let c: SignedConsent = match st.vault.read_consent(&ui.actor, ui.actor.default_purpose(), id).await {
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
async fn consent_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    render_consent(&ui, &st, &id, StatusCode::OK, None).await
}

/// `GET /ui/consents/{id}/pdf`
async fn consent_pdf(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let pdf = match st.vault.consent_pdf(&ui.actor, ui.actor.default_purpose(), &id).await {
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
async fn consent_verify(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    let p = ui.actor.default_purpose();
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
async fn consent_revoke(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if f.get("confirm") != "yes" {
        let m = "Tick \"The patient revokes this consent\" to revoke it.".to_string();
        return render_consent(&ui, &st, &id, StatusCode::BAD_REQUEST, Some(Err(m))).await;
    }
    after(&ui, st.vault.revoke_consent(&ui.actor, ui.actor.default_purpose(), &id).await, |c| format!("/ui/consents/{}", c.id))
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
