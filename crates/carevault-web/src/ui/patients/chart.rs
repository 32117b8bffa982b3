//! The chart: one core call per section (a refused section says why, the rest still renders),
//! and break-glass.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::{ChartRecord, CoreError, PatientRecord};
use carevault_domain::{BreakGlassReason, Permission};
use maud::{html, Markup};

use super::{address, denial, full_name, gender_code, input_message, opt, phone, GLASS_FIELDS};
use crate::server::AppState;
use crate::ui::{error_page, page, page_status, post_form, ui_form, when, Ui};

// ----- the chart --------------------------------------------------------------------------------

/// A section's content: the rendering of the core's answer, or why there is none.
fn shown<T>(r: &Result<T, CoreError>, f: impl FnOnce(&T) -> Markup) -> Markup {
    match r {
        Ok(v) => f(v),
        Err(e) => denial(e),
    }
}

/// A chart section with its heading, content and the actions the actor may take.
fn section(key: &str, title: &str, body: Markup, actions: Markup) -> Markup {
    html! {
        section aria-labelledby={ (key) "-h" } {
            h2 id={ (key) "-h" } { (title) }
            (body)
            @if !actions.0.is_empty() { div class="actions" { (actions) } }
        }
    }
}

fn empty_or(n: usize, none: &str, list: Markup) -> Markup {
    html! { @if n == 0 { p class="hint" { (none) } } @else { (list) } }
}

/// Whether a refusal is one break-glass can lift.
fn glass_can_open(e: &CoreError) -> bool {
    matches!(e, CoreError::Forbidden { reason: "no-care-relationship" | "sensitive-record", .. })
}

fn status_badge(status: &str) -> Markup {
    let class = match status {
        "final" | "signed" | "active" | "finished" | "fulfilled" | "checked-in" | "arrived" => "badge ok",
        "revoked" | "cancelled" | "noshow" | "entered-in-error" => "badge bad",
        _ => "badge",
    };
    html! { span class=(class) { (status) } }
}

/// Whether to offer an action: the actor holds its permission, and the section's list was not
/// refused for this patient (no care relationship, sensitive flag), which the action would be too.
fn may<T>(ui: &Ui, p: Permission, listed: &Result<T, CoreError>) -> bool {
    ui.can(p) && !listed.as_ref().err().is_some_and(glass_can_open)
}

/// The notes (with their addenda counted) whose encounter is `parent`, or all notes.
fn note_list(notes: &[ChartRecord], parent: Option<&str>) -> Markup {
    let child_of = |r: &ChartRecord, id: &str| r.parent_id.as_deref() == Some(id);
    html! {
        ul { @for n in notes.iter().filter(|n| n.kind == "note" && parent.is_none_or(|p| child_of(n, p))) {
            @let addenda = notes.iter().filter(|x| x.kind == "addendum" && child_of(x, &n.id)).count();
            li {
                a href={ "/ui/notes/" (n.id) } { "Note of " (when(n.created_at)) }
                " " (status_badge(&n.status))
                @if addenda > 0 { " · " (addenda) " addend" @if addenda == 1 { "um" } @else { "a" } }
            }
        } }
    }
}

/// Visits, newest first, each with its notes; a refused list says why.
fn visits(encs: &Result<Vec<ChartRecord>, CoreError>, notes: &Result<Vec<ChartRecord>, CoreError>) -> Markup {
    html! {
        (shown(encs, |list| empty_or(list.len(), "No visits yet.", html! {
            ul { @for enc in list.iter().rev() { li {
                a href={ "/ui/encounters/" (enc.id) } { "Visit " (when(enc.body["start"].as_i64().unwrap_or(enc.created_at))) }
                " " (status_badge(&enc.status))
                @if let Ok(notes) = notes { (note_list(notes, Some(&enc.id))) }
            } } }
        })))
        @match (encs, notes) {
            (_, Err(e)) => (denial(e)),
            (Err(_), Ok(notes)) => (note_list(notes, None)),
            _ => {}
        }
    }
}

fn break_glass_section(ui: &Ui, st: &AppState, id: &str, reason: &str, text: &str, error: Option<&CoreError>) -> Markup {
    let mins = st.vault.config().break_glass_secs / 60;
    let inner = html! {
        @if let Some(e) = error { p class="error" role="alert" { (input_message(&GLASS_FIELDS, e).1) } }
        label for="bg-reason" { "Reason" }
        select id="bg-reason" name="reason" required {
            @for r in BreakGlassReason::ALL { option value=(r.id()) selected[r.id() == reason] { (r.description()) } }
        }
        label for="bg-text" { "Explanation" }
        textarea id="bg-text" name="explanation" aria-describedby="bg-text-hint" { (text) }
        p id="bg-text-hint" class="hint" { "Say what the emergency is. Required when the reason is Other." }
        button type="submit" class="danger" { "Break the glass" }
    };
    html! {
        section aria-labelledby="bg-h" {
            h2 id="bg-h" { "Emergency access (break-glass)" }
            p {
                "In an emergency you can open this one patient's record for " (mins) " minutes. "
                "The privacy officer is alerted at once and will review your reason. "
                "It needs a recent sign-in: you may be asked to confirm your password and code first."
            }
            (post_form(ui, &format!("/ui/patients/{id}/break-glass"), "stack", inner))
        }
    }
}

/// The chart when the patient record itself may not be opened.
fn refused_chart(ui: &Ui, st: &AppState, id: &str, e: &CoreError) -> Response {
    let content = html! {
        h1 { "Patient record not shown" }
        (denial(e))
        @if ui.can(Permission::BreakGlassUse) && glass_can_open(e) { (break_glass_section(ui, st, id, "", "", None)) }
        p { a href="/ui/patients" { "Back to patient search" } }
    };
    page_status(ui, crate::error::status_of(e, false), "Patient record not shown", content)
}

/// `GET /ui/patients/{id}`
pub(super) async fn chart(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let (v, a, p) = (&st.vault, &ui.actor, ui.purpose);
    let rec = match v.read_patient(a, p, &id).await {
        Ok(r) => r,
        Err(e @ (CoreError::Forbidden { .. } | CoreError::Refused { .. })) => return refused_chart(&ui, &st, &id, &e),
        Err(e) => return error_page(Some(&ui), &e),
    };
    let now = v.now_micros();
    let day = 86_400_000_000i64;
    let (from, to) = (now - 7 * day, now + 24 * day);
    let appt_q = [
        ("patient".to_string(), id.clone()),
        ("date".to_string(), format!("ge{}", carevault_core::format_instant(from))),
        ("date".to_string(), format!("lt{}", carevault_core::format_instant(to))),
    ];
    let (appts, encs, notes, docs, consents, allergies, conds) = tokio::join!(
        v.search_appointments(a, p, &appt_q),
        v.patient_encounters(a, p, &id),
        v.patient_notes(a, p, &id),
        v.patient_documents(a, p, &id),
        v.patient_consents(a, p, &id),
        v.patient_allergies(a, p, &id),
        v.patient_conditions(a, p, &id),
    );
    // Practitioners' names for the appointments (their ids if the directory is not readable).
    let names: std::collections::HashMap<String, String> = match (&appts, v.directory(a).await) {
        (Ok(_), Ok((_, list))) => list.into_iter().map(|pr| (pr.id, format!("{} {}", pr.given, pr.family))).collect(),
        _ => Default::default(),
    };
    let refusals = [appts.as_ref().err(), encs.as_ref().err(), notes.as_ref().err(), docs.as_ref().err(), consents.as_ref().err()];
    let offer_glass = ui.can(Permission::BreakGlassUse) && refusals.iter().flatten().any(|e| glass_can_open(e));
    let name = full_name(&rec.data);
    let content = html! {
        h1 { (name) }
        @if !rec.flags.is_empty() {
            p class="banner-sensitive" role="note" {
                "Sensitive record ("
                (rec.flags.iter().map(|f| f.description().trim_end_matches('.')).collect::<Vec<_>>().join("; "))
                "). Every access is marked for privacy review; share nothing beyond what care needs."
            }
        }
        (demographics_section(&ui, &rec))
        (section("appts", "Appointments", shown(&appts, |list| html! {
            p class="hint" { "From " (when(from)) " to " (when(to)) "." }
            (empty_or(list.len(), "No appointments in this period.", html! {
                div class="table-wrap" { table {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Practitioner" } th scope="col" { "Status" } } }
                    tbody { @for ap in list { tr {
                        td { a href={ "/ui/appointments/" (ap.id) } { (when(ap.start)) } }
                        td { (names.get(&ap.practitioner_id).unwrap_or(&ap.practitioner_id)) }
                        td { (status_badge(&ap.status)) }
                    } } }
                } }
            }))
        }), html! {
            @if ui.can(Permission::AppointmentBook) { a class="button secondary" href={ "/ui/appointments/new?patient=" (id) } { "Book appointment" } }
        }))
        (section("visits", "Encounters and notes", visits(&encs, &notes), html! {
            @if may(&ui, Permission::EncounterManage, &encs) {
                (post_form(&ui, &format!("/ui/patients/{id}/encounters"), "inline", html! { button type="submit" { "Start a visit" } }))
            }
        }))
        (section("docs", "Documents", shown(&docs, |list| empty_or(list.len(), "No documents yet.", html! {
            ul { @for d in list.iter().rev() { li {
                a href={ "/ui/documents/" (d.id) } { (d.document.as_ref().map_or("Document", |m| m.title.as_str())) }
                " " span class="hint" { (when(d.created_at)) }
            } } }
        })), html! {
            @if may(&ui, Permission::DocumentUpload, &docs) { a class="button secondary" href={ "/ui/patients/" (id) "/documents/new" } { "Upload a document" } }
        }))
        (section("consents", "Consents", shown(&consents, |list| empty_or(list.len(), "No consents recorded.", html! {
            ul { @for c in list.iter().rev() { li {
                a href={ "/ui/consents/" (c.id) } { (c.title) }
                " " span class="hint" { "signed " (c.signed_at_utc.get(..10).unwrap_or(&c.signed_at_utc)) }
                " " (status_badge(&c.status))
            } } }
        })), html! {
            @if ui.can(Permission::ConsentManage) { a class="button secondary" href={ "/ui/patients/" (id) "/consents/new" } { "Capture a consent" } }
        }))
        (section("allergies", "Allergies", shown(&allergies, |list| empty_or(list.len(), "No allergies recorded.", html! {
            ul { @for al in list { @let f = al.to_fhir(); li {
                (f["code"]["text"].as_str().or(f["code"]["coding"][0]["display"].as_str()).unwrap_or("Allergy"))
                @if let Some(c) = f["criticality"].as_str() { " " span class="badge" { "criticality: " (c) } }
            } } }
        })), html! {}))
        (section("diagnoses", "Diagnoses", shown(&conds, |list| empty_or(list.len(), "No diagnoses recorded.", html! {
            ul { @for c in list { li {
                strong { (c.body["code"].as_str().unwrap_or("")) } " " (c.body["display"].as_str().unwrap_or(""))
            } } }
        })), html! {}))
        @if offer_glass { (break_glass_section(&ui, &st, &id, "", "", None)) }
    };
    page(&ui, &name, content)
}

fn demographics_section(ui: &Ui, rec: &PatientRecord) -> Markup {
    let d = &rec.data;
    section(
        "demo",
        "Demographics",
        html! {
            dl class="facts" {
                dt { "Birth date" } dd { (opt(d.birth_date.map(|b| b.to_string()))) }
                dt { "Gender" } dd { (d.gender.map_or("—", gender_code)) }
                dt { "Phone" } dd { (phone(d).unwrap_or("—")) }
                dt { "Address" } dd { (opt(address(d))) }
                dt { "MRN" } dd { (opt(d.mrn().map(|m| m.as_str().to_string()))) }
            }
        },
        html! { @if ui.can(Permission::PatientUpdate) { a href={ "/ui/patients/" (rec.id) "/edit" } { "Edit" } } },
    )
}

// ----- break-glass ------------------------------------------------------------------------------

/// `POST /ui/patients/{id}/break-glass`
pub(super) async fn break_glass(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (reason, text) = (f.get("reason"), f.raw("explanation"));
    match st.vault.break_glass(&ui.actor, &id, reason, text.trim()).await {
        Ok(_) => Redirect::to(&format!("/ui/patients/{id}")).into_response(),
        Err(CoreError::ReauthRequired) => {
            let next = format!("/ui/patients/{id}");
            let content = html! {
                h1 { "Confirm it's you" }
                p role="alert" class="error" { "Breaking the glass needs a recent sign-in. Confirm your password and code, then break the glass again from the chart. Nothing has been opened." }
                p { a class="button" href={ "/ui/reauth?next=" (next) } { "Confirm it's you" } }
                p { a href=(next) { "Back to the chart" } }
            };
            page_status(&ui, StatusCode::FORBIDDEN, "Confirm it's you", content)
        }
        Err(e @ CoreError::Invalid(_)) => {
            let content = html! {
                h1 { "Emergency access" }
                (break_glass_section(&ui, &st, &id, reason, text, Some(&e)))
                p { a href={ "/ui/patients/" (id) } { "Back to the chart" } }
            };
            page_status(&ui, StatusCode::BAD_REQUEST, "Emergency access", content)
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(id: &str, kind: &str, parent: &str, status: &str) -> ChartRecord {
        ChartRecord {
            id: id.into(),
            kind: kind.into(),
            patient_id: "p1".into(),
            parent_id: Some(parent.into()),
            status: status.into(),
            version: 1,
            content_sha256: None,
            created_by: "u1".into(),
            created_at: 0,
            updated_at: 0,
            body: json!({}),
            document: None,
        }
    }

    #[test]
    fn notes_sit_under_their_visit_with_addenda_counted() {
        let notes = vec![
            record("n1", "note", "e1", "final"),
            record("n2", "note", "e2", "draft"),
            record("a1", "addendum", "n1", "final"),
            record("a2", "addendum", "n1", "final"),
        ];
        let under_e1 = note_list(&notes, Some("e1")).into_string();
        assert!(under_e1.contains("/ui/notes/n1") && !under_e1.contains("/ui/notes/n2") && !under_e1.contains("/ui/notes/a1"));
        assert!(under_e1.contains("2 addenda") && under_e1.contains(r#"class="badge ok">final"#));
        let all = note_list(&notes, None).into_string();
        assert!(all.contains("/ui/notes/n1") && all.contains("/ui/notes/n2") && all.contains(r#"class="badge">draft"#));
    }
}
