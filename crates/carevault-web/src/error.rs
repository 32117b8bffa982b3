//! CoreError → HTTP, explicitly. FHIR routes answer with OperationOutcome, the JSON API with
//! problem+json. Internal details never reach the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use carevault_core::CoreError;
use carevault_domain::InputError;
use serde_json::json;

pub(crate) fn status_of(e: &CoreError, if_match_given: bool) -> StatusCode {
    match e {
        CoreError::Unauthenticated
        | CoreError::SessionExpired
        | CoreError::MfaRequired
        | CoreError::InvalidCredentials
        | CoreError::InvalidCode
        | CoreError::ReauthRequired => StatusCode::UNAUTHORIZED,
        CoreError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        CoreError::Forbidden { .. } | CoreError::Refused { .. } => StatusCode::FORBIDDEN,
        CoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        CoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        CoreError::VersionConflict { .. } if if_match_given => StatusCode::PRECONDITION_FAILED,
        CoreError::VersionConflict { .. } | CoreError::Conflict(_) => StatusCode::CONFLICT,
        CoreError::AuditUnavailable | CoreError::StoreUnavailable | CoreError::StorageLow => StatusCode::SERVICE_UNAVAILABLE,
        CoreError::Internal(_) | CoreError::Tampered { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        CoreError::ApprovalPending { .. } => StatusCode::ACCEPTED,
    }
}

fn issue_code(e: &CoreError) -> &'static str {
    match e {
        CoreError::Unauthenticated
        | CoreError::SessionExpired
        | CoreError::MfaRequired
        | CoreError::InvalidCredentials
        | CoreError::InvalidCode
        | CoreError::ReauthRequired => "login",
        CoreError::Throttled { .. } => "throttled",
        CoreError::Forbidden { .. } | CoreError::Refused { .. } => "forbidden",
        CoreError::Invalid(i) => i.code.as_str(),
        CoreError::NotFound { .. } => "not-found",
        CoreError::VersionConflict { .. } | CoreError::Conflict(_) => "conflict",
        CoreError::AuditUnavailable | CoreError::StoreUnavailable | CoreError::StorageLow => "transient",
        CoreError::Internal(_) => "exception",
        CoreError::Tampered { .. } => "security",
        CoreError::ApprovalPending { .. } => "informational",
    }
}

/// What the client reads. Nothing the client sent is echoed: a "not found" names the kind of
/// resource, not the id that was asked for (ids come from URLs and bodies, and an error body
/// that reflects them is a vector for injection into whatever displays it).
fn public_message(e: &CoreError) -> String {
    match e {
        CoreError::Internal(_) => "internal error; the event was logged".to_string(),
        CoreError::NotFound { resource } => format!("{} not found", resource_kind(resource)),
        other => other.to_string(),
    }
}

/// `Patient` of `Patient/123`; `Location` of `Location/a in Organization/b`; `resource` for
/// anything that does not start with a plain name.
pub(crate) fn resource_kind(resource: &str) -> &str {
    let kind = resource.split('/').next().unwrap_or_default().trim();
    let kind = kind.rsplit(' ').next().unwrap_or_default();
    if !kind.is_empty() && kind.len() <= 40 && kind.chars().all(|c| c.is_ascii_alphabetic()) {
        kind
    } else {
        "resource"
    }
}

/// A FHIR error: OperationOutcome.
pub(crate) struct FhirError {
    pub error: CoreError,
    pub if_match_given: bool,
}

impl From<CoreError> for FhirError {
    fn from(error: CoreError) -> Self {
        FhirError { error, if_match_given: false }
    }
}

impl From<InputError> for FhirError {
    fn from(e: InputError) -> Self {
        FhirError { error: CoreError::Invalid(e), if_match_given: false }
    }
}

pub(crate) fn operation_outcome(code: &str, diagnostics: &str, expression: Option<&str>, cv_code: &str) -> serde_json::Value {
    let mut issue = json!({
        "severity": "error",
        "code": code,
        "details": {"coding": [{"system": "urn:carevault:error", "code": cv_code}]},
        "diagnostics": diagnostics,
    });
    if let Some(x) = expression {
        issue["expression"] = json!([x]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

pub(crate) fn fhir_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Straight into bytes (`to_string` goes through `fmt::Display`, several times slower).
    let mut r = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8"));
    r
}

fn retry_after(e: &CoreError, r: &mut Response) {
    let secs = match e {
        CoreError::Throttled { retry_after_secs } => *retry_after_secs,
        // Transient: the store recovers by itself (a failed batch, a lost connection) or once
        // an operator frees space.
        CoreError::AuditUnavailable | CoreError::StoreUnavailable => 5,
        CoreError::StorageLow => 60,
        _ => return,
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let status = status_of(&self.error, self.if_match_given);
        let (diag, expr) = match &self.error {
            CoreError::Invalid(i) => {
                let fhirpath = i.path.as_deref().filter(|p| p.starts_with("Patient") || *p == "resourceType");
                (i.to_string(), fhirpath.map(str::to_string))
            }
            other => (public_message(other), None),
        };
        let mut r = fhir_json(status, &operation_outcome(issue_code(&self.error), &diag, expr.as_deref(), self.error.code()));
        retry_after(&self.error, &mut r);
        r
    }
}

/// A JSON API error: RFC 9457 problem details.
pub(crate) struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = json!({
        "type": format!("urn:carevault:error:{code}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Not an error: the change was filed for approval.
        if let CoreError::ApprovalPending { id } = &self.0 {
            let body = json!({"status": "pending-approval", "approval_id": id, "code": self.0.code(), "detail": self.0.to_string()});
            let mut r = (StatusCode::ACCEPTED, body.to_string()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return r;
        }
        let status = status_of(&self.0, false);
        let mut r = problem(status, self.0.code(), &public_message(&self.0));
        retry_after(&self.0, &mut r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_kind_only() {
        for (resource, want) in [
            ("Patient/abc<script>", "Patient not found"),
            ("Location/a in Organization/b", "Location not found"),
            ("active User/x of the patient's organization", "User not found"),
            ("user", "user not found"),
            ("<b>/x", "resource not found"),
        ] {
            assert_eq!(public_message(&CoreError::NotFound { resource: resource.into() }), want);
        }
    }
}
