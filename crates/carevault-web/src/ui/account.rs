//! The signed-in user's own account: passkeys, recovery codes, sessions, password, and the
//! step-up "Confirm it's you" page that sensitive actions send the user to.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carevault_core::CoreError;
use maud::{html, Markup};
use serde::Deserialize;

use super::{bare_page, csrf_field, error_page, page, page_status, post_form, ui_form, when, Ui};
use crate::api::signed_out;
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/reauth", get(reauth_page).post(reauth))
        .route("/account", get(account))
        .route("/account/password", post(change_password))
        .route("/account/recovery-codes", post(recovery_codes))
        .route("/account/sessions/end-all", post(end_all_sessions))
        .route("/account/sessions/{sid}/end", post(end_session))
        .route("/account/passkeys/{pid}/rename", post(rename_passkey))
        .route("/account/passkeys/{pid}/revoke", post(revoke_passkey))
}

// ----- step-up re-authentication -----

/// Where the reauth page may send the browser afterwards: only a page of this UI.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.contains("/..")
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/ui/account".to_string(),
    }
}

/// The address of the reauth page that comes back to `next`.
pub(crate) fn reauth_href(next: &str) -> String {
    let enc: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/ui/reauth?next={enc}")
}

/// What a page shows when the core asks for a fresh sign-in: the reason and the link.
pub(crate) fn reauth_needed(next: &str) -> Markup {
    html! {
        p class="error" role="alert" {
            "This needs a sign-in within the last 5 minutes. "
            a href=(reauth_href(next)) { "Confirm it's you" }
            ", then try again."
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

fn reauth_form(ui: &Ui, next: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Confirm it's you" }
        p { "Some actions (passkeys, recovery codes, role assignments, MFA resets) need a recent sign-in. Enter your password and a code to continue." }
        @if let Some(e) = error { p class="error" role="alert" id="reauth-error" { (e) } }
        form method="post" action=(reauth_href(next)) class="stack" {
            (csrf_field(&ui.csrf))
            input type="hidden" name="next" value=(next);
            label for="reauth-password" { "Password" }
            input id="reauth-password" name="password" type="password" autocomplete="current-password" required autofocus
                aria-describedby=[error.map(|_| "reauth-error")];
            label for="reauth-code" { "Code" }
            input id="reauth-code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required
                aria-describedby="reauth-code-hint";
            p class="hint" id="reauth-code-hint" { "The 6-digit code from your authenticator app." }
            button type="submit" { "Confirm" }
        }
        p { a href=(next) { "Cancel" } }
    }
}

/// `GET /ui/reauth?next=/ui/...`
async fn reauth_page(ui: Ui, q: Result<Query<NextQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let next = safe_next(q.ok().and_then(|Query(q)| q.next).as_deref());
    page(&ui, "Confirm it's you", reauth_form(&ui, &next, None))
}

/// `POST /ui/reauth`: password and code again, then back to `next`.
async fn reauth(
    ui: Ui,
    State(st): State<AppState>,
    q: Result<Query<NextQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let from_query = q.ok().and_then(|Query(q)| q.next);
    let next = safe_next(f.opt("next").or(from_query.as_deref()));
    match st.vault.reauthenticate(&ui.actor, f.raw("password"), &f.get("code").replace(' ', "")).await {
        Ok(()) => Redirect::to(&next).into_response(),
        Err(CoreError::InvalidCredentials) => page_status(
            &ui,
            StatusCode::UNAUTHORIZED,
            "Confirm it's you",
            reauth_form(&ui, &next, Some("The password is not right. The attempt was recorded.")),
        ),
        Err(CoreError::InvalidCode) => page_status(
            &ui,
            StatusCode::UNAUTHORIZED,
            "Confirm it's you",
            reauth_form(&ui, &next, Some("That code is not right or was already used. Wait for a new code and try again.")),
        ),
        Err(CoreError::Throttled { retry_after_secs }) => page_status(
            &ui,
            StatusCode::TOO_MANY_REQUESTS,
            "Confirm it's you",
            reauth_form(&ui, &next, Some(&format!("Too many failed attempts. Try again in {retry_after_secs} seconds."))),
        ),
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- the account page -----

/// The home page's reminder when the user is running out of recovery codes.
pub(crate) async fn home_section(ui: &Ui, st: &AppState) -> Option<Markup> {
    let left = st.vault.recovery_codes_left(&ui.actor).await.ok()?;
    if left >= 3 {
        return None;
    }
    Some(html! {
        section aria-labelledby="home-account-h" {
            h2 id="home-account-h" { "Your account" }
            p class="notice" role="status" {
                "You have " (left) " recovery code" @if left != 1 { "s" } " left. "
                "Make new ones on " a href="/ui/account" { "your account page" } "."
            }
        }
    })
}

#[derive(Deserialize, Default)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
}

fn notice_text(n: &str) -> Option<&'static str> {
    match n {
        "recovery-used" => Some("You signed in with a recovery code; make new ones below"),
        "passkey-added" => Some("Passkey added."),
        "passkey-renamed" => Some("Passkey renamed."),
        "passkey-removed" => Some("Passkey removed. Your other sessions were ended."),
        "password-changed" => Some("Password changed. Your other sessions were ended."),
        "session-ended" => Some("Session ended."),
        _ => None,
    }
}

/// Which section of the account page a message belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sect {
    Passkeys,
    Recovery,
    Sessions,
    Password,
}

/// An error shown in one section of the account page.
struct Flash {
    sect: Sect,
    body: Markup,
}

fn flash_in(flash: &Option<Flash>, sect: Sect) -> Option<&Markup> {
    flash.as_ref().filter(|f| f.sect == sect).map(|f| &f.body)
}

fn error_msg(text: &str) -> Markup {
    html! { p class="error" role="alert" { (text) } }
}

/// The error markup for a failed account action: a reauth link, the input problem, or the
/// plain explanation.
fn account_error(e: &CoreError) -> Markup {
    match e {
        CoreError::ReauthRequired => reauth_needed("/ui/account"),
        other => error_msg(&super::explain(other).1),
    }
}

async fn account_page(ui: &Ui, st: &AppState, status: StatusCode, notice: Option<&str>, flash: Option<Flash>) -> Response {
    let passkeys = st.vault.my_passkeys(&ui.actor).await;
    let codes_left = st.vault.recovery_codes_left(&ui.actor).await;
    let sessions = st.vault.my_sessions(&ui.actor).await;
    let content = html! {
        h1 { "My account" }
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        p { "Signed in as " strong { (ui.actor.username()) } "." }

        section aria-labelledby="passkeys-h" {
            h2 id="passkeys-h" { "Passkeys" }
            @if let Some(m) = flash_in(&flash, Sect::Passkeys) { (m) }
            @match &passkeys {
                Ok(list) if list.is_empty() => { p { "You have no passkeys yet. A passkey lets you confirm your sign-in with this device or a security key instead of a code." } }
                Ok(list) => {
                    div class="table-wrap" {
                        table {
                            caption { "Your passkeys" }
                            thead { tr { th scope="col" { "Name" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Rename" } th scope="col" { "Remove" } } }
                            tbody {
                                @for (i, p) in list.iter().enumerate() {
                                    tr {
                                        td { (p.name) }
                                        td { (when(p.created_at)) }
                                        td { @match p.last_used_at { Some(t) => (when(t)), None => "never" } }
                                        td {
                                            (post_form(ui, &format!("/ui/account/passkeys/{}/rename", p.id), "inline", html! {
                                                label for=(format!("passkey-rename-{i}")) { "New name" }
                                                " "
                                                input id=(format!("passkey-rename-{i}")) name="name" type="text" maxlength="64" required value=(p.name);
                                                " "
                                                button type="submit" class="secondary" { "Rename" }
                                            }))
                                        }
                                        td {
                                            (post_form(ui, &format!("/ui/account/passkeys/{}/revoke", p.id), "inline", html! {
                                                button type="submit" class="danger" aria-label=(format!("Remove passkey {}", p.name)) { "Remove" }
                                            }))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => { (error_msg(&super::explain(e).1)) }
            }
            form id="passkey-register" class="stack" {
                label for="passkey-name" { "Passkey name" }
                input id="passkey-name" type="text" maxlength="64" required autocomplete="off" placeholder="e.g. Office laptop" aria-describedby="passkey-fresh";
                button type="submit" { "Add a passkey" }
            }
            p class="hint" id="passkey-fresh" {
                "Adding a passkey needs a sign-in within the last 5 minutes. "
                a href=(reauth_href("/ui/account")) { "Confirm it's you" }
                " first if it was longer ago."
            }
            p id="passkey-reg-status" role="status" {}
            script src="/static/passkey.js" defer {}
        }

        section aria-labelledby="recovery-h" {
            h2 id="recovery-h" { "Recovery codes" }
            @if let Some(m) = flash_in(&flash, Sect::Recovery) { (m) }
            @match codes_left {
                Ok(n) => { p { "Unused recovery codes: " strong id="recovery-left" { (n) } } }
                Err(e) => { (error_msg(&super::explain(&e).1)) }
            }
            p class="hint" { "Each code signs you in once when your authenticator is not at hand. Making new codes replaces all old ones; it needs a sign-in within the last 5 minutes." }
            (post_form(ui, "/ui/account/recovery-codes", "inline", html! { button type="submit" { "Make new recovery codes" } }))
        }

        section aria-labelledby="sessions-h" {
            h2 id="sessions-h" { "My sessions" }
            @if let Some(m) = flash_in(&flash, Sect::Sessions) { (m) }
            @match &sessions {
                Ok(list) => {
                    div class="table-wrap" {
                        table {
                            caption { "Where you are signed in" }
                            thead { tr { th scope="col" { "Started" } th scope="col" { "Last seen" } th scope="col" { "IP address" } th scope="col" { "This session" } th scope="col" { "End" } } }
                            tbody {
                                @for s in list {
                                    tr {
                                        td { (when(s.created_at)) }
                                        td { (when(s.last_seen_at)) }
                                        td { (s.source_ip.as_deref().unwrap_or("unknown")) }
                                        td { @if s.current { span class="badge ok" { "this session" } } }
                                        td {
                                            (post_form(ui, &format!("/ui/account/sessions/{}/end", s.id), "inline", html! {
                                                button type="submit" class="secondary" aria-label=(format!("End the session started {}", when(s.created_at))) { "End" }
                                            }))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => { (error_msg(&super::explain(e).1)) }
            }
            (post_form(ui, "/ui/account/sessions/end-all", "inline", html! { button type="submit" class="danger" { "Sign out everywhere" } }))
            p class="hint" { "Ends every session of your account, this one included." }
        }

        section aria-labelledby="password-h" {
            h2 id="password-h" { "Password" }
            @if let Some(m) = flash_in(&flash, Sect::Password) { (m) }
            (post_form(ui, "/ui/account/password", "stack", html! {
                label for="current-password" { "Current password" }
                input id="current-password" name="current_password" type="password" autocomplete="current-password" required;
                label for="new-password" { "New password" }
                input id="new-password" name="new_password" type="password" autocomplete="new-password" required aria-describedby="new-password-hint";
                p class="hint" id="new-password-hint" { "Use a long passphrase; common and breached passwords are refused. Your other sessions end when it changes." }
                button type="submit" { "Change password" }
            }))
        }
    };
    page_status(ui, status, "My account", content)
}

/// `GET /ui/account`
async fn account(ui: Ui, State(st): State<AppState>, q: Result<Query<NoticeQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let notice = q.ok().and_then(|Query(q)| q.notice).and_then(|n| notice_text(&n));
    account_page(&ui, &st, StatusCode::OK, notice, None).await
}

/// A failed account action: the account page with the message in its section (refusals by
/// authorization get the error page).
async fn failed(ui: &Ui, st: &AppState, sect: Sect, e: &CoreError) -> Response {
    match e {
        CoreError::Forbidden { .. } | CoreError::Unauthenticated | CoreError::SessionExpired => error_page(Some(ui), e),
        _ => {
            let status = crate::error::status_of(e, false);
            account_page(ui, st, status, None, Some(Flash { sect, body: account_error(e) })).await
        }
    }
}

/// `POST /ui/account/password`
async fn change_password(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.change_password(&ui.actor, f.raw("current_password"), f.raw("new_password")).await {
        Ok(()) => Redirect::to("/ui/account?notice=password-changed").into_response(),
        Err(CoreError::InvalidCredentials) => {
            let body = error_msg("The current password is not right. The attempt was recorded.");
            account_page(&ui, &st, StatusCode::UNAUTHORIZED, None, Some(Flash { sect: Sect::Password, body })).await
        }
        Err(CoreError::Invalid(i)) => {
            let body = error_msg(&format!("The new password was not accepted: {}", i.message));
            account_page(&ui, &st, StatusCode::BAD_REQUEST, None, Some(Flash { sect: Sect::Password, body })).await
        }
        Err(e) => failed(&ui, &st, Sect::Password, &e).await,
    }
}

/// `POST /ui/account/recovery-codes`: ten new codes, shown once.
async fn recovery_codes(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.generate_recovery_codes(&ui.actor).await {
        Ok(codes) => page(
            &ui,
            "Recovery codes",
            html! {
                h1 { "Your new recovery codes" }
                p role="status" { "Your old recovery codes no longer work. Each of these signs you in once. Print them or keep them somewhere safe; they are not shown again." }
                ol class="codes" id="recovery-codes" { @for c in &codes { li { code { (c) } } } }
                p { a class="button" href="/ui/account" { "I have saved them, back to my account" } }
            },
        ),
        Err(e) => failed(&ui, &st, Sect::Recovery, &e).await,
    }
}

fn signed_out_page(st: &AppState, text: &str) -> Response {
    let demo = st.vault.instance_kind() == carevault_core::InstanceKind::Demo;
    signed_out(bare_page(
        StatusCode::OK,
        "Signed out",
        demo,
        html! {
            h1 { "You are signed out" }
            p role="status" { (text) }
            p { a class="button" href="/ui/signin" { "Sign in again" } }
        },
    ))
}

/// `POST /ui/account/sessions/{sid}/end`: ends one of the user's sessions (this one signs out).
async fn end_session(ui: Ui, State(st): State<AppState>, Path(sid): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    let this = ui.actor.session_public_id() == Some(sid.as_str());
    match st.vault.end_my_sessions(&ui.actor, Some(&sid)).await {
        Ok(()) if this => signed_out_page(&st, "You ended this session. This browser no longer holds anything of it."),
        Ok(()) => Redirect::to("/ui/account?notice=session-ended").into_response(),
        Err(e) => failed(&ui, &st, Sect::Sessions, &e).await,
    }
}

/// `POST /ui/account/sessions/end-all`: "Sign out everywhere", this session included.
async fn end_all_sessions(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.end_my_sessions(&ui.actor, None).await {
        Ok(()) => {
            signed_out_page(&st, "Every session of your account has ended, on every device. This browser no longer holds anything of it.")
        }
        Err(e) => failed(&ui, &st, Sect::Sessions, &e).await,
    }
}

/// `POST /ui/account/passkeys/{pid}/rename`
async fn rename_passkey(ui: Ui, State(st): State<AppState>, Path(pid): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match st.vault.rename_passkey(&ui.actor, &pid, f.get("name")).await {
        Ok(()) => Redirect::to("/ui/account?notice=passkey-renamed").into_response(),
        Err(CoreError::Invalid(i)) => {
            let body = error_msg(&format!("The new name was not accepted: {}", i.message));
            account_page(&ui, &st, StatusCode::BAD_REQUEST, None, Some(Flash { sect: Sect::Passkeys, body })).await
        }
        Err(e) => failed(&ui, &st, Sect::Passkeys, &e).await,
    }
}

/// `POST /ui/account/passkeys/{pid}/revoke`
async fn revoke_passkey(ui: Ui, State(st): State<AppState>, Path(pid): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.revoke_passkey(&ui.actor, &pid).await {
        Ok(()) => Redirect::to("/ui/account?notice=passkey-removed").into_response(),
        Err(e) => failed(&ui, &st, Sect::Passkeys, &e).await,
    }
}
