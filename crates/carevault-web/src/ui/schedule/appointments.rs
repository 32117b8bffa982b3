//! One appointment: booking (type, room, a free slot of the practitioner), its page with the
//! status history, moving to another free slot, cancelling and checking in.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::{BookRequest, CoreError};
use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{local_date, local_instant, parse_date};
use maud::{html, Markup};
use serde::Deserialize;

use super::{actions, badge, date_hm, hm, name_of, parse_hm, patient_names, Dir};
use crate::server::AppState;
use crate::ui::{error_page, explain, page, page_status, post_form, ui_form, when, Ui};

#[derive(Deserialize, Default)]
pub(crate) struct NewQuery {
    patient: Option<String>,
    practitioner: Option<String>,
    location: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
    date: Option<String>,
    start: Option<String>,
    room: Option<String>,
}

/// The values of a booking form.
#[derive(Default, Clone)]
struct Booking {
    patient: String,
    practitioner: String,
    location: String,
    ty: String,
    date: String,
    start: String,
    room: String,
}

/// `GET /ui/appointments/new?patient=ID`: the booking form.
pub(super) async fn new_page(
    ui: Ui,
    State(st): State<AppState>,
    q: Result<Query<NewQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let dir = match Dir::load(&ui, &st).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let practitioner = q
        .practitioner
        .filter(|p| !p.is_empty())
        .or_else(|| dir.own(&ui).map(|p| p.id.clone()))
        .or_else(|| dir.practitioners.first().map(|p| p.id.clone()))
        .unwrap_or_default();
    let location = q.location.filter(|l| !l.is_empty()).or_else(|| dir.practitioner_location(&practitioner)).unwrap_or_default();
    let tz = dir.tz(&location);
    let today = local_date(&tz, st.vault.now_micros()).map(|d| d.to_string()).unwrap_or_default();
    let b = Booking {
        patient: q.patient.unwrap_or_default(),
        practitioner,
        location,
        ty: q.ty.or_else(|| dir.types.first().map(|t| t.id.clone())).unwrap_or_default(),
        date: q.date.filter(|d| !d.is_empty()).unwrap_or(today),
        start: q.start.unwrap_or_default(),
        room: q.room.unwrap_or_default(),
    };
    booking_form(&ui, &st, &dir, &b, StatusCode::OK, None).await
}

async fn booking_form(ui: &Ui, st: &AppState, dir: &Dir, b: &Booking, status: StatusCode, error: Option<String>) -> Response {
    let prefilled = if b.patient.is_empty() {
        None
    } else {
        Some(st.vault.read_patient(&ui.actor, ui.purpose, &b.patient).await.ok().map(|r| name_of(&r.to_fhir())))
    };
    let minutes = dir.types.iter().find(|t| t.id == b.ty).map(|t| u16::try_from(t.minutes).unwrap_or(15)).unwrap_or(15);
    let tz = dir.tz(&b.location);
    let slots = if !b.practitioner.is_empty() && !b.location.is_empty() && parse_date("date", &b.date).is_ok() {
        st.vault.free_slots(&ui.actor, &b.practitioner, &b.location, &b.date, 1, minutes).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let slot_link = |start: &str| {
        let mut s = form_urlencoded::Serializer::new(String::from("/ui/appointments/new?"));
        s.append_pair("patient", &b.patient)
            .append_pair("practitioner", &b.practitioner)
            .append_pair("location", &b.location)
            .append_pair("type", &b.ty)
            .append_pair("date", &b.date)
            .append_pair("start", start)
            .append_pair("room", &b.room);
        s.finish()
    };
    let content = html! {
        h1 { "Book an appointment" }
        @if let Some(e) = &error { p role="alert" class="error" { (e) } }
        (post_form(ui, "/ui/appointments", "stack card", html! {
            @match &prefilled {
                Some(Some(name)) => {
                    div { label for="patient-name" { "Patient" } " " output id="patient-name" { strong { (name) } } }
                    input type="hidden" name="patient" value=(b.patient);
                },
                _ => {
                    div {
                        label for="patient" { "Patient" }
                        input type="text" id="patient" name="patient" value=(b.patient) required aria-describedby="patient-hint";
                        p id="patient-hint" class="hint" { "The patient's id (from the chart address). " a href="/ui/patients" { "Find a patient" } }
                    }
                },
            }
            div { label for="practitioner" { "Practitioner" } select id="practitioner" name="practitioner" {
                @for p in &dir.practitioners { option value=(p.id) selected[p.id == b.practitioner] { (p.given) " " (p.family) } }
            } }
            div { label for="location" { "Location" } select id="location" name="location" {
                @for l in dir.locations() { option value=(l.id) selected[l.id == b.location] { (l.name) } }
            } }
            div { label for="type" { "Appointment type" } select id="type" name="type" {
                @for t in &dir.types { option value=(t.id) selected[t.id == b.ty] { (t.name) " (" (t.minutes) " min)" } }
            } }
            div { label for="room" { "Room (optional)" } select id="room" name="room" {
                option value="" { "No room" }
                @for r in dir.rooms().filter(|r| r.location_id.as_deref() == Some(b.location.as_str())) {
                    option value=(r.id) selected[r.id == b.room] { (r.name) }
                }
            } }
            div { label for="date" { "Date" } input type="date" id="date" name="date" value=(b.date) required; }
            div {
                label for="start" { "Start time" }
                input type="time" id="start" name="start" value=(b.start) step="300" required aria-describedby="start-hint";
                p id="start-hint" class="hint" { "Local time at the location (" (tz.as_str()) ")." }
            }
            div { button type="submit" { "Book appointment" } }
        }))
        section aria-labelledby="free-title" {
            h2 id="free-title" { "Free times on " (b.date) }
            @if slots.is_empty() {
                p { "No free times for this practitioner, location, type and date (or they could not be listed)." }
            } @else {
                p class="hint" { "Choose a time to fill in the form (" (minutes) " minutes, " (tz.as_str()) ")." }
                ul class="actions" {
                    @for s in &slots {
                        @let t = hm(&tz, s.start);
                        li { a href=(slot_link(&t)) { (t) } }
                    }
                }
            }
        }
    };
    page_status(ui, status, "Book an appointment", content)
}

/// A refused form: the core's message, with the status it calls for.
fn refusal(e: &CoreError) -> (StatusCode, String) {
    let (_, text) = explain(e);
    (crate::error::status_of(e, false), text)
}

/// Local date and `HH:MM` at the location → UTC microseconds, or the precise reason not.
fn to_utc(tz: &TimeZoneName, date: &str, start: &str) -> Result<i64, String> {
    let d = parse_date("date", date).map_err(|_| "Date: give a date as YYYY-MM-DD.".to_string())?;
    let m = parse_hm(start).ok_or_else(|| "Start time: give a time as HH:MM.".to_string())?;
    local_instant(tz, d, m).ok_or_else(|| format!("Start time: {start} does not exist on {date} in {tz} (the clocks change that night)."))
}

/// `POST /ui/appointments`: books and shows the appointment.
pub(super) async fn book(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let dir = match Dir::load(&ui, &st).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let b = Booking {
        patient: f.get("patient").to_string(),
        practitioner: f.get("practitioner").to_string(),
        location: f.get("location").to_string(),
        ty: f.get("type").to_string(),
        date: f.get("date").to_string(),
        start: f.get("start").to_string(),
        room: f.get("room").to_string(),
    };
    if b.patient.is_empty() {
        return booking_form(&ui, &st, &dir, &b, StatusCode::BAD_REQUEST, Some("Patient: give the patient's id.".into())).await;
    }
    if b.ty.is_empty() {
        return booking_form(&ui, &st, &dir, &b, StatusCode::BAD_REQUEST, Some("Appointment type: choose one.".into())).await;
    }
    let start = match to_utc(&dir.tz(&b.location), &b.date, &b.start) {
        Ok(s) => s,
        Err(m) => return booking_form(&ui, &st, &dir, &b, StatusCode::BAD_REQUEST, Some(m)).await,
    };
    let req = BookRequest {
        patient_id: b.patient.clone(),
        practitioner_id: b.practitioner.clone(),
        location_id: b.location.clone(),
        start,
        minutes: None,
        type_id: Some(b.ty.clone()),
        room_id: Some(b.room.clone()).filter(|r| !r.is_empty()),
    };
    match st.vault.book(&ui.actor, ui.purpose, &req, false).await {
        Ok(a) => Redirect::to(&format!("/ui/appointments/{}", a.id)).into_response(),
        Err(e @ (CoreError::Invalid(_) | CoreError::Conflict(_) | CoreError::NotFound { .. })) => {
            let (status, text) = refusal(&e);
            booking_form(&ui, &st, &dir, &b, status, Some(format!("The appointment was not booked: {text}"))).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `GET /ui/appointments/{id}`: details, history and actions.
pub(super) async fn detail(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let a = match st.vault.read_appointment(&ui.actor, ui.purpose, &id).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let history = st.vault.appointment_history(&ui.actor, ui.purpose, &id).await;
    let dir = match Dir::load(&ui, &st).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let names = patient_names(&ui, &st, std::iter::once(a.patient_id.as_str())).await;
    let tz = dir.tz(&a.location_id);
    let back = format!("/ui/appointments/{}", a.id);
    let day = local_date(&tz, a.start).map(|d| d.to_string()).unwrap_or_default();
    let content = html! {
        h1 { (dir.type_name(a.type_id.as_deref())) " " (date_hm(&tz, a.start)) }
        article class=(format!("appointment slot {}", a.status)) {
            dl class="facts" {
                dt { "Patient" }
                dd { @match names.get(&a.patient_id).cloned().flatten() {
                    Some(n) => a href=(format!("/ui/patients/{}", a.patient_id)) { (n) },
                    None => span class="hint" { "Not shown (you may not read this record)" },
                } }
                dt { "Time" } dd { (hm(&tz, a.start)) "–" (hm(&tz, a.end)) " " (tz.as_str()) " (" (when(a.start)) ")" }
                dt { "Status" } dd { (badge(&a.status)) }
                dt { "Practitioner" } dd { (dir.practitioner_name(&a.practitioner_id)) }
                dt { "Location" } dd { (dir.unit_name(&a.location_id)) }
                @if let Some(r) = &a.room_id { dt { "Room" } dd { (dir.unit_name(r)) } }
                dt { "Type" } dd { (dir.type_name(a.type_id.as_deref())) }
            }
            (actions(&ui, &a, &back))
        }
        p { a href=(format!("/ui/schedule?view=day&date={day}&practitioner={}", a.practitioner_id)) { "Back to the schedule" } }
        h2 { "History" }
        @match &history {
            Ok(h) if h.is_empty() => p { "No changes yet." },
            Ok(h) => div class="table-wrap" { table {
                thead { tr { th scope="col" { "When" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Reason" } } }
                tbody { @for (at, from, to, reason) in h { tr {
                    td { (date_hm(&tz, *at)) }
                    td { (history_link(from)) }
                    td { (to) }
                    td { (history_link(reason.as_deref().unwrap_or(""))) }
                } } }
            } },
            Err(e) => p class="denied" { (explain(e).1) },
        }
    };
    page(&ui, "Appointment", content)
}

/// `rescheduled:<id>` history entries link to the other appointment.
fn history_link(s: &str) -> Markup {
    match s.strip_prefix("rescheduled:") {
        Some(other) => html! { "rescheduled (" a href=(format!("/ui/appointments/{other}")) { "other appointment" } ")" },
        None => html! { (s) },
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct MoveQuery {
    date: Option<String>,
}

/// `GET /ui/appointments/{id}/move`.
pub(super) async fn move_page(
    ui: Ui,
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<MoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let date = q.ok().and_then(|Query(q)| q.date).filter(|d| !d.is_empty());
    move_form(&ui, &st, &id, date, None, StatusCode::OK, None).await
}

async fn move_form(
    ui: &Ui,
    st: &AppState,
    id: &str,
    date: Option<String>,
    start: Option<String>,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let a = match st.vault.read_appointment(&ui.actor, ui.purpose, id).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(ui), &e),
    };
    let dir = match Dir::load(ui, st).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(ui), &e),
    };
    let tz = dir.tz(&a.location_id);
    let date = date.or_else(|| local_date(&tz, a.start).map(|d| d.to_string())).unwrap_or_default();
    let start = start.unwrap_or_else(|| hm(&tz, a.start));
    let minutes = u16::try_from((a.end - a.start) / 60_000_000).unwrap_or(15);
    let slots = if parse_date("date", &date).is_ok() {
        st.vault.free_slots(&ui.actor, &a.practitioner_id, &a.location_id, &date, 1, minutes).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let names = patient_names(ui, st, std::iter::once(a.patient_id.as_str())).await;
    let who = names.get(&a.patient_id).cloned().flatten().unwrap_or_else(|| "the patient".into());
    let content = html! {
        h1 { "Move appointment" }
        p { "Now: " (date_hm(&tz, a.start)) " with " (dir.practitioner_name(&a.practitioner_id)) " for " (who) " (" (minutes) " minutes)." }
        @if let Some(e) = &error { p role="alert" class="error" { (e) } }
        (post_form(ui, &format!("/ui/appointments/{}/move", a.id), "stack card", html! {
            div { label for="date" { "Date" } input type="date" id="date" name="date" value=(date) required; }
            div {
                label for="start" { "Start time" }
                input type="time" id="start" name="start" value=(start) step="300" required aria-describedby="start-hint";
                p id="start-hint" class="hint" { "Local time at " (dir.unit_name(&a.location_id)) " (" (tz.as_str()) ")." }
            }
            div { button type="submit" { "Move appointment" } }
        }))
        form method="get" action=(format!("/ui/appointments/{}/move", a.id)) class="row" {
            div { label for="free-date" { "Free times on" } input type="date" id="free-date" name="date" value=(date); }
            div { button type="submit" class="secondary" { "List free times" } }
        }
        section aria-labelledby="free-title" {
            h2 id="free-title" { "Free times on " (date) }
            @if slots.is_empty() { p { "No free times that day." } } @else {
                ul class="actions" { @for s in &slots { li { (hm(&tz, s.start)) } } }
            }
        }
        p { a href=(format!("/ui/appointments/{}", a.id)) { "Back to the appointment" } }
    };
    page_status(ui, status, "Move appointment", content)
}

/// `POST /ui/appointments/{id}/move`: reschedules, then shows the new appointment.
pub(super) async fn move_post(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (date, start) = (f.get("date").to_string(), f.get("start").to_string());
    let a = match st.vault.read_appointment(&ui.actor, ui.purpose, &id).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let dir = match Dir::load(&ui, &st).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let at = match to_utc(&dir.tz(&a.location_id), &date, &start) {
        Ok(s) => s,
        Err(m) => return move_form(&ui, &st, &id, Some(date), Some(start), StatusCode::BAD_REQUEST, Some(m)).await,
    };
    match st.vault.reschedule_appointment(&ui.actor, ui.purpose, &id, at).await {
        Ok(n) => Redirect::to(&format!("/ui/appointments/{}", n.id)).into_response(),
        Err(e @ (CoreError::Invalid(_) | CoreError::Conflict(_))) => {
            let (status, text) = refusal(&e);
            move_form(&ui, &st, &id, Some(date), Some(start), status, Some(format!("The appointment was not moved: {text}"))).await
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// Where to go after a status change: the form's `back` if it is a UI page, else the appointment.
fn back_to(back: &str, id: &str) -> String {
    if back.starts_with("/ui/") && !back.contains("//") && !back.contains('\\') {
        back.to_string()
    } else {
        format!("/ui/appointments/{id}")
    }
}

/// `POST /ui/appointments/{id}/cancel`.
pub(super) async fn cancel(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let reason = f.opt("reason").unwrap_or("oth");
    match st.vault.set_appointment_status(&ui.actor, ui.purpose, &id, "cancelled", Some(reason)).await {
        Ok(()) => Redirect::to(&back_to(f.get("back"), &id)).into_response(),
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `POST /ui/appointments/{id}/checkin`: booked → arrived (checked in at the desk); arrived →
/// checked-in (in the room).
pub(super) async fn checkin(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let a = match st.vault.read_appointment(&ui.actor, ui.purpose, &id).await {
        Ok(a) => a,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let to = if a.status == "arrived" { "checked-in" } else { "arrived" };
    match st.vault.set_appointment_status(&ui.actor, ui.purpose, &id, to, None).await {
        Ok(()) => Redirect::to(&back_to(f.get("back"), &id)).into_response(),
        Err(e) => error_page(Some(&ui), &e),
    }
}
