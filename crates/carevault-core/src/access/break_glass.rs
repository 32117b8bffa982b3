//! Break-glass: emergency access to one patient for a limited time, and its review queue.

use super::*;
use crate::access::changes::AccessChange;

impl Vault {
    // ----- break-glass -----

    /// Opens one patient's record in an emergency for `break_glass_secs`. Needs a reason and a
    /// fresh sign-in; raises a privacy alert and a review item.
    pub async fn break_glass(
        &self,
        actor: &Actor,
        patient_id: &str,
        reason_code: &str,
        reason_text: &str,
    ) -> Result<BreakGlassView, CoreError> {
        let purpose = PurposeOfUse::EmergencyTreatment;
        let (_, allowed) =
            self.gate_patient(actor, Operation::BreakGlassOpen, purpose, AuditAction::Create, "BreakGlass", patient_id).await?;
        self.require_fresh_auth(actor, Operation::BreakGlassOpen).await?;
        let refuse = |e| self.refuse(actor, AuditAction::Create, ("BreakGlass", Some(patient_id)), e);
        let Some(code) = BreakGlassReason::parse(reason_code) else {
            return Err(refuse(bad("reason", "one of medical-emergency, covering-provider, patient-request, other")).await);
        };
        let text = match check_reason("reason_text", reason_text, code == BreakGlassReason::Other) {
            Ok(t) => t,
            Err(e) => return Err(refuse(e).await),
        };
        let now = self.clock_now();
        let id = new_id("bg");
        let row = BreakGlassRow {
            id: id.clone(),
            user_id: actor.user_id.to_string(),
            patient_id: patient_id.into(),
            reason_code: code.id().into(),
            reason_text: self.inner.sealer.seal_note("break_glass", "reason_text", &id, &text)?,
            opened_at: now,
            expires_at: now + self.inner.config.break_glass_secs * 1_000_000,
            review_state: "open".into(),
            reviewed_by: None,
            reviewed_at: None,
            review_outcome: None,
            review_note: None,
        };
        let ops = vec![
            AccessChange::InsertBreakGlass(Box::new(row.clone())).into(),
            AccessChange::InsertAlert(alert(PRIVACY, "break-glass", Some(actor.user_id.as_str()), Some(patient_id), Some(&id), now)).into(),
        ];
        let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
            .by(actor)
            .resource("BreakGlass", Some(&id))
            .patient(patient_id)
            .purpose(purpose)
            .review(&allowed);
        self.inner.writer.write(ops, vec![ev], None).await?;
        Ok(BreakGlassView::from_row(&row, None))
    }

    /// The review queue: open break-glass uses with their reasons (reading them is audited).
    pub async fn break_glass_queue(&self, actor: &Actor, state: &str) -> Result<Vec<BreakGlassView>, CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::BreakGlassQueue, purpose, &Target::Anywhere, ("BreakGlass", None)).await?;
        if !matches!(state, "open" | "closed") {
            return Err(bad("state", "open or closed"));
        }
        // Only the break-glass uses on patients of the organizations the officer reviews for.
        let orgs = actor.privileges.organizations_with(Permission::BreakGlassReview);
        let mut rows = Vec::new();
        for r in self.inner.store.break_glass_by_state(state, 500).await? {
            if actor.is_system() || self.patient_org(&r.patient_id).await?.is_some_and(|o| orgs.contains(&o)) {
                rows.push(r);
            }
        }
        let ids: Vec<String> = rows.iter().map(|r| r.patient_id.clone()).collect();
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success)
            .by(actor)
            .resource("BreakGlass", None)
            .purpose(purpose)
            .disclosing(&ids);
        let receipt = self.inner.writer.append(d).await?;
        let mut out = Vec::with_capacity(rows.len());
        let now = self.clock_now();
        let names = self.usernames().await?;
        for r in rows {
            let text = self
                .inner
                .sealer
                .open_note(&self.inner.store, now, &receipt, &r.patient_id, ("break_glass", "reason_text", &r.id), &r.reason_text)
                .await?;
            let mut v = BreakGlassView::from_row(&r, Some(text));
            v.username = names.get(&r.user_id).cloned();
            out.push(v);
        }
        Ok(out)
    }

    /// Closes a review with an outcome and a note. Nobody reviews their own break-glass.
    pub async fn close_break_glass_review(&self, actor: &Actor, id: &str, outcome: &str, note: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, Operation::BreakGlassClose, purpose, &Target::Anywhere, ("BreakGlass", Some(id))).await?;
        let refuse = |e| self.refuse(actor, AuditAction::Update, ("BreakGlass", Some(id)), e);
        let Some(row) = self.inner.store.break_glass(id).await? else {
            return Err(refuse(CoreError::NotFound { resource: "break-glass review".into() }).await);
        };
        let org = self.patient_org(&row.patient_id).await?.unwrap_or_default();
        self.gate(actor, Operation::BreakGlassClose, purpose, &Target::Organization(&org), ("BreakGlass", Some(id))).await?;
        if row.user_id == actor.user_id.as_str() {
            return Err(refuse(CoreError::Refused {
                reason: "self-review",
                message: "another officer must review your own break-glass".into(),
            })
            .await);
        }
        let Some(outcome) = ReviewOutcome::parse(outcome) else {
            return Err(refuse(bad("outcome", "appropriate, inappropriate or inconclusive")).await);
        };
        let note = match check_reason("note", note, outcome != ReviewOutcome::Appropriate) {
            Ok(n) => n,
            Err(e) => return Err(refuse(e).await),
        };
        let now = self.clock_now();
        let sealed = self.inner.sealer.seal_note("break_glass", "review_note", id, &note)?;
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("BreakGlass", Some(id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource("BreakGlass", Some(id)).purpose(purpose);
        let op =
            AccessChange::CloseReview { id: id.into(), by: actor.audit_name(), now, outcome: outcome.id().into(), note: sealed }.into();
        self.inner.writer.write(vec![op], vec![ev], Some(fail)).await?;
        Ok(())
    }
}
