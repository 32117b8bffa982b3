//! Patients: search, registration, the chart, demographics edit and break-glass.
//!
//! The chart makes one core call per section; a refused section says why (the core has already
//! audited the refusal) and the rest of the chart still renders.
//!
//! Layout: this file holds the routes, reading a record, search and the form fields that the
//! core's error paths point at; `demographics` the registration and edit form, `chart` the
//! chart and break-glass.

mod chart;
mod demographics;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{CoreError, SearchPage};
use carevault_domain::patient::{Gender, PatientData};
use carevault_domain::Permission;
use maud::{html, Markup};
use serde::Deserialize;

use super::{explain, page_status, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients", get(search).post(demographics::register))
        .route("/patients/new", get(demographics::new_form))
        .route("/patients/{id}", get(chart::chart))
        .route("/patients/{id}/edit", get(demographics::edit_form).post(demographics::edit))
        .route("/patients/{id}/break-glass", post(chart::break_glass))
}

// ----- reading a record -------------------------------------------------------------------------

fn gender_code(g: Gender) -> &'static str {
    match g {
        Gender::Male => "male",
        Gender::Female => "female",
        Gender::Other => "other",
        Gender::Unknown => "unknown",
    }
}

/// The name shown for a patient: the official name, else the first.
fn full_name(d: &PatientData) -> String {
    let n = d.name.iter().find(|n| n.use_.as_deref() == Some("official")).or(d.name.first());
    let text = n.map(|n| match &n.text {
        Some(t) => t.clone(),
        None => n.given.iter().chain(n.family.iter()).map(String::as_str).collect::<Vec<_>>().join(" "),
    });
    text.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| "(no name)".into())
}

fn phone(d: &PatientData) -> Option<&str> {
    d.telecom.iter().find(|t| t.system.as_deref() == Some("phone")).and_then(|t| t.value.as_deref())
}

fn address(d: &PatientData) -> Option<String> {
    let a = d.address.first()?;
    let parts: Vec<&str> = a.line.iter().map(String::as_str).chain(a.postal_code.as_deref()).chain(a.city.as_deref()).collect();
    Some(parts.join(", ")).filter(|s| !s.is_empty()).or_else(|| a.text.clone())
}

fn opt(s: Option<String>) -> String {
    s.unwrap_or_else(|| "—".into())
}

/// Why a core call gave nothing: a refusal (already audited by the core) or another failure.
fn denial(e: &CoreError) -> Markup {
    let (_, text) = explain(e);
    html! {
        @match e {
            CoreError::Forbidden { .. } | CoreError::Refused { .. } => p class="denied" { (text) },
            CoreError::ReauthRequired => p class="denied" { (text) " " a href="/ui/reauth" { "Confirm it's you" } },
            _ => p class="error" role="alert" { (text) },
        }
    }
}

// ----- search -----------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct SearchQ {
    #[serde(default)]
    q: String,
    #[serde(default)]
    birthdate: String,
}

/// The core's search parameters for the form: every word of the name must match (a prefix of a
/// name part), and the birth date when given.
fn search_params(q: &str, birthdate: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        q.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).map(|w| ("name".into(), w.into())).collect();
    if !birthdate.trim().is_empty() {
        out.push(("birthdate".into(), birthdate.trim().into()));
    }
    if !out.is_empty() {
        out.push(("_count".into(), "50".into()));
    }
    out
}

/// The search form; `prefix` keeps its input ids unique on a page with other forms.
fn search_form(prefix: &str, q: &str, birthdate: &str) -> Markup {
    html! {
        form method="get" action="/ui/patients" class="row" role="search" {
            div { label for={ (prefix) "q" } { "Name" } input id={ (prefix) "q" } name="q" type="search" value=(q) autocomplete="off"; }
            div { label for={ (prefix) "birthdate" } { "Birth date" } input id={ (prefix) "birthdate" } name="birthdate" type="date" value=(birthdate); }
            div { button type="submit" { "Search" } }
        }
    }
}

fn results(page: &SearchPage) -> Markup {
    html! {
        p role="status" {
            @if page.total == 0 { "No patient found." }
            @else if page.total > page.records.len() { "Showing " (page.records.len()) " of " (page.total) " patients; add a birth date to narrow the search." }
            @else { (page.total) " patient" @if page.total != 1 { "s" } " found." }
        }
        @if !page.records.is_empty() {
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Birth date" } th scope="col" { "Gender" } th scope="col" { "MRN" } } }
                    tbody {
                        @for r in &page.records {
                            tr {
                                td {
                                    a href={ "/ui/patients/" (r.id) } { (full_name(&r.data)) }
                                    @if !r.flags.is_empty() { " " span class="badge bad" { "sensitive" } }
                                }
                                td { (opt(r.data.birth_date.map(|d| d.to_string()))) }
                                td { (r.data.gender.map_or("—", gender_code)) }
                                td { (opt(r.data.mrn().map(|m| m.as_str().to_string()))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/patients?q=&birthdate=`
async fn search(ui: Ui, State(st): State<AppState>, q: Result<Query<SearchQ>, QueryRejection>) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let params = search_params(&q.q, &q.birthdate);
    let found = if params.is_empty() { None } else { Some(st.vault.search_patients(&ui.actor, ui.purpose, &params).await) };
    let status = match &found {
        Some(Err(e)) => crate::error::status_of(e, false),
        _ => StatusCode::OK,
    };
    let content = html! {
        h1 { "Patients" }
        (search_form("", &q.q, &q.birthdate))
        @match &found {
            Some(Ok(p)) => (results(p)),
            Some(Err(e)) => (denial(e)),
            None => {}
        }
        @if ui.can(Permission::PatientCreate) { p { a href="/ui/patients/new" { "Register a new patient" } } }
    };
    page_status(&ui, status, "Patients", content)
}

/// The search box for the home page.
pub(crate) async fn home_section(ui: &Ui, _st: &AppState) -> Option<Markup> {
    if !ui.can(Permission::PatientSearch) {
        return None;
    }
    Some(html! {
        section aria-labelledby="home-patients-h" {
            h2 id="home-patients-h" { "Find a patient" }
            (search_form("home-", "", ""))
        }
    })
}

// ----- form fields that core errors point at ---------------------------------------------------

/// The form's fields: input id (= field name), label, and the part of a FHIRPath that points at
/// the field (the first match wins, so the plain `Patient.name` comes last).
const FIELDS: [(&str, &str, &str); 9] = [
    ("given", "Given name", ".given"),
    ("family", "Family name", ".family"),
    ("birthdate", "Birth date", "Patient.birthDate"),
    ("gender", "Gender", "Patient.gender"),
    ("phone", "Phone", "Patient.telecom"),
    ("line", "Address line", ".line"),
    ("city", "City", ".city"),
    ("postal", "Postal code", ".postalCode"),
    ("family", "Family name", "Patient.name"),
];

/// The break-glass form's fields, the same way.
const GLASS_FIELDS: [(&str, &str, &str); 2] = [("bg-text", "Explanation", "reason_text"), ("bg-reason", "Reason", "reason")];

/// The form field a path in a core error points at: (input id, label).
fn field_of(fields: &[(&'static str, &'static str, &str)], path: &str) -> Option<(&'static str, &'static str)> {
    fields.iter().find(|(_, _, frag)| path.contains(frag)).map(|(id, label, _)| (*id, *label))
}

/// The core's message about bad input, with the form's label instead of the path.
fn input_message(fields: &[(&'static str, &'static str, &str)], e: &CoreError) -> (Option<&'static str>, String) {
    match e {
        CoreError::Invalid(i) => match i.path.as_deref().and_then(|p| field_of(fields, p)) {
            Some((id, label)) => (Some(id), format!("{label}: {}", i.message)),
            None => (None, i.to_string()),
        },
        other => (None, explain(other).1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_each_must_match() {
        let p = search_params(" Ada  Lovelace,", "1815-12-10 ");
        let keys: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(keys, [("name", "Ada"), ("name", "Lovelace"), ("birthdate", "1815-12-10"), ("_count", "50")]);
        assert!(search_params("  ", "").is_empty());
    }

    #[test]
    fn core_paths_point_at_form_fields() {
        assert_eq!(field_of(&FIELDS, "Patient.name[0].given[1]"), Some(("given", "Given name")));
        assert_eq!(field_of(&FIELDS, "Patient.name[0].family"), Some(("family", "Family name")));
        assert_eq!(field_of(&FIELDS, "Patient.name"), Some(("family", "Family name")));
        assert_eq!(field_of(&FIELDS, "Patient.telecom[1].value"), Some(("phone", "Phone")));
        assert_eq!(field_of(&FIELDS, "Patient.address[0].postalCode"), Some(("postal", "Postal code")));
        assert_eq!(field_of(&FIELDS, "Patient.identifier"), None);
        assert_eq!(field_of(&GLASS_FIELDS, "reason_text"), Some(("bg-text", "Explanation")));
    }
}
