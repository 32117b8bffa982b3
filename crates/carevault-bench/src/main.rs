//! carevault-bench: the benchmark harness. Every figure is printed with an in-run baseline
//! measured in the same process, on the same machine, against the same data:
//!
//! ```text
//! name value unit baseline=<value> <unit> ratio=<value/baseline>
//! ```
//!
//! Scenarios: `read`, `search`, `verify`, `https`, `schedule`, `proofs`, `load`, `all`. Options:
//! `--patients N` (patients seeded for `search` and `all`, default 100000; for `schedule`,
//! default 10000; for `load`, default 1000, the rest beyond 1000 registered in bulk), `--appointments N` (appointments booked by `schedule`, default 100000),
//! `--records N` (audit records for `proofs`, default 1000000), `--conns A,B,…` (connection
//! counts of `load`, default 1,2,8,32), `--secs N` (length of each timed loop, default 5).
//! Progress goes to stderr, figures to stdout. See docs/BENCHMARKS.md.
//!
//! One module a scenario: `read`, `search`, `audit` (`verify` and `proofs`), `https`, `schedule`,
//! `load`; `people` makes the synthetic patients. This file holds the command line, the output,
//! the timed loops and the fixtures they share.
//!
//! The runtime everything runs on (the vault, the server, every scenario) is built as
//! `carevault serve` builds its own (multi-threaded, one worker per core), with its threads
//! named `cv-server`; `load` runs its HTTPS clients on a second runtime (threads
//! `cv-load-client`), so that the server's CPU can be told apart from the clients'.

mod audit;
mod https;
mod load;
mod people;
mod read;
mod schedule;
mod search;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use carevault_core::{Actor, CoreConfig};
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::TestVault;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use crate::people::Person;
use crate::schedule::{SCHEDULE_PATIENTS, SLOTS_PER_WEEK};

const USAGE: &str =
    "usage: carevault-bench <read|search|verify|https|schedule|proofs|load|all> [--patients N] [--appointments N] [--records N]
                       [--conns A,B,...] [--secs N]

  read      audited + encrypted Vault::read_patient vs a plain SELECT of the same row
  search    seeding rate, then family-prefix search vs an indexed plaintext table
  verify    Vault::verify_audit vs raw SHA-256 over the audit rows
  https     GET /fhir/r4/Patient/{id} vs GET /api/v1/health, 32 HTTP/1.1 connections
  schedule  booking rate, a provider's day and week views (Vault::search_appointments) vs a
            plain SELECT, concurrent Vault::book vs a plain INSERT
  proofs    a log of --records audit records: verify on it, the time to sign a tree head, the
            size and time of inclusion and consistency proofs vs a plain row lookup
  load      the real HTTPS server under N keep-alive HTTP/1.1 connections (--conns), one session
            each: no-op, create, book, read, exact and prefix search; req/s, p50/p99 and server
            CPU per request vs the no-op; memory (in process and the carevault binary, idle)
  all       every scenario but load on one vault (seeded with --patients)

  --patients N      patients seeded for `search` and `all` (default 100000), for `schedule`
                    (default 10000), for `load` (default 1000; beyond 1000, registered in bulk)
  --appointments N  appointments booked by `schedule` (default 100000, at least 1600)
  --records N       audit records for `proofs` (default 1000000)
  --conns A,B,...   connection counts of `load` (default 1,2,8,32)
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
    Load,
    All,
}

#[derive(Debug, Clone)]
struct Opts {
    scenario: Scenario,
    patients: usize,
    appointments: usize,
    records: usize,
    conns: Vec<usize>,
    secs: u64,
}

fn parse_args() -> Result<Opts> {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut patients = None;
    let mut appointments = 100_000usize;
    let mut records = 1_000_000usize;
    let mut secs = 5u64;
    let mut conns = load::DEFAULT_CONNS.to_vec();
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
            "--conns" => {
                let v = args.next().context("--conns needs a list of numbers, e.g. 1,2,8,32")?;
                conns = v
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().with_context(|| format!("--conns {v}: '{n}' is not a number")))
                    .collect::<Result<_>>()?;
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
                    "load" => Scenario::Load,
                    "all" => Scenario::All,
                    other => bail!("unknown scenario '{other}'\n\n{USAGE}"),
                });
            }
            other => bail!("unexpected argument '{other}'\n\n{USAGE}"),
        }
    }
    let scenario = scenario.with_context(|| format!("no scenario given\n\n{USAGE}"))?;
    let patients = patients.unwrap_or(match scenario {
        Scenario::Schedule => SCHEDULE_PATIENTS,
        Scenario::Load => SMALL_SET,
        _ => 100_000,
    });
    ensure!(patients >= 1, "--patients must be at least 1");
    ensure!(appointments >= SLOTS_PER_WEEK, "--appointments must be at least {SLOTS_PER_WEEK} (one full week of the clinic)");
    ensure!(secs >= 1, "--secs must be at least 1");
    ensure!(records >= 1000, "--records must be at least 1000");
    ensure!(
        !conns.is_empty() && conns.iter().all(|&n| (1..=load::MAX_CONNS).contains(&n)),
        "--conns: every count must be between 1 and {}",
        load::MAX_CONNS
    );
    Ok(Opts { scenario, patients, appointments, records, conns, secs })
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

// ---------------------------------------------------------------------------------------------

/// Runs the scenario. `client_rt` is the load clients' runtime (`load` only).
async fn run(opts: Opts, client_rt: Option<tokio::runtime::Handle>) -> Result<()> {
    let started = Instant::now();
    let b = open_bench(opts.secs).await?;
    match opts.scenario {
        Scenario::Read => {
            let (ids, _) = seed(&b, SMALL_SET).await?;
            read::bench_read(&b, spread(&ids, READ_SET)).await?;
        }
        Scenario::Search => {
            let (ids, t) = seed(&b, opts.patients).await?;
            search::bench_search(&b, &ids, t).await?;
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
            https::bench_https(&b, spread(&ids, READ_SET)).await?;
        }
        Scenario::Schedule => {
            let (ids, _) = seed(&b, opts.patients).await?;
            schedule::bench_schedule(&b, ids, opts.appointments).await?;
        }
        Scenario::Load => {
            let (ids, _) = seed(&b, SMALL_SET).await?;
            // A larger clinic: the rest registered in bulk (the reads and searches still draw on
            // the first SMALL_SET).
            load::seed_bulk(&b, opts.patients.saturating_sub(SMALL_SET)).await?;
            let client_rt = client_rt.context("no client runtime for the load scenario")?;
            load::bench_load(&b, &client_rt, ids, &opts.conns).await?;
        }
        Scenario::All => {
            let (ids, t) = seed(&b, opts.patients).await?;
            let sample = spread(&ids, READ_SET);
            read::bench_read(&b, sample.clone()).await?;
            search::bench_search(&b, &ids, t).await?;
            audit::bench_verify(&b).await?;
            https::bench_https(&b, sample).await?;
            schedule::bench_schedule(&b, ids, opts.appointments).await?;
        }
    }
    b.tv.vault.shutdown().await;
    progress(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}

fn main() -> std::process::ExitCode {
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
    // As `carevault serve` builds its runtime (one worker per core), with named threads.
    let server_rt = tokio::runtime::Builder::new_multi_thread().thread_name(load::SERVER_THREAD).enable_all().build();
    let client_rt = match opts.scenario {
        Scenario::Load => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(load::CLIENT_WORKERS)
                .thread_name(load::CLIENT_THREAD)
                .enable_all()
                .build(),
        ),
        _ => None,
    };
    let (server_rt, client_rt) = match (server_rt, client_rt.transpose()) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: could not start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = server_rt.block_on(run(opts, client_rt.as_ref().map(|rt| rt.handle().clone())));
    drop(client_rt);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
