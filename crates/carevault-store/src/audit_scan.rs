//! A consistent, read-only view of the audit log for verification: the chain head, the
//! checkpoints, the stored tree blocks and every record, all read inside one read transaction,
//! so a server writing meanwhile can neither show the verifier a head newer than the records it
//! walked nor the reverse.
//!
//! On SQLite the view is a rusqlite connection of its own, driven on a blocking thread: records
//! are stepped in place with borrowed columns (no per-row hand-off between threads and no
//! per-column allocation, which is what limits sqlx's driver here). On PostgreSQL it is one
//! pooled connection in a `REPEATABLE READ READ ONLY` transaction, read in pages.

use std::ops::ControlFlow;
use std::path::Path;

use sqlx::pool::PoolConnection;
use sqlx::{Any, Executor, Row};

use crate::dialect::{classify, Backend};
use crate::lite::{error as lite, sqlite_path};
use crate::rows::{AuditRow, AuditRowRef, CheckpointRow, HeadRow};
use crate::{Result, Store, StoreError};

const COLUMNS: &str =
    "seq, event_id, at, actor, session, source_ip, action, outcome, resource_type, resource_id, patient_id, purpose, details, review_flags, disclosed, prev_hash, hash";

enum Conn {
    Sqlite(Option<rusqlite::Connection>),
    Pooled(PoolConnection<Any>),
}

/// Receives the records of a scan, in sequence order, on the scanning thread.
pub trait AuditVisitor: Send + 'static {
    /// `Break` stops the scan.
    fn visit(&mut self, r: AuditRowRef<'_>) -> ControlFlow<()>;
}

/// See the module documentation. Dropping it ends the read transaction.
pub struct AuditSnapshot {
    conn: Conn,
}

fn open_sqlite(path: &Path) -> Result<rusqlite::Connection> {
    let c = crate::lite::open_read_only(path)?;
    // Read the file through a memory map (no copy per page) and with a larger cache.
    c.execute_batch("PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -65536; BEGIN").map_err(lite)?;
    Ok(c)
}

fn bytes<'a>(r: &'a rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'a [u8]>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(b),
        ValueRef::Integer(_) | ValueRef::Real(_) => {
            return Err(rusqlite::Error::InvalidColumnType(i, String::new(), rusqlite::types::Type::Integer))
        }
    })
}

fn required<'a>(r: &'a rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'a [u8]> {
    bytes(r, i)?.ok_or_else(|| rusqlite::Error::InvalidColumnType(i, String::new(), rusqlite::types::Type::Null))
}

fn row_ref<'a>(r: &'a rusqlite::Row<'_>) -> rusqlite::Result<AuditRowRef<'a>> {
    Ok(AuditRowRef {
        seq: r.get(0)?,
        event_id: required(r, 1)?,
        at: r.get(2)?,
        actor: required(r, 3)?,
        session: bytes(r, 4)?,
        source_ip: bytes(r, 5)?,
        action: required(r, 6)?,
        outcome: required(r, 7)?,
        resource_type: bytes(r, 8)?,
        resource_id: bytes(r, 9)?,
        patient_id: bytes(r, 10)?,
        purpose: bytes(r, 11)?,
        details: bytes(r, 12)?,
        review_flags: bytes(r, 13)?,
        disclosed: bytes(r, 14)?,
        prev_hash: required(r, 15)?,
        hash: required(r, 16)?,
    })
}

impl Store {
    /// Opens a consistent read-only view of the audit log. Its first read fixes the snapshot.
    pub async fn audit_snapshot(&self) -> Result<AuditSnapshot> {
        if self.backend == Backend::Sqlite {
            if let Some(path) = self.url.as_deref().and_then(sqlite_path) {
                let c =
                    tokio::task::spawn_blocking(move || open_sqlite(&path)).await.map_err(|e| StoreError::Unavailable(e.to_string()))??;
                return Ok(AuditSnapshot { conn: Conn::Sqlite(Some(c)) });
            }
        }
        let mut c = self.read.acquire().await.map_err(classify)?;
        let begin = match self.backend {
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Backend::Sqlite => "BEGIN",
        };
        (&mut *c).execute(begin).await.map_err(classify)?;
        Ok(AuditSnapshot { conn: Conn::Pooled(c) })
    }
}

impl Drop for AuditSnapshot {
    fn drop(&mut self) {
        // A pooled connection must not go back with its transaction open.
        if let Conn::Pooled(c) = &mut self.conn {
            c.close_on_drop();
        }
    }
}

impl AuditSnapshot {
    /// Runs `f` on the SQLite connection off the async runtime.
    async fn on_sqlite<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let Conn::Sqlite(slot) = &mut self.conn else {
            return Err(StoreError::Database("not a SQLite snapshot".into()));
        };
        let c = slot.take().ok_or_else(|| StoreError::Unavailable("the snapshot's connection was lost".into()))?;
        let (c, r) = tokio::task::spawn_blocking(move || {
            let r = f(&c);
            (c, r)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        *slot = Some(c);
        r.map_err(lite)
    }

    async fn pooled_rows(&mut self, sql: &str) -> Result<Vec<sqlx::any::AnyRow>> {
        let Conn::Pooled(c) = &mut self.conn else {
            return Err(StoreError::Database("not a pooled snapshot".into()));
        };
        sqlx::query(sql).fetch_all(&mut **c).await.map_err(classify)
    }

    pub async fn head(&mut self) -> Result<Option<HeadRow>> {
        const SQL: &str = "SELECT seq, hash, signature, tree_frontier FROM audit_head WHERE id = 1";
        if let Conn::Pooled(_) = self.conn {
            return self.pooled_rows(SQL).await?.first().map(HeadRow::from_row).transpose();
        }
        self.on_sqlite(|c| {
            let mut st = c.prepare(SQL)?;
            let mut rows = st.query([])?;
            match rows.next()? {
                None => Ok(None),
                Some(r) => Ok(Some(HeadRow { seq: r.get(0)?, hash: r.get(1)?, signature: r.get(2)?, tree_frontier: r.get(3)? })),
            }
        })
        .await
    }

    pub async fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>> {
        const SQL: &str = "SELECT seq, hash, at, public_key, signature, root_hash, tree_signature FROM audit_checkpoints ORDER BY seq";
        if let Conn::Pooled(_) = self.conn {
            return self.pooled_rows(SQL).await?.iter().map(CheckpointRow::from_row).collect();
        }
        self.on_sqlite(|c| {
            let mut st = c.prepare(SQL)?;
            let rows = st.query_map([], |r| {
                Ok(CheckpointRow {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                    at: r.get(2)?,
                    public_key: r.get(3)?,
                    signature: r.get(4)?,
                    root_hash: r.get(5)?,
                    tree_signature: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Stored roots of complete tree blocks, by block index.
    pub async fn tree_blocks(&mut self) -> Result<Vec<(i64, Vec<u8>)>> {
        const SQL: &str = "SELECT idx, hash FROM audit_tree_blocks ORDER BY idx";
        if let Conn::Pooled(_) = self.conn {
            return self
                .pooled_rows(SQL)
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>(0).map_err(classify)?, r.try_get::<Vec<u8>, _>(1).map_err(classify)?)))
                .collect();
        }
        self.on_sqlite(|c| {
            let mut st = c.prepare(SQL)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    /// Hands every row of the disclosure index (`audit_disclosures`: record, patient id) to
    /// `f` with `state`, in no particular order; returns the state.
    pub async fn scan_disclosures<S: Send + 'static>(&mut self, mut state: S, f: fn(&mut S, i64, &[u8])) -> Result<S> {
        const SQL: &str = "SELECT seq, patient_id FROM audit_disclosures";
        if let Conn::Sqlite(_) = self.conn {
            return self
                .on_sqlite(move |c| {
                    let mut st = c.prepare(SQL)?;
                    let mut rows = st.query([])?;
                    while let Some(r) = rows.next()? {
                        f(&mut state, r.get(0)?, required(r, 1)?);
                    }
                    Ok(state)
                })
                .await;
        }
        let Conn::Pooled(c) = &mut self.conn else {
            return Err(StoreError::Database("not a pooled snapshot".into()));
        };
        let (mut seq, mut pid) = (i64::MIN, String::new());
        loop {
            let page = sqlx::query(
                "SELECT seq, patient_id FROM audit_disclosures WHERE seq > $1 OR (seq = $2 AND patient_id > $3) \
                 ORDER BY seq, patient_id LIMIT 5000",
            )
            .bind(seq)
            .bind(seq)
            .bind(pid.clone())
            .fetch_all(&mut **c)
            .await
            .map_err(classify)?;
            if page.is_empty() {
                return Ok(state);
            }
            for r in &page {
                seq = r.try_get::<i64, _>(0).map_err(classify)?;
                pid = r.try_get::<String, _>(1).map_err(classify)?;
                f(&mut state, seq, pid.as_bytes());
            }
        }
    }

    /// Hands every record, in sequence order, to `v` until it says stop; returns `v`.
    pub async fn scan_events<V: AuditVisitor>(mut self, mut v: V) -> Result<V> {
        if let Conn::Sqlite(_) = self.conn {
            return self
                .on_sqlite(move |c| {
                    let mut st = c.prepare(&format!("SELECT {COLUMNS} FROM audit_events ORDER BY seq"))?;
                    let mut rows = st.query([])?;
                    while let Some(r) = rows.next()? {
                        if v.visit(row_ref(r)?).is_break() {
                            break;
                        }
                    }
                    Ok(v)
                })
                .await;
        }
        let mut after = i64::MIN;
        loop {
            let page = self.pooled_rows(&format!("SELECT {COLUMNS} FROM audit_events WHERE seq > {after} ORDER BY seq LIMIT 5000")).await?;
            if page.is_empty() {
                return Ok(v);
            }
            for r in &page {
                let row = AuditRow::from_row(r)?;
                after = row.seq;
                if v.visit(row.as_ref()).is_break() {
                    return Ok(v);
                }
            }
        }
    }
}
