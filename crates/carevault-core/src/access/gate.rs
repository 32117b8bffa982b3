//! The gate: every operation is checked here (permission, scope, purpose, sensitive flags,
//! care relationship, break-glass), refusals audited before they are returned, and the
//! step-up freshness of privileged changes.

use super::*;

impl Vault {
    pub(super) fn clock_now(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    /// Authorizes one operation. A refusal is audited (with the reason) before it is returned;
    /// an actor held past its session's absolute limit is refused here too.
    pub(crate) async fn gate(
        &self,
        actor: &Actor,
        op: Operation,
        purpose: PurposeOfUse,
        target: &Target<'_>,
        resource: (&str, Option<&str>),
    ) -> Result<Allowed, CoreError> {
        let now = self.clock_now();
        let checked =
            if now >= actor.session_expires_at { Err(CoreError::SessionExpired) } else { authz::check(actor, op, purpose, target) };
        match checked {
            Ok(a) => Ok(a),
            Err(e) => {
                let patient = match target {
                    Target::Patient(f) => Some(f.id.clone()),
                    _ => None,
                };
                let mut d =
                    Draft::new(now, AuditAction::AccessDenied, Outcome::Denied).by(actor).resource(resource.0, resource.1).purpose(purpose);
                d.patient_id = patient;
                let reason = match &e {
                    CoreError::Forbidden { reason, .. } => *reason,
                    _ => "session-expired",
                };
                let details = self
                    .inner
                    .sealer
                    .seal_details(&d.event_id, serde_json::json!({"operation": op.id(), "reason": reason}).to_string().as_bytes())?;
                self.inner.writer.append(d.details(details)).await?;
                Err(e)
            }
        }
    }

    /// The facts about a patient the access decision needs, from the actor's point of view.
    /// `None` when there is no such patient (or the id is malformed). The care relationship is
    /// looked up only when `clinical`; break-glass is left for [`Self::with_break_glass`].
    /// `read` is the patient's access row when the caller read it already (`Some(None)`: it
    /// read that there is no such patient).
    async fn patient_facts_from(
        &self,
        actor: &Actor,
        patient_id: &str,
        clinical: bool,
        read: Option<Option<carevault_store::PatientAccessRow>>,
    ) -> Result<Option<PatientFacts>, CoreError> {
        if carevault_domain::PatientId::parse(patient_id).is_err() {
            return Ok(None);
        }
        let row = match read {
            Some(r) => r,
            None => self.inner.store.patient_access(patient_id).await?,
        };
        let Some(row) = row else { return Ok(None) };
        let relationship = clinical
            && !actor.is_system()
            && self
                .inner
                .store
                .has_care_relationship(
                    patient_id,
                    actor.user_id.as_str(),
                    self.clock_now(),
                    self.inner.config.care_window_days.max(0) * 86_400_000_000,
                )
                .await?;
        Ok(Some(PatientFacts {
            id: patient_id.to_string(),
            scope: row.scope,
            flags: row.flags.iter().filter_map(|f| SensitiveCategory::parse(f)).collect(),
            relationship,
            break_glass: false,
        }))
    }

    /// Adds whether the actor has an open break-glass on the patient (asked only when the
    /// decision without it is a refusal, so ordinary reads skip the lookup).
    pub(super) async fn with_break_glass(&self, actor: &Actor, mut facts: PatientFacts) -> Result<PatientFacts, CoreError> {
        if !actor.is_system() {
            facts.break_glass = self.inner.store.active_break_glass(actor.user_id.as_str(), &facts.id, self.clock_now()).await?.is_some();
        }
        Ok(facts)
    }

    /// Gate for an operation on one patient: unknown patients are audited as not found.
    pub(crate) async fn gate_patient(
        &self,
        actor: &Actor,
        op: Operation,
        purpose: PurposeOfUse,
        action: AuditAction,
        resource_type: &str,
        patient_id: &str,
    ) -> Result<(PatientFacts, Allowed), CoreError> {
        self.gate_patient_from(actor, op, purpose, action, resource_type, patient_id, None).await
    }

    /// [`Self::gate_patient`] on the patient's access row the caller read already (in the same
    /// statement as the data: one round trip less). The decision is the same; nothing is
    /// opened before it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn gate_patient_from(
        &self,
        actor: &Actor,
        op: Operation,
        purpose: PurposeOfUse,
        action: AuditAction,
        resource_type: &str,
        patient_id: &str,
        read: Option<Option<carevault_store::PatientAccessRow>>,
    ) -> Result<(PatientFacts, Allowed), CoreError> {
        // The permission is checked before existence, so probing ids tells nothing to someone
        // without it.
        self.gate(actor, op, purpose, &Target::Anywhere, (resource_type, Some(patient_id))).await.map(|_| ())?;
        let clinical = op.class() == carevault_domain::DataClass::Clinical;
        let Some(facts) = self.patient_facts_from(actor, patient_id, clinical, read).await? else {
            let d = Draft::new(self.clock_now(), action, Outcome::NotFound)
                .by(actor)
                .resource(resource_type, Some(patient_id))
                .purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("Patient/{patient_id}") });
        };
        if let Ok(allowed) = authz::check(actor, op, purpose, &Target::Patient(&facts)) {
            if !allowed.via_break_glass {
                return Ok((facts, allowed));
            }
        }
        let facts = self.with_break_glass(actor, facts).await?;
        let allowed = self.gate(actor, op, purpose, &Target::Patient(&facts), (resource_type, Some(patient_id))).await?;
        Ok((facts, allowed))
    }

    /// Step-up: the session must have proven password and second factor recently.
    pub(crate) async fn require_fresh_auth(&self, actor: &Actor, op: Operation) -> Result<(), CoreError> {
        if actor.is_system() {
            return Ok(());
        }
        let now = self.clock_now();
        if now - actor.authenticated_at > self.inner.config.step_up_secs * 1_000_000 {
            let d = Draft::new(now, AuditAction::AccessDenied, Outcome::Denied)
                .by(actor)
                .resource("Session", actor.session_public_id.as_deref());
            let details = self
                .inner
                .sealer
                .seal_details(&d.event_id, serde_json::json!({"operation": op.id(), "reason": "reauth-required"}).to_string().as_bytes())?;
            self.inner.writer.append(d.details(details)).await?;
            return Err(CoreError::ReauthRequired);
        }
        Ok(())
    }

    /// Audits a refusal that is not an authorization decision (self-elevation, bad input).
    pub(crate) async fn refuse(&self, actor: &Actor, action: AuditAction, resource: (&str, Option<&str>), e: CoreError) -> CoreError {
        let outcome = e.outcome();
        let d = Draft::new(self.clock_now(), action, outcome).by(actor).resource(resource.0, resource.1);
        let details = serde_json::json!({"code": e.code(), "reason": match &e { CoreError::Refused { reason, .. } => *reason, _ => "" }});
        match self.inner.sealer.seal_details(&d.event_id, details.to_string().as_bytes()) {
            Ok(sealed) => match self.inner.writer.append(d.details(sealed)).await {
                Ok(_) => e,
                Err(w) => w,
            },
            Err(s) => s,
        }
    }

    pub(super) async fn user_in_scope(
        &self,
        actor: &Actor,
        op: Operation,
        purpose: PurposeOfUse,
        user_id: &str,
    ) -> Result<UserRow, CoreError> {
        let user = if carevault_domain::UserId::parse(user_id).is_ok() { self.inner.store.user_by_id(user_id).await? } else { None };
        let Some(user) = user else {
            self.gate(actor, op, purpose, &Target::Anywhere, ("User", Some(user_id))).await?;
            let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::NotFound).by(actor).resource("User", Some(user_id));
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("User/{user_id}") });
        };
        self.gate(actor, op, purpose, &Target::Organization(&user.organization_id), ("User", Some(user_id))).await?;
        Ok(user)
    }

    pub(crate) fn admin_purpose(actor: &Actor) -> PurposeOfUse {
        if actor.is_system() || actor.privileges.purposes().contains(&PurposeOfUse::SystemAdministration) {
            PurposeOfUse::SystemAdministration
        } else {
            PurposeOfUse::Operations
        }
    }
}
