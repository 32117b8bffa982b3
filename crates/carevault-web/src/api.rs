//! `/api/v1`: staff sign-in (password, then a second factor: TOTP, a recovery code or a
//! passkey), session, sign-out, health; and what every `/api/v1` handler shares: JSON bodies and
//! query strings read before the session is looked at, JSON answers.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use carevault_core::CoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Api, SignedIn};
use crate::error::{problem, ApiError};
use crate::extract::{clear_session_cookie, json_content_type, read_body, session_cookie, session_token, Peer};
use crate::server::AppState;

const AUTH_BODY_LIMIT: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub(crate) fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = (status, serde_json::to_vec(&v).unwrap_or_default()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Parses a small JSON body, answering bad input with a precise problem+json.
async fn json_body<T: for<'de> Deserialize<'de>>(headers: &HeaderMap, body: Body) -> Result<T, Response> {
    if !json_content_type(headers) {
        return Err(problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "CV-INPUT-002", "the body must be application/json"));
    }
    let bytes = read_body(headers, body, AUTH_BODY_LIMIT).await.map_err(|e| problem(e.status(), "CV-INPUT-003", &e.reason()))?;
    if std::str::from_utf8(&bytes).is_err() {
        return Err(problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", "the body is not valid UTF-8"));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", &format!("malformed JSON (line {} column {})", e.line(), e.column()))
    })?;
    // No text field of the API admits a NUL character (PostgreSQL cannot store one either).
    if has_nul(&value) {
        return Err(problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", "text must not contain NUL characters (\\u0000)"));
    }
    // serde's own message would repeat unknown field names and submitted values.
    serde_json::from_value(value).map_err(|e| {
        let what = carevault_domain::error::describe_serde_message(&e.to_string());
        problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", &format!("the JSON does not have the expected fields and types: it {what}"))
    })
}

/// A JSON body of the API, read and checked before `A` is taken from the request's head: a
/// malformed body is answered 400 whoever sends it, before the session is looked at.
pub(crate) struct BodyFirst<T, A>(pub T, pub A);

impl<T, A> FromRequest<AppState> for BodyFirst<T, A>
where
    T: DeserializeOwned + Send,
    A: FromRequestParts<AppState>,
    A::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let b = json_body(&parts.headers, body).await?;
        Ok(BodyFirst(b, then(&mut parts, st).await?))
    }
}

/// A body with a `start` instant (RFC 3339).
pub(crate) trait Starts {
    fn start(&self) -> &str;
}

/// [`BodyFirst`] for a body with a `start`: the instant (µs since the epoch) is parsed with the
/// body, before `A` is taken.
pub(crate) struct StartFirst<T, A>(pub T, pub i64, pub A);

impl<T, A> FromRequest<AppState> for StartFirst<T, A>
where
    T: DeserializeOwned + Starts + Send,
    A: FromRequestParts<AppState>,
    A::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let b: T = json_body(&parts.headers, body).await?;
        let start =
            carevault_domain::schedule::parse_instant("start", b.start()).map_err(|e| ApiError(CoreError::Invalid(e)).into_response())?;
        Ok(StartFirst(b, start, then(&mut parts, st).await?))
    }
}

async fn then<A>(parts: &mut Parts, st: &AppState) -> Result<A, Response>
where
    A: FromRequestParts<AppState>,
    A::Rejection: IntoResponse,
{
    A::from_request_parts(parts, st).await.map_err(IntoResponse::into_response)
}

/// A query string of the API; one that does not fit is answered with problem+json, like every
/// other input. Put before the session in a handler's arguments, it is checked first.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, st).await {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(e) => Err(problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", &format!("query string: {}", e.body_text()))),
        }
    }
}

/// 200 with the value as JSON, or the problem.
pub(crate) fn ok<T: Serialize>(r: Result<T, CoreError>) -> Response {
    answer(StatusCode::OK, r)
}

/// 201 with the new thing as JSON, or the problem.
pub(crate) fn created<T: Serialize>(r: Result<T, CoreError>) -> Response {
    answer(StatusCode::CREATED, r)
}

/// `status` with the value as JSON, or the problem.
pub(crate) fn answer<T: Serialize>(status: StatusCode, r: Result<T, CoreError>) -> Response {
    reply(r.map(|v| json_response(status, serde_json::to_value(v).unwrap_or_default())))
}

/// 204, or the problem.
pub(crate) fn done(r: Result<(), CoreError>) -> Response {
    reply(r.map(|()| StatusCode::NO_CONTENT.into_response()))
}

/// The answer, or the problem.
pub(crate) fn reply(r: Result<Response, CoreError>) -> Response {
    r.unwrap_or_else(|e| ApiError(e).into_response())
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// `POST /api/v1/auth/login` `{"username","password"}` → MFA-pending session cookie.
pub(crate) async fn login(State(st): State<AppState>, BodyFirst(b, Peer(ctx)): BodyFirst<LoginBody, Peer>) -> Response {
    reply(st.vault.login(&ctx, &b.username, &b.password).await.map(|step| {
        with_cookie(
            json_response(
                StatusCode::OK,
                json!({"status": "mfa_required", "methods": ["totp", "recovery-code"], "expires_in_secs": step.expires_in_secs}),
            ),
            &session_cookie(&step.pending_token),
        )
    }))
}

/// `POST /api/v1/auth/mfa/totp` `{"code"}` → full session (new token).
pub(crate) async fn mfa_totp(
    State(st): State<AppState>,
    headers: HeaderMap,
    BodyFirst(b, Peer(ctx)): BodyFirst<CodeBody, Peer>,
) -> Response {
    let token = session_token(&headers);
    reply(st.vault.verify_totp(&ctx, token.as_deref(), &b.code).await.map(grant_response))
}

/// A completed sign-in: the new session's cookie and who is signed in.
pub(crate) fn grant_response(g: carevault_core::SessionGrant) -> Response {
    with_cookie(
        json_response(
            StatusCode::OK,
            json!({
                "status": "authenticated",
                "user": {"id": g.user_id, "username": g.username, "roles": g.roles},
                "idle_timeout_secs": g.idle_timeout_secs,
                "expires_at": carevault_core::format_instant(g.expires_at),
            }),
        ),
        &session_cookie(&g.token),
    )
}

/// Adds what a sign-out must send: the cleared cookie and `Clear-Site-Data`.
pub(crate) fn signed_out(r: Response) -> Response {
    if !r.status().is_success() {
        return r;
    }
    let mut r = with_cookie(r, &clear_session_cookie());
    r.headers_mut()
        .insert(header::HeaderName::from_static("clear-site-data"), HeaderValue::from_static("\"cookies\", \"storage\", \"cache\""));
    r
}

/// `POST /api/v1/auth/logout`: ends the session on the server and clears the browser's state.
pub(crate) async fn logout(State(st): State<AppState>, Peer(ctx): Peer, headers: HeaderMap) -> Response {
    let token = session_token(&headers);
    if let Err(e) = st.vault.logout(&ctx, token.as_deref()).await {
        return ApiError(e).into_response();
    }
    signed_out(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/auth/session`: who is signed in, and until when.
pub(crate) async fn session(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    let a = &who.actor;
    json_response(
        StatusCode::OK,
        json!({
            "user": {"id": a.user_id().as_str(), "username": a.username(), "organization_id": a.organization_id(), "roles": a.roles()},
            "permissions": a.privileges().permissions().iter().map(|p| p.id()).collect::<Vec<_>>(),
            "purposes": a.privileges().purposes().iter().map(|p| p.code()).collect::<Vec<_>>(),
            "granted_by": a.privileges().sources(),
            "expires_at": carevault_core::format_instant(a.session_expires_at()),
            "idle_timeout_secs": st.vault.config().session_idle_secs,
        }),
    )
}

/// `GET /api/v1/health`: no data and no database query (the HTTPS floor used by the
/// benchmark): 204 when all is well; 200 with a JSON body when the server works but its audit
/// evidence files lag behind the database; 503 (problem+json) when changes are refused because
/// free space is below the reserve, or when the last write to the store failed.
pub(crate) async fn health(State(st): State<AppState>) -> Response {
    use carevault_core::StorageHealth;
    match st.vault.storage_health() {
        // Figures only: the folder's path is in the server's log, not for anyone who asks.
        StorageHealth::Low { free_bytes, reserve_bytes, .. } => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-low",
            &format!(
                "free space on the data folder's disk is {} MiB, below the reserve of {} MiB: changes are refused until space is freed; reading continues",
                free_bytes / (1024 * 1024),
                reserve_bytes / (1024 * 1024)
            ),
        ),
        StorageHealth::Failing { since_micros, cause } => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage-failing",
            &format!(
                "writing to the store has failed since {} ({}); nothing that failed was acknowledged, and the server retries by itself",
                carevault_core::format_instant(since_micros),
                storage_cause(&cause)
            ),
        ),
        StorageHealth::Ok => match st.vault.audit_files_problem() {
            None => StatusCode::NO_CONTENT.into_response(),
            Some(p) => json_response(StatusCode::OK, json!({"status": "degraded", "detail": p})),
        },
    }
}

/// The kind of store failure, without the driver's text.
fn storage_cause(cause: &str) -> &'static str {
    let c = cause.to_ascii_lowercase();
    if c.contains("full") || c.contains("no space") {
        "the disk is full"
    } else if c.contains("i/o") || c.contains("disk i/o") {
        "an I/O error"
    } else if c.contains("connect") || c.contains("terminat") || c.contains("reached") || c.contains("closed") {
        "the database connection was lost"
    } else {
        "a database error"
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollBody {
    invitation: String,
}

/// `POST /api/v1/auth/mfa/enroll` `{"invitation"}` (with the MFA-pending session of an account
/// that has never completed a second factor) → `{"otpauth_uri"}`: the holder's own new TOTP
/// secret; `POST /auth/mfa/totp` with its first code completes enrollment and sign-in.
pub(crate) async fn mfa_enroll(
    State(st): State<AppState>,
    headers: HeaderMap,
    BodyFirst(b, Peer(ctx)): BodyFirst<EnrollBody, Peer>,
) -> Response {
    let token = session_token(&headers);
    ok(st.vault.mfa_enrollment_start(&ctx, token.as_deref(), Some(&b.invitation)).await.map(|uri| json!({"otpauth_uri": uri})))
}

/// `POST /api/v1/auth/mfa/recovery` `{"code"}`: the recovery-code second factor (instead of
/// TOTP) → full session.
pub(crate) async fn mfa_recovery(
    State(st): State<AppState>,
    headers: HeaderMap,
    BodyFirst(b, Peer(ctx)): BodyFirst<CodeBody, Peer>,
) -> Response {
    let token = session_token(&headers);
    reply(st.vault.verify_recovery_code(&ctx, token.as_deref(), &b.code).await.map(grant_response))
}

/// A WebAuthn ceremony's challenge: its id and the options for the browser.
pub(crate) fn challenge(r: Result<carevault_core::PasskeyChallenge, CoreError>) -> Response {
    ok(r.map(|c| json!({"ceremony_id": c.ceremony_id, "options": c.options})))
}

/// `POST /api/v1/auth/mfa/passkey/start` (with the MFA-pending session): a passkey assertion's
/// challenge.
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

/// `POST /api/v1/auth/mfa/passkey/finish` `{"ceremony_id","credential"}` → full session.
pub(crate) async fn mfa_passkey_finish(
    State(st): State<AppState>,
    headers: HeaderMap,
    BodyFirst(b, Peer(ctx)): BodyFirst<PasskeyLoginBody, Peer>,
) -> Response {
    let token = session_token(&headers);
    reply(
        st.vault
            .passkey_login_finish(&ctx, token.as_deref(), &b.ceremony_id, b.credential.to_string().as_bytes())
            .await
            .map(grant_response),
    )
}
