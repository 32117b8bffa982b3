//! What access decisions about a patient read: the patient's scope and sensitive flags, care
//! relationships; and the statements that change them (placement, flags, care teams).

use super::{get, ScopeCols};
use crate::dialect::classify;
use crate::lite::Arg;
use crate::{PatientVersionRow, Result, Store, WriteTx};

/// The facts access decisions about one patient need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAccessRow {
    pub scope: ScopeCols,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareRelationshipRow {
    pub patient_id: String,
    pub user_id: String,
    pub relation: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub created_by: String,
}

impl CareRelationshipRow {
    fn from_row(r: &impl crate::rows::Cols) -> Result<Self> {
        Ok(CareRelationshipRow {
            patient_id: get(r, "patient_id")?,
            user_id: get(r, "user_id")?,
            relation: get(r, "relation")?,
            starts_at: get(r, "starts_at")?,
            ends_at: get(r, "ends_at")?,
            created_by: get(r, "created_by")?,
        })
    }
}

impl Store {
    /// The patient's scope and sensitive flags; `None` if there is no such patient. One query
    /// unless the patient is flagged.
    pub async fn patient_access(&self, patient_id: &str) -> Result<Option<PatientAccessRow>> {
        let found = self
            .hot(
                "SELECT organization_id, location_id, department_id, flag_count AS flags FROM patients WHERE id = $1",
                &[Arg::S(patient_id)],
                |r| Ok((ScopeCols::from_row(r)?, get::<i64>(r, "flags")?)),
            )
            .await?;
        let Some((scope, flag_count)) = found.into_iter().next() else { return Ok(None) };
        let flags = if flag_count == 0 { Vec::new() } else { self.patient_flags(patient_id).await? };
        Ok(Some(PatientAccessRow { scope, flags }))
    }

    /// The patient's access row and current version in one statement (a read of one patient:
    /// one round trip where there were two); `None` if there is no such patient.
    pub async fn patient_access_and_current(&self, patient_id: &str) -> Result<Option<(PatientAccessRow, PatientVersionRow)>> {
        let found = self
            .hot(
                "SELECT p.organization_id, p.location_id, p.department_id, p.flag_count AS flags, v.* FROM patients p \
                 JOIN patient_versions v ON v.patient_id = p.id AND v.version = p.current_version WHERE p.id = $1",
                &[Arg::S(patient_id)],
                |r| Ok((ScopeCols::from_row(r)?, get::<i64>(r, "flags")?, PatientVersionRow::from_row(r)?)),
            )
            .await?;
        let Some((scope, flag_count, row)) = found.into_iter().next() else { return Ok(None) };
        let flags = if flag_count == 0 { Vec::new() } else { self.patient_flags(patient_id).await? };
        Ok(Some((PatientAccessRow { scope, flags }, row)))
    }

    async fn patient_flags(&self, patient_id: &str) -> Result<Vec<String>> {
        self.hot("SELECT category FROM patient_flags WHERE patient_id = $1 ORDER BY category", &[Arg::S(patient_id)], |r| {
            get::<String>(r, "category")
        })
        .await
    }

    /// Patients holding one of `tokens`, with their scope and how many sensitive flags they
    /// carry (search: one indexed join per token, no second round trip for the common case).
    pub async fn patients_with_any_token_scoped(&self, tokens: &[(i64, Vec<u8>)]) -> Result<Vec<(String, ScopeCols, i64)>> {
        let mut out = Vec::new();
        for (kind, token) in tokens {
            let rows = self
                .hot(
                    "SELECT i.patient_id AS id, p.organization_id, p.location_id, p.department_id, p.flag_count AS flags \
                     FROM patient_index i JOIN patients p ON p.id = i.patient_id WHERE i.kind = $1 AND i.token = $2",
                    &[Arg::I(*kind), Arg::B(token)],
                    |r| Ok((get::<String>(r, "id")?, ScopeCols::from_row(r)?, get::<i64>(r, "flags")?)),
                )
                .await?;
            out.extend(rows);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// Scopes and flags of many patients at once (search results), keyed by patient id.
    pub async fn patients_access(&self, ids: &[String]) -> Result<Vec<(String, PatientAccessRow)>> {
        let mut out: Vec<(String, PatientAccessRow)> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(400) {
            let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let args: Vec<Arg<'_>> = chunk.iter().map(|i| Arg::S(i)).collect();
            let sql = format!("SELECT id, organization_id, location_id, department_id, flag_count FROM patients WHERE id IN ({list})");
            let mut flagged = Vec::new();
            let rows =
                self.hot(&sql, &args, |r| Ok((get::<String>(r, "id")?, ScopeCols::from_row(r)?, get::<i64>(r, "flag_count")?))).await?;
            for (id, scope, flags) in rows {
                if flags > 0 {
                    flagged.push(id.clone());
                }
                out.push((id, PatientAccessRow { scope, flags: Vec::new() }));
            }
            // Flag categories only for the (few) flagged patients.
            for chunk in flagged.chunks(400) {
                let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                let args: Vec<Arg<'_>> = chunk.iter().map(|i| Arg::S(i)).collect();
                let sql = format!("SELECT patient_id, category FROM patient_flags WHERE patient_id IN ({list})");
                for (pid, cat) in self.hot(&sql, &args, |r| Ok((get::<String>(r, "patient_id")?, get::<String>(r, "category")?))).await? {
                    if let Some(e) = out.iter_mut().rev().find(|(i, _)| *i == pid) {
                        e.1.flags.push(cat);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether the user has a care relationship with the patient at `now`: a current care-team
    /// membership, or (within `window` microseconds either side of now) a live appointment with
    /// the practitioner the user is, or an encounter the user opened.
    pub async fn has_care_relationship(&self, patient_id: &str, user_id: &str, now: i64, window: i64) -> Result<bool> {
        let sql = format!(
            "SELECT 1 AS x FROM care_relationships WHERE patient_id = $1 AND user_id = $2 AND starts_at <= $3 \
             AND (ends_at IS NULL OR ends_at > $3) \
             UNION ALL SELECT 1 AS x FROM appointments a JOIN practitioners p ON p.id = a.practitioner_id \
             WHERE a.patient_id = $1 AND p.user_id = $2 AND a.start_at < $3 + $4 AND a.end_at > $3 - $4 AND a.{} \
             UNION ALL SELECT 1 AS x FROM records WHERE kind = 'encounter' AND patient_id = $1 AND created_by = $2 AND created_at > $3 - $4",
            crate::LIVE_APPOINTMENT
        );
        let rows = self.hot(&sql, &[Arg::S(patient_id), Arg::S(user_id), Arg::I(now), Arg::I(window)], |_| Ok(())).await?;
        Ok(!rows.is_empty())
    }

    pub async fn care_relationships(&self, patient_id: &str) -> Result<Vec<CareRelationshipRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM care_relationships WHERE patient_id = $1 ORDER BY starts_at, user_id").bind(patient_id))
            .await?
            .iter()
            .map(CareRelationshipRow::from_row)
            .collect()
    }
}

impl WriteTx {
    pub async fn set_patient_placement(
        &mut self,
        patient_id: &str,
        location_id: Option<&str>,
        department_id: Option<&str>,
    ) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE patients SET location_id = $1, department_id = $2 WHERE id = $3")
                .bind(location_id.map(str::to_string))
                .bind(department_id.map(str::to_string))
                .bind(patient_id)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn replace_patient_flags(&mut self, patient_id: &str, categories: &[String], by: &str, now: i64) -> Result<()> {
        exec!(self, sqlx::query("DELETE FROM patient_flags WHERE patient_id = $1").bind(patient_id))?;
        exec!(
            self,
            sqlx::query("UPDATE patients SET flag_count = $1 WHERE id = $2")
                .bind(i64::try_from(categories.len()).unwrap_or(i64::MAX))
                .bind(patient_id)
        )?;
        for c in categories {
            exec!(
                self,
                sqlx::query("INSERT INTO patient_flags (patient_id, category, set_by, set_at) VALUES ($1, $2, $3, $4)")
                    .bind(patient_id)
                    .bind(c.clone())
                    .bind(by)
                    .bind(now)
            )?;
        }
        Ok(())
    }

    /// Starts (or restarts) a care relationship.
    pub async fn upsert_care_relationship(&mut self, c: &CareRelationshipRow) -> Result<()> {
        exec!(
            self,
            sqlx::query("DELETE FROM care_relationships WHERE patient_id = $1 AND user_id = $2 AND relation = $3")
                .bind(c.patient_id.clone())
                .bind(c.user_id.clone())
                .bind(c.relation.clone())
        )?;
        exec!(
            self,
            sqlx::query(
                "INSERT INTO care_relationships (patient_id, user_id, relation, starts_at, ends_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)"
            )
            .bind(c.patient_id.clone())
            .bind(c.user_id.clone())
            .bind(c.relation.clone())
            .bind(c.starts_at)
            .bind(c.ends_at)
            .bind(c.created_by.clone())
        )?;
        Ok(())
    }

    /// Ends a running care relationship; false if there was none.
    pub async fn end_care_relationship(&mut self, patient_id: &str, user_id: &str, relation: &str, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query(
                "UPDATE care_relationships SET ends_at = $1 WHERE patient_id = $2 AND user_id = $3 AND relation = $4 \
                 AND (ends_at IS NULL OR ends_at > $1)"
            )
            .bind(now)
            .bind(patient_id)
            .bind(user_id)
            .bind(relation)
        )?;
        Ok(r.rows_affected() == 1)
    }
}
