//! The home page: today's schedule, my tasks, and for officers the open alerts and break-glass
//! reviews. Each area contributes its own section, and only for users who hold its permission
//! (no pointless refusals land in the audit log).

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::{account, admin, audit, clinical, page, patients, schedule, Ui};
use crate::server::AppState;

/// `GET /ui/`
pub(crate) async fn home(ui: Ui, State(st): State<AppState>) -> Response {
    let sections = [
        audit::home_section(&ui, &st).await,
        schedule::home_section(&ui, &st).await,
        clinical::home_section(&ui, &st).await,
        patients::home_section(&ui, &st).await,
        admin::home_section(&ui, &st).await,
        account::home_section(&ui, &st).await,
    ];
    let content = html! {
        h1 { "Welcome, " (ui.actor.username()) }
        @for s in sections.iter().flatten() { (s) }
        @if sections.iter().all(Option::is_none) {
            p { "Use the menu to find patients, see the schedule or manage your account." }
        }
    };
    page(&ui, "Home", content)
}
