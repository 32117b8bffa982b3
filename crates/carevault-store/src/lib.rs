//! Persistence for carevault over SQLite (embedded default) and PostgreSQL, through one set of
//! portable statements (sqlx's `Any` driver, `$n` placeholders on both). The store sees PHI
//! only as ciphertext and blind-index bytes. Only `carevault-core` depends on this crate.
//!
//! What truly differs between the two engines lives in [`dialect`]: connection pragmas,
//! migration folders and how errors are classified.

mod access;
mod approvals;
mod audit_scan;
pub mod dialect;
mod directory;
mod lite;
mod migrate;
mod records;
mod rows;
mod write;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use access::*;
pub use approvals::*;
pub use audit_scan::{AuditSnapshot, AuditVisitor};
pub use dialect::Backend;
pub use directory::*;
use lite::Arg;
pub use records::*;
pub use rows::*;
use rows::{get, RowRef};
pub use write::WriteTx;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database could not be reached or opened: {0}")]
    Unavailable(String),
    #[error("the database file is corrupted or is not a carevault database: {0}")]
    Corrupt(String),
    #[error("a uniqueness rule was violated: {0}")]
    Conflict(String),
    #[error("the database schema is newer than this program (version {found}, this program knows {known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database error: {0}")]
    Database(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A handle to the database. Cloning shares the pools.
#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    /// The SQLite URL (the audit snapshot opens the file itself); `None` on PostgreSQL.
    url: Option<String>,
    /// SQLite's in-place hot reads (see [`lite`]); `None` on PostgreSQL and in-memory databases.
    lite: Option<std::sync::Arc<lite::Lite>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.backend)
    }
}

impl Store {
    /// Opens `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        // One direct connection first: a pool would retry a broken database until its acquire
        // timeout and report only that; this reports the real cause at once.
        let mut probe = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.map_err(dialect::classify)?;
        dialect::after_connect(backend, &mut probe, READER_CACHE_KIB).await.map_err(dialect::classify)?;
        sqlx::Executor::execute(&mut probe, "SELECT 1").await.map_err(dialect::classify)?;
        let _ = sqlx::Connection::close(probe).await;
        let (read, write) = match backend {
            Backend::Sqlite => {
                let write = pool(url, backend, 1, WRITER_CACHE_KIB).await?;
                // The first connection created the file and switched it to WAL; readers follow.
                let read = pool(url, backend, 4, READER_CACHE_KIB).await?;
                (read, write)
            }
            Backend::Postgres => {
                let p = pool(url, backend, 16, READER_CACHE_KIB).await?;
                (p.clone(), p)
            }
        };
        let lite = (backend == Backend::Sqlite).then(|| lite::sqlite_path(url)).flatten().map(|p| std::sync::Arc::new(lite::Lite::new(p)));
        let url = (backend == Backend::Sqlite).then(|| url.to_string());
        let store = Store { read, write, backend, url, lite };
        migrate::run(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        if let Some(l) = &self.lite {
            l.close();
        }
        self.read.close().await;
        self.write.close().await;
    }

    /// Starts a write transaction. Every write transaction first takes the audit-chain lock
    /// (see [`WriteTx::lock_audit_head`]), which also serializes writers on both engines.
    pub async fn begin(&self) -> Result<WriteTx> {
        WriteTx::begin(&self.write, self.backend).await
    }

    /// Rows of a read every request makes: in place on SQLite ([`lite`]), through the pool on
    /// PostgreSQL. `sql` is portable (`$n` placeholders); `each` decodes a row of either driver.
    pub(crate) async fn hot<T>(&self, sql: &str, args: &[Arg<'_>], mut each: impl FnMut(&RowRef<'_, '_>) -> Result<T>) -> Result<Vec<T>> {
        if let Some(l) = &self.lite {
            return l.query(sql, args, |r| each(&RowRef::Lite(r)));
        }
        let mut q = sqlx::query(sql);
        for a in args {
            q = a.bind(q);
        }
        let rows = q.fetch_all(&self.read).await.map_err(dialect::classify)?;
        rows.iter().map(|r| each(&RowRef::Any(r))).collect()
    }

    /// The access generation: a counter every committed change to accounts, sessions, roles,
    /// assignments or grants moves on (in its own transaction, [`WriteTx::bump_access_generation`]).
    /// Whatever was derived from those rows under an older generation is stale.
    pub async fn access_generation(&self) -> Result<i64> {
        let n = self.hot("SELECT n FROM access_generation WHERE id = 1", &[], |r| get::<i64>(r, "n")).await?;
        // Without its row nothing could ever be seen as stale: fail closed.
        n.into_iter().next().ok_or_else(|| StoreError::Database("the access generation row is missing".into()))
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM store_meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(dialect::classify)?;
        row.map(|r| r.try_get::<String, _>(0)).transpose().map_err(dialect::classify)
    }

    pub async fn keys(&self, purpose: &str) -> Result<Vec<KeyRow>> {
        let rows = sqlx::query("SELECT purpose, version, wrapped, public_key, created_at FROM keys WHERE purpose = $1 ORDER BY version")
            .bind(purpose)
            .fetch_all(&self.read)
            .await
            .map_err(dialect::classify)?;
        rows.iter().map(KeyRow::from_row).collect()
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        self.one_user("SELECT * FROM users WHERE username = $1", username).await
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        let rows = self.hot("SELECT * FROM users WHERE id = $1", &[Arg::S(id)], |r| UserRow::from_row(r)).await?;
        Ok(rows.into_iter().next())
    }

    async fn one_user(&self, sql: &str, arg: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(sql).bind(arg).fetch_optional(&self.read).await.map_err(dialect::classify)?;
        row.as_ref().map(UserRow::from_row).transpose()
    }

    pub async fn users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username").fetch_all(&self.read).await.map_err(dialect::classify)?;
        rows.iter().map(UserRow::from_row).collect()
    }

    pub async fn session(&self, token_hash: &[u8]) -> Result<Option<SessionRow>> {
        let rows = self.hot("SELECT * FROM sessions WHERE token_hash = $1", &[Arg::B(token_hash)], |r| SessionRow::from_row(r)).await?;
        Ok(rows.into_iter().next())
    }

    /// Sessions idle since before `idle_before` or past their absolute expiry at `now`.
    pub async fn expired_sessions(&self, now: i64, idle_before: i64, pending_before: i64) -> Result<Vec<SessionRow>> {
        let rows = sqlx::query(
            "SELECT * FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2 OR (state = 'mfa_pending' AND created_at < $3) LIMIT 500",
        )
        .bind(now)
        .bind(idle_before)
        .bind(pending_before)
        .fetch_all(&self.read)
        .await
        .map_err(dialect::classify)?;
        rows.iter().map(SessionRow::from_row).collect()
    }

    pub async fn patient_current(&self, id: &str) -> Result<Option<PatientVersionRow>> {
        let rows = self
            .hot(
                "SELECT v.* FROM patients p JOIN patient_versions v ON v.patient_id = p.id AND v.version = p.current_version WHERE p.id = $1",
                &[Arg::S(id)],
                |r| PatientVersionRow::from_row(r),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Current versions of `ids`, in the order of `ids` (missing ones are skipped).
    pub async fn patients_current_many(&self, ids: &[String]) -> Result<Vec<PatientVersionRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT v.* FROM patients p JOIN patient_versions v ON v.patient_id = p.id AND v.version = p.current_version WHERE p.id IN ({})",
            placeholders.join(", ")
        );
        let args: Vec<Arg<'_>> = ids.iter().map(|i| Arg::S(i)).collect();
        let mut found = self.hot(&sql, &args, |r| PatientVersionRow::from_row(r)).await?;
        found.sort_by_key(|r| ids.iter().position(|i| *i == r.patient_id));
        Ok(found)
    }

    pub async fn patient_version(&self, id: &str, version: i64) -> Result<Option<PatientVersionRow>> {
        let row = sqlx::query("SELECT * FROM patient_versions WHERE patient_id = $1 AND version = $2")
            .bind(id)
            .bind(version)
            .fetch_optional(&self.read)
            .await
            .map_err(dialect::classify)?;
        row.as_ref().map(PatientVersionRow::from_row).transpose()
    }

    /// All versions of a patient, newest first.
    pub async fn patient_history(&self, id: &str) -> Result<Vec<PatientVersionRow>> {
        let rows = sqlx::query("SELECT * FROM patient_versions WHERE patient_id = $1 ORDER BY version DESC")
            .bind(id)
            .fetch_all(&self.read)
            .await
            .map_err(dialect::classify)?;
        rows.iter().map(PatientVersionRow::from_row).collect()
    }

    /// Ids (sorted) of patients holding any of `tokens` (kind, token): a range of the index's
    /// primary key each, no join.
    pub async fn patients_with_any_token(&self, tokens: &[(i64, Vec<u8>)]) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for (kind, token) in tokens {
            let rows = self
                .hot("SELECT patient_id FROM patient_index WHERE kind = $1 AND token = $2", &[Arg::I(*kind), Arg::B(token)], |r| {
                    get::<String>(r, "patient_id")
                })
                .await?;
            ids.extend(rows);
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Which of `tokens` (all of one `kind`) the index holds already.
    pub async fn taken_tokens(&self, kind: i64, tokens: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let mut taken = Vec::new();
        for chunk in tokens.chunks(400) {
            let list = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let sql = format!("SELECT token FROM patient_index WHERE kind = $1 AND token IN ({list})");
            let mut args = vec![Arg::I(kind)];
            args.extend(chunk.iter().map(|t| Arg::B(t)));
            taken.extend(self.hot(&sql, &args, |r| get::<Vec<u8>>(r, "token")).await?);
        }
        Ok(taken)
    }

    pub async fn patient_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM patients").fetch_one(&self.read).await.map_err(dialect::classify)?;
        row.try_get::<i64, _>(0).map_err(dialect::classify)
    }

    pub async fn has_non_demo_data(&self) -> Result<bool> {
        let row = sqlx::query("SELECT (SELECT COUNT(*) FROM patients WHERE is_demo = 0) + (SELECT COUNT(*) FROM users WHERE is_demo = 0)")
            .fetch_one(&self.read)
            .await
            .map_err(dialect::classify)?;
        Ok(row.try_get::<i64, _>(0).map_err(dialect::classify)? > 0)
    }

    /// Audit events with `seq > after`, ascending, at most `limit`.
    pub async fn audit_events(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(dialect::classify)?;
        rows.iter().map(AuditRow::from_row).collect()
    }

    /// Audit events matching `f`, newest first (by sequence number), at most `limit`. Every
    /// filter is optional; the time range is `from <= at < to` (µs). The patient filter matches
    /// the record's patient column, a resource id equal to the patient id (refusals before
    /// the patient is known carry it only there), or a record that disclosed the patient among
    /// others (`audit_disclosures`).
    pub async fn audit_search(&self, f: &AuditSearch, limit: i64) -> Result<Vec<AuditRow>> {
        let mut sql = String::from("SELECT * FROM audit_events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.actor.is_some() {
            sql.push_str(&format!(" AND actor = {}", next()));
        }
        if f.patient_id.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(
                " AND (patient_id = {a} OR resource_id = {b} OR seq IN (SELECT seq FROM audit_disclosures WHERE patient_id = {c}))"
            ));
        }
        if f.action.is_some() {
            sql.push_str(&format!(" AND action = {}", next()));
        }
        if f.from.is_some() {
            sql.push_str(&format!(" AND at >= {}", next()));
        }
        if f.to.is_some() {
            sql.push_str(&format!(" AND at < {}", next()));
        }
        if f.before_seq.is_some() {
            sql.push_str(&format!(" AND seq < {}", next()));
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", next()));
        let mut q = sqlx::query(&sql);
        if let Some(a) = &f.actor {
            q = q.bind(a.clone());
        }
        if let Some(p) = &f.patient_id {
            q = q.bind(p.clone()).bind(p.clone()).bind(p.clone());
        }
        if let Some(a) = &f.action {
            q = q.bind(a.clone());
        }
        if let Some(t) = f.from {
            q = q.bind(t);
        }
        if let Some(t) = f.to {
            q = q.bind(t);
        }
        if let Some(s) = f.before_seq {
            q = q.bind(s);
        }
        let rows = q.bind(limit).fetch_all(&self.read).await.map_err(dialect::classify)?;
        rows.iter().map(AuditRow::from_row).collect()
    }

    pub async fn audit_head(&self) -> Result<Option<HeadRow>> {
        let row = sqlx::query("SELECT seq, hash, signature, tree_frontier FROM audit_head WHERE id = 1")
            .fetch_optional(&self.read)
            .await
            .map_err(dialect::classify)?;
        row.as_ref().map(HeadRow::from_row).transpose()
    }

    pub async fn audit_checkpoints(&self) -> Result<Vec<CheckpointRow>> {
        self.checkpoints_after(-1).await
    }

    /// Checkpoints with `seq > after`, ascending.
    pub async fn checkpoints_after(&self, after: i64) -> Result<Vec<CheckpointRow>> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, public_key, signature, root_hash, tree_signature FROM audit_checkpoints WHERE seq > $1 ORDER BY seq",
        )
        .bind(after)
        .fetch_all(&self.read)
        .await
        .map_err(dialect::classify)?;
        rows.iter().map(CheckpointRow::from_row).collect()
    }

    /// The newest checkpoint that carries a signed tree head.
    pub async fn latest_tree_head(&self) -> Result<Option<CheckpointRow>> {
        let row = sqlx::query(
            "SELECT seq, hash, at, public_key, signature, root_hash, tree_signature FROM audit_checkpoints \
             WHERE root_hash IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await
        .map_err(dialect::classify)?;
        row.as_ref().map(CheckpointRow::from_row).transpose()
    }

    /// Roots of the stored complete blocks of the audit Merkle tree with `idx < before`.
    pub async fn audit_tree_blocks(&self, before: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        let rows = sqlx::query("SELECT idx, hash FROM audit_tree_blocks WHERE idx < $1 ORDER BY idx")
            .bind(before)
            .fetch_all(&self.read)
            .await
            .map_err(dialect::classify)?;
        rows.iter()
            .map(|r: &AnyRow| {
                Ok((r.try_get::<i64, _>(0).map_err(dialect::classify)?, r.try_get::<Vec<u8>, _>(1).map_err(dialect::classify)?))
            })
            .collect()
    }

    /// The number of stored blocks at or beyond `idx` (blocks of records that do not exist).
    pub async fn audit_tree_blocks_from(&self, idx: i64) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM audit_tree_blocks WHERE idx >= $1")
            .bind(idx)
            .fetch_one(&self.read)
            .await
            .map_err(dialect::classify)?;
        row.try_get::<i64, _>(0).map_err(dialect::classify)
    }

    /// Patient versions sealed under a key older than `below`, oldest key first.
    pub async fn patient_versions_below_key(&self, below: i64, limit: i64) -> Result<Vec<PatientVersionRow>> {
        let rows = sqlx::query("SELECT * FROM patient_versions WHERE key_version < $1 ORDER BY key_version, patient_id, version LIMIT $2")
            .bind(below)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(dialect::classify)?;
        rows.iter().map(PatientVersionRow::from_row).collect()
    }

    pub async fn users_below_key(&self, below: i64, limit: i64) -> Result<Vec<UserRow>> {
        let rows = sqlx::query("SELECT * FROM users WHERE key_version < $1 ORDER BY id LIMIT $2")
            .bind(below)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(dialect::classify)?;
        rows.iter().map(UserRow::from_row).collect()
    }

    /// (table, key version, rows) for every table holding sealed values re-encrypted on rotation.
    pub async fn key_version_counts(&self) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT 'patient_versions', key_version, COUNT(*) FROM patient_versions GROUP BY key_version \
             UNION ALL SELECT 'users', key_version, COUNT(*) FROM users GROUP BY key_version \
             UNION ALL SELECT 'allergies', key_version, COUNT(*) FROM allergies GROUP BY key_version \
             UNION ALL SELECT 'records', key_version, COUNT(*) FROM records GROUP BY key_version ORDER BY 1, 2",
        )
        .fetch_all(&self.read)
        .await
        .map_err(dialect::classify)?;
        rows.iter()
            .map(|r: &AnyRow| {
                Ok((
                    r.try_get(0).map_err(dialect::classify)?,
                    r.try_get(1).map_err(dialect::classify)?,
                    r.try_get(2).map_err(dialect::classify)?,
                ))
            })
            .collect()
    }
}

#[cfg(feature = "test-support")]
impl Store {
    /// Runs statements outside any write transaction (fault-injection tests only).
    pub async fn execute_for_tests(&self, sql: &str) -> Result<()> {
        sqlx::Executor::execute(&self.read, sql).await.map_err(dialect::classify)?;
        Ok(())
    }
}

/// SQLite page cache of the writer's connection and of each pooled reader (KiB).
const WRITER_CACHE_KIB: i64 = 16 * 1024;
const READER_CACHE_KIB: i64 = 4 * 1024;

async fn pool(url: &str, backend: Backend, max: u32, cache_kib: i64) -> Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _meta| Box::pin(async move { dialect::after_connect(backend, conn, cache_kib).await }))
        .connect(url)
        .await
        .map_err(dialect::classify)
}
