//! Visits: encounters (walk-in or from an appointment) with SOAP notes (draft → signed →
//! co-signed, signed addenda) and ICD-10-CM diagnoses.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::{ChartRecord, CoreError};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::{alert, badge, directory_people, invalid_message, patient_name};
use crate::server::AppState;
use crate::ui::{after, error_page, explain, page_status, post_form, ui_form, when, FormData, Ui};

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
pub(super) async fn start_visit(ui: Ui, State(st): State<AppState>, Path(pid): Path<String>, headers: HeaderMap, body: Body) -> Response {
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
    match st.vault.start_encounter(&ui.actor, ui.purpose, &req).await {
        Ok(e) => Redirect::to(&format!("/ui/encounters/{}", e.id)).into_response(),
        Err(e @ CoreError::Invalid(_)) if f.opt("appointment").is_none() => {
            choose_place(&ui, &st, &pid, StatusCode::BAD_REQUEST, Some(&explain(&e).1)).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `GET /ui/encounters/{id}`
pub(super) async fn encounter_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    render_encounter(&ui, &st, &id, StatusCode::OK, &json!({}), None).await
}

async fn render_encounter(ui: &Ui, st: &AppState, id: &str, status: StatusCode, values: &Value, error: Option<&str>) -> Response {
    let p = ui.purpose;
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
pub(super) async fn create_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sections = sections_of(&f);
    let r = st.vault.create_note(&ui.actor, ui.purpose, &id, &sections, f.opt("cosigner")).await;
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
pub(super) async fn add_diagnosis(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.add_condition(&ui.actor, ui.purpose, &id, f.get("code"), None).await {
        Ok(_) => Redirect::to(&format!("/ui/encounters/{id}")).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => render_encounter(&ui, &st, &id, StatusCode::BAD_REQUEST, &json!({"code": f.get("code")}), Some(&m)).await,
            None => error_page(Some(&ui), &e),
        },
    }
}

/// `POST /ui/encounters/{id}/finish`
pub(super) async fn finish_visit(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    after(&ui, st.vault.finish_encounter(&ui.actor, ui.purpose, &id).await, |e| format!("/ui/encounters/{}", e.id))
}

// ----- notes -----

/// `GET /ui/notes/{id}`
pub(super) async fn note_page(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    render_note(&ui, &st, &id, StatusCode::OK, None, None).await
}

/// What a re-rendered note page keeps of a refused form.
enum Kept {
    Draft(Value),
    Addendum(String),
}

async fn render_note(ui: &Ui, st: &AppState, id: &str, status: StatusCode, kept: Option<Kept>, error: Option<&str>) -> Response {
    let (note, addenda) = match st.vault.read_note(&ui.actor, ui.purpose, id).await {
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
pub(super) async fn save_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let sections = sections_of(&f);
    match st.vault.update_note(&ui.actor, ui.purpose, &id, &sections).await {
        Ok(_) => Redirect::to(&format!("/ui/notes/{id}")).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => render_note(&ui, &st, &id, StatusCode::BAD_REQUEST, Some(Kept::Draft(sections)), Some(&m)).await,
            None => error_page(Some(&ui), &e),
        },
    }
}

/// `POST /ui/notes/{id}/sign`: needs the confirmation box.
pub(super) async fn sign_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if f.get("confirm") != "yes" {
        let m = "Tick \"I have reviewed this note and sign it\" to sign the note.";
        return render_note(&ui, &st, &id, StatusCode::BAD_REQUEST, None, Some(m)).await;
    }
    after(&ui, st.vault.sign_note(&ui.actor, ui.purpose, &id).await, |n| format!("/ui/notes/{}", n.id))
}

/// `POST /ui/notes/{id}/cosign`
pub(super) async fn cosign_note(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    after(&ui, st.vault.cosign_note(&ui.actor, ui.purpose, &id).await, |n| format!("/ui/notes/{}", n.id))
}

/// `POST /ui/notes/{id}/addenda`
pub(super) async fn add_addendum(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.add_addendum(&ui.actor, ui.purpose, &id, f.raw("text")).await {
        Ok(_) => Redirect::to(&format!("/ui/notes/{id}")).into_response(),
        Err(e) => match invalid_message(&e) {
            Some(m) => render_note(&ui, &st, &id, StatusCode::BAD_REQUEST, Some(Kept::Addendum(f.raw("text").to_string())), Some(&m)).await,
            None => error_page(Some(&ui), &e),
        },
    }
}
