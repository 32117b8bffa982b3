//! The approvals queue for privacy and security officers: privileged changes (accounts, custom
//! roles, role assignments, grants carrying PHI, audit or security permissions) that wait for
//! an officer other than the requester. The core decides who may decide; this page only lists
//! and posts.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use super::{error_page, page, post_form, ui_form, when, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/approvals", get(queue))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/reject", post(reject))
}

/// `GET /ui/approvals`: the pending requests, each with who asked, for whom, and the buttons.
async fn queue(ui: Ui, State(st): State<AppState>) -> Response {
    let list = match st.vault.approvals(&ui.actor, "pending").await {
        Ok(l) => l,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let me = format!("user:{}", ui.actor.user_id());
    page(
        &ui,
        "Approvals",
        html! {
            h1 { "Approvals" }
            p { "Changes that give access to patient data, the audit log or security controls take effect only when an officer other than the person who asked approves them. You cannot decide your own requests or changes to your own account." }
            @if list.is_empty() {
                p role="status" { "Nothing is waiting." }
            } @else {
                table {
                    thead { tr { th { "Asked" } th { "By" } th { "Change" } th { "Expires" } th { "Decision" } } }
                    tbody {
                        @for a in &list {
                            tr {
                                td { (when(a.requested_at)) }
                                td { (a.requester_username.clone().unwrap_or_else(|| a.requested_by.clone())) }
                                td { (a.summary) }
                                td { (when(a.expires_at)) }
                                td {
                                    @if a.requested_by == me || a.subject_user.as_deref() == Some(ui.actor.user_id().as_str()) {
                                        span class="hint" { "Another officer decides this one." }
                                    } @else {
                                        (post_form(&ui, &format!("/ui/approvals/{}/approve", a.id), "inline", html! { button type="submit" { "Approve" } }))
                                        (post_form(&ui, &format!("/ui/approvals/{}/reject", a.id), "inline", html! { button type="submit" class="secondary" { "Reject" } }))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn decide(ui: Ui, st: AppState, id: String, headers: HeaderMap, body: Body, approve: bool) -> Response {
    if let Err(r) = ui_form(&ui, &headers, body).await {
        return r;
    }
    let r = if approve { st.vault.approve(&ui.actor, &id).await } else { st.vault.reject(&ui.actor, &id).await };
    match r {
        Ok(_) => Redirect::to("/ui/approvals").into_response(),
        Err(e) => {
            let mut r = error_page(Some(&ui), &e);
            if r.status() == StatusCode::OK {
                *r.status_mut() = StatusCode::CONFLICT;
            }
            r
        }
    }
}

async fn approve(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    decide(ui, st, id, headers, body, true).await
}

async fn reject(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    decide(ui, st, id, headers, body, false).await
}
