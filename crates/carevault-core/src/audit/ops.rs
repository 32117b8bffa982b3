//! The changes a job can make, applied by the audit writer inside its transaction and the job's
//! savepoint: every statement that changes data runs from here. Each op says whether it waits
//! for free space (below the reserve only sign-in upkeep, alerts, break-glass and deactivation
//! proceed) and how a store error maps to a domain error (a conflict, a replay) that fails only
//! its job.

use carevault_store::{
    AlertRow, AllergyRow, AppointmentRow, AppointmentTypeRow, AssignmentRow, AvailabilityRow, Booked, BreakGlassRow, CareRelationshipRow,
    CeremonyRow, ConsentTemplateRow, CustomRoleRow, GrantRow, NewSession, PasskeyRow, PatientVersionRow, PractitionerRoleRow,
    PractitionerRow, RecordRow, StoreError, UnitKind, UnitRow, UserRow, WaitlistRow, WriteTx,
};

use crate::error::CoreError;

/// A change to make in the same transaction as its audit records.
pub(crate) enum Op {
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
    InsertPatient {
        row: Box<PatientVersionRow>,
        tokens: Vec<(i64, Vec<u8>)>,
        is_demo: bool,
        organization_id: String,
    },
    UpdatePatient {
        row: Box<PatientVersionRow>,
        expected: i64,
        tokens: Vec<(i64, Vec<u8>)>,
        mrn_token: (i64, Vec<u8>),
    },
    InsertDataKey {
        version: i64,
        wrapped: Vec<u8>,
        now: i64,
    },
    ResealPatient {
        row: Box<PatientVersionRow>,
        old_key_version: i64,
    },
    ResealUser {
        user_id: String,
        secret: Vec<u8>,
        key_version: i64,
        old_key_version: i64,
    },
    InsertUnit {
        kind: UnitKind,
        row: UnitRow,
    },
    UpsertCustomRole(CustomRoleRow),
    InsertAssignment(AssignmentRow),
    DeleteAssignment {
        id: String,
    },
    /// Fails the job if the organization would be left without an active practice admin.
    GuardLastAdmin {
        organization_id: String,
        now: i64,
    },
    InsertGrant(Box<GrantRow>),
    RevokeGrant {
        id: String,
        by: String,
        now: i64,
    },
    SetPlacement {
        patient_id: String,
        location_id: Option<String>,
        department_id: Option<String>,
    },
    ReplaceFlags {
        patient_id: String,
        categories: Vec<String>,
        by: String,
        now: i64,
    },
    UpsertCare(CareRelationshipRow),
    EndCare {
        patient_id: String,
        user_id: String,
        relation: String,
        now: i64,
    },
    InsertBreakGlass(Box<BreakGlassRow>),
    CloseReview {
        id: String,
        by: String,
        now: i64,
        outcome: String,
        note: Vec<u8>,
    },
    InsertAlert(AlertRow),
    PutInvitation(carevault_store::InvitationRow),
    /// Uses up a live invitation; the job fails when it is not (a second use, a race).
    TakeInvitation {
        user_id: String,
        code_hash: Vec<u8>,
        now: i64,
    },
    InsertApproval(Box<carevault_store::ApprovalRow>),
    /// Decides a pending request; the job fails when it was decided meanwhile.
    DecideApproval {
        id: String,
        state: String,
        by: String,
        now: i64,
    },
    /// Sets a `store_meta` value (one-time upgrades record that they are complete).
    SetMeta {
        key: String,
        value: String,
    },
    CloseAlert {
        id: String,
        category: String,
        by: String,
        now: i64,
    },
    SetUserActive {
        user_id: String,
        active: bool,
        now: i64,
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
    InsertAllergy(Box<AllergyRow>),
    ResealAllergy {
        row: Box<AllergyRow>,
        old_key_version: i64,
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
    InsertPractitioner {
        row: Box<PractitionerRow>,
        roles: Vec<PractitionerRoleRow>,
    },
    ReplaceAvailability {
        practitioner_id: String,
        location_id: String,
        rows: Vec<AvailabilityRow>,
    },
    /// Fails the job with a conflict when a live appointment of the practitioner overlaps.
    BookAppointment {
        row: Box<AppointmentRow>,
        allow_overlap: bool,
    },
    AppointmentStatus {
        id: String,
        from: String,
        to: String,
        reason: Option<String>,
        actor: String,
        at: i64,
    },
    NoteAppointmentHistory {
        id: String,
        from: String,
        to: String,
        reason: Option<String>,
        actor: String,
        at: i64,
    },
    InsertClosure {
        id: String,
        location_id: String,
        practitioner_id: Option<String>,
        kind: String,
        start: i64,
        end: i64,
        now: i64,
    },
    /// Consumes a WebAuthn ceremony: a second use fails the job.
    TakeCeremony {
        id: String,
    },
    InsertRecord(Box<RecordRow>),
    /// Fails the job with a conflict when the record is no longer at that version and status.
    UpdateRecord {
        row: Box<RecordRow>,
        expected_version: i64,
        expected_status: String,
    },
    ResealRecord {
        id: String,
        version: i64,
        key_version: i64,
        body: Vec<u8>,
    },
    InsertConsentTemplate(Box<ConsentTemplateRow>),
    UpsertIcd10 {
        codes: Vec<(String, String, bool)>,
        release: String,
    },
    InsertAppointmentType(Box<AppointmentTypeRow>),
    InsertWaitlist(Box<WaitlistRow>),
    /// Fails the job with a conflict when the entry is no longer waiting.
    OfferWaitlist {
        id: String,
        span: (i64, i64),
        now: i64,
    },
    /// Fails the job with a conflict when the entry's status is no longer `from`.
    SetWaitlistStatus {
        id: String,
        from: &'static str,
        to: &'static str,
        appointment_id: Option<String>,
    },
}

impl Op {
    /// Whether the op is refused while free space is below the reserve. Sign-in and session
    /// upkeep, alerts, break-glass and deactivation stay possible (they are small, and a clinic
    /// must still be able to read a chart, raise an alarm and lock an account); every other
    /// change waits until space is freed.
    pub(crate) fn waits_for_space(&self) -> bool {
        !matches!(
            self,
            Op::AdvanceTotp { .. }
                | Op::SetLoginFailures { .. }
                | Op::InsertSession(_)
                | Op::DeleteSession { .. }
                | Op::TouchSession { .. }
                | Op::SessionMfaFailed { .. }
                | Op::DeleteUserSessions { .. }
                | Op::DeleteOtherSessions { .. }
                | Op::DeleteSessionByPublicId { .. }
                | Op::SetLastLogin { .. }
                | Op::UseRecoveryCode { .. }
                | Op::SetSessionAuthenticated { .. }
                | Op::PasskeyUsed { .. }
                | Op::InsertCeremony(_)
                | Op::TakeCeremony { .. }
                | Op::InsertAlert(_)
                | Op::InsertBreakGlass(_)
                | Op::SetUserActive { .. }
        )
    }
}

pub(crate) enum OpFailure {
    /// The job's own fault (conflict, replay): its savepoint is rolled back, the batch goes on.
    Domain(CoreError),
    /// The database failed: the job's savepoint is rolled back if the database still can, and
    /// only that job fails; otherwise the whole batch fails.
    Store(StoreError),
}

impl From<StoreError> for OpFailure {
    fn from(e: StoreError) -> Self {
        OpFailure::Store(e)
    }
}

/// A statement that had to change exactly one row: otherwise the thing is gone (or was never there).
fn found(changed: bool, what: &str) -> Result<(), OpFailure> {
    if changed {
        Ok(())
    } else {
        Err(OpFailure::Domain(CoreError::NotFound { resource: what.to_string() }))
    }
}

pub(crate) async fn apply(tx: &mut WriteTx, op: &Op) -> Result<(), OpFailure> {
    match op {
        Op::InsertUser(u) => tx.insert_user(u).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a user with this username already exists".into())),
            other => OpFailure::Store(other),
        }),
        Op::AdvanceTotp { user_id, step } => {
            if tx.advance_totp_step(user_id, *step).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::InvalidCode))
            }
        }
        Op::SetLoginFailures { user_id, failed, locked_until } => Ok(tx.set_login_failures(user_id, *failed, *locked_until).await?),
        Op::InsertSession(s) => Ok(tx.insert_session(s).await?),
        Op::DeleteSession { token_hash } => {
            tx.delete_session(token_hash).await?;
            Ok(())
        }
        Op::TouchSession { token_hash, now } => Ok(tx.touch_session(token_hash, *now).await?),
        Op::SessionMfaFailed { token_hash, max } => {
            if tx.session_mfa_failed(token_hash).await? >= *max {
                tx.delete_session(token_hash).await?;
            }
            Ok(())
        }
        Op::InsertPatient { row, tokens, is_demo, organization_id } => {
            tx.insert_patient(&row.patient_id, organization_id, row.recorded_at, *is_demo).await?;
            tx.insert_patient_version(row).await?;
            tx.replace_patient_index(&row.patient_id, tokens).await.map_err(|e| match e {
                StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("mrn".into())),
                other => OpFailure::Store(other),
            })
        }
        Op::UpdatePatient { row, expected, tokens, mrn_token } => {
            let id = &row.patient_id;
            let Some(current) = tx.current_patient_version(id).await? else {
                return Err(OpFailure::Domain(CoreError::NotFound { resource: format!("Patient/{id}") }));
            };
            if current != *expected {
                return Err(OpFailure::Domain(CoreError::VersionConflict { expected: *expected, current }));
            }
            if !tx.patient_has_token(id, mrn_token.0, &mrn_token.1).await? {
                return Err(OpFailure::Domain(CoreError::Invalid(carevault_domain::InputError::value(
                    "Patient.identifier",
                    "the medical record number assigned by carevault must be kept unchanged",
                ))));
            }
            if !tx.bump_patient_version(id, *expected, row.recorded_at).await? {
                return Err(OpFailure::Domain(CoreError::VersionConflict { expected: *expected, current }));
            }
            tx.insert_patient_version(row).await?;
            tx.replace_patient_index(id, tokens).await.map_err(|e| match e {
                StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("mrn".into())),
                other => OpFailure::Store(other),
            })
        }
        Op::InsertDataKey { version, wrapped, now } => tx
            .insert_key(&carevault_store::KeyRow {
                purpose: crate::keys::DATA.into(),
                version: *version,
                wrapped: wrapped.clone(),
                public_key: None,
                created_at: *now,
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a key rotation is already running elsewhere".into())),
                other => OpFailure::Store(other),
            }),
        Op::ResealPatient { row, old_key_version } => {
            // false: changed concurrently; the rotation loop picks it up again if still old.
            tx.reseal_patient_version(row, *old_key_version).await?;
            Ok(())
        }
        Op::ResealUser { user_id, secret, key_version, old_key_version } => {
            tx.reseal_user(user_id, *old_key_version, secret, *key_version).await?;
            Ok(())
        }
        Op::InsertUnit { kind, row } => tx.insert_unit(*kind, row).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a unit with this name already exists there".into())),
            other => OpFailure::Store(other),
        }),
        Op::UpsertCustomRole(r) => Ok(tx.upsert_custom_role(r).await?),
        Op::InsertAssignment(a) => Ok(tx.insert_assignment(a).await?),
        Op::DeleteAssignment { id } => found(tx.delete_assignment(id).await?, "assignment"),
        Op::GuardLastAdmin { organization_id, now } => {
            if tx.count_live_assignments(carevault_domain::Role::PracticeAdmin.id(), organization_id, *now).await? == 0 {
                Err(OpFailure::Domain(CoreError::Refused {
                    reason: "last-admin",
                    message: "the organization would be left without an active practice admin".into(),
                }))
            } else {
                Ok(())
            }
        }
        Op::InsertGrant(g) => Ok(tx.insert_grant(g).await?),
        Op::RevokeGrant { id, by, now } => found(tx.revoke_grant(id, by, *now).await?, "active grant"),
        Op::SetPlacement { patient_id, location_id, department_id } => {
            found(tx.set_patient_placement(patient_id, location_id.as_deref(), department_id.as_deref()).await?, "patient")
        }
        Op::ReplaceFlags { patient_id, categories, by, now } => Ok(tx.replace_patient_flags(patient_id, categories, by, *now).await?),
        Op::UpsertCare(c) => Ok(tx.upsert_care_relationship(c).await?),
        Op::EndCare { patient_id, user_id, relation, now } => {
            found(tx.end_care_relationship(patient_id, user_id, relation, *now).await?, "current care relationship")
        }
        Op::InsertBreakGlass(b) => Ok(tx.insert_break_glass(b).await?),
        Op::CloseReview { id, by, now, outcome, note } => {
            found(tx.close_break_glass_review(id, by, *now, outcome, note).await?, "open review")
        }
        Op::InsertAlert(a) => Ok(tx.insert_alert(a).await?),
        Op::SetMeta { key, value } => Ok(tx.set_meta(key, value).await?),
        Op::PutInvitation(i) => Ok(tx.put_invitation(i).await?),
        Op::TakeInvitation { user_id, code_hash, now } => {
            if tx.take_invitation(user_id, code_hash, *now).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Refused {
                    reason: "invitation",
                    message: "the invitation was already used or has expired".into(),
                }))
            }
        }
        Op::InsertApproval(a) => Ok(tx.insert_approval(a).await?),
        Op::DecideApproval { id, state, by, now } => {
            if tx.decide_approval(id, state, by, *now).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict("the request was decided meanwhile".into())))
            }
        }
        Op::CloseAlert { id, category, by, now } => found(tx.close_alert(id, category, by, *now).await?, "open alert"),
        Op::SetUserActive { user_id, active, now } => {
            tx.set_user_active(user_id, *active, *now).await?;
            Ok(())
        }
        Op::DeleteUserSessions { user_id } => {
            tx.delete_user_sessions(user_id).await?;
            Ok(())
        }
        Op::DeleteOtherSessions { user_id, keep } => {
            tx.delete_other_sessions(user_id, keep).await?;
            Ok(())
        }
        Op::DeleteSessionByPublicId { user_id, public_id } => found(tx.delete_session_by_public_id(user_id, public_id).await?, "session"),
        Op::SetLastLogin { user_id, now } => Ok(tx.set_last_login(user_id, *now).await?),
        Op::SetPassword { user_id, hash, now } => Ok(tx.set_password(user_id, hash, *now).await?),
        Op::ReplaceTotp { user_id, secret, key_version } => Ok(tx.replace_totp(user_id, secret, *key_version).await?),
        Op::ReplaceRecoveryCodes { user_id, hashes, now } => Ok(tx.replace_recovery_codes(user_id, hashes, *now).await?),
        Op::UseRecoveryCode { user_id, hash, now } => {
            if tx.use_recovery_code(user_id, hash, *now).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::InvalidCode))
            }
        }
        Op::SetSessionAuthenticated { token_hash, now } => found(tx.set_session_authenticated(token_hash, *now).await?, "session"),
        Op::InsertAllergy(a) => Ok(tx.insert_allergy(a).await?),
        Op::ResealAllergy { row, old_key_version } => {
            tx.reseal_allergy(row, *old_key_version).await?;
            Ok(())
        }
        Op::InsertPasskey(p) => tx.insert_passkey(p).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this authenticator is already registered".into())),
            other => OpFailure::Store(other),
        }),
        Op::RenamePasskey { user_id, id, name } => found(tx.rename_passkey(user_id, id, name).await?, "passkey"),
        Op::DeletePasskeys { user_id, id } => {
            let n = tx.delete_passkeys(user_id, id.as_deref()).await?;
            if id.is_some() {
                found(n == 1, "passkey")
            } else {
                Ok(())
            }
        }
        Op::PasskeyUsed { credential_id, passkey, now } => Ok(tx.passkey_used(credential_id, passkey.as_deref(), *now).await?),
        Op::InsertCeremony(c) => Ok(tx.insert_ceremony(c).await?),
        Op::ReplaceAvailability { practitioner_id, location_id, rows } => {
            Ok(tx.replace_availability(practitioner_id, location_id, rows).await?)
        }
        Op::NoteAppointmentHistory { id, from, to, reason, actor, at } => {
            Ok(tx.note_appointment_history(id, from, to, reason.as_deref(), actor, *at).await?)
        }
        Op::InsertClosure { id, location_id, practitioner_id, kind, start, end, now } => {
            Ok(tx.insert_closure(id, location_id, practitioner_id.as_deref(), kind, *start, *end, *now).await?)
        }
        Op::AppointmentStatus { id, from, to, reason, actor, at } => {
            if tx.change_appointment_status(id, from, to, reason.as_deref(), actor, *at).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict("the appointment changed meanwhile; reload it".into())))
            }
        }
        Op::BookAppointment { row, allow_overlap } => match tx.book_appointment(row, *allow_overlap).await? {
            Booked::Yes => Ok(()),
            Booked::PractitionerBusy => Err(OpFailure::Domain(CoreError::Conflict("the slot is already booked".into()))),
            Booked::RoomBusy => Err(OpFailure::Domain(CoreError::Conflict("the room is already booked at that time".into()))),
        },
        Op::InsertAppointmentType(t) => tx.insert_appointment_type(t).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this organization already has a type with that code".into())),
            other => OpFailure::Store(other),
        }),
        Op::InsertWaitlist(w) => Ok(tx.insert_waitlist(w).await?),
        Op::InsertRecord(r) => Ok(tx.insert_record(r).await?),
        Op::UpdateRecord { row, expected_version, expected_status } => {
            if tx.update_record(row, *expected_version, expected_status).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict("the record changed meanwhile; reload it".into())))
            }
        }
        Op::ResealRecord { id, version, key_version, body } => {
            tx.reseal_record(id, *version, *key_version, body).await?;
            Ok(())
        }
        Op::InsertConsentTemplate(t) => tx.insert_consent_template(t).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this template version exists already".into())),
            other => OpFailure::Store(other),
        }),
        Op::UpsertIcd10 { codes, release } => Ok(tx.upsert_icd10(codes, release).await?),
        Op::OfferWaitlist { id, span, now } => {
            if tx.offer_waitlist(id, *span, *now).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict("the waitlist changed meanwhile; try again".into())))
            }
        }
        Op::SetWaitlistStatus { id, from, to, appointment_id } => {
            if tx.set_waitlist_status(id, from, to, appointment_id.as_deref()).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict(format!("the waitlist entry is no longer {from}"))))
            }
        }
        Op::InsertPractitioner { row, roles } => tx.insert_practitioner(row, roles).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                OpFailure::Domain(CoreError::Conflict("this NPI or account is already registered as a practitioner".into()))
            }
            other => OpFailure::Store(other),
        }),
        Op::TakeCeremony { id } => {
            if tx.take_ceremony(id).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::InvalidCode))
            }
        }
    }
}
