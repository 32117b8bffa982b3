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

/// Per-connection settings. SQLite: write-ahead log, full fsync at commit (an acknowledged
/// audit record survives power loss), foreign keys, a busy timeout for other processes such as
/// the CLI, and secure_delete so freed pages are zeroed.
pub(crate) async fn after_connect(backend: Backend, conn: &mut AnyConnection) -> std::result::Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            // The busy timeout first: the other pragmas may wait for another process's lock.
            conn.execute("PRAGMA busy_timeout = 15000").await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            conn.execute("PRAGMA secure_delete = ON").await?;
            // 16 MiB of page cache per connection (SQLite's default is 2 MiB): the blind-index
            // B-tree of a large clinic does not fit in the default.
            conn.execute("PRAGMA cache_size = -16384").await?;
        }
        Backend::Postgres => {
            conn.execute("SET synchronous_commit = on").await?;
        }
    }
    Ok(())
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
        ],
    }
}

/// Maps a driver error to a store error; named uniqueness violations become `Conflict`.
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
            // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), including extended codes.
            if msg.contains("not a database") || msg.contains("malformed") || code == "11" || code == "26" {
                return StoreError::Corrupt(msg);
            }
            StoreError::Database(msg)
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Configuration(_) => {
            StoreError::Unavailable(e.to_string())
        }
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
