//! Staff accounts as administrators manage them (deactivation, reactivation, unused accounts)
//! and sessions (one's own and, for officers, other users').

use super::*;
use crate::access::changes::AccessChange;
use crate::auth::changes::AuthChange;

impl Vault {
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

    pub(super) async fn set_active(&self, actor: &Actor, user: &UserRow, active: bool, kind: &str) -> Result<(), CoreError> {
        let now = self.clock_now();
        let mut ops = vec![
            AccessChange::SetUserActive { user_id: user.id.clone(), active, now }.into(),
            AuthChange::DeleteUserSessions { user_id: user.id.clone() }.into(),
        ];
        if !active {
            ops.push(AccessChange::GuardLastAdmin { organization_id: user.organization_id.clone(), now }.into());
        }
        ops.push(AccessChange::InsertAlert(alert(SECURITY, kind, Some(&user.id), None, None, now)).into());
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
                AccessChange::SetUserActive { user_id: u.id.clone(), active: false, now }.into(),
                AuthChange::DeleteUserSessions { user_id: u.id.clone() }.into(),
                AccessChange::InsertAlert(alert(SECURITY, "account-inactive", Some(&u.id), None, None, now)).into(),
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

    pub(super) fn session_views(&self, rows: Vec<SessionRow>, current: Option<&str>) -> Vec<SessionView> {
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
            Some(p) => AuthChange::DeleteSessionByPublicId { user_id: uid, public_id: p.to_string() }.into(),
            None => AuthChange::DeleteUserSessions { user_id: uid }.into(),
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
        self.inner.writer.write(vec![AuthChange::DeleteUserSessions { user_id: user.id.clone() }.into()], vec![ev], None).await?;
        Ok(())
    }
}
