//! The home page: today's schedule, my tasks, and for officers the open alerts and break-glass
//! reviews.

use axum::response::Response;
use maud::html;

use super::{page, Ui};

/// `GET /ui/`
pub(crate) async fn home(ui: Ui) -> Response {
    let content = html! {
        h1 { "Welcome, " (ui.actor.username()) }
        p { "Use the menu to find patients, see the schedule or manage your account." }
    };
    page(&ui, "Home", content)
}
