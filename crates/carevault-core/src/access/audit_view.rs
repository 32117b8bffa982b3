//! The audit viewer: the log's plain columns (and the patients a record disclosed), searches,
//! the CSV export, and verification, each itself audited.

use super::*;

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
    pub(super) fn from_row(r: carevault_store::AuditRow, names: &std::collections::HashMap<String, String>) -> Self {
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

impl Vault {
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
    pub(super) async fn audit_filter(&self, q: &AuditQuery) -> Result<carevault_store::AuditSearch, CoreError> {
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
    pub(super) fn seal_filter(&self, d: &Draft, q: &AuditQuery, rows: usize) -> Result<Vec<u8>, CoreError> {
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
