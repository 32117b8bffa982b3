//! The access model: roles and the permission catalogue, role assignments, grants, and the
//! approvals queue of privileged changes (separation of duties).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use carevault_core::{GrantRequest, ScopeInput};
use serde::Deserialize;
use serde_json::json;

use crate::api::{created, done, json_response, ok, ApiQuery, BodyFirst};
use crate::auth::{Api, SignedIn};
use crate::server::AppState;

pub(crate) async fn list_roles(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.list_roles(&who.actor).await)
}

/// The permission catalogue (ids, descriptions, operations), for building custom roles.
pub(crate) async fn permissions(_who: SignedIn<Api>) -> Response {
    let list: Vec<serde_json::Value> = carevault_domain::Permission::ALL
        .iter()
        .map(|p| json!({"id": p.id(), "description": p.description(), "operations": p.operations().iter().map(|o| o.id()).collect::<Vec<_>>()}))
        .collect();
    json_response(StatusCode::OK, json!(list))
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
    Path(name): Path<String>,
    BodyFirst(b, who): BodyFirst<RoleBody, SignedIn<Api>>,
) -> Response {
    ok(st.vault.put_custom_role(&who.actor, &name, &b.description, &b.permissions, &b.purposes).await)
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

pub(crate) async fn add_assignment(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<AssignmentBody, SignedIn<Api>>) -> Response {
    created(st.vault.add_assignment(&who.actor, &b.user_id, &b.role, b.scope.clone(), b.expires_at).await)
}

pub(crate) async fn remove_assignment(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.remove_assignment(&who.actor, &id).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserFilter {
    user_id: Option<String>,
}

pub(crate) async fn list_grants(State(st): State<AppState>, ApiQuery(q): ApiQuery<UserFilter>, who: SignedIn<Api>) -> Response {
    ok(st.vault.list_grants(&who.actor, q.user_id.as_deref()).await)
}

pub(crate) async fn add_grant(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<GrantRequest, SignedIn<Api>>) -> Response {
    created(st.vault.add_grant(&who.actor, &b).await)
}

pub(crate) async fn revoke_grant(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.revoke_grant(&who.actor, &id).await)
}

// ----- approvals (separation of duties) -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalQuery {
    state: Option<String>,
}

/// `GET /api/v1/approvals?state=pending|approved|rejected`
pub(crate) async fn approvals(State(st): State<AppState>, ApiQuery(q): ApiQuery<ApprovalQuery>, who: SignedIn<Api>) -> Response {
    ok(st.vault.approvals(&who.actor, q.state.as_deref().unwrap_or("pending")).await)
}

/// `POST /api/v1/approvals/{id}/approve`
pub(crate) async fn approve(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    ok(st.vault.approve(&who.actor, &id).await)
}

/// `POST /api/v1/approvals/{id}/reject`
pub(crate) async fn reject(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    ok(st.vault.reject(&who.actor, &id).await)
}
