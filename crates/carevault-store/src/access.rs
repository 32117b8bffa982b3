//! Rows and statements of the access model: organization structure, custom roles, scoped role
//! assignments, time-bound grants, care relationships, sensitive flags, break-glass, alerts,
//! recovery codes. Free text that may hold PHI arrives here sealed.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::dialect::classify;
use crate::{Result, Store, WriteTx};

fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(r: &'r AnyRow, col: &str) -> Result<T> {
    r.try_get::<T, _>(col).map_err(classify)
}

macro_rules! exec {
    ($self:ident, $q:expr) => {
        $q.execute(&mut *$self.tx).await.map_err(classify)
    };
}

/// An organization, a location or a department (`parent` is the organization for locations,
/// and the organization for departments too, with `location_id` set when the department sits
/// in one location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub id: String,
    pub organization_id: Option<String>,
    pub location_id: Option<String>,
    pub name: String,
    pub created_at: i64,
    /// Locations only: the IANA time zone.
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Organization,
    Location,
    Department,
    Room,
}

impl UnitKind {
    fn table(self) -> &'static str {
        match self {
            UnitKind::Organization => "organizations",
            UnitKind::Location => "locations",
            UnitKind::Department => "departments",
            UnitKind::Room => "rooms",
        }
    }
}

impl UnitRow {
    fn from_row(kind: UnitKind, r: &AnyRow) -> Result<Self> {
        Ok(UnitRow {
            id: get(r, "id")?,
            organization_id: if kind == UnitKind::Organization { None } else { get(r, "organization_id")? },
            location_id: if matches!(kind, UnitKind::Department | UnitKind::Room) { get(r, "location_id")? } else { None },
            name: get(r, "name")?,
            created_at: get(r, "created_at")?,
            time_zone: if kind == UnitKind::Location { get(r, "time_zone")? } else { None },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRoleRow {
    pub name: String,
    pub description: String,
    /// Permission ids, space-separated.
    pub permissions: String,
    /// PurposeOfUse codes, space-separated.
    pub purposes: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CustomRoleRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(CustomRoleRow {
            name: get(r, "name")?,
            description: get(r, "description")?,
            permissions: get(r, "permissions")?,
            purposes: get(r, "purposes")?,
            created_by: get(r, "created_by")?,
            created_at: get(r, "created_at")?,
            updated_at: get(r, "updated_at")?,
        })
    }
}

/// Where an assignment or grant applies: an organization, optionally narrowed to one location
/// and/or one department.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeCols {
    pub organization_id: String,
    pub location_id: Option<String>,
    pub department_id: Option<String>,
}

impl ScopeCols {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(ScopeCols {
            organization_id: get(r, "organization_id")?,
            location_id: get(r, "location_id")?,
            department_id: get(r, "department_id")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    pub id: String,
    pub user_id: String,
    pub role: String,
    pub scope: ScopeCols,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl AssignmentRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(AssignmentRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            role: get(r, "role")?,
            scope: ScopeCols::from_row(r)?,
            expires_at: get(r, "expires_at")?,
            created_by: get(r, "created_by")?,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Clone)]
pub struct GrantRow {
    pub id: String,
    pub user_id: String,
    pub permission: String,
    pub scope: ScopeCols,
    pub patient_id: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    /// Sealed.
    pub reason: Vec<u8>,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

impl std::fmt::Debug for GrantRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrantRow({}, {}, {})", self.id, self.user_id, self.permission)
    }
}

impl GrantRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(GrantRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            permission: get(r, "permission")?,
            scope: ScopeCols::from_row(r)?,
            patient_id: get(r, "patient_id")?,
            starts_at: get(r, "starts_at")?,
            ends_at: get(r, "ends_at")?,
            reason: get(r, "reason")?,
            created_by: get(r, "created_by")?,
            revoked_at: get(r, "revoked_at")?,
            revoked_by: get(r, "revoked_by")?,
        })
    }
}

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
    fn from_row(r: &AnyRow) -> Result<Self> {
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

#[derive(Clone)]
pub struct BreakGlassRow {
    pub id: String,
    pub user_id: String,
    pub patient_id: String,
    pub reason_code: String,
    /// Sealed.
    pub reason_text: Vec<u8>,
    pub opened_at: i64,
    pub expires_at: i64,
    pub review_state: String,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<i64>,
    pub review_outcome: Option<String>,
    /// Sealed.
    pub review_note: Option<Vec<u8>>,
}

impl std::fmt::Debug for BreakGlassRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BreakGlassRow({}, {}, {})", self.id, self.user_id, self.patient_id)
    }
}

impl BreakGlassRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(BreakGlassRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            patient_id: get(r, "patient_id")?,
            reason_code: get(r, "reason_code")?,
            reason_text: get(r, "reason_text")?,
            opened_at: get(r, "opened_at")?,
            expires_at: get(r, "expires_at")?,
            review_state: get(r, "review_state")?,
            reviewed_by: get(r, "reviewed_by")?,
            reviewed_at: get(r, "reviewed_at")?,
            review_outcome: get(r, "review_outcome")?,
            review_note: get(r, "review_note")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: String,
    pub category: String,
    pub kind: String,
    pub subject_user: Option<String>,
    pub patient_id: Option<String>,
    pub reference: Option<String>,
    pub raised_at: i64,
    pub state: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<i64>,
}

impl AlertRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(AlertRow {
            id: get(r, "id")?,
            category: get(r, "category")?,
            kind: get(r, "kind")?,
            subject_user: get(r, "subject_user")?,
            patient_id: get(r, "patient_id")?,
            reference: get(r, "reference")?,
            raised_at: get(r, "raised_at")?,
            state: get(r, "state")?,
            closed_by: get(r, "closed_by")?,
            closed_at: get(r, "closed_at")?,
        })
    }
}

#[derive(Clone)]
pub struct AllergyRow {
    pub id: String,
    pub version: i64,
    pub patient_id: String,
    pub recorded_at: i64,
    pub key_version: i64,
    /// Sealed FHIR content.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for AllergyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AllergyRow({}/{})", self.id, self.version)
    }
}

impl AllergyRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(AllergyRow {
            id: get(r, "id")?,
            version: get(r, "version")?,
            patient_id: get(r, "patient_id")?,
            recorded_at: get(r, "recorded_at")?,
            key_version: get(r, "key_version")?,
            body: get(r, "body")?,
        })
    }
}

#[derive(Clone)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub credential_id: Vec<u8>,
    pub name: String,
    /// Sealed.
    pub passkey: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl std::fmt::Debug for PasskeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasskeyRow({}, {})", self.id, self.user_id)
    }
}

impl PasskeyRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(PasskeyRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            credential_id: get(r, "credential_id")?,
            name: get(r, "name")?,
            passkey: get(r, "passkey")?,
            created_at: get(r, "created_at")?,
            last_used_at: get(r, "last_used_at")?,
        })
    }
}

/// A WebAuthn ceremony in progress (registration or authentication); used once.
#[derive(Clone)]
pub struct CeremonyRow {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    /// Sealed.
    pub state: Vec<u8>,
    pub expires_at: i64,
}

impl CeremonyRow {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(CeremonyRow {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            kind: get(r, "kind")?,
            state: get(r, "state")?,
            expires_at: get(r, "expires_at")?,
        })
    }
}

impl Store {
    pub async fn passkeys_for_user(&self, user_id: &str) -> Result<Vec<PasskeyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id").bind(user_id))
            .await?
            .iter()
            .map(PasskeyRow::from_row)
            .collect()
    }

    pub async fn ceremony(&self, id: &str) -> Result<Option<CeremonyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM webauthn_ceremonies WHERE id = $1").bind(id))
            .await?
            .first()
            .map(CeremonyRow::from_row)
            .transpose()
    }
}

impl Store {
    async fn fetch_all<'q>(&self, q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> Result<Vec<AnyRow>> {
        q.fetch_all(&self.read).await.map_err(classify)
    }

    pub async fn units(&self, kind: UnitKind) -> Result<Vec<UnitRow>> {
        let sql = format!("SELECT * FROM {} ORDER BY name", kind.table());
        self.fetch_all(sqlx::query(&sql)).await?.iter().map(|r| UnitRow::from_row(kind, r)).collect()
    }

    pub async fn unit(&self, kind: UnitKind, id: &str) -> Result<Option<UnitRow>> {
        let sql = format!("SELECT * FROM {} WHERE id = $1", kind.table());
        self.fetch_all(sqlx::query(&sql).bind(id)).await?.first().map(|r| UnitRow::from_row(kind, r)).transpose()
    }

    pub async fn custom_roles(&self) -> Result<Vec<CustomRoleRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM custom_roles ORDER BY name")).await?.iter().map(CustomRoleRow::from_row).collect()
    }

    pub async fn custom_role(&self, name: &str) -> Result<Option<CustomRoleRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM custom_roles WHERE name = $1").bind(name))
            .await?
            .first()
            .map(CustomRoleRow::from_row)
            .transpose()
    }

    pub async fn assignments_for_user(&self, user_id: &str) -> Result<Vec<AssignmentRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM role_assignments WHERE user_id = $1 ORDER BY created_at, id").bind(user_id))
            .await?
            .iter()
            .map(AssignmentRow::from_row)
            .collect()
    }

    pub async fn assignments_with_role(&self, role: &str) -> Result<Vec<AssignmentRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM role_assignments WHERE role = $1 ORDER BY created_at, id").bind(role))
            .await?
            .iter()
            .map(AssignmentRow::from_row)
            .collect()
    }

    pub async fn assignment(&self, id: &str) -> Result<Option<AssignmentRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM role_assignments WHERE id = $1").bind(id))
            .await?
            .first()
            .map(AssignmentRow::from_row)
            .transpose()
    }

    pub async fn grants_for_user(&self, user_id: &str) -> Result<Vec<GrantRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM access_grants WHERE user_id = $1 ORDER BY starts_at, id").bind(user_id))
            .await?
            .iter()
            .map(GrantRow::from_row)
            .collect()
    }

    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM access_grants WHERE id = $1").bind(id)).await?.first().map(GrantRow::from_row).transpose()
    }

    /// Grants not yet ended and not revoked, for every user of an organization's scope.
    pub async fn live_grants(&self, organization_id: &str, now: i64) -> Result<Vec<GrantRow>> {
        self.fetch_all(
            sqlx::query(
                "SELECT * FROM access_grants WHERE organization_id = $1 AND revoked_at IS NULL AND ends_at > $2 ORDER BY starts_at, id",
            )
            .bind(organization_id)
            .bind(now),
        )
        .await?
        .iter()
        .map(GrantRow::from_row)
        .collect()
    }

    /// The patient's scope and sensitive flags; `None` if there is no such patient. One query
    /// unless the patient is flagged.
    pub async fn patient_access(&self, patient_id: &str) -> Result<Option<PatientAccessRow>> {
        let rows = self
            .fetch_all(
                sqlx::query("SELECT organization_id, location_id, department_id, flag_count AS flags FROM patients WHERE id = $1")
                    .bind(patient_id),
            )
            .await?;
        let Some(r) = rows.first() else { return Ok(None) };
        let scope = ScopeCols::from_row(r)?;
        let flags = if get::<i64>(r, "flags")? == 0 {
            Vec::new()
        } else {
            self.fetch_all(sqlx::query("SELECT category FROM patient_flags WHERE patient_id = $1 ORDER BY category").bind(patient_id))
                .await?
                .iter()
                .map(|r| get::<String>(r, "category"))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Some(PatientAccessRow { scope, flags }))
    }

    /// Patients holding one of `tokens`, with their scope and how many sensitive flags they
    /// carry (search: one indexed join per token, no second round trip for the common case).
    pub async fn patients_with_any_token_scoped(&self, tokens: &[(i64, Vec<u8>)]) -> Result<Vec<(String, ScopeCols, i64)>> {
        let mut out = Vec::new();
        for (kind, token) in tokens {
            let rows = self
                .fetch_all(
                    sqlx::query(
                        "SELECT i.patient_id AS id, p.organization_id, p.location_id, p.department_id, p.flag_count AS flags \
                         FROM patient_index i JOIN patients p ON p.id = i.patient_id WHERE i.kind = $1 AND i.token = $2",
                    )
                    .bind(*kind)
                    .bind(token.clone()),
                )
                .await?;
            for r in &rows {
                out.push((get::<String>(r, "id")?, ScopeCols::from_row(r)?, get::<i64>(r, "flags")?));
            }
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
            let sql = format!("SELECT id, organization_id, location_id, department_id FROM patients WHERE id IN ({list})");
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in self.fetch_all(q).await? {
                out.push((get(&r, "id")?, PatientAccessRow { scope: ScopeCols::from_row(&r)?, flags: Vec::new() }));
            }
            let sql = format!("SELECT patient_id, category FROM patient_flags WHERE patient_id IN ({list})");
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in self.fetch_all(q).await? {
                let pid: String = get(&r, "patient_id")?;
                let cat: String = get(&r, "category")?;
                if let Some(e) = out.iter_mut().find(|(i, _)| *i == pid) {
                    e.1.flags.push(cat);
                }
            }
        }
        Ok(out)
    }

    /// Whether `user_id` has a care relationship with the patient at `now`.
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
        let rows = self.fetch_all(sqlx::query(&sql).bind(patient_id).bind(user_id).bind(now).bind(window)).await?;
        Ok(!rows.is_empty())
    }

    pub async fn care_relationships(&self, patient_id: &str) -> Result<Vec<CareRelationshipRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM care_relationships WHERE patient_id = $1 ORDER BY starts_at, user_id").bind(patient_id))
            .await?
            .iter()
            .map(CareRelationshipRow::from_row)
            .collect()
    }

    /// The user's break-glass on this patient that is open at `now`, if any.
    pub async fn active_break_glass(&self, user_id: &str, patient_id: &str, now: i64) -> Result<Option<BreakGlassRow>> {
        self.fetch_all(
            sqlx::query(
                "SELECT * FROM break_glass WHERE user_id = $1 AND patient_id = $2 AND opened_at <= $3 AND expires_at > $3 \
                 ORDER BY expires_at DESC LIMIT 1",
            )
            .bind(user_id)
            .bind(patient_id)
            .bind(now),
        )
        .await?
        .first()
        .map(BreakGlassRow::from_row)
        .transpose()
    }

    pub async fn break_glass(&self, id: &str) -> Result<Option<BreakGlassRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM break_glass WHERE id = $1").bind(id))
            .await?
            .first()
            .map(BreakGlassRow::from_row)
            .transpose()
    }

    /// Break-glass uses in the given review state, oldest first.
    pub async fn break_glass_by_state(&self, state: &str, limit: i64) -> Result<Vec<BreakGlassRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM break_glass WHERE review_state = $1 ORDER BY opened_at, id LIMIT $2").bind(state).bind(limit),
        )
        .await?
        .iter()
        .map(BreakGlassRow::from_row)
        .collect()
    }

    pub async fn alerts(&self, category: &str, open_only: bool, limit: i64) -> Result<Vec<AlertRow>> {
        let sql = if open_only {
            "SELECT * FROM alerts WHERE category = $1 AND state = 'open' ORDER BY raised_at, id LIMIT $2"
        } else {
            "SELECT * FROM alerts WHERE category = $1 ORDER BY raised_at, id LIMIT $2"
        };
        self.fetch_all(sqlx::query(sql).bind(category).bind(limit)).await?.iter().map(AlertRow::from_row).collect()
    }

    pub async fn alert(&self, id: &str) -> Result<Option<AlertRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM alerts WHERE id = $1").bind(id)).await?.first().map(AlertRow::from_row).transpose()
    }

    /// Whether an alert of this kind about this subject was raised since `since`.
    pub async fn alert_raised_since(&self, kind: &str, reference: &str, since: i64) -> Result<bool> {
        let rows = self
            .fetch_all(
                sqlx::query("SELECT 1 AS x FROM alerts WHERE kind = $1 AND reference = $2 AND raised_at >= $3 LIMIT 1")
                    .bind(kind)
                    .bind(reference)
                    .bind(since),
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub async fn unused_recovery_codes(&self, user_id: &str) -> Result<i64> {
        let rows = self
            .fetch_all(sqlx::query("SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL").bind(user_id))
            .await?;
        rows.first().map(|r| get::<i64>(r, "n")).transpose().map(Option::unwrap_or_default)
    }

    pub async fn sessions_for_user(&self, user_id: &str) -> Result<Vec<crate::SessionRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at").bind(user_id))
            .await?
            .iter()
            .map(crate::SessionRow::from_row)
            .collect()
    }

    /// Active accounts whose last sign-in (or creation, if they never signed in) is before `cutoff`.
    pub async fn users_unused_since(&self, cutoff: i64) -> Result<Vec<crate::UserRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM users WHERE active = 1 AND COALESCE(last_login_at, created_at) < $1 ORDER BY id LIMIT 500")
                .bind(cutoff),
        )
        .await?
        .iter()
        .map(crate::UserRow::from_row)
        .collect()
    }

    pub async fn allergy_current(&self, id: &str) -> Result<Option<AllergyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM allergies WHERE id = $1 AND is_current = 1").bind(id))
            .await?
            .first()
            .map(AllergyRow::from_row)
            .transpose()
    }

    /// Allergy versions sealed under a key older than `below` (key rotation).
    /// Allergy versions in (id, version) order after `after` (a page of a full walk).
    pub async fn allergies_after(&self, after: (&str, i64), limit: i64) -> Result<Vec<AllergyRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM allergies WHERE id > $1 OR (id = $1 AND version > $2) ORDER BY id, version LIMIT $3")
                .bind(after.0)
                .bind(after.1)
                .bind(limit),
        )
        .await?
        .iter()
        .map(AllergyRow::from_row)
        .collect()
    }

    pub async fn allergies_below_key(&self, below: i64, limit: i64) -> Result<Vec<AllergyRow>> {
        self.fetch_all(sqlx::query("SELECT * FROM allergies WHERE key_version < $1 ORDER BY id, version LIMIT $2").bind(below).bind(limit))
            .await?
            .iter()
            .map(AllergyRow::from_row)
            .collect()
    }

    pub async fn allergies_for_patient(&self, patient_id: &str) -> Result<Vec<AllergyRow>> {
        self.fetch_all(
            sqlx::query("SELECT * FROM allergies WHERE patient_id = $1 AND is_current = 1 ORDER BY recorded_at, id").bind(patient_id),
        )
        .await?
        .iter()
        .map(AllergyRow::from_row)
        .collect()
    }
}

impl WriteTx {
    pub async fn insert_passkey(&mut self, p: &PasskeyRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO passkeys (id, user_id, credential_id, name, passkey, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)"
            )
            .bind(p.id.clone())
            .bind(p.user_id.clone())
            .bind(p.credential_id.clone())
            .bind(p.name.clone())
            .bind(p.passkey.clone())
            .bind(p.created_at)
        )?;
        Ok(())
    }

    /// Renames one of the user's passkeys; false if the user has no such passkey.
    pub async fn rename_passkey(&mut self, user_id: &str, id: &str, name: &str) -> Result<bool> {
        let r = exec!(self, sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3").bind(name).bind(id).bind(user_id))?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes one passkey of the user (`Some(id)`) or all of them.
    pub async fn delete_passkeys(&mut self, user_id: &str, id: Option<&str>) -> Result<u64> {
        let r = match id {
            Some(id) => exec!(self, sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2").bind(id).bind(user_id))?,
            None => exec!(self, sqlx::query("DELETE FROM passkeys WHERE user_id = $1").bind(user_id))?,
        };
        Ok(r.rows_affected())
    }

    pub async fn passkey_used(&mut self, credential_id: &[u8], passkey: Option<&[u8]>, now: i64) -> Result<()> {
        match passkey {
            Some(p) => exec!(
                self,
                sqlx::query("UPDATE passkeys SET passkey = $1, last_used_at = $2 WHERE credential_id = $3")
                    .bind(p.to_vec())
                    .bind(now)
                    .bind(credential_id.to_vec())
            )?,
            None => exec!(
                self,
                sqlx::query("UPDATE passkeys SET last_used_at = $1 WHERE credential_id = $2").bind(now).bind(credential_id.to_vec())
            )?,
        };
        Ok(())
    }

    pub async fn insert_ceremony(&mut self, c: &CeremonyRow) -> Result<()> {
        exec!(
            self,
            sqlx::query("DELETE FROM webauthn_ceremonies WHERE user_id = $1 AND expires_at < $2")
                .bind(c.user_id.clone())
                .bind(c.expires_at - 600_000_000)
        )?;
        exec!(
            self,
            sqlx::query("INSERT INTO webauthn_ceremonies (id, user_id, kind, state, expires_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(c.id.clone())
                .bind(c.user_id.clone())
                .bind(c.kind.clone())
                .bind(c.state.clone())
                .bind(c.expires_at)
        )?;
        Ok(())
    }

    /// Consumes a ceremony: false if it was already used (or never existed).
    pub async fn take_ceremony(&mut self, id: &str) -> Result<bool> {
        Ok(exec!(self, sqlx::query("DELETE FROM webauthn_ceremonies WHERE id = $1").bind(id))?.rows_affected() == 1)
    }

    pub async fn insert_unit(&mut self, kind: UnitKind, u: &UnitRow) -> Result<()> {
        let q = match kind {
            UnitKind::Organization => sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(u.id.clone())
                .bind(u.name.clone())
                .bind(u.created_at),
            UnitKind::Location => {
                sqlx::query("INSERT INTO locations (id, organization_id, name, created_at, time_zone) VALUES ($1, $2, $3, $4, $5)")
                    .bind(u.id.clone())
                    .bind(u.organization_id.clone())
                    .bind(u.name.clone())
                    .bind(u.created_at)
                    .bind(u.time_zone.clone().unwrap_or_else(|| "UTC".into()))
            }
            UnitKind::Room => {
                sqlx::query("INSERT INTO rooms (id, organization_id, location_id, name, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(u.id.clone())
                    .bind(u.organization_id.clone())
                    .bind(u.location_id.clone())
                    .bind(u.name.clone())
                    .bind(u.created_at)
            }
            UnitKind::Department => {
                sqlx::query("INSERT INTO departments (id, organization_id, location_id, name, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(u.id.clone())
                    .bind(u.organization_id.clone())
                    .bind(u.location_id.clone())
                    .bind(u.name.clone())
                    .bind(u.created_at)
            }
        };
        exec!(self, q)?;
        Ok(())
    }

    /// Inserts or replaces a custom role.
    pub async fn upsert_custom_role(&mut self, r: &CustomRoleRow) -> Result<()> {
        exec!(self, sqlx::query("DELETE FROM custom_roles WHERE name = $1").bind(r.name.clone()))?;
        exec!(
            self,
            sqlx::query(
                "INSERT INTO custom_roles (name, description, permissions, purposes, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )
            .bind(r.name.clone())
            .bind(r.description.clone())
            .bind(r.permissions.clone())
            .bind(r.purposes.clone())
            .bind(r.created_by.clone())
            .bind(r.created_at)
            .bind(r.updated_at)
        )?;
        Ok(())
    }

    pub async fn insert_assignment(&mut self, a: &AssignmentRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO role_assignments (id, user_id, role, organization_id, location_id, department_id, expires_at, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            )
            .bind(a.id.clone())
            .bind(a.user_id.clone())
            .bind(a.role.clone())
            .bind(a.scope.organization_id.clone())
            .bind(a.scope.location_id.clone())
            .bind(a.scope.department_id.clone())
            .bind(a.expires_at)
            .bind(a.created_by.clone())
            .bind(a.created_at)
        )?;
        Ok(())
    }

    pub async fn delete_assignment(&mut self, id: &str) -> Result<bool> {
        Ok(exec!(self, sqlx::query("DELETE FROM role_assignments WHERE id = $1").bind(id))?.rows_affected() == 1)
    }

    /// Number of unexpired assignments of `role` in `organization_id` held by active accounts.
    pub async fn count_live_assignments(&mut self, role: &str, organization_id: &str, now: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM role_assignments a JOIN users u ON u.id = a.user_id \
             WHERE a.role = $1 AND a.organization_id = $2 AND (a.expires_at IS NULL OR a.expires_at > $3) AND u.active = 1",
        )
        .bind(role)
        .bind(organization_id)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(classify)?;
        get(&row, "n")
    }

    pub async fn insert_grant(&mut self, g: &GrantRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO access_grants (id, user_id, permission, organization_id, location_id, department_id, patient_id, starts_at, ends_at, reason, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )
            .bind(g.id.clone())
            .bind(g.user_id.clone())
            .bind(g.permission.clone())
            .bind(g.scope.organization_id.clone())
            .bind(g.scope.location_id.clone())
            .bind(g.scope.department_id.clone())
            .bind(g.patient_id.clone())
            .bind(g.starts_at)
            .bind(g.ends_at)
            .bind(g.reason.clone())
            .bind(g.created_by.clone())
        )?;
        Ok(())
    }

    /// Revokes a live grant; false if it was already revoked.
    pub async fn revoke_grant(&mut self, id: &str, by: &str, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE access_grants SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(by)
                .bind(id)
        )?;
        Ok(r.rows_affected() == 1)
    }

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

    pub async fn insert_break_glass(&mut self, b: &BreakGlassRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO break_glass (id, user_id, patient_id, reason_code, reason_text, opened_at, expires_at, review_state) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open')"
            )
            .bind(b.id.clone())
            .bind(b.user_id.clone())
            .bind(b.patient_id.clone())
            .bind(b.reason_code.clone())
            .bind(b.reason_text.clone())
            .bind(b.opened_at)
            .bind(b.expires_at)
        )?;
        Ok(())
    }

    /// Closes an open review; false if it is not open (already closed or unknown).
    pub async fn close_break_glass_review(&mut self, id: &str, by: &str, now: i64, outcome: &str, note: &[u8]) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query(
                "UPDATE break_glass SET review_state = 'closed', reviewed_by = $1, reviewed_at = $2, review_outcome = $3, review_note = $4 \
                 WHERE id = $5 AND review_state = 'open'"
            )
            .bind(by)
            .bind(now)
            .bind(outcome)
            .bind(note.to_vec())
            .bind(id)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn insert_alert(&mut self, a: &AlertRow) -> Result<()> {
        exec!(
            self,
            sqlx::query(
                "INSERT INTO alerts (id, category, kind, subject_user, patient_id, reference, raised_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open')"
            )
            .bind(a.id.clone())
            .bind(a.category.clone())
            .bind(a.kind.clone())
            .bind(a.subject_user.clone())
            .bind(a.patient_id.clone())
            .bind(a.reference.clone())
            .bind(a.raised_at)
        )?;
        Ok(())
    }

    pub async fn close_alert(&mut self, id: &str, category: &str, by: &str, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query(
                "UPDATE alerts SET state = 'closed', closed_by = $1, closed_at = $2 WHERE id = $3 AND category = $4 AND state = 'open'"
            )
            .bind(by)
            .bind(now)
            .bind(id)
            .bind(category)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_user_active(&mut self, user_id: &str, active: bool, now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE users SET active = $1, deactivated_at = $2, last_login_at = CASE WHEN $1 = 1 THEN $3 ELSE last_login_at END WHERE id = $4 AND active <> $1")
                .bind(i64::from(active))
                .bind(if active { None } else { Some(now) })
                .bind(now)
                .bind(user_id)
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_last_login(&mut self, user_id: &str, now: i64) -> Result<()> {
        exec!(self, sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2").bind(now).bind(user_id))?;
        Ok(())
    }

    pub async fn set_password(&mut self, user_id: &str, hash: &str, now: i64) -> Result<()> {
        exec!(
            self,
            sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3").bind(hash).bind(now).bind(user_id)
        )?;
        Ok(())
    }

    /// Replaces a user's TOTP secret (MFA reset) and forgets the last used step.
    pub async fn replace_totp(&mut self, user_id: &str, secret: &[u8], key_version: i64) -> Result<()> {
        exec!(
            self,
            sqlx::query("UPDATE users SET totp_secret = $1, key_version = $2, totp_last_step = NULL WHERE id = $3")
                .bind(secret.to_vec())
                .bind(key_version)
                .bind(user_id)
        )?;
        Ok(())
    }

    pub async fn replace_recovery_codes(&mut self, user_id: &str, hashes: &[Vec<u8>], now: i64) -> Result<()> {
        exec!(self, sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id))?;
        for h in hashes {
            exec!(
                self,
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(user_id)
                    .bind(h.clone())
                    .bind(now)
            )?;
        }
        Ok(())
    }

    /// Spends a recovery code; false if it is unknown or already used.
    pub async fn use_recovery_code(&mut self, user_id: &str, hash: &[u8], now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL")
                .bind(now)
                .bind(user_id)
                .bind(hash.to_vec())
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_session_authenticated(&mut self, token_hash: &[u8], now: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE sessions SET authenticated_at = $1 WHERE token_hash = $2").bind(now).bind(token_hash.to_vec())
        )?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn delete_session_by_public_id(&mut self, user_id: &str, public_id: &str) -> Result<bool> {
        let r = exec!(self, sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND public_id = $2").bind(user_id).bind(public_id))?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends every session of the user except `keep` (a token hash).
    pub async fn delete_other_sessions(&mut self, user_id: &str, keep: &[u8]) -> Result<u64> {
        let r = exec!(self, sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2").bind(user_id).bind(keep.to_vec()))?;
        Ok(r.rows_affected())
    }

    /// Replaces the sealed body of one allergy version (key rotation); false if it changed meanwhile.
    pub async fn reseal_allergy(&mut self, a: &AllergyRow, old_key_version: i64) -> Result<bool> {
        let r = exec!(
            self,
            sqlx::query("UPDATE allergies SET body = $1, key_version = $2 WHERE id = $3 AND version = $4 AND key_version = $5")
                .bind(a.body.clone())
                .bind(a.key_version)
                .bind(a.id.clone())
                .bind(a.version)
                .bind(old_key_version)
        )?;
        Ok(r.rows_affected() == 1)
    }

    /// Inserts a new version of an allergy record and makes it current.
    pub async fn insert_allergy(&mut self, a: &AllergyRow) -> Result<()> {
        exec!(self, sqlx::query("UPDATE allergies SET is_current = 0 WHERE id = $1").bind(a.id.clone()))?;
        exec!(
            self,
            sqlx::query(
                "INSERT INTO allergies (id, version, patient_id, recorded_at, key_version, body, is_current) VALUES ($1, $2, $3, $4, $5, $6, 1)"
            )
            .bind(a.id.clone())
            .bind(a.version)
            .bind(a.patient_id.clone())
            .bind(a.recorded_at)
            .bind(a.key_version)
            .bind(a.body.clone())
        )?;
        Ok(())
    }
}
