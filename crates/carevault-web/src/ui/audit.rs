//! The audit area: the audit log with filters and CSV export, the chain verification, the
//! break-glass review queue and the privacy and security alerts. Every list and change is a
//! core call, which authorizes and audits it (reading the log is itself recorded).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{AlertView, AuditEventView, AuditQuery, BreakGlassView, CoreError, AUDIT_PAGE_MAX};
use carevault_domain::{AuditAction, BreakGlassReason, Permission, ReviewOutcome};
use maud::{html, Markup};

use super::{error_page, explain, page, page_status, post_form, ui_form, when, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit_page))
        .route("/audit/export.csv", get(export_csv))
        .route("/audit/verify", get(verify_page))
        .route("/reviews", get(reviews_page))
        .route("/reviews/{id}/close", post(close_review))
        .route("/alerts", get(alerts_page))
        .route("/alerts/{id}/close", post(close_alert))
}

/// The filter fields as typed (kept to refill the form and to build links).
#[derive(Default, Clone)]
struct Filters {
    user: String,
    patient: String,
    action: String,
    from: String,
    to: String,
}

impl Filters {
    fn from_query(q: &HashMap<String, String>) -> Filters {
        let g = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Filters { user: g("user"), patient: g("patient"), action: g("action"), from: g("from"), to: g("to") }
    }

    fn core(&self, before: Option<i64>) -> AuditQuery {
        let o = |s: &str| Some(s.to_string()).filter(|v| !v.is_empty());
        AuditQuery {
            user: o(&self.user),
            patient: o(&self.patient),
            action: o(&self.action),
            from: o(&self.from),
            to: o(&self.to),
            before,
            limit: None,
        }
    }

    /// `user=…&patient=…&…` (empty fields left out).
    fn query_string(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("user", &self.user), ("patient", &self.patient), ("action", &self.action), ("from", &self.from), ("to", &self.to)] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

fn with_query(path: &str, q: &str) -> String {
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

/// The link to confirm one's sign-in and come back to `next` (a `/ui/` address).
fn reauth_link(next: &str) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("next", next);
    format!("/ui/reauth?{}", s.finish())
}

fn reauth_page(ui: &Ui, next: &str) -> Response {
    let (title, _) = explain(&CoreError::ReauthRequired);
    let content = html! {
        h1 { (title) }
        p role="alert" class="error" {
            "Exporting audit records needs a recent sign-in. The attempt has been recorded in the audit log. "
            "Confirm your password and code, then export again."
        }
        p { a href=(reauth_link(next)) { "Confirm it's you" } }
        p { a href=(next) { "Back to the audit log" } }
    };
    page_status(ui, StatusCode::FORBIDDEN, &title, content)
}

fn officer_links(ui: &Ui) -> Markup {
    let reviews = ui.can(Permission::BreakGlassReview);
    let alerts = ui.can(Permission::AlertPrivacy) || ui.can(Permission::AlertSecurity);
    html! {
        @if reviews || alerts {
            nav aria-label="Audit pages" class="row" {
                @if reviews { a href="/ui/reviews" { "Break-glass reviews" } }
                @if alerts { a href="/ui/alerts" { "Open alerts" } }
            }
        }
    }
}

fn flag_badges(flags: Option<&str>) -> Markup {
    html! {
        @for f in flags.unwrap_or_default().split_whitespace() {
            @if f == "break-glass" {
                span class="badge bad" { "break-glass" } " "
            } @else if let Some(cat) = f.strip_prefix("sensitive:") {
                span class="badge bad" { "sensitive: " (cat) } " "
            } @else {
                span class="badge" { (f) } " "
            }
        }
    }
}

/// The patients a search or list returned (the record's disclosed patients), folded.
fn disclosed_list(patients: &[String]) -> Markup {
    let n = patients.len();
    html! {
        details class="disclosed" {
            summary { (n) @if n == 1 { " patient" } @else { " patients" } }
            ul {
                @for p in patients {
                    li { a href=(format!("/ui/patients/{p}")) { (p) } }
                }
            }
        }
    }
}

fn outcome_badge(outcome: &str) -> Markup {
    let class = if outcome == "success" { "badge ok" } else { "badge bad" };
    html! { span class=(class) { (outcome) } }
}

fn filter_form(f: &Filters) -> Markup {
    html! {
        form method="get" action="/ui/audit" class="grid" {
            div class="stack" {
                label for="f-user" { "User" }
                input id="f-user" name="user" type="text" value=(f.user) autocomplete="off" aria-describedby="f-user-hint";
                span id="f-user-hint" class="hint" { "Username (or user:<id>, system:<job>)" }
            }
            div class="stack" {
                label for="f-patient" { "Patient" }
                input id="f-patient" name="patient" type="text" value=(f.patient) autocomplete="off" aria-describedby="f-patient-hint";
                span id="f-patient-hint" class="hint" { "Patient id: also finds the searches and lists that returned the patient" }
            }
            div class="stack" {
                label for="f-action" { "Action" }
                select id="f-action" name="action" {
                    option value="" selected[f.action.is_empty()] { "Any action" }
                    @for a in AuditAction::ALL {
                        option value=(a.as_str()) selected[f.action == a.as_str()] { (a.as_str()) }
                    }
                }
            }
            div class="stack" {
                label for="f-from" { "From" }
                input id="f-from" name="from" type="date" value=(f.from) aria-describedby="f-dates-hint";
            }
            div class="stack" {
                label for="f-to" { "To" }
                input id="f-to" name="to" type="date" value=(f.to) aria-describedby="f-dates-hint";
            }
            p id="f-dates-hint" class="hint" { "Dates are UTC; \"From\" and \"To\" both include their whole day." }
            div class="actions" { button type="submit" { "Filter" } }
        }
    }
}

fn events_table(events: &[AuditEventView]) -> Markup {
    html! {
        div class="table-wrap" {
            table {
                caption { "Audit records, newest first" }
                thead {
                    tr {
                        th scope="col" { "Time" }
                        th scope="col" { "User" }
                        th scope="col" { "Action" }
                        th scope="col" { "Resource" }
                        th scope="col" { "Patient" }
                        th scope="col" { "Outcome" }
                        th scope="col" { "Review" }
                        th scope="col" { "No." }
                    }
                }
                tbody {
                    @for e in events {
                        tr {
                            td { (when(e.at)) }
                            td { (e.username.as_deref().unwrap_or(&e.actor)) }
                            td { (e.action) }
                            td {
                                (e.resource_type.as_deref().unwrap_or_default())
                                @if let Some(id) = &e.resource_id { "/" (id) }
                            }
                            td {
                                @if let Some(p) = &e.patient_id { a href=(format!("/ui/patients/{p}")) { (p) } }
                                @if !e.patients.is_empty() {
                                    (disclosed_list(&e.patients))
                                }
                            }
                            td { (outcome_badge(&e.outcome)) }
                            td { (flag_badges(e.review_flags.as_deref())) }
                            td { (e.seq) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/audit?user=&patient=&action=&from=&to=&before=`
async fn audit_page(ui: Ui, State(st): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let f = Filters::from_query(&q);
    let before = q.get("before").and_then(|b| b.trim().parse::<i64>().ok());
    let result = st.vault.audit_search(&ui.actor, &f.core(before)).await;
    let (status, events, problem) = match result {
        Ok(ev) => (StatusCode::OK, ev, None),
        Err(e @ CoreError::Invalid(_)) => (StatusCode::BAD_REQUEST, Vec::new(), Some(explain(&e).1)),
        Err(e) => return error_page(Some(&ui), &e),
    };
    let qs = f.query_string();
    let older = if events.len() as i64 >= AUDIT_PAGE_MAX {
        events.last().map(|e| {
            let mut s = form_urlencoded::Serializer::new(qs.clone());
            s.append_pair("before", &e.seq.to_string());
            format!("/ui/audit?{}", s.finish())
        })
    } else {
        None
    };
    let content = html! {
        h1 { "Audit log" }
        (officer_links(&ui))
        section class="card" aria-labelledby="chain-title" {
            h2 id="chain-title" { "Chain integrity" }
            div id="verify-status" role="status" {
                @if ui.can(Permission::AuditVerify) {
                    p { "Not checked on this page. " a href="/ui/audit/verify" { "Verify the audit chain" } " (recomputes every record's hash and checks the signatures)." }
                } @else {
                    p { "Verifying the chain needs the audit.verify permission (auditor or security officer)." }
                }
            }
        }
        section aria-labelledby="filter-title" {
            h2 id="filter-title" { "Filter" }
            @if let Some(msg) = &problem { p role="alert" class="error" { (msg) } }
            (filter_form(&f))
        }
        section aria-labelledby="results-title" {
            h2 id="results-title" { "Records" }
            @if ui.can(Permission::AuditExport) {
                p {
                    a href=(with_query("/ui/audit/export.csv", &qs)) { "Export CSV" }
                    " (the records these filters find, up to 10 000; needs a recent sign-in; the export is recorded)"
                }
            }
            @if problem.is_none() {
                p role="status" {
                    @if events.is_empty() { "No records match these filters." }
                    @else { (events.len()) " records shown" @if before.is_some() { " (older page)" } "." }
                }
                @if !events.is_empty() { (events_table(&events)) }
                @if let Some(href) = older { p { a href=(href) { "Older records" } } }
            }
        }
    };
    page_status(&ui, status, "Audit log", content)
}

/// `GET /ui/audit/export.csv?…`: the CSV file (text/csv, as an attachment).
async fn export_csv(ui: Ui, State(st): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let f = Filters::from_query(&q);
    match st.vault.audit_export_csv(&ui.actor, &f.core(None)).await {
        Ok(csv) => {
            let date = carevault_core::format_instant(st.vault.now_micros()).get(0..10).unwrap_or("export").to_string();
            let mut r = csv.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"carevault-audit-{date}.csv\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(CoreError::ReauthRequired) => reauth_page(&ui, &with_query("/ui/audit", &f.query_string())),
        Err(e @ CoreError::Invalid(_)) => {
            let content = html! {
                h1 { "Audit log" }
                p role="alert" class="error" { (explain(&e).1) }
                (filter_form(&f))
            };
            page_status(&ui, StatusCode::BAD_REQUEST, "Audit log", content)
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `GET /ui/audit/verify`: recomputes the chain and shows the result.
async fn verify_page(ui: Ui, State(st): State<AppState>) -> Response {
    let report = match st.vault.verify_audit_as(&ui.actor).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let content = html! {
        h1 { "Audit chain verification" }
        @if report.intact() {
            div id="verify-status" role="status" class="notice" {
                p { span class="badge ok" { "OK" } " The audit log is intact: " (report.records) " records checked; hash chain, Merkle tree, signed head, "
                    (report.checkpoints_in_database) " checkpoints and " (report.tree_heads) " signed tree heads all verify." }
                p { "Merkle root: " code { (report.root_hash) } }
            }
        } @else {
            div id="verify-status" role="alert" class="error" {
                p { span class="badge bad" { "FAILED" } " " (report.records) " records checked; " (report.failures.len()) " problem(s) found." }
                @if let Some(first) = report.failures.first() {
                    p {
                        "First failure"
                        @if let Some(seq) = first.seq { " at record " (seq) }
                        ": " (first.message)
                    }
                }
            }
        }
        @for n in &report.notes {
            p class="hint" { (n) }
        }
        p { a href="/ui/audit" { "Back to the audit log" } }
    };
    page(&ui, "Audit chain verification", content)
}

// ----- break-glass reviews -----

fn reason_words(code: &str) -> &'static str {
    BreakGlassReason::parse(code).map(|r| r.description()).unwrap_or("Unknown reason")
}

fn review_item(ui: &Ui, b: &BreakGlassView) -> Markup {
    let oid = format!("outcome-{}", b.id);
    let nid = format!("note-{}", b.id);
    let inner = html! {
        div class="stack" {
            label for=(oid) { "Outcome" }
            select id=(oid) name="outcome" {
                @for o in ReviewOutcome::ALL { option value=(o.id()) { (o.id()) ": " (o.description()) } }
            }
        }
        div class="stack" {
            label for=(nid) { "Note" }
            textarea id=(nid) name="note" rows="3" maxlength="500" aria-describedby=(format!("{nid}-hint")) {}
            span id=(format!("{nid}-hint")) class="hint" { "Required unless the access was appropriate." }
        }
        div class="actions" { button type="submit" { "Close review" } }
    };
    html! {
        article class="card" aria-labelledby=(format!("bg-{}", b.id)) {
            h3 id=(format!("bg-{}", b.id)) { "Break-glass by " (b.username.as_deref().unwrap_or(&b.user_id)) }
            dl class="facts" {
                dt { "Who" } dd { (b.username.as_deref().unwrap_or(&b.user_id)) }
                dt { "Patient" } dd { a href=(format!("/ui/patients/{}", b.patient_id)) { (b.patient_id) } }
                dt { "Reason" } dd { (reason_words(&b.reason_code)) @if let Some(t) = b.reason_text.as_deref().filter(|t| !t.is_empty()) { " — " (t) } }
                dt { "When" } dd { (when(b.opened_at)) " (access until " (when(b.expires_at)) ")" }
            }
            (post_form(ui, &format!("/ui/reviews/{}/close", b.id), "stack", inner))
        }
    }
}

async fn reviews_render(ui: &Ui, st: &AppState, problem: Option<(StatusCode, String)>) -> Response {
    let items = match st.vault.break_glass_queue(&ui.actor, "open").await {
        Ok(v) => v,
        Err(e) => return error_page(Some(ui), &e),
    };
    let status = problem.as_ref().map(|p| p.0).unwrap_or(StatusCode::OK);
    let content = html! {
        h1 { "Break-glass reviews" }
        p { a href="/ui/audit" { "Audit log" } @if ui.can(Permission::AlertPrivacy) || ui.can(Permission::AlertSecurity) { " · " a href="/ui/alerts" { "Open alerts" } } }
        @if let Some((_, msg)) = &problem { p role="alert" class="error" { (msg) } }
        h2 { "Open reviews" }
        p role="status" {
            @if items.is_empty() { "No break-glass use is waiting for review." }
            @else { (items.len()) " waiting for review." }
        }
        div class="stack" { @for b in &items { (review_item(ui, b)) } }
    };
    page_status(ui, status, "Break-glass reviews", content)
}

/// `GET /ui/reviews`
async fn reviews_page(ui: Ui, State(st): State<AppState>) -> Response {
    reviews_render(&ui, &st, None).await
}

/// `POST /ui/reviews/{id}/close`
async fn close_review(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.close_break_glass_review(&ui.actor, &id, f.get("outcome"), f.raw("note")).await {
        Ok(()) => Redirect::to("/ui/reviews").into_response(),
        Err(e @ (CoreError::Invalid(_) | CoreError::Refused { .. } | CoreError::Conflict(_))) => {
            let status = crate::error::status_of(&e, false);
            reviews_render(&ui, &st, Some((status, explain(&e).1))).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- alerts -----

fn alert_item(ui: &Ui, a: &AlertView) -> Markup {
    html! {
        tr {
            td { (when(a.raised_at)) }
            td { (a.category) }
            td { (a.kind) }
            td { @if let Some(u) = &a.subject_user { (a.subject_username.as_deref().unwrap_or(u)) } }
            td { @if let Some(p) = &a.patient_id { a href=(format!("/ui/patients/{p}")) { (p) } } }
            td { (a.reference.as_deref().unwrap_or_default()) }
            td { (post_form(ui, &format!("/ui/alerts/{}/close", a.id), "inline", html! { button type="submit" { "Close alert" } })) }
        }
    }
}

/// `GET /ui/alerts`: the open alerts of the categories the actor handles.
async fn alerts_page(ui: Ui, State(st): State<AppState>) -> Response {
    let mut cats: Vec<&str> = Vec::new();
    if ui.can(Permission::AlertPrivacy) {
        cats.push("privacy");
    }
    if ui.can(Permission::AlertSecurity) {
        cats.push("security");
    }
    if cats.is_empty() {
        // Nothing to show: ask anyway so the refusal is explained (and recorded) by the core.
        cats.push("privacy");
    }
    let mut all = Vec::new();
    for c in cats {
        match st.vault.alerts(&ui.actor, c, true).await {
            Ok(v) => all.extend(v),
            Err(e) => return error_page(Some(&ui), &e),
        }
    }
    all.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
    let content = html! {
        h1 { "Open alerts" }
        p { a href="/ui/audit" { "Audit log" } @if ui.can(Permission::BreakGlassReview) { " · " a href="/ui/reviews" { "Break-glass reviews" } } }
        p role="status" { @if all.is_empty() { "No open alerts." } @else { (all.len()) " open alerts." } }
        @if !all.is_empty() {
            div class="table-wrap" {
                table {
                    thead {
                        tr {
                            th scope="col" { "Raised" }
                            th scope="col" { "Category" }
                            th scope="col" { "Kind" }
                            th scope="col" { "User" }
                            th scope="col" { "Patient" }
                            th scope="col" { "Reference" }
                            th scope="col" { "Close" }
                        }
                    }
                    tbody { @for a in &all { (alert_item(&ui, a)) } }
                }
            }
        }
    };
    page(&ui, "Open alerts", content)
}

/// `POST /ui/alerts/{id}/close`
async fn close_alert(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.close_alert(&ui.actor, &id).await {
        Ok(()) => Redirect::to("/ui/alerts").into_response(),
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- home page -----

/// For officers: the open alerts and break-glass reviews, with links. `None` for everyone
/// else (the gated lists are asked only of those holding their permission).
pub(crate) async fn home_section(ui: &Ui, st: &AppState) -> Option<Markup> {
    let privacy = ui.can(Permission::AlertPrivacy);
    let security = ui.can(Permission::AlertSecurity);
    let reviews = ui.can(Permission::BreakGlassReview);
    if !(privacy || security || reviews) {
        return None;
    }
    let mut alerts: Vec<AlertView> = Vec::new();
    let mut alerts_failed = false;
    for (held, cat) in [(privacy, "privacy"), (security, "security")] {
        if held {
            match st.vault.alerts(&ui.actor, cat, true).await {
                Ok(v) => alerts.extend(v),
                Err(_) => alerts_failed = true,
            }
        }
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
    let queue = if reviews { Some(st.vault.break_glass_queue(&ui.actor, "open").await) } else { None };
    Some(html! {
        section class="card" aria-labelledby="home-alerts" {
            @if privacy || security {
                h2 id="home-alerts" { "Open alerts" }
                @if alerts_failed {
                    p class="error" role="alert" { "The alerts could not be loaded." }
                } @else {
                    p { a href="/ui/alerts" { "Open alerts" } ": " (alerts.len()) }
                    @if !alerts.is_empty() {
                        ul {
                            @for a in alerts.iter().take(5) {
                                li { (when(a.raised_at)) ": " (a.category) " — " (a.kind) }
                            }
                        }
                    }
                }
            }
            @if let Some(q) = &queue {
                h2 id=[(!(privacy || security)).then_some("home-alerts")] { "Break-glass reviews" }
                @match q {
                    Ok(items) => {
                        p { a href="/ui/reviews" { "Break-glass reviews" } ": " (items.len()) " waiting for review" }
                        @if !items.is_empty() {
                            ul {
                                @for b in items.iter().take(5) {
                                    li { (when(b.opened_at)) ": " (b.username.as_deref().unwrap_or(&b.user_id)) " — " (reason_words(&b.reason_code)) }
                                }
                            }
                        }
                    }
                    Err(_) => { p class="error" role="alert" { "The review queue could not be loaded." } }
                }
            }
        }
    })
}
