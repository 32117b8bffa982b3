//! Rows and statements of the practice directory: practitioners and their roles.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(r: &'r AnyRow, col: &str) -> Result<T> {
    r.try_get::<T, _>(col).map_err(classify)
}

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
    fn from_row(r: &AnyRow) -> Result<Self> {
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
    fn from_row(r: &AnyRow) -> Result<Self> {
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
    fn from_row(r: &AnyRow) -> Result<Self> {
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
}

impl AppointmentRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(AppointmentRow {
            id: get(r, "id")?,
            patient_id: get(r, "patient_id")?,
            practitioner_id: get(r, "practitioner_id")?,
            location_id: get(r, "location_id")?,
            start_at: get(r, "start_at")?,
            end_at: get(r, "end_at")?,
            status: get(r, "status")?,
            created_at: get(r, "created_at")?,
        })
    }
}

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
        let sql = format!("SELECT * FROM appointments WHERE practitioner_id = $1 AND start_at < $3 AND end_at > $2 AND {LIVE_APPOINTMENT} ORDER BY start_at");
        let rows = sqlx::query(&sql).bind(practitioner_id).bind(from).bind(to).fetch_all(&self.read).await.map_err(classify)?;
        rows.iter().map(AppointmentRow::from_row).collect()
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

    pub async fn book_appointment(&mut self, a: &AppointmentRow, allow_overlap: bool) -> Result<bool> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM appointments WHERE practitioner_id = $1 AND start_at < $3 AND end_at > $2 AND {LIVE_APPOINTMENT}"
        );
        let row = sqlx::query(&sql)
            .bind(a.practitioner_id.clone())
            .bind(a.start_at)
            .bind(a.end_at)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(classify)?;
        if get::<i64>(&row, "n")? > 0 && !allow_overlap {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO appointments (id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(a.id.clone())
        .bind(a.patient_id.clone())
        .bind(a.practitioner_id.clone())
        .bind(a.location_id.clone())
        .bind(a.start_at)
        .bind(a.end_at)
        .bind(a.status.clone())
        .bind(a.created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(classify)?;
        Ok(true)
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
