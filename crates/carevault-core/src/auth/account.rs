//! The account's own security: step-up re-authentication, password change, recovery codes,
//! and an administrator's reset of another user's second factors.

use carevault_crypto::password;
use carevault_crypto::totp::{TotpCheck, TotpSecret};
use carevault_domain::{AuditAction, Operation, Outcome, PurposeOfUse};

use super::{new_token, token_hash, user_actor_name, SessionGrant, ACTIVE, PENDING};
use crate::access::changes::AccessChange;
use crate::access::{alert, SECURITY};
use crate::actor::{Actor, RequestContext};
use crate::audit::Draft;
use crate::auth::changes::AuthChange;
use crate::authz::Target;
use crate::error::CoreError;
use crate::vault::Vault;

const RECOVERY_CODES: usize = 10;
/// Recovery codes: 10 characters of an alphabet without look-alikes (≈ 50 bits), shown as
/// `xxxxx-xxxxx`.
const CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

fn new_recovery_code() -> String {
    let bytes = carevault_crypto::random_bytes::<10>();
    let chars: String = bytes.iter().map(|b| CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// A second factor just re-enrolled by an administrator's reset.
#[derive(Debug, Clone)]
pub struct MfaReset {
    pub user_id: String,
    /// What the holder enrols a new authenticator with at the next sign-in (with the password).
    /// The new secret itself is never shown to the administrator.
    pub invitation: crate::approvals::Invitation,
}

impl Vault {
    async fn check_own_password(&self, actor: &Actor, password_attempt: &str) -> Result<carevault_store::UserRow, CoreError> {
        let user = self.inner.store.user_by_id(actor.user_id.as_str()).await?.ok_or(CoreError::Unauthenticated)?;
        let pw = password_attempt.to_string();
        let phc = user.password_hash.clone();
        if !self.blocking_hash(move || password::verify_password(&pw, &phc)).await? {
            let ctx = RequestContext { source_ip: actor.source_ip.as_deref().and_then(|i| i.parse().ok()) };
            self.record_failure(&ctx, &user, AuditAction::LoginFailed, vec![], self.now()).await?;
            return Err(CoreError::InvalidCredentials);
        }
        Ok(user)
    }

    /// Step-up: proves password and a TOTP code again; sensitive actions need this within the
    /// last `step_up_secs`.
    pub async fn reauthenticate(&self, actor: &Actor, password_attempt: &str, code: &str) -> Result<(), CoreError> {
        self.gate(actor, Operation::OwnReauthenticate, PurposeOfUse::Operations, &Target::Anywhere, ("Session", None)).await?;
        let user = self.check_own_password(actor, password_attempt).await?;
        let now = self.now();
        let secret = TotpSecret::from_bytes(&self.inner.sealer.open_credential(&self.inner.store, now, &user.id, &user.totp_secret).await?);
        let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let TotpCheck::Valid { step } = secret.verify(code.trim(), self.inner.clock.now_secs(), last) else {
            let ctx = RequestContext { source_ip: actor.source_ip.as_deref().and_then(|i| i.parse().ok()) };
            self.record_failure(&ctx, &user, AuditAction::MfaFailed, vec![], now).await?;
            return Err(CoreError::InvalidCode);
        };
        let token_hash = actor.session_token_hash.clone().ok_or(CoreError::Unauthenticated)?;
        let ops = vec![
            AuthChange::AdvanceTotp { user_id: user.id.clone(), step: i64::try_from(step).unwrap_or(i64::MAX) }.into(),
            AuthChange::SetSessionAuthenticated { token_hash, now }.into(),
            AuthChange::SetLoginFailures { user_id: user.id.clone(), failed: 0, locked_until: None }.into(),
        ];
        let ok = Draft::new(now, AuditAction::Login, Outcome::Success).by(actor).resource("Session", actor.session_public_id.as_deref());
        let replay =
            Draft::new(now, AuditAction::MfaFailed, Outcome::Denied).by(actor).resource("Session", actor.session_public_id.as_deref());
        self.inner.writer.write(ops, vec![ok], Some(replay)).await?;
        Ok(())
    }

    /// Changes the actor's password: needs the current one; every other session ends.
    pub async fn change_password(&self, actor: &Actor, current: &str, new_password: &str) -> Result<(), CoreError> {
        self.gate(actor, Operation::OwnPasswordChange, PurposeOfUse::Operations, &Target::Anywhere, ("User", Some(actor.user_id.as_str())))
            .await?;
        let user = self.check_own_password(actor, current).await?;
        let now = self.now();
        if let Err(e) = super::policy::check_password_min(new_password, &user.username, self.inner.config.password_min_chars) {
            let d = Draft::new(now, AuditAction::Update, Outcome::Invalid).by(actor).resource("User", Some(&user.id));
            self.inner.writer.append(d).await?;
            return Err(CoreError::Invalid(e));
        }
        let pw = new_password.to_string();
        let hash = self
            .blocking_hash(move || password::hash_password(&pw))
            .await?
            .map_err(|_| CoreError::Internal("password hashing failed".into()))?;
        let keep = actor.session_token_hash.clone().unwrap_or_default();
        let ops = vec![
            AuthChange::SetPassword { user_id: user.id.clone(), hash, now }.into(),
            AuthChange::DeleteOtherSessions { user_id: user.id.clone(), keep }.into(),
        ];
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("User", Some(&user.id));
        let details = self.inner.sealer.seal_details(&ev.event_id, br#"{"changed":"password"}"#)?;
        self.inner.writer.write(ops, vec![ev.details(details)], None).await?;
        Ok(())
    }

    /// Makes ten new single-use recovery codes (the old ones stop working). Shown once; only
    /// keyed hashes are stored. Needs a fresh sign-in.
    pub async fn generate_recovery_codes(&self, actor: &Actor) -> Result<Vec<String>, CoreError> {
        self.gate(actor, Operation::OwnRecoveryCodes, PurposeOfUse::Operations, &Target::Anywhere, ("User", Some(actor.user_id.as_str())))
            .await?;
        self.require_fresh_auth(actor, Operation::OwnRecoveryCodes).await?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let uid = actor.user_id.to_string();
        let hashes = codes.iter().map(|c| self.inner.sealer.recovery_code_hash(&uid, &normalize_code(c))).collect();
        let now = self.now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("User", Some(&uid));
        let details = self.inner.sealer.seal_details(&ev.event_id, br#"{"changed":"recovery-codes"}"#)?;
        self.inner
            .writer
            .write(vec![AuthChange::ReplaceRecoveryCodes { user_id: uid, hashes, now }.into()], vec![ev.details(details)], None)
            .await?;
        Ok(codes)
    }

    /// Second factor by recovery code instead of TOTP. Each code works once.
    pub async fn verify_recovery_code(
        &self,
        ctx: &RequestContext,
        pending_token: Option<&str>,
        code: &str,
    ) -> Result<SessionGrant, CoreError> {
        let now = self.now();
        let session = match pending_token {
            Some(t) => self.inner.store.session(&token_hash(t)).await?,
            None => None,
        };
        let Some(session) = session.filter(|s| s.state == PENDING && now < s.expires_at) else {
            let d = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied).source_ip(ctx.ip_string());
            self.refuse_counted((super::refusals::Kind::NoPendingSession, ctx.source_ip, None), d, now).await?;
            return Err(CoreError::Unauthenticated);
        };
        let user = self.inner.store.user_by_id(&session.user_id).await?.filter(|u| u.active).ok_or(CoreError::Unauthenticated)?;
        if user.locked_until.is_some_and(|u| u > now) {
            return Err(CoreError::Throttled { retry_after_secs: 60 });
        }
        let hash = self.inner.sealer.recovery_code_hash(&user.id, &normalize_code(code));
        let token = new_token();
        let public_id = hex::encode(carevault_crypto::random_bytes::<8>());
        let expires_at = now + self.inner.config.session_max_secs * 1_000_000;
        let ops = vec![
            AuthChange::UseRecoveryCode { user_id: user.id.clone(), hash, now }.into(),
            AuthChange::DeleteSession { token_hash: session.token_hash.clone() }.into(),
            AuthChange::InsertSession(carevault_store::NewSession {
                token_hash: token_hash(&token),
                public_id: public_id.clone(),
                user_id: user.id.clone(),
                state: ACTIVE.into(),
                created_at: now,
                expires_at,
                source_ip: ctx.ip_string(),
            })
            .into(),
            AuthChange::SetLoginFailures { user_id: user.id.clone(), failed: 0, locked_until: None }.into(),
            AuthChange::SetLastLogin { user_id: user.id.clone(), now }.into(),
            AccessChange::InsertAlert(alert(SECURITY, "recovery-code-used", Some(&user.id), None, None, now)).into(),
        ];
        let ok = Draft::new(now, AuditAction::Login, Outcome::Success)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .session(Some(public_id))
            .resource("User", Some(&user.id));
        let bad = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .session(Some(session.public_id.clone()))
            .resource("User", Some(&user.id));
        match self.inner.writer.write(ops, vec![ok], Some(bad)).await {
            Ok(_) => {}
            Err(CoreError::InvalidCode) => {
                let ops =
                    vec![AuthChange::SessionMfaFailed { token_hash: session.token_hash.clone(), max: super::MAX_MFA_FAILURES_PER_SESSION }
                        .into()];
                self.record_failure(ctx, &user, AuditAction::MfaFailed, ops, now).await?;
                return Err(CoreError::InvalidCode);
            }
            Err(e) => return Err(e),
        }
        let (roles, _, _) = crate::access::load_privileges(&self.inner.store, &user.id, now).await?;
        Ok(SessionGrant {
            token,
            user_id: user.id,
            username: user.username,
            roles,
            idle_timeout_secs: self.inner.config.session_idle_secs,
            expires_at,
        })
    }

    /// Remaining unused recovery codes of the actor.
    pub async fn recovery_codes_left(&self, actor: &Actor) -> Result<i64, CoreError> {
        Ok(self.inner.store.unused_recovery_codes(actor.user_id.as_str()).await?)
    }

    /// An administrator resets another user's second factors: a new TOTP secret (handed to the
    /// user), recovery codes deleted, every session ended. Needs the administrator's own fresh
    /// sign-in; raises a security alert.
    pub async fn reset_mfa(&self, actor: &Actor, user_id: &str) -> Result<MfaReset, CoreError> {
        let purpose = if actor.privileges.purposes().contains(&PurposeOfUse::SystemAdministration) {
            PurposeOfUse::SystemAdministration
        } else {
            PurposeOfUse::Operations
        };
        let user = if carevault_domain::UserId::parse(user_id).is_ok() { self.inner.store.user_by_id(user_id).await? } else { None };
        let Some(user) = user else {
            self.gate(actor, Operation::UserMfaReset, purpose, &Target::Anywhere, ("User", Some(user_id))).await?;
            return Err(CoreError::NotFound { resource: format!("User/{user_id}") });
        };
        self.gate(actor, Operation::UserMfaReset, purpose, &Target::Organization(&user.organization_id), ("User", Some(user_id))).await?;
        self.require_fresh_auth(actor, Operation::UserMfaReset).await?;
        let now = self.now();
        if user.id == actor.user_id.as_str() {
            let d = Draft::new(now, AuditAction::Update, Outcome::Denied).by(actor).resource("User", Some(user_id));
            self.inner.writer.append(d).await?;
            return Err(CoreError::Refused { reason: "self-reset", message: "another administrator must reset your second factor".into() });
        }
        // A secret nobody sees: the old authenticator stops working, and the holder enrols a new
        // one at the next sign-in with the invitation.
        let secret = TotpSecret::generate();
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let sealed = self.inner.sealer.seal_credential(&user.id, secret.as_bytes(), None)?;
        let (invitation, invite) = self.new_invitation(actor, &user.id, now);
        let ops = vec![
            AuthChange::ReplaceTotp {
                user_id: user.id.clone(),
                secret: sealed,
                key_version: i64::from(self.inner.sealer.current_version()?),
            }
            .into(),
            invite,
            AuthChange::ReplaceRecoveryCodes { user_id: user.id.clone(), hashes: vec![], now }.into(),
            AuthChange::DeletePasskeys { user_id: user.id.clone(), id: None }.into(),
            AuthChange::DeleteUserSessions { user_id: user.id.clone() }.into(),
            AccessChange::InsertAlert(alert(SECURITY, "mfa-reset", Some(&user.id), None, None, now)).into(),
        ];
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("User", Some(&user.id)).purpose(purpose);
        let details = self.inner.sealer.seal_details(&ev.event_id, br#"{"changed":"mfa-reset"}"#)?;
        self.inner.writer.write(ops, vec![ev.details(details)], None).await?;
        Ok(MfaReset { user_id: user.id, invitation })
    }
}
