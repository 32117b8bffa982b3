//! Scenario 2 (`search`): patient search by family-name prefix through the blind index, against
//! a plaintext table with an index on the family name.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};

use crate::people::Person;
use crate::{figure, file_mb, measure, pick, plain_writer, progress, Bench, CONCURRENT, PAGE, PLAIN_BATCH, READ_POOL, TREAT};

/// The plaintext baseline: (id, family, given, birth_date) with an index on family, in its own
/// SQLite file, inserted with the store's durability settings in batches the size of the audit
/// writer's largest batch. Returns the read pool and the time the inserts took.
async fn plain_table(b: &Bench, ids: &[String]) -> Result<(AnyPool, Duration)> {
    let path = b.tv.data_dir().join("plain-baseline.db");
    let write = plain_writer(&path).await?;
    write
        .execute("CREATE TABLE plain_patients (id TEXT PRIMARY KEY, family TEXT NOT NULL, given TEXT NOT NULL, birth_date TEXT NOT NULL)")
        .await?;
    write.execute("CREATE INDEX plain_patients_family ON plain_patients (family)").await?;
    let rows: Vec<(String, String, String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let p = Person::generate(i);
            (id.clone(), p.family_key(), p.given.join(" "), p.birth)
        })
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(PLAIN_BATCH) {
        let mut tx = write.begin().await?;
        for (id, family, given, birth) in chunk {
            sqlx::query("INSERT INTO plain_patients (id, family, given, birth_date) VALUES ($1, $2, $3, $4)")
                .bind(id.as_str())
                .bind(family.as_str())
                .bind(given.as_str())
                .bind(birth.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    let elapsed = start.elapsed();
    write.close().await;
    let read = AnyPoolOptions::new()
        .max_connections(READ_POOL)
        .connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .context("opening the plaintext baseline database")?;
    Ok((read, elapsed))
}

/// `[prefix, prefix with its last letter incremented)`: the rows whose family starts with prefix.
fn prefix_range(prefix: &str) -> Result<(String, String)> {
    let mut chars: Vec<char> = prefix.chars().collect();
    let last = chars.pop().context("empty prefix")?;
    let bumped = char::from_u32(u32::from(last) + 1).context("prefix ends in the last code point")?;
    chars.push(bumped);
    Ok((prefix.to_string(), chars.into_iter().collect()))
}

/// Family-name prefixes (3 and 4 letters, alternating) of the first seeded patients.
fn search_prefixes(n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in 0..n.min(400) {
        let f = Person::generate(i).family_key();
        let len = if i % 2 == 0 { 3 } else { 4 };
        let p: String = f.chars().take(len).collect();
        if p.chars().count() == len && !out.contains(&p) {
            out.push(p);
        }
        if out.len() >= 64 {
            break;
        }
    }
    out
}

async fn plain_search(pool: &AnyPool, prefix: &str) -> Result<(i64, usize)> {
    let (lo, hi) = prefix_range(prefix)?;
    let rows =
        sqlx::query("SELECT id, family, given, birth_date FROM plain_patients WHERE family >= $1 AND family < $2 ORDER BY id LIMIT $3")
            .bind(lo.as_str())
            .bind(hi.as_str())
            .bind(i64::from(PAGE))
            .fetch_all(pool)
            .await?;
    let mut n = 0usize;
    for r in &rows {
        for col in ["id", "family", "given", "birth_date"] {
            let s: String = r.try_get(col)?;
            n += black_box(s).len();
        }
    }
    black_box(n);
    let total: i64 = sqlx::query("SELECT COUNT(*) FROM plain_patients WHERE family >= $1 AND family < $2")
        .bind(lo.as_str())
        .bind(hi.as_str())
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    Ok((total, rows.len()))
}

fn search_params(prefix: &str) -> Vec<(String, String)> {
    vec![("family".to_string(), prefix.to_string()), ("_count".to_string(), PAGE.to_string())]
}

pub(crate) async fn bench_search(b: &Bench, ids: &[String], seed_time: Duration) -> Result<()> {
    let n = ids.len();
    progress(format!("search: building the plaintext baseline table ({n} rows)"));
    let (pool, plain_time) = plain_table(b, ids).await?;
    let seed_rate = n as f64 / seed_time.as_secs_f64().max(1e-9);
    let plain_rate = n as f64 / plain_time.as_secs_f64().max(1e-9);
    progress(format!("  seeding: core {n} in {:.1} s, plain {n} in {:.2} s", seed_time.as_secs_f64(), plain_time.as_secs_f64()));
    let dir = b.tv.data_dir();
    progress(format!(
        "  on disk: carevault.db {:.0} MB (+ WAL {:.0} MB), plain-baseline.db {:.1} MB",
        file_mb(&dir.join("carevault.db")),
        file_mb(&dir.join("carevault.db-wal")),
        file_mb(&dir.join("plain-baseline.db"))
    ));
    figure("search.seed", seed_rate, "patients/s", plain_rate);

    let prefixes = Arc::new(search_prefixes(n));
    ensure!(!prefixes.is_empty(), "no search prefixes");
    // Both sides must answer the same question: compare the totals once per prefix.
    let mut mismatches = 0usize;
    let mut hits = 0i64;
    for p in prefixes.iter() {
        let page = b.tv.vault.search_patients(&b.actor, TREAT, &search_params(p)).await?;
        let (total, returned) = plain_search(&pool, p).await?;
        hits += total;
        if i64::try_from(page.total).unwrap_or(-1) != total || page.records.len() != returned {
            mismatches += 1;
            progress(format!(
                "  WARNING prefix '{p}': core total {} (page {}), plain total {total} (page {returned})",
                page.total,
                page.records.len()
            ));
        }
    }
    progress(format!(
        "  {} prefixes (3-4 letters), {:.0} matching patients per prefix on average, {mismatches} mismatches",
        prefixes.len(),
        hits as f64 / prefixes.len() as f64
    ));

    let core_op = {
        let vault = b.tv.vault.clone();
        let actor = b.actor.clone();
        let prefixes = prefixes.clone();
        Arc::new(move |_t: usize, i: u64| {
            let vault = vault.clone();
            let actor = actor.clone();
            let prefixes = prefixes.clone();
            async move {
                let p = pick(&prefixes, i)?;
                let page = vault.search_patients(&actor, TREAT, &search_params(p)).await?;
                black_box(page);
                Ok(())
            }
        })
    };
    let plain_op = {
        let pool = pool.clone();
        let prefixes = prefixes.clone();
        Arc::new(move |_t: usize, i: u64| {
            let pool = pool.clone();
            let prefixes = prefixes.clone();
            async move {
                let p = pick(&prefixes, i)?;
                black_box(plain_search(&pool, p).await?);
                Ok(())
            }
        })
    };
    let core = measure("search.seq core", 1, b.secs, core_op.clone()).await?;
    let plain = measure("search.seq plain", 1, b.secs, plain_op.clone()).await?;
    figure("search.seq", core.rate(), "searches/s", plain.rate());
    let core = measure("search.c32 core", CONCURRENT, b.secs, core_op).await?;
    let plain = measure("search.c32 plain", CONCURRENT, b.secs, plain_op).await?;
    figure("search.c32", core.rate(), "searches/s", plain.rate());
    pool.close().await;
    Ok(())
}
