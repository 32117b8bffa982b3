//! Sign-in (password, then TOTP, passkey or recovery code), first-sign-in enrollment with a QR
//! code and recovery codes, sign-out, and the idle lock.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::{CoreError, InstanceKind, SessionGrant};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::{bare_page, csrf_field, read_form, Ui};
use crate::api::signed_out;
use crate::extract::{session_cookie, session_token, Peer};
use crate::server::AppState;

/// The sign-in form's double-submit token (there is no session yet to bind a token to).
const FORM_COOKIE: &str = "__Host-carevault_form";

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name && !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

fn set_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn demo(st: &AppState) -> bool {
    st.vault.instance_kind() == InstanceKind::Demo
}

#[derive(Deserialize, Default)]
pub(crate) struct Reason {
    reason: Option<String>,
}

fn reason_text(r: Option<&str>) -> Option<&'static str> {
    match r? {
        "expired" => Some("Your session ended. Please sign in again."),
        "idle" => Some("You were signed out because the page was not used for a while. Please sign in again."),
        "signed-out" => Some("You are signed out."),
        _ => None,
    }
}

fn signin_form(token: &str, notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        @if let Some(e) = error { p class="error" role="alert" id="signin-error" { (e) } }
        form method="post" action="/ui/signin" class="stack" {
            (csrf_field(token))
            label for="username" { "Username" }
            input id="username" name="username" type="text" autocomplete="username" required autofocus
                aria-describedby=[error.map(|_| "signin-error")];
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Continue" }
        }
        p class="hint" { "After your password you confirm with your authenticator app, a passkey or a recovery code." }
    }
}

/// `GET /ui/signin`
pub(crate) async fn signin_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Reason>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let reason = q.ok().and_then(|Query(r)| r.reason);
    let token = cookie_value(&headers, FORM_COOKIE).unwrap_or_else(carevault_core::random_token);
    let r = bare_page(StatusCode::OK, "Sign in", demo(&st), signin_form(&token, reason_text(reason.as_deref()), None));
    set_cookie(r, &format!("{FORM_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600"))
}

/// `POST /ui/signin`: the password step.
pub(crate) async fn signin(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let token = cookie_value(&headers, FORM_COOKIE).unwrap_or_default();
    let f = match read_form(&headers, body, &token).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.login(&ctx, f.get("username"), f.raw("password")).await {
        Ok(step) => {
            let next = match st.vault.mfa_enrollment_needed(Some(&step.pending_token)).await {
                Ok(true) => "/ui/signin/enroll",
                _ => "/ui/signin/mfa",
            };
            set_cookie(Redirect::to(next).into_response(), &session_cookie(&step.pending_token))
        }
        Err(e) => {
            let status = crate::error::status_of(&e, false);
            let msg = match &e {
                CoreError::InvalidCredentials => "The username or password is not right.".to_string(),
                other => other.to_string(),
            };
            bare_page(status, "Sign in", demo(&st), signin_form(&token, None, Some(&msg)))
        }
    }
}

fn pending(headers: &HeaderMap) -> Option<String> {
    session_token(headers)
}

fn mfa_content(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Confirm it's you" }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        section aria-labelledby="totp-h" {
            h2 id="totp-h" { "Authenticator app" }
            form method="post" action="/ui/signin/totp" class="stack" {
                (csrf_field(csrf))
                label for="code" { "6-digit code" }
                input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,8}" required autofocus;
                button type="submit" { "Sign in" }
            }
        }
        section aria-labelledby="pk-h" {
            h2 id="pk-h" { "Passkey" }
            p { "Use a passkey you registered on this device or a security key." }
            button type="button" id="passkey-signin" data-csrf=(csrf) { "Sign in with a passkey" }
            p id="passkey-status" role="status" {}
            script src="/static/passkey.js" defer {}
        }
        details {
            summary { "Lost your authenticator? Use a recovery code" }
            form method="post" action="/ui/signin/recovery" class="stack" {
                (csrf_field(csrf))
                label for="recovery" { "Recovery code" }
                input id="recovery" name="code" type="text" autocomplete="off" required;
                button type="submit" { "Sign in with recovery code" }
            }
        }
    }
}

/// `GET /ui/signin/mfa`
pub(crate) async fn mfa_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(t) = pending(&headers) else { return Redirect::to("/ui/signin").into_response() };
    bare_page(StatusCode::OK, "Second factor", demo(&st), mfa_content(&carevault_core::form_token(&t), None))
}

fn signed_in(g: &SessionGrant, to: &str) -> Response {
    set_cookie(Redirect::to(to).into_response(), &session_cookie(&g.token))
}

fn second_factor_failed(st: &AppState, csrf: &str, e: &CoreError) -> Response {
    match e {
        CoreError::Unauthenticated | CoreError::SessionExpired => Redirect::to("/ui/signin?reason=expired").into_response(),
        CoreError::InvalidCode => bare_page(
            StatusCode::UNAUTHORIZED,
            "Second factor",
            demo(st),
            mfa_content(csrf, Some("That code is not right or was already used. Wait for a new code and try again.")),
        ),
        other => bare_page(crate::error::status_of(other, false), "Second factor", demo(st), mfa_content(csrf, Some(&other.to_string()))),
    }
}

/// `POST /ui/signin/totp`
pub(crate) async fn totp(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let t = pending(&headers).unwrap_or_default();
    let csrf = carevault_core::form_token(&t);
    let f = match read_form(&headers, body, if t.is_empty() { "" } else { &csrf }).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.verify_totp(&ctx, Some(&t), &f.get("code").replace(' ', "")).await {
        Ok(g) => signed_in(&g, "/ui/"),
        Err(e) => second_factor_failed(&st, &csrf, &e),
    }
}

/// `POST /ui/signin/recovery`
pub(crate) async fn recovery(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let t = pending(&headers).unwrap_or_default();
    let csrf = carevault_core::form_token(&t);
    let f = match read_form(&headers, body, if t.is_empty() { "" } else { &csrf }).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.verify_recovery_code(&ctx, Some(&t), f.get("code")).await {
        Ok(g) => signed_in(&g, "/ui/account?notice=recovery-used"),
        Err(e) => second_factor_failed(&st, &csrf, &e),
    }
}

/// The QR code of an `otpauth://` URI as inline SVG (no script, no image request).
fn qr_svg(uri: &str) -> Markup {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(220, 220).quiet_zone(true).build();
            let svg = svg.find("<svg").and_then(|i| svg.get(i..)).unwrap_or_default().to_string();
            let svg = svg.replacen("<svg", "<svg role=\"img\" aria-label=\"QR code for your authenticator app\"", 1);
            html! { div class="qr" { (PreEscaped(svg)) } }
        }
        Err(_) => html! { p class="error" { "The QR code could not be drawn; type the key below instead." } },
    }
}

fn secret_of(uri: &str) -> String {
    uri.split(['?', '&']).find_map(|p| p.strip_prefix("secret=")).unwrap_or_default().to_string()
}

fn enroll_content(csrf: &str, uri: &str, error: Option<&str>) -> Markup {
    let secret = secret_of(uri);
    let grouped: Vec<String> = secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    html! {
        h1 { "Set up your authenticator" }
        p { "carevault needs a second factor for every sign-in. Scan this code with an authenticator app (for example FreeOTP, Aegis, Google or Microsoft Authenticator), then type the 6-digit code it shows." }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        (qr_svg(uri))
        p { "Can't scan? Enter this key by hand: " code id="totp-secret" data-secret=(secret) { (grouped.join(" ")) } }
        form method="post" action="/ui/signin/enroll" class="stack" {
            (csrf_field(csrf))
            label for="code" { "Code from the app" }
            input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required autofocus;
            button type="submit" { "Confirm and continue" }
        }
        p class="hint" { "Next you will get recovery codes for the day your phone is lost. You can add a passkey on your account page." }
    }
}

/// `GET /ui/signin/enroll`: first sign-in (or after an MFA reset): explains, then offers to make
/// a new key. Nothing changes until the user asks for the key, so a user who already set up the
/// key their administrator printed can still use it.
pub(crate) async fn enroll_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(t) = pending(&headers) else { return Redirect::to("/ui/signin").into_response() };
    let csrf = carevault_core::form_token(&t);
    let needs_invitation = st.vault.mfa_enrollment(Some(&t)).await.ok().flatten().unwrap_or(true);
    bare_page(StatusCode::OK, "Set up your authenticator", demo(&st), enroll_intro(&csrf, needs_invitation, None))
}

/// The first enrollment page: the invitation code field (every account but a demo one), then
/// the button that makes the key.
fn enroll_intro(csrf: &str, needs_invitation: bool, error: Option<&str>) -> Markup {
    html! {
        h1 { "Set up your authenticator" }
        p { "carevault asks for a second factor at every sign-in. This is your first sign-in, so set up an authenticator app on your phone now (for example FreeOTP, Aegis, Google or Microsoft Authenticator)." }
        @if let Some(e) = error { p class="error" role="alert" { (e) } }
        form method="post" action="/ui/signin/enroll/start" class="stack" {
            (csrf_field(csrf))
            @if needs_invitation {
                label for="invitation" { "Invitation code" }
                input id="invitation" name="invitation" type="text" autocomplete="off" autocapitalize="characters" spellcheck="false" required autofocus;
                p class="hint" { "The code your administrator gave you with your account (it works once, and expires)." }
            }
            button type="submit" { "Show my QR code" }
        }
        p class="hint" { "Already set up an authenticator? " a href="/ui/signin/mfa" { "Enter its code instead" } "." }
    }
}

/// `POST /ui/signin/enroll/start`: a fresh secret and its QR code.
pub(crate) async fn enroll_start(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let t = pending(&headers).unwrap_or_default();
    let csrf = carevault_core::form_token(&t);
    let f = match read_form(&headers, body, if t.is_empty() { "" } else { &csrf }).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let code = f.get("invitation");
    match st.vault.mfa_enrollment_start(&ctx, Some(&t), (!code.is_empty()).then_some(code)).await {
        Ok(uri) => bare_page(StatusCode::OK, "Set up your authenticator", demo(&st), enroll_content(&csrf, &uri, None)),
        Err(CoreError::Refused { reason: "invitation", message }) => {
            bare_page(StatusCode::FORBIDDEN, "Set up your authenticator", demo(&st), enroll_intro(&csrf, true, Some(&message)))
        }
        Err(CoreError::Refused { .. }) => Redirect::to("/ui/signin/mfa").into_response(),
        Err(CoreError::Unauthenticated | CoreError::SessionExpired) => Redirect::to("/ui/signin?reason=expired").into_response(),
        Err(e) => super::error_page(None, &e),
    }
}

/// `POST /ui/signin/enroll`: the first code completes enrollment; then recovery codes, shown once.
pub(crate) async fn enroll(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let t = pending(&headers).unwrap_or_default();
    let csrf = carevault_core::form_token(&t);
    let f = match read_form(&headers, body, if t.is_empty() { "" } else { &csrf }).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let g = match st.vault.verify_totp(&ctx, Some(&t), &f.get("code").replace(' ', "")).await {
        Ok(g) => g,
        Err(CoreError::InvalidCode) => {
            // The key is unchanged: the user can try the next code.
            let back = html! {
                h1 { "Set up your authenticator" }
                p class="error" role="alert" { "That code did not match. Check the time on your phone and try the next code." }
                form method="post" action="/ui/signin/enroll" class="stack" {
                    (csrf_field(&csrf))
                    label for="code" { "Code from the app" }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required autofocus;
                    button type="submit" { "Confirm and continue" }
                }
                p class="hint" { "Lost the QR code? " a href="/ui/signin/enroll" { "Start again" } "." }
            };
            return bare_page(StatusCode::UNAUTHORIZED, "Set up your authenticator", demo(&st), back);
        }
        Err(e) => return second_factor_failed(&st, &csrf, &e),
    };
    let codes = match st.vault.authenticate(&ctx, Some(&g.token)).await {
        Ok(actor) => st.vault.generate_recovery_codes(&actor).await,
        Err(e) => Err(e),
    };
    let content = html! {
        h1 { "Save your recovery codes" }
        p { "Your authenticator is set up. If you lose it, each of these codes signs you in once. Print them or keep them somewhere safe; they are not shown again." }
        @match &codes {
            Ok(codes) => { ol class="codes" id="recovery-codes" { @for c in codes { li { code { (c) } } } } }
            Err(e) => { p class="error" role="alert" { "Recovery codes could not be made (" (e.to_string()) "). Make them later on your account page." } }
        }
        p { a class="button" href="/ui/" { "I have saved them, continue" } }
    };
    set_cookie(bare_page(StatusCode::OK, "Recovery codes", demo(&st), content), &session_cookie(&g.token))
}

/// `POST /ui/signout`: ends the session and clears what the browser holds for this site.
pub(crate) async fn signout(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let t = session_token(&headers);
    let csrf = t.as_deref().map(carevault_core::form_token).unwrap_or_default();
    if let Err(r) = read_form(&headers, body, &csrf).await {
        return r;
    }
    if let Err(e) = st.vault.logout(&ctx, t.as_deref()).await {
        return super::error_page(None, &e);
    }
    signed_out(bare_page(
        StatusCode::OK,
        "Signed out",
        demo(&st),
        html! { h1 { "You are signed out" } p role="status" { "This browser no longer holds anything of your session." } p { a class="button" href="/ui/signin" { "Sign in again" } } },
    ))
}

/// `GET /ui/locked`: where the page goes when the idle limit is reached. Ends whatever is left
/// of the session (it can only shorten a session, never extend it) and clears the browser.
pub(crate) async fn locked(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    let t = session_token(&headers);
    if let Err(e) = st.vault.logout(&ctx, t.as_deref()).await {
        return super::error_page(None, &e);
    }
    let mins = st.vault.config().session_idle_secs.saturating_add(59) / 60;
    signed_out(bare_page(
        StatusCode::OK,
        "Screen locked",
        demo(&st),
        html! {
            h1 { "Screen locked" }
            p role="status" { "You were signed out after " (mins) " minute" @if mins != 1 { "s" } " without activity, and patient information was removed from this page." }
            p { a class="button" href="/ui/signin?reason=idle" { "Sign in again" } }
        },
    ))
}

/// `POST /ui/session/keepalive` (the "Stay signed in" button): a real use of the session.
pub(crate) async fn keepalive(ui: Ui, headers: HeaderMap) -> Response {
    let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if given != ui.csrf {
        return StatusCode::FORBIDDEN.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /ui/session/left`: seconds until the session ends; reading it is not use.
pub(crate) async fn seconds_left(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let left = st.vault.session_seconds_left(session_token(&headers).as_deref()).await.ok().flatten().unwrap_or(0);
    crate::api::json_response(StatusCode::OK, serde_json::json!({ "seconds_left": left }))
}
