//! Everything that differs between SQLite and PostgreSQL, in one visible place.

use sqlx::{AnyConnection, Executor};

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Unavailable("the database URL must start with sqlite:, postgres:// or postgresql://".into()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// Per-connection settings (`cache_kib`: SQLite's page cache). SQLite: write-ahead log, full fsync at commit (an acknowledged
/// audit record survives power loss), foreign keys, a busy timeout for other processes such as
/// the CLI, and secure_delete so freed pages are zeroed.
pub(crate) async fn after_connect(backend: Backend, conn: &mut AnyConnection, cache_kib: i64) -> std::result::Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            // The busy timeout first: the other pragmas may wait for another process's lock.
            conn.execute("PRAGMA busy_timeout = 15000").await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            conn.execute("PRAGMA secure_delete = ON").await?;
            // Page cache per connection (SQLite's default is 2 MiB): 16 MiB for the writer (the
            // blind-index B-tree of a large clinic does not fit in the default), 4 MiB for the
            // pool's readers, which the hot reads no longer use (`lite`). Caches count in the
            // server's resident memory once warm.
            conn.execute(format!("PRAGMA cache_size = -{cache_kib}").as_str()).await?;
        }
        Backend::Postgres => {
            conn.execute("SET synchronous_commit = on").await?;
        }
    }
    Ok(())
}

/// How a write transaction starts. SQLite: `IMMEDIATE`, so the write lock is taken (waiting up
/// to the busy timeout) before the first statement rather than on upgrade, where a busy
/// database fails at once.
pub(crate) fn begin_statement(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    }
}

pub(crate) fn migrations(backend: Backend) -> &'static [(i64, &'static str, &'static str)] {
    match backend {
        Backend::Sqlite => &[
            (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
            (2, "access", include_str!("../migrations/sqlite/0002_access.sql")),
            (3, "passkeys", include_str!("../migrations/sqlite/0003_passkeys.sql")),
            (4, "flag_count", include_str!("../migrations/sqlite/0004_flag_count.sql")),
            (5, "rooms_time_zones", include_str!("../migrations/sqlite/0005_rooms_time_zones.sql")),
            (6, "practitioners", include_str!("../migrations/sqlite/0006_practitioners.sql")),
            (7, "scheduling", include_str!("../migrations/sqlite/0007_scheduling.sql")),
            (8, "appointment_history", include_str!("../migrations/sqlite/0008_appointment_history.sql")),
            (9, "closures", include_str!("../migrations/sqlite/0009_closures.sql")),
            (10, "booking_details", include_str!("../migrations/sqlite/0010_booking_details.sql")),
            (11, "clinical_records", include_str!("../migrations/sqlite/0011_clinical_records.sql")),
            (12, "audit_tree", include_str!("../migrations/sqlite/0012_audit_tree.sql")),
            (13, "approvals", include_str!("../migrations/sqlite/0013_approvals.sql")),
            (14, "audit_disclosures", include_str!("../migrations/sqlite/0014_audit_disclosures.sql")),
            (15, "access_generation", include_str!("../migrations/sqlite/0015_access_generation.sql")),
            (16, "compact_index", include_str!("../migrations/sqlite/0016_compact_index.sql")),
        ],
        Backend::Postgres => &[
            (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
            (2, "access", include_str!("../migrations/postgres/0002_access.sql")),
            (3, "passkeys", include_str!("../migrations/postgres/0003_passkeys.sql")),
            (4, "flag_count", include_str!("../migrations/postgres/0004_flag_count.sql")),
            (5, "rooms_time_zones", include_str!("../migrations/postgres/0005_rooms_time_zones.sql")),
            (6, "practitioners", include_str!("../migrations/postgres/0006_practitioners.sql")),
            (7, "scheduling", include_str!("../migrations/postgres/0007_scheduling.sql")),
            (8, "appointment_history", include_str!("../migrations/postgres/0008_appointment_history.sql")),
            (9, "closures", include_str!("../migrations/postgres/0009_closures.sql")),
            (10, "booking_details", include_str!("../migrations/postgres/0010_booking_details.sql")),
            (11, "clinical_records", include_str!("../migrations/postgres/0011_clinical_records.sql")),
            (12, "audit_tree", include_str!("../migrations/postgres/0012_audit_tree.sql")),
            (13, "approvals", include_str!("../migrations/postgres/0013_approvals.sql")),
            (14, "audit_disclosures", include_str!("../migrations/postgres/0014_audit_disclosures.sql")),
            (15, "access_generation", include_str!("../migrations/postgres/0015_access_generation.sql")),
            (16, "compact_index", include_str!("../migrations/postgres/0016_compact_index.sql")),
        ],
    }
}

/// Maps a driver error to a store error; named uniqueness violations become `Conflict`; a full
/// disk, an I/O error, a lost or terminated connection and the like become `Unavailable`
/// (transient: 503, nothing acknowledged).
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let msg = db.message().to_string();
            if db.is_unique_violation() {
                let which = db.constraint().map(str::to_string).unwrap_or_else(|| {
                    // SQLite names the columns, not the constraint.
                    if msg.contains("users.username") {
                        "users_username_key".into()
                    } else if msg.contains("patient_index.token") {
                        "patient_index_mrn_unique".into()
                    } else {
                        "unique".into()
                    }
                });
                return StoreError::Conflict(which);
            }
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                return if postgres_unavailable(&code) { StoreError::Unavailable(msg) } else { StoreError::Database(msg) };
            }
            // SQLite reports extended result codes; the primary code is the low byte.
            let primary = code.parse::<i32>().map(|c| c & 0xff).unwrap_or(-1);
            // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26).
            if msg.contains("not a database") || msg.contains("malformed") || primary == 11 || primary == 26 {
                return StoreError::Corrupt(msg);
            }
            if sqlite_unavailable(primary) {
                return StoreError::Unavailable(msg);
            }
            StoreError::Database(msg)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Configuration(_) => StoreError::Unavailable(e.to_string()),
        _ => {
            let s = e.to_string();
            if s.contains("not a database") || s.contains("malformed") {
                StoreError::Corrupt(s)
            } else {
                StoreError::Database(s)
            }
        }
    }
}

/// SQLite primary result codes that say the storage, not the statement, failed: BUSY (5, the
/// busy timeout ran out), LOCKED (6), NOMEM (7), READONLY (8), IOERR (10), FULL (13),
/// CANTOPEN (14), PROTOCOL (15).
fn sqlite_unavailable(primary: i32) -> bool {
    matches!(primary, 5 | 6 | 7 | 8 | 10 | 13 | 14 | 15)
}

/// PostgreSQL SQLSTATE classes that say the server or the connection failed: 08 connection
/// exception, 53 insufficient resources (disk full, out of memory, too many connections),
/// 57 operator intervention (backend terminated, server shutting down, query canceled),
/// 58 system error (I/O), and 25P03 idle-in-transaction timeout.
fn postgres_unavailable(sqlstate: &str) -> bool {
    matches!(sqlstate.get(..2), Some("08" | "53" | "57" | "58")) || sqlstate == "25P03"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_transient_and_statement_failures_are_not() {
        assert!(sqlite_unavailable(13)); // SQLITE_FULL
        assert!(sqlite_unavailable(778 & 0xff)); // SQLITE_IOERR_WRITE
        assert!(!sqlite_unavailable(19)); // SQLITE_CONSTRAINT
        assert!(!sqlite_unavailable(1)); // SQLITE_ERROR
        assert!(postgres_unavailable("57P01")); // admin_shutdown (pg_terminate_backend)
        assert!(postgres_unavailable("53100")); // disk_full
        assert!(postgres_unavailable("08006")); // connection_failure
        assert!(!postgres_unavailable("23503")); // foreign_key_violation
        assert!(!postgres_unavailable("P0001")); // raise_exception
    }
}
