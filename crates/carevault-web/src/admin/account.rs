//! The signed-in user's own account: step-up, password, sessions, recovery codes, passkeys.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{challenge, created, done, ok, BodyFirst};
use crate::auth::{Api, SignedIn};
use crate::server::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReauthBody {
    password: String,
    code: String,
}

pub(crate) async fn reauth(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<ReauthBody, SignedIn<Api>>) -> Response {
    done(st.vault.reauthenticate(&who.actor, &b.password, &b.code).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordBody {
    current_password: String,
    new_password: String,
}

pub(crate) async fn change_password(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<PasswordBody, SignedIn<Api>>) -> Response {
    done(st.vault.change_password(&who.actor, &b.current_password, &b.new_password).await)
}

pub(crate) async fn my_sessions(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.my_sessions(&who.actor).await)
}

pub(crate) async fn end_my_session(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.end_my_sessions(&who.actor, Some(&id)).await)
}

/// Sign out everywhere: every session of the account ends, this one included.
pub(crate) async fn end_all_my_sessions(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    crate::api::signed_out(done(st.vault.end_my_sessions(&who.actor, None).await))
}

pub(crate) async fn recovery_codes(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.generate_recovery_codes(&who.actor).await.map(|codes| json!({"codes": codes})))
}

// ----- passkeys -----

pub(crate) async fn my_passkeys(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.my_passkeys(&who.actor).await)
}

pub(crate) async fn passkey_register_start(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    challenge(st.vault.passkey_registration_start(&who.actor).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeyRegisterBody {
    ceremony_id: String,
    name: String,
    credential: serde_json::Value,
}

pub(crate) async fn passkey_register_finish(
    State(st): State<AppState>,
    BodyFirst(b, who): BodyFirst<PasskeyRegisterBody, SignedIn<Api>>,
) -> Response {
    let credential = b.credential.to_string().into_bytes();
    created(st.vault.passkey_registration_finish(&who.actor, &b.ceremony_id, &b.name, &credential).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameBody {
    name: String,
}

pub(crate) async fn rename_passkey(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<NameBody, SignedIn<Api>>,
) -> Response {
    done(st.vault.rename_passkey(&who.actor, &id, &b.name).await)
}

pub(crate) async fn revoke_passkey(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.revoke_passkey(&who.actor, &id).await)
}
