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
            return Err(CoreError::Forbidden { permission: "demo.seed", purpose: "HSYSADMIN" });
        }
        let mut out = Vec::new();
        for (name, role) in [("demo.frontdesk", Role::FrontDesk), ("demo.clinician", Role::Clinician), ("demo.admin", Role::Admin)] {
            let password = format!("demo-{}-{}", name.replace("demo.", ""), hex::encode(carevault_crypto::random_bytes::<4>()));
            let user = self.add_user_inner(name, role, &password, true).await?;
            out.push(DemoAccount { user, password });
        }
        let system = Actor::system("demo-seed");
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
            self.create_patient_inner(&system, PurposeOfUse::SystemAdministration, body.to_string().as_bytes(), true).await?;
        }
        Ok(out)
    }
}
