//! Security headers on every response, and a request log line that carries no PHI.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

const HEADERS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    // `same-origin`, not `no-referrer`: browsers then send a real `Origin` on the UI's own form
    // posts and fetches (with `no-referrer` they send `Origin: null`, which the cross-origin
    // check must refuse), while no other site ever learns a carevault URL.
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), publickey-credentials-get=(self), publickey-credentials-create=(self)",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    // Nearly every response carries or concerns PHI; none may be cached anywhere.
    ("cache-control", "no-store"),
    ("pragma", "no-cache"),
];

pub(crate) async fn security_headers(demo: bool, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // The path only: query strings may hold search terms (PHI).
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // A handler's own `sandbox` policy (served documents) is kept, after the common one.
    let sandboxed = h.get("content-security-policy").is_some_and(|v| v.as_bytes() == b"sandbox");
    for (k, v) in HEADERS {
        if sandboxed && *k == "content-security-policy" {
            if let Ok(v) = HeaderValue::from_str(&format!("{v}; sandbox")) {
                h.insert(HeaderName::from_static(k), v);
                continue;
            }
        }
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    if demo {
        h.insert(HeaderName::from_static("x-carevault-demo"), HeaderValue::from_static("synthetic demo data - not for real patients"));
    }
    tracing::info!(%method, path = %redact_path(&path), status = res.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    res
}

/// Ids in paths are random and not PHI, but keep logs to the route shape anyway.
fn redact_path(p: &str) -> String {
    p.split('/')
        .map(|seg| if seg.len() >= 16 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-') { ":id" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}
