//! Care relationships (care teams), a patient's placement, and sensitive-record flags.

use super::*;
use crate::access::changes::AccessChange;

impl Vault {
    // ----- care relationships, placement, flags -----

    /// A patient's care team (current and past memberships).
    pub async fn care_team(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<CareTeamMember>, CoreError> {
        let (_, allowed) = self.gate_patient(actor, Operation::CareTeamList, purpose, AuditAction::Read, "CareTeam", patient_id).await?;
        let now = self.clock_now();
        let d = Draft::new(now, AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource("CareTeam", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.append(d).await?;
        Ok(self
            .inner
            .store
            .care_relationships(patient_id)
            .await?
            .into_iter()
            .map(|c| CareTeamMember {
                active: c.starts_at <= now && c.ends_at.is_none_or(|e| e > now),
                user_id: c.user_id,
                relation: c.relation,
                starts_at: c.starts_at,
                ends_at: c.ends_at,
            })
            .collect())
    }

    /// Adds `user_id` to a patient's care team (`relation`: `assigned-provider` or `care-team`),
    /// optionally until `ends_at` (Unix seconds).
    pub async fn add_care_team_member(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        user_id: &str,
        relation: &str,
        ends_at: Option<i64>,
    ) -> Result<(), CoreError> {
        let (facts, allowed) =
            self.gate_patient(actor, Operation::CareTeamAdd, purpose, AuditAction::Create, "CareTeam", patient_id).await?;
        let now = self.clock_now();
        let refuse = |e| self.refuse(actor, AuditAction::Create, ("CareTeam", Some(patient_id)), e);
        if !matches!(relation, "assigned-provider" | "care-team") {
            return Err(refuse(bad("relation", "assigned-provider or care-team")).await);
        }
        // A relationship opens clinical data: nobody creates their own (break-glass is the
        // audited, reviewed way in).
        if !actor.is_system() && user_id == actor.user_id.as_str() {
            return Err(refuse(CoreError::Refused {
                reason: "self-elevation",
                message: "you cannot add yourself to a patient's care team; ask a colleague, or use break-glass in an emergency".into(),
            })
            .await);
        }
        if let Some(e) = ends_at {
            if e.saturating_mul(1_000_000) <= now {
                return Err(refuse(bad("ends_at", "must be in the future")).await);
            }
        }
        let member = if carevault_domain::UserId::parse(user_id).is_ok() { self.inner.store.user_by_id(user_id).await? } else { None };
        match member {
            Some(u) if u.active && u.organization_id == facts.scope.organization_id => {}
            _ => return Err(refuse(CoreError::NotFound { resource: format!("active User/{user_id} of the patient's organization") }).await),
        }
        let row = CareRelationshipRow {
            patient_id: patient_id.into(),
            user_id: user_id.into(),
            relation: relation.into(),
            starts_at: now,
            ends_at: ends_at.map(|e| e.saturating_mul(1_000_000)),
            created_by: actor.audit_name(),
        };
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource("CareTeam", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.write(vec![AccessChange::UpsertCare(row).into()], vec![ev], None).await?;
        Ok(())
    }

    pub async fn end_care_team_member(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        user_id: &str,
        relation: &str,
    ) -> Result<(), CoreError> {
        let (_, allowed) = self.gate_patient(actor, Operation::CareTeamEnd, purpose, AuditAction::Update, "CareTeam", patient_id).await?;
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("CareTeam", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        let fail =
            Draft::new(now, AuditAction::Update, Outcome::NotFound).by(actor).resource("CareTeam", Some(patient_id)).purpose(purpose);
        let op = AccessChange::EndCare { patient_id: patient_id.into(), user_id: user_id.into(), relation: relation.into(), now }.into();
        self.inner.writer.write(vec![op], vec![ev], Some(fail)).await?;
        Ok(())
    }

    /// Places a patient at a home location and/or department of their organization.
    pub async fn set_patient_placement(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        location_id: Option<&str>,
        department_id: Option<&str>,
    ) -> Result<(), CoreError> {
        let (facts, allowed) =
            self.gate_patient(actor, Operation::PatientPlacement, purpose, AuditAction::Update, "Patient", patient_id).await?;
        let scope = ScopeCols {
            organization_id: facts.scope.organization_id.clone(),
            location_id: location_id.map(str::to_string),
            department_id: department_id.map(str::to_string),
        };
        if let Err(e) = self.check_scope(&scope).await {
            return Err(self.refuse(actor, AuditAction::Update, ("Patient", Some(patient_id)), e).await);
        }
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("Patient", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        let op = AccessChange::SetPlacement {
            patient_id: patient_id.into(),
            location_id: scope.location_id,
            department_id: scope.department_id,
        }
        .into();
        self.inner.writer.write(vec![op], vec![ev], None).await?;
        Ok(())
    }

    /// Replaces a patient's sensitive-record flags.
    pub async fn set_patient_flags(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        patient_id: &str,
        categories: &[String],
    ) -> Result<Vec<String>, CoreError> {
        let (_, allowed) =
            self.gate_patient(actor, Operation::PatientFlagsSet, purpose, AuditAction::Update, "Patient", patient_id).await?;
        let mut cats = Vec::new();
        for (i, c) in categories.iter().enumerate() {
            match SensitiveCategory::parse(c) {
                Some(c) if !cats.contains(&c) => cats.push(c),
                Some(_) => {}
                None => {
                    let e =
                        bad(&format!("categories[{i}]"), "unknown category (vip, behavioral-health, substance-use, hiv-sti, reproductive)");
                    return Err(self.refuse(actor, AuditAction::Update, ("Patient", Some(patient_id)), e).await);
                }
            }
        }
        cats.sort();
        let ids: Vec<String> = cats.iter().map(|c| c.id().to_string()).collect();
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource("Patient", Some(patient_id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        let details = self.inner.sealer.seal_details(&ev.event_id, serde_json::json!({"flags": ids}).to_string().as_bytes())?;
        let op = AccessChange::ReplaceFlags { patient_id: patient_id.into(), categories: ids.clone(), by: actor.audit_name(), now }.into();
        self.inner.writer.write(vec![op], vec![ev.details(details)], None).await?;
        Ok(ids)
    }
}
