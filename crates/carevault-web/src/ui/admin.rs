//! Administration: staff accounts, their role assignments, deactivation, MFA resets, their
//! sessions, and the roles. The core authorizes and audits every call; the page only hides what
//! the actor's permissions would refuse anyway.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{CoreError, RoleView, ScopeInput, UnitView, UserView};
use carevault_domain::Permission;
use maud::{html, Markup};
use serde::Deserialize;

use super::account::reauth_needed;
use super::{error_page, page, page_status, post_form, ui_form, when, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(users))
        .route("/admin/users", post(create_user))
        .route("/admin/users/{id}", get(user))
        .route("/admin/users/{id}/deactivate", post(deactivate))
        .route("/admin/users/{id}/reactivate", post(reactivate))
        .route("/admin/users/{id}/mfa-reset", post(mfa_reset))
        .route("/admin/users/{id}/assignments", post(add_assignment))
        .route("/admin/users/{id}/assignments/{aid}/remove", post(remove_assignment))
        .route("/admin/users/{id}/sessions/end", post(end_sessions))
        .route("/admin/roles", get(roles))
}

#[derive(Deserialize, Default)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
}

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn notice_of(q: QueryResult<NoticeQuery>) -> Option<String> {
    q.ok().and_then(|Query(q)| q.notice)
}

/// The home page's administration box: a way to the accounts for those who may read them.
pub(crate) async fn home_section(ui: &Ui, _st: &AppState) -> Option<Markup> {
    if !ui.can(Permission::UserRead) {
        return None;
    }
    Some(html! {
        section aria-labelledby="home-admin-h" {
            h2 id="home-admin-h" { "Administration" }
            p { a href="/ui/admin" { "Staff accounts" } " · " a href="/ui/admin/roles" { "Roles" } }
        }
    })
}

fn error_msg(text: &str) -> Markup {
    html! { p class="error" role="alert" { (text) } }
}

/// A unit's name, or its id when it is unknown.
fn unit_name<'a>(units: &'a [UnitView], kind: &str, id: &'a str) -> &'a str {
    units.iter().find(|u| u.kind == kind && u.id == id).map_or(id, |u| u.name.as_str())
}

/// Where an assignment applies, in words.
fn scope_words(units: &[UnitView], org: &str, loc: Option<&str>, dep: Option<&str>) -> String {
    match (dep, loc) {
        (Some(d), _) => format!("Department {}", unit_name(units, "department", d)),
        (None, Some(l)) => format!("Location {}", unit_name(units, "location", l)),
        (None, None) => format!("Organization {}", unit_name(units, "organization", org)),
    }
}

fn active_badge(active: bool) -> Markup {
    html! {
        @if active { span class="badge ok" { "active" } } @else { span class="badge bad" { "deactivated" } }
    }
}

// ----- the user list and "Add user" -----

/// What the "Add user" form keeps after a refusal.
#[derive(Default)]
struct NewUserInput {
    username: String,
    role: String,
    organization: String,
}

fn add_user_form(ui: &Ui, roles: &[RoleView], orgs: &[&UnitView], input: &NewUserInput, error: Option<&Markup>) -> Markup {
    let org_selected = if input.organization.is_empty() { ui.actor.organization_id().to_string() } else { input.organization.clone() };
    html! {
        section aria-labelledby="add-user-h" {
            h2 id="add-user-h" { "Add user" }
            @if let Some(e) = error { (e) }
            (post_form(ui, "/ui/admin/users", "stack", html! {
                label for="new-username" { "Username" }
                input id="new-username" name="username" type="text" autocomplete="off" required value=(input.username);
                label for="new-role" { "Role" }
                select id="new-role" name="role" required {
                    @for r in roles {
                        option value=(r.name) selected[r.name == input.role] { (r.name) " — " (r.description) }
                    }
                }
                @if orgs.len() > 1 {
                    label for="new-org" { "Organization" }
                    select id="new-org" name="organization" required {
                        @for o in orgs {
                            option value=(o.id) selected[o.id == org_selected] { (o.name) }
                        }
                    }
                } @else {
                    input type="hidden" name="organization" value=(orgs.first().map_or(org_selected.as_str(), |o| o.id.as_str()));
                }
                label for="new-password" { "Initial password" }
                input id="new-password" name="password" type="password" autocomplete="new-password" required aria-describedby="new-password-hint";
                p class="hint" id="new-password-hint" {
                    "Give it to the person yourself. At their first sign-in they set up their authenticator app and get recovery codes."
                }
                button type="submit" { "Add user" }
            }))
        }
    }
}

async fn users_page(ui: &Ui, st: &AppState, status: StatusCode, form: (NewUserInput, Option<Markup>)) -> Response {
    let list = match st.vault.list_users(&ui.actor).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(ui), &e),
    };
    let units = st.vault.units().await.unwrap_or_default();
    let may_add = ui.can(Permission::UserCreate) && ui.can(Permission::RoleAssign);
    let roles = if may_add { st.vault.list_roles(&ui.actor).await.unwrap_or_default() } else { Vec::new() };
    let orgs: Vec<&UnitView> = units.iter().filter(|u| u.kind == "organization").collect();
    let content = html! {
        h1 { "Users" }
        p { a href="/ui/admin/roles" { "Roles and their permissions" } }
        div class="table-wrap" {
            table {
                caption { "Staff accounts" }
                thead { tr { th scope="col" { "Username" } th scope="col" { "Roles" } th scope="col" { "Status" } th scope="col" { "Last sign-in" } } }
                tbody {
                    @for u in &list {
                        tr {
                            td { a href=(format!("/ui/admin/users/{}", u.id)) { (u.username) } }
                            td {
                                @if u.assignments.is_empty() { "none" }
                                @for (i, a) in u.assignments.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (a.role)
                                    @if a.location_id.is_some() || a.department_id.is_some() {
                                        " (" (scope_words(&units, &a.organization_id, a.location_id.as_deref(), a.department_id.as_deref())) ")"
                                    }
                                }
                            }
                            td { (active_badge(u.active)) }
                            td { @match u.last_login_at { Some(t) => (when(t)), None => "never" } }
                        }
                    }
                }
            }
        }
        @if may_add { (add_user_form(ui, &roles, &orgs, &form.0, form.1.as_ref())) }
    };
    page_status(ui, status, "Users", content)
}

/// `GET /ui/admin`
async fn users(ui: Ui, State(st): State<AppState>) -> Response {
    users_page(&ui, &st, StatusCode::OK, (NewUserInput::default(), None)).await
}

/// `POST /ui/admin/users`
async fn create_user(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let input = NewUserInput {
        username: f.get("username").to_string(),
        role: f.get("role").to_string(),
        organization: f.opt("organization").unwrap_or(ui.actor.organization_id()).to_string(),
    };
    match st.vault.create_user(&ui.actor, &input.username, &input.role, &input.organization, f.raw("password")).await {
        Ok(u) => page(
            &ui,
            "User added",
            html! {
                h1 { "User added" }
                p role="status" { "The account " strong { (u.username) } " was created with the role " strong { (u.role) } "." }
                @if u.approval_id.is_some() {
                    p class="notice" role="status" {
                        "This role reaches patient data, the audit log or security controls: the account can sign in only once a privacy or security officer other than you approves it. "
                        "The officers were alerted."
                    }
                }
                h2 { "Invitation code" }
                p { "Shown once. Give it to them in person or by another channel than the password: at their first sign-in they need both to set up their own authenticator." }
                p { code id="invitation" class="invitation" { (u.invitation.code) } }
                p class="hint" { "Valid until " (carevault_core::format_instant(u.invitation.expires_at * 1_000_000)) " (UTC), once. carevault never shows anyone else their authenticator key." }
                p { a class="button" href=(format!("/ui/admin/users/{}", u.id)) { "Open " (u.username) } " " a href="/ui/admin" { "Back to users" } }
            },
        ),
        Err(e @ (CoreError::Invalid(_) | CoreError::Conflict(_))) => {
            let status = crate::error::status_of(&e, false);
            let msg = match &e {
                CoreError::Invalid(i) => format!("The user was not added: {}", i.message),
                CoreError::Conflict(m) => format!("The user was not added: {m}"),
                _ => String::new(),
            };
            users_page(&ui, &st, status, (input, Some(error_msg(&msg)))).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- one user -----

/// Fields of the "Add assignment" form kept after a refusal.
#[derive(Default)]
struct AssignInput {
    role: String,
    scope: String,
    expires: String,
}

enum Flash {
    None,
    Assign(Markup),
    Mfa(Markup),
}

/// The user `id` and every user the actor may see (for names).
async fn find_user(ui: &Ui, st: &AppState, id: &str) -> Result<(UserView, Vec<UserView>), CoreError> {
    let list = st.vault.list_users(&ui.actor).await?;
    let u = list.iter().find(|u| u.id == id).cloned().ok_or_else(|| CoreError::NotFound { resource: format!("User/{id}") })?;
    Ok((u, list))
}

/// An audit name (`user:<id>`, `system:<job>`) in words.
fn who(list: &[UserView], name: &str) -> String {
    match name.strip_prefix("user:").and_then(|id| list.iter().find(|u| u.id == id)) {
        Some(u) => u.username.clone(),
        None => name.to_string(),
    }
}

fn scope_options(units: &[UnitView], org: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for u in units {
        let (value, label) = match u.kind.as_str() {
            "organization" if u.id == org => (format!("organization:{}", u.id), format!("Organization {} (everywhere)", u.name)),
            "location" if u.organization_id.as_deref() == Some(org) => (format!("location:{}", u.id), format!("Location {}", u.name)),
            "department" if u.organization_id.as_deref() == Some(org) => {
                let at = u.location_id.as_deref().map(|l| format!(" at {}", unit_name(units, "location", l))).unwrap_or_default();
                (format!("department:{}", u.id), format!("Department {}{at}", u.name))
            }
            _ => continue,
        };
        out.push((value, label));
    }
    out
}

async fn user_page(
    ui: &Ui,
    st: &AppState,
    id: &str,
    status: StatusCode,
    notice: Option<&str>,
    flash: Flash,
    input: AssignInput,
) -> Response {
    let (u, all) = match find_user(ui, st, id).await {
        Ok(v) => v,
        Err(e) => return error_page(Some(ui), &e),
    };
    let units = st.vault.units().await.unwrap_or_default();
    let may_assign = ui.can(Permission::RoleAssign);
    let roles = if may_assign { st.vault.list_roles(&ui.actor).await.unwrap_or_default() } else { Vec::new() };
    let sessions = if ui.can(Permission::SessionManage) { Some(st.vault.user_sessions(&ui.actor, id).await) } else { None };
    let base = format!("/ui/admin/users/{}", u.id);
    let scopes = scope_options(&units, &u.organization_id);
    let is_self = u.id == ui.actor.user_id().as_str();
    let content = html! {
        h1 { "User " (u.username) }
        @if let Some(n) = notice { p class="notice" role="status" { (n) } }
        p { a href="/ui/admin" { "Back to users" } }
        dl class="facts" {
            dt { "Username" } dd { (u.username) }
            dt { "Organization" } dd { (unit_name(&units, "organization", &u.organization_id)) }
            dt { "Status" } dd { (active_badge(u.active)) @if let Some(t) = u.deactivated_at { " since " (when(t)) } }
            dt { "Created" } dd { (when(u.created_at)) }
            dt { "Last sign-in" } dd { @match u.last_login_at { Some(t) => (when(t)), None => "never" } }
        }

        section aria-labelledby="assign-h" {
            h2 id="assign-h" { "Role assignments" }
            @if let Flash::Assign(m) = &flash { (m) }
            @if u.assignments.is_empty() {
                p { "No role assignments: this account holds no permissions." }
            } @else {
                div class="table-wrap" {
                    table {
                        caption { "Roles of " (u.username) }
                        thead { tr {
                            th scope="col" { "Role" } th scope="col" { "Scope" } th scope="col" { "Expires" } th scope="col" { "Assigned by" }
                            @if may_assign { th scope="col" { "Remove" } }
                        } }
                        tbody {
                            @for a in &u.assignments {
                                tr {
                                    td { (a.role) }
                                    td { (scope_words(&units, &a.organization_id, a.location_id.as_deref(), a.department_id.as_deref())) }
                                    td { @match a.expires_at { Some(t) => (when(t)), None => "no expiry" } }
                                    td { (who(&all, &a.created_by)) " on " (when(a.created_at)) }
                                    @if may_assign {
                                        td {
                                            (post_form(ui, &format!("{base}/assignments/{}/remove", a.id), "inline", html! {
                                                button type="submit" class="danger" aria-label=(format!("Remove role {}", a.role)) { "Remove" }
                                            }))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if may_assign && !is_self {
                h3 { "Add assignment" }
                (post_form(ui, &format!("{base}/assignments"), "stack", html! {
                    label for="assign-role" { "Role" }
                    select id="assign-role" name="role" required {
                        @for r in &roles { option value=(r.name) selected[r.name == input.role] { (r.name) } }
                    }
                    label for="assign-scope" { "Scope" }
                    select id="assign-scope" name="scope" required {
                        @for (v, l) in &scopes { option value=(v) selected[*v == input.scope] { (l) } }
                    }
                    label for="assign-expires" { "Expires" }
                    input id="assign-expires" name="expires" type="date" value=(input.expires) aria-describedby="assign-expires-hint";
                    p class="hint" id="assign-expires-hint" { "Optional. The role ends at the end of this day (UTC). Adding a role needs a sign-in within the last 5 minutes." }
                    button type="submit" { "Add assignment" }
                }))
            }
        }

        @if ui.can(Permission::UserDeactivate) || ui.can(Permission::UserMfaReset) {
            section aria-labelledby="security-h" {
                h2 id="security-h" { "Account security" }
                @if let Flash::Mfa(m) = &flash { (m) }
                div class="actions" {
                    @if ui.can(Permission::UserDeactivate) && !is_self {
                        @if u.active {
                            (post_form(ui, &format!("{base}/deactivate"), "inline", html! { button type="submit" class="danger" { "Deactivate" } }))
                        } @else {
                            (post_form(ui, &format!("{base}/reactivate"), "inline", html! { button type="submit" { "Reactivate" } }))
                        }
                    }
                    @if ui.can(Permission::UserMfaReset) && !is_self {
                        (post_form(ui, &format!("{base}/mfa-reset"), "inline", html! { button type="submit" class="danger" { "Reset MFA" } }))
                    }
                }
                p class="hint" {
                    "Deactivating ends every session at once. Resetting MFA replaces the authenticator key, deletes recovery codes and passkeys and ends every session; "
                    "the user sets up a new authenticator at their next sign-in. A reset needs your own sign-in within the last 5 minutes."
                }
                @if is_self { p class="hint" { "Another administrator must change your own account's status or second factor." } }
            }
        }

        @if let Some(s) = &sessions {
            section aria-labelledby="sessions-h" {
                h2 id="sessions-h" { "Sessions" }
                @match s {
                    Ok(list) if list.is_empty() => { p { "No open sessions." } }
                    Ok(list) => {
                        div class="table-wrap" {
                            table {
                                caption { "Open sessions of " (u.username) }
                                thead { tr { th scope="col" { "Started" } th scope="col" { "Last seen" } th scope="col" { "Expires" } th scope="col" { "IP address" } } }
                                tbody {
                                    @for x in list {
                                        tr {
                                            td { (when(x.created_at)) }
                                            td { (when(x.last_seen_at)) }
                                            td { (when(x.expires_at)) }
                                            td { (x.source_ip.as_deref().unwrap_or("unknown")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => { (error_msg(&super::explain(e).1)) }
                }
                (post_form(ui, &format!("{base}/sessions/end"), "inline", html! { button type="submit" class="danger" { "End all sessions" } }))
            }
        }
    };
    page_status(ui, status, &format!("User {}", u.username), content)
}

fn user_notice(n: &str) -> Option<&'static str> {
    match n {
        "deactivated" => Some("The account was deactivated and its sessions ended."),
        "reactivated" => Some("The account was reactivated."),
        "assignment-added" => Some("Role assigned."),
        "assignment-removed" => Some("Role assignment removed; the user's sessions were ended."),
        "sessions-ended" => Some("Every session of this user was ended."),
        _ => None,
    }
}

/// `GET /ui/admin/users/{id}`
async fn user(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, q: QueryResult<NoticeQuery>) -> Response {
    let notice = notice_of(q).and_then(|n| user_notice(&n));
    user_page(&ui, &st, &id, StatusCode::OK, notice, Flash::None, AssignInput::default()).await
}

/// `POST /ui/admin/users/{id}/deactivate`
async fn deactivate(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.deactivate_user(&ui.actor, &id).await {
        Ok(()) => Redirect::to(&format!("/ui/admin/users/{id}?notice=deactivated")).into_response(),
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `POST /ui/admin/users/{id}/reactivate`
async fn reactivate(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.reactivate_user(&ui.actor, &id).await {
        Ok(()) => Redirect::to(&format!("/ui/admin/users/{id}?notice=reactivated")).into_response(),
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `POST /ui/admin/users/{id}/mfa-reset`: the new key is not shown; the user enrolls again.
async fn mfa_reset(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.reset_mfa(&ui.actor, &id).await {
        Ok(reset) => {
            let name = find_user(&ui, &st, &id).await.map(|(u, _)| u.username).unwrap_or_else(|_| id.clone());
            page(
                &ui,
                "MFA reset",
                html! {
                    h1 { "MFA reset for " (name) }
                    p role="status" {
                        "The second factors of " strong { (name) } " were reset: the authenticator key was replaced, recovery codes and passkeys were deleted and every session was ended. "
                        "They set up their authenticator app again at their next sign-in with their password and this invitation code (shown once; give it to them in person):"
                    }
                    p { code id="invitation" class="invitation" { (reset.invitation.code) } }
                    p class="hint" { "Valid until " (carevault_core::format_instant(reset.invitation.expires_at * 1_000_000)) " (UTC), once." }
                    p { "A security alert was raised for this reset." }
                    p { a class="button" href=(format!("/ui/admin/users/{id}")) { "Back to " (name) } }
                },
            )
        }
        Err(CoreError::ReauthRequired) => {
            let next = format!("/ui/admin/users/{id}");
            user_page(&ui, &st, &id, StatusCode::UNAUTHORIZED, None, Flash::Mfa(reauth_needed(&next)), AssignInput::default()).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// Unix seconds of the last second of `YYYY-MM-DD` (UTC), when an assignment ends.
fn end_of_day(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u8 = it.next()?.parse().ok()?;
    let d: u8 = it.next()?.parse().ok()?;
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    Some(date.with_hms(23, 59, 59).ok()?.assume_utc().unix_timestamp())
}

/// `POST /ui/admin/users/{id}/assignments`
async fn add_assignment(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let input = AssignInput { role: f.get("role").to_string(), scope: f.get("scope").to_string(), expires: f.get("expires").to_string() };
    let bad = |msg: String| Flash::Assign(error_msg(&msg));
    let expires = match f.opt("expires") {
        None => None,
        Some(s) => match end_of_day(s) {
            Some(t) => Some(t),
            None => {
                return user_page(&ui, &st, &id, StatusCode::BAD_REQUEST, None, bad("Expires must be a date (YYYY-MM-DD).".into()), input)
                    .await
            }
        },
    };
    let units = st.vault.units().await.unwrap_or_default();
    let unit = input.scope.split_once(':').and_then(|(k, v)| units.iter().find(|u| u.kind == k && u.id == v));
    let scope = match unit {
        Some(u) if u.kind == "organization" => ScopeInput { organization_id: u.id.clone(), location_id: None, department_id: None },
        Some(u) if u.kind == "location" => ScopeInput {
            organization_id: u.organization_id.clone().unwrap_or_default(),
            location_id: Some(u.id.clone()),
            department_id: None,
        },
        Some(u) if u.kind == "department" => ScopeInput {
            organization_id: u.organization_id.clone().unwrap_or_default(),
            location_id: u.location_id.clone(),
            department_id: Some(u.id.clone()),
        },
        _ => {
            return user_page(&ui, &st, &id, StatusCode::BAD_REQUEST, None, bad("Choose a scope from the list.".into()), input).await;
        }
    };
    match st.vault.add_assignment(&ui.actor, &id, &input.role, scope, expires).await {
        Ok(_) => Redirect::to(&format!("/ui/admin/users/{id}?notice=assignment-added")).into_response(),
        Err(CoreError::ReauthRequired) => {
            let next = format!("/ui/admin/users/{id}");
            user_page(&ui, &st, &id, StatusCode::UNAUTHORIZED, None, Flash::Assign(reauth_needed(&next)), input).await
        }
        Err(CoreError::Invalid(i)) => {
            let msg = format!("The role was not assigned: {}", i.message);
            user_page(&ui, &st, &id, StatusCode::BAD_REQUEST, None, bad(msg), input).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `POST /ui/admin/users/{id}/assignments/{aid}/remove`
async fn remove_assignment(
    ui: Ui,
    State(st): State<AppState>,
    Path((id, aid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.remove_assignment(&ui.actor, &aid).await {
        Ok(()) => Redirect::to(&format!("/ui/admin/users/{id}?notice=assignment-removed")).into_response(),
        Err(CoreError::ReauthRequired) => {
            let next = format!("/ui/admin/users/{id}");
            user_page(&ui, &st, &id, StatusCode::UNAUTHORIZED, None, Flash::Assign(reauth_needed(&next)), AssignInput::default()).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `POST /ui/admin/users/{id}/sessions/end`
async fn end_sessions(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    match st.vault.end_user_sessions(&ui.actor, &id).await {
        Ok(()) => Redirect::to(&format!("/ui/admin/users/{id}?notice=sessions-ended")).into_response(),
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- roles -----

/// `GET /ui/admin/roles`
async fn roles(ui: Ui, State(st): State<AppState>) -> Response {
    let list = match st.vault.list_roles(&ui.actor).await {
        Ok(l) => l,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let content = html! {
        h1 { "Roles" }
        p { a href="/ui/admin" { "Back to users" } }
        div class="table-wrap" {
            table {
                caption { "Roles and what they allow" }
                thead { tr { th scope="col" { "Role" } th scope="col" { "Description" } th scope="col" { "Permissions" } th scope="col" { "Purposes of use" } } }
                tbody {
                    @for r in &list {
                        tr {
                            th scope="row" { (r.name) @if !r.builtin { " " span class="badge" { "custom" } } }
                            td { (r.description) }
                            td {
                                ul {
                                    @for p in &r.permissions {
                                        li {
                                            code { (p) }
                                            @if let Some(perm) = Permission::parse(p) { " — " (perm.description()) }
                                        }
                                    }
                                }
                            }
                            td { (r.purposes.join(", ")) }
                        }
                    }
                }
            }
        }
    };
    page(&ui, "Roles", content)
}
