//! Who is asking. Every route that needs a signed-in staff member (FHIR, `/api/v1`, the UI)
//! extracts a [`SignedIn`] or a [`Purposed`]: the session cookie and the client address are read
//! and `Vault::authenticate` is called once, here and nowhere else, which loads the actor's
//! privileges for this request. The three surfaces differ only in what their [`Surface`] says:
//! how a refusal is answered, and whether the client may name the purpose of use.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::{Actor, CoreError, RequestContext};
use carevault_domain::{InputError, IssueCode, PurposeOfUse};

use crate::error::{problem, ApiError, FhirError};
use crate::extract::{session_token, Peer};
use crate::server::AppState;

/// One face of the server: how it answers a caller who is not signed in (no session, expired,
/// second factor pending, the store unavailable…), and which purpose of use a request acts under.
pub(crate) trait Surface {
    /// The answer to a failed authentication.
    fn refused(e: CoreError) -> Response;
    /// The purpose of use of the request, or the answer to one it may not name.
    #[allow(clippy::result_large_err)] // the error is the response itself, built once
    fn purpose(headers: &HeaderMap, actor: &Actor) -> Result<PurposeOfUse, Response>;
}

/// FHIR R4 at `/fhir/r4`: refusals are OperationOutcomes.
pub(crate) struct Fhir;

/// The JSON API at `/api/v1`: refusals are problem+json.
pub(crate) struct Api;

/// The staff UI at `/ui`: the browser is sent to sign-in, or shown an error page.
pub(crate) struct Page;

impl Surface for Fhir {
    fn refused(e: CoreError) -> Response {
        FhirError::from(e).into_response()
    }

    fn purpose(headers: &HeaderMap, actor: &Actor) -> Result<PurposeOfUse, Response> {
        purpose_header(headers, actor).map_err(|e| FhirError::from(e).into_response())
    }
}

impl Surface for Api {
    fn refused(e: CoreError) -> Response {
        ApiError(e).into_response()
    }

    fn purpose(headers: &HeaderMap, actor: &Actor) -> Result<PurposeOfUse, Response> {
        purpose_header(headers, actor).map_err(|e| problem(StatusCode::BAD_REQUEST, "CV-INPUT-001", &e.to_string()))
    }
}

impl Surface for Page {
    fn refused(e: CoreError) -> Response {
        match e {
            CoreError::MfaRequired => Redirect::to("/ui/signin/mfa").into_response(),
            CoreError::SessionExpired => Redirect::to("/ui/signin?reason=expired").into_response(),
            CoreError::Unauthenticated => Redirect::to("/ui/signin").into_response(),
            e => crate::ui::error_page(None, &e),
        }
    }

    /// A page acts under the role's default purpose: a browser names none.
    fn purpose(_headers: &HeaderMap, actor: &Actor) -> Result<PurposeOfUse, Response> {
        Ok(actor.default_purpose())
    }
}

/// The purpose of use named in `X-Purpose-Of-Use` (HL7 v3 code), or the role's default.
fn purpose_header(headers: &HeaderMap, actor: &Actor) -> Result<PurposeOfUse, InputError> {
    match headers.get("x-purpose-of-use") {
        None => Ok(actor.default_purpose()),
        Some(v) => v.to_str().ok().and_then(PurposeOfUse::parse).ok_or_else(|| {
            InputError::new(
                IssueCode::Value,
                Some("header X-Purpose-Of-Use".to_string()),
                "must be one of TREAT, ETREAT, HPAYMT, HOPERAT, PATRQT, HSYSADMIN",
            )
        }),
    }
}

/// A signed-in staff member on surface `S`: the actor (privileges loaded for this request) and
/// where the request came from. Extracting it counts as use of the session. `P` is `()` for
/// [`SignedIn`], or the purpose of use the request acts under for [`Purposed`].
pub(crate) struct Authed<S, P = ()> {
    pub actor: Actor,
    pub ctx: RequestContext,
    pub purpose: P,
    token: String,
    surface: PhantomData<fn() -> S>,
}

/// Signed in; the purpose of use is not looked at.
pub(crate) type SignedIn<S> = Authed<S, ()>;

/// Signed in, acting under a purpose of use (read before the handler runs, so a purpose the
/// request may not name is answered like a refusal).
pub(crate) type Purposed<S> = Authed<S, PurposeOfUse>;

impl<S, P> Authed<S, P> {
    /// The session's form token (the UI's CSRF field).
    pub(crate) fn form_token(&self) -> String {
        carevault_core::form_token(&self.token)
    }
}

impl<S: Surface> FromRequestParts<AppState> for SignedIn<S> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(Peer(ctx)) = Peer::from_request_parts(parts, st).await;
        let token = session_token(&parts.headers);
        match st.vault.authenticate(&ctx, token.as_deref()).await {
            Ok(actor) => Ok(Authed { actor, ctx, purpose: (), token: token.unwrap_or_default(), surface: PhantomData }),
            Err(e) => Err(S::refused(e)),
        }
    }
}

impl<S: Surface> FromRequestParts<AppState> for Purposed<S> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let Authed { actor, ctx, token, .. } = SignedIn::<S>::from_request_parts(parts, st).await?;
        let purpose = S::purpose(&parts.headers, &actor)?;
        Ok(Authed { actor, ctx, purpose, token, surface: PhantomData })
    }
}
