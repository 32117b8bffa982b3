//! Staff identity: accounts (Argon2id + mandatory TOTP), sign-in with throttling, server-side
//! sessions with idle and absolute limits.

pub(crate) mod changes;

mod account;
mod blocklist;
pub(crate) mod cache;
mod enroll;
mod passkey;
mod policy;
pub(crate) mod refusals;
pub(crate) mod throttle;

pub use account::MfaReset;
pub use enroll::{form_token, random_token};
pub use passkey::{PasskeyChallenge, PasskeyView};

use base64::Engine;
use carevault_crypto::password;
use carevault_crypto::totp::{TotpCheck, TotpSecret};
use carevault_domain::{AuditAction, Operation, Outcome, PurposeOfUse, Role, UserId};
use carevault_store::{AssignmentRow, NewSession, ScopeCols, SessionRow, UserRow};

use crate::access::changes::AccessChange;
use crate::actor::{Actor, ActorKind, RequestContext};
use crate::approvals::NewAccount;
use crate::audit::writer::Op;
use crate::audit::Draft;
use crate::auth::changes::AuthChange;
use crate::error::CoreError;
use crate::vault::Vault;

pub use policy::check_username;
pub(crate) use policy::MIN_PASSWORD_CHARS;

const PENDING: &str = "mfa_pending";
const ACTIVE: &str = "active";
pub(crate) const MAX_MFA_FAILURES_PER_SESSION: i64 = 5;
/// A session's last-seen time is written at most this often.
const TOUCH_EVERY_MICROS: i64 = 1_000_000;

/// A staff account just created: what the operator needs to enrol the authenticator.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub role: String,
    pub organization_id: String,
    pub otpauth_uri: String,
    pub totp_secret_base32: String,
}

/// The first factor passed; the second is required.
#[derive(Debug, Clone)]
pub struct LoginStep {
    /// Token of the MFA-pending session (it grants nothing but the second-factor step).
    pub pending_token: String,
    pub expires_in_secs: i64,
}

/// A full session.
#[derive(Debug, Clone)]
pub struct SessionGrant {
    pub token: String,
    pub user_id: String,
    pub username: String,
    pub roles: Vec<String>,
    pub idle_timeout_secs: i64,
    pub expires_at: i64,
}

fn token_hash(token: &str) -> Vec<u8> {
    carevault_crypto::sha256(&[b"carevault-session-v1", token.as_bytes()]).to_vec()
}

fn new_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(carevault_crypto::random_bytes::<32>())
}

/// Seconds until `until` (a lock "until an administrator unlocks" is reported as a day).
fn retry_after(until: i64, now: i64) -> i64 {
    if until == i64::MAX {
        86_400
    } else {
        (until - now) / 1_000_000 + 1
    }
}

fn user_actor_name(id: &str) -> String {
    format!("user:{id}")
}

impl Vault {
    fn now(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    async fn seal_json_details(&self, event_id: &str, v: serde_json::Value) -> Result<Vec<u8>, CoreError> {
        self.inner.sealer.seal_details(event_id, v.to_string().as_bytes())
    }

    /// Runs an Argon2id computation off the async runtime, at most `hash_concurrency` at once.
    async fn blocking_hash<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, CoreError> {
        let _slot = self.inner.hash_slots.acquire().await.map_err(|_| CoreError::Internal("hash pool closed".into()))?;
        tokio::task::spawn_blocking(f).await.map_err(|_| CoreError::Internal("hash task failed".into()))
    }

    /// Creates a staff account from the operator's shell (`carevault user add`).
    pub(crate) async fn add_user(&self, username: &str, role: Role, password: &str) -> Result<NewUser, CoreError> {
        self.add_user_in(username, role.id(), None, password).await
    }

    /// Creates a staff account with one organization-wide role (built-in or custom) in
    /// `organization` (default: the default organization).
    pub(crate) async fn add_user_in(
        &self,
        username: &str,
        role: &str,
        organization: Option<&str>,
        password: &str,
    ) -> Result<NewUser, CoreError> {
        let operator = Actor::system("operator");
        self.add_user_inner(&operator, username, role, organization, password, self.inner.kind == crate::InstanceKind::Demo, |_| vec![])
            .await
    }

    /// Creates a staff account from the admin API or UI: needs `user.create` and `role.assign`
    /// in the organization. The account's second factor is enrolled by its holder, at first
    /// sign-in, with the password and the invitation returned here (shown once, for delivery
    /// out of band); no secret is returned. A role carrying PHI, audit or security permissions
    /// raises a security alert and, by default, the account cannot sign in until another
    /// officer approves it.
    pub async fn create_user(
        &self,
        actor: &Actor,
        username: &str,
        role: &str,
        organization: &str,
        password: &str,
    ) -> Result<NewAccount, CoreError> {
        let purpose = if actor.privileges.purposes().contains(&PurposeOfUse::SystemAdministration) {
            PurposeOfUse::SystemAdministration
        } else {
            PurposeOfUse::Operations
        };
        let target = crate::authz::Target::Organization(organization);
        self.gate(actor, Operation::UserCreate, purpose, &target, ("User", None)).await?;
        self.gate(actor, Operation::AssignmentAdd, purpose, &target, ("RoleAssignment", None)).await?;
        let privileged = self.role_is_privileged(role).await?;
        let now = self.now();
        let approval = match (privileged && self.needs_approval(actor)).then(crate::approvals::new_approval_id) {
            Some(id) => {
                let sealed = self.seal_approval_payload(&id, &serde_json::json!({}))?;
                Some((id, sealed))
            }
            None => None,
        };
        let mut invitation = None;
        let u = self
            .add_user_inner(actor, username, role, Some(organization), password, self.inner.kind == crate::InstanceKind::Demo, |id| {
                let (inv, op) = self.new_invitation(actor, id, now);
                invitation = Some(inv);
                let mut ops = vec![op];
                match &approval {
                    // The account and its pending request commit together: it never exists
                    // without the request for a moment.
                    Some((ap, sealed)) => {
                        let summary = format!("new account {username} ({id}) with role {role} in {organization}");
                        ops.extend(self.approval_ops(actor, ap, ("user.create", organization, Some(id)), summary, sealed.clone(), now));
                    }
                    None if privileged => ops.push(self.privileged_alert("privileged-account", Some(id), id, now)),
                    None => {}
                }
                ops
            })
            .await?;
        let invitation = invitation.ok_or_else(|| CoreError::Internal("invitation".into()))?;
        if let Some((ap, _)) = &approval {
            let ev = self.approval_draft(actor, ap, "user.create", now)?;
            self.inner.writer.append(ev).await?;
        }
        let approval_id = approval.map(|(id, _)| id);
        Ok(NewAccount { id: u.id, username: u.username, role: u.role, organization_id: u.organization_id, invitation, approval_id })
    }

    #[allow(clippy::too_many_arguments)] // the account's fields, then the caller's extra ops
    pub(crate) async fn add_user_inner(
        &self,
        by: &Actor,
        username: &str,
        role: &str,
        organization: Option<&str>,
        password: &str,
        is_demo: bool,
        extra_ops: impl FnOnce(&str) -> Vec<Op>,
    ) -> Result<NewUser, CoreError> {
        let now = self.now();
        let org = organization.unwrap_or("default").to_string();
        let mut checked = if Role::parse(role).is_none() && self.inner.store.custom_role(role).await?.is_none() {
            Err(carevault_domain::InputError::value("role", "unknown role; see `carevault user add --help` for the built-in roles"))
        } else {
            check_username(username)
                .and_then(|u| policy::check_password_min(password, &u, self.inner.config.password_min_chars).map(|()| u))
        };
        if checked.is_ok() && self.inner.store.unit(carevault_store::UnitKind::Organization, &org).await?.is_none() {
            checked = Err(carevault_domain::InputError::value("organization", "unknown organization; see `carevault org list`"));
        }
        let username = match checked {
            Ok(u) => u,
            Err(e) => {
                let d = Draft::new(now, AuditAction::Create, Outcome::Invalid).by(by).resource("User", None);
                self.inner.writer.append(d).await?;
                return Err(CoreError::Invalid(e));
            }
        };
        let pw = password.to_string();
        let hash = self
            .blocking_hash(move || password::hash_password(&pw))
            .await?
            .map_err(|_| CoreError::Internal("password hashing failed".into()))?;
        let id = UserId::from_random(carevault_crypto::random_bytes::<16>());
        let secret = TotpSecret::generate();
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let sealed = self.inner.sealer.seal_credential(id.as_str(), secret.as_bytes(), None)?;
        let row = UserRow {
            id: id.to_string(),
            username: username.clone(),
            organization_id: org.clone(),
            last_login_at: None,
            deactivated_at: None,
            password_changed_at: Some(now),
            password_hash: hash,
            totp_secret: sealed,
            key_version: i64::from(self.inner.sealer.current_version()?),
            totp_last_step: None,
            failed_logins: 0,
            locked_until: None,
            active: true,
            is_demo,
            created_at: now,
        };
        let assignment = AssignmentRow {
            id: format!("ra-{}", hex::encode(carevault_crypto::random_bytes::<12>())),
            user_id: id.to_string(),
            role: role.to_string(),
            scope: ScopeCols { organization_id: org.clone(), location_id: None, department_id: None },
            expires_at: None,
            created_by: by.audit_name(),
            created_at: now,
        };
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success).by(by).resource("User", Some(id.as_str()));
        let fail = Draft::new(now, AuditAction::Create, Outcome::Conflict).by(by).resource("User", None);
        let mut ops = vec![AuthChange::InsertUser(Box::new(row)).into(), AccessChange::InsertAssignment(assignment).into()];
        ops.extend(extra_ops(id.as_str()));
        self.inner.writer.write(ops, vec![ev], Some(fail)).await?;
        let otpauth_uri = secret.otpauth_uri(&self.inner.config.totp_issuer, &username).map_err(CoreError::Internal)?;
        Ok(NewUser {
            id: id.to_string(),
            username,
            role: role.to_string(),
            organization_id: org,
            otpauth_uri,
            totp_secret_base32: secret.base32(),
        })
    }

    /// Clears an account's failed-sign-in lock (`carevault user unlock`).
    pub(crate) async fn unlock_user(&self, username: &str) -> Result<(), CoreError> {
        let operator = Actor::system("operator");
        let now = self.now();
        let user = self
            .inner
            .store
            .user_by_username(&username.trim().to_lowercase())
            .await?
            .ok_or_else(|| CoreError::NotFound { resource: "user".into() })?;
        let ev = Draft::new(now, AuditAction::ConfigChange, Outcome::Success).by(&operator).resource("User", Some(&user.id));
        self.inner
            .writer
            .write(vec![AuthChange::SetLoginFailures { user_id: user.id.clone(), failed: 0, locked_until: None }.into()], vec![ev], None)
            .await?;
        Ok(())
    }

    /// The wait before this sign-in may be tried, if any: the address's limit (spraying across
    /// names), then the name's from this address (one person failing slows only themselves).
    fn throttled(&self, ctx: &RequestContext, name: &throttle::NameKey, now: i64) -> Option<i64> {
        let c = &self.inner.config;
        let window = c.ip_window_secs * 1_000_000;
        let t = &self.inner.throttle;
        t.address_wait(ctx.source_ip, c.ip_failure_limit, window, now)
            .or_else(|| t.pair_wait(name, ctx.source_ip, c.pair_failure_limit, window, now))
    }

    /// Counts a failed attempt of `name` from the request's address. When the address enters
    /// its backoff (a sign-in storm), a security alert is raised, once per window.
    fn count_failure(&self, ctx: &RequestContext, name: &throttle::NameKey, now: i64) {
        let c = &self.inner.config;
        if self.inner.throttle.failed(name, ctx.source_ip, c.ip_failure_limit, c.ip_window_secs * 1_000_000, now) {
            let writer = self.inner.writer.clone();
            let ip = ctx.ip_string();
            let a = crate::access::alert(crate::access::SECURITY, "sign-in-storm", None, None, ip.as_deref(), now);
            let d = Draft::new(now, AuditAction::LoginFailed, Outcome::Denied).source_ip(ip).resource("Alert", Some(&a.id));
            writer.fire_audited(vec![AccessChange::InsertAlert(a).into()], vec![d]);
        }
    }

    /// The throttles' key of an account's name.
    fn user_key(&self, user: &UserRow) -> throttle::NameKey {
        self.inner.throttle.name_key(&user.username)
    }

    /// Lock after repeated failures: a growing delay from `lockout_threshold` on, and a lock
    /// until an administrator unlocks the account at `lockout_hard_limit` (NIST SP 800-63B).
    fn lock_for(&self, failed: i64, now: i64) -> Option<i64> {
        let c = &self.inner.config;
        if failed >= c.lockout_hard_limit {
            Some(i64::MAX)
        } else if failed >= c.lockout_threshold {
            let exp = u32::try_from(failed - c.lockout_threshold).unwrap_or(16).min(16);
            let secs = (30i64 << exp).min(900);
            Some(now + secs * 1_000_000)
        } else {
            None
        }
    }

    async fn record_failure(
        &self,
        ctx: &RequestContext,
        user: &UserRow,
        action: AuditAction,
        extra_ops: Vec<Op>,
        now: i64,
    ) -> Result<(), CoreError> {
        self.count_failure(ctx, &self.user_key(user), now);
        let failed = user.failed_logins + 1;
        let mut ops = extra_ops;
        if failed == self.inner.config.lockout_threshold || failed == self.inner.config.lockout_hard_limit {
            ops.push(
                AccessChange::InsertAlert(crate::access::alert(
                    crate::access::SECURITY,
                    "account-lockout",
                    Some(&user.id),
                    None,
                    None,
                    now,
                ))
                .into(),
            );
        }
        ops.push(AuthChange::SetLoginFailures { user_id: user.id.clone(), failed, locked_until: self.lock_for(failed, now) }.into());
        let ev = Draft::new(now, action, Outcome::Denied)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .resource("User", Some(&user.id));
        self.inner.writer.write(ops, vec![ev], None).await.map(|_| ())
    }

    /// First factor: username and password. Opens an MFA-pending session.
    ///
    /// An unknown (or deactivated) name gets exactly the answers an account gets: the same
    /// password hashing time, the same failure count and lock (kept in memory for names with no
    /// account), the same statuses and bodies.
    pub async fn login(&self, ctx: &RequestContext, username: &str, password_attempt: &str) -> Result<LoginStep, CoreError> {
        let now = self.now();
        let name = username.trim().to_lowercase();
        let key = self.inner.throttle.name_key(&name);
        if let Some(retry) = self.throttled(ctx, &key, now) {
            let d = Draft::new(now, AuditAction::LoginFailed, Outcome::Denied).source_ip(ctx.ip_string()).resource("User", None);
            self.refuse_counted((refusals::Kind::Throttled, ctx.source_ip, None), d, now).await?;
            return Err(CoreError::Throttled { retry_after_secs: retry });
        }
        let user = if name.is_empty() || name.len() > 64 { None } else { self.inner.store.user_by_username(&name).await? };
        let Some(user) = user.filter(|u| u.active) else {
            let strikes = self.inner.throttle.unknown_strikes(&key);
            let d = Draft::new(now, AuditAction::LoginFailed, Outcome::Denied).source_ip(ctx.ip_string()).resource("User", None);
            if let Some(until) = strikes.and_then(|s| s.locked_until).filter(|u| *u > now) {
                self.refuse_counted((refusals::Kind::Locked, ctx.source_ip, None), d, now).await?;
                return Err(CoreError::Throttled { retry_after_secs: retry_after(until, now) });
            }
            let pw = password_attempt.to_string();
            self.blocking_hash(move || password::verify_password(&pw, password::dummy_hash())).await?;
            self.count_failure(ctx, &key, now);
            self.inner.throttle.unknown_failed(&key, now, |failed| self.lock_for(failed, now));
            // The attempted name is sealed: people type passwords into username fields.
            let details = self.seal_json_details(&d.event_id, serde_json::json!({"reason": "unknown-user", "username": name})).await?;
            self.inner.writer.append(d.details(details)).await?;
            return Err(CoreError::InvalidCredentials);
        };
        if let Some(until) = user.locked_until.filter(|u| *u > now) {
            let actor = user_actor_name(&user.id);
            let d = Draft::new(now, AuditAction::LoginFailed, Outcome::Denied)
                .actor_name(actor.clone())
                .source_ip(ctx.ip_string())
                .resource("User", Some(&user.id));
            self.refuse_counted((refusals::Kind::Locked, ctx.source_ip, Some(actor)), d, now).await?;
            return Err(CoreError::Throttled { retry_after_secs: retry_after(until, now) });
        }
        let pw = password_attempt.to_string();
        let phc = user.password_hash.clone();
        if !self.blocking_hash(move || password::verify_password(&pw, &phc)).await? {
            self.record_failure(ctx, &user, AuditAction::LoginFailed, vec![], now).await?;
            return Err(CoreError::InvalidCredentials);
        }
        // An account whose creation waits for a second officer cannot sign in yet (said only
        // after the right password).
        if self.inner.store.account_pending_approval(&user.id).await? {
            let d = Draft::new(now, AuditAction::LoginFailed, Outcome::Denied)
                .actor_name(user_actor_name(&user.id))
                .source_ip(ctx.ip_string())
                .resource("User", Some(&user.id));
            let details = self.seal_json_details(&d.event_id, serde_json::json!({"reason": "pending-approval"})).await?;
            self.inner.writer.append(d.details(details)).await?;
            return Err(CoreError::Refused {
                reason: "pending-approval",
                message: "this account waits for a privacy or security officer's approval; it cannot sign in yet".into(),
            });
        }
        let token = new_token();
        let session = NewSession {
            token_hash: token_hash(&token),
            public_id: hex::encode(carevault_crypto::random_bytes::<8>()),
            user_id: user.id.clone(),
            state: PENDING.into(),
            created_at: now,
            expires_at: now + self.inner.config.mfa_pending_secs * 1_000_000,
            source_ip: ctx.ip_string(),
        };
        self.inner.writer.write(vec![AuthChange::InsertSession(session).into()], vec![], None).await?;
        Ok(LoginStep { pending_token: token, expires_in_secs: self.inner.config.mfa_pending_secs })
    }

    /// Second factor: a TOTP code for the MFA-pending session. On success the pending session
    /// is replaced by a full session with a new token.
    pub async fn verify_totp(&self, ctx: &RequestContext, pending_token: Option<&str>, code: &str) -> Result<SessionGrant, CoreError> {
        let now = self.now();
        let session = match pending_token {
            Some(t) => self.inner.store.session(&token_hash(t)).await?,
            None => None,
        };
        let Some(session) = session.filter(|s| s.state == PENDING) else {
            let d = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied).source_ip(ctx.ip_string());
            self.refuse_counted((refusals::Kind::NoPendingSession, ctx.source_ip, None), d, now).await?;
            return Err(CoreError::Unauthenticated);
        };
        if now >= session.expires_at {
            self.expire(&session, now).await?;
            return Err(CoreError::SessionExpired);
        }
        let user = self.inner.store.user_by_id(&session.user_id).await?.ok_or(CoreError::Unauthenticated)?;
        if let Some(until) = user.locked_until.filter(|u| *u > now) {
            let d = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied)
                .actor_name(user_actor_name(&user.id))
                .source_ip(ctx.ip_string())
                .session(Some(session.public_id.clone()));
            self.inner
                .writer
                .write(vec![AuthChange::DeleteSession { token_hash: session.token_hash.clone() }.into()], vec![d], None)
                .await?;
            return Err(CoreError::Throttled { retry_after_secs: retry_after(until, now) });
        }
        let secret = TotpSecret::from_bytes(&self.inner.sealer.open_credential(&self.inner.store, now, &user.id, &user.totp_secret).await?);
        let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let check = secret.verify(code.trim(), self.inner.clock.now_secs(), last);
        let TotpCheck::Valid { step } = check else {
            let ops =
                vec![AuthChange::SessionMfaFailed { token_hash: session.token_hash.clone(), max: MAX_MFA_FAILURES_PER_SESSION }.into()];
            self.record_failure(ctx, &user, AuditAction::MfaFailed, ops, now).await?;
            return Err(CoreError::InvalidCode);
        };
        let mut up = self.upgrade_session(ctx, &user.id, &session, now);
        let mut ops = vec![AuthChange::AdvanceTotp { user_id: user.id.clone(), step: i64::try_from(step).unwrap_or(i64::MAX) }.into()];
        ops.append(&mut up.ops);
        let ok = Draft::new(now, AuditAction::Login, Outcome::Success)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .session(Some(up.public_id.clone()))
            .resource("User", Some(&user.id));
        let replay = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .session(Some(session.public_id.clone()))
            .resource("User", Some(&user.id));
        match self.inner.writer.write(ops, vec![ok], Some(replay)).await {
            Ok(_) => {}
            Err(CoreError::InvalidCode) => {
                // The same code won a race in another request: a replay.
                self.count_failure(ctx, &self.user_key(&user), now);
                return Err(CoreError::InvalidCode);
            }
            Err(e) => return Err(e),
        }
        self.grant(user, up, now).await
    }

    async fn expire(&self, s: &SessionRow, now: i64) -> Result<(), CoreError> {
        let d = Draft::new(now, AuditAction::SessionExpired, Outcome::Success)
            .actor_name(user_actor_name(&s.user_id))
            .session(Some(s.public_id.clone()))
            .source_ip(s.source_ip.clone());
        self.inner
            .writer
            .write(vec![AuthChange::DeleteSession { token_hash: s.token_hash.clone() }.into()], vec![d], None)
            .await
            .map(|_| ())
    }

    fn is_expired(&self, s: &SessionRow, now: i64) -> bool {
        now >= s.expires_at || now - s.last_seen_at >= self.inner.config.session_idle_secs * 1_000_000
    }

    /// Resolves a session token to an actor. Only full (MFA-completed), unexpired sessions of
    /// active accounts pass; every refusal is audited. The session, account and privileges
    /// come from the session cache when nothing about them changed since they were loaded
    /// (see [`cache`]); the idle and absolute limits are checked on every request.
    pub async fn authenticate(&self, ctx: &RequestContext, token: Option<&str>) -> Result<Actor, CoreError> {
        let now = self.now();
        let hash = match token {
            Some(t) if !t.is_empty() && t.len() <= 128 => Some(token_hash(t)),
            _ => None,
        };
        // No token: refused without reading anything.
        let Some(hash) = hash else {
            return Err(self.refuse_no_session(ctx, now).await);
        };
        // Read before anything the entry is built from (see `cache`).
        let generation = self.inner.store.access_generation().await?;
        let entry = match self.inner.sessions.get(&hash, generation, now) {
            Some(e) => e,
            None => self.load_session(ctx, &hash, generation, now).await?,
        };
        let s = &entry.session;
        let last_seen = entry.last_seen();
        if now >= s.expires_at || now - last_seen >= self.inner.config.session_idle_secs * 1_000_000 {
            self.inner.sessions.remove(&s.token_hash);
            self.expire(&SessionRow { last_seen_at: last_seen, ..s.clone() }, now).await?;
            return Err(CoreError::SessionExpired);
        }
        if entry.seen(now, TOUCH_EVERY_MICROS) {
            self.inner.writer.fire(vec![AuthChange::TouchSession { token_hash: s.token_hash.clone(), now }.into()]);
        }
        Ok(Actor {
            user_id: entry.user_id.clone(),
            username: entry.username.clone(),
            organization_id: entry.organization_id.clone(),
            roles: entry.roles.clone(),
            privileges: entry.privileges.clone(),
            session_public_id: Some(s.public_id.clone()),
            session_token_hash: Some(s.token_hash.clone()),
            source_ip: ctx.ip_string(),
            session_expires_at: s.expires_at,
            authenticated_at: s.authenticated_at,
            kind: ActorKind::Staff,
        })
    }

    /// A request without a (known) session: counted per address and window, then refused.
    async fn refuse_no_session(&self, ctx: &RequestContext, now: i64) -> CoreError {
        let d = Draft::new(now, AuditAction::AccessDenied, Outcome::Denied).source_ip(ctx.ip_string());
        match self.refuse_counted((refusals::Kind::NoSession, ctx.source_ip, None), d, now).await {
            Ok(()) => CoreError::Unauthenticated,
            Err(e) => e,
        }
    }

    /// The session of `hash` from the database: its account and privileges, cached under
    /// `generation`. Refusals (no such session, an expired one, a pending second factor, an
    /// inactive account) are audited here.
    async fn load_session(
        &self,
        ctx: &RequestContext,
        hash: &[u8],
        generation: i64,
        now: i64,
    ) -> Result<std::sync::Arc<cache::Entry>, CoreError> {
        let Some(s) = self.inner.store.session(hash).await? else {
            return Err(self.refuse_no_session(ctx, now).await);
        };
        if self.is_expired(&s, now) {
            self.expire(&s, now).await?;
            return Err(CoreError::SessionExpired);
        }
        if s.state != ACTIVE {
            let d = Draft::new(now, AuditAction::AccessDenied, Outcome::Denied)
                .actor_name(user_actor_name(&s.user_id))
                .session(Some(s.public_id.clone()))
                .source_ip(ctx.ip_string());
            self.inner.writer.append(d).await?;
            return Err(CoreError::MfaRequired);
        }
        let user = self.inner.store.user_by_id(&s.user_id).await?;
        let Some(user) = user.filter(|u| u.active) else {
            let d = Draft::new(now, AuditAction::AccessDenied, Outcome::Denied)
                .actor_name(user_actor_name(&s.user_id))
                .session(Some(s.public_id.clone()))
                .source_ip(ctx.ip_string());
            self.inner.writer.write(vec![AuthChange::DeleteSession { token_hash: s.token_hash.clone() }.into()], vec![d], None).await?;
            return Err(CoreError::Unauthenticated);
        };
        let (roles, privileges, changes_at) = crate::access::load_privileges(&self.inner.store, &user.id, now).await?;
        let seen = s.last_seen_at;
        Ok(self.inner.sessions.put(cache::Entry {
            generation,
            user_id: UserId::parse(&user.id).map_err(|_| CoreError::Internal("bad user id in store".into()))?,
            username: user.username,
            organization_id: user.organization_id,
            roles,
            privileges: std::sync::Arc::new(privileges),
            changes_at,
            last_seen: seen.into(),
            stored_seen: seen.into(),
            session: s,
        }))
    }

    /// Audits a refusal before sign-in through the per-window count (see `refusals`): `first`
    /// is written (and waited for) when it opens its key's window; otherwise the refusal is
    /// only counted.
    pub(super) async fn refuse_counted(&self, key: refusals::Key, first: Draft, now: i64) -> Result<(), CoreError> {
        let (decision, ended) = self.inner.refusals.note(&key, now);
        self.write_refusal_counts(ended, now);
        if decision == refusals::Decision::Counted {
            return Ok(());
        }
        let details = serde_json::json!({"reason": key.0.reason(), "window_secs": self.inner.refusals.window_secs()});
        let sealed = self.seal_json_details(&first.event_id, details).await?;
        if let Err(e) = self.inner.writer.append(first.details(sealed)).await {
            // The window's first record is not written: the next refusal opens it again, and
            // what was counted meanwhile is queued.
            let counted = self.inner.refusals.abandon(&key);
            self.write_refusal_counts(counted.into_iter().map(|t| (key.clone(), t)).collect(), now);
            return Err(e);
        }
        Ok(())
    }

    /// Writes one record per ended window of refusals, carrying the count of refusals after the
    /// window's first (which has its own record). Queued as durable jobs: a failed batch keeps
    /// them for the next one.
    fn write_refusal_counts(&self, ended: Vec<(refusals::Key, refusals::Tally)>, now: i64) {
        let drafts = self.refusal_count_drafts(ended, now);
        if !drafts.is_empty() {
            self.inner.writer.fire_audited(vec![], drafts);
        }
    }

    fn refusal_count_drafts(&self, ended: Vec<(refusals::Key, refusals::Tally)>, now: i64) -> Vec<Draft> {
        let mut drafts = Vec::with_capacity(ended.len());
        for ((kind, ip, actor), t) in ended {
            let mut d = Draft::new(now, kind.action(), Outcome::Denied).source_ip(ip.map(|i| i.to_string()));
            if let Some(a) = actor {
                d = d.actor_name(a);
            }
            // The count is a plain mark so the audit viewer shows it; the times are in details.
            d.review = Some(format!("refusals:{}", t.further));
            let details = serde_json::json!({
                "reason": kind.reason(),
                "count": t.further,
                "window_opened": crate::format_instant(t.opened),
                "first": crate::format_instant(t.first_further),
                "last": crate::format_instant(t.last),
                "window_secs": self.inner.refusals.window_secs(),
            });
            match self.inner.sealer.seal_details(&d.event_id, details.to_string().as_bytes()) {
                Ok(sealed) => drafts.push(d.details(sealed)),
                // The count is still recorded, without its times.
                Err(_) => drafts.push(d),
            }
        }
        drafts
    }

    /// Writes the counts of ended windows of unauthenticated refusals (the vault's tick).
    pub(crate) fn flush_ended_refusals(&self) {
        let now = self.now();
        let ended = self.inner.refusals.ended(now, false);
        self.write_refusal_counts(ended, now);
    }

    /// Writes the counts of every open window and waits until they are durable (shutdown).
    pub(crate) async fn flush_all_refusals(&self) -> Result<(), CoreError> {
        let now = self.now();
        let drafts = self.refusal_count_drafts(self.inner.refusals.ended(now, true), now);
        if drafts.is_empty() {
            return Ok(());
        }
        self.inner.writer.write(vec![], drafts, None).await.map(|_| ())
    }

    /// Ends a session (pending or full). Unknown tokens are ignored.
    pub async fn logout(&self, ctx: &RequestContext, token: Option<&str>) -> Result<(), CoreError> {
        let now = self.now();
        let Some(t) = token else { return Ok(()) };
        let Some(s) = self.inner.store.session(&token_hash(t)).await? else {
            return Ok(());
        };
        let d = Draft::new(now, AuditAction::Logout, Outcome::Success)
            .actor_name(user_actor_name(&s.user_id))
            .session(Some(s.public_id.clone()))
            .source_ip(ctx.ip_string());
        self.inner.writer.write(vec![AuthChange::DeleteSession { token_hash: s.token_hash }.into()], vec![d], None).await.map(|_| ())
    }

    /// Ends every session past its idle or absolute limit (and stale MFA-pending sessions).
    pub(crate) async fn sweep_sessions(&self) -> Result<usize, CoreError> {
        let now = self.now();
        let c = &self.inner.config;
        let expired =
            self.inner.store.expired_sessions(now, now - c.session_idle_secs * 1_000_000, now - c.mfa_pending_secs * 1_000_000).await?;
        for s in &expired {
            self.expire(s, now).await?;
        }
        Ok(expired.len())
    }
}

/// A second factor just succeeded: the ops that replace the MFA-pending session by a full one
/// with a new token (OWASP ASVS: new token at authentication), clear the failure count and
/// record the sign-in.
pub(super) struct Upgrade {
    pub token: String,
    pub public_id: String,
    pub expires_at: i64,
    pub ops: Vec<Op>,
}

impl Vault {
    pub(super) fn upgrade_session(&self, ctx: &RequestContext, user_id: &str, pending: &SessionRow, now: i64) -> Upgrade {
        let token = new_token();
        let public_id = hex::encode(carevault_crypto::random_bytes::<8>());
        let expires_at = now + self.inner.config.session_max_secs * 1_000_000;
        let ops = vec![
            AuthChange::DeleteSession { token_hash: pending.token_hash.clone() }.into(),
            AuthChange::InsertSession(NewSession {
                token_hash: token_hash(&token),
                public_id: public_id.clone(),
                user_id: user_id.to_string(),
                state: ACTIVE.into(),
                created_at: now,
                expires_at,
                source_ip: ctx.ip_string(),
            })
            .into(),
            AuthChange::SetLoginFailures { user_id: user_id.to_string(), failed: 0, locked_until: None }.into(),
            AuthChange::SetLastLogin { user_id: user_id.to_string(), now }.into(),
        ];
        Upgrade { token, public_id, expires_at, ops }
    }

    /// What the client gets once the full session is durable.
    pub(super) async fn grant(&self, user: UserRow, up: Upgrade, now: i64) -> Result<SessionGrant, CoreError> {
        let (roles, _, _) = crate::access::load_privileges(&self.inner.store, &user.id, now).await?;
        Ok(SessionGrant {
            token: up.token,
            user_id: user.id,
            username: user.username,
            roles,
            idle_timeout_secs: self.inner.config.session_idle_secs,
            expires_at: up.expires_at,
        })
    }
}
