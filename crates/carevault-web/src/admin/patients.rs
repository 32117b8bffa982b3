//! A patient's access: care team, sensitive flags, placement, break-glass and its review queue.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{created, done, ok, ApiQuery, BodyFirst};
use crate::auth::{Api, Purposed, SignedIn};
use crate::server::AppState;

pub(crate) async fn care_team(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    ok(st.vault.care_team(&who.actor, who.purpose, &id).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CareTeamBody {
    user_id: String,
    relation: String,
    #[serde(default)]
    ends_at: Option<i64>,
}

pub(crate) async fn add_care_team(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<CareTeamBody, Purposed<Api>>,
) -> Response {
    done(st.vault.add_care_team_member(&who.actor, who.purpose, &id, &b.user_id, &b.relation, b.ends_at).await)
}

pub(crate) async fn end_care_team(
    State(st): State<AppState>,
    Path((id, user, relation)): Path<(String, String, String)>,
    who: Purposed<Api>,
) -> Response {
    done(st.vault.end_care_team_member(&who.actor, who.purpose, &id, &user, &relation).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagsBody {
    categories: Vec<String>,
}

pub(crate) async fn set_flags(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<FlagsBody, Purposed<Api>>,
) -> Response {
    ok(st.vault.set_patient_flags(&who.actor, who.purpose, &id, &b.categories).await.map(|c| json!({"categories": c})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlacementBody {
    #[serde(default)]
    location_id: Option<String>,
    #[serde(default)]
    department_id: Option<String>,
}

pub(crate) async fn set_placement(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<PlacementBody, Purposed<Api>>,
) -> Response {
    done(st.vault.set_patient_placement(&who.actor, who.purpose, &id, b.location_id.as_deref(), b.department_id.as_deref()).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassBody {
    reason: String,
    #[serde(default)]
    reason_text: String,
}

pub(crate) async fn break_glass(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<BreakGlassBody, SignedIn<Api>>,
) -> Response {
    created(st.vault.break_glass(&who.actor, &id, &b.reason, &b.reason_text).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateFilter {
    state: Option<String>,
}

pub(crate) async fn break_glass_queue(State(st): State<AppState>, ApiQuery(q): ApiQuery<StateFilter>, who: SignedIn<Api>) -> Response {
    ok(st.vault.break_glass_queue(&who.actor, q.state.as_deref().unwrap_or("open")).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewBody {
    outcome: String,
    #[serde(default)]
    note: String,
}

pub(crate) async fn close_review(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<ReviewBody, SignedIn<Api>>,
) -> Response {
    done(st.vault.close_break_glass_review(&who.actor, &id, &b.outcome, &b.note).await)
}
