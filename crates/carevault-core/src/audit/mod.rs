//! The tamper-evident audit log: a SHA-256 hash chain over every event, a signed chain head
//! updated with every commit, an RFC 9162 Merkle tree over the same records, and Ed25519-signed
//! checkpoints with signed tree heads kept in the database, in a file outside it and, when
//! configured, in a witness folder elsewhere.

pub(crate) mod chain;
pub(crate) mod change;
pub(crate) mod files;
pub(crate) mod merkle;
pub mod tree;
pub mod verify;
pub(crate) mod writer;
#[cfg(test)]
mod writer_tests;

use carevault_domain::{AuditAction, Outcome, PurposeOfUse};

use crate::actor::Actor;

/// An audit event before the writer gives it a place in the chain.
#[derive(Clone)]
pub(crate) struct Draft {
    pub event_id: String,
    pub at: i64,
    pub actor: String,
    pub session: Option<String>,
    pub source_ip: Option<String>,
    pub action: AuditAction,
    pub outcome: Outcome,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub patient_id: Option<String>,
    pub purpose: Option<PurposeOfUse>,
    /// Sealed details (may hold PHI such as search terms).
    pub details: Option<Vec<u8>>,
    /// Patients whose data the holder of the receipt may decrypt.
    pub covers: Vec<String>,
    /// Patients whose data this one record returned to its actor, when it returned several
    /// patients' data (a search, a list, a queue): sorted, without repeats. Kept in the record's
    /// `disclosed` column (hashed) and indexed in `audit_disclosures`, so the audit viewer's
    /// patient filter finds the record for each of them.
    pub disclosed: Vec<String>,
    /// Marks for review (break-glass, sensitive record).
    pub review: Option<String>,
}

impl Draft {
    pub(crate) fn new(at: i64, action: AuditAction, outcome: Outcome) -> Draft {
        Draft {
            event_id: hex::encode(carevault_crypto::random_bytes::<16>()),
            at,
            actor: "anonymous".into(),
            session: None,
            source_ip: None,
            action,
            outcome,
            resource_type: None,
            resource_id: None,
            patient_id: None,
            purpose: None,
            details: None,
            covers: Vec::new(),
            disclosed: Vec::new(),
            review: None,
        }
    }

    pub(crate) fn by(mut self, actor: &Actor) -> Draft {
        self.actor = actor.audit_name();
        self.session = actor.session_public_id.clone();
        self.source_ip = actor.source_ip.clone();
        self
    }

    pub(crate) fn source_ip(mut self, ip: Option<String>) -> Draft {
        self.source_ip = ip;
        self
    }

    pub(crate) fn actor_name(mut self, name: String) -> Draft {
        self.actor = name;
        self
    }

    pub(crate) fn session(mut self, public_id: Option<String>) -> Draft {
        self.session = public_id;
        self
    }

    /// The resource concerned. An id that is not a well-formed id (it came from a URL) is not
    /// recorded as given: the audit log's plain columns must never carry free text.
    pub(crate) fn resource(mut self, kind: &str, id: Option<&str>) -> Draft {
        self.resource_type = Some(kind.to_string());
        self.resource_id = id.map(audit_safe_id);
        self
    }

    pub(crate) fn patient(mut self, id: &str) -> Draft {
        self.patient_id = Some(id.to_string());
        self.covers.push(id.to_string());
        self
    }

    pub(crate) fn covering(mut self, ids: &[String]) -> Draft {
        self.covers.extend(ids.iter().cloned());
        self
    }

    /// The patients whose data the operation returns under this record (the page returned, not
    /// every match): the receipt covers them, and the record discloses them (see
    /// [`Draft::disclosed`]). Key rotation, which decrypts but returns nothing to anyone, uses
    /// [`Draft::covering`] alone.
    pub(crate) fn disclosing(mut self, ids: &[String]) -> Draft {
        self.covers.extend(ids.iter().cloned());
        self.disclosed.extend(ids.iter().cloned());
        self.disclosed.sort();
        self.disclosed.dedup();
        self
    }

    pub(crate) fn purpose(mut self, p: PurposeOfUse) -> Draft {
        self.purpose = Some(p);
        self
    }

    /// Marks the record for review as the access decision asked.
    pub(crate) fn review(mut self, allowed: &crate::authz::Allowed) -> Draft {
        self.review = allowed.review_flags();
        self
    }

    pub(crate) fn details(mut self, sealed: Vec<u8>) -> Draft {
        self.details = Some(sealed);
        self
    }
}

/// `id` if it is a well-formed FHIR id, else a placeholder.
pub(crate) fn audit_safe_id(id: &str) -> String {
    match carevault_domain::PatientId::parse(id) {
        Ok(_) => id.to_string(),
        Err(_) => "(malformed id)".to_string(),
    }
}

/// Proof that an audit record is durable. Not `Clone`, not constructible outside the audit
/// writer: decrypting patient data requires one (see `sealing`).
pub(crate) struct Receipt {
    seqs: Vec<i64>,
    covers: Vec<String>,
    /// Who the audit record names (`user:<id>` or `system:<name>`).
    actor: String,
    /// The data class the records stand for: clinical unless every record is about the
    /// `Patient` resource (demographics).
    clinical: bool,
}

impl Receipt {
    /// Only the writer issues receipts, after the commit that made the records durable.
    pub(in crate::audit) fn issue(seqs: Vec<i64>, covers: Vec<String>, (actor, clinical): (String, bool)) -> Receipt {
        Receipt { seqs, covers, actor, clinical }
    }

    /// Whether the receipt covers a patient's clinical data (a demographic read's does not).
    pub(crate) fn covers_clinical(&self, patient_id: &str) -> bool {
        self.clinical && self.covers(patient_id)
    }

    /// The actor the audit record names.
    pub(crate) fn actor(&self) -> &str {
        &self.actor
    }

    pub(crate) fn covers(&self, patient_id: &str) -> bool {
        self.covers.iter().any(|c| c == patient_id)
    }

    /// The sequence number of the last record this receipt stands for.
    pub(crate) fn last_seq(&self) -> Option<i64> {
        self.seqs.last().copied()
    }
}
