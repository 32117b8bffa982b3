//! The access model through the chokepoint: organization structure, roles and scoped
//! assignments, time-bound grants, care relationships, sensitive flags, break-glass with its
//! review queue, alerts, deprovisioning, sessions and step-up. Every operation here is
//! authorized by [`crate::authz`] and audited, like patient data.

use carevault_domain::{
    AuditAction, BreakGlassReason, InputError, Operation, Outcome, Permission, PurposeOfUse, ReviewOutcome, Role, SensitiveCategory,
};
use carevault_store::{
    AlertRow, AssignmentRow, BreakGlassRow, CareRelationshipRow, CustomRoleRow, GrantRow, ScopeCols, SessionRow, UnitKind, UnitRow, UserRow,
};

use crate::actor::Actor;
use crate::audit::writer::Op;
use crate::audit::Draft;
use crate::authz::{self, Allowed, Entitlement, PatientFacts, Privileges, Target};
use crate::error::CoreError;
use crate::vault::Vault;

const MAX_REASON_CHARS: usize = 500;
pub(crate) const PRIVACY: &str = "privacy";
pub(crate) const SECURITY: &str = "security";

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(carevault_crypto::random_bytes::<12>()))
}

fn bad(path: &str, message: impl Into<String>) -> CoreError {
    CoreError::Invalid(InputError::value(path, message))
}

/// Free text typed by staff (reasons, notes): trimmed, bounded, no control characters.
fn check_reason(path: &str, text: &str, required: bool) -> Result<String, CoreError> {
    let t = text.trim();
    if t.is_empty() && required {
        return Err(CoreError::Invalid(InputError::new(carevault_domain::IssueCode::Required, Some(path.into()), "a reason is required")));
    }
    if t.chars().count() > MAX_REASON_CHARS {
        return Err(bad(path, format!("at most {MAX_REASON_CHARS} characters")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad(path, "control characters are not allowed"));
    }
    Ok(t.to_string())
}

/// Role names of custom roles: lower-case letters, digits and underscores, not a built-in name.
fn check_role_name(name: &str) -> Result<(), CoreError> {
    let ok = (3..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(bad("name", "3–40 characters: lower-case letters, digits and '_', starting with a letter"));
    }
    if Role::parse(name).is_some() {
        return Err(CoreError::Refused { reason: "builtin-role", message: format!("'{name}' is a built-in role and cannot be changed") });
    }
    Ok(())
}

/// A user account as administrators see it (no secrets).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub organization_id: String,
    pub active: bool,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    pub assignments: Vec<AssignmentView>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AssignmentView {
    pub id: String,
    pub user_id: String,
    pub role: String,
    pub organization_id: String,
    pub location_id: Option<String>,
    pub department_id: Option<String>,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl From<AssignmentRow> for AssignmentView {
    fn from(a: AssignmentRow) -> Self {
        AssignmentView {
            id: a.id,
            user_id: a.user_id,
            role: a.role,
            organization_id: a.scope.organization_id,
            location_id: a.scope.location_id,
            department_id: a.scope.department_id,
            expires_at: a.expires_at,
            created_by: a.created_by,
            created_at: a.created_at,
        }
    }
}

/// A unit of the organization structure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnitView {
    pub kind: String,
    pub id: String,
    pub organization_id: Option<String>,
    pub location_id: Option<String>,
    pub name: String,
    pub time_zone: Option<String>,
}

/// A role (built-in or custom) with its permissions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleView {
    pub name: String,
    pub builtin: bool,
    pub description: String,
    pub permissions: Vec<String>,
    pub purposes: Vec<String>,
}

/// A time-bound grant to create.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub user_id: String,
    pub permission: String,
    pub organization_id: String,
    #[serde(default)]
    pub location_id: Option<String>,
    #[serde(default)]
    pub department_id: Option<String>,
    #[serde(default)]
    pub patient_id: Option<String>,
    /// Unix seconds.
    pub ends_at: i64,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantView {
    pub id: String,
    pub user_id: String,
    pub permission: String,
    pub organization_id: String,
    pub location_id: Option<String>,
    pub department_id: Option<String>,
    pub patient_id: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub active: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub source_ip: Option<String>,
    pub current: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CareTeamMember {
    pub user_id: String,
    pub relation: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub active: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BreakGlassView {
    pub id: String,
    pub user_id: String,
    pub patient_id: String,
    pub reason_code: String,
    /// Present in the review queue only.
    pub reason_text: Option<String>,
    pub opened_at: i64,
    pub expires_at: i64,
    pub review_state: String,
    pub review_outcome: Option<String>,
    pub reviewed_by: Option<String>,
    /// The user's username (review queue only).
    pub username: Option<String>,
}

impl BreakGlassView {
    fn from_row(b: &BreakGlassRow, reason_text: Option<String>) -> Self {
        BreakGlassView {
            id: b.id.clone(),
            user_id: b.user_id.clone(),
            patient_id: b.patient_id.clone(),
            reason_code: b.reason_code.clone(),
            reason_text,
            opened_at: b.opened_at,
            expires_at: b.expires_at,
            review_state: b.review_state.clone(),
            review_outcome: b.review_outcome.clone(),
            reviewed_by: b.reviewed_by.clone(),
            username: None,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertView {
    pub id: String,
    pub category: String,
    pub kind: String,
    pub subject_user: Option<String>,
    pub patient_id: Option<String>,
    pub reference: Option<String>,
    pub raised_at: i64,
    pub state: String,
    /// The subject account's username, when it has one.
    pub subject_username: Option<String>,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> Self {
        AlertView {
            id: a.id,
            category: a.category,
            kind: a.kind,
            subject_user: a.subject_user,
            patient_id: a.patient_id,
            reference: a.reference,
            raised_at: a.raised_at,
            state: a.state,
            subject_username: None,
        }
    }
}

/// One audit record as the audit log shows it (plain columns; sealed details stay sealed).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEventView {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub patient_id: Option<String>,
    pub purpose: Option<String>,
    pub review_flags: Option<String>,
    /// The patients a record that returned several patients' data disclosed (a patient search,
    /// an appointment list, the waitlist, the break-glass queue): their ids, sorted; empty for
    /// other records (their patient is `patient_id`).
    pub patients: Vec<String>,
    /// The actor's username, when the actor is an account that still exists.
    pub username: Option<String>,
    pub source_ip: Option<String>,
}

impl AuditEventView {
    fn from_row(r: carevault_store::AuditRow, names: &std::collections::HashMap<String, String>) -> Self {
        let username = r.actor.strip_prefix("user:").and_then(|id| names.get(id)).cloned();
        let patients = r.disclosed_ids();
        AuditEventView {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            action: r.action,
            outcome: r.outcome,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            patient_id: r.patient_id,
            purpose: r.purpose,
            review_flags: r.review_flags,
            patients,
            username,
            source_ip: r.source_ip,
        }
    }
}

/// Filters of an audit search, as typed (all optional). `user` is a username or an actor as
/// the log names it (`user:<id>`, `system:<job>`); `from` (inclusive) and `to` (exclusive) are
/// a date `YYYY-MM-DD` (UTC; a date as `to` includes that whole day), a `YYYY-MM-DDTHH:MM`
/// (UTC) or an RFC 3339 instant; `before` pages back from a sequence number.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub patient: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub before: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// Most records one audit search page returns.
pub const AUDIT_PAGE_MAX: i64 = 500;
/// Most records one CSV export holds (newest first); narrow the filters for more.
pub const AUDIT_EXPORT_MAX: i64 = 10_000;

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break; quotes doubled.
fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// The CSV of an export: a header line, then one line per record, CRLF line ends.
pub fn audit_csv(events: &[AuditEventView]) -> String {
    let mut out = String::from(
        "time,sequence,user,action,outcome,resource type,resource id,patient,purpose,source ip,review flags,patients disclosed\r\n",
    );
    for e in events {
        let user = e.username.clone().unwrap_or_else(|| e.actor.clone());
        let seq = e.seq.to_string();
        let disclosed = e.patients.join(" ");
        let fields: [&str; 12] = [
            &crate::format_instant(e.at),
            &seq,
            &user,
            &e.action,
            &e.outcome,
            e.resource_type.as_deref().unwrap_or_default(),
            e.resource_id.as_deref().unwrap_or_default(),
            e.patient_id.as_deref().unwrap_or_default(),
            e.purpose.as_deref().unwrap_or_default(),
            e.source_ip.as_deref().unwrap_or_default(),
            e.review_flags.as_deref().unwrap_or_default(),
            &disclosed,
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, f);
        }
        out.push_str("\r\n");
    }
    out
}

/// Builds the privileges of a user from its unexpired role assignments and live grants.
pub(crate) async fn load_privileges(
    store: &carevault_store::Store,
    user_id: &str,
    now: i64,
) -> Result<(Vec<String>, Privileges), CoreError> {
    let mut roles = Vec::new();
    let mut entitlements = Vec::new();
    for a in store.assignments_for_user(user_id).await? {
        if a.expires_at.is_some_and(|e| e <= now) {
            continue;
        }
        let (permissions, purposes) = match Role::parse(&a.role) {
            Some(r) => (authz::role_permissions(r).to_vec(), authz::role_purposes(r).to_vec()),
            None => match store.custom_role(&a.role).await? {
                Some(c) => (
                    c.permissions.split_whitespace().filter_map(Permission::parse).collect(),
                    c.purposes
                        .split_whitespace()
                        .filter_map(PurposeOfUse::parse)
                        .filter(|p| *p != PurposeOfUse::EmergencyTreatment)
                        .collect(),
                ),
                // A role deleted or unknown grants nothing (fail closed).
                None => continue,
            },
        };
        if !roles.contains(&a.role) {
            roles.push(a.role.clone());
        }
        entitlements.push(Entitlement {
            permissions,
            purposes,
            scope: a.scope,
            patient: None,
            source: format!("role:{}@{}", a.role, a.id),
        });
    }
    for g in store.grants_for_user(user_id).await? {
        if g.revoked_at.is_some() || g.starts_at > now || g.ends_at <= now {
            continue;
        }
        let Some(p) = Permission::parse(&g.permission) else { continue };
        // A grant adds a permission, not a purpose: it works for the purposes the user's roles
        // allow in that scope (or, with none, for operations).
        let purposes = entitlements
            .iter()
            .filter(|e| e.scope.organization_id == g.scope.organization_id)
            .flat_map(|e| e.purposes.iter().copied())
            .chain(std::iter::once(PurposeOfUse::Operations))
            .collect();
        entitlements.push(Entitlement {
            permissions: vec![p],
            purposes,
            scope: g.scope,
            patient: g.patient_id,
            source: format!("grant:{}", g.id),
        });
    }
    Ok((roles, Privileges { entitlements }))
}

impl Vault {
    fn clock_now(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    /// Authorizes one operation. A refusal is audited (with the reason) before it is returned;
    /// an actor held past its session's absolute limit is refused here too.
    pub(crate) async fn gate(
        &self,
        actor: &Actor,
        op: Operation,
        purpose: PurposeOfUse,
        target: &Target<'_>,
        resource: (&str, Option<&str>),
    ) -> Result<Allowed, CoreError> {
        let now = self.clock_now();
        let checked =
            if now >= actor.session_expires_at { Err(CoreError::SessionExpired) } else { authz::check(actor, op, purpose, target) };
        match checked {
            Ok(a) => Ok(a),
            Err(e) => {
                let patient = match target {
                    Target::Patient(f) => Some(f.id.clone()),
                    _ => None,
                };
                let mut d =
                    Draft::new(now, AuditAction::AccessDenied, Outcome::Denied).by(actor).resource(resource.0, resource.1).purpose(purpose);
                d.patient_id = patient;
                let reason = match &e {
                    CoreError::Forbidden { reason, .. } => *reason,
                    _ => "session-expired",
                };
                let details = self
                    .inner
                    .sealer
                    .seal_details(&d.event_id, serde_json::json!({"operation": op.id(), "reason": reason}).to_string().as_bytes())?;
                self.inner.writer.append(d.details(details)).await?;
                Err(e)
            }
        }
    }

    /// The facts about a patient the access decision needs, from the actor's point of view.
    /// `None` when there is no such patient (or the id is malformed). The care relationship is
    /// looked up only when `clinical`; break-glass is left for [`Self::with_break_glass`].
    pub(crate) async fn patient_facts(&self, actor: &Actor, patient_id: &str, clinical: bool) -> Result<Option<PatientFacts>, CoreError> {
        if carevault_domain::PatientId::parse(patient_id).is_err() {
            return Ok(None);
        }
        let Some(row) = self.inner.store.patient_access(patient_id).await? else { return Ok(None) };
        let relationship = clinical
            && !actor.is_system()
            && self
                .inner
                .store
                .has_care_relationship(
                    patient_id,
                    actor.user_id.as_str(),
                    self.clock_now(),
                    self.inner.config.care_window_days.max(0) * 86_400_000_000,
                )
                .await?;
        Ok(Some(PatientFacts {
            id: patient_id.to_string(),
            scope: row.scope,
            flags: row.flags.iter().filter_map(|f| SensitiveCategory::parse(f)).collect(),
            relationship,
            break_glass: false,
        }))
    }

    /// Adds whether the actor has an open break-glass on the patient (asked only when the
    /// decision without it is a refusal, so ordinary reads skip the lookup).
    async fn with_break_glass(&self, actor: &Actor, mut facts: PatientFacts) -> Result<PatientFacts, CoreError> {
        if !actor.is_system() {
            facts.break_glass = self.inner.store.active_break_glass(actor.user_id.as_str(), &facts.id, self.clock_now()).await?.is_some();
        }
        Ok(facts)
    }

    /// Gate for an operation on one patient: unknown patients are audited as not found.
    pub(crate) async fn gate_patient(
        &self,
        actor: &Actor,
        op: Operation,
        purpose: PurposeOfUse,
        action: AuditAction,
        resource_type: &str,
        patient_id: &str,
    ) -> Result<(PatientFacts, Allowed), CoreError> {
        // The permission is checked before existence, so probing ids tells nothing to someone
        // without it.
        self.gate(actor, op, purpose, &Target::Anywhere, (resource_type, Some(patient_id))).await.map(|_| ())?;
        let clinical = op.class() == carevault_domain::DataClass::Clinical;
        let Some(facts) = self.patient_facts(actor, patient_id, clinical).await? else {
            let d = Draft::new(self.clock_now(), action, Outcome::NotFound)
                .by(actor)
                .resource(resource_type, Some(patient_id))
                .purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("Patient/{patient_id}") });
        };
        if let Ok(allowed) = authz::check(actor, op, purpose, &Target::Patient(&facts)) {
            if !allowed.via_break_glass {
                return Ok((facts, allowed));
            }
        }
        let facts = self.with_break_glass(actor, facts).await?;
        let allowed = self.gate(actor, op, purpose, &Target::Patient(&facts), (resource_type, Some(patient_id))).await?;
        Ok((facts, allowed))
    }

    /// Step-up: the session must have proven password and second factor recently.
    pub(crate) async fn require_fresh_auth(&self, actor: &Actor, op: Operation) -> Result<(), CoreError> {
        if actor.is_system() {
            return Ok(());
        }
        let now = self.clock_now();
        if now - actor.authenticated_at > self.inner.config.step_up_secs * 1_000_000 {
            let d = Draft::new(now, AuditAction::AccessDenied, Outcome::Denied)
                .by(actor)
                .resource("Session", actor.session_public_id.as_deref());
            let details = self
                .inner
                .sealer
                .seal_details(&d.event_id, serde_json::json!({"operation": op.id(), "reason": "reauth-required"}).to_string().as_bytes())?;
            self.inner.writer.append(d.details(details)).await?;
            return Err(CoreError::ReauthRequired);
        }
        Ok(())
    }

    /// Audits a refusal that is not an authorization decision (self-elevation, bad input).
    pub(crate) async fn refuse(&self, actor: &Actor, action: AuditAction, resource: (&str, Option<&str>), e: CoreError) -> CoreError {
        let outcome = e.outcome();
        let d = Draft::new(self.clock_now(), action, outcome).by(actor).resource(resource.0, resource.1);
        let details = serde_json::json!({"code": e.code(), "reason": match &e { CoreError::Refused { reason, .. } => *reason, _ => "" }});
        match self.inner.sealer.seal_details(&d.event_id, details.to_string().as_bytes()) {
            Ok(sealed) => match self.inner.writer.append(d.details(sealed)).await {
                Ok(_) => e,
                Err(w) => w,
            },
            Err(s) => s,
        }
    }

    async fn user_in_scope(&self, actor: &Actor, op: Operation, purpose: PurposeOfUse, user_id: &str) -> Result<UserRow, CoreError> {
        let user = if carevault_domain::UserId::parse(user_id).is_ok() { self.inner.store.user_by_id(user_id).await? } else { None };
        let Some(user) = user else {
            self.gate(actor, op, purpose, &Target::Anywhere, ("User", Some(user_id))).await?;
            let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::NotFound).by(actor).resource("User", Some(user_id));
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("User/{user_id}") });
        };
        self.gate(actor, op, purpose, &Target::Organization(&user.organization_id), ("User", Some(user_id))).await?;
        Ok(user)
    }

    pub(crate) fn admin_purpose(actor: &Actor) -> PurposeOfUse {
        if actor.is_system() || actor.privileges.purposes().contains(&PurposeOfUse::SystemAdministration) {
            PurposeOfUse::SystemAdministration
        } else {
            PurposeOfUse::Operations
        }
    }

    // ----- organization structure (operator's shell) -----

    /// Adds an organization, location or department (`carevault org add …`).
    pub(crate) async fn add_unit(
        &self,
        kind: &str,
        name: &str,
        organization_id: Option<&str>,
        location_id: Option<&str>,
        time_zone: Option<&str>,
    ) -> Result<String, CoreError> {
        let operator = Actor::system("operator");
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
            return Err(bad("name", "1–120 printable characters"));
        }
        let kind = match kind {
            "organization" => UnitKind::Organization,
            "location" => UnitKind::Location,
            "department" => UnitKind::Department,
            "room" => UnitKind::Room,
            _ => return Err(bad("kind", "organization, location, department or room")),
        };
        let time_zone = match (kind, time_zone) {
            (UnitKind::Location, Some(tz)) => Some(carevault_domain::practice::TimeZoneName::parse("time_zone", tz)?.to_string()),
            (UnitKind::Location, None) => return Err(bad("time_zone", "a location needs its IANA time zone (e.g. America/Chicago)")),
            (_, Some(_)) => return Err(bad("time_zone", "only locations have a time zone")),
            (_, None) => None,
        };
        if kind == UnitKind::Room && location_id.is_none() {
            return Err(bad("location", "a room belongs to a location"));
        }
        if kind != UnitKind::Organization {
            let org = organization_id.ok_or_else(|| bad("organization", "required"))?;
            if self.inner.store.unit(UnitKind::Organization, org).await?.is_none() {
                return Err(CoreError::NotFound { resource: format!("Organization/{org}") });
            }
            if let Some(l) = location_id {
                let loc = self.inner.store.unit(UnitKind::Location, l).await?;
                if loc.and_then(|l| l.organization_id).as_deref() != Some(org) {
                    return Err(CoreError::NotFound { resource: format!("Location/{l} in Organization/{org}") });
                }
            }
        }
        let prefix = match kind {
            UnitKind::Organization => "org",
            UnitKind::Location => "loc",
            UnitKind::Department => "dep",
            UnitKind::Room => "room",
        };
        let id = new_id(prefix);
        let now = self.clock_now();
        let row = UnitRow {
            id: id.clone(),
            organization_id: organization_id.map(str::to_string).filter(|_| kind != UnitKind::Organization),
            location_id: location_id.map(str::to_string).filter(|_| matches!(kind, UnitKind::Department | UnitKind::Room)),
            name: name.to_string(),
            created_at: now,
            time_zone,
        };
        let ev = Draft::new(now, AuditAction::ConfigChange, Outcome::Success).by(&operator).resource(prefix, Some(&id));
        self.inner.writer.write(vec![Op::InsertUnit { kind, row }], vec![ev], None).await?;
        Ok(id)
    }

    /// The organization structure: every organization, location (with its time zone),
    /// department and room.
    pub async fn units(&self) -> Result<Vec<UnitView>, CoreError> {
        let mut out = Vec::new();
        for (kind, name) in [
            (UnitKind::Organization, "organization"),
            (UnitKind::Location, "location"),
            (UnitKind::Department, "department"),
            (UnitKind::Room, "room"),
        ] {
            for u in self.inner.store.units(kind).await? {
                out.push(UnitView {
                    kind: name.to_string(),
                    id: u.id,
                    organization_id: u.organization_id,
                    location_id: u.location_id,
                    name: u.name,
                    time_zone: u.time_zone,
                });
            }
        }
        Ok(out)
    }

    async fn check_scope(&self, scope: &ScopeCols) -> Result<(), CoreError> {
        if self.inner.store.unit(UnitKind::Organization, &scope.organization_id).await?.is_none() {
            return Err(CoreError::NotFound { resource: format!("Organization/{}", scope.organization_id) });
        }
        if let Some(l) = &scope.location_id {
            let ok =
                self.inner.store.unit(UnitKind::Location, l).await?.and_then(|u| u.organization_id) == Some(scope.organization_id.clone());
            if !ok {
                return Err(CoreError::NotFound { resource: format!("Location/{l}") });
            }
        }
        if let Some(d) = &scope.department_id {
            let ok = self.inner.store.unit(UnitKind::Department, d).await?.and_then(|u| u.organization_id)
                == Some(scope.organization_id.clone());
            if !ok {
                return Err(CoreError::NotFound { resource: format!("Department/{d}") });
            }
        }
        Ok(())
    }

    // ----- roles and assignments -----

    /// Every role, built-in and custom.
    pub async fn list_roles(&self, actor: &Actor) -> Result<Vec<RoleView>, CoreError> {
        self.gate(actor, Operation::RoleList, Self::admin_purpose(actor), &Target::Anywhere, ("Role", None)).await?;
        let mut out: Vec<RoleView> = Role::ALL
            .iter()
            .map(|r| RoleView {
                name: r.id().into(),
                builtin: true,
                description: r.description().into(),
                permissions: authz::role_permissions(*r).iter().map(|p| p.id().to_string()).collect(),
                purposes: authz::role_purposes(*r).iter().map(|p| p.code().to_string()).collect(),
            })
            .collect();
        for c in self.inner.store.custom_roles().await? {
            out.push(RoleView {
                name: c.name,
                builtin: false,
                description: c.description,
                permissions: c.permissions.split_whitespace().map(str::to_string).collect(),
                purposes: c.purposes.split_whitespace().map(str::to_string).collect(),
            });
        }
        Ok(out)
    }

    /// Creates or replaces a custom role. Replacing ends the sessions of everyone holding it
    /// (they sign in again under the new privileges). Nobody may change a role they hold.
    pub async fn put_custom_role(
        &self,
        actor: &Actor,
        name: &str,
        description: &str,
        permissions: &[String],
        purposes: &[String],
    ) -> Result<RoleView, CoreError> {
        let existing = self.inner.store.custom_role(name).await?;
        let op = if existing.is_some() { Operation::RoleUpdate } else { Operation::RoleCreate };
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, op, purpose, &Target::Anywhere, ("Role", None)).await?;
        self.require_fresh_auth(actor, op).await?;
        let action = if existing.is_some() { AuditAction::Update } else { AuditAction::Create };
        let checked = (|| {
            check_role_name(name)?;
            let description = check_reason("description", description, true)?;
            let mut perms = Vec::new();
            for (i, p) in permissions.iter().enumerate() {
                let Some(p) = Permission::parse(p) else {
                    return Err(bad(&format!("permissions[{i}]"), "unknown permission (see docs/permissions.md)"));
                };
                if !perms.contains(&p) {
                    perms.push(p);
                }
            }
            if perms.is_empty() {
                return Err(bad("permissions", "at least one permission"));
            }
            let mut purps = Vec::new();
            for (i, p) in purposes.iter().enumerate() {
                match PurposeOfUse::parse(p) {
                    Some(PurposeOfUse::EmergencyTreatment) => {
                        return Err(bad(&format!("purposes[{i}]"), "ETREAT comes only with break-glass"));
                    }
                    Some(p) if !purps.contains(&p) => purps.push(p),
                    Some(_) => {}
                    None => return Err(bad(&format!("purposes[{i}]"), "unknown purpose of use")),
                }
            }
            if purps.is_empty() {
                return Err(bad("purposes", "at least one purpose of use"));
            }
            Ok((description, perms, purps))
        })();
        let (description, perms, purps) = match checked {
            Ok(v) => v,
            Err(e) => return Err(self.refuse(actor, action, ("Role", None), e).await),
        };
        if actor.roles.iter().any(|r| r == name) {
            let e = CoreError::Refused { reason: "self-elevation", message: "you cannot change a role you hold".into() };
            return Err(self.refuse(actor, action, ("Role", None), e).await);
        }
        let now = self.clock_now();
        let perm_text = perms.iter().map(|p| p.id()).collect::<Vec<_>>().join(" ");
        let purpose_text = purps.iter().map(|p| p.code()).collect::<Vec<_>>().join(" ");
        let privileged = perms.iter().any(|p| p.is_privileged());
        if privileged && self.needs_approval(actor) {
            let payload = serde_json::json!({"name": name, "description": description, "permissions": perm_text, "purposes": purpose_text});
            let summary = format!("{} custom role {name} with permissions {perm_text}", if existing.is_some() { "change" } else { "new" });
            return Err(self.file_approval(actor, ("role.put", &actor.organization_id, None), summary, payload).await);
        }
        let row = CustomRoleRow {
            name: name.to_string(),
            description: description.clone(),
            permissions: perms.iter().map(|p| p.id()).collect::<Vec<_>>().join(" "),
            purposes: purps.iter().map(|p| p.code()).collect::<Vec<_>>().join(" "),
            created_by: actor.audit_name(),
            created_at: existing.as_ref().map_or(now, |e| e.created_at),
            updated_at: now,
        };
        let mut ops = vec![Op::UpsertCustomRole(row)];
        if privileged && !actor.is_system() {
            ops.push(self.privileged_alert("privileged-role", None, name, now));
        }
        let mut evs = vec![Draft::new(now, action, Outcome::Success).by(actor).resource("Role", None).purpose(purpose)];
        if existing.is_some() {
            for a in self.inner.store.assignments_with_role(name).await? {
                ops.push(Op::DeleteUserSessions { user_id: a.user_id.clone() });
                evs.push(
                    Draft::new(now, AuditAction::Logout, Outcome::Success)
                        .actor_name(format!("user:{}", a.user_id))
                        .resource("User", Some(&a.user_id)),
                );
            }
        }
        let details = self.inner.sealer.seal_details(&evs[0].event_id, serde_json::json!({"role": name}).to_string().as_bytes())?;
        evs[0].details = Some(details);
        self.inner.writer.write(ops, evs, None).await?;
        Ok(RoleView {
            name: name.into(),
            builtin: false,
            description,
            permissions: perms.iter().map(|p| p.id().to_string()).collect(),
            purposes: purps.iter().map(|p| p.code().to_string()).collect(),
        })
    }

    /// Assigns a role to a user within a scope, optionally until `expires_at` (Unix seconds).
    pub async fn add_assignment(
        &self,
        actor: &Actor,
        user_id: &str,
        role: &str,
        scope: ScopeInput,
        expires_at: Option<i64>,
    ) -> Result<AssignmentView, CoreError> {
        let purpose = Self::admin_purpose(actor);
        let scope = scope.into_cols();
        self.gate(actor, Operation::AssignmentAdd, purpose, &Target::Organization(&scope.organization_id), ("RoleAssignment", None))
            .await?;
        self.require_fresh_auth(actor, Operation::AssignmentAdd).await?;
        let now = self.clock_now();
        let refuse = |e| self.refuse(actor, AuditAction::Create, ("RoleAssignment", None), e);
        if !actor.is_system() && user_id == actor.user_id.as_str() {
            return Err(
                refuse(CoreError::Refused { reason: "self-elevation", message: "you cannot assign a role to yourself".into() }).await
            );
        }
        if Role::parse(role).is_none() && self.inner.store.custom_role(role).await?.is_none() {
            return Err(refuse(bad("role", "unknown role")).await);
        }
        if let Some(e) = expires_at {
            if e.saturating_mul(1_000_000) <= now {
                return Err(refuse(bad("expires_at", "must be in the future")).await);
            }
        }
        if let Err(e) = self.check_scope(&scope).await {
            return Err(refuse(e).await);
        }
        let user = match self.inner.store.user_by_id(user_id).await? {
            Some(u) => u,
            None => return Err(refuse(CoreError::NotFound { resource: format!("User/{user_id}") }).await),
        };
        if user.organization_id != scope.organization_id {
            return Err(refuse(bad("organization_id", "roles are assigned within the user's own organization")).await);
        }
        let privileged = self.role_is_privileged(role).await?;
        if privileged && self.needs_approval(actor) {
            let mut payload = crate::approvals::scope_payload(&scope);
            payload["user_id"] = serde_json::json!(user_id);
            payload["role"] = serde_json::json!(role);
            payload["expires_at"] = serde_json::json!(expires_at.map(|e| e.saturating_mul(1_000_000)));
            let summary = format!("assign role {role} to {} ({user_id}) in {}", user.username, scope.organization_id);
            let org = scope.organization_id.clone();
            return Err(self.file_approval(actor, ("assignment.add", &org, Some(user_id)), summary, payload).await);
        }
        let row = AssignmentRow {
            id: new_id("ra"),
            user_id: user_id.to_string(),
            role: role.to_string(),
            scope,
            expires_at: expires_at.map(|e| e.saturating_mul(1_000_000)),
            created_by: actor.audit_name(),
            created_at: now,
        };
        let ev =
            Draft::new(now, AuditAction::Create, Outcome::Success).by(actor).resource("RoleAssignment", Some(&row.id)).purpose(purpose);
        let mut ops = vec![Op::InsertAssignment(row.clone())];
        if privileged && !actor.is_system() {
            ops.push(self.privileged_alert("privileged-assignment", Some(user_id), &row.id, now));
        }
        self.inner.writer.write(ops, vec![ev], None).await?;
        Ok(row.into())
    }

    /// Removes an assignment and ends the user's sessions, which hold the old privileges.
    /// The last practice admin of an organization cannot be removed.
    pub async fn remove_assignment(&self, actor: &Actor, id: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        let Some(a) = self.inner.store.assignment(id).await? else {
            self.gate(actor, Operation::AssignmentRemove, purpose, &Target::Anywhere, ("RoleAssignment", Some(id))).await?;
            return Err(self
                .refuse(actor, AuditAction::Delete, ("RoleAssignment", Some(id)), CoreError::NotFound { resource: "assignment".into() })
                .await);
        };
        self.gate(
            actor,
            Operation::AssignmentRemove,
            purpose,
            &Target::Organization(&a.scope.organization_id),
            ("RoleAssignment", Some(id)),
        )
        .await?;
        self.require_fresh_auth(actor, Operation::AssignmentRemove).await?;
        let now = self.clock_now();
        let ops = vec![
            Op::DeleteAssignment { id: id.to_string() },
            Op::GuardLastAdmin { organization_id: a.scope.organization_id.clone(), now },
            Op::DeleteUserSessions { user_id: a.user_id.clone() },
        ];
        let ev = Draft::new(now, AuditAction::Delete, Outcome::Success).by(actor).resource("RoleAssignment", Some(id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Delete, Outcome::Denied).by(actor).resource("RoleAssignment", Some(id)).purpose(purpose);
        self.inner.writer.write(ops, vec![ev], Some(fail)).await?;
        Ok(())
    }

    // ----- grants -----

    /// Gives a user one extra permission for a limited time, with a reason.
    pub async fn add_grant(&self, actor: &Actor, req: &GrantRequest) -> Result<GrantView, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::GrantAdd, purpose, &Target::Organization(&req.organization_id), ("Grant", None)).await?;
        self.require_fresh_auth(actor, Operation::GrantAdd).await?;
        let now = self.clock_now();
        let refuse = |e| self.refuse(actor, AuditAction::Create, ("Grant", None), e);
        if !actor.is_system() && req.user_id == actor.user_id.as_str() {
            return Err(
                refuse(CoreError::Refused { reason: "self-elevation", message: "you cannot grant yourself a permission".into() }).await
            );
        }
        let Some(permission) = Permission::parse(&req.permission) else {
            return Err(refuse(bad("permission", "unknown permission (see docs/permissions.md)")).await);
        };
        let ends = req.ends_at.saturating_mul(1_000_000);
        if ends <= now {
            return Err(refuse(bad("ends_at", "the grant would already be over")).await);
        }
        if ends > now + self.inner.config.grant_max_days * 86_400 * 1_000_000 {
            return Err(refuse(bad("ends_at", format!("grants last at most {} days", self.inner.config.grant_max_days))).await);
        }
        let reason = match check_reason("reason", &req.reason, true) {
            Ok(r) => r,
            Err(e) => return Err(refuse(e).await),
        };
        let scope = ScopeCols {
            organization_id: req.organization_id.clone(),
            location_id: req.location_id.clone(),
            department_id: req.department_id.clone(),
        };
        if let Err(e) = self.check_scope(&scope).await {
            return Err(refuse(e).await);
        }
        match self.inner.store.user_by_id(&req.user_id).await? {
            Some(u) if u.organization_id == scope.organization_id => {}
            Some(_) => return Err(refuse(bad("organization_id", "grants are given within the user's own organization")).await),
            None => return Err(refuse(CoreError::NotFound { resource: format!("User/{}", req.user_id) }).await),
        }
        if let Some(p) = &req.patient_id {
            let in_org = self.inner.store.patient_access(p).await?.is_some_and(|a| a.scope.organization_id == scope.organization_id);
            if !in_org {
                return Err(refuse(CoreError::NotFound { resource: format!("Patient/{p}") }).await);
            }
        }
        let privileged = permission.is_privileged();
        if privileged && self.needs_approval(actor) {
            let mut payload = crate::approvals::scope_payload(&scope);
            payload["user_id"] = serde_json::json!(req.user_id);
            payload["permission"] = serde_json::json!(permission.id());
            payload["patient_id"] = serde_json::json!(req.patient_id);
            payload["ends_at"] = serde_json::json!(ends);
            payload["reason"] = serde_json::json!(reason);
            let summary = format!(
                "grant {} to user {} in {} until {}",
                permission.id(),
                req.user_id,
                scope.organization_id,
                crate::format_instant(ends)
            );
            let org = scope.organization_id.clone();
            return Err(self.file_approval(actor, ("grant.add", &org, Some(&req.user_id)), summary, payload).await);
        }
        let id = new_id("gr");
        let sealed = self.inner.sealer.seal_note("access_grants", "reason", &id, &reason)?;
        let row = GrantRow {
            id: id.clone(),
            user_id: req.user_id.clone(),
            permission: permission.id().to_string(),
            scope,
            patient_id: req.patient_id.clone(),
            starts_at: now,
            ends_at: ends,
            reason: sealed,
            created_by: actor.audit_name(),
            revoked_at: None,
            revoked_by: None,
        };
        let mut ev = Draft::new(now, AuditAction::Create, Outcome::Success).by(actor).resource("Grant", Some(&id)).purpose(purpose);
        if let Some(p) = &req.patient_id {
            ev = ev.patient(p);
        }
        let mut ops = vec![Op::InsertGrant(Box::new(row.clone()))];
        if privileged && !actor.is_system() {
            ops.push(self.privileged_alert("privileged-grant", Some(&req.user_id), &id, now));
        }
        self.inner.writer.write(ops, vec![ev], None).await?;
        Ok(grant_view(&row, now))
    }

    /// Grants of a user (or, without one, every live grant of the actor's organizations).
    pub async fn list_grants(&self, actor: &Actor, user_id: Option<&str>) -> Result<Vec<GrantView>, CoreError> {
        let purpose = Self::admin_purpose(actor);
        let now = self.clock_now();
        let rows = match user_id {
            Some(u) => {
                self.user_in_scope(actor, Operation::GrantList, purpose, u).await?;
                self.inner.store.grants_for_user(u).await?
            }
            None => {
                self.gate(actor, Operation::GrantList, purpose, &Target::Anywhere, ("Grant", None)).await?;
                let mut all = Vec::new();
                for org in actor.privileges.organizations_with(Permission::GrantManage) {
                    all.extend(self.inner.store.live_grants(&org, now).await?);
                }
                all
            }
        };
        let d = Draft::new(now, AuditAction::Read, Outcome::Success).by(actor).resource("Grant", None).purpose(purpose);
        self.inner.writer.append(d).await?;
        Ok(rows.iter().map(|g| grant_view(g, now)).collect())
    }

    /// Revokes a grant at once (the user's sessions end: they held the privilege).
    pub async fn revoke_grant(&self, actor: &Actor, id: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        let Some(g) = self.inner.store.grant(id).await? else {
            self.gate(actor, Operation::GrantRevoke, purpose, &Target::Anywhere, ("Grant", Some(id))).await?;
            return Err(self
                .refuse(actor, AuditAction::Delete, ("Grant", Some(id)), CoreError::NotFound { resource: "grant".into() })
                .await);
        };
        self.gate(actor, Operation::GrantRevoke, purpose, &Target::Organization(&g.scope.organization_id), ("Grant", Some(id))).await?;
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Delete, Outcome::Success).by(actor).resource("Grant", Some(id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Delete, Outcome::NotFound).by(actor).resource("Grant", Some(id)).purpose(purpose);
        let ops =
            vec![Op::RevokeGrant { id: id.into(), by: actor.audit_name(), now }, Op::DeleteUserSessions { user_id: g.user_id.clone() }];
        self.inner.writer.write(ops, vec![ev], Some(fail)).await?;
        Ok(())
    }

    // ----- accounts -----

    /// Accounts of the organizations where the actor may read users.
    pub async fn list_users(&self, actor: &Actor) -> Result<Vec<UserView>, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::UserList, purpose, &Target::Anywhere, ("User", None)).await?;
        let orgs = actor.privileges.organizations_with(Permission::UserRead);
        let mut out = Vec::new();
        for u in self.inner.store.users().await? {
            if !orgs.contains(&u.organization_id) {
                continue;
            }
            let assignments = self.inner.store.assignments_for_user(&u.id).await?.into_iter().map(Into::into).collect();
            out.push(UserView {
                id: u.id,
                username: u.username,
                organization_id: u.organization_id,
                active: u.active,
                created_at: u.created_at,
                last_login_at: u.last_login_at,
                deactivated_at: u.deactivated_at,
                assignments,
            });
        }
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success).by(actor).resource("User", None).purpose(purpose);
        self.inner.writer.append(d).await?;
        Ok(out)
    }

    /// Deactivates an account: every session ends at once, the next request is refused.
    pub async fn deactivate_user(&self, actor: &Actor, user_id: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        let user = self.user_in_scope(actor, Operation::UserDeactivate, purpose, user_id).await?;
        if !actor.is_system() && user.id == actor.user_id.as_str() {
            let e =
                CoreError::Refused { reason: "self-deactivation", message: "ask another administrator to deactivate your account".into() };
            return Err(self.refuse(actor, AuditAction::Update, ("User", Some(user_id)), e).await);
        }
        self.set_active(actor, &user, false, "account-deactivated").await
    }

    pub async fn reactivate_user(&self, actor: &Actor, user_id: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        let user = self.user_in_scope(actor, Operation::UserReactivate, purpose, user_id).await?;
        self.set_active(actor, &user, true, "account-reactivated").await
    }

    async fn set_active(&self, actor: &Actor, user: &UserRow, active: bool, kind: &str) -> Result<(), CoreError> {
        let now = self.clock_now();
        let mut ops =
            vec![Op::SetUserActive { user_id: user.id.clone(), active, now }, Op::DeleteUserSessions { user_id: user.id.clone() }];
        if !active {
            ops.push(Op::GuardLastAdmin { organization_id: user.organization_id.clone(), now });
        }
        ops.push(Op::InsertAlert(alert(SECURITY, kind, Some(&user.id), None, None, now)));
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("User", Some(&user.id));
        let details = self.inner.sealer.seal_details(&ev.event_id, serde_json::json!({"active": active}).to_string().as_bytes())?;
        let fail = Draft::new(now, AuditAction::Update, Outcome::Denied).by(actor).resource("User", Some(&user.id));
        self.inner.writer.write(ops, vec![ev.details(details)], Some(fail)).await?;
        Ok(())
    }

    /// Deactivates accounts unused for `inactive_account_days` (a background job).
    pub(crate) async fn deactivate_unused_accounts(&self) -> Result<usize, CoreError> {
        let days = self.inner.config.inactive_account_days;
        if days <= 0 {
            return Ok(0);
        }
        let now = self.clock_now();
        let cutoff = now - days * 86_400 * 1_000_000;
        let job = Actor::system("inactivity");
        let users = self.inner.store.users_unused_since(cutoff).await?;
        for u in &users {
            let ops = vec![
                Op::SetUserActive { user_id: u.id.clone(), active: false, now },
                Op::DeleteUserSessions { user_id: u.id.clone() },
                Op::InsertAlert(alert(SECURITY, "account-inactive", Some(&u.id), None, None, now)),
            ];
            let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(&job).resource("User", Some(&u.id));
            let details = self
                .inner
                .sealer
                .seal_details(&ev.event_id, serde_json::json!({"active": false, "reason": "inactive"}).to_string().as_bytes())?;
            self.inner.writer.write(ops, vec![ev.details(details)], None).await?;
        }
        Ok(users.len())
    }

    // ----- sessions -----

    fn session_views(&self, rows: Vec<SessionRow>, current: Option<&str>) -> Vec<SessionView> {
        rows.into_iter()
            .filter(|s| s.state == "active")
            .map(|s| SessionView {
                current: current == Some(s.public_id.as_str()),
                id: s.public_id,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
                source_ip: s.source_ip,
            })
            .collect()
    }

    /// The actor's own sessions.
    pub async fn my_sessions(&self, actor: &Actor) -> Result<Vec<SessionView>, CoreError> {
        self.gate(actor, Operation::OwnSessions, PurposeOfUse::Operations, &Target::Anywhere, ("Session", None)).await?;
        let rows = self.inner.store.sessions_for_user(actor.user_id.as_str()).await?;
        Ok(self.session_views(rows, actor.session_public_id.as_deref()))
    }

    /// Ends one of the actor's own sessions (`Some(id)`), or all of them ("sign out everywhere").
    pub async fn end_my_sessions(&self, actor: &Actor, public_id: Option<&str>) -> Result<(), CoreError> {
        self.gate(actor, Operation::OwnSessions, PurposeOfUse::Operations, &Target::Anywhere, ("Session", public_id)).await?;
        let uid = actor.user_id.to_string();
        let op = match public_id {
            Some(p) => Op::DeleteSessionByPublicId { user_id: uid, public_id: p.to_string() },
            None => Op::DeleteUserSessions { user_id: uid },
        };
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Logout, Outcome::Success).by(actor).resource("Session", public_id);
        let fail = Draft::new(now, AuditAction::Logout, Outcome::NotFound).by(actor).resource("Session", public_id);
        self.inner.writer.write(vec![op], vec![ev], Some(fail)).await?;
        Ok(())
    }

    /// Another user's sessions.
    pub async fn user_sessions(&self, actor: &Actor, user_id: &str) -> Result<Vec<SessionView>, CoreError> {
        let purpose = Self::admin_purpose(actor);
        let user = self.user_in_scope(actor, Operation::SessionListUser, purpose, user_id).await?;
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success).by(actor).resource("Session", None).purpose(purpose);
        self.inner.writer.append(d).await?;
        Ok(self.session_views(self.inner.store.sessions_for_user(&user.id).await?, None))
    }

    /// Ends every session of another user.
    pub async fn end_user_sessions(&self, actor: &Actor, user_id: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        let user = self.user_in_scope(actor, Operation::SessionEndUser, purpose, user_id).await?;
        let ev =
            Draft::new(self.clock_now(), AuditAction::Logout, Outcome::Success).by(actor).resource("User", Some(&user.id)).purpose(purpose);
        self.inner.writer.write(vec![Op::DeleteUserSessions { user_id: user.id.clone() }], vec![ev], None).await?;
        Ok(())
    }

    // ----- care relationships, placement, flags -----

    /// A patient's care team (current and past memberships).
    pub async fn care_team(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<CareTeamMember>, CoreError> {
        let (_, allowed) = self.gate_patient(actor, Operation::CareTeamList, purpose, AuditAction::Read, "CareTeam", patient_id).await?;
        let now = self.clock_now();
        let d = Draft::new(now, AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource("CareTeam", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.append(d).await?;
        Ok(self
            .inner
            .store
            .care_relationships(patient_id)
            .await?
            .into_iter()
            .map(|c| CareTeamMember {
                active: c.starts_at <= now && c.ends_at.is_none_or(|e| e > now),
                user_id: c.user_id,
                relation: c.relation,
                starts_at: c.starts_at,
                ends_at: c.ends_at,
            })
            .collect())
    }

    /// Adds `user_id` to a patient's care team (`relation`: `assigned-provider` or `care-team`),
    /// optionally until `ends_at` (Unix seconds).
    pub async fn add_care_team_member(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        user_id: &str,
        relation: &str,
        ends_at: Option<i64>,
    ) -> Result<(), CoreError> {
        let (facts, allowed) =
            self.gate_patient(actor, Operation::CareTeamAdd, purpose, AuditAction::Create, "CareTeam", patient_id).await?;
        let now = self.clock_now();
        let refuse = |e| self.refuse(actor, AuditAction::Create, ("CareTeam", Some(patient_id)), e);
        if !matches!(relation, "assigned-provider" | "care-team") {
            return Err(refuse(bad("relation", "assigned-provider or care-team")).await);
        }
        // A relationship opens clinical data: nobody creates their own (break-glass is the
        // audited, reviewed way in).
        if !actor.is_system() && user_id == actor.user_id.as_str() {
            return Err(refuse(CoreError::Refused {
                reason: "self-elevation",
                message: "you cannot add yourself to a patient's care team; ask a colleague, or use break-glass in an emergency".into(),
            })
            .await);
        }
        if let Some(e) = ends_at {
            if e.saturating_mul(1_000_000) <= now {
                return Err(refuse(bad("ends_at", "must be in the future")).await);
            }
        }
        let member = if carevault_domain::UserId::parse(user_id).is_ok() { self.inner.store.user_by_id(user_id).await? } else { None };
        match member {
            Some(u) if u.active && u.organization_id == facts.scope.organization_id => {}
            _ => return Err(refuse(CoreError::NotFound { resource: format!("active User/{user_id} of the patient's organization") }).await),
        }
        let row = CareRelationshipRow {
            patient_id: patient_id.into(),
            user_id: user_id.into(),
            relation: relation.into(),
            starts_at: now,
            ends_at: ends_at.map(|e| e.saturating_mul(1_000_000)),
            created_by: actor.audit_name(),
        };
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource("CareTeam", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.write(vec![Op::UpsertCare(row)], vec![ev], None).await?;
        Ok(())
    }

    pub async fn end_care_team_member(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        user_id: &str,
        relation: &str,
    ) -> Result<(), CoreError> {
        let (_, allowed) = self.gate_patient(actor, Operation::CareTeamEnd, purpose, AuditAction::Update, "CareTeam", patient_id).await?;
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("CareTeam", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        let fail =
            Draft::new(now, AuditAction::Update, Outcome::NotFound).by(actor).resource("CareTeam", Some(patient_id)).purpose(purpose);
        let op = Op::EndCare { patient_id: patient_id.into(), user_id: user_id.into(), relation: relation.into(), now };
        self.inner.writer.write(vec![op], vec![ev], Some(fail)).await?;
        Ok(())
    }

    /// Places a patient at a home location and/or department of their organization.
    pub async fn set_patient_placement(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        location_id: Option<&str>,
        department_id: Option<&str>,
    ) -> Result<(), CoreError> {
        let (facts, allowed) =
            self.gate_patient(actor, Operation::PatientPlacement, purpose, AuditAction::Update, "Patient", patient_id).await?;
        let scope = ScopeCols {
            organization_id: facts.scope.organization_id.clone(),
            location_id: location_id.map(str::to_string),
            department_id: department_id.map(str::to_string),
        };
        if let Err(e) = self.check_scope(&scope).await {
            return Err(self.refuse(actor, AuditAction::Update, ("Patient", Some(patient_id)), e).await);
        }
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("Patient", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        let op = Op::SetPlacement { patient_id: patient_id.into(), location_id: scope.location_id, department_id: scope.department_id };
        self.inner.writer.write(vec![op], vec![ev], None).await?;
        Ok(())
    }

    /// Replaces a patient's sensitive-record flags.
    pub async fn set_patient_flags(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        categories: &[String],
    ) -> Result<Vec<String>, CoreError> {
        let (_, allowed) =
            self.gate_patient(actor, Operation::PatientFlagsSet, purpose, AuditAction::Update, "Patient", patient_id).await?;
        let mut cats = Vec::new();
        for (i, c) in categories.iter().enumerate() {
            match SensitiveCategory::parse(c) {
                Some(c) if !cats.contains(&c) => cats.push(c),
                Some(_) => {}
                None => {
                    let e =
                        bad(&format!("categories[{i}]"), "unknown category (vip, behavioral-health, substance-use, hiv-sti, reproductive)");
                    return Err(self.refuse(actor, AuditAction::Update, ("Patient", Some(patient_id)), e).await);
                }
            }
        }
        cats.sort();
        let ids: Vec<String> = cats.iter().map(|c| c.id().to_string()).collect();
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("Patient", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        let details = self.inner.sealer.seal_details(&ev.event_id, serde_json::json!({"flags": ids}).to_string().as_bytes())?;
        let op = Op::ReplaceFlags { patient_id: patient_id.into(), categories: ids.clone(), by: actor.audit_name(), now };
        self.inner.writer.write(vec![op], vec![ev.details(details)], None).await?;
        Ok(ids)
    }

    // ----- break-glass -----

    /// Opens one patient's record in an emergency for `break_glass_secs`. Needs a reason and a
    /// fresh sign-in; raises a privacy alert and a review item.
    pub async fn break_glass(
        &self,
        actor: &Actor,
        patient_id: &str,
        reason_code: &str,
        reason_text: &str,
    ) -> Result<BreakGlassView, CoreError> {
        let purpose = PurposeOfUse::EmergencyTreatment;
        let (_, allowed) =
            self.gate_patient(actor, Operation::BreakGlassOpen, purpose, AuditAction::Create, "BreakGlass", patient_id).await?;
        self.require_fresh_auth(actor, Operation::BreakGlassOpen).await?;
        let refuse = |e| self.refuse(actor, AuditAction::Create, ("BreakGlass", Some(patient_id)), e);
        let Some(code) = BreakGlassReason::parse(reason_code) else {
            return Err(refuse(bad("reason", "one of medical-emergency, covering-provider, patient-request, other")).await);
        };
        let text = match check_reason("reason_text", reason_text, code == BreakGlassReason::Other) {
            Ok(t) => t,
            Err(e) => return Err(refuse(e).await),
        };
        let now = self.clock_now();
        let id = new_id("bg");
        let row = BreakGlassRow {
            id: id.clone(),
            user_id: actor.user_id.to_string(),
            patient_id: patient_id.into(),
            reason_code: code.id().into(),
            reason_text: self.inner.sealer.seal_note("break_glass", "reason_text", &id, &text)?,
            opened_at: now,
            expires_at: now + self.inner.config.break_glass_secs * 1_000_000,
            review_state: "open".into(),
            reviewed_by: None,
            reviewed_at: None,
            review_outcome: None,
            review_note: None,
        };
        let ops = vec![
            Op::InsertBreakGlass(Box::new(row.clone())),
            Op::InsertAlert(alert(PRIVACY, "break-glass", Some(actor.user_id.as_str()), Some(patient_id), Some(&id), now)),
        ];
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource("BreakGlass", Some(&id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.write(ops, vec![ev], None).await?;
        Ok(BreakGlassView::from_row(&row, None))
    }

    /// The review queue: open break-glass uses with their reasons (reading them is audited).
    pub async fn break_glass_queue(&self, actor: &Actor, state: &str) -> Result<Vec<BreakGlassView>, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::BreakGlassQueue, purpose, &Target::Anywhere, ("BreakGlass", None)).await?;
        if !matches!(state, "open" | "closed") {
            return Err(bad("state", "open or closed"));
        }
        // Only the break-glass uses on patients of the organizations the officer reviews for.
        let orgs = actor.privileges.organizations_with(Permission::BreakGlassReview);
        let mut rows = Vec::new();
        for r in self.inner.store.break_glass_by_state(state, 500).await? {
            if actor.is_system() || self.patient_org(&r.patient_id).await?.is_some_and(|o| orgs.contains(&o)) {
                rows.push(r);
            }
        }
        let ids: Vec<String> = rows.iter().map(|r| r.patient_id.clone()).collect();
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource("BreakGlass", None)
            .purpose(purpose)
            .disclosing(&ids);
        let receipt = self.inner.writer.append(d).await?;
        let mut out = Vec::with_capacity(rows.len());
        let now = self.clock_now();
        let names = self.usernames().await?;
        for r in rows {
            let text = self
                .inner
                .sealer
                .open_note(&self.inner.store, now, &receipt, &r.patient_id, ("break_glass", "reason_text", &r.id), &r.reason_text)
                .await?;
            let mut v = BreakGlassView::from_row(&r, Some(text));
            v.username = names.get(&r.user_id).cloned();
            out.push(v);
        }
        Ok(out)
    }

    /// Closes a review with an outcome and a note. Nobody reviews their own break-glass.
    pub async fn close_break_glass_review(&self, actor: &Actor, id: &str, outcome: &str, note: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::BreakGlassClose, purpose, &Target::Anywhere, ("BreakGlass", Some(id))).await?;
        let refuse = |e| self.refuse(actor, AuditAction::Update, ("BreakGlass", Some(id)), e);
        let Some(row) = self.inner.store.break_glass(id).await? else {
            return Err(refuse(CoreError::NotFound { resource: "break-glass review".into() }).await);
        };
        let org = self.patient_org(&row.patient_id).await?.unwrap_or_default();
        self.gate(actor, Operation::BreakGlassClose, purpose, &Target::Organization(&org), ("BreakGlass", Some(id))).await?;
        if row.user_id == actor.user_id.as_str() {
            return Err(refuse(CoreError::Refused {
                reason: "self-review",
                message: "another officer must review your own break-glass".into(),
            })
            .await);
        }
        let Some(outcome) = ReviewOutcome::parse(outcome) else {
            return Err(refuse(bad("outcome", "appropriate, inappropriate or inconclusive")).await);
        };
        let note = match check_reason("note", note, outcome != ReviewOutcome::Appropriate) {
            Ok(n) => n,
            Err(e) => return Err(refuse(e).await),
        };
        let now = self.clock_now();
        let sealed = self.inner.sealer.seal_note("break_glass", "review_note", id, &note)?;
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("BreakGlass", Some(id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource("BreakGlass", Some(id)).purpose(purpose);
        let op = Op::CloseReview { id: id.into(), by: actor.audit_name(), now, outcome: outcome.id().into(), note: sealed };
        self.inner.writer.write(vec![op], vec![ev], Some(fail)).await?;
        Ok(())
    }

    // ----- alerts and audit -----

    /// Open (or all) alerts of a category: `privacy` or `security`.
    pub async fn alerts(&self, actor: &Actor, category: &str, open_only: bool) -> Result<Vec<AlertView>, CoreError> {
        let op = match category {
            PRIVACY => Operation::PrivacyAlerts,
            SECURITY => Operation::SecurityAlerts,
            _ => return Err(bad("category", "privacy or security")),
        };
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, op, purpose, &Target::Anywhere, ("Alert", None)).await?;
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success).by(actor).resource("Alert", None).purpose(purpose);
        self.inner.writer.append(d).await?;
        let perm = if op == Operation::PrivacyAlerts { Permission::AlertPrivacy } else { Permission::AlertSecurity };
        let orgs = actor.privileges.organizations_with(perm);
        let mut out: Vec<AlertView> = Vec::new();
        let names = self.usernames().await?;
        for a in self.inner.store.alerts(category, open_only, 1000).await? {
            // Alerts about a patient or an account belong to its organization; a sign-in storm
            // from an address belongs to the installation.
            let visible = actor.is_system() || self.alert_org(&a).await?.is_none_or(|o| orgs.contains(&o));
            if visible {
                let mut v: AlertView = a.into();
                v.subject_username = v.subject_user.as_ref().and_then(|u| names.get(u)).cloned();
                out.push(v);
            }
        }
        Ok(out)
    }

    async fn patient_org(&self, patient_id: &str) -> Result<Option<String>, CoreError> {
        Ok(self.inner.store.patient_access(patient_id).await?.map(|a| a.scope.organization_id))
    }

    async fn alert_org(&self, a: &AlertRow) -> Result<Option<String>, CoreError> {
        if let Some(p) = &a.patient_id {
            return Ok(Some(self.patient_org(p).await?.unwrap_or_default()));
        }
        if let Some(u) = &a.subject_user {
            return Ok(Some(self.inner.store.user_by_id(u).await?.map(|u| u.organization_id).unwrap_or_default()));
        }
        Ok(None)
    }

    pub async fn close_alert(&self, actor: &Actor, id: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        let alert = self.inner.store.alert(id).await?;
        let category = alert.as_ref().map(|a| a.category.clone());
        let op = match category.as_deref() {
            Some(SECURITY) => Operation::SecurityAlertClose,
            _ => Operation::PrivacyAlertClose,
        };
        self.gate(actor, op, purpose, &Target::Anywhere, ("Alert", Some(id))).await?;
        if let Some(a) = &alert {
            if let Some(org) = self.alert_org(a).await? {
                self.gate(actor, op, purpose, &Target::Organization(&org), ("Alert", Some(id))).await?;
            }
        }
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("Alert", Some(id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Update, Outcome::NotFound).by(actor).resource("Alert", Some(id)).purpose(purpose);
        let op = Op::CloseAlert { id: id.into(), category: category.unwrap_or_else(|| PRIVACY.into()), by: actor.audit_name(), now };
        self.inner.writer.write(vec![op], vec![ev], Some(fail)).await?;
        Ok(())
    }

    /// Reads the audit log (plain columns), newest last, after `after_seq`. Reading it is audited.
    pub async fn audit_events(&self, actor: &Actor, after_seq: i64, limit: i64) -> Result<Vec<AuditEventView>, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::AuditRead, purpose, &Target::Anywhere, ("AuditEvent", None)).await?;
        let limit = limit.clamp(1, 1000);
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success).by(actor).resource("AuditEvent", None).purpose(purpose);
        self.inner.writer.append(d).await?;
        let rows = self.inner.store.audit_events(after_seq, limit).await?;
        let names = self.usernames().await?;
        Ok(rows.into_iter().map(|r| AuditEventView::from_row(r, &names)).collect())
    }

    pub(crate) async fn usernames(&self) -> Result<std::collections::HashMap<String, String>, CoreError> {
        Ok(self.inner.store.users().await?.into_iter().map(|u| (u.id, u.username)).collect())
    }

    /// Checks and resolves the typed filters of an audit search.
    async fn audit_filter(&self, q: &AuditQuery) -> Result<carevault_store::AuditSearch, CoreError> {
        let mut f = carevault_store::AuditSearch::default();
        if let Some(u) = given(&q.user) {
            f.actor = Some(if u.starts_with("user:") || u.starts_with("system:") {
                u.to_string()
            } else {
                match self.inner.store.user_by_username(u).await? {
                    Some(row) => format!("user:{}", row.id),
                    None => return Err(bad("user", "no account has this username")),
                }
            });
        }
        if let Some(p) = given(&q.patient) {
            if carevault_domain::PatientId::parse(p).is_err() {
                return Err(bad("patient", "not a patient id"));
            }
            f.patient_id = Some(p.to_string());
        }
        if let Some(a) = given(&q.action) {
            if AuditAction::parse(a).is_none() {
                return Err(bad("action", "not an audit action"));
            }
            f.action = Some(a.to_string());
        }
        if let Some(t) = given(&q.from) {
            f.from = Some(carevault_domain::audit::parse_time_bound("from", t, false).map_err(CoreError::Invalid)?);
        }
        if let Some(t) = given(&q.to) {
            f.to = Some(carevault_domain::audit::parse_time_bound("to", t, true).map_err(CoreError::Invalid)?);
        }
        if let (Some(a), Some(b)) = (f.from, f.to) {
            if a >= b {
                return Err(bad("to", "must be after 'from'"));
            }
        }
        f.before_seq = q.before;
        Ok(f)
    }

    /// What a search or an export asked for, sealed into its own audit record.
    fn seal_filter(&self, d: &Draft, q: &AuditQuery, rows: usize) -> Result<Vec<u8>, CoreError> {
        let j = serde_json::json!({
            "user": q.user, "patient": q.patient, "action": q.action, "from": q.from, "to": q.to, "before": q.before, "rows": rows,
        });
        self.inner.sealer.seal_details(&d.event_id, j.to_string().as_bytes())
    }

    /// Searches the audit log, newest first: by user, patient, action and time range, at most
    /// [`AUDIT_PAGE_MAX`] records a page (page back with `before` = the last sequence number
    /// shown). Needs `audit.read`; the search is itself audited (with its filters, sealed).
    pub async fn audit_search(&self, actor: &Actor, q: &AuditQuery) -> Result<Vec<AuditEventView>, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::AuditRead, purpose, &Target::Anywhere, ("AuditEvent", None)).await?;
        let f = match self.audit_filter(q).await {
            Ok(f) => f,
            Err(e) => return Err(self.refuse(actor, AuditAction::Search, ("AuditEvent", None), e).await),
        };
        let limit = q.limit.unwrap_or(AUDIT_PAGE_MAX).clamp(1, AUDIT_PAGE_MAX);
        let rows = self.inner.store.audit_search(&f, limit).await?;
        let mut d =
            Draft::new(self.clock_now(), AuditAction::Search, Outcome::Success).by(actor).resource("AuditEvent", None).purpose(purpose);
        d.patient_id = f.patient_id.clone();
        let sealed = self.seal_filter(&d, q, rows.len())?;
        self.inner.writer.append(d.details(sealed)).await?;
        let names = self.usernames().await?;
        Ok(rows.into_iter().map(|r| AuditEventView::from_row(r, &names)).collect())
    }

    /// Exports the records an audit search finds (newest first, at most [`AUDIT_EXPORT_MAX`]) as
    /// CSV (RFC 4180; see [`audit_csv`]). Needs `audit.export` and a recent sign-in; audited as
    /// an export. Sealed details stay sealed: the CSV holds the plain columns only.
    pub async fn audit_export_csv(&self, actor: &Actor, q: &AuditQuery) -> Result<String, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::AuditExport, purpose, &Target::Anywhere, ("AuditEvent", None)).await?;
        self.require_fresh_auth(actor, Operation::AuditExport).await?;
        let f = match self.audit_filter(q).await {
            Ok(f) => f,
            Err(e) => return Err(self.refuse(actor, AuditAction::Export, ("AuditEvent", None), e).await),
        };
        let rows = self.inner.store.audit_search(&f, AUDIT_EXPORT_MAX).await?;
        let mut d =
            Draft::new(self.clock_now(), AuditAction::Export, Outcome::Success).by(actor).resource("AuditEvent", None).purpose(purpose);
        d.patient_id = f.patient_id.clone();
        let sealed = self.seal_filter(&d, q, rows.len())?;
        self.inner.writer.append(d.details(sealed)).await?;
        let names = self.usernames().await?;
        let events: Vec<AuditEventView> = rows.into_iter().map(|r| AuditEventView::from_row(r, &names)).collect();
        Ok(audit_csv(&events))
    }

    /// Verifies the audit chain for a signed-in auditor (the CLI needs no account).
    pub async fn verify_audit_as(&self, actor: &Actor) -> Result<crate::VerifyReport, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::AuditVerify, purpose, &Target::Anywhere, ("AuditEvent", None)).await?;
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success).by(actor).resource("AuditVerify", None).purpose(purpose);
        self.inner.writer.append(d).await?;
        self.verify_audit().await
    }
}

/// Where an assignment applies, as requested.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeInput {
    pub organization_id: String,
    #[serde(default)]
    pub location_id: Option<String>,
    #[serde(default)]
    pub department_id: Option<String>,
}

impl ScopeInput {
    fn into_cols(self) -> ScopeCols {
        ScopeCols { organization_id: self.organization_id, location_id: self.location_id, department_id: self.department_id }
    }
}

fn grant_view(g: &GrantRow, now: i64) -> GrantView {
    GrantView {
        id: g.id.clone(),
        user_id: g.user_id.clone(),
        permission: g.permission.clone(),
        organization_id: g.scope.organization_id.clone(),
        location_id: g.scope.location_id.clone(),
        department_id: g.scope.department_id.clone(),
        patient_id: g.patient_id.clone(),
        starts_at: g.starts_at,
        ends_at: g.ends_at,
        created_by: g.created_by.clone(),
        revoked_at: g.revoked_at,
        active: g.revoked_at.is_none() && g.starts_at <= now && g.ends_at > now,
    }
}

pub(crate) fn alert(
    category: &str,
    kind: &str,
    subject_user: Option<&str>,
    patient_id: Option<&str>,
    reference: Option<&str>,
    now: i64,
) -> AlertRow {
    AlertRow {
        id: new_id("al"),
        category: category.into(),
        kind: kind.into(),
        subject_user: subject_user.map(str::to_string),
        patient_id: patient_id.map(str::to_string),
        reference: reference.map(str::to_string),
        raised_at: now,
        state: "open".into(),
        closed_by: None,
        closed_at: None,
    }
}
