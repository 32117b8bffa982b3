//! More of scheduling through the chokepoint: appointment types, recurring series, the
//! waitlist that is offered freed time, and appointment search (the day and week views).

use std::collections::HashMap;

use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{local_date, local_midnight, parse_date, parse_instant, weekly_series};
use carevault_domain::{AuditAction, InputError, Operation, Outcome, PurposeOfUse, SensitiveCategory};
use carevault_store::{AppointmentFilter, AppointmentTypeRow, UnitKind, WaitlistRow};

use crate::actor::Actor;
use crate::audit::Draft;
use crate::authz::{self, PatientFacts, Target};
use crate::error::CoreError;
use crate::schedule::changes::ScheduleChange;
use crate::schedule::{AppointmentView, BookRequest};
use crate::vault::Vault;

fn bad(path: &str, message: &str) -> CoreError {
    CoreError::Invalid(InputError::value(path, message))
}

fn well_formed_id(id: &str, len: usize) -> bool {
    id.len() == len && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An appointment type: a named visit with a duration, per organization.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppointmentTypeView {
    pub id: String,
    pub organization_id: String,
    pub code: String,
    pub name: String,
    pub minutes: i64,
    pub active: bool,
}

impl From<AppointmentTypeRow> for AppointmentTypeView {
    fn from(t: AppointmentTypeRow) -> Self {
        AppointmentTypeView {
            id: t.id,
            organization_id: t.organization_id,
            code: t.code,
            name: t.name,
            minutes: t.minutes,
            active: t.active,
        }
    }
}

/// A waitlist entry: a patient waiting for time with a practitioner at a location.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaitlistView {
    pub id: String,
    pub patient_id: String,
    pub practitioner_id: String,
    pub location_id: String,
    pub minutes: i64,
    /// Unix microseconds: the window the patient can come in.
    pub earliest: i64,
    pub latest: i64,
    /// waiting, offered, booked or withdrawn.
    pub status: String,
    /// The freed time offered, while the status is `offered`.
    pub offered_start: Option<i64>,
    /// The end of the freed time offered.
    pub offered_end: Option<i64>,
    pub appointment_id: Option<String>,
}

impl From<WaitlistRow> for WaitlistView {
    fn from(w: WaitlistRow) -> Self {
        WaitlistView {
            id: w.id,
            patient_id: w.patient_id,
            practitioner_id: w.practitioner_id,
            location_id: w.location_id,
            minutes: w.minutes,
            earliest: w.earliest_at,
            latest: w.latest_at,
            status: w.status,
            offered_start: w.offered_start,
            offered_end: w.offered_end,
            appointment_id: w.appointment_id,
        }
    }
}

/// What to put on the waitlist: local dates (in the location's zone), inclusive.
#[derive(Debug, Clone, Default)]
pub struct WaitlistRequest {
    pub patient_id: String,
    pub practitioner_id: String,
    pub location_id: String,
    pub minutes: u16,
    pub from: String,
    pub to: String,
}

/// Appointment search criteria, as FHIR search parameters give them.
#[derive(Debug, Clone, Default)]
pub struct AppointmentQuery {
    /// Unix microseconds, [from, to): at most 31 days.
    pub from: i64,
    pub to: i64,
    pub practitioner_id: Option<String>,
    pub patient_id: Option<String>,
    pub location_id: Option<String>,
    pub status: Option<String>,
    pub count: usize,
}

impl AppointmentQuery {
    /// Parses FHIR search parameters: `date` (twice, with ge/gt/le/lt prefixes, or once as a
    /// day `YYYY-MM-DD` in UTC), `practitioner`, `patient`, `location`, `status`, `_count`.
    pub fn parse(params: &[(String, String)]) -> Result<AppointmentQuery, InputError> {
        let mut q = AppointmentQuery { count: 100, ..Default::default() };
        let (mut from, mut to) = (None, None);
        let day = 86_400_000_000i64;
        for (k, v) in params {
            let reference = |kind: &str| -> Result<Option<String>, InputError> {
                let id = v.strip_prefix(&format!("{kind}/")).unwrap_or(v);
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(InputError::value(k, format!("a {kind} id")));
                }
                Ok(Some(id.to_string()))
            };
            match k.as_str() {
                "date" => {
                    let (prefix, value) = if v.len() > 2 && v.is_char_boundary(2) { v.split_at(2) } else { ("eq", v.as_str()) };
                    let (prefix, value) =
                        if matches!(prefix, "ge" | "gt" | "le" | "lt" | "eq") { (prefix, value) } else { ("eq", v.as_str()) };
                    let at = if value.len() == 10 {
                        let d = parse_date("date", value)?;
                        local_midnight(&utc(), d).ok_or_else(|| InputError::value("date", "out of range"))?
                    } else {
                        parse_instant("date", value)?
                    };
                    let whole_day = value.len() == 10;
                    match prefix {
                        "ge" => from = Some(at),
                        "gt" => from = Some(if whole_day { at + day } else { at + 1 }),
                        "lt" => to = Some(at),
                        "le" => to = Some(if whole_day { at + day } else { at + 1 }),
                        _ => {
                            from = Some(at);
                            to = Some(if whole_day { at + day } else { at + 1 });
                        }
                    }
                }
                "practitioner" => q.practitioner_id = reference("Practitioner")?,
                "patient" => q.patient_id = reference("Patient")?,
                "location" => q.location_id = reference("Location")?,
                "status" => {
                    if !carevault_domain::schedule::STATUSES.contains(&v.as_str()) {
                        return Err(InputError::value("status", "one of booked, arrived, checked-in, fulfilled, cancelled, noshow"));
                    }
                    q.status = Some(v.clone());
                }
                "_count" => {
                    q.count =
                        v.parse::<usize>().ok().filter(|c| (1..=500).contains(c)).ok_or_else(|| InputError::value("_count", "1 to 500"))?
                }
                other => return Err(InputError::value(other, "unknown search parameter for Appointment")),
            }
        }
        let (Some(from), Some(to)) = (from, to) else {
            return Err(InputError::value("date", "give a range: date=geYYYY-MM-DD&date=ltYYYY-MM-DD (or one day)"));
        };
        if to <= from || to - from > 31 * day {
            return Err(InputError::value("date", "a range of at most 31 days"));
        }
        q.from = from;
        q.to = to;
        Ok(q)
    }
}

fn utc() -> TimeZoneName {
    TimeZoneName::utc()
}

impl Vault {
    /// Adds an appointment type to an organization.
    pub async fn add_appointment_type(
        &self,
        actor: &Actor,
        organization_id: &str,
        code: &str,
        name: &str,
        minutes: u16,
    ) -> Result<AppointmentTypeView, CoreError> {
        let purpose = Self::schedule_purpose(actor);
        self.gate(actor, Operation::AppointmentTypeAdd, purpose, &Target::Anywhere, ("AppointmentType", None)).await?;
        if self.inner.store.unit(UnitKind::Organization, organization_id).await?.is_none() {
            return Err(CoreError::NotFound { resource: format!("Organization/{}", crate::audit::audit_safe_id(organization_id)) });
        }
        self.gate(actor, Operation::AppointmentTypeAdd, purpose, &Target::Organization(organization_id), ("AppointmentType", None)).await?;
        let code_ok =
            !code.is_empty() && code.len() <= 40 && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let name = name.trim();
        let checked = if !code_ok {
            Err(InputError::value("code", "1 to 40 characters: lowercase letters, digits, '-'"))
        } else if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            Err(InputError::value("name", "1 to 100 characters, no control characters"))
        } else if !(5..=480).contains(&minutes) || !minutes.is_multiple_of(5) {
            Err(InputError::value("minutes", "a multiple of 5 between 5 and 480"))
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            return Err(self.audit_input(actor, purpose, AuditAction::Create, "AppointmentType", e).await);
        }
        let now = self.inner.clock.now_micros();
        let row = AppointmentTypeRow {
            id: hex::encode(carevault_crypto::random_bytes::<12>()),
            organization_id: organization_id.into(),
            code: code.into(),
            name: name.into(),
            minutes: i64::from(minutes),
            active: true,
            created_at: now,
        };
        let ev =
            Draft::new(now, AuditAction::Create, Outcome::Success).by(actor).resource("AppointmentType", Some(&row.id)).purpose(purpose);
        let lost = Draft::new(now, AuditAction::Create, Outcome::Conflict).by(actor).resource("AppointmentType", None).purpose(purpose);
        self.inner.writer.write(vec![ScheduleChange::InsertAppointmentType(Box::new(row.clone())).into()], vec![ev], Some(lost)).await?;
        Ok(row.into())
    }

    /// The appointment types of the organizations the actor works in.
    pub async fn appointment_types(&self, actor: &Actor) -> Result<Vec<AppointmentTypeView>, CoreError> {
        let purpose = Self::schedule_purpose(actor);
        self.gate(actor, Operation::AppointmentTypeList, purpose, &Target::Anywhere, ("AppointmentType", None)).await?;
        let rows = self.inner.store.appointment_types(None).await?;
        Ok(rows
            .into_iter()
            .filter(|t| authz::check(actor, Operation::AppointmentTypeList, purpose, &Target::Organization(&t.organization_id)).is_ok())
            .map(Into::into)
            .collect())
    }

    /// Books a weekly series (every `every_weeks` weeks, `count` times, at the same local time):
    /// all occurrences or none. Occurrences that are not free are named in the refusal.
    pub async fn book_series(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        req: &BookRequest,
        every_weeks: u8,
        count: u16,
    ) -> Result<Vec<AppointmentView>, CoreError> {
        let patient_id = req.patient_id.as_str();
        let (_, allowed) =
            self.gate_patient(actor, Operation::AppointmentSeriesBook, purpose, AuditAction::Create, "Appointment", patient_id).await?;
        let now = self.inner.clock.now_micros();
        let planned = self.plan_series(req, every_weeks, count, now).await;
        let rows = match planned {
            Ok(r) => r,
            Err(e) => return Err(self.refuse_booking(actor, purpose, patient_id, now, e).await),
        };
        let mut ops = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            events.push(
                Draft::new(now, AuditAction::Create, Outcome::Success)
                    .by(actor)
                    .resource("Appointment", Some(&r.id))
                    .patient(patient_id)
                    .purpose(purpose)
                    .review(&allowed),
            );
            ops.push(ScheduleChange::BookAppointment { row: Box::new(r.clone()), allow_overlap: false }.into());
        }
        let lost = Draft::new(now, AuditAction::Create, Outcome::Conflict)
            .by(actor)
            .resource("Appointment", None)
            .patient(patient_id)
            .purpose(purpose);
        self.inner.writer.write(ops, events, Some(lost)).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn plan_series(
        &self,
        req: &BookRequest,
        every_weeks: u8,
        count: u16,
        now: i64,
    ) -> Result<Vec<carevault_store::AppointmentRow>, CoreError> {
        let (_, tz) = self.practice_place(&req.practitioner_id, &req.location_id).await?;
        let starts = weekly_series(&tz, req.start, every_weeks, count)?;
        let series = hex::encode(carevault_crypto::random_bytes::<12>());
        let mut rows = Vec::with_capacity(starts.len());
        let mut not_free = Vec::new();
        for start in starts {
            let one = BookRequest { start, ..req.clone() };
            match self.prepare_booking(&one, false, now).await {
                Ok((mut row, _)) => {
                    row.series_id = Some(series.clone());
                    rows.push(row);
                }
                // A taken week is named whichever it is; other bad input of the first occurrence
                // (outside availability, in the past) is the request's own fault and said as is.
                Err(CoreError::Conflict(_)) => {
                    not_free.push(local_date(&tz, start).map(|d| d.to_string()).unwrap_or_default());
                }
                Err(CoreError::Invalid(_)) if !rows.is_empty() || !not_free.is_empty() => {
                    not_free.push(local_date(&tz, start).map(|d| d.to_string()).unwrap_or_default());
                }
                Err(e) => return Err(e),
            }
        }
        if !not_free.is_empty() {
            return Err(CoreError::Conflict(format!("the series is not free on {} (nothing was booked)", not_free.join(", "))));
        }
        // Two occurrences of one series never overlap each other (weeks apart), so the rows
        // only need checking against the others already booked.
        Ok(rows)
    }

    /// Cancels the occurrences of a series that are still booked and in the future; freed time
    /// is offered to the waitlist. Returns how many were cancelled.
    pub async fn cancel_series(&self, actor: &Actor, purpose: PurposeOfUse, series_id: &str, reason: &str) -> Result<usize, CoreError> {
        let rows = if well_formed_id(series_id, 24) { self.inner.store.series_appointments(series_id).await? } else { Vec::new() };
        let Some(first) = rows.first() else {
            self.gate(actor, Operation::AppointmentSeriesCancel, purpose, &Target::Anywhere, ("Appointment", None)).await?;
            return Err(CoreError::NotFound { resource: "the appointment series".into() });
        };
        let (_, allowed) = self
            .gate_patient(actor, Operation::AppointmentSeriesCancel, purpose, AuditAction::Update, "Appointment", &first.patient_id)
            .await?;
        let now = self.inner.clock.now_micros();
        if !carevault_domain::schedule::CANCEL_REASONS.contains(&reason) {
            let e = bad("reason", "a cancellation needs a reason: pat, prov, maint or oth");
            let d = Draft::new(now, AuditAction::Update, e.outcome())
                .by(actor)
                .resource("Appointment", None)
                .patient(&first.patient_id)
                .purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(e);
        }
        let who = actor.audit_name();
        let mut ops = Vec::new();
        let mut events = Vec::new();
        for r in rows.iter().filter(|r| r.status == "booked" && r.start_at > now) {
            ops.push(
                ScheduleChange::AppointmentStatus {
                    id: r.id.clone(),
                    from: "booked".into(),
                    to: "cancelled".into(),
                    reason: Some(reason.into()),
                    actor: who.clone(),
                    at: now,
                }
                .into(),
            );
            events.push(
                Draft::new(now, AuditAction::Update, Outcome::Success)
                    .by(actor)
                    .resource("Appointment", Some(&r.id))
                    .patient(&r.patient_id)
                    .purpose(purpose)
                    .review(&allowed),
            );
        }
        let cancelled = ops.len();
        if cancelled == 0 {
            return Ok(0);
        }
        // Each freed occurrence goes to a different waiting entry.
        let mut offered: Vec<String> = Vec::new();
        for r in rows.iter().filter(|r| r.status == "booked" && r.start_at > now) {
            if let Some(id) = self.offer_freed(actor, purpose, r, now, &offered, &mut ops, &mut events).await? {
                offered.push(id);
            }
        }
        let lost = Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource("Appointment", None).purpose(purpose);
        self.inner.writer.write(ops, events, Some(lost)).await?;
        Ok(cancelled)
    }

    /// Puts a patient on the waitlist for a practitioner at a location between two local dates.
    pub async fn waitlist_add(&self, actor: &Actor, purpose: PurposeOfUse, req: &WaitlistRequest) -> Result<WaitlistView, CoreError> {
        let (_, allowed) =
            self.gate_patient(actor, Operation::WaitlistAdd, purpose, AuditAction::Create, "Waitlist", &req.patient_id).await?;
        let now = self.inner.clock.now_micros();
        let row = match self.plan_waitlist(req, now).await {
            Ok(r) => r,
            Err(e) => {
                let d = Draft::new(now, AuditAction::Create, e.outcome())
                    .by(actor)
                    .resource("Waitlist", None)
                    .patient(&req.patient_id)
                    .purpose(purpose);
                self.inner.writer.append(d).await?;
                return Err(e);
            }
        };
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource("Waitlist", Some(&row.id))
            .patient(&req.patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.write(vec![ScheduleChange::InsertWaitlist(Box::new(row.clone())).into()], vec![ev], None).await?;
        Ok(row.into())
    }

    async fn plan_waitlist(&self, req: &WaitlistRequest, now: i64) -> Result<WaitlistRow, CoreError> {
        let (_, tz) = self.practice_place(&req.practitioner_id, &req.location_id).await?;
        if !(5..=480).contains(&req.minutes) {
            return Err(bad("minutes", "between 5 and 480 minutes"));
        }
        let (from, to) = (parse_date("from", &req.from)?, parse_date("to", &req.to)?);
        if to < from || (to - from).get_days() > 180 {
            return Err(bad("to", "on or after from, at most 180 days later"));
        }
        let end_day = to.tomorrow().map_err(|_| bad("to", "out of range"))?;
        let (Some(earliest), Some(latest)) = (local_midnight(&tz, from), local_midnight(&tz, end_day)) else {
            return Err(bad("from", "out of range"));
        };
        if latest <= now {
            return Err(bad("to", "the window is already over"));
        }
        Ok(WaitlistRow {
            id: hex::encode(carevault_crypto::random_bytes::<12>()),
            patient_id: req.patient_id.clone(),
            practitioner_id: req.practitioner_id.clone(),
            location_id: req.location_id.clone(),
            minutes: i64::from(req.minutes),
            earliest_at: earliest.max(now),
            latest_at: latest,
            status: "waiting".into(),
            offered_start: None,
            offered_end: None,
            offered_at: None,
            appointment_id: None,
            created_at: now,
        })
    }

    /// The waitlist of a location (optionally one status): only entries of patients the actor
    /// may see appear; the listing is audited as a search covering them.
    pub async fn waitlist(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        location_id: &str,
        status: Option<&str>,
    ) -> Result<Vec<WaitlistView>, CoreError> {
        self.gate(actor, Operation::WaitlistList, purpose, &Target::Anywhere, ("Waitlist", None)).await?;
        if status.is_some_and(|s| !["waiting", "offered", "booked", "withdrawn"].contains(&s)) {
            return Err(bad("status", "waiting, offered, booked or withdrawn"));
        }
        let rows = self.inner.store.waitlist(location_id, status).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.patient_id.clone()).collect();
        let visible = self.visible_patients(actor, Operation::WaitlistList, purpose, &ids).await?;
        let rows: Vec<WaitlistRow> = rows.into_iter().filter(|r| visible.contains_key(&r.patient_id)).collect();
        let covered: Vec<String> = dedup(rows.iter().map(|r| r.patient_id.clone()));
        let mut d = Draft::new(self.inner.clock.now_micros(), AuditAction::Search, Outcome::Success)
            .by(actor)
            .resource("Waitlist", None)
            .purpose(purpose)
            .disclosing(&covered);
        d.review = review_marks(&covered, &visible);
        self.inner.writer.append(d).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Answers the offer made to a waitlist entry: `accept` books the offered time for the
    /// patient (it must still be free) and closes the entry; declining returns the entry to
    /// the list and offers the time to the next one waiting.
    pub async fn answer_waitlist_offer(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        id: &str,
        accept: bool,
    ) -> Result<Option<AppointmentView>, CoreError> {
        let row = if well_formed_id(id, 24) { self.inner.store.waitlist_entry(id).await? } else { None };
        let Some(entry) = row else {
            self.gate(actor, Operation::WaitlistAnswer, purpose, &Target::Anywhere, ("Waitlist", None)).await?;
            return Err(CoreError::NotFound { resource: format!("Waitlist/{}", crate::audit::audit_safe_id(id)) });
        };
        let (_, allowed) =
            self.gate_patient(actor, Operation::WaitlistAnswer, purpose, AuditAction::Update, "Waitlist", &entry.patient_id).await?;
        let now = self.inner.clock.now_micros();
        let pid = entry.patient_id.as_str();
        let refuse = |e: CoreError| async move {
            let d =
                Draft::new(now, AuditAction::Update, e.outcome()).by(actor).resource("Waitlist", Some(id)).patient(pid).purpose(purpose);
            match self.inner.writer.append(d).await {
                Ok(_) => e,
                Err(w) => w,
            }
        };
        let (Some(start), "offered") = (entry.offered_start, entry.status.as_str()) else {
            return Err(refuse(CoreError::Conflict(format!("the entry has no open offer (it is {})", entry.status))).await);
        };
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("Waitlist", Some(id))
            .patient(pid)
            .purpose(purpose)
            .review(&allowed);
        let lost = Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource("Waitlist", Some(id)).purpose(purpose);
        if accept {
            let req = BookRequest {
                patient_id: entry.patient_id.clone(),
                practitioner_id: entry.practitioner_id.clone(),
                location_id: entry.location_id.clone(),
                start,
                minutes: Some(u16::try_from(entry.minutes).unwrap_or(0)),
                ..Default::default()
            };
            let appt = match self.prepare_booking(&req, false, now).await {
                Ok((row, _)) => row,
                Err(e) => return Err(refuse(e).await),
            };
            let booked = Draft::new(now, AuditAction::Create, Outcome::Success)
                .by(actor)
                .resource("Appointment", Some(&appt.id))
                .patient(pid)
                .purpose(purpose)
                .review(&allowed);
            let ops = vec![
                ScheduleChange::BookAppointment { row: Box::new(appt.clone()), allow_overlap: false }.into(),
                ScheduleChange::SetWaitlistStatus { id: id.into(), from: "offered", to: "booked", appointment_id: Some(appt.id.clone()) }
                    .into(),
            ];
            self.inner.writer.write(ops, vec![ev, booked], Some(lost)).await?;
            Ok(Some(appt.into()))
        } else {
            let mut ops =
                vec![ScheduleChange::SetWaitlistStatus { id: id.into(), from: "offered", to: "waiting", appointment_id: None }.into()];
            let mut events = vec![ev];
            let freed = carevault_store::AppointmentRow {
                id: String::new(),
                patient_id: entry.patient_id.clone(),
                practitioner_id: entry.practitioner_id.clone(),
                location_id: entry.location_id.clone(),
                start_at: start,
                // The whole freed time goes on, not only the declining entry's length.
                end_at: entry.offered_end.unwrap_or(start + entry.minutes * 60_000_000),
                status: "cancelled".into(),
                created_at: now,
                room_id: None,
                type_id: None,
                series_id: None,
            };
            self.offer_freed(actor, purpose, &freed, now, &[id.to_string()], &mut ops, &mut events).await?;
            self.inner.writer.write(ops, events, Some(lost)).await?;
            Ok(None)
        }
    }

    /// Appointments matching a search (a provider's day or week, a patient's visits, a
    /// location's day): only appointments of patients the actor may see, one audit record
    /// covering them.
    pub async fn search_appointments(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        params: &[(String, String)],
    ) -> Result<Vec<AppointmentView>, CoreError> {
        self.gate(actor, Operation::AppointmentSearch, purpose, &Target::Anywhere, ("Appointment", None)).await?;
        let q = match AppointmentQuery::parse(params) {
            Ok(q) => q,
            Err(e) => {
                let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Search, Outcome::Invalid)
                    .by(actor)
                    .resource("Appointment", None)
                    .purpose(purpose);
                self.inner.writer.append(d).await?;
                return Err(CoreError::Invalid(e));
            }
        };
        let filter = AppointmentFilter {
            from: q.from,
            to: q.to,
            practitioner_id: q.practitioner_id,
            patient_id: q.patient_id,
            location_id: q.location_id,
            status: q.status,
            // Some rows may be hidden from this actor: read a little more than the page.
            limit: i64::try_from(q.count * 4).unwrap_or(2000),
        };
        let rows = self.inner.store.search_appointments(&filter).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.patient_id.clone()).collect();
        let visible = self.visible_patients(actor, Operation::AppointmentSearch, purpose, &ids).await?;
        let rows: Vec<_> = rows.into_iter().filter(|r| visible.contains_key(&r.patient_id)).take(q.count).collect();
        let covered = dedup(rows.iter().map(|r| r.patient_id.clone()));
        let mut d = Draft::new(self.inner.clock.now_micros(), AuditAction::Search, Outcome::Success)
            .by(actor)
            .resource("Appointment", None)
            .purpose(purpose)
            .disclosing(&covered);
        d.review = review_marks(&covered, &visible);
        self.inner.writer.append(d).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Of `patient_ids`, those the actor may see for `op` (with their sensitive flags), from
    /// one lookup of their scopes and flags.
    pub(crate) async fn visible_patients(
        &self,
        actor: &Actor,
        op: Operation,
        purpose: PurposeOfUse,
        patient_ids: &[String],
    ) -> Result<HashMap<String, Vec<SensitiveCategory>>, CoreError> {
        let ids = dedup(patient_ids.iter().cloned());
        let mut out = HashMap::new();
        for (pid, access) in self.inner.store.patients_access(&ids).await? {
            let facts = PatientFacts {
                id: pid.clone(),
                scope: access.scope,
                flags: access.flags.iter().filter_map(|f| SensitiveCategory::parse(f)).collect(),
                relationship: false,
                break_glass: false,
            };
            if authz::check(actor, op, purpose, &Target::Patient(&facts)).is_ok() {
                out.insert(pid, facts.flags);
            }
        }
        Ok(out)
    }
}

fn dedup(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = ids.collect();
    v.sort();
    v.dedup();
    v
}

/// The review marks (`sensitive:<flag>`) of the flagged patients among `covered`.
fn review_marks(covered: &[String], flags: &HashMap<String, Vec<SensitiveCategory>>) -> Option<String> {
    let mut marks: Vec<String> = Vec::new();
    for f in covered.iter().filter_map(|p| flags.get(p)).flatten() {
        let m = format!("sensitive:{}", f.id());
        if !marks.contains(&m) {
            marks.push(m);
        }
    }
    (!marks.is_empty()).then(|| marks.join(" "))
}
