//! Request facts: source address, session cookie, bounded bodies. (Who is asking, and for which
//! purpose of use, is `auth.rs`.)

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use carevault_core::RequestContext;

use crate::SESSION_COOKIE;

/// Where the request came from: the client address the listener worked out (the TCP peer, or
/// behind a trusted proxy the rightmost untrusted `X-Forwarded-For` hop).
pub(crate) struct Peer(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<crate::net::ClientAddr>()
            .map(|c| c.0)
            .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
        Ok(Peer(RequestContext { source_ip: ip }))
    }
}

/// The session token from the `__Host-carevault_session` cookie.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == SESSION_COOKIE && !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

pub(crate) fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

pub(crate) fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

pub(crate) enum BodyError {
    TooLarge(usize),
    Unreadable,
    MediaType,
}

impl BodyError {
    /// 413 for a body over the route's limit, 400 otherwise.
    pub(crate) fn status(&self) -> axum::http::StatusCode {
        match self {
            BodyError::TooLarge(_) => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::MediaType => axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Unreadable => axum::http::StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn reason(&self) -> String {
        match self {
            BodyError::TooLarge(limit) => {
                format!("the body is larger than the limit of {limit} bytes")
            }
            BodyError::Unreadable => "the body could not be read".to_string(),
            BodyError::MediaType => "the body must be application/fhir+json or application/json".to_string(),
        }
    }
}

pub(crate) fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/fhir+json" || m == "application/json")
}

/// How much of an oversized body is read past the route's limit and thrown away before
/// answering 413, so that a client still sending sees the answer instead of a reset connection.
/// Beyond it the body is dropped: HTTP/1.1 closes the connection, HTTP/2 resets the stream.
pub(crate) const DRAIN_MAX: usize = 8 * 1024 * 1024;

/// Reads a body of at most `limit` bytes: the whole body, or `TooLarge`. Never a part of it.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let too_large = declared.is_some_and(|n| n > limit as u64);
    let mut buf =
        Vec::with_capacity(if too_large { 0 } else { declared.map_or(8 * 1024, |n| usize::try_from(n).unwrap_or(limit).min(limit)) });
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Unreadable)?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if too_large || seen > limit {
                // Refused: keep draining only up to the drain allowance past the limit.
                buf = Vec::new();
                if seen > limit.saturating_add(DRAIN_MAX) {
                    return Err(BodyError::TooLarge(limit));
                }
                continue;
            }
            buf.extend_from_slice(&data);
        }
    }
    if too_large || seen > limit {
        return Err(BodyError::TooLarge(limit));
    }
    if declared.is_some_and(|n| n != seen as u64) {
        return Err(BodyError::Unreadable);
    }
    Ok(Bytes::from(buf))
}
