//! Separation of duties.
//!
//! - **Enrollment invitations.** An account created through the API or the UI, and an account
//!   whose second factor an administrator reset, enrols its own authenticator at its next
//!   sign-in with the password *and* a single-use invitation code that expires
//!   (`CoreConfig::invitation_hours`). The code is shown once, to the administrator, for
//!   delivery out of band; only its keyed hash is stored. No response ever carries another
//!   person's TOTP secret.
//! - **Approvals.** A change that carries a privileged permission ([`Permission::is_privileged`]:
//!   PHI, the audit trail or the security controls) — creating an account with such a role,
//!   creating or changing a custom role with such a permission, assigning such a role, giving
//!   such a grant — raises a security alert and, unless `CoreConfig::require_approval` is off,
//!   waits in the approvals queue until an officer holding `access.approve` who is neither the
//!   requester nor the account concerned approves it. A pending account cannot sign in; a
//!   pending role, assignment or grant does not exist yet. The operator's shell (the system
//!   actor: bootstrap, demo) is not subject to it.

pub(crate) mod changes;

use carevault_domain::{AuditAction, Operation, Outcome, Permission, Role};
use carevault_store::{ApprovalRow, AssignmentRow, CustomRoleRow, GrantRow, InvitationRow, ScopeCols};
use serde::Serialize;
use serde_json::{json, Value};

use crate::access::changes::AccessChange;
use crate::access::SECURITY;
use crate::actor::Actor;
use crate::approvals::changes::ApprovalChange;
use crate::audit::writer::Op;
use crate::audit::Draft;
use crate::auth::changes::AuthChange;
use crate::authz::Target;
use crate::error::CoreError;
use crate::vault::Vault;

/// How long a request waits for a decision.
const APPROVAL_TTL_MICROS: i64 = 7 * 86_400 * 1_000_000;
/// Domain byte of invitation-code hashes in the blind-index HMAC.
pub(crate) const INVITATION_DOMAIN: u8 = 202;

/// An account's enrollment invitation, shown once to whoever made it.
#[derive(Clone, Serialize)]
pub struct Invitation {
    pub user_id: String,
    /// The code (five groups of four base32 characters, 100 bits).
    pub code: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Invitation({})", self.user_id)
    }
}

/// An account created through the API or the UI: no second-factor secret, an invitation, and
/// the approval it waits for when its role is privileged.
#[derive(Debug, Clone, Serialize)]
pub struct NewAccount {
    pub id: String,
    pub username: String,
    pub role: String,
    pub organization_id: String,
    pub invitation: Invitation,
    /// The approval request the account waits for (it cannot sign in before).
    pub approval_id: Option<String>,
}

/// A request in the approvals queue, as officers see it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    pub id: String,
    pub kind: String,
    pub organization_id: String,
    pub subject_user: Option<String>,
    pub subject_username: Option<String>,
    pub requested_by: String,
    pub requester_username: Option<String>,
    /// Unix microseconds.
    pub requested_at: i64,
    pub expires_at: i64,
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub summary: String,
}

fn invitation_code() -> String {
    let raw = carevault_crypto::random_bytes::<13>();
    let text = data_encoding::BASE32_NOPAD.encode(&raw);
    text.as_bytes().chunks(4).take(5).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

/// A code as typed: case, spaces and dashes do not matter.
fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

pub(crate) fn new_approval_id() -> String {
    format!("ap-{}", hex::encode(carevault_crypto::random_bytes::<12>()))
}

fn approval_pending(id: &str) -> CoreError {
    CoreError::ApprovalPending { id: id.to_string() }
}

impl Vault {
    fn invitation_hash(&self, user_id: &str, code: &str) -> Vec<u8> {
        self.inner.sealer.keyed_hash(INVITATION_DOMAIN, &format!("{user_id}:{}", normalize_code(code)))
    }

    /// A fresh invitation for `user_id` and the op that stores it (replacing any earlier one).
    pub(crate) fn new_invitation(&self, by: &Actor, user_id: &str, now: i64) -> (Invitation, Op) {
        let code = invitation_code();
        let expires = now + self.inner.config.invitation_hours.max(1) * 3_600_000_000;
        let row = InvitationRow {
            user_id: user_id.to_string(),
            code_hash: self.invitation_hash(user_id, &code),
            expires_at: expires,
            created_by: by.audit_name(),
            created_at: now,
        };
        (Invitation { user_id: user_id.to_string(), code, expires_at: expires / 1_000_000 }, ApprovalChange::PutInvitation(row).into())
    }

    /// Whether the account must show an invitation to enrol, and the op that uses it up when
    /// `code` is the live one. `Ok(None)`: no invitation is needed (a demo account).
    pub(crate) async fn check_invitation(
        &self,
        user: &carevault_store::UserRow,
        code: Option<&str>,
        now: i64,
    ) -> Result<Option<Op>, CoreError> {
        if user.is_demo {
            return Ok(None);
        }
        let refused = || CoreError::Refused {
            reason: "invitation",
            message: "enrolling an authenticator needs the invitation code your administrator gave you (ask for a new one if it expired)"
                .into(),
        };
        let Some(inv) = self.inner.store.invitation(&user.id).await? else { return Err(refused()) };
        let Some(code) = code.filter(|c| !c.trim().is_empty() && c.len() <= 64) else { return Err(refused()) };
        let hash = self.invitation_hash(&user.id, code);
        if inv.expires_at <= now || !carevault_crypto::ct_eq(&hash, &inv.code_hash) {
            return Err(refused());
        }
        Ok(Some(ApprovalChange::TakeInvitation { user_id: user.id.clone(), code_hash: hash, now }.into()))
    }

    /// Whether a role (built-in or custom) carries a privileged permission.
    pub(crate) async fn role_is_privileged(&self, role: &str) -> Result<bool, CoreError> {
        if let Some(r) = Role::parse(role) {
            return Ok(crate::authz::role_permissions(r).iter().any(|p| p.is_privileged()));
        }
        Ok(self
            .inner
            .store
            .custom_role(role)
            .await?
            .is_some_and(|r| r.permissions.split_whitespace().filter_map(Permission::parse).any(Permission::is_privileged)))
    }

    /// For a privileged change by `actor`: `Some(approval row and ops)` when it must wait for
    /// approval, `None` when it goes ahead (the alert op is then added by the caller through
    /// [`Vault::privileged_alert`]).
    pub(crate) fn needs_approval(&self, actor: &Actor) -> bool {
        self.inner.config.require_approval && !actor.is_system()
    }

    /// The security alert every privileged change raises (with or without approval).
    pub(crate) fn privileged_alert(&self, kind: &str, subject_user: Option<&str>, reference: &str, now: i64) -> Op {
        AccessChange::InsertAlert(crate::access::alert(SECURITY, kind, subject_user, None, Some(reference), now)).into()
    }

    /// A request's row (its parameters sealed by [`Vault::seal_approval_payload`]) and the
    /// security alert it raises.
    pub(crate) fn approval_ops(
        &self,
        actor: &Actor,
        id: &str,
        (kind, organization_id, subject_user): (&str, &str, Option<&str>),
        summary: String,
        sealed: Vec<u8>,
        now: i64,
    ) -> Vec<Op> {
        let row = ApprovalRow {
            id: id.to_string(),
            kind: kind.to_string(),
            organization_id: organization_id.to_string(),
            subject_user: subject_user.map(str::to_string),
            requested_by: actor.audit_name(),
            requested_at: now,
            expires_at: now + APPROVAL_TTL_MICROS,
            state: "pending".into(),
            decided_by: None,
            decided_at: None,
            summary,
            payload: sealed,
        };
        vec![ApprovalChange::InsertApproval(Box::new(row)).into(), self.privileged_alert("approval-requested", subject_user, id, now)]
    }

    /// A request's parameters, sealed under its id.
    pub(crate) fn seal_approval_payload(&self, id: &str, payload: &Value) -> Result<Vec<u8>, CoreError> {
        self.inner.sealer.seal_secret(("approvals", "payload", id), payload.to_string().as_bytes())
    }

    /// The audit record of a filed request.
    pub(crate) fn approval_draft(&self, actor: &Actor, id: &str, kind: &str, now: i64) -> Result<Draft, CoreError> {
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource("Approval", Some(id))
            .purpose(Vault::admin_purpose(actor));
        let details = self.inner.sealer.seal_details(&ev.event_id, json!({"kind": kind}).to_string().as_bytes())?;
        Ok(ev.details(details))
    }

    /// Files a request (its row, alert and audit record in one transaction) and answers
    /// `ApprovalPending` with its id.
    pub(crate) async fn file_approval(
        &self,
        actor: &Actor,
        what: (&str, &str, Option<&str>),
        summary: String,
        payload: Value,
    ) -> CoreError {
        let now = self.inner.clock.now_micros();
        let id = new_approval_id();
        let filed = async {
            let sealed = self.seal_approval_payload(&id, &payload)?;
            let ops = self.approval_ops(actor, &id, what, summary, sealed, now);
            let ev = self.approval_draft(actor, &id, what.0, now)?;
            self.inner.writer.write(ops, vec![ev], None).await
        };
        match filed.await {
            Ok(_) => approval_pending(&id),
            Err(e) => e,
        }
    }

    /// Requests waiting (or decided, with `state`), visible to the actor's organizations.
    pub async fn approvals(&self, actor: &Actor, state: &str) -> Result<Vec<ApprovalView>, CoreError> {
        let purpose = Vault::admin_purpose(actor);
        self.gate(actor, Operation::ApprovalList, purpose, &Target::Anywhere, ("Approval", None)).await?;
        if !["pending", "approved", "rejected"].contains(&state) {
            return Err(CoreError::Invalid(carevault_domain::InputError::value("state", "pending, approved or rejected")));
        }
        let d = Draft::new(self.inner.clock.now_micros(), AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource("Approval", None)
            .purpose(purpose);
        self.inner.writer.append(d).await?;
        let orgs = actor.privileges.organizations_with(Permission::ApprovalDecide);
        let names = self.usernames().await?;
        Ok(self
            .inner
            .store
            .approvals(state, 500)
            .await?
            .into_iter()
            .filter(|a| actor.is_system() || orgs.contains(&a.organization_id))
            .map(|a| view(a, &names))
            .collect())
    }

    /// Approves a request: the change takes effect now, in the same transaction as the
    /// decision and its audit record.
    pub async fn approve(&self, actor: &Actor, id: &str) -> Result<ApprovalView, CoreError> {
        self.decide(actor, id, true).await
    }

    /// Rejects a request: nothing takes effect (a pending account is deactivated).
    pub async fn reject(&self, actor: &Actor, id: &str) -> Result<ApprovalView, CoreError> {
        self.decide(actor, id, false).await
    }

    async fn decide(&self, actor: &Actor, id: &str, approve: bool) -> Result<ApprovalView, CoreError> {
        let purpose = Vault::admin_purpose(actor);
        let row = if id.len() <= 64 { self.inner.store.approval(id).await? } else { None };
        let Some(row) = row else {
            self.gate(actor, Operation::ApprovalDecide, purpose, &Target::Anywhere, ("Approval", None)).await?;
            return Err(CoreError::NotFound { resource: format!("Approval/{}", crate::audit::audit_safe_id(id)) });
        };
        self.gate(actor, Operation::ApprovalDecide, purpose, &Target::Organization(&row.organization_id), ("Approval", Some(id))).await?;
        self.require_fresh_auth(actor, Operation::ApprovalDecide).await?;
        let now = self.inner.clock.now_micros();
        let action = AuditAction::Update;
        let refuse = |reason: &'static str, message: &str| CoreError::Refused { reason, message: message.to_string() };
        if row.requested_by == actor.audit_name() {
            let e = refuse("self-approval", "another officer must decide a change you requested");
            return Err(self.refuse(actor, action, ("Approval", Some(id)), e).await);
        }
        if row.subject_user.as_deref() == Some(actor.user_id.as_str()) {
            let e = refuse("own-account", "another officer must decide a change to your own account");
            return Err(self.refuse(actor, action, ("Approval", Some(id)), e).await);
        }
        if row.state != "pending" {
            return Err(self
                .refuse(actor, action, ("Approval", Some(id)), CoreError::Conflict(format!("the request is already {}", row.state)))
                .await);
        }
        if approve && row.expires_at <= now {
            let e = CoreError::Conflict("the request expired; ask for it again".into());
            return Err(self.refuse(actor, action, ("Approval", Some(id)), e).await);
        }
        let payload: Value = {
            let plain = self.inner.sealer.open_secret(&self.inner.store, now, ("approvals", "payload", id), &row.payload).await?;
            serde_json::from_slice(&plain).map_err(|_| CoreError::Internal("approval payload".into()))?
        };
        // A change to a role the officer holds would be approving their own elevation.
        if approve && row.kind == "role.put" && payload["name"].as_str().is_some_and(|n| actor.roles.iter().any(|r| r == n)) {
            let e = refuse("own-role", "another officer must decide a change to a role you hold");
            return Err(self.refuse(actor, action, ("Approval", Some(id)), e).await);
        }
        let state = if approve { "approved" } else { "rejected" };
        let mut ops = vec![ApprovalChange::DecideApproval { id: id.to_string(), state: state.into(), by: actor.audit_name(), now }.into()];
        if approve {
            ops.extend(self.apply_approved(&row, &payload, now).await?);
        } else if row.kind == "user.create" {
            if let Some(u) = &row.subject_user {
                ops.push(AccessChange::SetUserActive { user_id: u.clone(), active: false, now }.into());
            }
        }
        let ev = Draft::new(now, action, Outcome::Success).by(actor).resource("Approval", Some(id)).purpose(purpose);
        let details = self.inner.sealer.seal_details(&ev.event_id, json!({"decision": state, "kind": row.kind}).to_string().as_bytes())?;
        let lost = Draft::new(now, action, Outcome::Conflict).by(actor).resource("Approval", Some(id)).purpose(purpose);
        self.inner.writer.write(ops, vec![ev.details(details)], Some(lost)).await?;
        let names = self.usernames().await?;
        let decided = ApprovalRow { state: state.into(), decided_by: Some(actor.audit_name()), decided_at: Some(now), ..row };
        Ok(view(decided, &names))
    }

    /// The ops an approved request runs (checked again against today's data).
    async fn apply_approved(&self, row: &ApprovalRow, p: &Value, now: i64) -> Result<Vec<Op>, CoreError> {
        let s = |k: &str| p[k].as_str().map(str::to_string);
        let gone = || CoreError::Conflict("what the request names no longer exists; reject it".into());
        match row.kind.as_str() {
            "user.create" => Ok(vec![]),
            "role.put" => {
                let name = s("name").ok_or_else(gone)?;
                let existing = self.inner.store.custom_role(&name).await?;
                let mut ops = vec![AccessChange::UpsertCustomRole(CustomRoleRow {
                    name: name.clone(),
                    description: s("description").unwrap_or_default(),
                    permissions: s("permissions").unwrap_or_default(),
                    purposes: s("purposes").unwrap_or_default(),
                    created_by: row.requested_by.clone(),
                    created_at: existing.as_ref().map_or(now, |e| e.created_at),
                    updated_at: now,
                })
                .into()];
                for a in self.inner.store.assignments_with_role(&name).await? {
                    ops.push(AuthChange::DeleteUserSessions { user_id: a.user_id }.into());
                }
                Ok(ops)
            }
            "assignment.add" => {
                let user_id = s("user_id").ok_or_else(gone)?;
                if self.inner.store.user_by_id(&user_id).await?.is_none() {
                    return Err(gone());
                }
                let role = s("role").ok_or_else(gone)?;
                if Role::parse(&role).is_none() && self.inner.store.custom_role(&role).await?.is_none() {
                    return Err(gone());
                }
                Ok(vec![AccessChange::InsertAssignment(AssignmentRow {
                    id: format!("ra-{}", hex::encode(carevault_crypto::random_bytes::<12>())),
                    user_id,
                    role,
                    scope: scope_of(p),
                    expires_at: p["expires_at"].as_i64(),
                    created_by: row.requested_by.clone(),
                    created_at: now,
                })
                .into()])
            }
            "grant.add" => {
                let user_id = s("user_id").ok_or_else(gone)?;
                if self.inner.store.user_by_id(&user_id).await?.is_none() {
                    return Err(gone());
                }
                let ends = p["ends_at"].as_i64().unwrap_or(0);
                if ends <= now {
                    return Err(CoreError::Conflict("the grant's end has passed; reject it".into()));
                }
                let id = format!("gr-{}", hex::encode(carevault_crypto::random_bytes::<12>()));
                let reason = self.inner.sealer.seal_note("access_grants", "reason", &id, &s("reason").unwrap_or_default())?;
                Ok(vec![AccessChange::InsertGrant(Box::new(GrantRow {
                    id,
                    user_id,
                    permission: s("permission").ok_or_else(gone)?,
                    scope: scope_of(p),
                    patient_id: s("patient_id"),
                    starts_at: now,
                    ends_at: ends,
                    reason,
                    created_by: row.requested_by.clone(),
                    revoked_at: None,
                    revoked_by: None,
                }))
                .into()])
            }
            _ => Err(CoreError::Internal("unknown approval kind".into())),
        }
    }
}

fn scope_of(p: &Value) -> ScopeCols {
    ScopeCols {
        organization_id: p["organization_id"].as_str().unwrap_or_default().to_string(),
        location_id: p["location_id"].as_str().map(str::to_string),
        department_id: p["department_id"].as_str().map(str::to_string),
    }
}

pub(crate) fn scope_payload(scope: &ScopeCols) -> Value {
    json!({"organization_id": scope.organization_id, "location_id": scope.location_id, "department_id": scope.department_id})
}

fn view(a: ApprovalRow, names: &std::collections::HashMap<String, String>) -> ApprovalView {
    let requester = a.requested_by.strip_prefix("user:").and_then(|u| names.get(u)).cloned();
    ApprovalView {
        subject_username: a.subject_user.as_ref().and_then(|u| names.get(u)).cloned(),
        requester_username: requester,
        id: a.id,
        kind: a.kind,
        organization_id: a.organization_id,
        subject_user: a.subject_user,
        requested_by: a.requested_by,
        requested_at: a.requested_at,
        expires_at: a.expires_at,
        state: a.state,
        decided_by: a.decided_by,
        decided_at: a.decided_at,
        summary: a.summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_100_bits_in_five_groups_and_typing_is_forgiving() {
        let c = invitation_code();
        assert_eq!(c.len(), 24, "{c}");
        assert_eq!(c.split('-').count(), 5);
        assert!(c.chars().all(|ch| ch == '-' || ch.is_ascii_uppercase() || ('2'..='7').contains(&ch)));
        assert_ne!(c, invitation_code());
        assert_eq!(normalize_code(&c.to_lowercase().replace('-', " ")), normalize_code(&c));
    }
}
