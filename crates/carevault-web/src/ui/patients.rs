//! Patients: search, registration, the chart, demographics edit and break-glass.
//!
//! The chart makes one core call per section; a refused section says why (the core has already
//! audited the refusal) and the rest of the chart still renders.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{ChartRecord, CoreError, PatientRecord, SearchPage};
use carevault_domain::patient::{Gender, PatientData};
use carevault_domain::{BreakGlassReason, Permission};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error_page, explain, page, page_status, post_form, ui_form, when, FormData, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients", get(search).post(register))
        .route("/patients/new", get(new_form))
        .route("/patients/{id}", get(chart))
        .route("/patients/{id}/edit", get(edit_form).post(edit))
        .route("/patients/{id}/break-glass", post(break_glass))
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

// ----- the demographics form --------------------------------------------------------------------

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

/// What the demographics form holds (all trimmed text).
#[derive(Default, Debug, PartialEq)]
struct Demographics {
    given: String,
    family: String,
    birthdate: String,
    gender: String,
    phone: String,
    line: String,
    city: String,
    postal: String,
}

impl Demographics {
    fn from_form(f: &FormData) -> Self {
        let g = |k: &str| f.get(k).to_string();
        Demographics {
            given: g("given"),
            family: g("family"),
            birthdate: g("birthdate"),
            gender: g("gender"),
            phone: g("phone"),
            line: g("line"),
            city: g("city"),
            postal: g("postal"),
        }
    }

    fn from_record(d: &PatientData) -> Self {
        let n = d.name.iter().find(|n| n.use_.as_deref() == Some("official")).or(d.name.first());
        let a = d.address.first();
        Demographics {
            given: n.map(|n| n.given.join(" ")).unwrap_or_default(),
            family: n.and_then(|n| n.family.clone()).unwrap_or_default(),
            birthdate: d.birth_date.map(|b| b.to_string()).unwrap_or_default(),
            gender: d.gender.map(gender_code).unwrap_or_default().into(),
            phone: phone(d).unwrap_or_default().into(),
            line: a.and_then(|a| a.line.first().cloned()).unwrap_or_default(),
            city: a.and_then(|a| a.city.clone()).unwrap_or_default(),
            postal: a.and_then(|a| a.postal_code.clone()).unwrap_or_default(),
        }
    }

    fn value(&self, id: &str) -> &str {
        match id {
            "given" => &self.given,
            "family" => &self.family,
            "birthdate" => &self.birthdate,
            "gender" => &self.gender,
            "phone" => &self.phone,
            "line" => &self.line,
            "city" => &self.city,
            _ => &self.postal,
        }
    }

    /// Writes the form's values into a FHIR Patient (a new one, or the current version for an
    /// update): what the form does not show (identifiers, other names, phones and addresses) is
    /// kept; an emptied field is removed so the core judges what is required.
    fn apply(&self, mut p: Value) -> Value {
        fn set(obj: &mut Value, key: &str, v: Option<Value>) {
            if let Some(o) = obj.as_object_mut() {
                match v {
                    Some(v) => o.insert(key.into(), v),
                    None => o.remove(key),
                };
            }
        }
        let text = |s: &str| (!s.is_empty()).then(|| Value::from(s));
        // The name: the official one (or the first), which the chart shows.
        let given: Vec<&str> = self.given.split_whitespace().collect();
        let mut names = p["name"].as_array().cloned().unwrap_or_default();
        let i = names.iter().position(|n| n["use"] == "official").unwrap_or(0);
        if names.is_empty() {
            names.push(json!({"use": "official"}));
        }
        if let Some(n) = names.get_mut(i) {
            set(n, "text", None);
            set(n, "family", text(&self.family));
            set(n, "given", (!given.is_empty()).then(|| json!(given)));
        }
        names.retain(|n| n.get("family").is_some() || n.get("given").is_some() || n.get("text").is_some());
        set(&mut p, "name", (!names.is_empty()).then_some(Value::Array(names)));
        set(&mut p, "birthDate", text(&self.birthdate));
        set(&mut p, "gender", text(&self.gender));
        // The first phone number.
        let mut telecom = p["telecom"].as_array().cloned().unwrap_or_default();
        match (telecom.iter().position(|t| t["system"] == "phone"), text(&self.phone)) {
            (Some(i), Some(v)) => telecom[i]["value"] = v,
            (Some(i), None) => {
                telecom.remove(i);
            }
            (None, Some(v)) => telecom.push(json!({"system": "phone", "value": v})),
            (None, None) => {}
        }
        set(&mut p, "telecom", (!telecom.is_empty()).then_some(Value::Array(telecom)));
        // The first address: its first line, city and postal code.
        let mut addresses = p["address"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() {
            addresses.push(json!({}));
        }
        let a = &mut addresses[0];
        let mut lines = a["line"].as_array().cloned().unwrap_or_default();
        match (lines.is_empty(), text(&self.line)) {
            (_, Some(v)) if lines.is_empty() => lines.push(v),
            (_, Some(v)) => lines[0] = v,
            (false, None) => {
                lines.remove(0);
            }
            (true, None) => {}
        }
        set(a, "line", (!lines.is_empty()).then_some(Value::Array(lines)));
        set(a, "city", text(&self.city));
        set(a, "postalCode", text(&self.postal));
        addresses.retain(|a| a.as_object().is_some_and(|o| !o.is_empty()));
        set(&mut p, "address", (!addresses.is_empty()).then_some(Value::Array(addresses)));
        p
    }
}

fn field(v: &Demographics, id: &'static str, invalid: Option<&str>) -> Markup {
    let label = FIELDS.iter().find(|f| f.0 == id).map_or(id, |f| f.1);
    let bad = invalid == Some(id);
    let value = v.value(id);
    html! {
        div {
            label for=(id) { (label) }
            @match id {
                "gender" => select id=(id) name=(id) aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some("form-error")] {
                    option value="" selected[value.is_empty()] { "(not recorded)" }
                    @for g in ["male", "female", "other", "unknown"] { option value=(g) selected[value == g] { (g) } }
                },
                // A stored year or year-month does not fit a date picker: keep it as text.
                "birthdate" if !value.is_empty() && value.len() != 10 => input id=(id) name=(id) type="text" value=(value) aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some("form-error")];,
                _ => input id=(id) name=(id) value=(value) aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some("form-error")]
                    type=(match id { "birthdate" => "date", "phone" => "tel", _ => "text" })
                    autocomplete="off" required[id == "family"];,
            }
        }
    }
}

fn demographics_form(ui: &Ui, action: &str, button: &str, v: &Demographics, version: Option<i64>, error: Option<&CoreError>) -> Markup {
    let (invalid, message) = error.map(|e| input_message(&FIELDS, e)).unzip();
    let inner = html! {
        @if let Some(m) = &message { p id="form-error" class="error" role="alert" { (m) } }
        @if let Some(ver) = version { input type="hidden" name="version" value=(ver); }
        div class="grid" {
            @for id in ["given", "family", "birthdate", "gender", "phone", "line", "city", "postal"] { (field(v, id, invalid.flatten())) }
        }
        div class="actions" { button type="submit" { (button) } }
    };
    post_form(ui, action, "demographics", inner)
}

/// `GET /ui/patients/new`
async fn new_form(ui: Ui) -> Response {
    let content = html! {
        h1 { "Register a new patient" }
        (demographics_form(&ui, "/ui/patients", "Register patient", &Demographics::default(), None, None))
    };
    page(&ui, "Register a new patient", content)
}

/// `POST /ui/patients`
async fn register(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let v = Demographics::from_form(&f);
    let fhir = v.apply(json!({"resourceType": "Patient", "active": true}));
    match st.vault.create_patient(&ui.actor, ui.purpose, fhir.to_string().as_bytes()).await {
        Ok(rec) => Redirect::to(&format!("/ui/patients/{}", rec.id)).into_response(),
        Err(e @ CoreError::Invalid(_)) => {
            let content = html! {
                h1 { "Register a new patient" }
                (demographics_form(&ui, "/ui/patients", "Register patient", &v, None, Some(&e)))
            };
            page_status(&ui, StatusCode::BAD_REQUEST, "Register a new patient", content)
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- edit -------------------------------------------------------------------------------------

fn edit_page(ui: &Ui, status: StatusCode, id: &str, name: &str, v: &Demographics, version: i64, error: Option<&CoreError>) -> Response {
    let content = html! {
        h1 { "Edit " (name) }
        (demographics_form(ui, &format!("/ui/patients/{id}/edit"), "Save changes", v, Some(version), error))
        @if matches!(error, Some(CoreError::VersionConflict { .. })) {
            p { a href={ "/ui/patients/" (id) "/edit" } { "Load the current version" } " (your changes above are not saved)." }
        }
        p { a href={ "/ui/patients/" (id) } { "Back to the chart" } }
    };
    page_status(ui, status, "Edit demographics", content)
}

/// `GET /ui/patients/{id}/edit`
async fn edit_form(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.vault.read_patient(&ui.actor, ui.purpose, &id).await {
        Ok(rec) => edit_page(&ui, StatusCode::OK, &id, &full_name(&rec.data), &Demographics::from_record(&rec.data), rec.version, None),
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `POST /ui/patients/{id}/edit`: a new version, refused if the record changed since the form
/// was loaded (its version travels in the form).
async fn edit(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let v = Demographics::from_form(&f);
    let version = f.get("version").parse::<i64>().ok();
    let p = ui.purpose;
    // The current record carries what the form does not show (MRN, other names and contacts).
    let rec = match st.vault.read_patient(&ui.actor, p, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let fhir = v.apply(rec.data.to_fhir(rec.id.as_str(), rec.version, &carevault_core::format_instant(rec.last_updated)));
    match st.vault.update_patient(&ui.actor, p, &id, fhir.to_string().as_bytes(), Some(version.unwrap_or(0))).await {
        Ok(_) => Redirect::to(&format!("/ui/patients/{id}")).into_response(),
        Err(e @ (CoreError::Invalid(_) | CoreError::VersionConflict { .. })) => {
            let status = crate::error::status_of(&e, false);
            edit_page(&ui, status, &id, &full_name(&rec.data), &v, version.unwrap_or(rec.version), Some(&e))
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- the chart --------------------------------------------------------------------------------

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
async fn chart(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
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
async fn break_glass(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
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

    #[test]
    fn edit_keeps_what_the_form_does_not_show() {
        let current = json!({
            "resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:mrn", "value": "123"}],
            "name": [{"use": "nickname", "given": ["Addy"]}, {"use": "official", "family": "Byron", "given": ["Ada"], "text": "Ada Byron"}],
            "telecom": [{"system": "email", "value": "a@example.org"}, {"system": "phone", "value": "555-0100"}],
            "address": [{"line": ["1 Old St", "Flat 2"], "city": "London", "country": "GB"}],
            "gender": "female", "birthDate": "1815-12-10"
        });
        let form = Demographics {
            given: "Ada Augusta".into(),
            family: "Lovelace".into(),
            birthdate: "1815-12-10".into(),
            gender: String::new(),
            phone: String::new(),
            line: "12 St James's Square".into(),
            city: "London".into(),
            postal: "SW1".into(),
        };
        let p = form.apply(current);
        assert_eq!(p["identifier"][0]["value"], "123");
        assert_eq!(p["name"][0]["given"], json!(["Addy"]));
        assert_eq!(p["name"][1], json!({"use": "official", "family": "Lovelace", "given": ["Ada", "Augusta"]}));
        assert_eq!(p["telecom"], json!([{"system": "email", "value": "a@example.org"}]));
        assert_eq!(
            p["address"],
            json!([{"line": ["12 St James's Square", "Flat 2"], "city": "London", "postalCode": "SW1", "country": "GB"}])
        );
        assert!(p.get("gender").is_none());
    }

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

    #[test]
    fn empty_registration_leaves_out_every_field() {
        let p = Demographics::default().apply(json!({"resourceType": "Patient"}));
        assert_eq!(p, json!({"resourceType": "Patient"}));
    }
}
