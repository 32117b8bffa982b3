//! Users: accounts, their activation, a second factor reset, their sessions.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{created, done, ok, BodyFirst};
use crate::auth::{Api, SignedIn};
use crate::server::AppState;

pub(crate) async fn list_users(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.list_users(&who.actor).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserBody {
    username: String,
    password: String,
    role: String,
    organization_id: String,
}

pub(crate) async fn create_user(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<NewUserBody, SignedIn<Api>>) -> Response {
    // No second-factor secret: the holder enrols their own authenticator at first sign-in with
    // the password and this invitation (shown once, for delivery out of band).
    created(st.vault.create_user(&who.actor, &b.username, &b.role, &b.organization_id, &b.password).await.map(|u| {
        json!({"id": u.id, "username": u.username, "role": u.role, "organization_id": u.organization_id,
               "invitation": u.invitation.code, "invitation_expires_at": u.invitation.expires_at,
               "status": if u.approval_id.is_some() { "pending-approval" } else { "active" },
               "approval_id": u.approval_id})
    }))
}

pub(crate) async fn deactivate_user(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.deactivate_user(&who.actor, &id).await)
}

pub(crate) async fn reactivate_user(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.reactivate_user(&who.actor, &id).await)
}

pub(crate) async fn reset_mfa(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    ok(st
        .vault
        .reset_mfa(&who.actor, &id)
        .await
        .map(|r| json!({"user_id": r.user_id, "invitation": r.invitation.code, "invitation_expires_at": r.invitation.expires_at})))
}

pub(crate) async fn user_sessions(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    ok(st.vault.user_sessions(&who.actor, &id).await)
}

pub(crate) async fn end_user_sessions(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.end_user_sessions(&who.actor, &id).await)
}
