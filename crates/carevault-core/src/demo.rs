//! The synthetic demo clinic: bannered demo accounts and made-up patients, only in a data
//! folder marked as demo.

use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{local_date, local_instant, WeeklyWindow};
use carevault_domain::{PurposeOfUse, Role};

use crate::actor::Actor;
use crate::error::CoreError;
use crate::vault::{InstanceKind, Vault};
use crate::{BookRequest, NewUser, PractitionerRequest};

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
    pub(crate) async fn seed_demo_clinic(&self) -> Result<Vec<DemoAccount>, CoreError> {
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
            let user = self.add_user_inner(&system, name, role.id(), None, &password, true, |_| vec![]).await?;
            out.push(DemoAccount { user, password });
        }
        let clinician = out.get(1).map(|a| a.user.id.clone()).unwrap_or_default();
        let mut my_patients = Vec::new();
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
                my_patients.push(p.id.to_string());
                let purpose = PurposeOfUse::SystemAdministration;
                self.add_care_team_member(&system, purpose, p.id.as_str(), &clinician, "assigned-provider", None).await?;
            }
            if i == 3 {
                self.set_patient_flags(&system, PurposeOfUse::SystemAdministration, p.id.as_str(), &["vip".to_string()]).await?;
            }
        }
        let nurse = out.get(2).map(|a| a.user.id.clone()).unwrap_or_default();
        self.seed_demo_practice(&system, &clinician, &nurse, &my_patients).await?;
        Ok(out)
    }

    /// The demo practice: a location in America/Chicago with two rooms, the demo physician and
    /// nurse as practitioners available every day 07:00–19:00 local time, three appointment
    /// types, and a few appointments today and tomorrow for the physician's patients (times
    /// already past are skipped, so seeding works at any hour).
    async fn seed_demo_practice(&self, system: &Actor, clinician: &str, nurse: &str, patients: &[String]) -> Result<(), CoreError> {
        let org = "default";
        let tz_name = "America/Chicago";
        let existing = self.units().await?.into_iter().find(|u| u.kind == "location" && u.organization_id.as_deref() == Some(org));
        let location = match existing {
            Some(u) => u.id,
            None => self.add_unit("location", "Demo Clinic Main Street", Some(org), None, Some(tz_name)).await?,
        };
        let mut rooms = Vec::new();
        for name in ["Exam Room 1", "Exam Room 2"] {
            rooms.push(self.add_unit("room", name, Some(org), Some(&location), None).await?);
        }
        let people =
            [("1245319599", "Demoson", "Dana", "Family Medicine", clinician), ("1987654328", "Sampleton", "Noor", "Nursing", nurse)];
        let mut practitioners = Vec::new();
        for (npi, family, given, specialty, user) in people {
            let req = PractitionerRequest {
                npi: npi.into(),
                family: family.into(),
                given: given.into(),
                organization_id: org.into(),
                location_ids: vec![location.clone()],
                specialty: Some(specialty.into()),
                user_id: Some(user.to_string()).filter(|u| !u.is_empty()),
            };
            let p = self.add_practitioner(system, &req).await?;
            let windows: Vec<WeeklyWindow> =
                (1..=7).map(|d| WeeklyWindow { weekday: d, start_minute: 7 * 60, end_minute: 19 * 60 }).collect();
            self.set_availability(system, &p.id, &location, &windows).await?;
            practitioners.push(p.id);
        }
        let mut types = Vec::new();
        for (code, name, minutes) in
            [("follow-up", "Follow-up visit", 15), ("new-patient", "New patient visit", 30), ("annual", "Annual physical", 45)]
        {
            types.push(self.add_appointment_type(system, org, code, name, minutes).await?.id);
        }
        let Some(physician) = practitioners.first() else { return Ok(()) };
        let tz = TimeZoneName::parse("time_zone", tz_name).map_err(CoreError::Invalid)?;
        let now = self.inner.clock.now_micros();
        let Some(today) = local_date(&tz, now) else { return Ok(()) };
        let tomorrow = today.tomorrow().map_err(|_| CoreError::Internal("date out of range".into()))?;
        // (day, local minute, type index): 15-min follow-ups and 30-min new-patient visits.
        let plan = [
            (today, 9 * 60, 0usize),
            (today, 10 * 60, 1),
            (today, 11 * 60 + 30, 0),
            (today, 14 * 60, 1),
            (today, 16 * 60, 0),
            (tomorrow, 9 * 60, 1),
            (tomorrow, 10 * 60 + 30, 0),
            (tomorrow, 13 * 60, 1),
        ];
        for (k, (day, minute, ty)) in plan.into_iter().enumerate() {
            let Some(start) = local_instant(&tz, day, minute).filter(|s| *s > now + 60_000_000) else { continue };
            let (Some(patient), Some(type_id), Some(room)) = (patients.get(k % patients.len().max(1)), types.get(ty), rooms.get(k % 2))
            else {
                continue;
            };
            let req = BookRequest {
                patient_id: patient.clone(),
                practitioner_id: physician.clone(),
                location_id: location.clone(),
                start,
                minutes: None,
                type_id: Some(type_id.clone()),
                room_id: Some(room.clone()),
            };
            self.book(system, PurposeOfUse::SystemAdministration, &req, false).await?;
        }
        Ok(())
    }
}
