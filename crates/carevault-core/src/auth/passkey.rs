//! WebAuthn passkeys: registration, naming and revocation by the signed-in user, and passkey
//! sign-in as the second factor. Ceremony state is sealed in the database, expires after
//! five minutes and is consumed by its first use; cross-user and forged assertions are refused
//! by webauthn-rs and audited here.

use carevault_crypto::passkey::PasskeyError;
use carevault_domain::{AuditAction, Operation, Outcome, PurposeOfUse};
use carevault_store::{CeremonyRow, PasskeyRow};

use super::{token_hash, user_actor_name, SessionGrant, PENDING};
use crate::actor::{Actor, RequestContext};
use crate::audit::Draft;
use crate::auth::changes::AuthChange;
use crate::authz::Target;
use crate::error::CoreError;
use crate::vault::Vault;

const CEREMONY_SECS: i64 = 300;
const REGISTER: &str = "register";
const AUTHENTICATE: &str = "authenticate";

/// A passkey as its owner sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Options for the browser's `navigator.credentials.create/get`, and the ceremony to finish.
#[derive(Debug, Clone)]
pub struct PasskeyChallenge {
    pub ceremony_id: String,
    pub options: serde_json::Value,
}

fn passkey_error(e: PasskeyError) -> CoreError {
    match e {
        PasskeyError::Malformed => {
            CoreError::Invalid(carevault_domain::InputError::value("credential", "not a WebAuthn credential response"))
        }
        PasskeyError::Refused(_) => CoreError::InvalidCode,
        PasskeyError::Origin(m) => CoreError::Internal(m),
        PasskeyError::Stored => CoreError::Internal("stored passkey data".into()),
    }
}

fn check_name(name: &str) -> Result<String, CoreError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(CoreError::Invalid(carevault_domain::InputError::value("name", "1 to 64 printable characters")));
    }
    Ok(n.to_string())
}

fn ceremony_id() -> String {
    hex::encode(carevault_crypto::random_bytes::<16>())
}

impl Vault {
    fn own_gate_target(&self) -> Target<'static> {
        Target::Anywhere
    }

    /// The actor's passkeys.
    pub async fn my_passkeys(&self, actor: &Actor) -> Result<Vec<PasskeyView>, CoreError> {
        self.gate(actor, Operation::OwnPasskeys, PurposeOfUse::Operations, &self.own_gate_target(), ("Passkey", None)).await?;
        Ok(self
            .inner
            .store
            .passkeys_for_user(actor.user_id.as_str())
            .await?
            .into_iter()
            .map(|p| PasskeyView { id: p.id, name: p.name, created_at: p.created_at, last_used_at: p.last_used_at })
            .collect())
    }

    async fn save_ceremony(&self, user_id: &str, kind: &str, state: &[u8], now: i64) -> Result<String, CoreError> {
        let id = ceremony_id();
        let sealed = self.inner.sealer.seal_secret(("webauthn_ceremonies", "state", &id), state)?;
        let row = CeremonyRow {
            id: id.clone(),
            user_id: user_id.to_string(),
            kind: kind.to_string(),
            state: sealed,
            expires_at: now + CEREMONY_SECS * 1_000_000,
        };
        self.inner.writer.write(vec![AuthChange::InsertCeremony(Box::new(row)).into()], vec![], None).await?;
        Ok(id)
    }

    /// The ceremony's state, if it belongs to `user_id`, is of `kind` and has not expired.
    async fn load_ceremony(&self, id: &str, user_id: &str, kind: &str, now: i64) -> Result<Option<Vec<u8>>, CoreError> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(c) = self.inner.store.ceremony(id).await? else { return Ok(None) };
        if c.user_id != user_id || c.kind != kind || c.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(self.inner.sealer.open_secret(&self.inner.store, now, ("webauthn_ceremonies", "state", id), &c.state).await?))
    }

    /// Starts registering a passkey for the signed-in actor (needs a fresh sign-in).
    pub async fn passkey_registration_start(&self, actor: &Actor) -> Result<PasskeyChallenge, CoreError> {
        self.gate(actor, Operation::OwnPasskeys, PurposeOfUse::Operations, &self.own_gate_target(), ("Passkey", None)).await?;
        self.require_fresh_auth(actor, Operation::OwnPasskeys).await?;
        let now = self.now();
        let uid = actor.user_id.to_string();
        let existing: Vec<Vec<u8>> = self.inner.store.passkeys_for_user(&uid).await?.into_iter().map(|p| p.credential_id).collect();
        let (options, state) = self
            .inner
            .passkeys
            .start_registration(self.inner.sealer.user_handle(&uid), &actor.username, &existing)
            .map_err(passkey_error)?;
        let ceremony_id = self.save_ceremony(&uid, REGISTER, &state, now).await?;
        Ok(PasskeyChallenge { ceremony_id, options })
    }

    /// Finishes a registration with the browser's answer; the passkey gets `name`.
    pub async fn passkey_registration_finish(
        &self,
        actor: &Actor,
        ceremony: &str,
        name: &str,
        response: &[u8],
    ) -> Result<PasskeyView, CoreError> {
        self.gate(actor, Operation::OwnPasskeys, PurposeOfUse::Operations, &self.own_gate_target(), ("Passkey", None)).await?;
        let now = self.now();
        let uid = actor.user_id.to_string();
        let fail = |reason: &str| {
            let d = Draft::new(now, AuditAction::Create, Outcome::Denied).by(actor).resource("Passkey", None);
            (d, reason.to_string())
        };
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => {
                self.inner.writer.append(fail("name").0).await?;
                return Err(e);
            }
        };
        let Some(state) = self.load_ceremony(ceremony, &uid, REGISTER, now).await? else {
            self.inner.writer.append(fail("ceremony").0).await?;
            return Err(CoreError::InvalidCode);
        };
        let registered = match self.inner.passkeys.finish_registration(response, &state) {
            Ok(r) => r,
            Err(e) => {
                let d = fail("refused").0;
                self.inner.writer.write(vec![AuthChange::TakeCeremony { id: ceremony.to_string() }.into()], vec![d], None).await?;
                return Err(passkey_error(e));
            }
        };
        let id = format!("pk-{}", hex::encode(carevault_crypto::random_bytes::<12>()));
        let sealed = self.inner.sealer.seal_secret(("passkeys", "passkey", &id), &registered.passkey)?;
        let row = PasskeyRow {
            id: id.clone(),
            user_id: uid.clone(),
            credential_id: registered.credential_id,
            name: name.clone(),
            passkey: sealed,
            created_at: now,
            last_used_at: None,
        };
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success).by(actor).resource("Passkey", Some(&id));
        let conflict = Draft::new(now, AuditAction::Create, Outcome::Conflict).by(actor).resource("Passkey", None);
        self.inner
            .writer
            .write(
                vec![AuthChange::TakeCeremony { id: ceremony.to_string() }.into(), AuthChange::InsertPasskey(Box::new(row)).into()],
                vec![ev],
                Some(conflict),
            )
            .await?;
        Ok(PasskeyView { id, name, created_at: now, last_used_at: None })
    }

    pub async fn rename_passkey(&self, actor: &Actor, id: &str, name: &str) -> Result<(), CoreError> {
        self.gate(actor, Operation::OwnPasskeys, PurposeOfUse::Operations, &self.own_gate_target(), ("Passkey", Some(id))).await?;
        let name = check_name(name)?;
        let now = self.now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("Passkey", Some(id));
        let fail = Draft::new(now, AuditAction::Update, Outcome::NotFound).by(actor).resource("Passkey", Some(id));
        self.inner
            .writer
            .write(
                vec![AuthChange::RenamePasskey { user_id: actor.user_id.to_string(), id: id.to_string(), name }.into()],
                vec![ev],
                Some(fail),
            )
            .await?;
        Ok(())
    }

    /// Revokes one of the actor's passkeys (needs a fresh sign-in); other sessions end, since a
    /// factor changed.
    pub async fn revoke_passkey(&self, actor: &Actor, id: &str) -> Result<(), CoreError> {
        self.gate(actor, Operation::OwnPasskeys, PurposeOfUse::Operations, &self.own_gate_target(), ("Passkey", Some(id))).await?;
        self.require_fresh_auth(actor, Operation::OwnPasskeys).await?;
        let now = self.now();
        let uid = actor.user_id.to_string();
        let ops = vec![
            AuthChange::DeletePasskeys { user_id: uid.clone(), id: Some(id.to_string()) }.into(),
            AuthChange::DeleteOtherSessions { user_id: uid, keep: actor.session_token_hash.clone().unwrap_or_default() }.into(),
        ];
        let ev = Draft::new(now, AuditAction::Delete, Outcome::Success).by(actor).resource("Passkey", Some(id));
        let fail = Draft::new(now, AuditAction::Delete, Outcome::NotFound).by(actor).resource("Passkey", Some(id));
        self.inner.writer.write(ops, vec![ev], Some(fail)).await?;
        Ok(())
    }

    async fn pending_session(
        &self,
        ctx: &RequestContext,
        pending_token: Option<&str>,
        now: i64,
    ) -> Result<(carevault_store::SessionRow, carevault_store::UserRow), CoreError> {
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
        if let Some(until) = user.locked_until.filter(|u| *u > now) {
            return Err(CoreError::Throttled { retry_after_secs: if until == i64::MAX { 86_400 } else { (until - now) / 1_000_000 + 1 } });
        }
        Ok((session, user))
    }

    /// Second factor by passkey: starts the ceremony for the MFA-pending session's account.
    pub async fn passkey_login_start(&self, ctx: &RequestContext, pending_token: Option<&str>) -> Result<PasskeyChallenge, CoreError> {
        let now = self.now();
        let (_, user) = self.pending_session(ctx, pending_token, now).await?;
        let mut stored = Vec::new();
        for p in self.inner.store.passkeys_for_user(&user.id).await? {
            stored.push(self.inner.sealer.open_secret(&self.inner.store, now, ("passkeys", "passkey", &p.id), &p.passkey).await?);
        }
        if stored.is_empty() {
            return Err(CoreError::Refused {
                reason: "no-passkeys",
                message: "this account has no passkey; use the authenticator app".into(),
            });
        }
        let (options, state) = self.inner.passkeys.start_authentication(&stored).map_err(passkey_error)?;
        let ceremony_id = self.save_ceremony(&user.id, AUTHENTICATE, &state, now).await?;
        Ok(PasskeyChallenge { ceremony_id, options })
    }

    /// Finishes passkey sign-in: the pending session becomes a full one with a new token.
    pub async fn passkey_login_finish(
        &self,
        ctx: &RequestContext,
        pending_token: Option<&str>,
        ceremony: &str,
        response: &[u8],
    ) -> Result<SessionGrant, CoreError> {
        let now = self.now();
        let (session, user) = self.pending_session(ctx, pending_token, now).await?;
        let denied = Draft::new(now, AuditAction::MfaFailed, Outcome::Denied)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .session(Some(session.public_id.clone()))
            .resource("User", Some(&user.id));
        let Some(state) = self.load_ceremony(ceremony, &user.id, AUTHENTICATE, now).await? else {
            self.inner.writer.append(denied).await?;
            return Err(CoreError::InvalidCode);
        };
        let keys = self.inner.store.passkeys_for_user(&user.id).await?;
        let mut opened = Vec::with_capacity(keys.len());
        for p in &keys {
            opened.push((
                p.credential_id.clone(),
                p.id.clone(),
                self.inner.sealer.open_secret(&self.inner.store, now, ("passkeys", "passkey", &p.id), &p.passkey).await?,
            ));
        }
        let result = self
            .inner
            .passkeys
            .finish_authentication(response, &state, |cred| opened.iter().find(|(c, _, _)| c == cred).map(|(_, _, pk)| pk.clone()));
        let asserted = match result {
            Ok(a) => a,
            Err(e) => {
                let ops = vec![
                    AuthChange::TakeCeremony { id: ceremony.to_string() }.into(),
                    AuthChange::SessionMfaFailed { token_hash: session.token_hash.clone(), max: super::MAX_MFA_FAILURES_PER_SESSION }
                        .into(),
                ];
                self.record_failure(ctx, &user, AuditAction::MfaFailed, ops, now).await?;
                return Err(passkey_error(e));
            }
        };
        let Some((_, pk_id, _)) = opened.iter().find(|(c, _, _)| *c == asserted.credential_id) else {
            self.inner.writer.append(denied).await?;
            return Err(CoreError::InvalidCode);
        };
        let updated = match &asserted.updated_passkey {
            Some(p) => Some(self.inner.sealer.seal_secret(("passkeys", "passkey", pk_id), p)?),
            None => None,
        };
        let mut up = self.upgrade_session(ctx, &user.id, &session, now);
        let mut ops = vec![
            AuthChange::TakeCeremony { id: ceremony.to_string() }.into(),
            AuthChange::PasskeyUsed { credential_id: asserted.credential_id.clone(), passkey: updated, now }.into(),
        ];
        ops.append(&mut up.ops);
        let ok = Draft::new(now, AuditAction::Login, Outcome::Success)
            .actor_name(user_actor_name(&user.id))
            .source_ip(ctx.ip_string())
            .session(Some(up.public_id.clone()))
            .resource("Passkey", Some(pk_id));
        // The ceremony already used by a concurrent request: a replay.
        self.inner.writer.write(ops, vec![ok], Some(denied)).await?;
        self.grant(user, up, now).await
    }
}
