//! Oversight: security and privacy alerts, the audit log and its verification.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{done, ok, ApiQuery};
use crate::auth::{Api, SignedIn};
use crate::server::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertFilter {
    category: String,
    #[serde(default)]
    all: Option<bool>,
}

pub(crate) async fn alerts(State(st): State<AppState>, ApiQuery(q): ApiQuery<AlertFilter>, who: SignedIn<Api>) -> Response {
    ok(st.vault.alerts(&who.actor, &q.category, !q.all.unwrap_or(false)).await)
}

pub(crate) async fn close_alert(State(st): State<AppState>, Path(id): Path<String>, who: SignedIn<Api>) -> Response {
    done(st.vault.close_alert(&who.actor, &id).await)
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
pub(crate) async fn audit_events(State(st): State<AppState>, ApiQuery(q): ApiQuery<AuditFilter>, who: SignedIn<Api>) -> Response {
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
        return ok(st.vault.audit_search(&who.actor, &aq).await);
    }
    ok(st.vault.audit_events(&who.actor, q.after.unwrap_or(0), q.limit.unwrap_or(100)).await)
}

pub(crate) async fn audit_verify(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.verify_audit_as(&who.actor).await.map(|r| {
        json!({
                "intact": r.intact(),
                "records": r.records,
                "root_hash": r.root_hash,
                "checkpoints_in_database": r.checkpoints_in_database,
                "checkpoints_in_file": r.checkpoints_in_file,
                "tree_heads_checked": r.tree_heads,
                "failures": r.failures.iter().map(|f| json!({"seq": f.seq, "message": f.message})).collect::<Vec<_>>(),
                "notes": r.notes,
        })
    }))
}
