//! The synthetic demo clinic: bannered demo accounts and made-up patients, only in a data
//! folder marked as demo.

use carevault_domain::{PurposeOfUse, Role};

use crate::actor::Actor;
use crate::error::CoreError;
use crate::vault::{InstanceKind, Vault};
use crate::NewUser;

/// A demo account with its password (demo folders only).
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub user: NewUser,
    pub password: String,
}

const FAMILIES: &[&str] = &["Testperson", "Demoson", "Fakeworth", "Sampleton", "Mockridge", "Placeholt", "Examplar", "Fictiva"];
const GENDERS: &[&str] = &["female", "male", "other", "unknown"];
const GIVENS: &[&str] = &["Ada", "Bram", "Cleo", "Dario", "Esme", "Fynn", "Greta", "Hugo", "Ines", "Jonah"];

impl Vault {
    /// Creates the demo accounts and synthetic patients. Refused outside a demo folder.
    pub async fn seed_demo_clinic(&self) -> Result<Vec<DemoAccount>, CoreError> {
        if self.inner.kind != InstanceKind::Demo {
            return Err(CoreError::Refused { reason: "not-demo", message: "demo data goes only into a demo instance".into() });
        }
        let mut out = Vec::new();
        let system = Actor::system("demo-seed");
        let accounts = [
            ("demo.frontdesk", Role::FrontDesk),
            ("demo.clinician", Role::Physician),
            ("demo.nurse", Role::Nurse),
            ("demo.biller", Role::Biller),
            ("demo.admin", Role::PracticeAdmin),
            ("demo.privacy", Role::PrivacyOfficer),
            ("demo.security", Role::SecurityOfficer),
            ("demo.auditor", Role::Auditor),
        ];
        for (name, role) in accounts {
            let password = format!("demo-{}-{}", name.replace("demo.", ""), hex::encode(carevault_crypto::random_bytes::<4>()));
            let user = self.add_user_inner(&system, name, role.id(), None, &password, true).await?;
            out.push(DemoAccount { user, password });
        }
        let clinician = out.get(1).map(|a| a.user.id.clone()).unwrap_or_default();
        for i in 0..24usize {
            let family = FAMILIES[i % FAMILIES.len()];
            let given = GIVENS[(i * 7) % GIVENS.len()];
            let body = serde_json::json!({
                "resourceType": "Patient",
                "active": true,
                "name": [{"use": "official", "family": family, "given": [given]}],
                "gender": GENDERS[i % 4],
                "birthDate": format!("{}-{:02}-{:02}", 1940 + (i * 3) % 80, 1 + i % 12, 1 + (i * 5) % 28),
                "telecom": [{"system": "phone", "value": format!("555-01{:02}", i), "use": "mobile"}],
                "address": [{"line": [format!("{} Demo Street", 10 + i)], "city": "Exampleville", "postalCode": "00000", "country": "ZZ"}]
            });
            let p = self.create_patient_inner(&system, PurposeOfUse::SystemAdministration, body.to_string().as_bytes(), true).await?;
            // The demo physician looks after the first eight; one of them is a flagged VIP.
            if i < 8 {
                let purpose = PurposeOfUse::SystemAdministration;
                self.add_care_team_member(&system, purpose, p.id.as_str(), &clinician, "assigned-provider", None).await?;
            }
            if i == 3 {
                self.set_patient_flags(&system, PurposeOfUse::SystemAdministration, p.id.as_str(), &["vip".to_string()]).await?;
            }
        }
        Ok(out)
    }
}
