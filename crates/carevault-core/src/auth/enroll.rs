//! First-sign-in MFA enrollment, the idle clock the web page reads, and the form tokens (CSRF)
//! of the staff web UI.

use base64::Engine;
use carevault_crypto::totp::TotpSecret;
use carevault_domain::{AuditAction, Outcome};

use super::{token_hash, user_actor_name, PENDING};
use crate::actor::RequestContext;
use crate::audit::Draft;
use crate::auth::changes::AuthChange;
use crate::error::CoreError;
use crate::vault::Vault;

/// The form token (CSRF synchronizer token) of a session: a one-way, domain-separated hash of
/// the session token. A page of the session carries it in every form; another site can neither
/// read the page nor compute it (the session cookie is HttpOnly and never leaves this origin).
pub fn form_token(session_token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(carevault_crypto::sha256(&[b"carevault-form-v1", session_token.as_bytes()]))
}

/// 256 random bits, URL-safe (the sign-in form's double-submit token, before any session).
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(carevault_crypto::random_bytes::<32>())
}

impl Vault {
    /// Whether the user of an MFA-pending session has never completed a second factor: no TOTP
    /// code accepted since the secret was set (new account or MFA reset) and no passkey. Such a
    /// user enrols an authenticator at this sign-in.
    pub async fn mfa_enrollment_needed(&self, pending_token: Option<&str>) -> Result<bool, CoreError> {
        Ok(self.mfa_enrollment(pending_token).await?.is_some())
    }

    /// Whether enrollment at this sign-in needs an invitation code (`Some(true)`), does not
    /// (`Some(false)`: a demo account), or is not the step at all (`None`).
    pub async fn mfa_enrollment(&self, pending_token: Option<&str>) -> Result<Option<bool>, CoreError> {
        let now = self.inner.clock.now_micros();
        let Some(t) = pending_token else { return Ok(None) };
        let Some(s) = self.inner.store.session(&token_hash(t)).await?.filter(|s| s.state == PENDING && now < s.expires_at) else {
            return Ok(None);
        };
        let Some(user) = self.inner.store.user_by_id(&s.user_id).await?.filter(|u| u.active) else { return Ok(None) };
        let needed = user.totp_last_step.is_none() && self.inner.store.passkeys_for_user(&user.id).await?.is_empty();
        Ok(needed.then_some(!user.is_demo))
    }

    /// First-sign-in enrollment: gives a user who has never completed a second factor a fresh
    /// TOTP secret (the one printed at account creation, if any, stops working) and returns its
    /// `otpauth://` URI for the QR code. The enrollment completes with the first valid code
    /// (`verify_totp`). Refused for enrolled users: their authenticator is changed only through an
    /// administrator's MFA reset.
    ///
    /// Every account but a demo one must also show its invitation code (from its creation or
    /// its MFA reset), single-use and expiring: knowing the password alone never lets anyone
    /// enrol their own second factor on someone else's account.
    pub async fn mfa_enrollment_start(
        &self,
        ctx: &RequestContext,
        pending_token: Option<&str>,
        invitation: Option<&str>,
    ) -> Result<String, CoreError> {
        let now = self.inner.clock.now_micros();
        if !self.mfa_enrollment_needed(pending_token).await? {
            let d = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied).source_ip(ctx.ip_string()).resource("User", None);
            self.inner.writer.append(d).await?;
            return Err(CoreError::Refused {
                reason: "already-enrolled",
                message: "this account already has an authenticator; an administrator can reset it".into(),
            });
        }
        let session = match pending_token {
            Some(t) => self.inner.store.session(&token_hash(t)).await?,
            None => None,
        };
        let Some(session) = session else { return Err(CoreError::Unauthenticated) };
        let user = self.inner.store.user_by_id(&session.user_id).await?.ok_or(CoreError::Unauthenticated)?;
        let take = match self.check_invitation(&user, invitation, now).await {
            Ok(op) => op,
            Err(e) => {
                // A wrong code counts as a failed second factor of this pending session.
                let d = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied)
                    .actor_name(user_actor_name(&user.id))
                    .source_ip(ctx.ip_string())
                    .session(Some(session.public_id.clone()))
                    .resource("User", Some(&user.id));
                let fail =
                    AuthChange::SessionMfaFailed { token_hash: session.token_hash.clone(), max: super::MAX_MFA_FAILURES_PER_SESSION }
                        .into();
                self.inner.writer.write(vec![fail], vec![d], None).await?;
                return Err(e);
            }
        };
        let secret = TotpSecret::generate();
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let sealed = self.inner.sealer.seal_credential(&user.id, secret.as_bytes(), None)?;
        let mut ops = vec![AuthChange::ReplaceTotp {
            user_id: user.id.clone(),
            secret: sealed,
            key_version: i64::from(self.inner.sealer.current_version()?),
        }
        .into()];
        ops.extend(take);
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .session(Some(session.public_id.clone()))
            .resource("User", Some(&user.id));
        let details = self.inner.sealer.seal_details(&ev.event_id, br#"{"changed":"mfa-enrollment"}"#)?;
        self.inner.writer.write(ops, vec![ev.details(details)], None).await?;
        secret.otpauth_uri(&self.inner.config.totp_issuer, &user.username).map_err(CoreError::Internal)
    }

    /// Seconds until a session ends for inactivity (or at its absolute limit, if sooner);
    /// `None` for no live session. Reading it does not count as use: the page asks before it
    /// locks, so a session another tab kept alive is not locked, and a page left alone cannot
    /// extend anything.
    pub async fn session_seconds_left(&self, token: Option<&str>) -> Result<Option<i64>, CoreError> {
        let now = self.inner.clock.now_micros();
        let Some(t) = token.filter(|t| !t.is_empty() && t.len() <= 128) else { return Ok(None) };
        let Some(s) = self.inner.store.session(&token_hash(t)).await? else { return Ok(None) };
        let idle_end = s.last_seen_at + self.inner.config.session_idle_secs * 1_000_000;
        let left = (idle_end.min(s.expires_at) - now) / 1_000_000;
        Ok(Some(left.max(0)))
    }
}
