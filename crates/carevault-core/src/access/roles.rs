//! Roles: the built-in and custom roles, and scoped role assignments.

use super::*;
use crate::access::changes::AccessChange;
use crate::auth::changes::AuthChange;

impl Vault {
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
        let mut ops = vec![AccessChange::UpsertCustomRole(row).into()];
        if privileged && !actor.is_system() {
            ops.push(self.privileged_alert("privileged-role", None, name, now));
        }
        let mut evs = vec![Draft::new(now, action, Outcome::Success).by(actor).resource("Role", None).purpose(purpose)];
        if existing.is_some() {
            for a in self.inner.store.assignments_with_role(name).await? {
                ops.push(AuthChange::DeleteUserSessions { user_id: a.user_id.clone() }.into());
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
        let mut ops = vec![AccessChange::InsertAssignment(row.clone()).into()];
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
            AccessChange::DeleteAssignment { id: id.to_string() }.into(),
            AccessChange::GuardLastAdmin { organization_id: a.scope.organization_id.clone(), now }.into(),
            AuthChange::DeleteUserSessions { user_id: a.user_id.clone() }.into(),
        ];
        let ev = Draft::new(now, AuditAction::Delete, Outcome::Success).by(actor).resource("RoleAssignment", Some(id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Delete, Outcome::Denied).by(actor).resource("RoleAssignment", Some(id)).purpose(purpose);
        self.inner.writer.write(ops, vec![ev], Some(fail)).await?;
        Ok(())
    }
}
