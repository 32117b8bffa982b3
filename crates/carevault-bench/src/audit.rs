//! Scenarios 3 (`verify`: the audit log verified against raw SHA-256 over the same bytes) and 7
//! (`proofs`: tree heads, inclusion and consistency proofs on a large log).

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::{baseline_pool, figure, pick, progress, Bench, SEED_TASKS, TREAT};

const AUDIT_TEXT: &[&str] =
    &["event_id", "actor", "session", "source_ip", "action", "outcome", "resource_type", "resource_id", "patient_id", "purpose"];
const AUDIT_BLOB: &[&str] = &["details", "prev_hash", "hash"];

/// Feeds the bytes of every column of an audit row to `f` (integers big-endian, NULLs skipped)
/// and returns its sequence number.
fn audit_row_bytes(row: &AnyRow, mut f: impl FnMut(&[u8])) -> Result<i64> {
    let seq: i64 = row.try_get("seq")?;
    let at: i64 = row.try_get("at")?;
    f(&seq.to_be_bytes());
    f(&at.to_be_bytes());
    for col in AUDIT_TEXT {
        let v: Option<String> = row.try_get(*col)?;
        if let Some(s) = v {
            f(s.as_bytes());
        }
    }
    for col in AUDIT_BLOB {
        let v: Option<Vec<u8>> = row.try_get(*col)?;
        if let Some(b) = v {
            f(&b);
        }
    }
    Ok(seq)
}

/// Every audit row, in pages of 5000 as the verifier reads them, handed to `f`.
async fn each_audit_row(pool: &AnyPool, mut f: impl FnMut(&AnyRow) -> Result<i64>) -> Result<()> {
    let mut after = 0i64;
    loop {
        let rows = sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(5000i64)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            after = f(row)?;
        }
    }
}

/// Reads every audit row with sqlx and chains SHA-256 over the bytes of all its columns (one
/// digest per row, over the previous digest and the row). Returns (records, bytes hashed).
async fn hash_audit(pool: &AnyPool) -> Result<(i64, u64)> {
    let mut prev = [0u8; 32];
    let mut records = 0i64;
    let mut bytes = 0u64;
    each_audit_row(pool, |row| {
        let mut h = Sha256::new();
        h.update(prev);
        let seq = audit_row_bytes(row, |b| {
            h.update(b);
            bytes += b.len() as u64;
        })?;
        prev = h.finalize().into();
        records += 1;
        Ok(seq)
    })
    .await?;
    black_box(prev);
    Ok((records, bytes))
}

/// The same chained SHA-256 over the same bytes already in memory: the hashing floor.
async fn sha256_in_memory_mb_s(pool: &AnyPool) -> Result<f64> {
    let mut rows: Vec<Vec<u8>> = Vec::new();
    each_audit_row(pool, |row| {
        let mut buf = Vec::new();
        let seq = audit_row_bytes(row, |b| buf.extend_from_slice(b))?;
        rows.push(buf);
        Ok(seq)
    })
    .await?;
    let bytes: usize = rows.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut runs = 0u32;
    while runs == 0 || start.elapsed() < Duration::from_secs(1) {
        let mut prev = [0u8; 32];
        for r in &rows {
            let mut h = Sha256::new();
            h.update(prev);
            h.update(r);
            prev = h.finalize().into();
        }
        black_box(prev);
        runs += 1;
    }
    Ok(bytes as f64 * f64::from(runs) / 1e6 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Repeats `f` until `secs` have passed (at least once); returns (runs, total time, last result).
async fn repeat<T, Fut: Future<Output = Result<T>>>(secs: u64, mut f: impl FnMut() -> Fut) -> Result<(u32, Duration, T)> {
    let start = Instant::now();
    let mut runs = 0u32;
    loop {
        let v = f().await?;
        runs += 1;
        if start.elapsed() >= Duration::from_secs(secs) {
            return Ok((runs, start.elapsed(), v));
        }
    }
}

pub(crate) async fn bench_verify(b: &Bench) -> Result<()> {
    let pool = baseline_pool(&b.tv).await?;
    // Warm the page cache for both sides alike.
    let (records, bytes) = hash_audit(&pool).await?;
    progress(format!("verify: {records} audit records, {:.1} MB of column bytes", bytes as f64 / 1e6));

    let (core_runs, core_time, report) = repeat(b.secs, || async { Ok(b.tv.vault.verify_audit().await?) }).await?;
    if !report.intact() {
        progress(format!("  WARNING the audit log did not verify: {:?}", report.first_failure()));
    }
    ensure!(report.records == records, "verify_audit saw {} records, the baseline {records}", report.records);
    progress(format!(
        "  verify_audit: {core_runs} runs in {:.2} s ({} checkpoints in the database, {} in the file, intact: {})",
        core_time.as_secs_f64(),
        report.checkpoints_in_database,
        report.checkpoints_in_file,
        report.intact()
    ));
    let (plain_runs, plain_time, (plain_records, _)) = repeat(b.secs, || hash_audit(&pool)).await?;
    ensure!(plain_records == records, "the audit log changed during the benchmark");
    progress(format!("  raw SHA-256: {plain_runs} runs in {:.2} s", plain_time.as_secs_f64()));
    let in_memory = sha256_in_memory_mb_s(&pool).await?;
    progress(format!("  raw SHA-256 over the same bytes already in memory: {in_memory:.0} MB/s"));

    let core_s = core_time.as_secs_f64() / f64::from(core_runs);
    let plain_s = plain_time.as_secs_f64() / f64::from(plain_runs);
    // Against the physical floor: raw SHA-256 over the same bytes in memory.
    figure("verify.bytes", bytes as f64 / 1e6 / core_s, "MB/s", in_memory);
    // Against reading the same rows from the store and hashing them.
    figure("verify.records", records as f64 / core_s, "records/s", records as f64 / plain_s);
    figure("verify.bytes_read_and_hashed", bytes as f64 / 1e6 / core_s, "MB/s", bytes as f64 / 1e6 / plain_s);
    pool.close().await;
    Ok(())
}

/// Writes `n` audited reads with [`SEED_TASKS`] concurrent tasks (an audit log to verify).
pub(crate) async fn write_reads(b: &Bench, ids: Arc<Vec<String>>, n: usize) -> Result<()> {
    progress(format!("writing {n} audited reads"));
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(SEED_TASKS);
    for _ in 0..SEED_TASKS {
        let vault = b.tv.vault.clone();
        let actor = b.actor.clone();
        let ids = ids.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                black_box(vault.read_patient(&actor, TREAT, pick(&ids, i as u64)?).await?);
            }
        }));
    }
    for h in handles {
        h.await.context("read task failed")??;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7. proofs

/// A plain lookup of one audit record by sequence number on a fresh connection: what any proof
/// needs at the least (open the store, read a row).
async fn plain_lookup(b: &Bench, seq: i64) -> Result<Duration> {
    let start = Instant::now();
    let pool = baseline_pool(&b.tv).await?;
    let row = sqlx::query("SELECT * FROM audit_events WHERE seq = $1").bind(seq).fetch_one(&pool).await?;
    black_box(row.try_get::<Vec<u8>, _>("hash")?);
    pool.close().await;
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// Sizes and times of tree heads and proofs on a log of `records` records, and `audit verify`
/// on it.
pub(crate) async fn bench_proofs(b: &Bench, ids: Arc<Vec<String>>, records: usize) -> Result<()> {
    let have = b.tv.vault.verify_audit().await?.records as usize;
    if records > have {
        write_reads(b, ids, records - have).await?;
    }
    bench_verify(b).await?;
    let start = Instant::now();
    let head = b.tv.vault.tree_head().await?;
    let head_ms = start.elapsed().as_secs_f64() * 1000.0;
    let n = head.tree_size;
    progress(format!("proofs: signed tree head at size {n} in {head_ms:.1} ms"));
    let dir = b.tv.data_dir();
    let url = b.tv.backend.vault_url();
    let (mut inc, mut con, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let (mut inc_hashes, mut inc_bytes, mut con_hashes, mut con_bytes) = (0usize, 0usize, 0usize, 0usize);
    const SAMPLES: u64 = 25;
    for i in 0..SAMPLES {
        // Spread over the log, away from the ends.
        let seq = 1 + (n * (2 * i + 1) / (2 * SAMPLES)) as i64;
        let start = Instant::now();
        let p = carevault_core::prove_inclusion_at(&dir, url.as_deref(), seq, None).await?.map_err(|e| anyhow::anyhow!("{e}"))?;
        inc.push(start.elapsed());
        inc_hashes = inc_hashes.max(p.audit_path.len());
        inc_bytes = inc_bytes.max(p.to_json().to_string().len());
        let from = (seq as u64).max(1);
        let start = Instant::now();
        let c = carevault_core::prove_consistency_at(&dir, url.as_deref(), from, None).await?.map_err(|e| anyhow::anyhow!("{e}"))?;
        con.push(start.elapsed());
        con_hashes = con_hashes.max(c.proof.len());
        con_bytes = con_bytes.max(c.to_json().to_string().len());
        plain.push(plain_lookup(b, seq).await?);
    }
    let log2 = (n as f64).log2().ceil();
    progress(format!(
        "proofs: {SAMPLES} inclusion and {SAMPLES} consistency proofs at tree size {n}, each from a freshly opened store (as the CLI does)"
    ));
    let plain_ms = median(plain);
    figure("proof.inclusion.time", median(inc), "ms", plain_ms);
    figure("proof.consistency.time", median(con), "ms", plain_ms);
    figure("proof.inclusion.hashes", inc_hashes as f64, "hashes", log2);
    figure("proof.inclusion.json", inc_bytes as f64, "bytes", log2 * 32.0);
    figure("proof.consistency.hashes", con_hashes as f64, "hashes", 2.0 * log2);
    figure("proof.consistency.json", con_bytes as f64, "bytes", 2.0 * log2 * 32.0);
    figure("audit.head.time", head_ms, "ms", plain_ms);
    Ok(())
}
