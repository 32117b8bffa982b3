//! The writes of sign-in, sessions, passwords, second factors (TOTP, recovery codes, passkeys and
//! their ceremonies): what a job of this feature changes, applied by the audit writer inside its
//! transaction (and the job's savepoint), so each change commits with its audit records or not at
//! all. Each says whether it waits for free space and how a store error maps to a domain error that
//! fails only its job.

use carevault_store::{CeremonyRow, NewSession, PasskeyRow, StoreError, UserRow, WriteTx};

use crate::audit::change::{found, Applied, Change, OpFailure};
use crate::error::CoreError;

pub(crate) enum AuthChange {
    InsertUser(Box<UserRow>),
    AdvanceTotp {
        user_id: String,
        step: i64,
    },
    SetLoginFailures {
        user_id: String,
        failed: i64,
        locked_until: Option<i64>,
    },
    InsertSession(NewSession),
    DeleteSession {
        token_hash: Vec<u8>,
    },
    TouchSession {
        token_hash: Vec<u8>,
        now: i64,
    },
    SessionMfaFailed {
        token_hash: Vec<u8>,
        max: i64,
    },
    DeleteUserSessions {
        user_id: String,
    },
    DeleteOtherSessions {
        user_id: String,
        keep: Vec<u8>,
    },
    DeleteSessionByPublicId {
        user_id: String,
        public_id: String,
    },
    SetLastLogin {
        user_id: String,
        now: i64,
    },
    SetPassword {
        user_id: String,
        hash: String,
        now: i64,
    },
    ReplaceTotp {
        user_id: String,
        secret: Vec<u8>,
        key_version: i64,
    },
    ReplaceRecoveryCodes {
        user_id: String,
        hashes: Vec<Vec<u8>>,
        now: i64,
    },
    UseRecoveryCode {
        user_id: String,
        hash: Vec<u8>,
        now: i64,
    },
    SetSessionAuthenticated {
        token_hash: Vec<u8>,
        now: i64,
    },
    InsertPasskey(Box<PasskeyRow>),
    RenamePasskey {
        user_id: String,
        id: String,
        name: String,
    },
    DeletePasskeys {
        user_id: String,
        id: Option<String>,
    },
    PasskeyUsed {
        credential_id: Vec<u8>,
        passkey: Option<Vec<u8>>,
        now: i64,
    },
    InsertCeremony(Box<CeremonyRow>),
    /// Consumes a WebAuthn ceremony: a second use fails the job.
    TakeCeremony {
        id: String,
    },
}

impl Change for AuthChange {
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a> {
        Box::pin(async move {
            match self {
                Self::InsertUser(u) => tx.insert_user(u).await.map_err(|e| match e {
                    StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a user with this username already exists".into())),
                    other => OpFailure::Store(other),
                }),
                Self::AdvanceTotp { user_id, step } => {
                    if tx.advance_totp_step(user_id, *step).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::InvalidCode))
                    }
                }
                Self::SetLoginFailures { user_id, failed, locked_until } => {
                    Ok(tx.set_login_failures(user_id, *failed, *locked_until).await?)
                }
                Self::InsertSession(s) => Ok(tx.insert_session(s).await?),
                Self::DeleteSession { token_hash } => {
                    tx.delete_session(token_hash).await?;
                    Ok(())
                }
                Self::TouchSession { token_hash, now } => Ok(tx.touch_session(token_hash, *now).await?),
                Self::SessionMfaFailed { token_hash, max } => {
                    if tx.session_mfa_failed(token_hash).await? >= *max {
                        tx.delete_session(token_hash).await?;
                    }
                    Ok(())
                }
                Self::DeleteUserSessions { user_id } => {
                    tx.delete_user_sessions(user_id).await?;
                    Ok(())
                }
                Self::DeleteOtherSessions { user_id, keep } => {
                    tx.delete_other_sessions(user_id, keep).await?;
                    Ok(())
                }
                Self::DeleteSessionByPublicId { user_id, public_id } => {
                    found(tx.delete_session_by_public_id(user_id, public_id).await?, "session")
                }
                Self::SetLastLogin { user_id, now } => Ok(tx.set_last_login(user_id, *now).await?),
                Self::SetPassword { user_id, hash, now } => Ok(tx.set_password(user_id, hash, *now).await?),
                Self::ReplaceTotp { user_id, secret, key_version } => Ok(tx.replace_totp(user_id, secret, *key_version).await?),
                Self::ReplaceRecoveryCodes { user_id, hashes, now } => Ok(tx.replace_recovery_codes(user_id, hashes, *now).await?),
                Self::UseRecoveryCode { user_id, hash, now } => {
                    if tx.use_recovery_code(user_id, hash, *now).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::InvalidCode))
                    }
                }
                Self::SetSessionAuthenticated { token_hash, now } => {
                    found(tx.set_session_authenticated(token_hash, *now).await?, "session")
                }
                Self::InsertPasskey(p) => tx.insert_passkey(p).await.map_err(|e| match e {
                    StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this authenticator is already registered".into())),
                    other => OpFailure::Store(other),
                }),
                Self::RenamePasskey { user_id, id, name } => found(tx.rename_passkey(user_id, id, name).await?, "passkey"),
                Self::DeletePasskeys { user_id, id } => {
                    let n = tx.delete_passkeys(user_id, id.as_deref()).await?;
                    if id.is_some() {
                        found(n == 1, "passkey")
                    } else {
                        Ok(())
                    }
                }
                Self::PasskeyUsed { credential_id, passkey, now } => Ok(tx.passkey_used(credential_id, passkey.as_deref(), *now).await?),
                Self::InsertCeremony(c) => Ok(tx.insert_ceremony(c).await?),
                Self::TakeCeremony { id } => {
                    if tx.take_ceremony(id).await? {
                        Ok(())
                    } else {
                        Err(OpFailure::Domain(CoreError::InvalidCode))
                    }
                }
            }
        })
    }

    fn waits_for_space(&self) -> bool {
        !matches!(
            self,
            Self::AdvanceTotp { .. }
                | Self::SetLoginFailures { .. }
                | Self::InsertSession { .. }
                | Self::DeleteSession { .. }
                | Self::TouchSession { .. }
                | Self::SessionMfaFailed { .. }
                | Self::DeleteUserSessions { .. }
                | Self::DeleteOtherSessions { .. }
                | Self::DeleteSessionByPublicId { .. }
                | Self::SetLastLogin { .. }
                | Self::UseRecoveryCode { .. }
                | Self::SetSessionAuthenticated { .. }
                | Self::PasskeyUsed { .. }
                | Self::InsertCeremony { .. }
                | Self::TakeCeremony { .. }
        )
    }

    /// Everything but the bookkeeping of sign-in and of second factors, which no cached
    /// session depends on (a new variant counts as affecting access until listed here).
    fn affects_access(&self) -> bool {
        !matches!(
            self,
            Self::AdvanceTotp { .. }
                | Self::SetLoginFailures { .. }
                | Self::InsertSession { .. }
                | Self::TouchSession { .. }
                | Self::SetLastLogin { .. }
                | Self::ReplaceTotp { .. }
                | Self::ReplaceRecoveryCodes { .. }
                | Self::UseRecoveryCode { .. }
                | Self::InsertPasskey { .. }
                | Self::RenamePasskey { .. }
                | Self::DeletePasskeys { .. }
                | Self::PasskeyUsed { .. }
                | Self::InsertCeremony { .. }
                | Self::TakeCeremony { .. }
        )
    }
}
