//! SQLite's hot reads, run in place.
//!
//! sqlx's SQLite driver runs each connection on a thread of its own and hands every statement,
//! and every row of its answer, across a channel: on the read path a profile showed a quarter of
//! all samples in futex wake-ups. The reads a request makes on every call (the access
//! generation, a patient's scope and current version, the care relationship, the search index)
//! therefore run here instead: on a small set of read-only rusqlite connections, on the calling
//! thread, through each connection's prepared-statement cache. Such a read is an indexed lookup
//! of a few microseconds in the page cache; WAL readers never wait for the writer. No thread
//! hand-off, no per-row message, no allocation per column.
//!
//! Every statement is the same portable SQL the PostgreSQL side runs through sqlx (`$n`
//! placeholders, bound here by name), and the rows are decoded by the same `from_row`
//! functions (see [`crate::rows::Cols`]).
//!
//! A connection that reports an I/O fault is closed and opened again on its next use.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// How many connections: the runtime's worker threads plus a spare for blocking threads.
const CONNECTIONS: usize = 3;
/// Page cache per connection (KiB).
const CACHE_KIB: i64 = 8192;
const PARAMS: [&str; 16] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"];

/// A bound value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    I(i64),
    S(&'a str),
    B(&'a [u8]),
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Arg::I(v) => v.to_sql(),
            Arg::S(s) => s.to_sql(),
            Arg::B(b) => b.to_sql(),
        }
    }
}

impl<'q> Arg<'q> {
    /// Binds the value to a sqlx query (the PostgreSQL side of the same statement).
    pub(crate) fn bind(
        self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        match self {
            Arg::I(v) => q.bind(v),
            Arg::S(s) => q.bind(s),
            Arg::B(b) => q.bind(b),
        }
    }
}

/// The read-only connections of one database file.
pub(crate) struct Lite {
    path: PathBuf,
    conns: Box<[Mutex<Option<Connection>>]>,
}

impl std::fmt::Debug for Lite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lite({})", self.path.display())
    }
}

/// Maps a rusqlite error to a store error (faults of the file or the machine are transient).
pub(crate) fn error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) =>
        {
            StoreError::Corrupt(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::OutOfMemory
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// The file path of a `sqlite://PATH?…` URL, when it names an existing file.
pub(crate) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path)).filter(|p| p.is_file())
}

/// A read-only connection with the store's busy timeout.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(error)?;
    c.busy_timeout(std::time::Duration::from_secs(15)).map_err(error)?;
    Ok(c)
}

impl Lite {
    pub(crate) fn new(path: PathBuf) -> Lite {
        Lite { path, conns: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect() }
    }

    /// A free connection slot; when every one is busy, waits for the first (a read holds it
    /// for microseconds).
    fn slot(&self) -> MutexGuard<'_, Option<Connection>> {
        for m in self.conns.iter() {
            if let Ok(g) = m.try_lock() {
                return g;
            }
        }
        match self.conns[0].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Runs `sql` with `args` (bound to `$1`, `$2`, … by name) and decodes every row with `each`.
    pub(crate) fn query<T>(&self, sql: &str, args: &[Arg<'_>], mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<T>) -> Result<Vec<T>> {
        let mut slot = self.slot();
        if slot.is_none() {
            let c = open_read_only(&self.path)?;
            c.set_prepared_statement_cache_capacity(64);
            c.execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB}")).map_err(error)?;
            *slot = Some(c);
        }
        let Some(conn) = slot.as_ref() else { return Err(StoreError::Unavailable("no SQLite connection".into())) };
        let result = run(conn, sql, args, &mut each);
        if matches!(result, Err(StoreError::Unavailable(_) | StoreError::Corrupt(_))) {
            // Start over with a fresh connection next time.
            *slot = None;
        }
        result
    }

    /// Closes the connections (the store is closing).
    pub(crate) fn close(&self) {
        for m in self.conns.iter() {
            match m.lock() {
                Ok(mut g) => *g = None,
                Err(poisoned) => *poisoned.into_inner() = None,
            }
        }
    }
}

fn run<T>(conn: &Connection, sql: &str, args: &[Arg<'_>], each: &mut impl FnMut(&rusqlite::Row<'_>) -> Result<T>) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(error)?;
    for (i, a) in args.iter().enumerate() {
        let idx = match PARAMS.get(i) {
            Some(name) => stmt.parameter_index(name),
            None => stmt.parameter_index(&format!("${}", i + 1)),
        };
        if let Some(idx) = idx.map_err(error)? {
            stmt.raw_bind_parameter(idx, a).map_err(error)?;
        }
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(error)? {
        out.push(each(r)?);
    }
    Ok(out)
}
