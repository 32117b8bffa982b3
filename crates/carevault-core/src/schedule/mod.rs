//! Scheduling through the chokepoint: practitioners' weekly availability, free slots and
//! booking. A booking is checked against the free slots (not in the past, inside availability)
//! and then, inside the serialized write transaction, against every live appointment of the
//! practitioner, so concurrent requests for one slot cannot both succeed.

pub(crate) mod changes;

use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{
    check_windows, free_slots, local_date, local_midnight, parse_date, Date, Interval, SlotQuery, WeeklyWindow,
};
use carevault_domain::{AuditAction, InputError, Operation, Outcome, PurposeOfUse};
use carevault_store::{AppointmentRow, AvailabilityRow, UnitKind};

use crate::actor::Actor;
use crate::audit::writer::Op;
use crate::audit::Draft;
use crate::authz::Target;
use crate::error::CoreError;
use crate::schedule::changes::ScheduleChange;
use crate::vault::Vault;

/// A booked appointment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppointmentView {
    pub id: String,
    pub patient_id: String,
    pub practitioner_id: String,
    pub location_id: String,
    /// Unix microseconds (UTC).
    pub start: i64,
    pub end: i64,
    pub status: String,
    pub room_id: Option<String>,
    pub type_id: Option<String>,
    pub series_id: Option<String>,
}

impl From<AppointmentRow> for AppointmentView {
    fn from(r: AppointmentRow) -> Self {
        AppointmentView {
            id: r.id,
            patient_id: r.patient_id,
            practitioner_id: r.practitioner_id,
            location_id: r.location_id,
            start: r.start_at,
            end: r.end_at,
            status: r.status,
            room_id: r.room_id,
            type_id: r.type_id,
            series_id: r.series_id,
        }
    }
}

/// What to book: a patient with a practitioner at a location from `start` (Unix microseconds),
/// for `minutes` or the appointment type's duration, optionally holding a room.
#[derive(Debug, Clone, Default)]
pub struct BookRequest {
    pub patient_id: String,
    pub practitioner_id: String,
    pub location_id: String,
    pub start: i64,
    pub minutes: Option<u16>,
    pub type_id: Option<String>,
    pub room_id: Option<String>,
}

impl BookRequest {
    /// A patient, practitioner and location, a start and a duration; no type, room or series.
    pub fn simple((patient_id, practitioner_id, location_id): (&str, &str, &str), start: i64, minutes: u16) -> BookRequest {
        BookRequest {
            patient_id: patient_id.into(),
            practitioner_id: practitioner_id.into(),
            location_id: location_id.into(),
            start,
            minutes: Some(minutes),
            ..Default::default()
        }
    }
}

fn bad(path: &str, message: &str) -> CoreError {
    CoreError::Invalid(InputError::value(path, message))
}

impl Vault {
    /// The location's organization and time zone, and that the practitioner works there.
    pub(crate) async fn practice_place(&self, practitioner_id: &str, location_id: &str) -> Result<(String, TimeZoneName), CoreError> {
        let Some(loc) = self.inner.store.unit(UnitKind::Location, location_id).await? else {
            return Err(CoreError::NotFound { resource: format!("Location/{}", crate::audit::audit_safe_id(location_id)) });
        };
        let org = loc.organization_id.unwrap_or_default();
        let works_there = self
            .inner
            .store
            .practitioner_roles(Some(practitioner_id))
            .await?
            .iter()
            .any(|r| r.organization_id == org && r.location_id.as_deref().is_none_or(|l| l == location_id));
        if !works_there {
            return Err(CoreError::NotFound { resource: "a role of this practitioner at this location".into() });
        }
        let tz = TimeZoneName::parse("time_zone", loc.time_zone.as_deref().unwrap_or("UTC")).map_err(CoreError::Invalid)?;
        Ok((org, tz))
    }

    pub(crate) fn schedule_purpose(actor: &Actor) -> PurposeOfUse {
        if actor.is_system() {
            PurposeOfUse::SystemAdministration
        } else if actor.privileges.purposes().contains(&PurposeOfUse::Operations) {
            PurposeOfUse::Operations
        } else {
            actor.default_purpose()
        }
    }

    /// Replaces a practitioner's weekly availability at a location.
    pub async fn set_availability(
        &self,
        actor: &Actor,
        practitioner_id: &str,
        location_id: &str,
        windows: &[WeeklyWindow],
    ) -> Result<(), CoreError> {
        let purpose = Self::schedule_purpose(actor);
        self.gate(actor, Operation::AvailabilitySet, purpose, &Target::Anywhere, ("Schedule", None)).await?;
        let (org, _) = self.practice_place(practitioner_id, location_id).await?;
        self.gate(actor, Operation::AvailabilitySet, purpose, &Target::Organization(&org), ("Schedule", None)).await?;
        if let Err(e) = check_windows(windows) {
            return Err(self.audit_input(actor, purpose, AuditAction::Update, "Schedule", e).await);
        }
        let now = self.inner.clock.now_micros();
        let rows = windows
            .iter()
            .map(|w| AvailabilityRow {
                id: hex::encode(carevault_crypto::random_bytes::<12>()),
                practitioner_id: practitioner_id.into(),
                location_id: location_id.into(),
                weekday: i64::from(w.weekday),
                start_minute: i64::from(w.start_minute),
                end_minute: i64::from(w.end_minute),
                created_at: now,
            })
            .collect();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("Schedule", None).purpose(purpose);
        let op =
            ScheduleChange::ReplaceAvailability { practitioner_id: practitioner_id.into(), location_id: location_id.into(), rows }.into();
        self.inner.writer.write(vec![op], vec![ev], None).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn slots_for(
        &self,
        ignore_busy: bool,
        practitioner_id: &str,
        location_id: &str,
        tz: &TimeZoneName,
        from: Date,
        days: u16,
        minutes: u16,
    ) -> Result<Vec<Interval>, CoreError> {
        let windows: Vec<WeeklyWindow> = self
            .inner
            .store
            .availability(practitioner_id, location_id)
            .await?
            .iter()
            .map(|a| WeeklyWindow {
                weekday: u8::try_from(a.weekday).unwrap_or(0),
                start_minute: u16::try_from(a.start_minute).unwrap_or(0),
                end_minute: u16::try_from(a.end_minute).unwrap_or(0),
            })
            .collect();
        // Busy time: every live appointment of the practitioner within the days asked (with a
        // day of margin on both sides for zone offsets).
        let day = 86_400_000_000i64;
        let start = local_midnight(tz, from).unwrap_or(0);
        let busy: Vec<Interval> = self
            .inner
            .store
            .appointments_between(practitioner_id, start - day, start + (i64::from(days) + 1) * day)
            .await?
            .iter()
            .map(|a| Interval { start: a.start_at, end: a.end_at })
            .collect();
        let closed: Vec<Interval> = self
            .inner
            .store
            .closures(location_id, practitioner_id, start - day, start + (i64::from(days) + 1) * day)
            .await?
            .into_iter()
            .map(|(start, end)| Interval { start, end })
            .collect();
        let now = self.inner.clock.now_micros();
        Ok(free_slots(&SlotQuery {
            windows: &windows,
            time_zone: tz,
            from,
            days,
            duration_minutes: minutes,
            closed: &closed,
            busy: if ignore_busy { &[] } else { &busy },
            not_before: now,
        })?)
    }

    /// Closes a location (a holiday: no practitioner) or one practitioner there (leave) for the
    /// local dates `from` to `to`, inclusive. Existing appointments stay; no new slot is offered.
    pub async fn add_closure(
        &self,
        actor: &Actor,
        location_id: &str,
        practitioner_id: Option<&str>,
        from: &str,
        to: &str,
        kind: &str,
    ) -> Result<String, CoreError> {
        let purpose = Self::schedule_purpose(actor);
        self.gate(actor, Operation::ClosureAdd, purpose, &Target::Anywhere, ("Schedule", None)).await?;
        let Some(loc) = self.inner.store.unit(UnitKind::Location, location_id).await? else {
            return Err(CoreError::NotFound { resource: format!("Location/{}", crate::audit::audit_safe_id(location_id)) });
        };
        let org = loc.organization_id.clone().unwrap_or_default();
        self.gate(actor, Operation::ClosureAdd, purpose, &Target::Organization(&org), ("Schedule", None)).await?;
        if let Some(pr) = practitioner_id {
            self.practice_place(pr, location_id).await?;
        }
        let kind_ok = matches!((kind, practitioner_id), ("holiday", None) | ("leave", Some(_)));
        let tz = TimeZoneName::parse("time_zone", loc.time_zone.as_deref().unwrap_or("UTC")).map_err(CoreError::Invalid)?;
        let span = (|| {
            if !kind_ok {
                return Err(InputError::value("kind", "a holiday closes the location (no practitioner); leave is one practitioner's"));
            }
            let (from, to) = (parse_date("from", from)?, parse_date("to", to)?);
            if to < from || (to - from).get_days() > 366 {
                return Err(InputError::value("to", "on or after from, at most a year later"));
            }
            let end_day = to.tomorrow().map_err(|_| InputError::value("to", "out of range"))?;
            match (local_midnight(&tz, from), local_midnight(&tz, end_day)) {
                (Some(start), Some(end)) => Ok((start, end)),
                _ => Err(InputError::value("from", "out of range")),
            }
        })();
        let (start, end) = match span {
            Ok(x) => x,
            Err(e) => return Err(self.audit_input(actor, purpose, AuditAction::Create, "Schedule", e).await),
        };
        let now = self.inner.clock.now_micros();
        let id = hex::encode(carevault_crypto::random_bytes::<12>());
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success).by(actor).resource("Schedule", None).purpose(purpose);
        let op = ScheduleChange::InsertClosure {
            id: id.clone(),
            location_id: location_id.into(),
            practitioner_id: practitioner_id.map(str::to_string),
            kind: kind.into(),
            start,
            end,
            now,
        }
        .into();
        self.inner.writer.write(vec![op], vec![ev], None).await?;
        Ok(id)
    }

    /// Free slots of a practitioner at a location from local date `from` (YYYY-MM-DD).
    pub async fn free_slots(
        &self,
        actor: &Actor,
        practitioner_id: &str,
        location_id: &str,
        from: &str,
        days: u16,
        minutes: u16,
    ) -> Result<Vec<Interval>, CoreError> {
        let purpose = Self::schedule_purpose(actor);
        self.gate(actor, Operation::SlotSearch, purpose, &Target::Anywhere, ("Slot", None)).await?;
        let (org, tz) = self.practice_place(practitioner_id, location_id).await?;
        self.gate(actor, Operation::SlotSearch, purpose, &Target::Organization(&org), ("Slot", None)).await?;
        let from = parse_date("from", from)?;
        self.slots_for(false, practitioner_id, location_id, &tz, from, days, minutes).await
    }

    /// Books `minutes` from `start` (Unix microseconds) for a patient. The time must be a free
    /// slot; a concurrent booking of the same time loses with a conflict.
    #[allow(clippy::too_many_arguments)]
    pub async fn book_appointment(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        practitioner_id: &str,
        location_id: &str,
        start: i64,
        minutes: u16,
    ) -> Result<AppointmentView, CoreError> {
        self.book(actor, purpose, &BookRequest::simple((patient_id, practitioner_id, location_id), start, minutes), false).await
    }

    /// Overbooks: the time must lie inside the practitioner's availability (a slot, taken or
    /// not); needs `appointment.overbook`. The audit record says so.
    #[allow(clippy::too_many_arguments)]
    pub async fn overbook_appointment(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        practitioner_id: &str,
        location_id: &str,
        start: i64,
        minutes: u16,
    ) -> Result<AppointmentView, CoreError> {
        self.book(actor, purpose, &BookRequest::simple((patient_id, practitioner_id, location_id), start, minutes), true).await
    }

    /// Books (or, with `overbook`, overbooks) what `req` asks for.
    pub async fn book(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        req: &BookRequest,
        overbook: bool,
    ) -> Result<AppointmentView, CoreError> {
        let op = if overbook { Operation::AppointmentOverbook } else { Operation::AppointmentBook };
        let patient_id = req.patient_id.as_str();
        let (_, allowed) = self.gate_patient(actor, op, purpose, AuditAction::Create, "Appointment", patient_id).await?;
        let now = self.inner.clock.now_micros();
        let row = match self.prepare_booking(req, overbook, now).await {
            Ok((row, _)) => row,
            Err(e) => return Err(self.refuse_booking(actor, purpose, patient_id, now, e).await),
        };
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource("Appointment", Some(&row.id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        let lost = Draft::new(now, AuditAction::Create, Outcome::Conflict)
            .by(actor)
            .resource("Appointment", None)
            .patient(patient_id)
            .purpose(purpose);
        let ev = if overbook {
            let sealed = self.inner.sealer.seal_details(&ev.event_id, br#"{"overbooked":true}"#)?;
            ev.details(sealed)
        } else {
            ev
        };
        self.inner
            .writer
            .write(
                vec![ScheduleChange::BookAppointment { row: Box::new(row.clone()), allow_overlap: overbook }.into()],
                vec![ev],
                Some(lost),
            )
            .await?;
        Ok(row.into())
    }

    /// Audits a refused booking and hands the error back (or the audit failure).
    pub(crate) async fn refuse_booking(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str, now: i64, e: CoreError) -> CoreError {
        let d =
            Draft::new(now, AuditAction::Create, e.outcome()).by(actor).resource("Appointment", None).patient(patient_id).purpose(purpose);
        match self.inner.writer.append(d).await {
            Ok(_) => e,
            Err(w) => w,
        }
    }

    /// Checks a booking against the directory, the clock, the appointment type, the room and
    /// the free slots, and builds its row (nothing written).
    pub(crate) async fn prepare_booking(
        &self,
        req: &BookRequest,
        overbook: bool,
        now: i64,
    ) -> Result<(AppointmentRow, TimeZoneName), CoreError> {
        let (org, tz) = self.practice_place(&req.practitioner_id, &req.location_id).await?;
        let minutes = match &req.type_id {
            Some(t) => {
                let ty = self.inner.store.appointment_type(t).await?.filter(|ty| ty.organization_id == org && ty.active);
                let Some(ty) = ty else { return Err(bad("appointmentType", "not an active appointment type of this organization")) };
                let m = u16::try_from(ty.minutes).unwrap_or(0);
                if req.minutes.is_some_and(|x| x != m) {
                    return Err(bad("minutesDuration", &format!("the appointment type lasts {m} minutes")));
                }
                m
            }
            None => req.minutes.ok_or_else(|| bad("minutesDuration", "give a duration or an appointment type"))?,
        };
        if !(5..=480).contains(&minutes) {
            return Err(bad("minutesDuration", "between 5 and 480 minutes"));
        }
        let start = req.start;
        if start <= now {
            return Err(bad("start", "an appointment cannot be booked in the past"));
        }
        let end = start + i64::from(minutes) * 60_000_000;
        if let Some(room) = &req.room_id {
            let found = self.inner.store.unit(UnitKind::Room, room).await?;
            if found.is_none_or(|r| r.location_id.as_deref() != Some(req.location_id.as_str())) {
                return Err(bad("room", "not a room of this location"));
            }
            if !self.inner.store.room_appointments_between(room, start, end).await?.is_empty() {
                return Err(CoreError::Conflict("the room is already booked at that time".into()));
            }
        }
        let Some(local_date) = local_date(&tz, start) else { return Err(bad("start", "not a valid instant")) };
        let slots = self.slots_for(overbook, &req.practitioner_id, &req.location_id, &tz, local_date, 1, minutes).await?;
        if !slots.iter().any(|s| s.start == start && s.end == end) {
            // Either outside availability or already taken (seen before the transaction).
            let taken = !self.inner.store.appointments_between(&req.practitioner_id, start, end).await?.is_empty();
            return Err(if taken {
                CoreError::Conflict("the slot is already booked".into())
            } else {
                bad("start", "not a free slot of this practitioner at this location")
            });
        }
        let row = AppointmentRow {
            id: hex::encode(carevault_crypto::random_bytes::<16>()),
            patient_id: req.patient_id.clone(),
            practitioner_id: req.practitioner_id.clone(),
            location_id: req.location_id.clone(),
            start_at: start,
            end_at: end,
            status: "booked".into(),
            created_at: now,
            room_id: req.room_id.clone(),
            type_id: req.type_id.clone(),
            series_id: None,
        };
        Ok((row, tz))
    }

    /// Reads one appointment (who, with whom, where, when): a demographic operation on its
    /// patient, audited.
    pub async fn read_appointment(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<AppointmentView, CoreError> {
        let row = if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) { self.inner.store.appointment(id).await? } else { None };
        let Some(row) = row else {
            self.gate(actor, Operation::AppointmentRead, purpose, &Target::Anywhere, ("Appointment", None)).await?;
            let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Read, Outcome::NotFound)
                .by(actor)
                .resource("Appointment", None)
                .purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("Appointment/{}", crate::audit::audit_safe_id(id)) });
        };
        let (_, allowed) =
            self.gate_patient(actor, Operation::AppointmentRead, purpose, AuditAction::Read, "Appointment", &row.patient_id).await?;
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource("Appointment", Some(id))
            .patient(&row.patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.append(d).await?;
        Ok(row.into())
    }
}

impl Vault {
    /// Moves an appointment along its status flow (check-in, in room, fulfilled, cancelled with
    /// a reason, no-show). Every change is kept; a cancelled or no-show appointment frees its
    /// time.
    pub async fn set_appointment_status(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        id: &str,
        to: &str,
        reason: Option<&str>,
    ) -> Result<(), CoreError> {
        use carevault_domain::schedule::{transition_allowed, CANCEL_REASONS, STATUSES};
        let row = if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) { self.inner.store.appointment(id).await? } else { None };
        let Some(row) = row else {
            self.gate(actor, Operation::AppointmentStatus, purpose, &Target::Anywhere, ("Appointment", None)).await?;
            return Err(CoreError::NotFound { resource: format!("Appointment/{}", crate::audit::audit_safe_id(id)) });
        };
        let (_, allowed) =
            self.gate_patient(actor, Operation::AppointmentStatus, purpose, AuditAction::Update, "Appointment", &row.patient_id).await?;
        let now = self.inner.clock.now_micros();
        let checked = if !STATUSES.contains(&to) {
            Err(bad("status", "one of booked, arrived, checked-in, fulfilled, cancelled, noshow"))
        } else if to == "cancelled" && !reason.is_some_and(|r| CANCEL_REASONS.contains(&r)) {
            Err(bad("reason", "a cancellation needs a reason: pat, prov, maint or oth"))
        } else if to != "cancelled" && reason.is_some() {
            Err(bad("reason", "only a cancellation has a reason"))
        } else if !transition_allowed(&row.status, to) {
            Err(CoreError::Conflict(format!("an appointment cannot go from {} to {to}", row.status)))
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            let d = Draft::new(now, AuditAction::Update, e.outcome())
                .by(actor)
                .resource("Appointment", Some(id))
                .patient(&row.patient_id)
                .purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(e);
        }
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("Appointment", Some(id))
            .patient(&row.patient_id)
            .purpose(purpose)
            .review(&allowed);
        let lost = Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource("Appointment", Some(id)).purpose(purpose);
        let mut ops = vec![ScheduleChange::AppointmentStatus {
            id: id.into(),
            from: row.status.clone(),
            to: to.into(),
            reason: reason.map(str::to_string),
            actor: actor.audit_name(),
            at: now,
        }
        .into()];
        let mut events = vec![ev];
        if to == "cancelled" {
            self.offer_freed(actor, purpose, &row, now, &[], &mut ops, &mut events).await?;
        }
        self.inner.writer.write(ops, events, Some(lost)).await?;
        Ok(())
    }

    /// Moves a booked appointment to another free slot of the same practitioner and location,
    /// in one transaction: the old one is cancelled (reason `rescheduled`), the new one booked,
    /// and each history points at the other.
    pub async fn reschedule_appointment(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        id: &str,
        new_start: i64,
    ) -> Result<AppointmentView, CoreError> {
        let row = if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) { self.inner.store.appointment(id).await? } else { None };
        let Some(row) = row else {
            self.gate(actor, Operation::AppointmentReschedule, purpose, &Target::Anywhere, ("Appointment", None)).await?;
            return Err(CoreError::NotFound { resource: format!("Appointment/{}", crate::audit::audit_safe_id(id)) });
        };
        let (_, allowed) = self
            .gate_patient(actor, Operation::AppointmentReschedule, purpose, AuditAction::Update, "Appointment", &row.patient_id)
            .await?;
        let now = self.inner.clock.now_micros();
        let minutes = u16::try_from((row.end_at - row.start_at) / 60_000_000).unwrap_or(0);
        let pid = row.patient_id.as_str();
        let refuse = |e: CoreError| async move {
            let d =
                Draft::new(now, AuditAction::Update, e.outcome()).by(actor).resource("Appointment", Some(id)).patient(pid).purpose(purpose);
            match self.inner.writer.append(d).await {
                Ok(_) => e,
                Err(w) => w,
            }
        };
        if row.status != "booked" {
            return Err(
                refuse(CoreError::Conflict(format!("only a booked appointment can be rescheduled (this one is {})", row.status))).await
            );
        }
        let (_, tz) = self.practice_place(&row.practitioner_id, &row.location_id).await?;
        let Some(date) = local_date(&tz, new_start).filter(|_| new_start > now) else {
            return Err(refuse(bad("start", "a future instant")).await);
        };
        let end = new_start + i64::from(minutes) * 60_000_000;
        let slots = self.slots_for(false, &row.practitioner_id, &row.location_id, &tz, date, 1, minutes).await?;
        if !slots.iter().any(|s| s.start == new_start && s.end == end) {
            return Err(refuse(bad("start", "not a free slot of this practitioner at this location")).await);
        }
        let new_id = hex::encode(carevault_crypto::random_bytes::<16>());
        let new_row = AppointmentRow {
            id: new_id.clone(),
            start_at: new_start,
            end_at: end,
            status: "booked".into(),
            created_at: now,
            ..row.clone()
        };
        let who = actor.audit_name();
        let ops = vec![
            ScheduleChange::AppointmentStatus {
                id: row.id.clone(),
                from: "booked".into(),
                to: "cancelled".into(),
                reason: Some(format!("rescheduled:{new_id}")),
                actor: who.clone(),
                at: now,
            }
            .into(),
            ScheduleChange::BookAppointment { row: Box::new(new_row.clone()), allow_overlap: false }.into(),
            ScheduleChange::NoteAppointmentHistory {
                id: new_id.clone(),
                from: format!("rescheduled:{}", row.id),
                to: "booked".into(),
                reason: None,
                actor: who,
                at: now,
            }
            .into(),
        ];
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("Appointment", Some(id))
            .patient(&row.patient_id)
            .purpose(purpose)
            .review(&allowed);
        let lost = Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource("Appointment", Some(id)).purpose(purpose);
        let mut ops = ops;
        let mut events = vec![ev];
        self.offer_freed(actor, purpose, &row, now, &[], &mut ops, &mut events).await?;
        self.inner.writer.write(ops, events, Some(lost)).await?;
        Ok(new_row.into())
    }

    /// When a future appointment's time is freed (and no other live appointment of the
    /// practitioner still holds it), offers it to the longest-waiting waitlist entry that fits,
    /// in the same transaction (and audited as a change of that entry). Returns the entry offered.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn offer_freed(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        freed: &AppointmentRow,
        now: i64,
        except: &[String],
        ops: &mut Vec<Op>,
        events: &mut Vec<Draft>,
    ) -> Result<Option<String>, CoreError> {
        if freed.start_at <= now {
            return Ok(None);
        }
        // Cancelling an overbooking (or the appointment it overlaps) leaves the time taken:
        // only time that is free now is offered.
        let still_taken = self
            .inner
            .store
            .appointments_between(&freed.practitioner_id, freed.start_at, freed.end_at)
            .await?
            .iter()
            .any(|a| a.id != freed.id);
        if still_taken {
            return Ok(None);
        }
        let span = (freed.start_at, freed.end_at);
        let Some(c) = self.inner.store.waitlist_candidate(&freed.practitioner_id, &freed.location_id, span, except).await? else {
            return Ok(None);
        };
        ops.push(ScheduleChange::OfferWaitlist { id: c.id.clone(), span, now }.into());
        events.push(
            Draft::new(now, AuditAction::Update, Outcome::Success)
                .by(actor)
                .resource("Waitlist", Some(&c.id))
                .patient(&c.patient_id)
                .purpose(purpose),
        );
        Ok(Some(c.id))
    }

    /// The status history of an appointment (reading it is reading the appointment).
    pub async fn appointment_history(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        id: &str,
    ) -> Result<Vec<(i64, String, String, Option<String>)>, CoreError> {
        self.read_appointment(actor, purpose, id).await?;
        Ok(self.inner.store.appointment_history(id).await?.into_iter().map(|(at, f, t, r, _)| (at, f, t, r)).collect())
    }
}

impl AppointmentView {
    /// FHIR R4 Appointment.
    pub fn to_fhir(&self) -> serde_json::Value {
        let mut a = serde_json::json!({
            "resourceType": "Appointment",
            "id": self.id,
            "status": self.status,
            "start": crate::format_instant(self.start),
            "end": crate::format_instant(self.end),
            "minutesDuration": (self.end - self.start) / 60_000_000,
            "participant": [
                {"actor": {"reference": format!("Patient/{}", self.patient_id)}, "status": "accepted"},
                {"actor": {"reference": format!("Practitioner/{}", self.practitioner_id)}, "status": "accepted"},
                {"actor": {"reference": format!("Location/{}", self.location_id)}, "status": "accepted"},
            ],
        });
        if let Some(room) = &self.room_id {
            if let Some(p) = a["participant"].as_array_mut() {
                p.push(serde_json::json!({"actor": {"reference": format!("Location/{room}")}, "status": "accepted"}));
            }
        }
        if let Some(t) = &self.type_id {
            a["appointmentType"] = serde_json::json!({"coding": [{"system": "urn:carevault:appointment-type", "code": t}]});
        }
        if let Some(s) = &self.series_id {
            a["identifier"] = serde_json::json!([{"system": "urn:carevault:appointment-series", "value": s}]);
        }
        a
    }
}
