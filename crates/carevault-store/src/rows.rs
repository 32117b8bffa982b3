//! Row types: plain values and bytes. PHI appears here only as sealed bytes.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::dialect::classify;
use crate::Result;

/// A row of either engine's driver: sqlx's `AnyRow`, or a rusqlite row of the in-place SQLite
/// reads ([`crate::lite`]). Every `from_row` decodes through this, so one function serves both.
pub(crate) trait Cols {
    fn col<T: Val>(&self, name: &str) -> Result<T>;
}

impl Cols for AnyRow {
    fn col<T: Val>(&self, name: &str) -> Result<T> {
        T::any(self, name)
    }
}

impl Cols for rusqlite::Row<'_> {
    fn col<T: Val>(&self, name: &str) -> Result<T> {
        T::lite(self, name)
    }
}

/// A row of whichever driver ran the statement (see [`crate::Store::hot`]).
pub(crate) enum RowRef<'a, 'b> {
    Any(&'a AnyRow),
    Lite(&'a rusqlite::Row<'b>),
}

impl Cols for RowRef<'_, '_> {
    fn col<T: Val>(&self, name: &str) -> Result<T> {
        match self {
            RowRef::Any(r) => T::any(r, name),
            RowRef::Lite(r) => T::lite(r, name),
        }
    }
}

/// A column type both drivers decode.
pub(crate) trait Val: Sized {
    fn any(r: &AnyRow, name: &str) -> Result<Self>;
    fn lite(r: &rusqlite::Row<'_>, name: &str) -> Result<Self>;
}

macro_rules! val {
    ($($t:ty),*) => {$(
        impl Val for $t {
            fn any(r: &AnyRow, name: &str) -> Result<Self> {
                r.try_get::<$t, _>(name).map_err(classify)
            }
            fn lite(r: &rusqlite::Row<'_>, name: &str) -> Result<Self> {
                r.get::<_, $t>(name).map_err(crate::lite::error)
            }
        }
    )*};
}

val!(i64, String, Vec<u8>, Option<i64>, Option<String>, Option<Vec<u8>>);

/// Column `name` of `r`.
pub(crate) fn get<T: Val>(r: &impl Cols, name: &str) -> Result<T> {
    r.col(name)
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub purpose: String,
    pub version: i64,
    pub wrapped: Vec<u8>,
    pub public_key: Option<Vec<u8>>,
    pub created_at: i64,
}

impl KeyRow {
    pub(crate) fn from_row(r: &impl Cols) -> Result<Self> {
        Ok(KeyRow {
            purpose: get(r, "purpose")?,
            version: get(r, "version")?,
            wrapped: get(r, "wrapped")?,
            public_key: get(r, "public_key")?,
            created_at: get(r, "created_at")?,
        })
    }
}

#[derive(Clone)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub totp_secret: Vec<u8>,
    pub key_version: i64,
    pub totp_last_step: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub active: bool,
    pub is_demo: bool,
    pub created_at: i64,
    /// The organization the account belongs to (who administers it).
    pub organization_id: String,
    pub last_login_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    pub password_changed_at: Option<i64>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserRow({})", self.id)
    }
}

impl UserRow {
    pub(crate) fn from_row(r: &impl Cols) -> Result<Self> {
        Ok(UserRow {
            id: get(r, "id")?,
            username: get(r, "username")?,
            password_hash: get(r, "password_hash")?,
            totp_secret: get(r, "totp_secret")?,
            key_version: get(r, "key_version")?,
            totp_last_step: get(r, "totp_last_step")?,
            failed_logins: get(r, "failed_logins")?,
            locked_until: get(r, "locked_until")?,
            active: get::<i64>(r, "active")? != 0,
            is_demo: get::<i64>(r, "is_demo")? != 0,
            created_at: get(r, "created_at")?,
            organization_id: get(r, "organization_id")?,
            last_login_at: get(r, "last_login_at")?,
            deactivated_at: get(r, "deactivated_at")?,
            password_changed_at: get(r, "password_changed_at")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_hash: Vec<u8>,
    pub public_id: String,
    pub user_id: String,
    pub state: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub source_ip: Option<String>,
    pub mfa_failures: i64,
    /// When the user last proved a password and a second factor in this session (step-up).
    pub authenticated_at: i64,
}

impl SessionRow {
    pub(crate) fn from_row(r: &impl Cols) -> Result<Self> {
        Ok(SessionRow {
            token_hash: get(r, "token_hash")?,
            public_id: get(r, "public_id")?,
            user_id: get(r, "user_id")?,
            state: get(r, "state")?,
            created_at: get(r, "created_at")?,
            last_seen_at: get(r, "last_seen_at")?,
            expires_at: get(r, "expires_at")?,
            source_ip: get(r, "source_ip")?,
            mfa_failures: get(r, "mfa_failures")?,
            authenticated_at: get::<Option<i64>>(r, "authenticated_at")?.unwrap_or(0),
        })
    }
}

/// One version of a patient record; every PHI column is sealed.
#[derive(Clone)]
pub struct PatientVersionRow {
    pub patient_id: String,
    pub version: i64,
    pub recorded_at: i64,
    pub key_version: i64,
    pub name: Vec<u8>,
    pub birth_date: Vec<u8>,
    pub telecom: Vec<u8>,
    pub identifier: Vec<u8>,
    pub address: Vec<u8>,
    pub other: Vec<u8>,
}

impl std::fmt::Debug for PatientVersionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PatientVersionRow({}/{}, key v{})", self.patient_id, self.version, self.key_version)
    }
}

impl PatientVersionRow {
    pub(crate) fn from_row(r: &impl Cols) -> Result<Self> {
        Ok(PatientVersionRow {
            patient_id: get(r, "patient_id")?,
            version: get(r, "version")?,
            recorded_at: get(r, "recorded_at")?,
            key_version: get(r, "key_version")?,
            name: get(r, "name")?,
            birth_date: get(r, "birth_date")?,
            telecom: get(r, "telecom")?,
            identifier: get(r, "identifier")?,
            address: get(r, "address")?,
            other: get(r, "other")?,
        })
    }

    /// The sealed columns by name, in a fixed order.
    pub fn sealed_columns(&self) -> [(&'static str, &Vec<u8>); 6] {
        [
            ("name", &self.name),
            ("birth_date", &self.birth_date),
            ("telecom", &self.telecom),
            ("identifier", &self.identifier),
            ("address", &self.address),
            ("other", &self.other),
        ]
    }
}

/// Filters of an audit search (all optional).
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    /// `user:<id>` or `system:<job>`, as the actor column holds it.
    pub actor: Option<String>,
    pub patient_id: Option<String>,
    pub action: Option<String>,
    /// Inclusive, µs since the epoch.
    pub from: Option<i64>,
    /// Exclusive, µs since the epoch.
    pub to: Option<i64>,
    /// Only records older than this sequence number (paging back).
    pub before_seq: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub event_id: String,
    pub at: i64,
    pub actor: String,
    pub session: Option<String>,
    pub source_ip: Option<String>,
    pub action: String,
    pub outcome: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub patient_id: Option<String>,
    pub purpose: Option<String>,
    pub details: Option<Vec<u8>>,
    /// Marks for the privacy officer's review (break-glass, sensitive record), space-separated.
    pub review_flags: Option<String>,
    /// The patients a record that returned several patients' data disclosed: their ids,
    /// space-separated (schema 14 on; `None` for other records). `audit_disclosures` indexes it.
    pub disclosed: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl AuditRow {
    pub(crate) fn from_row(r: &impl Cols) -> Result<Self> {
        Ok(AuditRow {
            seq: get(r, "seq")?,
            event_id: get(r, "event_id")?,
            at: get(r, "at")?,
            actor: get(r, "actor")?,
            session: get(r, "session")?,
            source_ip: get(r, "source_ip")?,
            action: get(r, "action")?,
            outcome: get(r, "outcome")?,
            resource_type: get(r, "resource_type")?,
            resource_id: get(r, "resource_id")?,
            patient_id: get(r, "patient_id")?,
            purpose: get(r, "purpose")?,
            details: get(r, "details")?,
            review_flags: get(r, "review_flags")?,
            disclosed: get(r, "disclosed")?,
            prev_hash: get(r, "prev_hash")?,
            hash: get(r, "hash")?,
        })
    }
}

/// An audit record's columns as stored, borrowed (text columns as their UTF-8 bytes): what the
/// hash chain and the Merkle tree hash.
#[derive(Debug, Clone, Copy)]
pub struct AuditRowRef<'a> {
    pub seq: i64,
    pub event_id: &'a [u8],
    pub at: i64,
    pub actor: &'a [u8],
    pub session: Option<&'a [u8]>,
    pub source_ip: Option<&'a [u8]>,
    pub action: &'a [u8],
    pub outcome: &'a [u8],
    pub resource_type: Option<&'a [u8]>,
    pub resource_id: Option<&'a [u8]>,
    pub patient_id: Option<&'a [u8]>,
    pub purpose: Option<&'a [u8]>,
    pub details: Option<&'a [u8]>,
    pub review_flags: Option<&'a [u8]>,
    pub disclosed: Option<&'a [u8]>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

impl AuditRow {
    /// The patient ids of [`AuditRow::disclosed`].
    pub fn disclosed_ids(&self) -> Vec<String> {
        self.disclosed.as_deref().map(|d| d.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
    }

    pub fn as_ref(&self) -> AuditRowRef<'_> {
        AuditRowRef {
            seq: self.seq,
            event_id: self.event_id.as_bytes(),
            at: self.at,
            actor: self.actor.as_bytes(),
            session: self.session.as_deref().map(str::as_bytes),
            source_ip: self.source_ip.as_deref().map(str::as_bytes),
            action: self.action.as_bytes(),
            outcome: self.outcome.as_bytes(),
            resource_type: self.resource_type.as_deref().map(str::as_bytes),
            resource_id: self.resource_id.as_deref().map(str::as_bytes),
            patient_id: self.patient_id.as_deref().map(str::as_bytes),
            purpose: self.purpose.as_deref().map(str::as_bytes),
            details: self.details.as_deref(),
            review_flags: self.review_flags.as_deref().map(str::as_bytes),
            disclosed: self.disclosed.as_deref().map(str::as_bytes),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeadRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signature: Option<Vec<u8>>,
    /// The Merkle tree's frontier at `seq` (absent before schema 12 and until rebuilt).
    pub tree_frontier: Option<Vec<u8>>,
}

impl HeadRow {
    pub(crate) fn from_row(r: &impl Cols) -> Result<Self> {
        Ok(HeadRow { seq: get(r, "seq")?, hash: get(r, "hash")?, signature: get(r, "signature")?, tree_frontier: get(r, "tree_frontier")? })
    }
}

#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: i64,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    /// The Merkle root at tree size `seq` and the signature of that tree head (schema 12 on).
    pub root_hash: Option<Vec<u8>>,
    pub tree_signature: Option<Vec<u8>>,
}

impl CheckpointRow {
    pub(crate) fn from_row(r: &impl Cols) -> Result<Self> {
        Ok(CheckpointRow {
            seq: get(r, "seq")?,
            hash: get(r, "hash")?,
            at: get(r, "at")?,
            public_key: get(r, "public_key")?,
            signature: get(r, "signature")?,
            root_hash: get(r, "root_hash")?,
            tree_signature: get(r, "tree_signature")?,
        })
    }
}

/// A patient to register (`WriteTx::insert_patients`): its first version (sealed), its
/// organization and its blind-index tokens.
pub struct NewPatient<'a> {
    pub row: &'a PatientVersionRow,
    pub organization_id: &'a str,
    pub is_demo: bool,
    pub tokens: &'a [(i64, Vec<u8>)],
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: Vec<u8>,
    pub public_id: String,
    pub user_id: String,
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub source_ip: Option<String>,
}
