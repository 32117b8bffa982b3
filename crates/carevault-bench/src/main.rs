//! carevault-bench: the benchmark harness. Every figure is printed with an in-run baseline
//! measured in the same process, on the same machine, against the same data:
//!
//! ```text
//! name value unit baseline=<value> <unit> ratio=<value/baseline>
//! ```
//!
//! Scenarios: `read`, `search`, `verify`, `https`, `schedule`, `proofs`, `all`. Options:
//! `--patients N` (patients seeded for `search` and `all`, default 100000; for `schedule`,
//! default 10000), `--appointments N` (appointments booked by `schedule`, default 100000),
//! `--records N` (audit records for `proofs`, default 1000000), `--secs N` (length of each timed
//! loop, default 5). Progress goes to stderr, figures to stdout. See docs/BENCHMARKS.md.

mod audit;

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use carevault_core::{Actor, BookRequest, Clock, CoreConfig, PractitionerRequest, RequestContext};
use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{local_date, WeeklyWindow};
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::TestVault;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

const USAGE: &str =
    "usage: carevault-bench <read|search|verify|https|schedule|proofs|all> [--patients N] [--appointments N] [--records N] [--secs N]

  read      audited + encrypted Vault::read_patient vs a plain SELECT of the same row
  search    seeding rate, then family-prefix search vs an indexed plaintext table
  verify    Vault::verify_audit vs raw SHA-256 over the audit rows
  https     GET /fhir/r4/Patient/{id} vs GET /api/v1/health, 32 HTTP/1.1 connections
  schedule  booking rate, a provider's day and week views (Vault::search_appointments) vs a
            plain SELECT, concurrent Vault::book vs a plain INSERT
  proofs    a log of --records audit records: verify on it, the time to sign a tree head, the
            size and time of inclusion and consistency proofs vs a plain row lookup
  all       every scenario on one vault (seeded with --patients)

  --patients N      patients seeded for `search` and `all` (default 100000), for `schedule`
                    (default 10000)
  --appointments N  appointments booked by `schedule` (default 100000, at least 1600)
  --records N       audit records for `proofs` (default 1000000)
  --secs N          length of each timed loop in seconds (default 5)";

const TREAT: PurposeOfUse = PurposeOfUse::Treatment;
/// Concurrent registrations while seeding, so group commit batches them.
const SEED_TASKS: usize = 64;
/// Concurrent tasks (or HTTPS connections) of the concurrent loops.
const CONCURRENT: usize = 32;
/// Patients seeded by the `read`, `verify` and `https` scenarios when run alone.
const SMALL_SET: usize = 1000;
/// Distinct patients the read loops cycle through.
const READ_SET: usize = 1000;
/// Reads written by `verify` when run alone, so there is an audit log to verify.
const VERIFY_READS: usize = 50_000;
/// The size of the store's read pool, so the plain baselines get the same parallelism.
const READ_POOL: u32 = 4;
/// Same as the audit writer's largest batch.
const PLAIN_BATCH: usize = 512;
const PAGE: u32 = 20;
const WARMUP: Duration = Duration::from_millis(1000);

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Read,
    Search,
    Verify,
    Https,
    Schedule,
    Proofs,
    All,
}

#[derive(Debug, Clone, Copy)]
struct Opts {
    scenario: Scenario,
    patients: usize,
    appointments: usize,
    records: usize,
    secs: u64,
}

fn parse_args() -> Result<Opts> {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut patients = None;
    let mut appointments = 100_000usize;
    let mut records = 1_000_000usize;
    let mut secs = 5u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--patients" => {
                let v = args.next().context("--patients needs a number")?;
                patients = Some(v.parse().with_context(|| format!("--patients {v}: not a number"))?);
            }
            "--appointments" => {
                let v = args.next().context("--appointments needs a number")?;
                appointments = v.parse().with_context(|| format!("--appointments {v}: not a number"))?;
            }
            "--records" => {
                let v = args.next().context("--records needs a number")?;
                records = v.parse().with_context(|| format!("--records {v}: not a number"))?;
            }
            "--secs" => {
                let v = args.next().context("--secs needs a number")?;
                secs = v.parse().with_context(|| format!("--secs {v}: not a number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if scenario.is_none() => {
                scenario = Some(match s {
                    "read" => Scenario::Read,
                    "search" => Scenario::Search,
                    "verify" => Scenario::Verify,
                    "https" => Scenario::Https,
                    "schedule" => Scenario::Schedule,
                    "proofs" => Scenario::Proofs,
                    "all" => Scenario::All,
                    other => bail!("unknown scenario '{other}'\n\n{USAGE}"),
                });
            }
            other => bail!("unexpected argument '{other}'\n\n{USAGE}"),
        }
    }
    let scenario = scenario.with_context(|| format!("no scenario given\n\n{USAGE}"))?;
    let patients = patients.unwrap_or(if scenario == Scenario::Schedule { SCHEDULE_PATIENTS } else { 100_000 });
    ensure!(patients >= 1, "--patients must be at least 1");
    ensure!(appointments >= SLOTS_PER_WEEK, "--appointments must be at least {SLOTS_PER_WEEK} (one full week of the clinic)");
    ensure!(secs >= 1, "--secs must be at least 1");
    ensure!(records >= 1000, "--records must be at least 1000");
    Ok(Opts { scenario, patients, appointments, records, secs })
}

// ---------------------------------------------------------------------------------------------
// Output

fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Prints one figure. `ratio` is always value / baseline.
fn figure(name: &str, value: f64, unit: &str, baseline: f64) {
    let ratio = if baseline > 0.0 { value / baseline } else { f64::NAN };
    // Two decimals, or four below 0.1 so that small ratios keep their digits.
    let ratio = if ratio.abs() >= 0.0995 || !ratio.is_finite() { format!("{ratio:.2}") } else { format!("{ratio:.4}") };
    println!("{name} {} {unit} baseline={} {unit} ratio={ratio}", num(value), num(baseline));
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// Timed loops

/// What one timed loop did.
struct Run {
    elapsed: Duration,
    /// Latency of every completed operation, in microseconds, sorted.
    lat_us: Vec<u64>,
}

impl Run {
    fn ops(&self) -> usize {
        self.lat_us.len()
    }
    fn rate(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Percentile latency in milliseconds.
    fn pct_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((p / 100.0) * (self.lat_us.len() - 1) as f64).round() as usize;
        self.lat_us.get(idx.min(self.lat_us.len() - 1)).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// Runs `op` in `tasks` concurrent tasks until `dur` has passed. `op` gets the task number and a
/// global operation counter.
async fn run_for<F, Fut>(tasks: usize, dur: Duration, op: Arc<F>) -> Result<Run>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + dur;
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let op = op.clone();
        let counter = counter.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                op(t, i).await?;
                lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat_us = Vec::new();
    for h in handles {
        lat_us.extend(h.await.context("benchmark task failed")??);
    }
    let elapsed = start.elapsed();
    lat_us.sort_unstable();
    Ok(Run { elapsed, lat_us })
}

/// A warm-up of [`WARMUP`], then the timed loop.
async fn measure<F, Fut>(label: &str, tasks: usize, secs: u64, op: Arc<F>) -> Result<Run>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    run_for(tasks, WARMUP, op.clone()).await.with_context(|| format!("{label} (warm-up)"))?;
    let r = run_for(tasks, Duration::from_secs(secs), op).await.with_context(|| label.to_string())?;
    progress(format!(
        "  {label}: {} ops in {:.2} s = {:.0}/s (p50 {:.2} ms, p99 {:.2} ms)",
        r.ops(),
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.pct_ms(50.0),
        r.pct_ms(99.0)
    ));
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Synthetic patients

/// splitmix64: a small deterministic generator, so every run seeds the same patients.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_ca4e_7a17_0001)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(xs.len() as u64)).unwrap_or(0);
        xs.get(i).copied().unwrap_or_default()
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "ren", "dor", "mi", "sa", "lo", "ber", "an", "ta", "vel", "mor", "ix", "el", "bra", "du", "fen", "gor", "ha", "is", "jo", "kel",
    "lin", "mar", "nor", "ol", "pen", "qui", "ros", "sten", "tor", "ul", "vin", "wes", "yar", "zan", "che", "shi", "tho", "ard", "wick",
    "ley", "ton", "son", "berg", "ford", "dale", "ham", "ridge",
];
const STREETS: &[&str] = &["Elm", "Oak", "Maple", "Cedar", "Birch", "Willow", "Aspen", "Juniper", "Linden", "Poplar"];
const STREET_KINDS: &[&str] = &["Street", "Avenue", "Road", "Lane", "Court", "Way"];
const GENDERS: &[&str] = &["female", "male", "female", "male", "other", "unknown"];

/// One synthetic patient: names built from syllables (no real person's file holds them).
struct Person {
    family: String,
    given: Vec<String>,
    birth: String,
    gender: &'static str,
    phone: String,
    street: String,
    city: String,
    postal: String,
}

fn capitalized(parts: &[&str]) -> String {
    let joined: String = parts.concat();
    let mut c = joined.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn word(r: &mut Rng, min: u64, max: u64) -> String {
    let n = min + r.below(max - min + 1);
    let parts: Vec<&str> = (0..n).map(|_| r.pick(SYLLABLES)).collect();
    capitalized(&parts)
}

impl Person {
    fn generate(i: usize) -> Person {
        let mut r = Rng::new(i as u64);
        let family = word(&mut r, 2, 3);
        let mut given = vec![word(&mut r, 2, 2)];
        if r.below(3) == 0 {
            given.push(word(&mut r, 1, 2));
        }
        let birth = format!("{:04}-{:02}-{:02}", 1930 + r.below(95), 1 + r.below(12), 1 + r.below(28));
        Person {
            family,
            given,
            birth,
            gender: r.pick(GENDERS),
            phone: format!("+1 {:03} 555 {:04}", 200 + r.below(800), r.below(10_000)),
            street: format!("{} {} {}", 1 + r.below(999), r.pick(STREETS), r.pick(STREET_KINDS)),
            city: word(&mut r, 2, 3) + "ville",
            postal: format!("{:05}", r.below(100_000)),
        }
    }

    fn fhir_json(&self) -> Vec<u8> {
        serde_json::json!({
            "resourceType": "Patient",
            "active": true,
            "name": [{"use": "official", "family": self.family, "given": self.given}],
            "gender": self.gender,
            "birthDate": self.birth,
            "telecom": [{"system": "phone", "value": self.phone, "use": "mobile"}],
            "address": [{"use": "home", "line": [self.street], "city": self.city, "postalCode": self.postal, "country": "US"}]
        })
        .to_string()
        .into_bytes()
    }

    /// The family name as the search compares it (folded; our names are plain ASCII).
    fn family_key(&self) -> String {
        self.family.to_ascii_lowercase()
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Bench {
    tv: TestVault,
    actor: Arc<Actor>,
    secs: u64,
}

async fn open_bench(secs: u64) -> Result<Bench> {
    // The test settings, but with the production checkpoint cadence (every 256 records).
    let config = CoreConfig { checkpoint_every: CoreConfig::default().checkpoint_every, ..carevault_testkit::test_config() };
    let tv = TestVault::with_config(config).await?;
    let (actor, _) = tv.staff(Role::Physician).await?;
    progress(format!(
        "vault: backend {} in {} (checkpoint every {} records)",
        tv.vault.backend_name(),
        tv.data_dir().display(),
        tv.config.checkpoint_every
    ));
    Ok(Bench { tv, actor: Arc::new(actor), secs })
}

/// The vault's own database, opened separately and read-only for the plain baselines.
async fn baseline_pool(tv: &TestVault) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = match tv.backend.vault_url() {
        Some(u) => u,
        None => format!("sqlite://{}?mode=ro", tv.data_dir().join("carevault.db").display()),
    };
    AnyPoolOptions::new().max_connections(READ_POOL).connect(&url).await.context("opening the baseline connection pool")
}

/// Registers `n` patients through `Vault::create_patient` with [`SEED_TASKS`] concurrent tasks.
/// Returns the ids (index = generator seed) and the time taken.
async fn seed(b: &Bench, n: usize) -> Result<(Arc<Vec<String>>, Duration)> {
    progress(format!("seeding {n} patients through Vault::create_patient ({SEED_TASKS} concurrent tasks)"));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let step = if n >= 100_000 { 10_000 } else { (n / 5).max(1) };
    let start = Instant::now();
    let mut handles = Vec::with_capacity(SEED_TASKS);
    for _ in 0..SEED_TASKS {
        let vault = b.tv.vault.clone();
        let actor = b.actor.clone();
        let next = next.clone();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = Person::generate(i).fhir_json();
                let rec = vault.create_patient(&actor, TREAT, &body).await.with_context(|| format!("creating patient {i}"))?;
                out.push((i, rec.id.as_str().to_string()));
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.checked_rem(step) == Some(0) {
                    let s = start.elapsed().as_secs_f64();
                    progress(format!("  seeded {d}/{n} ({s:.1} s, {:.0}/s)", d as f64 / s.max(1e-9)));
                }
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut ids = vec![String::new(); n];
    for h in handles {
        for (i, id) in h.await.context("seeding task failed")?? {
            if let Some(slot) = ids.get_mut(i) {
                *slot = id;
            }
        }
    }
    let elapsed = start.elapsed();
    ensure!(ids.iter().all(|i| !i.is_empty()), "some patients were not seeded");
    Ok((Arc::new(ids), elapsed))
}

/// `count` ids spread evenly over the seeded set.
fn spread(ids: &[String], count: usize) -> Arc<Vec<String>> {
    let count = count.min(ids.len()).max(1);
    let stride = (ids.len() / count).max(1);
    Arc::new(ids.iter().step_by(stride).take(count).cloned().collect())
}

fn pick(ids: &[String], i: u64) -> Result<&str> {
    let idx = usize::try_from(i % ids.len().max(1) as u64).unwrap_or(0);
    ids.get(idx).map(String::as_str).context("empty id set")
}

// ---------------------------------------------------------------------------------------------
// 1. read

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

async fn bench_read(b: &Bench, ids: Arc<Vec<String>>) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// 2. search

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

/// A new SQLite file for a plaintext baseline, with the store's durability settings (WAL,
/// `synchronous = FULL`), opened by one writing connection.
async fn plain_writer(path: &std::path::Path) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                Ok(())
            })
        })
        .connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .with_context(|| format!("creating the plaintext baseline database {}", path.display()))
}

fn file_mb(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0)
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

async fn bench_search(b: &Bench, ids: &[String], seed_time: Duration) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// 4. https

/// A full (password + TOTP) session for a new clinician account, made through the core.
async fn session_token(b: &Bench) -> Result<String> {
    let username = "bench.https.clinician";
    let user = b.tv.vault.add_user(username, Role::Physician, carevault_testkit::PASSWORD).await?;
    let ctx = RequestContext { source_ip: Some([127, 0, 0, 1].into()) };
    let step = b.tv.vault.login(&ctx, username, carevault_testkit::PASSWORD).await?;
    let code = carevault_testkit::totp_code(&user.totp_secret_base32, b.tv.clock.now_secs());
    let grant = b.tv.vault.verify_totp(&ctx, Some(&step.pending_token), &code).await?;
    Ok(grant.token)
}

async fn bench_https(b: &Bench, ids: Arc<Vec<String>>) -> Result<()> {
    let server = carevault_web::start(
        b.tv.vault.vault().clone(),
        carevault_web::WebConfig::new(
            "127.0.0.1:0".parse()?,
            carevault_web::TlsSource::SelfSigned { dir: b.tv.data_dir().join("tls"), hostnames: vec![] },
        ),
    )
    .await?;
    let addr = server.local_addr;
    progress(format!("https: server on {addr}, {CONCURRENT} HTTP/1.1 connections, one shared session"));
    let token = session_token(b).await?;
    let cookie = reqwest::header::HeaderValue::from_str(&format!("{}={token}", carevault_web::SESSION_COOKIE))?;
    let cert = reqwest::Certificate::from_pem(server.cert_pem.as_bytes())?;
    let mut clients = Vec::with_capacity(CONCURRENT);
    for _ in 0..CONCURRENT {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::COOKIE, cookie.clone());
        clients.push(
            reqwest::Client::builder()
                .add_root_certificate(cert.clone())
                .resolve("localhost", addr)
                .https_only(true)
                .http1_only()
                .pool_max_idle_per_host(1)
                .default_headers(headers)
                .timeout(Duration::from_secs(30))
                .build()?,
        );
    }
    let clients = Arc::new(clients);
    let base = Arc::new(format!("https://localhost:{}", addr.port()));

    let read_op = {
        let clients = clients.clone();
        let base = base.clone();
        let ids = ids.clone();
        Arc::new(move |t: usize, i: u64| {
            let clients = clients.clone();
            let base = base.clone();
            let ids = ids.clone();
            async move {
                let c = clients.get(t).context("no client")?;
                let r = c.get(format!("{base}/fhir/r4/Patient/{}", pick(&ids, i)?)).send().await?;
                ensure!(r.status() == reqwest::StatusCode::OK, "GET Patient: {}", r.status());
                black_box(r.bytes().await?);
                Ok(())
            }
        })
    };
    let health_op = {
        let clients = clients.clone();
        let base = base.clone();
        Arc::new(move |t: usize, _i: u64| {
            let clients = clients.clone();
            let base = base.clone();
            async move {
                let c = clients.get(t).context("no client")?;
                let r = c.get(format!("{base}/api/v1/health")).send().await?;
                ensure!(r.status().is_success(), "GET health: {}", r.status());
                black_box(r.bytes().await?);
                Ok(())
            }
        })
    };
    let read = measure("https.patient_read core", CONCURRENT, b.secs, read_op).await?;
    let health = measure("https.health plain", CONCURRENT, b.secs, health_op).await?;
    figure("https.patient_read.c32", read.rate(), "req/s", health.rate());
    figure("https.patient_read.c32.p50", read.pct_ms(50.0), "ms", health.pct_ms(50.0));
    figure("https.patient_read.c32.p99", read.pct_ms(99.0), "ms", health.pct_ms(99.0));
    drop(clients);
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. schedule

/// Patients seeded by `schedule` when `--patients` is not given.
const SCHEDULE_PATIENTS: usize = 10_000;
/// Practitioners of the benchmark clinic, all working at one location (UTC).
const PRACTITIONERS: usize = 20;
/// Their availability: Monday to Friday, 08:00 to 16:00, booked in 30-minute slots.
const OPENS_MINUTE: u16 = 8 * 60;
const CLOSES_MINUTE: u16 = 16 * 60;
const SLOT_MINUTES: u16 = 30;
const WORKDAYS: usize = 5;
const SLOTS_PER_DAY: usize = ((CLOSES_MINUTE - OPENS_MINUTE) / SLOT_MINUTES) as usize;
/// Appointments the whole clinic holds in a day and in a week when fully booked.
const SLOTS_PER_CLINIC_DAY: usize = PRACTITIONERS * SLOTS_PER_DAY;
const SLOTS_PER_WEEK: usize = SLOTS_PER_CLINIC_DAY * WORKDAYS;
/// Distinct day views the day loop cycles through.
const VIEW_SET: usize = 512;
/// `Vault::search_appointments` reads four times its default page of 100 (some rows may be
/// hidden from the actor); the plain query reads as many.
const VIEW_LIMIT: i64 = 400;
const DAY_US: i64 = 86_400_000_000;
const MINUTE_US: i64 = 60_000_000;
/// The store's search query for a practitioner's appointments in a time range (its text and
/// parameter order), run as the plain baseline.
const VIEW_SQL: &str =
    "SELECT * FROM appointments WHERE start_at >= $1 AND start_at < $2 AND practitioner_id = $3 ORDER BY start_at, id LIMIT $4";
/// The overlap check a booking runs inside the write transaction (the store's text).
/// `start_at` is bounded on both sides (an appointment lasts at most 480 minutes).
const OVERLAP_SQL: &str = "SELECT COUNT(*) AS n FROM appointments WHERE practitioner_id = $1 AND start_at < $3 \
                           AND start_at > $2 - 28800000000 AND end_at > $2 AND status NOT IN ('cancelled', 'noshow', 'entered-in-error')";

/// The benchmark clinic: one location, its practitioners and the calendar the bookings fill.
struct Clinic {
    location: String,
    practitioners: Vec<String>,
    /// The calendar's first Monday (days since 1970-01-01), at least two days ahead.
    first_monday: i64,
}

impl Clinic {
    /// The `d`-th working day of the calendar, in days since 1970-01-01.
    fn workday(&self, d: usize) -> i64 {
        self.first_monday + (d / WORKDAYS) as i64 * 7 + (d % WORKDAYS) as i64
    }

    fn practitioner(&self, i: usize) -> Result<&str> {
        self.practitioners.get(i % self.practitioners.len().max(1)).map(String::as_str).context("no practitioners")
    }

    /// The `k`-th slot of the calendar, in time order (every practitioner's 08:00 on the first
    /// Monday, then everyone's 08:30, …): (practitioner, start in Unix microseconds).
    fn slot(&self, k: usize) -> Result<(&str, i64)> {
        let day = k / SLOTS_PER_CLINIC_DAY;
        let r = k % SLOTS_PER_CLINIC_DAY;
        let minute = i64::from(OPENS_MINUTE) + (r / PRACTITIONERS) as i64 * i64::from(SLOT_MINUTES);
        Ok((self.practitioner(r % PRACTITIONERS)?, self.workday(day) * DAY_US + minute * MINUTE_US))
    }

    /// A booking of the `k`-th slot for one of `patients` (spread over the set).
    fn request(&self, k: usize, patients: &[String]) -> Result<BookRequest> {
        let (practitioner, start) = self.slot(k)?;
        let patient = pick(patients, (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11)?;
        Ok(BookRequest {
            patient_id: patient.to_string(),
            practitioner_id: practitioner.to_string(),
            location_id: self.location.clone(),
            start,
            minutes: Some(SLOT_MINUTES),
            ..Default::default()
        })
    }
}

/// `YYYY-MM-DD` of a day given in days since 1970-01-01.
fn utc_date(day: i64) -> Result<String> {
    local_date(&TimeZoneName::utc(), day * DAY_US).map(|d| d.to_string()).context("date out of range")
}

/// A valid NPI: `1`, eight digits, and the Luhn check digit over the prefix 80840 and the first
/// nine digits.
fn npi(i: usize) -> String {
    let payload = format!("1{:08}", 45_000_000 + i);
    let sum: u32 = format!("80840{payload}")
        .bytes()
        .rev()
        .enumerate()
        .map(|(j, b)| {
            let d = u32::from(b.saturating_sub(b'0'));
            match (j % 2 == 0, d * 2) {
                (true, x) if x > 9 => x - 9,
                (true, x) => x,
                (false, _) => d,
            }
        })
        .sum();
    format!("{payload}{}", (10 - sum % 10) % 10)
}

/// The clinic through the core: a location (UTC), [`PRACTITIONERS`] practitioners added by a
/// practice administrator, their weekly availability set by the front desk. Returns the
/// clinic and the front-desk actor that books and views the schedule.
async fn open_clinic(b: &Bench) -> Result<(Clinic, Actor)> {
    let v = &b.tv.vault;
    let (admin, _) = b.tv.staff(Role::PracticeAdmin).await?;
    let (desk, _) = b.tv.staff(Role::FrontDesk).await?;
    let location = v.add_unit("location", "Bench Clinic", Some("default"), None, Some("UTC")).await?;
    let weekdays = u8::try_from(WORKDAYS).context("workdays")?;
    let hours: Vec<WeeklyWindow> =
        (1..=weekdays).map(|d| WeeklyWindow { weekday: d, start_minute: OPENS_MINUTE, end_minute: CLOSES_MINUTE }).collect();
    let mut practitioners = Vec::with_capacity(PRACTITIONERS);
    for i in 0..PRACTITIONERS {
        let mut r = Rng::new(1_000_000 + i as u64);
        let req = PractitionerRequest {
            npi: npi(i),
            family: word(&mut r, 2, 3),
            given: word(&mut r, 2, 2),
            organization_id: "default".into(),
            location_ids: vec![location.clone()],
            ..Default::default()
        };
        let id = v.add_practitioner(&admin, &req).await.with_context(|| format!("adding practitioner {i}"))?.id;
        v.set_availability(&desk, &id, &location, &hours).await.with_context(|| format!("availability of practitioner {i}"))?;
        practitioners.push(id);
    }
    // 1970-01-01 was a Thursday: day d is a Monday when (d + 3) % 7 == 0.
    let mut first_monday = b.tv.clock.now_micros().div_euclid(DAY_US) + 2;
    while (first_monday + 3).rem_euclid(7) != 0 {
        first_monday += 1;
    }
    Ok((Clinic { location, practitioners, first_monday }, desk))
}

/// Books the first `n` slots of the calendar through `Vault::book` with [`SEED_TASKS`]
/// concurrent tasks. Returns the time taken.
async fn book_calendar(b: &Bench, clinic: &Arc<Clinic>, desk: &Arc<Actor>, patients: &Arc<Vec<String>>, n: usize) -> Result<Duration> {
    let weeks = n.div_ceil(SLOTS_PER_WEEK);
    progress(format!(
        "booking {n} appointments through Vault::book ({SEED_TASKS} concurrent tasks): {PRACTITIONERS} practitioners, \
         {SLOTS_PER_DAY} slots of {SLOT_MINUTES} min a day, Monday to Friday, {weeks} weeks from {} (UTC), {} patients",
        utc_date(clinic.first_monday)?,
        patients.len()
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let last_mark = Arc::new(AtomicU64::new(0));
    let step = if n >= 100_000 { 10_000 } else { (n / 5).max(1) };
    let start = Instant::now();
    let mut handles = Vec::with_capacity(SEED_TASKS);
    for _ in 0..SEED_TASKS {
        let vault = b.tv.vault.clone();
        let (clinic, desk, patients) = (clinic.clone(), desk.clone(), patients.clone());
        let (next, done, last_mark) = (next.clone(), done.clone(), last_mark.clone());
        handles.push(tokio::spawn(async move {
            let purpose = desk.default_purpose();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let req = clinic.request(k, &patients)?;
                vault.book(&desk, purpose, &req, false).await.with_context(|| format!("booking slot {k}"))?;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.checked_rem(step) == Some(0) {
                    let now_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let prev_us = last_mark.swap(now_us, Ordering::Relaxed);
                    let s = now_us as f64 / 1e6;
                    let recent = step as f64 / (now_us.saturating_sub(prev_us) as f64 / 1e6).max(1e-9);
                    progress(format!(
                        "  booked {d}/{n} ({s:.1} s, {:.0}/s overall, {recent:.0}/s for the last {step})",
                        d as f64 / s.max(1e-9)
                    ));
                }
            }
        }));
    }
    for h in handles {
        h.await.context("booking task failed")??;
    }
    Ok(start.elapsed())
}

/// The plaintext baseline of the bookings: the vault's appointment rows copied into a plain
/// table with the practitioner-time index, in its own SQLite file with the store's durability
/// settings, in transactions of [`PLAIN_BATCH`] rows. Returns the writing connection (kept for
/// the booking baseline), the number of rows and the time the inserts took.
async fn plain_appointments(b: &Bench, vault_db: &AnyPool) -> Result<(AnyPool, usize, Duration)> {
    let write = plain_writer(&b.tv.data_dir().join("plain-schedule.db")).await?;
    write
        .execute(
            "CREATE TABLE plain_appointments (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, practitioner_id TEXT NOT NULL, \
             location_id TEXT NOT NULL, start_at BIGINT NOT NULL, end_at BIGINT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL)",
        )
        .await?;
    write.execute("CREATE INDEX plain_appointments_practitioner_time ON plain_appointments (practitioner_id, start_at)").await?;
    let rows = sqlx::query(
        "SELECT id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at FROM appointments ORDER BY created_at, id",
    )
    .fetch_all(vault_db)
    .await?;
    let start = Instant::now();
    for chunk in rows.chunks(PLAIN_BATCH) {
        let mut tx = write.begin().await?;
        for r in chunk {
            sqlx::query(
                "INSERT INTO plain_appointments (id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.try_get::<String, _>("id")?)
            .bind(r.try_get::<String, _>("patient_id")?)
            .bind(r.try_get::<String, _>("practitioner_id")?)
            .bind(r.try_get::<String, _>("location_id")?)
            .bind(r.try_get::<i64, _>("start_at")?)
            .bind(r.try_get::<i64, _>("end_at")?)
            .bind(r.try_get::<String, _>("status")?)
            .bind(r.try_get::<i64, _>("created_at")?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok((write, rows.len(), start.elapsed()))
}

/// One schedule view: a practitioner's appointments in [from, to).
struct View {
    practitioner: String,
    from: i64,
    to: i64,
    params: Vec<(String, String)>,
}

impl View {
    /// `days` days from `first_day` (days since 1970-01-01), as FHIR search parameters.
    fn new(practitioner: &str, first_day: i64, days: i64) -> Result<View> {
        Ok(View {
            practitioner: practitioner.to_string(),
            from: first_day * DAY_US,
            to: (first_day + days) * DAY_US,
            params: vec![
                ("practitioner".to_string(), practitioner.to_string()),
                ("date".to_string(), format!("ge{}", utc_date(first_day)?)),
                ("date".to_string(), format!("lt{}", utc_date(first_day + days)?)),
            ],
        })
    }
}

/// The plain SELECT of a view on the vault's database, every column decoded; the ids in order.
async fn plain_view(pool: &AnyPool, v: &View) -> Result<Vec<String>> {
    let rows = sqlx::query(VIEW_SQL).bind(v.from).bind(v.to).bind(v.practitioner.as_str()).bind(VIEW_LIMIT).fetch_all(pool).await?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut n = 0usize;
        for col in ["patient_id", "practitioner_id", "location_id", "status"] {
            n += black_box(r.try_get::<String, _>(col)?).len();
        }
        for col in ["start_at", "end_at", "created_at"] {
            n += black_box(r.try_get::<i64, _>(col)?).to_ne_bytes().len();
        }
        for col in ["room_id", "type_id", "series_id"] {
            n += black_box(r.try_get::<Option<String>, _>(col)?).map_or(0, |s| s.len());
        }
        black_box(n);
        ids.push(r.try_get::<String, _>("id")?);
    }
    Ok(ids)
}

/// SQLite's plan for a query (its `EXPLAIN QUERY PLAN` details, joined).
async fn sqlite_plan<'q>(pool: &AnyPool, explain: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> Result<String> {
    let rows = explain.fetch_all(pool).await?;
    let details: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>("detail")).collect::<Result<_, _>>()?;
    Ok(details.join("; "))
}

/// Mean time of the booking's overlap check (the store's query, on the baseline pool) for the
/// slot `k` of the calendar, in milliseconds.
async fn overlap_check_ms(pool: &AnyPool, clinic: &Clinic, k: usize) -> Result<f64> {
    let (practitioner, start) = clinic.slot(k)?;
    let end = start + i64::from(SLOT_MINUTES) * MINUTE_US;
    let runs = 50u32;
    let t0 = Instant::now();
    for _ in 0..runs {
        let row = sqlx::query(OVERLAP_SQL).bind(practitioner).bind(start).bind(end).fetch_one(pool).await?;
        black_box(row.try_get::<i64, _>("n")?);
    }
    Ok(t0.elapsed().as_secs_f64() * 1000.0 / f64::from(runs))
}

/// Checks that carevault and the plain query return the same appointments for every view;
/// returns (mismatches, rows per view on average).
async fn compare_views(b: &Bench, pool: &AnyPool, desk: &Actor, views: &[View]) -> Result<(usize, f64)> {
    let mut mismatches = 0usize;
    let mut rows = 0usize;
    for v in views {
        let core: Vec<String> =
            b.tv.vault.search_appointments(desk, desk.default_purpose(), &v.params).await?.into_iter().map(|a| a.id).collect();
        let plain = plain_view(pool, v).await?;
        rows += plain.len();
        if core != plain {
            mismatches += 1;
            progress(format!("  WARNING {:?}: core {} rows, plain {} rows", v.params, core.len(), plain.len()));
        }
    }
    Ok((mismatches, rows as f64 / views.len().max(1) as f64))
}

/// Measures the views with [`CONCURRENT`] tasks: `Vault::search_appointments` against the plain
/// SELECT of the same rows.
async fn measure_views(b: &Bench, pool: &AnyPool, desk: &Arc<Actor>, label: &str, views: Arc<Vec<View>>) -> Result<()> {
    let core_op = {
        let vault = b.tv.vault.clone();
        let desk = desk.clone();
        let views = views.clone();
        Arc::new(move |_t: usize, i: u64| {
            let (vault, desk, views) = (vault.clone(), desk.clone(), views.clone());
            async move {
                let v = views.get(usize::try_from(i).unwrap_or(0) % views.len().max(1)).context("no views")?;
                black_box(vault.search_appointments(&desk, desk.default_purpose(), &v.params).await?);
                Ok(())
            }
        })
    };
    let plain_op = {
        let pool = pool.clone();
        let views = views.clone();
        Arc::new(move |_t: usize, i: u64| {
            let (pool, views) = (pool.clone(), views.clone());
            async move {
                let v = views.get(usize::try_from(i).unwrap_or(0) % views.len().max(1)).context("no views")?;
                black_box(plain_view(&pool, v).await?);
                Ok(())
            }
        })
    };
    let core = measure(&format!("{label} core"), CONCURRENT, b.secs, core_op).await?;
    let plain = measure(&format!("{label} plain"), CONCURRENT, b.secs, plain_op).await?;
    figure(label, core.rate(), "views/s", plain.rate());
    Ok(())
}

async fn bench_schedule(b: &Bench, patients: Arc<Vec<String>>, n: usize) -> Result<()> {
    progress(format!("schedule: a clinic of {PRACTITIONERS} practitioners, {n} appointments"));
    let (clinic, desk) = open_clinic(b).await?;
    let (clinic, desk) = (Arc::new(clinic), Arc::new(desk));
    let seed_time = book_calendar(b, &clinic, &desk, &patients, n).await?;
    let pool = baseline_pool(&b.tv).await?;
    let (plain_write, copied, plain_time) = plain_appointments(b, &pool).await?;
    ensure!(copied == n, "the vault holds {copied} appointments, {n} were booked");
    progress(format!("  booking: core {n} in {:.1} s, plain {n} in {:.2} s", seed_time.as_secs_f64(), plain_time.as_secs_f64()));
    let dir = b.tv.data_dir();
    progress(format!(
        "  on disk: carevault.db {:.0} MB (+ WAL {:.0} MB), plain-schedule.db {:.1} MB",
        file_mb(&dir.join("carevault.db")),
        file_mb(&dir.join("carevault.db-wal")),
        file_mb(&dir.join("plain-schedule.db"))
    ));
    figure("schedule.seed", n as f64 / seed_time.as_secs_f64().max(1e-9), "appointments/s", n as f64 / plain_time.as_secs_f64().max(1e-9));

    // The views: whole days and weeks of the calendar that the seed filled.
    let full_days = n / SLOTS_PER_CLINIC_DAY;
    let full_weeks = n / SLOTS_PER_WEEK;
    let mut days = Vec::with_capacity(VIEW_SET);
    for j in 0..VIEW_SET {
        days.push(View::new(clinic.practitioner(j)?, clinic.workday(j * full_days / VIEW_SET), 1)?);
    }
    let mut weeks = Vec::with_capacity(full_weeks * PRACTITIONERS);
    for w in 0..full_weeks {
        for p in 0..PRACTITIONERS {
            weeks.push(View::new(clinic.practitioner(p + w)?, clinic.first_monday + w as i64 * 7, 7)?);
        }
    }
    let (day_mismatches, day_rows) = compare_views(b, &pool, &desk, &days).await?;
    let (week_mismatches, week_rows) = compare_views(b, &pool, &desk, &weeks).await?;
    progress(format!(
        "  views: {} days ({day_rows:.1} appointments each, {day_mismatches} mismatches), {} weeks ({week_rows:.1} each, \
         {week_mismatches} mismatches)",
        days.len(),
        weeks.len()
    ));
    if !b.tv.backend.is_postgres() {
        let (first, after) = (clinic.slot(0)?, clinic.slot(n)?);
        let view_plan =
            sqlite_plan(&pool, sqlx::query(&format!("EXPLAIN QUERY PLAN {VIEW_SQL}")).bind(0i64).bind(1i64).bind(first.0).bind(1i64))
                .await?;
        let overlap_plan =
            sqlite_plan(&pool, sqlx::query(&format!("EXPLAIN QUERY PLAN {OVERLAP_SQL}")).bind(first.0).bind(0i64).bind(1i64)).await?;
        progress(format!("  plan of the view query: {view_plan}"));
        progress(format!("  plan of the booking's overlap check: {overlap_plan}"));
        let (early, late) = (overlap_check_ms(&pool, &clinic, 0).await?, overlap_check_ms(&pool, &clinic, n).await?);
        progress(format!(
            "  overlap check (plain, one practitioner's calendar of {} appointments): {early:.3} ms for the first slot ({}), {late:.3} ms \
             for the first slot after the booked ones ({})",
            n / PRACTITIONERS,
            utc_date(first.1.div_euclid(DAY_US))?,
            utc_date(after.1.div_euclid(DAY_US))?
        ));
    }
    measure_views(b, &pool, &desk, "schedule.day", Arc::new(days)).await?;
    measure_views(b, &pool, &desk, "schedule.week", Arc::new(weeks)).await?;

    // Booking: each operation takes the next free slot after the seeded calendar.
    let core_op = {
        let vault = b.tv.vault.clone();
        let (clinic, desk, patients) = (clinic.clone(), desk.clone(), patients.clone());
        let next = Arc::new(AtomicUsize::new(n));
        Arc::new(move |_t: usize, _i: u64| {
            let (vault, clinic, desk, patients) = (vault.clone(), clinic.clone(), desk.clone(), patients.clone());
            let k = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let req = clinic.request(k, &patients)?;
                black_box(vault.book(&desk, desk.default_purpose(), &req, false).await.with_context(|| format!("booking slot {k}"))?);
                Ok(())
            }
        })
    };
    let plain_op = {
        let write = plain_write.clone();
        let (clinic, patients) = (clinic.clone(), patients.clone());
        let next = Arc::new(AtomicUsize::new(n));
        let now = b.tv.clock.now_micros();
        Arc::new(move |_t: usize, _i: u64| {
            let (write, clinic, patients) = (write.clone(), clinic.clone(), patients.clone());
            let k = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let req = clinic.request(k, &patients)?;
                sqlx::query(
                    "INSERT INTO plain_appointments (id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(format!("{k:032x}"))
                .bind(req.patient_id)
                .bind(req.practitioner_id)
                .bind(req.location_id)
                .bind(req.start)
                .bind(req.start + i64::from(SLOT_MINUTES) * MINUTE_US)
                .bind("booked")
                .bind(now)
                .execute(&write)
                .await?;
                Ok(())
            }
        })
    };
    let core = measure("schedule.book core", CONCURRENT, b.secs, core_op).await?;
    let plain = measure("schedule.book plain", CONCURRENT, b.secs, plain_op).await?;
    figure("schedule.book", core.rate(), "bookings/s", plain.rate());
    plain_write.close().await;
    pool.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

async fn run(opts: Opts) -> Result<()> {
    let started = Instant::now();
    let b = open_bench(opts.secs).await?;
    match opts.scenario {
        Scenario::Read => {
            let (ids, _) = seed(&b, SMALL_SET).await?;
            bench_read(&b, spread(&ids, READ_SET)).await?;
        }
        Scenario::Search => {
            let (ids, t) = seed(&b, opts.patients).await?;
            bench_search(&b, &ids, t).await?;
        }
        Scenario::Verify => {
            let (ids, _) = seed(&b, SMALL_SET).await?;
            audit::write_reads(&b, ids, VERIFY_READS).await?;
            audit::bench_verify(&b).await?;
        }
        Scenario::Proofs => {
            let (ids, _) = seed(&b, SMALL_SET).await?;
            audit::bench_proofs(&b, ids, opts.records).await?;
        }
        Scenario::Https => {
            let (ids, _) = seed(&b, SMALL_SET).await?;
            bench_https(&b, spread(&ids, READ_SET)).await?;
        }
        Scenario::Schedule => {
            let (ids, _) = seed(&b, opts.patients).await?;
            bench_schedule(&b, ids, opts.appointments).await?;
        }
        Scenario::All => {
            let (ids, t) = seed(&b, opts.patients).await?;
            let sample = spread(&ids, READ_SET);
            bench_read(&b, sample.clone()).await?;
            bench_search(&b, &ids, t).await?;
            audit::bench_verify(&b).await?;
            bench_https(&b, sample).await?;
            bench_schedule(&b, ids, opts.appointments).await?;
        }
    }
    b.tv.vault.shutdown().await;
    progress(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    progress(format!(
        "scenario {:?}, --patients {}, --appointments {}, --secs {}, {} worker threads",
        opts.scenario,
        opts.patients,
        opts.appointments,
        opts.secs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    match run(opts).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
