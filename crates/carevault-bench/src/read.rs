//! Scenario 1 (`read`): `Vault::read_patient` against a plain `SELECT` of the same row.

use std::hint::black_box;
use std::sync::Arc;

use anyhow::Result;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{baseline_pool, figure, measure, pick, progress, Bench, CONCURRENT, TREAT};

/// Decodes every column of a `patient_versions` row, as the store does.
fn touch_version_row(row: &AnyRow) -> Result<usize> {
    let id: String = row.try_get("patient_id")?;
    let version: i64 = row.try_get("version")?;
    let recorded: i64 = row.try_get("recorded_at")?;
    let kv: i64 = row.try_get("key_version")?;
    let mut n = id.len() + black_box(version + recorded + kv).to_ne_bytes().len();
    for col in ["name", "birth_date", "telecom", "identifier", "address", "other"] {
        let b: Vec<u8> = row.try_get(col)?;
        n += black_box(b).len();
    }
    Ok(n)
}

pub(crate) async fn bench_read(b: &Bench, ids: Arc<Vec<String>>) -> Result<()> {
    progress(format!("read: Vault::read_patient vs plain SELECT, {} distinct patients", ids.len()));
    let pool = baseline_pool(&b.tv).await?;
    let core_op = {
        let vault = b.tv.vault.clone();
        let actor = b.actor.clone();
        let ids = ids.clone();
        Arc::new(move |_t: usize, i: u64| {
            let vault = vault.clone();
            let actor = actor.clone();
            let ids = ids.clone();
            async move {
                let id = pick(&ids, i)?;
                let rec = vault.read_patient(&actor, TREAT, id).await?;
                black_box(rec);
                Ok(())
            }
        })
    };
    let plain_op = {
        let pool = pool.clone();
        let ids = ids.clone();
        Arc::new(move |_t: usize, i: u64| {
            let pool = pool.clone();
            let ids = ids.clone();
            async move {
                let id = pick(&ids, i)?;
                let row = sqlx::query("SELECT * FROM patient_versions WHERE patient_id = $1 AND version = $2")
                    .bind(id)
                    .bind(1i64)
                    .fetch_one(&pool)
                    .await?;
                black_box(touch_version_row(&row)?);
                Ok(())
            }
        })
    };
    let core = measure("read.seq core", 1, b.secs, core_op.clone()).await?;
    let plain = measure("read.seq plain", 1, b.secs, plain_op.clone()).await?;
    figure("read.seq", core.rate(), "ops/s", plain.rate());
    let core = measure("read.c32 core", CONCURRENT, b.secs, core_op).await?;
    let plain = measure("read.c32 plain", CONCURRENT, b.secs, plain_op).await?;
    figure("read.c32", core.rate(), "ops/s", plain.rate());
    pool.close().await;
    Ok(())
}
