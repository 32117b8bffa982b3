//! The carevault HTTPS server: FHIR R4 at `/fhir/r4`, the staff JSON API at `/api/v1`, the
//! staff web UI at `/ui`. Every
//! handler reaches patient data only through `carevault_core::Vault`; this crate cannot reach
//! the store or the keys (it does not depend on them).

mod admin;
mod api;
mod auth;
mod capability;
mod error;
mod extract;
mod fhir;
mod headers;
mod net;
mod openapi;
mod server;
mod tls;
mod ui;

pub use net::{normalize_origin, TrustedProxies};
pub use server::{start, RunningServer, WebConfig, WebError};
pub use tls::TlsSource;

/// Name of the session cookie. The `__Host-` prefix makes browsers insist on Secure, Path=/
/// and no Domain attribute.
pub const SESSION_COOKIE: &str = "__Host-carevault_session";
