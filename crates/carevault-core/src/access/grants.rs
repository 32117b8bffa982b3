//! Time-bound grants of one permission, with a reason.

use super::*;
use crate::access::changes::AccessChange;
use crate::auth::changes::AuthChange;

impl Vault {
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
        let mut ops = vec![AccessChange::InsertGrant(Box::new(row.clone())).into()];
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
        let ops = vec![
            AccessChange::RevokeGrant { id: id.into(), by: actor.audit_name(), now }.into(),
            AuthChange::DeleteUserSessions { user_id: g.user_id.clone() }.into(),
        ];
        self.inner.writer.write(ops, vec![ev], Some(fail)).await?;
        Ok(())
    }
}

pub(super) fn grant_view(g: &GrantRow, now: i64) -> GrantView {
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
