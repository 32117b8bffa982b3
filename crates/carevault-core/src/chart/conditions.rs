//! Diagnoses with ICD-10-CM codes, and the code reference data (bundled starter set, the CMS
//! importer, search).

use super::*;

impl Vault {
    // ----- conditions -----

    /// Records a diagnosis on an encounter: an ICD-10-CM code that exists and is billable.
    pub async fn add_condition(
        &self,
        actor: &Actor,
        purpose: PurposeOfUse,
        encounter_id: &str,
        code: &str,
        note: Option<&str>,
    ) -> Result<ChartRecord, CoreError> {
        let (enc, allowed) =
            self.gated_record(actor, purpose, Operation::ConditionCreate, AuditAction::Create, &["encounter"], encounter_id).await?;
        let checked = async {
            let c = Icd10Code::parse(code)?;
            self.ensure_icd10().await?;
            let Some((description, billable)) = self.inner.store.icd10_code(c.as_str()).await? else {
                return Err(bad("code", "not an ICD-10-CM code known here (import the CMS code file with `carevault icd10 import`)"));
            };
            if !billable {
                return Err(bad("code", "a category, not a billable code: choose a more specific code"));
            }
            let note = text_field(&json!({"note": note}), "note", "note", 2000, false)?;
            Ok(json!({"code": c.display(), "display": description, "clinicalStatus": "active", "note": note, "encounterId": enc.id}))
        }
        .await;
        let body = match checked {
            Ok(b) => b,
            Err(e) => return Err(self.refuse_on(actor, purpose, AuditAction::Create, ("Condition", None, &enc.patient_id), e).await),
        };
        self.insert_chart_record(
            actor,
            purpose,
            &allowed,
            None,
            ("condition", &enc.patient_id, Some(&enc.id), "active"),
            body,
            None,
            vec![],
        )
        .await
    }

    pub async fn patient_conditions(&self, actor: &Actor, purpose: PurposeOfUse, patient_id: &str) -> Result<Vec<ChartRecord>, CoreError> {
        self.list_records(actor, purpose, Operation::ConditionList, &["condition"], patient_id).await
    }
}

/// ICD-10-CM reference data: the bundled starter set, the CMS importer, search.
impl Vault {
    /// Loads the bundled starter set when no code is in the store yet.
    pub(super) async fn ensure_icd10(&self) -> Result<(), CoreError> {
        if self.inner.store.icd10_count().await? > 0 {
            return Ok(());
        }
        let codes: Vec<(String, String, bool)> =
            carevault_domain::icd10::starter_set().into_iter().map(|e| (e.code.as_str().to_string(), e.description, e.billable)).collect();
        self.write_icd10(codes, "starter").await.map(|_| ())
    }

    pub(super) async fn write_icd10(&self, codes: Vec<(String, String, bool)>, release: &str) -> Result<usize, CoreError> {
        let n = codes.len();
        for chunk in codes.chunks(2000) {
            let ev = Draft::new(self.inner.clock.now_micros(), AuditAction::ConfigChange, Outcome::Success)
                .resource("CodeSystem", Some("icd-10-cm"))
                .actor_name("system".into());
            self.inner
                .writer
                .write(vec![ChartChange::UpsertIcd10 { codes: chunk.to_vec(), release: release.into() }.into()], vec![ev], None)
                .await?;
        }
        Ok(n)
    }

    /// Imports a CMS ICD-10-CM code file (codes or order format): every line is checked
    /// before anything is written. Returns the number of codes.
    pub(crate) async fn import_icd10(&self, text: &str, release: &str) -> Result<usize, CoreError> {
        let entries = carevault_domain::icd10::parse_cms(text).map_err(|e| bad("file", &e.to_string()))?;
        let release = release.trim();
        if release.is_empty() || release.len() > 40 || !release.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(bad("release", "1 to 40 characters: letters, digits, '-', '.'"));
        }
        let codes = entries.into_iter().map(|e| (e.code.as_str().to_string(), e.description, e.billable)).collect();
        self.write_icd10(codes, release).await
    }

    /// Searches ICD-10-CM codes by code prefix or description words (reference data).
    pub async fn search_icd10(&self, actor: &Actor, query: &str, limit: usize) -> Result<Vec<(String, String, bool)>, CoreError> {
        self.gate(actor, Operation::CodeSearch, actor.default_purpose(), &crate::authz::Target::Anywhere, ("CodeSystem", None)).await?;
        self.ensure_icd10().await?;
        let q = query.trim();
        if q.is_empty() || q.chars().count() > 100 {
            return Err(bad("q", "1 to 100 characters"));
        }
        let prefix: String = q.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
        let words: Vec<String> = q
            .split_whitespace()
            .map(|w| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase())
            .filter(|w| !w.is_empty())
            .take(6)
            .collect();
        let prefix = if q.contains(' ') || prefix.is_empty() { "\u{1}".to_string() } else { prefix };
        let rows = self.inner.store.icd10_search(&prefix, &words, i64::try_from(limit.clamp(1, 100)).unwrap_or(20)).await?;
        Ok(rows.into_iter().map(|(c, d, b)| (Icd10Code::parse(&c).map(|x| x.display()).unwrap_or(c), d, b)).collect())
    }
}
