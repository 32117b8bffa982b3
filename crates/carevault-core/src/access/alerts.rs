//! Privacy and security alerts: listed and closed by the officers of their organization.

use super::*;
use crate::access::changes::AccessChange;

impl Vault {
    // ----- alerts and audit -----

    /// Open (or all) alerts of a category: `privacy` or `security`.
    pub async fn alerts(&self, actor: &Actor, category: &str, open_only: bool) -> Result<Vec<AlertView>, CoreError> {
        let op = match category {
            PRIVACY => Operation::PrivacyAlerts,
            SECURITY => Operation::SecurityAlerts,
            _ => return Err(bad("category", "privacy or security")),
        };
        let purpose = Self::admin_purpose(actor);
        self.gate(actor, op, purpose, &Target::Anywhere, ("Alert", None)).await?;
        let d = Draft::new(self.clock_now(), AuditAction::Read, Outcome::Success).by(actor).resource("Alert", None).purpose(purpose);
        self.inner.writer.append(d).await?;
        let perm = if op == Operation::PrivacyAlerts { Permission::AlertPrivacy } else { Permission::AlertSecurity };
        let orgs = actor.privileges.organizations_with(perm);
        let mut out: Vec<AlertView> = Vec::new();
        let names = self.usernames().await?;
        for a in self.inner.store.alerts(category, open_only, 1000).await? {
            // Alerts about a patient or an account belong to its organization; a sign-in storm
            // from an address belongs to the installation.
            let visible = actor.is_system() || self.alert_org(&a).await?.is_none_or(|o| orgs.contains(&o));
            if visible {
                let mut v: AlertView = a.into();
                v.subject_username = v.subject_user.as_ref().and_then(|u| names.get(u)).cloned();
                out.push(v);
            }
        }
        Ok(out)
    }

    pub(super) async fn patient_org(&self, patient_id: &str) -> Result<Option<String>, CoreError> {
        Ok(self.inner.store.patient_access(patient_id).await?.map(|a| a.scope.organization_id))
    }

    pub(super) async fn alert_org(&self, a: &AlertRow) -> Result<Option<String>, CoreError> {
        if let Some(p) = &a.patient_id {
            return Ok(Some(self.patient_org(p).await?.unwrap_or_default()));
        }
        if let Some(u) = &a.subject_user {
            return Ok(Some(self.inner.store.user_by_id(u).await?.map(|u| u.organization_id).unwrap_or_default()));
        }
        Ok(None)
    }

    pub async fn close_alert(&self, actor: &Actor, id: &str) -> Result<(), CoreError> {
        let purpose = Self::admin_purpose(actor);
        let alert = self.inner.store.alert(id).await?;
        let category = alert.as_ref().map(|a| a.category.clone());
        let op = match category.as_deref() {
            Some(SECURITY) => Operation::SecurityAlertClose,
            _ => Operation::PrivacyAlertClose,
        };
        self.gate(actor, op, purpose, &Target::Anywhere, ("Alert", Some(id))).await?;
        if let Some(a) = &alert {
            if let Some(org) = self.alert_org(a).await? {
                self.gate(actor, op, purpose, &Target::Organization(&org), ("Alert", Some(id))).await?;
            }
        }
        let now = self.clock_now();
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success).by(actor).resource("Alert", Some(id)).purpose(purpose);
        let fail = Draft::new(now, AuditAction::Update, Outcome::NotFound).by(actor).resource("Alert", Some(id)).purpose(purpose);
        let op =
            AccessChange::CloseAlert { id: id.into(), category: category.unwrap_or_else(|| PRIVACY.into()), by: actor.audit_name(), now }
                .into();
        self.inner.writer.write(vec![op], vec![ev], Some(fail)).await?;
        Ok(())
    }
}
