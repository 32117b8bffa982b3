//! `/api/v1` administration and account endpoints: users, roles, assignments, grants, sessions,
//! care teams, sensitive flags, placement, break-glass and its review queue, alerts, audit.
//! Every handler authenticates, then calls the core, which authorizes and audits. Errors are
//! problem+json.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use carevault_core::{Actor, GrantRequest, ScopeInput};
use carevault_domain::PurposeOfUse;
use serde::Deserialize;
use serde_json::json;

use crate::api::{json_body, json_response};
use crate::error::{problem, ApiError};
use crate::extract::{purpose, session_token, Peer};
use crate::server::AppState;

async fn actor(st: &AppState, ctx: &carevault_core::RequestContext, headers: &HeaderMap) -> Result<Actor, Response> {
    st.vault.authenticate(ctx, session_token(headers).as_deref()).await.map_err(|e| ApiError(e).into_response())
}

#[allow(clippy::result_large_err)] // the error is the response itself, built once
fn purpose_of(headers: &HeaderMap, a: &Actor) -> Result<PurposeOfUse, Response> {
    purpose(headers, a).map_err(|e| problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", &e.to_string()))
}

fn ok<T: serde::Serialize>(r: Result<T, carevault_core::CoreError>) -> Response {
    match r {
        Ok(v) => json_response(StatusCode::OK, serde_json::to_value(v).unwrap_or_default()),
        Err(e) => ApiError(e).into_response(),
    }
}

fn done(r: Result<(), carevault_core::CoreError>) -> Response {
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// A query string that does not fit gets a problem+json answer, like every other input.
macro_rules! query {
    ($q:ident) => {
        match $q {
            Ok(Query(q)) => q,
            Err(e) => return problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", &format!("query string: {}", e.body_text())),
        }
    };
}

/// Authenticates, then runs `$body` with `$a` bound to the actor.
macro_rules! with_actor {
    ($st:ident, $ctx:ident, $headers:ident, |$a:ident| $body:expr) => {
        match actor(&$st, &$ctx, &$headers).await {
            Ok($a) => $body,
            Err(r) => r,
        }
    };
}

/// Parses the JSON body or answers with the problem.
macro_rules! body {
    ($headers:ident, $body:ident) => {
        match json_body(&$headers, $body).await {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
}

// ----- own account -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReauthBody {
    password: String,
    code: String,
}

pub(crate) async fn reauth(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: ReauthBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| done(st.vault.reauthenticate(&a, &b.password, &b.code).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordBody {
    current_password: String,
    new_password: String,
}

pub(crate) async fn change_password(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: PasswordBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| done(st.vault.change_password(&a, &b.current_password, &b.new_password).await))
}

pub(crate) async fn my_sessions(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.my_sessions(&a).await))
}

pub(crate) async fn end_my_session(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.end_my_sessions(&a, Some(&id)).await))
}

/// Sign out everywhere: every session of the account ends, this one included.
pub(crate) async fn end_all_my_sessions(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| {
        let r = done(st.vault.end_my_sessions(&a, None).await);
        crate::api::signed_out(r)
    })
}

pub(crate) async fn recovery_codes(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.generate_recovery_codes(&a).await.map(|codes| json!({"codes": codes}))))
}

// ----- users -----

pub(crate) async fn list_users(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.list_users(&a).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserBody {
    username: String,
    password: String,
    role: String,
    organization_id: String,
}

pub(crate) async fn create_user(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: NewUserBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| {
        match st.vault.create_user(&a, &b.username, &b.role, &b.organization_id, &b.password).await {
            // No second-factor secret: the holder enrols their own authenticator at first
            // sign-in with the password and this invitation (shown once, for delivery out of band).
            Ok(u) => json_response(
                StatusCode::CREATED,
                json!({"id": u.id, "username": u.username, "role": u.role, "organization_id": u.organization_id,
                       "invitation": u.invitation.code, "invitation_expires_at": u.invitation.expires_at,
                       "status": if u.approval_id.is_some() { "pending-approval" } else { "active" },
                       "approval_id": u.approval_id}),
            ),
            Err(e) => ApiError(e).into_response(),
        }
    })
}

pub(crate) async fn deactivate_user(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.deactivate_user(&a, &id).await))
}

pub(crate) async fn reactivate_user(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.reactivate_user(&a, &id).await))
}

pub(crate) async fn reset_mfa(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st
        .vault
        .reset_mfa(&a, &id)
        .await
        .map(|r| json!({"user_id": r.user_id, "invitation": r.invitation.code, "invitation_expires_at": r.invitation.expires_at}))))
}

// ----- approvals (separation of duties) -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalQuery {
    state: Option<String>,
}

/// `GET /api/v1/approvals?state=pending|approved|rejected`
pub(crate) async fn approvals(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    q: Result<Query<ApprovalQuery>, QueryRejection>,
) -> Response {
    let q = query!(q);
    with_actor!(st, ctx, headers, |a| ok(st.vault.approvals(&a, q.state.as_deref().unwrap_or("pending")).await))
}

/// `POST /api/v1/approvals/{id}/approve`
pub(crate) async fn approve(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.approve(&a, &id).await))
}

/// `POST /api/v1/approvals/{id}/reject`
pub(crate) async fn reject(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.reject(&a, &id).await))
}

pub(crate) async fn user_sessions(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.user_sessions(&a, &id).await))
}

pub(crate) async fn end_user_sessions(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.end_user_sessions(&a, &id).await))
}

// ----- roles, assignments, grants -----

pub(crate) async fn list_roles(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.list_roles(&a).await))
}

/// The permission catalogue (ids, descriptions, operations), for building custom roles.
pub(crate) async fn permissions(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |_a| {
        let list: Vec<serde_json::Value> = carevault_domain::Permission::ALL
            .iter()
            .map(|p| json!({"id": p.id(), "description": p.description(), "operations": p.operations().iter().map(|o| o.id()).collect::<Vec<_>>()}))
            .collect();
        json_response(StatusCode::OK, json!(list))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    description: String,
    permissions: Vec<String>,
    purposes: Vec<String>,
}

pub(crate) async fn put_role(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let b: RoleBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| ok(st.vault.put_custom_role(&a, &name, &b.description, &b.permissions, &b.purposes).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignmentBody {
    user_id: String,
    role: String,
    #[serde(flatten)]
    scope: ScopeInput,
    #[serde(default)]
    expires_at: Option<i64>,
}

pub(crate) async fn add_assignment(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: AssignmentBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match st.vault.add_assignment(&a, &b.user_id, &b.role, b.scope.clone(), b.expires_at).await {
        Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
        Err(e) => ApiError(e).into_response(),
    })
}

pub(crate) async fn remove_assignment(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.remove_assignment(&a, &id).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserFilter {
    user_id: Option<String>,
}

pub(crate) async fn list_grants(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    q: Result<Query<UserFilter>, QueryRejection>,
) -> Response {
    let q = query!(q);
    with_actor!(st, ctx, headers, |a| ok(st.vault.list_grants(&a, q.user_id.as_deref()).await))
}

pub(crate) async fn add_grant(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: GrantRequest = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match st.vault.add_grant(&a, &b).await {
        Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
        Err(e) => ApiError(e).into_response(),
    })
}

pub(crate) async fn revoke_grant(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.revoke_grant(&a, &id).await))
}

// ----- patients: care team, flags, placement, break-glass -----

pub(crate) async fn care_team(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => ok(st.vault.care_team(&a, p, &id).await),
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CareTeamBody {
    user_id: String,
    relation: String,
    #[serde(default)]
    ends_at: Option<i64>,
}

pub(crate) async fn add_care_team(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: CareTeamBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => done(st.vault.add_care_team_member(&a, p, &id, &b.user_id, &b.relation, b.ends_at).await),
        Err(r) => r,
    })
}

pub(crate) async fn end_care_team(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path((id, user, relation)): Path<(String, String, String)>,
) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => done(st.vault.end_care_team_member(&a, p, &id, &user, &relation).await),
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagsBody {
    categories: Vec<String>,
}

pub(crate) async fn set_flags(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: FlagsBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => ok(st.vault.set_patient_flags(&a, p, &id, &b.categories).await.map(|c| json!({"categories": c}))),
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlacementBody {
    #[serde(default)]
    location_id: Option<String>,
    #[serde(default)]
    department_id: Option<String>,
}

pub(crate) async fn set_placement(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: PlacementBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => done(st.vault.set_patient_placement(&a, p, &id, b.location_id.as_deref(), b.department_id.as_deref()).await),
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassBody {
    reason: String,
    #[serde(default)]
    reason_text: String,
}

pub(crate) async fn break_glass(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: BreakGlassBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match st.vault.break_glass(&a, &id, &b.reason, &b.reason_text).await {
        Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
        Err(e) => ApiError(e).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateFilter {
    state: Option<String>,
}

pub(crate) async fn break_glass_queue(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    q: Result<Query<StateFilter>, QueryRejection>,
) -> Response {
    let q = query!(q);
    with_actor!(st, ctx, headers, |a| ok(st.vault.break_glass_queue(&a, q.state.as_deref().unwrap_or("open")).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewBody {
    outcome: String,
    #[serde(default)]
    note: String,
}

pub(crate) async fn close_review(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: ReviewBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| done(st.vault.close_break_glass_review(&a, &id, &b.outcome, &b.note).await))
}

// ----- alerts and audit -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertFilter {
    category: String,
    #[serde(default)]
    all: Option<bool>,
}

pub(crate) async fn alerts(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    q: Result<Query<AlertFilter>, QueryRejection>,
) -> Response {
    let q = query!(q);
    with_actor!(st, ctx, headers, |a| ok(st.vault.alerts(&a, &q.category, !q.all.unwrap_or(false)).await))
}

pub(crate) async fn close_alert(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.close_alert(&a, &id).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditFilter {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    before: Option<i64>,
}

/// `?after=` reads forward (oldest first); any of `user`, `patient`, `action`, `from`, `to`,
/// `before` searches instead (newest first, at most 500 a page).
pub(crate) async fn audit_events(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    q: Result<Query<AuditFilter>, QueryRejection>,
) -> Response {
    let q = query!(q);
    let search = q.user.is_some() || q.patient.is_some() || q.action.is_some() || q.from.is_some() || q.to.is_some() || q.before.is_some();
    if search && q.after.is_none() {
        let aq = carevault_core::AuditQuery {
            user: q.user,
            patient: q.patient,
            action: q.action,
            from: q.from,
            to: q.to,
            before: q.before,
            limit: q.limit,
        };
        return with_actor!(st, ctx, headers, |a| ok(st.vault.audit_search(&a, &aq).await));
    }
    with_actor!(st, ctx, headers, |a| ok(st.vault.audit_events(&a, q.after.unwrap_or(0), q.limit.unwrap_or(100)).await))
}

pub(crate) async fn audit_verify(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| match st.vault.verify_audit_as(&a).await {
        Ok(r) => json_response(
            StatusCode::OK,
            json!({
                "intact": r.intact(),
                "records": r.records,
                "root_hash": r.root_hash,
                "checkpoints_in_database": r.checkpoints_in_database,
                "checkpoints_in_file": r.checkpoints_in_file,
                "tree_heads_checked": r.tree_heads,
                "failures": r.failures.iter().map(|f| json!({"seq": f.seq, "message": f.message})).collect::<Vec<_>>(),
                "notes": r.notes,
            }),
        ),
        Err(e) => ApiError(e).into_response(),
    })
}

/// The recovery-code second factor (instead of TOTP).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

pub(crate) async fn mfa_recovery(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: CodeBody = body!(headers, body);
    let token = session_token(&headers);
    match st.vault.verify_recovery_code(&ctx, token.as_deref(), &b.code).await {
        Ok(g) => crate::api::grant_response(g),
        Err(e) => ApiError(e).into_response(),
    }
}

// ----- passkeys -----

fn challenge(r: Result<carevault_core::PasskeyChallenge, carevault_core::CoreError>) -> Response {
    ok(r.map(|c| json!({"ceremony_id": c.ceremony_id, "options": c.options})))
}

pub(crate) async fn my_passkeys(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.my_passkeys(&a).await))
}

pub(crate) async fn passkey_register_start(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| challenge(st.vault.passkey_registration_start(&a).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeyRegisterBody {
    ceremony_id: String,
    name: String,
    credential: serde_json::Value,
}

pub(crate) async fn passkey_register_finish(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: PasskeyRegisterBody = body!(headers, body);
    let credential = b.credential.to_string().into_bytes();
    with_actor!(st, ctx, headers, |a| match st.vault.passkey_registration_finish(&a, &b.ceremony_id, &b.name, &credential).await {
        Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
        Err(e) => ApiError(e).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameBody {
    name: String,
}

pub(crate) async fn rename_passkey(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: NameBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| done(st.vault.rename_passkey(&a, &id, &b.name).await))
}

pub(crate) async fn revoke_passkey(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| done(st.vault.revoke_passkey(&a, &id).await))
}

pub(crate) async fn mfa_passkey_start(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    let token = session_token(&headers);
    challenge(st.vault.passkey_login_start(&ctx, token.as_deref()).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeyLoginBody {
    ceremony_id: String,
    credential: serde_json::Value,
}

pub(crate) async fn mfa_passkey_finish(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: PasskeyLoginBody = body!(headers, body);
    let token = session_token(&headers);
    match st.vault.passkey_login_finish(&ctx, token.as_deref(), &b.ceremony_id, b.credential.to_string().as_bytes()).await {
        Ok(g) => crate::api::grant_response(g),
        Err(e) => ApiError(e).into_response(),
    }
}

// ----- directory -----

pub(crate) async fn directory(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st
        .vault
        .directory(&a)
        .await
        .map(|(units, practitioners)| json!({"units": units, "practitioners": practitioners}))))
}

pub(crate) async fn add_practitioner(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: carevault_core::PractitionerRequest = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match st.vault.add_practitioner(&a, &b).await {
        Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
        Err(e) => ApiError(e).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AvailabilityBody {
    location_id: String,
    windows: Vec<carevault_domain::schedule::WeeklyWindow>,
}

/// `PUT /api/v1/practitioners/{id}/availability`: the weekly windows at one location.
pub(crate) async fn set_availability(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: AvailabilityBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| done(st.vault.set_availability(&a, &id, &b.location_id, &b.windows).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusBody {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/appointments/{id}/status`: check in, in room, fulfilled, cancelled (with a
/// reason), no-show.
pub(crate) async fn appointment_status(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: StatusBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => done(st.vault.set_appointment_status(&a, p, &id, &b.status, b.reason.as_deref()).await),
        Err(r) => r,
    })
}

/// `GET /api/v1/appointments/{id}/history`: every status change.
pub(crate) async fn appointment_history(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => ok(st.vault.appointment_history(&a, p, &id).await.map(|h| {
            h.into_iter()
                .map(|(at, from, to, reason)| json!({"at": carevault_core::format_instant(at), "from": from, "to": to, "reason": reason}))
                .collect::<Vec<_>>()
        })),
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClosureBody {
    #[serde(default)]
    practitioner_id: Option<String>,
    from: String,
    to: String,
    kind: String,
}

/// `POST /api/v1/locations/{id}/closures`: a holiday of the location or a practitioner's leave.
pub(crate) async fn add_closure(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: ClosureBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match st.vault.add_closure(&a, &id, b.practitioner_id.as_deref(), &b.from, &b.to, &b.kind).await {
        Ok(cid) => json_response(StatusCode::CREATED, json!({"id": cid})),
        Err(e) => ApiError(e).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RescheduleBody {
    /// An instant with a time zone (RFC 3339).
    start: String,
}

/// `POST /api/v1/appointments/{id}/reschedule`: moves a booked appointment to another free slot.
pub(crate) async fn reschedule(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: RescheduleBody = body!(headers, body);
    let start = match carevault_domain::schedule::parse_instant("start", &b.start) {
        Ok(s) => s,
        Err(e) => return ApiError(carevault_core::CoreError::Invalid(e)).into_response(),
    };
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => match st.vault.reschedule_appointment(&a, p, &id, start).await {
            Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
            Err(e) => ApiError(e).into_response(),
        },
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverbookBody {
    patient_id: String,
    practitioner_id: String,
    location_id: String,
    /// An instant with a time zone (RFC 3339).
    start: String,
    minutes: u16,
}

/// `POST /api/v1/appointments/overbook`: books inside availability even if the time is taken
/// (`appointment.overbook`).
pub(crate) async fn overbook(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: OverbookBody = body!(headers, body);
    let start = match carevault_domain::schedule::parse_instant("start", &b.start) {
        Ok(s) => s,
        Err(e) => return ApiError(carevault_core::CoreError::Invalid(e)).into_response(),
    };
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => match st.vault.overbook_appointment(&a, p, &b.patient_id, &b.practitioner_id, &b.location_id, start, b.minutes).await {
            Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
            Err(e) => ApiError(e).into_response(),
        },
        Err(r) => r,
    })
}

// ----- bookings with types, rooms and series; the waitlist -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BookBody {
    patient_id: String,
    practitioner_id: String,
    location_id: String,
    /// An instant with a time zone (RFC 3339).
    start: String,
    minutes: Option<u16>,
    type_id: Option<String>,
    room_id: Option<String>,
    /// A weekly series: every this many weeks (1 to 4) ...
    every_weeks: Option<u8>,
    /// ... this many times (2 to 52).
    count: Option<u16>,
}

/// `POST /api/v1/appointments`: books one appointment, or a weekly series (all or nothing).
pub(crate) async fn book(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: BookBody = body!(headers, body);
    let start = match carevault_domain::schedule::parse_instant("start", &b.start) {
        Ok(s) => s,
        Err(e) => return ApiError(carevault_core::CoreError::Invalid(e)).into_response(),
    };
    let req = carevault_core::BookRequest {
        patient_id: b.patient_id,
        practitioner_id: b.practitioner_id,
        location_id: b.location_id,
        start,
        minutes: b.minutes,
        type_id: b.type_id,
        room_id: b.room_id,
    };
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => {
            let booked = match (b.every_weeks, b.count) {
                (None, None) => st.vault.book(&a, p, &req, false).await.map(|v| vec![v]),
                (Some(w), Some(n)) => st.vault.book_series(&a, p, &req, w, n).await,
                _ => Err(carevault_core::CoreError::Invalid(carevault_domain::InputError::value(
                    "count",
                    "a series needs both every_weeks and count",
                ))),
            };
            match booked {
                Ok(list) => {
                    let series = list.first().and_then(|x| x.series_id.clone());
                    json_response(StatusCode::CREATED, json!({"series_id": series, "appointments": list}))
                }
                Err(e) => ApiError(e).into_response(),
            }
        }
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// pat, prov, maint or oth.
    reason: String,
}

/// `POST /api/v1/appointment-series/{id}/cancel`: cancels the future occurrences still booked.
pub(crate) async fn cancel_series(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: CancelBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => match st.vault.cancel_series(&a, p, &id, &b.reason).await {
            Ok(n) => json_response(StatusCode::OK, json!({"cancelled": n})),
            Err(e) => ApiError(e).into_response(),
        },
        Err(r) => r,
    })
}

pub(crate) async fn appointment_types(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| ok(st.vault.appointment_types(&a).await))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypeBody {
    organization_id: String,
    code: String,
    name: String,
    minutes: u16,
}

pub(crate) async fn add_appointment_type(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: TypeBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match st.vault.add_appointment_type(&a, &b.organization_id, &b.code, &b.name, b.minutes).await {
        Ok(t) => json_response(StatusCode::CREATED, serde_json::to_value(t).unwrap_or_default()),
        Err(e) => ApiError(e).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitlistBody {
    patient_id: String,
    practitioner_id: String,
    location_id: String,
    minutes: u16,
    /// Local dates (YYYY-MM-DD) in the location's zone, inclusive.
    from: String,
    to: String,
}

pub(crate) async fn waitlist_add(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    let b: WaitlistBody = body!(headers, body);
    let req = carevault_core::WaitlistRequest {
        patient_id: b.patient_id,
        practitioner_id: b.practitioner_id,
        location_id: b.location_id,
        minutes: b.minutes,
        from: b.from,
        to: b.to,
    };
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => match st.vault.waitlist_add(&a, p, &req).await {
            Ok(w) => json_response(StatusCode::CREATED, serde_json::to_value(w).unwrap_or_default()),
            Err(e) => ApiError(e).into_response(),
        },
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitlistFilter {
    location_id: String,
    status: Option<String>,
}

pub(crate) async fn waitlist(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    q: Result<Query<WaitlistFilter>, QueryRejection>,
) -> Response {
    let q = query!(q);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => ok(st.vault.waitlist(&a, p, &q.location_id, q.status.as_deref()).await),
        Err(r) => r,
    })
}

/// `POST /api/v1/waitlist/{id}/accept`: books the offered time for the waiting patient.
pub(crate) async fn waitlist_accept(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => match st.vault.answer_waitlist_offer(&a, p, &id, true).await {
            Ok(v) => json_response(StatusCode::CREATED, serde_json::to_value(v).unwrap_or_default()),
            Err(e) => ApiError(e).into_response(),
        },
        Err(r) => r,
    })
}

/// `POST /api/v1/waitlist/{id}/decline`: the patient keeps waiting; the time goes to the next.
pub(crate) async fn waitlist_decline(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => done(st.vault.answer_waitlist_offer(&a, p, &id, false).await.map(|_| ())),
        Err(r) => r,
    })
}

// ----- the chart: encounters, notes, diagnoses, documents, consents -----

/// A chart record as the API answers it: its FHIR resource.
fn fhir_of(r: Result<carevault_core::ChartRecord, carevault_core::CoreError>, created: bool) -> Response {
    match r {
        Ok(rec) => json_response(if created { StatusCode::CREATED } else { StatusCode::OK }, rec.to_fhir()),
        Err(e) => ApiError(e).into_response(),
    }
}

/// `POST /api/v1/encounters`: `{"appointment_id"}` or a walk-in `{"patient_id","practitioner_id","location_id"}`.
pub(crate) async fn start_encounter(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        appointment_id: Option<String>,
        patient_id: Option<String>,
        practitioner_id: Option<String>,
        location_id: Option<String>,
    }
    let b: B = body!(headers, body);
    let req = json!({"appointmentId": b.appointment_id, "patientId": b.patient_id, "practitionerId": b.practitioner_id, "locationId": b.location_id});
    let req = serde_json::Value::Object(
        req.as_object().map(|m| m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
    );
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.start_encounter(&a, p, &req).await, true),
        Err(r) => r,
    })
}

/// `POST /api/v1/encounters/{id}/finish`.
pub(crate) async fn finish_encounter(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.finish_encounter(&a, p, &id).await, false),
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    subjective: Option<String>,
    objective: Option<String>,
    assessment: Option<String>,
    plan: Option<String>,
    /// A user who must co-sign after the author signs.
    cosigner: Option<String>,
}

impl NoteBody {
    fn sections(&self) -> serde_json::Value {
        json!({"subjective": self.subjective, "objective": self.objective, "assessment": self.assessment, "plan": self.plan})
    }
}

/// `POST /api/v1/encounters/{id}/notes`: a draft SOAP note.
pub(crate) async fn create_note(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: NoteBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.create_note(&a, p, &id, &b.sections(), b.cosigner.as_deref()).await, true),
        Err(r) => r,
    })
}

/// `PUT /api/v1/notes/{id}`: replaces a draft's sections (a signed note is refused).
pub(crate) async fn update_note(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: NoteBody = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.update_note(&a, p, &id, &b.sections()).await, false),
        Err(r) => r,
    })
}

/// `POST /api/v1/notes/{id}/sign` and `/cosign`.
pub(crate) async fn sign_note(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.sign_note(&a, p, &id).await, false),
        Err(r) => r,
    })
}

pub(crate) async fn cosign_note(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.cosign_note(&a, p, &id).await, false),
        Err(r) => r,
    })
}

/// `POST /api/v1/notes/{id}/addenda` `{"text"}`: a signed addendum.
pub(crate) async fn add_addendum(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        text: String,
    }
    let b: B = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.add_addendum(&a, p, &id, &b.text).await, true),
        Err(r) => r,
    })
}

/// `POST /api/v1/encounters/{id}/conditions` `{"code","note"}`: a diagnosis (ICD-10-CM).
pub(crate) async fn add_condition(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        code: String,
        note: Option<String>,
    }
    let b: B = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => fhir_of(st.vault.add_condition(&a, p, &id, &b.code, b.note.as_deref()).await, true),
        Err(r) => r,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeQuery {
    q: String,
    limit: Option<usize>,
}

/// `GET /api/v1/icd10?q=`: ICD-10-CM codes by code prefix or description words.
pub(crate) async fn icd10_search(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    q: Result<Query<CodeQuery>, QueryRejection>,
) -> Response {
    let q = query!(q);
    with_actor!(st, ctx, headers, |a| match st.vault.search_icd10(&a, &q.q, q.limit.unwrap_or(20)).await {
        Ok(list) => json_response(
            StatusCode::OK,
            json!(list.into_iter().map(|(c, d, b)| json!({"code": c, "display": d, "billable": b})).collect::<Vec<_>>()),
        ),
        Err(e) => ApiError(e).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    title: String,
    encounter_id: Option<String>,
}

/// `POST /api/v1/patients/{id}/documents?title=..`: the body is the document itself, with its
/// Content-Type; the type is checked against the content.
pub(crate) async fn upload_document(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Response {
    let q = query!(q);
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => {
            // The route's limit is the configured document limit: a body is read whole or refused.
            let limit = st.vault.config().document_max_bytes;
            let content = match crate::extract::read_body(&headers, body, limit).await {
                Ok(b) => b.to_vec(),
                Err(e) => return problem(e.status(), "CV-INPUT-003", &e.reason()),
            };
            let declared = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
            let up = carevault_core::DocumentUpload {
                patient_id: id,
                encounter_id: q.encounter_id,
                title: q.title,
                content_type: declared,
                content,
            };
            match st.vault.upload_document(&a, p, up).await {
                Ok(rec) => json_response(StatusCode::CREATED, rec.document_to_fhir()),
                Err(e) => ApiError(e).into_response(),
            }
        }
        Err(r) => r,
    })
}

/// `GET /api/v1/consent-templates`.
pub(crate) async fn consent_templates(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    with_actor!(st, ctx, headers, |a| match st.vault.consent_templates(&a).await {
        Ok(list) => json_response(
            StatusCode::OK,
            json!(list
                .iter()
                .map(|t| json!({"kind": t.kind.id(), "version": t.version, "title": t.title, "body": t.body, "sha256": t.sha256()}))
                .collect::<Vec<_>>()),
        ),
        Err(e) => ApiError(e).into_response(),
    })
}

/// `POST /api/v1/consent-templates` `{"kind","title","body"}`: publishes the next version.
pub(crate) async fn add_consent_template(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, body: Body) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        kind: String,
        title: String,
        body: String,
    }
    let b: B = body!(headers, body);
    with_actor!(st, ctx, headers, |a| match st.vault.add_consent_template(&a, &b.kind, &b.title, &b.body).await {
        Ok(t) => json_response(StatusCode::CREATED, json!({"kind": t.kind.id(), "version": t.version, "sha256": t.sha256()})),
        Err(e) => ApiError(e).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentBody {
    kind: String,
    template_version: u32,
    signer_typed_name: String,
    signer_relationship: Option<String>,
    signature: carevault_domain::consent::DrawnSignature,
    recipient: Option<String>,
    purpose: Option<String>,
    scope: Option<String>,
    expires: Option<String>,
}

/// `POST /api/v1/patients/{id}/consents`: the patient's signature on the current template
/// (typed name, drawn signature; device and address are taken from the request).
pub(crate) async fn sign_consent(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let b: ConsentBody = body!(headers, body);
    let device = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_string();
    let req = carevault_core::ConsentRequest {
        patient_id: id,
        kind: b.kind,
        template_version: b.template_version,
        signer_typed_name: b.signer_typed_name,
        signer_relationship: b.signer_relationship,
        signature: b.signature,
        recipient: b.recipient,
        purpose: b.purpose,
        scope: b.scope,
        expires: b.expires,
        device,
        ip: ctx.ip_string().unwrap_or_default(),
    };
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => {
            let pid = req.patient_id.clone();
            match st.vault.sign_consent(&a, p, req).await {
                Ok(c) => json_response(StatusCode::CREATED, carevault_core::consent_to_fhir(&c, &pid)),
                Err(e) => ApiError(e).into_response(),
            }
        }
        Err(r) => r,
    })
}

/// `POST /api/v1/consents/{id}/revoke`.
pub(crate) async fn revoke_consent(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap, Path(id): Path<String>) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => done(st.vault.revoke_consent(&a, p, &id).await.map(|_| ())),
        Err(r) => r,
    })
}

/// `POST /api/v1/consents/{id}/verify`: the body is a consent PDF; 204 when it is exactly the
/// signed consent (hashes recomputed), 422 otherwise.
pub(crate) async fn verify_consent(
    State(st): State<AppState>,
    Peer(ctx): Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    with_actor!(st, ctx, headers, |a| match purpose_of(&headers, &a) {
        Ok(p) => {
            let pdf = match crate::extract::read_body(&headers, body, 16 * 1024 * 1024).await {
                Ok(b) => b,
                Err(e) => return problem(e.status(), "CV-INPUT-003", &e.reason()),
            };
            match st.vault.verify_consent_pdf(&a, p, &id, &pdf).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(carevault_core::CoreError::Invalid(e)) => problem(StatusCode::UNPROCESSABLE_ENTITY, "CV-CONSENT-001", &e.message),
                Err(e) => ApiError(e).into_response(),
            }
        }
        Err(r) => r,
    })
}
