//! Rows and statements of the practice directory: practitioners and their roles.

use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

use crate::rows::get;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerRow {
    pub id: String,
    pub user_id: Option<String>,
    pub npi: String,
    pub family: String,
    pub given: String,
    pub active: bool,
    pub created_at: i64,
}

impl PractitionerRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(PractitionerRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            npi: get(r, "npi")?,
            family: get(r, "family")?,
            given: get(r, "given")?,
            active: get::<i64>(r, "active")? != 0,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerRoleRow {
    pub id: String,
    pub practitioner_id: String,
    pub organization_id: String,
    pub location_id: Option<String>,
    pub specialty: Option<String>,
    pub created_at: i64,
}

impl PractitionerRoleRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(PractitionerRoleRow {
            id: get(r, "id")?,
            practitioner_id: get(r, "practitioner_id")?,
            organization_id: get(r, "organization_id")?,
            location_id: get(r, "location_id")?,
            specialty: get(r, "specialty")?,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityRow {
    pub id: String,
    pub practitioner_id: String,
    pub location_id: String,
    pub weekday: i64,
    pub start_minute: i64,
    pub end_minute: i64,
    pub created_at: i64,
}

impl AvailabilityRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(AvailabilityRow {
            id: get(r, "id")?,
            practitioner_id: get(r, "practitioner_id")?,
            location_id: get(r, "location_id")?,
            weekday: get(r, "weekday")?,
            start_minute: get(r, "start_minute")?,
            end_minute: get(r, "end_minute")?,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentRow {
    pub id: String,
    pub patient_id: String,
    pub practitioner_id: String,
    pub location_id: String,
    pub start_at: i64,
    pub end_at: i64,
    pub status: String,
    pub created_at: i64,
    /// The room the appointment holds (no two live appointments share a room's time).
    pub room_id: Option<String>,
    pub type_id: Option<String>,
    /// The recurring series it belongs to.
    pub series_id: Option<String>,
}

impl AppointmentRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(AppointmentRow {
            id: get(r, "id")?,
            patient_id: get(r, "patient_id")?,
            practitioner_id: get(r, "practitioner_id")?,
            location_id: get(r, "location_id")?,
            start_at: get(r, "start_at")?,
            end_at: get(r, "end_at")?,
            status: get(r, "status")?,
            created_at: get(r, "created_at")?,
            room_id: get(r, "room_id")?,
            type_id: get(r, "type_id")?,
            series_id: get(r, "series_id")?,
        })
    }
}

/// The outcome of a booking inside the write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booked {
    Yes,
    PractitionerBusy,
    RoomBusy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentTypeRow {
    pub id: String,
    pub organization_id: String,
    pub code: String,
    pub name: String,
    pub minutes: i64,
    pub active: bool,
    pub created_at: i64,
}

impl AppointmentTypeRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(AppointmentTypeRow {
            id: get(r, "id")?,
            organization_id: get(r, "organization_id")?,
            code: get(r, "code")?,
            name: get(r, "name")?,
            minutes: get(r, "minutes")?,
            active: get::<i64>(r, "active")? != 0,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitlistRow {
    pub id: String,
    pub patient_id: String,
    pub practitioner_id: String,
    pub location_id: String,
    pub minutes: i64,
    pub earliest_at: i64,
    pub latest_at: i64,
    /// waiting, offered, booked or withdrawn.
    pub status: String,
    pub offered_start: Option<i64>,
    /// The end of the freed time offered (an entry may need less of it).
    pub offered_end: Option<i64>,
    pub offered_at: Option<i64>,
    pub appointment_id: Option<String>,
    pub created_at: i64,
}

impl WaitlistRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(WaitlistRow {
            id: get(r, "id")?,
            patient_id: get(r, "patient_id")?,
            practitioner_id: get(r, "practitioner_id")?,
            location_id: get(r, "location_id")?,
            minutes: get(r, "minutes")?,
            earliest_at: get(r, "earliest_at")?,
            latest_at: get(r, "latest_at")?,
            status: get(r, "status")?,
            offered_start: get(r, "offered_start")?,
            offered_end: get(r, "offered_end")?,
            offered_at: get(r, "offered_at")?,
            appointment_id: get(r, "appointment_id")?,
            created_at: get(r, "created_at")?,
        })
    }
}

/// Filters of an appointment search (all optional; a time range is always given).
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    pub from: i64,
    pub to: i64,
    pub practitioner_id: Option<String>,
    pub patient_id: Option<String>,
    pub location_id: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
}

/// The longest an appointment lasts (microseconds): overlap queries bound `start_at` from
/// below by it, so they read an index range instead of a practitioner's whole past.
pub const MAX_SPAN: i64 = 480 * 60_000_000;

/// Appointment states that hold their time (the others free it).
pub const LIVE_APPOINTMENT: &str = "status NOT IN ('cancelled', 'noshow', 'entered-in-error')";

impl Store {
    pub async fn availability(&self, practitioner_id: &str, location_id: &str) -> Result<Vec<AvailabilityRow>> {
        let rows = sqlx::query("SELECT * FROM availability WHERE practitioner_id = $1 AND location_id = $2 ORDER BY weekday, start_minute")
            .bind(practitioner_id)
            .bind(location_id)
            .fetch_all(&self.read)
            .await
            .map_err(classify)?;
        rows.iter().map(AvailabilityRow::from_row).collect()
    }

    pub async fn appointment(&self, id: &str) -> Result<Option<AppointmentRow>> {
        let row = sqlx::query("SELECT * FROM appointments WHERE id = $1").bind(id).fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(AppointmentRow::from_row).transpose()
    }

    /// Closures of a location that apply to `practitioner_id` (the location's own, and the
    /// practitioner's leave there) overlapping [from, to): (start, end) pairs.
    pub async fn closures(&self, location_id: &str, practitioner_id: &str, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT start_at, end_at FROM closures WHERE location_id = $1 AND (practitioner_id IS NULL OR practitioner_id = $2) \
             AND start_at < $4 AND end_at > $3 ORDER BY start_at",
        )
        .bind(location_id)
        .bind(practitioner_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.read)
        .await
        .map_err(classify)?;
        rows.iter().map(|r| Ok((get(r, "start_at")?, get(r, "end_at")?))).collect()
    }

    /// The status changes of an appointment: (at, from, to, reason, actor), oldest first.
    pub async fn appointment_history(&self, id: &str) -> Result<Vec<(i64, String, String, Option<String>, String)>> {
        let rows = sqlx::query(
            "SELECT at, from_status, to_status, reason, actor FROM appointment_history WHERE appointment_id = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| Ok((get(r, "at")?, get(r, "from_status")?, get(r, "to_status")?, get(r, "reason")?, get(r, "actor")?)))
            .collect()
    }

    /// Live appointments of a practitioner overlapping [from, to).
    pub async fn appointments_between(&self, practitioner_id: &str, from: i64, to: i64) -> Result<Vec<AppointmentRow>> {
        let sql = format!("SELECT * FROM appointments WHERE practitioner_id = $1 AND start_at < $3 AND start_at > $2 - {MAX_SPAN} AND end_at > $2 AND {LIVE_APPOINTMENT} ORDER BY start_at");
        let rows = sqlx::query(&sql).bind(practitioner_id).bind(from).bind(to).fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(AppointmentRow::from_row).collect()
    }

    /// Appointments starting in [from, to) that match the filter, by start time.
    pub async fn search_appointments(&self, f: &AppointmentFilter) -> Result<Vec<AppointmentRow>> {
        let mut sql = String::from("SELECT * FROM appointments WHERE start_at >= $1 AND start_at < $2");
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in
            [("practitioner_id", &f.practitioner_id), ("patient_id", &f.patient_id), ("location_id", &f.location_id), ("status", &f.status)]
        {
            if let Some(v) = v {
                binds.push(v.clone());
                sql.push_str(&format!(" AND {col} = ${}", binds.len() + 2));
            }
        }
        sql.push_str(&format!(" ORDER BY start_at, id LIMIT ${}", binds.len() + 3));
        let mut q = sqlx::query(&sql).bind(f.from).bind(f.to);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(f.limit).fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(AppointmentRow::from_row).collect()
    }

    /// Live appointments holding a room during [from, to).
    pub async fn room_appointments_between(&self, room_id: &str, from: i64, to: i64) -> Result<Vec<AppointmentRow>> {
        let sql = format!(
            "SELECT * FROM appointments WHERE room_id = $1 AND start_at < $3 AND start_at > $2 - {MAX_SPAN} AND end_at > $2 AND {LIVE_APPOINTMENT} ORDER BY start_at"
        );
        let rows = sqlx::query(&sql).bind(room_id).bind(from).bind(to).fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(AppointmentRow::from_row).collect()
    }

    pub async fn series_appointments(&self, series_id: &str) -> Result<Vec<AppointmentRow>> {
        let rows = sqlx::query("SELECT * FROM appointments WHERE series_id = $1 ORDER BY start_at")
            .bind(series_id)
            .fetch_all(&self.read)
            .await
            .map_err(classify)?;
        rows.iter().map(AppointmentRow::from_row).collect()
    }

    pub async fn appointment_types(&self, organization_id: Option<&str>) -> Result<Vec<AppointmentTypeRow>> {
        let rows = match organization_id {
            Some(o) => sqlx::query("SELECT * FROM appointment_types WHERE organization_id = $1 ORDER BY code")
                .bind(o)
                .fetch_all(&self.read)
                .await
                .map_err(classify)?,
            None => sqlx::query("SELECT * FROM appointment_types ORDER BY organization_id, code")
                .fetch_all(&self.read)
                .await
                .map_err(classify)?,
        };
        rows.iter().map(AppointmentTypeRow::from_row).collect()
    }

    pub async fn appointment_type(&self, id: &str) -> Result<Option<AppointmentTypeRow>> {
        let row =
            sqlx::query("SELECT * FROM appointment_types WHERE id = $1").bind(id).fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(AppointmentTypeRow::from_row).transpose()
    }

    pub async fn waitlist_entry(&self, id: &str) -> Result<Option<WaitlistRow>> {
        let row = sqlx::query("SELECT * FROM waitlist WHERE id = $1").bind(id).fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(WaitlistRow::from_row).transpose()
    }

    /// The longest-waiting entry that fits a freed time [start, end) of a practitioner at a
    /// location, other than those in `except`: its window holds the time and its minutes divide the freed
    /// length. (The freed time lay on its own slot grid, so a divisor's grid holds its start and
    /// the offer can be booked; a 20-minute entry could not book 09:30 of a freed 30-minute slot
    /// whose grid starts at 08:00.)
    pub async fn waitlist_candidate(
        &self,
        practitioner_id: &str,
        location_id: &str,
        (start, end): (i64, i64),
        except: &[String],
    ) -> Result<Option<WaitlistRow>> {
        let mut sql = String::from(
            "SELECT * FROM waitlist WHERE practitioner_id = $1 AND location_id = $2 AND status = 'waiting' \
             AND earliest_at <= $3 AND latest_at >= $4 AND minutes * 60000000 <= $4 - $3 AND (($4 - $3) / 60000000) % minutes = 0",
        );
        for i in 0..except.len() {
            sql.push_str(&format!(" AND id <> ${}", i + 5));
        }
        sql.push_str(" ORDER BY created_at, id LIMIT 1");
        let mut q = sqlx::query(&sql).bind(practitioner_id).bind(location_id).bind(start).bind(end);
        for e in except {
            q = q.bind(e.clone());
        }
        let row = q.fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(WaitlistRow::from_row).transpose()
    }

    /// Waitlist entries at a location (optionally one status), oldest first.
    pub async fn waitlist(&self, location_id: &str, status: Option<&str>) -> Result<Vec<WaitlistRow>> {
        let rows = match status {
            Some(s) => sqlx::query("SELECT * FROM waitlist WHERE location_id = $1 AND status = $2 ORDER BY created_at, id")
                .bind(location_id)
                .bind(s)
                .fetch_all(&self.read)
                .await
                .map_err(classify)?,
            None => sqlx::query("SELECT * FROM waitlist WHERE location_id = $1 ORDER BY created_at, id")
                .bind(location_id)
                .fetch_all(&self.read)
                .await
                .map_err(classify)?,
        };
        rows.iter().map(WaitlistRow::from_row).collect()
    }

    pub async fn practitioners(&self) -> Result<Vec<PractitionerRow>> {
        let rows = sqlx::query("SELECT * FROM practitioners ORDER BY family, given, id").fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(PractitionerRow::from_row).collect()
    }

    pub async fn practitioner(&self, id: &str) -> Result<Option<PractitionerRow>> {
        let row = sqlx::query("SELECT * FROM practitioners WHERE id = $1").bind(id).fetch_optional(&self.read).await.map_err(classify)?;
        row.as_ref().map(PractitionerRow::from_row).transpose()
    }

    pub async fn practitioner_roles(&self, practitioner_id: Option<&str>) -> Result<Vec<PractitionerRoleRow>> {
        let rows = match practitioner_id {
            Some(p) => sqlx::query("SELECT * FROM practitioner_roles WHERE practitioner_id = $1 ORDER BY created_at, id")
                .bind(p)
                .fetch_all(&self.read)
                .await
                .map_err(classify)?,
            None => {
                sqlx::query("SELECT * FROM practitioner_roles ORDER BY created_at, id").fetch_all(&self.read).await.map_err(classify)?
            }
        };
        rows.iter().map(PractitionerRoleRow::from_row).collect()
    }
}

impl WriteTx {
    /// Replaces a practitioner's weekly availability at a location.
    pub async fn replace_availability(&mut self, practitioner_id: &str, location_id: &str, rows: &[AvailabilityRow]) -> Result<()> {
        sqlx::query("DELETE FROM availability WHERE practitioner_id = $1 AND location_id = $2")
            .bind(practitioner_id)
            .bind(location_id)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        for a in rows {
            sqlx::query(
                "INSERT INTO availability (id, practitioner_id, location_id, weekday, start_minute, end_minute, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(a.id.clone())
            .bind(a.practitioner_id.clone())
            .bind(a.location_id.clone())
            .bind(a.weekday)
            .bind(a.start_minute)
            .bind(a.end_minute)
            .bind(a.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        }
        Ok(())
    }

    /// Inserts an appointment unless a live appointment of the same practitioner overlaps it;
    /// false (and nothing written) when one does. Runs inside the serialized write
    /// transaction, so two concurrent bookings of one slot cannot both pass.
    /// Records a history line without a status change of its own (a rescheduled appointment's
    /// origin).
    pub async fn note_appointment_history(
        &mut self,
        id: &str,
        from: &str,
        to: &str,
        reason: Option<&str>,
        actor: &str,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO appointment_history (id, appointment_id, at, from_status, to_status, reason, actor) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(format!("{id}-{at}-{from}"))
        .bind(id)
        .bind(at)
        .bind(from)
        .bind(to)
        .bind(reason.map(str::to_string))
        .bind(actor)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(())
    }

    pub async fn book_appointment(&mut self, a: &AppointmentRow, allow_overlap: bool) -> Result<Booked> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM appointments WHERE practitioner_id = $1 AND start_at < $3 AND start_at > $2 - {MAX_SPAN} AND end_at > $2 AND {LIVE_APPOINTMENT}"
        );
        let row = sqlx::query(&sql)
            .bind(a.practitioner_id.clone())
            .bind(a.start_at)
            .bind(a.end_at)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(classify)?;
        if get::<i64>(&row, "n")? > 0 && !allow_overlap {
            return Ok(Booked::PractitionerBusy);
        }
        // A room is never double-booked, not even by an overbooking.
        if let Some(room) = &a.room_id {
            let sql = format!(
                "SELECT COUNT(*) AS n FROM appointments WHERE room_id = $1 AND start_at < $3 AND start_at > $2 - {MAX_SPAN} AND end_at > $2 AND {LIVE_APPOINTMENT}"
            );
            let row =
                sqlx::query(&sql).bind(room.clone()).bind(a.start_at).bind(a.end_at).fetch_one(&mut *self.tx).await.map_err(classify)?;
            if get::<i64>(&row, "n")? > 0 {
                return Ok(Booked::RoomBusy);
            }
        }
        sqlx::query(
            "INSERT INTO appointments (id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at, room_id, type_id, series_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(a.id.clone())
        .bind(a.patient_id.clone())
        .bind(a.practitioner_id.clone())
        .bind(a.location_id.clone())
        .bind(a.start_at)
        .bind(a.end_at)
        .bind(a.status.clone())
        .bind(a.created_at)
        .bind(a.room_id.clone())
        .bind(a.type_id.clone())
        .bind(a.series_id.clone())
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(Booked::Yes)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_closure(
        &mut self,
        id: &str,
        location_id: &str,
        practitioner_id: Option<&str>,
        kind: &str,
        start: i64,
        end: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO closures (id, location_id, practitioner_id, kind, start_at, end_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id)
            .bind(location_id)
            .bind(practitioner_id.map(str::to_string))
            .bind(kind)
            .bind(start)
            .bind(end)
            .bind(now)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Moves an appointment from `from` to `to` and records the change; false when its status
    /// is no longer `from` (a concurrent change won).
    pub async fn change_appointment_status(
        &mut self,
        id: &str,
        from: &str,
        to: &str,
        reason: Option<&str>,
        actor: &str,
        at: i64,
    ) -> Result<bool> {
        let r = sqlx::query("UPDATE appointments SET status = $1 WHERE id = $2 AND status = $3")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO appointment_history (id, appointment_id, at, from_status, to_status, reason, actor) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(format!("{id}-{at}-{to}"))
        .bind(id)
        .bind(at)
        .bind(from)
        .bind(to)
        .bind(reason.map(str::to_string))
        .bind(actor)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(true)
    }

    pub async fn insert_appointment_type(&mut self, t: &AppointmentTypeRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO appointment_types (id, organization_id, code, name, minutes, active, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(t.id.clone())
        .bind(t.organization_id.clone())
        .bind(t.code.clone())
        .bind(t.name.clone())
        .bind(t.minutes)
        .bind(i64::from(t.active))
        .bind(t.created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(())
    }

    pub async fn insert_waitlist(&mut self, w: &WaitlistRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO waitlist (id, patient_id, practitioner_id, location_id, minutes, earliest_at, latest_at, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(w.id.clone())
        .bind(w.patient_id.clone())
        .bind(w.practitioner_id.clone())
        .bind(w.location_id.clone())
        .bind(w.minutes)
        .bind(w.earliest_at)
        .bind(w.latest_at)
        .bind(w.status.clone())
        .bind(w.created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// Offers a freed time to a waitlist entry; false when the entry is no longer waiting.
    pub async fn offer_waitlist(&mut self, id: &str, (start, end): (i64, i64), now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE waitlist SET status = 'offered', offered_start = $1, offered_end = $4, offered_at = $2 \
             WHERE id = $3 AND status = 'waiting'",
        )
        .bind(start)
        .bind(now)
        .bind(id)
        .bind(end)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(r.rows_affected() == 1)
    }

    /// Moves a waitlist entry from one status to another; false when it was no longer `from`.
    pub async fn set_waitlist_status(&mut self, id: &str, from: &str, to: &str, appointment_id: Option<&str>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE waitlist SET status = $1, appointment_id = COALESCE($2, appointment_id), \
             offered_start = CASE WHEN $1 = 'waiting' THEN NULL ELSE offered_start END, \
             offered_end = CASE WHEN $1 = 'waiting' THEN NULL ELSE offered_end END WHERE id = $3 AND status = $4",
        )
        .bind(to)
        .bind(appointment_id.map(str::to_string))
        .bind(id)
        .bind(from)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_practitioner(&mut self, p: &PractitionerRow, roles: &[PractitionerRoleRow]) -> Result<()> {
        sqlx::query("INSERT INTO practitioners (id, user_id, npi, family, given, active, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(p.id.clone())
            .bind(p.user_id.clone())
            .bind(p.npi.clone())
            .bind(p.family.clone())
            .bind(p.given.clone())
            .bind(i64::from(p.active))
            .bind(p.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        for r in roles {
            sqlx::query(
                "INSERT INTO practitioner_roles (id, practitioner_id, organization_id, location_id, specialty, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(r.id.clone())
            .bind(r.practitioner_id.clone())
            .bind(r.organization_id.clone())
            .bind(r.location_id.clone())
            .bind(r.specialty.clone())
            .bind(r.created_at)
            .execute(&mut *self.tx)
            .await
            .map_err(classify)?;
        }
        Ok(())
    }
}
