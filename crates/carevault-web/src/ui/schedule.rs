//! The schedule: a practitioner's or a room's day and week, booking, moving, cancelling and
//! checking in appointments. Times are shown and typed in the location's time zone and stored
//! in UTC (the domain's `local_instant` / `local_date_minute` convert).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{AppointmentTypeView, AppointmentView, BookRequest, CoreError, PractitionerView, UnitView};
use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{local_date, local_date_minute, local_instant, local_midnight, parse_date, Date};
use carevault_domain::Permission;
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_page, explain, page, page_status, post_form, ui_form, when, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/schedule", get(schedule_page))
        .route("/appointments/new", get(new_page))
        .route("/appointments", post(book))
        .route("/appointments/{id}", get(detail))
        .route("/appointments/{id}/move", get(move_page).post(move_post))
        .route("/appointments/{id}/cancel", post(cancel))
        .route("/appointments/{id}/checkin", post(checkin))
}

const DAY: i64 = 86_400_000_000;

/// What the actor may see of the practice: locations, rooms, practitioners, appointment types.
struct Dir {
    units: Vec<UnitView>,
    practitioners: Vec<PractitionerView>,
    types: Vec<AppointmentTypeView>,
}

impl Dir {
    async fn load(ui: &Ui, st: &AppState) -> Result<Dir, CoreError> {
        let (units, practitioners) = st.vault.directory(&ui.actor).await?;
        // Roles that may not list types still see the schedule (types then show by code).
        let mut types = st.vault.appointment_types(&ui.actor).await.unwrap_or_default();
        types.retain(|t| t.active);
        types.sort_by(|a, b| (a.minutes, &a.name).cmp(&(b.minutes, &b.name)));
        Ok(Dir { units, practitioners, types })
    }

    fn locations(&self) -> impl Iterator<Item = &UnitView> {
        self.units.iter().filter(|u| u.kind == "location")
    }

    fn rooms(&self) -> impl Iterator<Item = &UnitView> {
        self.units.iter().filter(|u| u.kind == "room")
    }

    fn unit_name(&self, id: &str) -> String {
        self.units.iter().find(|u| u.id == id).map(|u| u.name.clone()).unwrap_or_else(|| id.to_string())
    }

    fn tz(&self, location: &str) -> TimeZoneName {
        self.units
            .iter()
            .find(|u| u.id == location)
            .and_then(|u| u.time_zone.as_deref())
            .and_then(|t| TimeZoneName::parse("time_zone", t).ok())
            .unwrap_or_else(TimeZoneName::utc)
    }

    fn practitioner_name(&self, id: &str) -> String {
        self.practitioners.iter().find(|p| p.id == id).map(|p| format!("{} {}", p.given, p.family)).unwrap_or_else(|| id.to_string())
    }

    /// The practitioner's first location.
    fn practitioner_location(&self, id: &str) -> Option<String> {
        let p = self.practitioners.iter().find(|p| p.id == id)?;
        p.roles.iter().find_map(|r| r.location_id.clone()).or_else(|| self.locations().next().map(|l| l.id.clone()))
    }

    /// The actor's own practitioner record.
    fn own(&self, ui: &Ui) -> Option<&PractitionerView> {
        let me = ui.actor.user_id().as_str();
        self.practitioners.iter().find(|p| p.active && p.user_id.as_deref() == Some(me))
    }

    fn type_name(&self, id: Option<&str>) -> String {
        match id {
            Some(t) => self.types.iter().find(|ty| ty.id == t).map(|ty| ty.name.clone()).unwrap_or_else(|| "Appointment".into()),
            None => "Appointment".into(),
        }
    }
}

fn hm(tz: &TimeZoneName, micros: i64) -> String {
    local_date_minute(tz, micros).map(|(_, m)| format!("{:02}:{:02}", m / 60, m % 60)).unwrap_or_else(|| when(micros))
}

fn date_hm(tz: &TimeZoneName, micros: i64) -> String {
    local_date_minute(tz, micros)
        .map(|(d, m)| format!("{} {d} {:02}:{:02} ({tz})", weekday_name(d), m / 60, m % 60))
        .unwrap_or_else(|| when(micros))
}

fn weekday_name(d: Date) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .get(usize::try_from(d.weekday().to_monday_zero_offset()).unwrap_or(0))
        .copied()
        .unwrap_or("")
}

/// `HH:MM` (seconds, if a browser sends them, are ignored) as minutes after midnight.
fn parse_hm(s: &str) -> Option<u16> {
    let (h, rest) = s.trim().split_once(':')?;
    let m = rest.get(0..2)?;
    let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn add_days(d: Date, n: i64) -> Date {
    let mut d = d;
    for _ in 0..n.unsigned_abs() {
        let next = if n > 0 { d.tomorrow() } else { d.yesterday() };
        match next {
            Ok(x) => d = x,
            Err(_) => break,
        }
    }
    d
}

/// The patients' display names, read one by one through the core (each read is gated and
/// audited); `None` for a patient the actor may not read, whose name is then not shown.
async fn patient_names(ui: &Ui, st: &AppState, ids: impl Iterator<Item = &str>) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(id) {
            continue;
        }
        let name = st.vault.read_patient(&ui.actor, ui.purpose, id).await.ok().map(|r| name_of(&r.to_fhir()));
        out.insert(id.to_string(), name);
    }
    out
}

fn name_of(v: &serde_json::Value) -> String {
    let n = &v["name"][0];
    let given: Vec<&str> = n["given"].as_array().map(|g| g.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    let family = n["family"].as_str().unwrap_or_default();
    let full = format!("{} {family}", given.join(" "));
    let full = full.trim();
    if full.is_empty() {
        "(no name)".into()
    } else {
        full.to_string()
    }
}

fn badge(status: &str) -> Markup {
    let class = if matches!(status, "cancelled" | "noshow") { "badge bad" } else { "badge ok" };
    html! { span class=(class) { (status) } }
}

/// The buttons and links the actor may use on an appointment.
fn actions(ui: &Ui, a: &AppointmentView, back: &str) -> Markup {
    let book = ui.can(Permission::AppointmentBook);
    let back_field = html! { input type="hidden" name="back" value=(back); };
    let reason_id = format!("reason-{}", a.id);
    html! {
        div class="actions" {
            @if book && a.status == "booked" {
                (post_form(ui, &format!("/ui/appointments/{}/checkin", a.id), "inline", html! { (back_field) button type="submit" { "Check in" } }))
                a href=(format!("/ui/appointments/{}/move", a.id)) { "Move" }
            }
            @if book && a.status == "arrived" {
                (post_form(ui, &format!("/ui/appointments/{}/checkin", a.id), "inline", html! { (back_field) button type="submit" class="secondary" { "Into the room" } }))
            }
            @if ui.can(Permission::EncounterManage) && matches!(a.status.as_str(), "booked" | "arrived" | "checked-in") {
                (post_form(ui, &format!("/ui/patients/{}/encounters", a.patient_id), "inline", html! {
                    input type="hidden" name="appointment" value=(a.id);
                    button type="submit" { "Start visit" }
                }))
            }
            @if book && matches!(a.status.as_str(), "booked" | "arrived") {
                (post_form(ui, &format!("/ui/appointments/{}/cancel", a.id), "inline", html! {
                    (back_field)
                    label for=(reason_id) { "Reason" }
                    select id=(reason_id) name="reason" {
                        option value="pat" { "Patient asked" }
                        option value="prov" { "Provider unavailable" }
                        option value="maint" { "Facility issue" }
                        option value="oth" { "Other" }
                    }
                    button type="submit" class="danger" { "Cancel" }
                }))
            }
        }
    }
}

fn appointment_card(ui: &Ui, dir: &Dir, names: &HashMap<String, Option<String>>, a: &AppointmentView, back: &str) -> Markup {
    let tz = dir.tz(&a.location_id);
    html! {
        article class=(format!("appointment slot {}", a.status)) {
            p class="time" {
                strong { time datetime=(carevault_core::format_instant(a.start)) { (hm(&tz, a.start)) "–" (hm(&tz, a.end)) } }
                " " (badge(&a.status))
            }
            p class="patient" {
                @match names.get(&a.patient_id).cloned().flatten() {
                    Some(n) => a href=(format!("/ui/patients/{}", a.patient_id)) { (n) },
                    None => span class="hint" { "Patient not shown (you may not read this record)" },
                }
            }
            p { a href=(format!("/ui/appointments/{}", a.id)) { (dir.type_name(a.type_id.as_deref())) } " · " (dir.practitioner_name(&a.practitioner_id))
                @if let Some(r) = &a.room_id { " · " (dir.unit_name(r)) } }
            (actions(ui, a, back))
        }
    }
}

/// Live appointments in `[from, to)`, of a practitioner or at a location, time ordered.
async fn appointments(
    ui: &Ui,
    st: &AppState,
    (from, to): (i64, i64),
    practitioner: Option<&str>,
    location: Option<&str>,
) -> Result<Vec<AppointmentView>, CoreError> {
    let mut params = vec![
        ("date".to_string(), format!("ge{}", carevault_core::format_instant(from))),
        ("date".to_string(), format!("lt{}", carevault_core::format_instant(to))),
        ("_count".to_string(), "500".to_string()),
    ];
    if let Some(p) = practitioner {
        params.push(("practitioner".into(), p.into()));
    }
    if let Some(l) = location {
        params.push(("location".into(), l.into()));
    }
    let mut list = st.vault.search_appointments(&ui.actor, ui.purpose, &params).await?;
    list.sort_by_key(|a| a.start);
    Ok(list)
}

#[derive(Deserialize, Default)]
pub(crate) struct ScheduleQuery {
    view: Option<String>,
    date: Option<String>,
    practitioner: Option<String>,
    room: Option<String>,
}

/// `GET /ui/schedule`: a practitioner's or a room's day or week.
async fn schedule_page(
    ui: Ui,
    State(st): State<AppState>,
    q: Result<Query<ScheduleQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let dir = match Dir::load(&ui, &st).await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let week = q.view.as_deref() == Some("week");
    let room = q.room.filter(|r| !r.is_empty()).filter(|r| dir.rooms().any(|u| &u.id == r));
    let practitioner = if room.is_some() {
        None
    } else {
        q.practitioner
            .filter(|p| dir.practitioners.iter().any(|x| &x.id == p))
            .or_else(|| dir.own(&ui).map(|p| p.id.clone()))
            .or_else(|| dir.practitioners.first().map(|p| p.id.clone()))
    };
    let location = match (&room, &practitioner) {
        (Some(r), _) => dir.rooms().find(|u| &u.id == r).and_then(|u| u.location_id.clone()),
        (None, Some(p)) => dir.practitioner_location(p),
        _ => dir.locations().next().map(|l| l.id.clone()),
    };
    let tz = location.as_deref().map(|l| dir.tz(l)).unwrap_or_else(TimeZoneName::utc);
    let now = st.vault.now_micros();
    let today = local_date(&tz, now);
    let mut notice = None;
    let date = match q.date.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => match parse_date("date", d) {
            Ok(d) => Some(d),
            Err(_) => {
                notice = Some("The date was not understood (use YYYY-MM-DD); showing today.");
                today
            }
        },
        None => today,
    };
    let Some(date) = date else { return error_page(Some(&ui), &CoreError::Internal("clock".into())) };
    let (first, days) = if week { (add_days(date, -i64::from(date.weekday().to_monday_zero_offset())), 7) } else { (date, 1) };
    let from = local_midnight(&tz, first).unwrap_or(0);
    let to = local_midnight(&tz, add_days(first, days)).unwrap_or(from + days * DAY);
    let list = match (&room, &practitioner) {
        (Some(_), _) => appointments(&ui, &st, (from, to), None, location.as_deref()).await,
        (None, Some(p)) => appointments(&ui, &st, (from, to), Some(p), None).await,
        _ => Ok(Vec::new()),
    };
    let list: Vec<AppointmentView> = match list {
        Ok(l) => l.into_iter().filter(|a| room.is_none() || a.room_id == room).collect(),
        Err(e) => return error_page(Some(&ui), &e),
    };
    let hidden = list.iter().filter(|a| a.status == "cancelled").count();
    let list: Vec<AppointmentView> = list.into_iter().filter(|a| a.status != "cancelled").collect();
    let names = patient_names(&ui, &st, list.iter().map(|a| a.patient_id.as_str())).await;
    let view = if week { "week" } else { "day" };
    let link_view = |view: &str, d: Date| {
        let mut s = format!("/ui/schedule?view={view}&date={d}");
        if let Some(r) = &room {
            s.push_str(&format!("&room={r}"));
        } else if let Some(p) = &practitioner {
            s.push_str(&format!("&practitioner={p}"));
        }
        s
    };
    let link = |d: Date| link_view(view, d);
    let step = if week { 7 } else { 1 };
    let back = link(date);
    let whose = match (&room, &practitioner) {
        (Some(r), _) => dir.unit_name(r),
        (None, Some(p)) => dir.practitioner_name(p),
        _ => "nobody".into(),
    };
    let title = if week { format!("Week of {first}") } else { format!("{} {date}", weekday_name(date)) };
    let content = html! {
        h1 { "Schedule" }
        form method="get" action="/ui/schedule" class="row" {
            div { label for="view" { "View" } select id="view" name="view" {
                option value="day" selected[!week] { "Day" }
                option value="week" selected[week] { "Week" }
            } }
            div { label for="date" { "Date" } input type="date" id="date" name="date" value=(date.to_string()); }
            div { label for="practitioner" { "Practitioner" } select id="practitioner" name="practitioner" {
                @for p in &dir.practitioners { option value=(p.id) selected[practitioner.as_deref() == Some(p.id.as_str())] { (p.given) " " (p.family) } }
            } }
            div { label for="room" { "Room" } select id="room" name="room" {
                option value="" { "(any room: show the practitioner)" }
                @for r in dir.rooms() { option value=(r.id) selected[room.as_deref() == Some(r.id.as_str())] { (r.name) } }
            } }
            div { button type="submit" { "Show" } }
        }
        @if let Some(n) = notice { p role="alert" class="error" { (n) } }
        nav class="actions" aria-label="Dates" {
            a href=(link(add_days(date, -step))) { @if week { "Previous week" } @else { "Previous day" } }
            a href=(link(today.unwrap_or(date))) { "Today" }
            a href=(link(add_days(date, step))) { @if week { "Next week" } @else { "Next day" } }
            @if ui.can(Permission::AppointmentBook) { a href="/ui/appointments/new" { "Book an appointment" } }
        }
        h2 { (whose) ": " (title) }
        p class="hint" { "Times in " (tz.as_str()) "." @if hidden > 0 { " " (hidden) " cancelled or moved appointment(s) not shown." } }
        @if week {
            div class="week" {
                @for i in 0..7 {
                    @let d = add_days(first, i);
                    section aria-label=(format!("{} {d}", weekday_name(d))) {
                        h3 { a href=(link_view("day", d)) { (weekday_name(d)) " " (d) } }
                        @for a in list.iter().filter(|a| local_date(&tz, a.start) == Some(d)) { (appointment_card(&ui, &dir, &names, a, &back)) }
                    }
                }
            }
        } @else {
            @if list.is_empty() { p { "No appointments." } }
            @for a in &list { (appointment_card(&ui, &dir, &names, a, &back)) }
        }
    };
    page(&ui, "Schedule", content)
}

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
async fn new_page(ui: Ui, State(st): State<AppState>, q: Result<Query<NewQuery>, axum::extract::rejection::QueryRejection>) -> Response {
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
async fn book(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
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
async fn detail(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
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
async fn move_page(
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
async fn move_post(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
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
async fn cancel(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
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
async fn checkin(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
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

/// "Today's schedule" for the home page: a practitioner's own day, else (front desk) the whole
/// location's day; nothing for an actor who may not read appointments.
pub(crate) async fn home_section(ui: &Ui, st: &AppState) -> Option<Markup> {
    if !ui.can(Permission::AppointmentRead) {
        return None;
    }
    let dir = Dir::load(ui, st).await.ok()?;
    let own = dir.own(ui).map(|p| p.id.clone());
    let location = match &own {
        Some(p) => dir.practitioner_location(p),
        None => dir.locations().next().map(|l| l.id.clone()),
    }?;
    let tz = dir.tz(&location);
    let today = local_date(&tz, st.vault.now_micros())?;
    let from = local_midnight(&tz, today)?;
    let to = local_midnight(&tz, add_days(today, 1)).unwrap_or(from + DAY);
    let list = match &own {
        Some(p) => appointments(ui, st, (from, to), Some(p), None).await,
        None => appointments(ui, st, (from, to), None, Some(&location)).await,
    };
    let back = "/ui/".to_string();
    Some(match list {
        Ok(list) => {
            let list: Vec<AppointmentView> = list.into_iter().filter(|a| a.status != "cancelled").collect();
            let names = patient_names(ui, st, list.iter().map(|a| a.patient_id.as_str())).await;
            let link = match &own {
                Some(p) => format!("/ui/schedule?view=day&date={today}&practitioner={p}"),
                None => format!("/ui/schedule?view=day&date={today}"),
            };
            html! {
                section class="card" aria-labelledby="today-schedule" {
                    h2 id="today-schedule" { "Today's schedule" }
                    p class="hint" { @if own.is_some() { "Your appointments" } @else { (dir.unit_name(&location)) } ", " (today) " (" (tz.as_str()) ")." }
                    @if list.is_empty() { p { "No appointments today." } }
                    @for a in &list { (appointment_card(ui, &dir, &names, a, &back)) }
                    p { a href=(link) { "Open the schedule" } }
                }
            }
        }
        Err(e) => html! {
            section class="card" aria-labelledby="today-schedule" {
                h2 id="today-schedule" { "Today's schedule" }
                p class="denied" { (explain(&e).1) }
            }
        },
    })
}
