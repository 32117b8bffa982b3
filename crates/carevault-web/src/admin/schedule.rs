//! The practice directory and the schedule: practitioners and their availability, closures,
//! appointments (booking, weekly series, overbooking, moving, status changes), appointment
//! types and the waitlist.

use axum::extract::{Path, State};
use axum::response::Response;
use carevault_core::CoreError;
use serde::Deserialize;
use serde_json::json;

use crate::api::{created, done, ok, ApiQuery, BodyFirst, StartFirst, Starts};
use crate::auth::{Api, Purposed, SignedIn};
use crate::server::AppState;

pub(crate) async fn directory(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.directory(&who.actor).await.map(|(units, practitioners)| json!({"units": units, "practitioners": practitioners})))
}

pub(crate) async fn add_practitioner(
    State(st): State<AppState>,
    BodyFirst(b, who): BodyFirst<carevault_core::PractitionerRequest, SignedIn<Api>>,
) -> Response {
    created(st.vault.add_practitioner(&who.actor, &b).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AvailabilityBody {
    location_id: String,
    windows: Vec<carevault_domain::schedule::WeeklyWindow>,
}

/// `PUT /api/v1/practitioners/{id}/availability`: the weekly windows at one location.
pub(crate) async fn set_availability(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<AvailabilityBody, SignedIn<Api>>,
) -> Response {
    done(st.vault.set_availability(&who.actor, &id, &b.location_id, &b.windows).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusBody {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/appointments/{id}/status`: check in, in room, fulfilled, cancelled (with a
/// reason), no-show.
pub(crate) async fn appointment_status(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<StatusBody, Purposed<Api>>,
) -> Response {
    done(st.vault.set_appointment_status(&who.actor, who.purpose, &id, &b.status, b.reason.as_deref()).await)
}

/// `GET /api/v1/appointments/{id}/history`: every status change.
pub(crate) async fn appointment_history(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    ok(st.vault.appointment_history(&who.actor, who.purpose, &id).await.map(|h| {
        h.into_iter()
            .map(|(at, from, to, reason)| json!({"at": carevault_core::format_instant(at), "from": from, "to": to, "reason": reason}))
            .collect::<Vec<_>>()
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClosureBody {
    #[serde(default)]
    practitioner_id: Option<String>,
    from: String,
    to: String,
    kind: String,
}

/// `POST /api/v1/locations/{id}/closures`: a holiday of the location or a practitioner's leave.
pub(crate) async fn add_closure(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<ClosureBody, SignedIn<Api>>,
) -> Response {
    created(
        st.vault.add_closure(&who.actor, &id, b.practitioner_id.as_deref(), &b.from, &b.to, &b.kind).await.map(|cid| json!({"id": cid})),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RescheduleBody {
    /// An instant with a time zone (RFC 3339).
    start: String,
}

/// `POST /api/v1/appointments/{id}/reschedule`: moves a booked appointment to another free slot.
pub(crate) async fn reschedule(
    State(st): State<AppState>,
    Path(id): Path<String>,
    StartFirst(_, start, who): StartFirst<RescheduleBody, Purposed<Api>>,
) -> Response {
    created(st.vault.reschedule_appointment(&who.actor, who.purpose, &id, start).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverbookBody {
    patient_id: String,
    practitioner_id: String,
    location_id: String,
    /// An instant with a time zone (RFC 3339).
    start: String,
    minutes: u16,
}

/// `POST /api/v1/appointments/overbook`: books inside availability even if the time is taken
/// (`appointment.overbook`).
pub(crate) async fn overbook(State(st): State<AppState>, StartFirst(b, start, who): StartFirst<OverbookBody, Purposed<Api>>) -> Response {
    created(
        st.vault.overbook_appointment(&who.actor, who.purpose, &b.patient_id, &b.practitioner_id, &b.location_id, start, b.minutes).await,
    )
}

// ----- bookings with types, rooms and series; the waitlist -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BookBody {
    patient_id: String,
    practitioner_id: String,
    location_id: String,
    /// An instant with a time zone (RFC 3339).
    start: String,
    minutes: Option<u16>,
    type_id: Option<String>,
    room_id: Option<String>,
    /// A weekly series: every this many weeks (1 to 4) ...
    every_weeks: Option<u8>,
    /// ... this many times (2 to 52).
    count: Option<u16>,
}

impl Starts for RescheduleBody {
    fn start(&self) -> &str {
        &self.start
    }
}

impl Starts for OverbookBody {
    fn start(&self) -> &str {
        &self.start
    }
}

impl Starts for BookBody {
    fn start(&self) -> &str {
        &self.start
    }
}

/// `POST /api/v1/appointments`: books one appointment, or a weekly series (all or nothing).
pub(crate) async fn book(State(st): State<AppState>, StartFirst(b, start, who): StartFirst<BookBody, Purposed<Api>>) -> Response {
    let req = carevault_core::BookRequest {
        patient_id: b.patient_id,
        practitioner_id: b.practitioner_id,
        location_id: b.location_id,
        start,
        minutes: b.minutes,
        type_id: b.type_id,
        room_id: b.room_id,
    };
    let (a, p) = (&who.actor, who.purpose);
    let booked = match (b.every_weeks, b.count) {
        (None, None) => st.vault.book(a, p, &req, false).await.map(|v| vec![v]),
        (Some(w), Some(n)) => st.vault.book_series(a, p, &req, w, n).await,
        _ => Err(CoreError::Invalid(carevault_domain::InputError::value("count", "a series needs both every_weeks and count"))),
    };
    created(booked.map(|list| {
        let series = list.first().and_then(|x| x.series_id.clone());
        json!({"series_id": series, "appointments": list})
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// pat, prov, maint or oth.
    reason: String,
}

/// `POST /api/v1/appointment-series/{id}/cancel`: cancels the future occurrences still booked.
pub(crate) async fn cancel_series(
    State(st): State<AppState>,
    Path(id): Path<String>,
    BodyFirst(b, who): BodyFirst<CancelBody, Purposed<Api>>,
) -> Response {
    ok(st.vault.cancel_series(&who.actor, who.purpose, &id, &b.reason).await.map(|n| json!({"cancelled": n})))
}

pub(crate) async fn appointment_types(State(st): State<AppState>, who: SignedIn<Api>) -> Response {
    ok(st.vault.appointment_types(&who.actor).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypeBody {
    organization_id: String,
    code: String,
    name: String,
    minutes: u16,
}

pub(crate) async fn add_appointment_type(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<TypeBody, SignedIn<Api>>) -> Response {
    created(st.vault.add_appointment_type(&who.actor, &b.organization_id, &b.code, &b.name, b.minutes).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitlistBody {
    patient_id: String,
    practitioner_id: String,
    location_id: String,
    minutes: u16,
    /// Local dates (YYYY-MM-DD) in the location's zone, inclusive.
    from: String,
    to: String,
}

pub(crate) async fn waitlist_add(State(st): State<AppState>, BodyFirst(b, who): BodyFirst<WaitlistBody, Purposed<Api>>) -> Response {
    let req = carevault_core::WaitlistRequest {
        patient_id: b.patient_id,
        practitioner_id: b.practitioner_id,
        location_id: b.location_id,
        minutes: b.minutes,
        from: b.from,
        to: b.to,
    };
    created(st.vault.waitlist_add(&who.actor, who.purpose, &req).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitlistFilter {
    location_id: String,
    status: Option<String>,
}

pub(crate) async fn waitlist(State(st): State<AppState>, ApiQuery(q): ApiQuery<WaitlistFilter>, who: Purposed<Api>) -> Response {
    ok(st.vault.waitlist(&who.actor, who.purpose, &q.location_id, q.status.as_deref()).await)
}

/// `POST /api/v1/waitlist/{id}/accept`: books the offered time for the waiting patient.
pub(crate) async fn waitlist_accept(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    created(st.vault.answer_waitlist_offer(&who.actor, who.purpose, &id, true).await)
}

/// `POST /api/v1/waitlist/{id}/decline`: the patient keeps waiting; the time goes to the next.
pub(crate) async fn waitlist_decline(State(st): State<AppState>, Path(id): Path<String>, who: Purposed<Api>) -> Response {
    done(st.vault.answer_waitlist_offer(&who.actor, who.purpose, &id, false).await.map(|_| ()))
}
