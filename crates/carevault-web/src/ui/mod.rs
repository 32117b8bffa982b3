//! The staff web UI at `/ui`: server-rendered HTML (maud templates, escaped by default), a few
//! script files served from `/static` (no inline script or style: the CSP forbids both), forms
//! with a per-session CSRF token, and the same core calls as the JSON API. Every page that can
//! show patient data is `no-store` (as is every response of this server).
//!
//! Layout: `mod.rs` holds what every page shares (the signed-in extractor `Ui`, the page frame,
//! form parsing and CSRF, error pages); each area of the UI has its own module.

mod account;
mod admin;
mod approvals;
mod audit;
mod auth;
mod clinical;
mod home;
mod patients;
mod schedule;

pub(crate) use home::home;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{Actor, CoreError, InstanceKind, RequestContext};
use carevault_domain::{Permission, PurposeOfUse};
use maud::{html, Markup, DOCTYPE};

use crate::auth::{Page, Purposed};
use crate::extract::read_body;
use crate::server::AppState;

/// Largest urlencoded form accepted (notes are the longest text; uploads use multipart).
pub(crate) const FORM_LIMIT: usize = 256 * 1024;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route("/signin/mfa", get(auth::mfa_page))
        .route("/signin/totp", post(auth::totp))
        .route("/signin/recovery", post(auth::recovery))
        .route("/signin/enroll", get(auth::enroll_page).post(auth::enroll))
        .route("/signin/enroll/start", post(auth::enroll_start))
        .route("/signout", post(auth::signout))
        .route("/locked", get(auth::locked))
        .route("/session/keepalive", post(auth::keepalive))
        .route("/session/left", get(auth::seconds_left))
        .merge(patients::routes())
        .merge(schedule::routes())
        .merge(clinical::routes())
        .merge(admin::routes())
        .merge(account::routes())
        .merge(audit::routes())
        .merge(approvals::routes())
        .fallback(not_found_page)
}

/// An unknown address under `/ui/`: a page, not problem+json (a person is reading it).
async fn not_found_page() -> Response {
    message_page(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address.")
}

/// Static files: the UI's stylesheet and scripts, compiled into the binary.
pub(crate) async fn static_file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, ty): (&'static str, &'static str) = match name.as_str() {
        "app.css" => (include_str!("../../static/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_str!("../../static/app.js"), "text/javascript; charset=utf-8"),
        "passkey.js" => (include_str!("../../static/passkey.js"), "text/javascript; charset=utf-8"),
        "signature.js" => (include_str!("../../static/signature.js"), "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    r
}

/// A signed-in staff member on a UI page: the common extractor (`crate::auth`, surface
/// [`Page`]) with what pages add: the session's form token, whether this is a demo instance and
/// the idle limit. Extracting it authenticates (and counts as use of the session); a missing or
/// expired session sends the browser to the sign-in page instead. Pages act under the role's
/// default purpose of use.
#[allow(dead_code)] // parts are used as the page modules land
pub(crate) struct Ui {
    pub actor: Actor,
    pub ctx: RequestContext,
    pub purpose: PurposeOfUse,
    pub csrf: String,
    pub demo: bool,
    pub idle_secs: i64,
}

impl Ui {
    pub(crate) fn can(&self, p: Permission) -> bool {
        self.actor.privileges().holds(p)
    }
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let who = Purposed::<Page>::from_request_parts(parts, st).await?;
        Ok(Ui {
            csrf: who.form_token(),
            actor: who.actor,
            ctx: who.ctx,
            purpose: who.purpose,
            demo: st.vault.instance_kind() == InstanceKind::Demo,
            idle_secs: st.vault.config().session_idle_secs,
        })
    }
}

/// A parsed urlencoded form whose CSRF token has been checked.
pub(crate) struct FormData(HashMap<String, String>);

#[allow(dead_code)]
impl FormData {
    /// The trimmed value of a field ("" when absent).
    pub(crate) fn get(&self, k: &str) -> &str {
        self.0.get(k).map(|v| v.trim()).unwrap_or_default()
    }

    /// The trimmed value, or `None` when absent or blank.
    pub(crate) fn opt(&self, k: &str) -> Option<&str> {
        Some(self.get(k)).filter(|v| !v.is_empty())
    }

    /// The untrimmed value (free text such as notes keeps its layout).
    pub(crate) fn raw(&self, k: &str) -> &str {
        self.0.get(k).map(String::as_str).unwrap_or_default()
    }

    /// Every value of a repeated field (`name=a&name=b`), in order.
    pub(crate) fn all(&self, k: &str) -> Vec<&str> {
        self.0.get(&format!("{k}[]")).map(|v| v.split('\u{1f}').filter(|s| !s.is_empty()).collect()).unwrap_or_default()
    }
}

/// Reads a urlencoded form body and checks its `csrf` field against `expected`. Bad input is a
/// precise 400 page; a missing or wrong token a 403 page. Nothing has been changed when either
/// is returned.
pub(crate) async fn read_form(headers: &HeaderMap, body: Body, expected: &str) -> Result<FormData, Response> {
    let ty = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ty.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(message_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Form not accepted", "This address takes HTML form posts only."));
    }
    let bytes = read_body(headers, body, FORM_LIMIT).await.map_err(|e| message_page(e.status(), "Form not accepted", &e.reason()))?;
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(&bytes) {
        if k.contains('\0') || v.contains('\0') {
            return Err(message_page(StatusCode::BAD_REQUEST, "Form not accepted", "Text must not contain NUL characters."));
        }
        // Repeated fields are kept together under `name[]`.
        let key = k.into_owned();
        if let Some(list) = key.strip_suffix("[]") {
            let e = map.entry(format!("{list}[]")).or_default();
            e.push('\u{1f}');
            e.push_str(&v);
        } else {
            map.insert(key, v.into_owned());
        }
    }
    let given = map.get("csrf").map(String::as_str).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(message_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form was not sent from a current carevault page (its security token is missing or out of date). Go back, reload the page and try again.",
        ));
    }
    Ok(FormData(map))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session's form token for `Ui` pages.
#[allow(dead_code)]
pub(crate) async fn ui_form(ui: &Ui, headers: &HeaderMap, body: Body) -> Result<FormData, Response> {
    read_form(headers, body, &ui.csrf).await
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A POST form with its CSRF field.
pub(crate) fn post_form(ui: &Ui, action: &str, class: &str, inner: Markup) -> Markup {
    html! { form method="post" action=(action) class=(class) { (csrf_field(&ui.csrf)) (inner) } }
}

fn html_response(status: StatusCode, m: Markup) -> Response {
    let mut r = (status, m.into_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// A full page of a signed-in user: header with navigation, privacy-screen button and sign-out,
/// the content in `<main>`, the idle warning and the privacy shield. Everything inside `<main>`
/// is treated as PHI by the scripts (blurred, removed at lock).
pub(crate) fn page(ui: &Ui, title: &str, content: Markup) -> Response {
    page_status(ui, StatusCode::OK, title, content)
}

pub(crate) fn page_status(ui: &Ui, status: StatusCode, title: &str, content: Markup) -> Response {
    let nav: Vec<(&str, &str, bool)> = vec![
        ("/ui/", "Home", true),
        ("/ui/patients", "Patients", ui.can(Permission::PatientSearch)),
        ("/ui/schedule", "Schedule", ui.can(Permission::AppointmentRead)),
        ("/ui/audit", "Audit", ui.can(Permission::AuditRead)),
        ("/ui/admin", "Admin", ui.can(Permission::UserRead)),
        ("/ui/approvals", "Approvals", ui.can(Permission::ApprovalDecide)),
        ("/ui/account", "My account", true),
    ];
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · carevault" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body data-idle-secs=(ui.idle_secs) data-csrf=(ui.csrf) {
                a class="skip" href="#main" { "Skip to content" }
                @if ui.demo { (demo_banner()) }
                header class="top" {
                    a class="brand" href="/ui/" { "carevault" }
                    nav aria-label="Main" {
                        ul {
                            @for (href, label, show) in &nav {
                                @if *show { li { a href=(href) { (label) } } }
                            }
                        }
                    }
                    div class="who" {
                        span class="user" { "Signed in as " strong { (ui.actor.username()) } }
                        button type="button" id="privacy-toggle" aria-pressed="false" title="Blur the screen (Alt+Shift+P)" { "Privacy screen" }
                        (post_form(ui, "/ui/signout", "inline", html! { button type="submit" { "Sign out" } }))
                    }
                }
                main id="main" tabindex="-1" { (content) }
                div id="idle-warning" class="dialog" role="alertdialog" aria-modal="true" aria-labelledby="idle-title" aria-describedby="idle-text" hidden {
                    h2 id="idle-title" { "Still there?" }
                    p id="idle-text" { "For privacy you will be signed out in " span id="idle-count" { "60" } " seconds because this page has not been used." }
                    button type="button" id="idle-stay" { "Stay signed in" }
                }
                div id="privacy-shield" class="shield" hidden {
                    div class="dialog" role="dialog" aria-modal="true" aria-labelledby="privacy-title" {
                        h2 id="privacy-title" { "Privacy screen on" }
                        p { "Patient information is hidden. Press the button (or Alt+Shift+P) to show it again." }
                        button type="button" id="privacy-off" { "Show the screen" }
                    }
                }
            }
        }
    };
    html_response(status, m)
}

fn demo_banner() -> Markup {
    html! { p class="demo" role="note" { "DEMO: every patient here is synthetic. Do not enter real patient data." } }
}

/// A page outside a session (sign-in, sign-out, errors before sign-in).
pub(crate) fn bare_page(status: StatusCode, title: &str, demo: bool, content: Markup) -> Response {
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · carevault" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body class="bare" {
                @if demo { (demo_banner()) }
                header class="top" { a class="brand" href="/ui/" { "carevault" } }
                main id="main" tabindex="-1" class="narrow" { (content) }
            }
        }
    };
    html_response(status, m)
}

/// A short message page (no session needed).
pub(crate) fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    bare_page(status, title, false, html! { h1 { (title) } p role="alert" { (text) } p { a href="/ui/" { "Back to carevault" } } })
}

/// What a refusal or failure means, in words for staff.
pub(crate) fn explain(e: &CoreError) -> (String, String) {
    match e {
        CoreError::Forbidden { operation, reason } => (
            "Not allowed".into(),
            format!(
                "Your account may not do this here: '{operation}' ({}). The attempt has been recorded in the audit log. \
                 Ask your practice administrator or privacy officer if you need this access.",
                reason_words(reason)
            ),
        ),
        CoreError::Refused { message, .. } => ("Not allowed".into(), format!("{message}. The attempt has been recorded in the audit log.")),
        CoreError::ReauthRequired => (
            "Confirm it's you".into(),
            "This action needs a recent sign-in. Confirm your password and code on your account page, then try again.".into(),
        ),
        CoreError::Invalid(i) => ("Please check the form".into(), i.to_string()),
        CoreError::NotFound { resource } => {
            ("Not found".into(), format!("{} was not found, or you may not see it.", crate::error::resource_kind(resource)))
        }
        CoreError::Conflict(m) => ("Could not be done".into(), m.clone()),
        CoreError::VersionConflict { .. } => ("Changed meanwhile".into(), "Someone else changed this record. Reload and try again.".into()),
        CoreError::AuditUnavailable => {
            ("Try again shortly".into(), "The audit log could not be written, so nothing was shown or changed.".into())
        }
        CoreError::Internal(_) => ("Something went wrong".into(), "An internal error occurred; it has been logged.".into()),
        CoreError::ApprovalPending { .. } => (
            "Waiting for approval".into(),
            "This change gives access to patient data, the audit log or security controls, so it takes effect only once a privacy or security officer other than you approves it. The officers were alerted.".into(),
        ),
        other => ("Could not be done".into(), other.to_string()),
    }
}

fn reason_words(reason: &str) -> String {
    match reason {
        "no-permission" => "your role does not include this permission".into(),
        "no-care-relationship" => "you are not on this patient's care team; a break-glass access may be possible in an emergency".into(),
        "sensitive-record" => "the record carries a sensitive-information flag your role does not cover".into(),
        "out-of-scope" => "the record belongs to an organization or location outside your assignment".into(),
        "purpose-not-allowed" => "your role may not use this purpose of use".into(),
        other => other.replace('-', " "),
    }
}

/// The error page for a failed core call, in the page frame when signed in.
pub(crate) fn error_page(ui: Option<&Ui>, e: &CoreError) -> Response {
    let status = crate::error::status_of(e, false);
    let (title, text) = explain(e);
    let content = html! {
        h1 { (title) }
        p role="alert" class="error" { (text) }
        p { a href="/ui/" { "Back to home" } }
    };
    match ui {
        Some(ui) => page_status(ui, status, &title, content),
        None => bare_page(status, &title, false, content),
    }
}

/// The result of a form post: on success go to `to` (303), else the error page.
#[allow(dead_code)]
pub(crate) fn after<T>(ui: &Ui, r: Result<T, CoreError>, to: impl FnOnce(T) -> String) -> Response {
    match r {
        Ok(v) => Redirect::to(&to(v)).into_response(),
        Err(e) => error_page(Some(ui), &e),
    }
}

/// Formats a stored instant (µs since the epoch, UTC) as `YYYY-MM-DD HH:MM UTC`.
#[allow(dead_code)]
pub(crate) fn when(micros: i64) -> String {
    let s = carevault_core::format_instant(micros);
    // format_instant gives RFC 3339; the page shows minutes.
    match (s.get(0..10), s.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => s,
    }
}
