//! The schedule: a practitioner's or a room's day and week, booking, moving, cancelling and
//! checking in appointments. Times are shown and typed in the location's time zone and stored
//! in UTC (the domain's `local_instant` / `local_date_minute` convert).
//!
//! Layout: this file holds the routes, what the practice directory says (`Dir`), local times and
//! the day and week views; `appointments` holds one appointment's pages: booking, its detail
//! and history, moving, cancelling and checking in.

mod appointments;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use carevault_core::{AppointmentTypeView, AppointmentView, CoreError, PractitionerView, UnitView};
use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{local_date, local_date_minute, local_midnight, parse_date, Date};
use carevault_domain::Permission;
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_page, explain, page, post_form, when, Ui};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/schedule", get(schedule_page))
        .route("/appointments/new", get(appointments::new_page))
        .route("/appointments", post(appointments::book))
        .route("/appointments/{id}", get(appointments::detail))
        .route("/appointments/{id}/move", get(appointments::move_page).post(appointments::move_post))
        .route("/appointments/{id}/cancel", post(appointments::cancel))
        .route("/appointments/{id}/checkin", post(appointments::checkin))
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
