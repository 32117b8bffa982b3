//! Versioned, plain-SQL migrations applied on start, one folder per engine.

use sqlx::{Executor, Row};

use crate::dialect::{classify, migrations};
use crate::{Result, Store, StoreError};

async fn applied_versions<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E) -> Result<Vec<i64>> {
    match sqlx::query("SELECT version FROM schema_migrations").fetch_all(e).await {
        Ok(rows) => rows.iter().map(|r| r.try_get::<i64, _>(0).map_err(classify)).collect(),
        Err(err) => {
            let text = err.to_string();
            // A new database: the table does not exist yet (SQLite / PostgreSQL wording).
            if text.contains("no such table") || text.contains("does not exist") {
                Ok(Vec::new())
            } else {
                Err(classify(err))
            }
        }
    }
}

pub(crate) async fn run(store: &Store) -> Result<()> {
    let known = migrations(store.backend);
    let newest_known = known.iter().map(|m| m.0).max().unwrap_or(0);
    // Read first, without a write transaction: an up-to-date store (the common case, and every
    // CLI command next to a running server) takes no write lock at all.
    let applied = applied_versions(&store.read).await?;
    if let Some(found) = applied.iter().copied().max().filter(|v| *v > newest_known) {
        return Err(StoreError::SchemaTooNew { found, known: newest_known });
    }
    if known.iter().all(|(v, _, _)| applied.contains(v)) {
        return Ok(());
    }
    let mut tx = store.write.begin().await.map_err(classify)?;
    // A write first, so the transaction holds the write lock before it reads (SQLite cannot
    // upgrade a read snapshot that another process has moved past).
    tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)").await.map_err(classify)?;
    let applied = applied_versions(&mut *tx).await?;
    for (version, name, sql) in known {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(version, name, "applying migration");
        // Comment lines are dropped before splitting, so a ';' in a comment cannot split a statement.
        let code: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        for stmt in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            tx.execute(stmt).await.map_err(classify)?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(*version)
            .bind(*name)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    sqlx::query("INSERT INTO audit_head (id, seq, hash, signature, lock_counter) VALUES (1, 0, $1, NULL, 0) ON CONFLICT (id) DO NOTHING")
        .bind(vec![0u8; 32])
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    tx.commit().await.map_err(classify)
}

#[cfg(test)]
mod tests {
    use crate::dialect::migrations;
    use crate::Backend;

    /// The two migration folders describe the same schema: they differ only in the name of
    /// the binary type and SQLite's storage clause `WITHOUT ROWID`.
    #[test]
    fn sqlite_and_postgres_schemas_match() {
        let s = migrations(Backend::Sqlite);
        let p = migrations(Backend::Postgres);
        assert_eq!(s.len(), p.len());
        for ((sv, sn, ssql), (pv, pn, psql)) in s.iter().zip(p) {
            assert_eq!((sv, sn), (pv, pn));
            let norm = |x: &str| x.replace("BYTEA", "BLOB").replace("(PostgreSQL)", "(SQLite)").replace(") WITHOUT ROWID;", ");");
            assert_eq!(norm(ssql), norm(psql), "migration {sv} differs beyond type names");
        }
    }
}
