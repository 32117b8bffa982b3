//! Patient records through the chokepoint: permission and purpose, audit record, then decrypt.

mod bulk;
pub(crate) mod changes;

pub use bulk::MAX_BULK;

use carevault_domain::patient::{parse_patient, IndexKind, ParseContext, PatientData};
use carevault_domain::search::{parse_patient_query, PatientQuery};
use carevault_domain::{AuditAction, InputError, Mrn, Operation, Outcome, PatientId, Permission, PurposeOfUse, SensitiveCategory};
use carevault_store::PatientVersionRow;

use crate::access::changes::AccessChange;
use crate::actor::Actor;
use crate::audit::{Draft, Receipt};
use crate::authz::{self, PatientFacts, Target};
use crate::error::CoreError;
use crate::patients::changes::PatientChange;
use crate::read::Access;
use crate::vault::Vault;

const PATIENT: &str = "Patient";

/// Where a new patient belongs: the registering user's organization, placed where the user's
/// registration privilege applies (so a location-scoped desk still sees them).
fn home_scope(actor: &Actor) -> carevault_store::ScopeCols {
    let org = if actor.is_system() { "default".to_string() } else { actor.organization_id.clone() };
    actor
        .privileges
        .entitlements
        .iter()
        .find(|e| e.permissions.contains(&Permission::PatientCreate) && e.scope.organization_id == org && e.patient.is_none())
        .map(|e| e.scope.clone())
        .unwrap_or_else(|| carevault_store::ScopeCols { organization_id: org.clone(), ..Default::default() })
}

/// A decrypted patient version.
#[derive(Clone)]
pub struct PatientRecord {
    pub id: PatientId,
    pub version: i64,
    /// Unix microseconds.
    pub last_updated: i64,
    pub data: PatientData,
    /// Sensitive-record flags, shown as `meta.security` labels.
    pub flags: Vec<SensitiveCategory>,
}

impl std::fmt::Debug for PatientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PatientRecord({}/{})", self.id, self.version)
    }
}

impl PatientRecord {
    pub fn to_fhir(&self) -> serde_json::Value {
        let mut v = self.data.to_fhir(self.id.as_str(), self.version, &crate::format_instant(self.last_updated));
        if !self.flags.is_empty() {
            let labels: Vec<serde_json::Value> = self
                .flags
                .iter()
                .map(|f| {
                    let (code, display) = f.security_label();
                    serde_json::json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display})
                })
                .collect();
            if let Some(meta) = v.get_mut("meta").and_then(|m| m.as_object_mut()) {
                meta.insert("security".into(), serde_json::Value::Array(labels));
            }
        }
        v
    }
}

/// A record as FHIR JSON, serialized straight to the output: the same document as
/// [`PatientRecord::to_fhir`] (same keys, same values) without building a tree of `Value`s
/// first, which cost an allocation per key and value on every read and every search result.
pub struct FhirPatient<'a>(pub &'a PatientRecord);

struct FhirMeta<'a>(&'a PatientRecord);

struct SecurityLabel((&'static str, &'static str));

impl serde::Serialize for SecurityLabel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("code", self.0 .0)?;
        m.serialize_entry("display", self.0 .1)?;
        m.serialize_entry("system", "http://terminology.hl7.org/CodeSystem/v3-ActCode")?;
        m.end()
    }
}

impl serde::Serialize for FhirMeta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("lastUpdated", &crate::format_instant(r.last_updated))?;
        if !r.flags.is_empty() {
            let labels: Vec<SecurityLabel> = r.flags.iter().map(|f| SecurityLabel(f.security_label())).collect();
            m.serialize_entry("security", &labels)?;
        }
        m.serialize_entry("versionId", &r.version.to_string())?;
        m.end()
    }
}

impl serde::Serialize for FhirPatient<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (r, d) = (self.0, &self.0.data);
        // The keys in the order `to_fhir`'s map writes them.
        let mut m = s.serialize_map(None)?;
        if let Some(a) = d.active {
            m.serialize_entry("active", &a)?;
        }
        if !d.address.is_empty() {
            m.serialize_entry("address", &d.address)?;
        }
        if let Some(b) = d.birth_date {
            m.serialize_entry("birthDate", &b.to_string())?;
        }
        if let Some(g) = d.gender {
            m.serialize_entry("gender", &g)?;
        }
        m.serialize_entry("id", r.id.as_str())?;
        if !d.identifier.is_empty() {
            m.serialize_entry("identifier", &d.identifier)?;
        }
        m.serialize_entry("meta", &FhirMeta(r))?;
        if !d.name.is_empty() {
            m.serialize_entry("name", &d.name)?;
        }
        m.serialize_entry("resourceType", "Patient")?;
        if !d.telecom.is_empty() {
            m.serialize_entry("telecom", &d.telecom)?;
        }
        m.end()
    }
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub total: usize,
    pub offset: usize,
    pub count: usize,
    pub records: Vec<PatientRecord>,
    /// The accepted parameters, for Bundle links.
    pub params: Vec<(String, String)>,
}

impl Vault {
    async fn audit_invalid(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        action: AuditAction,
        id: Option<&str>,
        e: &InputError,
    ) -> Result<(), CoreError> {
        let d = Draft::new(self.inner.clock.now_micros(), action, Outcome::Invalid).by(actor).resource(PATIENT, id).purpose(purpose);
        let details = self.inner.sealer.seal_details(
            &d.event_id,
            serde_json::json!({"path": e.path, "code": e.code.as_str(), "message": e.message}).to_string().as_bytes(),
        )?;
        self.inner.writer.append(d.details(details)).await.map(|_| ())
    }

    /// Records a request refused before it reached a patient operation (body too large, not
    /// UTF-8, wrong content type): the refusal is part of the audit trail too.
    pub async fn record_rejected_request(
        &self,
        actor: &Actor,
        action: AuditAction,
        resource_id: Option<&str>,
        reason: &str,
    ) -> Result<(), CoreError> {
        let d = Draft::new(self.inner.clock.now_micros(), action, Outcome::Invalid).by(actor).resource(PATIENT, resource_id);
        let details = self.inner.sealer.seal_details(&d.event_id, serde_json::json!({"reason": reason}).to_string().as_bytes())?;
        self.inner.writer.append(d.details(details)).await.map(|_| ())
    }

    fn parse_body(&self, body: &[u8]) -> Result<carevault_domain::patient::PatientSubmission, InputError> {
        parse_patient(body, &ParseContext { today: self.inner.clock.today() })
    }

    async fn open_record(
        &self,
        receipt: &Receipt,
        row: &PatientVersionRow,
        flags: &[SensitiveCategory],
    ) -> Result<PatientRecord, CoreError> {
        let data = self.inner.sealer.open_patient(&self.inner.store, self.inner.clock.now_micros(), receipt, row).await?;
        Ok(PatientRecord {
            id: PatientId::parse(&row.patient_id).map_err(|_| CoreError::Internal("bad id in store".into()))?,
            version: row.version,
            last_updated: row.recorded_at,
            data,
            flags: flags.to_vec(),
        })
    }

    /// Registers a patient from a FHIR Patient JSON body. The server assigns the id and the MRN.
    pub async fn create_patient(&self, actor: &Actor, purpose: PurposeOfUse, body: &[u8]) -> Result<PatientRecord, CoreError> {
        self.create_patient_inner(actor, purpose, body, self.inner.kind == crate::InstanceKind::Demo).await
    }

    pub(crate) async fn create_patient_inner(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        body: &[u8],
        is_demo: bool,
    ) -> Result<PatientRecord, CoreError> {
        let home = home_scope(actor);
        let facts = PatientFacts { id: String::new(), scope: home.clone(), flags: vec![], relationship: false, break_glass: false };
        self.gate(actor, Operation::PatientCreate, purpose, &Target::Patient(&facts), (PATIENT, None)).await?;
        let mut sub = match self.parse_body(body) {
            Ok(s) => s,
            Err(e) => {
                self.audit_invalid(actor, purpose, AuditAction::Create, None, &e).await?;
                return Err(CoreError::Invalid(e));
            }
        };
        if sub.data.claims_mrn() {
            let e = InputError::value(
                "Patient.identifier",
                format!("identifiers with system {} are assigned by carevault", carevault_domain::ids::MRN_SYSTEM),
            );
            self.audit_invalid(actor, purpose, AuditAction::Create, None, &e).await?;
            return Err(CoreError::Invalid(e));
        }
        let now = self.inner.clock.now_micros();
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let id = PatientId::from_random(carevault_crypto::random_bytes::<16>());
        // A fresh MRN collides with an existing one about once in 10^4 registrations at 100k
        // patients; the unique index catches it and we draw again.
        for _ in 0..5 {
            sub.data.set_mrn(&Mrn::from_random(carevault_crypto::random_bytes::<8>()));
            let row = self.inner.sealer.seal_patient(id.as_str(), 1, now, &sub.data.to_parts(), None)?;
            let tokens = self.inner.sealer.tokens(&sub.data.index_terms());
            let ev = Draft::new(now, AuditAction::Create, Outcome::Success)
                .by(actor)
                .resource(PATIENT, Some(id.as_str()))
                .patient(id.as_str())
                .purpose(purpose);
            let mut ops =
                vec![PatientChange::InsertPatient { row: Box::new(row), tokens, is_demo, organization_id: home.organization_id.clone() }
                    .into()];
            if home.location_id.is_some() || home.department_id.is_some() {
                ops.push(
                    AccessChange::SetPlacement {
                        patient_id: id.to_string(),
                        location_id: home.location_id.clone(),
                        department_id: home.department_id.clone(),
                    }
                    .into(),
                );
            }
            match self.inner.writer.write(ops, vec![ev], None).await {
                Ok(_) => return Ok(PatientRecord { id, version: 1, last_updated: now, data: sub.data, flags: vec![] }),
                Err(CoreError::Conflict(c)) if c == "mrn" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CoreError::Internal("could not allocate a unique MRN".into()))
    }

    /// Reads the current version of a patient.
    pub async fn read_patient(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<PatientRecord, CoreError> {
        let a = Access {
            actor,
            purpose,
            op: Operation::PatientRead,
            action: AuditAction::Read,
            resource: PATIENT,
            id: Some(id),
            patient_id: id,
        };
        // The access row and the current version in one statement (still sealed: nothing is
        // opened before the gate and the audit record).
        let (access, row) = match carevault_domain::PatientId::parse(id) {
            Ok(_) => match self.inner.store.patient_access_and_current(id).await? {
                Some((access, row)) => (Some(access), Some(row)),
                None => (None, None),
            },
            Err(_) => (None, None),
        };
        self.audited_read_from(
            a,
            Some(access),
            || format!("Patient/{id}"),
            async || Ok(row),
            async |receipt: &Receipt, facts: &PatientFacts, row: PatientVersionRow| self.open_record(receipt, &row, &facts.flags).await,
        )
        .await
    }

    /// Reads one version of a patient (`vread`).
    pub async fn read_patient_version(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        id: &str,
        version: &str,
    ) -> Result<PatientRecord, CoreError> {
        let a = Access {
            actor,
            purpose,
            op: Operation::PatientVersionRead,
            action: AuditAction::Read,
            resource: PATIENT,
            id: Some(id),
            patient_id: id,
        };
        self.audited_read(
            a,
            || format!("Patient/{id}"),
            async || match version.parse::<i64>() {
                Ok(v) if v > 0 => Ok(self.inner.store.patient_version(id, v).await?),
                _ => Ok(None),
            },
            async |receipt: &Receipt, facts: &PatientFacts, row: PatientVersionRow| self.open_record(receipt, &row, &facts.flags).await,
        )
        .await
    }

    /// Every version of a patient, newest first (`_history`).
    pub async fn patient_history(&self, actor: &Actor, purpose: PurposeOfUse, id: &str) -> Result<Vec<PatientRecord>, CoreError> {
        let a = Access {
            actor,
            purpose,
            op: Operation::PatientHistory,
            action: AuditAction::Read,
            resource: "Patient/_history",
            id: Some(id),
            patient_id: id,
        };
        self.audited_read(
            a,
            || format!("Patient/{id}"),
            async || Ok(Some(self.inner.store.patient_history(id).await?).filter(|rows| !rows.is_empty())),
            async |receipt: &Receipt, facts: &PatientFacts, rows: Vec<PatientVersionRow>| {
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(self.open_record(receipt, r, &facts.flags).await?);
                }
                Ok(out)
            },
        )
        .await
    }

    /// Replaces a patient's demographics with a new version. `if_match` is the version the
    /// client last saw (optimistic concurrency); without it the current version is replaced.
    pub async fn update_patient(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        id: &str,
        body: &[u8],
        if_match: Option<i64>,
    ) -> Result<PatientRecord, CoreError> {
        let (facts, allowed) = self.gate_patient(actor, Operation::PatientUpdate, purpose, AuditAction::Update, PATIENT, id).await?;
        let now = self.inner.clock.now_micros();
        let checked = self.parse_body(body).and_then(|s| match s.id.as_deref() {
            Some(body_id) if body_id == id => Ok(s),
            Some(_) => Err(InputError::value("Patient.id", "must equal the id in the URL")),
            None => Err(InputError::new(
                carevault_domain::IssueCode::Required,
                Some("Patient.id".to_string()),
                "an update must carry the id of the resource",
            )),
        });
        let sub = match checked {
            Ok(s) => s,
            Err(e) => {
                self.audit_invalid(actor, purpose, AuditAction::Update, Some(id), &e).await?;
                return Err(CoreError::Invalid(e));
            }
        };
        let Some(mrn) = sub.data.mrn() else {
            let e = InputError::new(
                carevault_domain::IssueCode::Required,
                Some("Patient.identifier".to_string()),
                format!("the identifier with system {} (the MRN) must be kept", carevault_domain::ids::MRN_SYSTEM),
            );
            self.audit_invalid(actor, purpose, AuditAction::Update, Some(id), &e).await?;
            return Err(CoreError::Invalid(e));
        };
        let current = self.inner.store.patient_current(id).await?.map(|r| r.version);
        let Some(current) = current else {
            let d = Draft::new(now, AuditAction::Update, Outcome::NotFound).by(actor).resource(PATIENT, Some(id)).purpose(purpose);
            self.inner.writer.append(d).await?;
            return Err(CoreError::NotFound { resource: format!("Patient/{id}") });
        };
        let expected = if_match.unwrap_or(current);
        let fail =
            Draft::new(now, AuditAction::Update, Outcome::Conflict).by(actor).resource(PATIENT, Some(id)).patient(id).purpose(purpose);
        if expected != current {
            let mut d = fail;
            d.covers.clear();
            self.inner.writer.append(d).await?;
            return Err(CoreError::VersionConflict { expected, current });
        }
        self.inner.sealer.refresh(&self.inner.store, now, false).await?;
        let version = expected + 1;
        let row = self.inner.sealer.seal_patient(id, version, now, &sub.data.to_parts(), None)?;
        let tokens = self.inner.sealer.tokens(&sub.data.index_terms());
        let mrn_token = self
            .inner
            .sealer
            .tokens(&[(IndexKind::Mrn, mrn.as_str().to_string())])
            .into_iter()
            .next()
            .ok_or_else(|| CoreError::Internal("token".into()))?;
        let ev = Draft::new(now, AuditAction::Update, Outcome::Success)
            .by(actor)
            .resource(PATIENT, Some(id))
            .patient(id)
            .purpose(purpose)
            .review(&allowed);
        self.inner
            .writer
            .write(vec![PatientChange::UpdatePatient { row: Box::new(row), expected, tokens, mrn_token }.into()], vec![ev], Some(fail))
            .await?;
        let pid = PatientId::parse(id).map_err(CoreError::Invalid)?;
        Ok(PatientRecord { id: pid, version, last_updated: now, data: sub.data, flags: facts.flags })
    }

    /// Searches patients through the blind indexes. One audit record per search, holding the
    /// (sealed) terms and the ids returned; the ids returned are also its disclosed patients
    /// (plain), so the search is found under each of them.
    pub async fn search_patients(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        params: &[(String, String)],
    ) -> Result<SearchPage, CoreError> {
        self.gate(actor, Operation::PatientSearch, purpose, &Target::Anywhere, (PATIENT, None)).await?;
        let q: PatientQuery = match parse_patient_query(params) {
            Ok(q) => q,
            Err(e) => {
                self.audit_invalid(actor, purpose, AuditAction::Search, None, &e).await?;
                return Err(CoreError::Invalid(e));
            }
        };
        // The patients matching every criterion, with their scope. One criterion: its matches
        // joined with their scope in one statement. Several: each criterion's ids alone (a
        // range of the index each, no join), intersected, then the scope of the survivors only
        // (an exact family and given name match far fewer patients together than either alone).
        let found: Vec<(String, carevault_store::ScopeCols, i64)> = if let [c] = q.criteria.as_slice() {
            self.inner.store.patients_with_any_token_scoped(&self.inner.sealer.tokens(&c.alternatives)).await?
        } else {
            let mut ids: Option<Vec<String>> = None;
            for c in &q.criteria {
                let matching = self.inner.store.patients_with_any_token(&self.inner.sealer.tokens(&c.alternatives)).await?;
                ids = Some(match ids {
                    None => matching,
                    Some(prev) => prev.into_iter().filter(|p| matching.binary_search(p).is_ok()).collect(),
                });
                if ids.as_ref().is_some_and(Vec::is_empty) {
                    break;
                }
            }
            let mut found: Vec<_> = self
                .inner
                .store
                .patients_access(&ids.unwrap_or_default())
                .await?
                .into_iter()
                .map(|(id, a)| (id, a.scope, i64::try_from(a.flags.len()).unwrap_or(i64::MAX)))
                .collect();
            found.sort_by(|a, b| a.0.cmp(&b.0));
            found
        };
        // Flag categories only for the (few) flagged matches.
        let flagged: Vec<String> = found.iter().filter(|f| f.2 > 0).map(|f| f.0.clone()).collect();
        let mut categories: std::collections::HashMap<String, Vec<SensitiveCategory>> = std::collections::HashMap::new();
        if !flagged.is_empty() {
            for (pid, access) in self.inner.store.patients_access(&flagged).await? {
                categories.insert(pid, access.flags.iter().filter_map(|f| SensitiveCategory::parse(f)).collect());
            }
        }
        // Only patients the actor may open appear: in scope, and flagged records only with the
        // category's permission. Break-glass opens a record by id, never through search.
        let mut visible = Vec::new();
        let mut flags_of = std::collections::HashMap::new();
        for (pid, scope, _) in found {
            let facts = PatientFacts {
                flags: categories.remove(&pid).unwrap_or_default(),
                id: pid,
                scope,
                relationship: false,
                break_glass: false,
            };
            if authz::check(actor, Operation::PatientSearch, purpose, &Target::Patient(&facts)).is_ok() {
                if !facts.flags.is_empty() {
                    flags_of.insert(facts.id.clone(), facts.flags);
                }
                visible.push(facts.id);
            }
        }
        visible.sort();
        let ids = visible;
        let page: Vec<String> = ids.iter().skip(q.offset).take(q.count).cloned().collect();
        // Only the records returned are accessed: their flags mark the audit record.
        let mut marks: Vec<String> = Vec::new();
        for f in page.iter().filter_map(|p| flags_of.get(p)).flatten() {
            let m = format!("sensitive:{}", f.id());
            if !marks.contains(&m) {
                marks.push(m);
            }
        }
        let rows = self.inner.store.patients_current_many(&page).await?;
        // The patients returned (the page, as read), findable per patient in the audit log.
        let returned: Vec<String> = rows.iter().map(|r| r.patient_id.clone()).collect();
        let now = self.inner.clock.now_micros();
        let mut d =
            Draft::new(now, AuditAction::Search, Outcome::Success).by(actor).resource(PATIENT, None).purpose(purpose).disclosing(&returned);
        d.review = (!marks.is_empty()).then(|| marks.join(" "));
        let details = serde_json::json!({"params": q.echo, "total": ids.len(), "offset": q.offset, "returned": page});
        let sealed = self.inner.sealer.seal_details(&d.event_id, details.to_string().as_bytes())?;
        let receipt = self.inner.writer.append(d.details(sealed)).await?;
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            let flags = flags_of.get(&r.patient_id).cloned().unwrap_or_default();
            records.push(self.open_record(&receipt, r, &flags).await?);
        }
        Ok(SearchPage { total: ids.len(), offset: q.offset, count: q.count, records, params: q.echo })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct serializer writes the same document as the `Value` tree, key for key.
    #[test]
    fn fhir_patient_writes_the_same_document_as_to_fhir() {
        let body = serde_json::json!({
            "resourceType": "Patient",
            "active": true,
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": "123-45-6789"}],
            "name": [{"use": "official", "family": "O'Brien-Núñez", "given": ["Mary", "Ann"], "prefix": ["Dr."]}],
            "telecom": [{"system": "phone", "value": "+1 (555) 010-0199", "use": "mobile"}, {"system": "email", "value": "m@example.org"}],
            "gender": "female",
            "birthDate": "1970-02-03",
            "address": [{"line": ["1 Main St", "Apt 2"], "city": "Springfield", "state": "IL", "postalCode": "62701", "country": "US"}]
        });
        let today = time::macros::date!(2026 - 12 - 05);
        let parsed = parse_patient(body.to_string().as_bytes(), &ParseContext { today }).expect("valid patient");
        let id = PatientId::from_random([7u8; 16]);
        for flags in [vec![], vec![SensitiveCategory::Vip, SensitiveCategory::BehavioralHealth]] {
            let rec = PatientRecord { id: id.clone(), version: 3, last_updated: 1_764_000_000_123_456, data: parsed.data.clone(), flags };
            let direct: serde_json::Value =
                serde_json::from_slice(&serde_json::to_vec(&FhirPatient(&rec)).expect("serialize")).expect("json");
            assert_eq!(direct, rec.to_fhir());
            // Top-level keys in the same order, too.
            let text = serde_json::to_string(&FhirPatient(&rec)).expect("serialize");
            let tree = rec.to_fhir().to_string();
            assert_eq!(text.len(), tree.len());
        }
    }
}
