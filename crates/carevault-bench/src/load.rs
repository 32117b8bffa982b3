//! Scenario 7 (`load`): an HTTPS load driver against the real server, phase by phase, at several
//! connection counts, with the server's CPU per operation and its memory.
//!
//! The server is `carevault_web::start` over the bench's vault, on 127.0.0.1 with its
//! self-signed certificate. Every connection is its own reqwest client (HTTP/1.1 only, one idle
//! connection kept, so one keep-alive TLS connection each) carrying its own full session: one
//! physician account per connection, signed in with password and TOTP through the core. Each
//! phase is a warm-up of one second, then `--secs` seconds timed with as many tasks as
//! connections, each task sending one request at a time on its own connection:
//!
//! * `health`: `GET /api/v1/health` (no session, no database; 204 expected), the floor of `noop`;
//! * `noop`: `GET /fhir/r4/metadata` (the CapabilityStatement: no session, no database), the
//!   baseline of every other phase;
//! * `create`: `POST /fhir/r4/Patient` of a new synthetic patient (a different generator seed
//!   for every request), 201 expected;
//! * `book`: `POST /api/v1/appointments` in the next free slot of a 20-practitioner clinic
//!   (`schedule`'s, set up through the core), each request a different slot, 201 expected (a
//!   conflict fails the run);
//! * `read`: `GET /fhir/r4/Patient/{id}` cycling over the seeded patients, 200 expected;
//! * `search_exact`: `GET /fhir/r4/Patient?family:exact=…&given:exact=…` of a seeded patient;
//! * `search_prefix`: `GET /fhir/r4/Patient?family=<first 3 letters>&_count=20`.
//!
//! Every response is read to its end and its status checked; a search must answer a Bundle with
//! a total above 0 and at least one entry. Any other answer ends the run with an error, so an
//! error can never be counted as speed.
//!
//! **Server CPU per operation.** The server runs on the bench's main tokio runtime, whose
//! threads are named `cv-server` (multi-threaded, one worker per core, as `carevault serve`
//! builds its runtime); the vault's own threads (the SQLite driver's worker threads) run beside
//! it. The load clients run on a second runtime whose threads (2 workers) are all named
//! `cv-load-client`. Around each timed loop the driver reads the process's CPU time
//! (`/proc/self/stat`, utime + stime: every thread, live or ended) and the CPU time of each
//! thread named `cv-load-client` (`/proc/self/task/<tid>/stat`; the name is the `comm` field,
//! which the kernel truncates to 15 bytes). Server CPU = process CPU − client threads' CPU, over
//! the timed loop only, divided by the operations completed in it. The times are in clock ticks
//! (the `AT_CLKTCK` entry of `/proc/self/auxv`, which is what `sysconf(_SC_CLK_TCK)` returns;
//! 100 on Linux), so a 3 s loop on 2 cores is measured to about 1 %. Everything not on a client
//! thread counts as server: the main thread, which only waits for the loop, and the bench's
//! bookkeeping are in it and are negligible. On PostgreSQL the database server's CPU is in its
//! own processes and is not counted: the figure is carevault's process alone.
//!
//! **Memory.** `load.rss.idle` is the process's VmRSS right after the server started (vault open,
//! 1000 patients seeded, no session yet), against the VmRSS just before the server started.
//! `load.rss.signed_in` is the VmRSS once the accounts are signed in (two Argon2id computations
//! of 19 MiB each), against `load.rss.idle`; with glibc's allocator much of that memory stays
//! resident after the hashes are done (its mmap threshold rises to the buffer's size after the
//! first one is freed, so later buffers come from the heap arenas).
//! `load.rss.c<N>` is the peak (VmHWM) during the phases at the largest connection count: the
//! peak is reset just before them (writing 5 to `/proc/self/clear_refs`; if the kernel refuses,
//! the peak since the process started is reported and the run says so). Since the server shares
//! the process with the bench, the real binary is also measured: `carevault serve` on a fresh
//! data folder (on PostgreSQL, a fresh schema), its VmRSS two seconds after it answers
//! `/api/v1/health` is `load.rss.binary.idle`.
//!
//! **Storage.** Around the create phase at the last connection count, `load.bytes_per_patient` is
//! what the database grew by divided by the patients created in the phase (SQLite: `carevault.db`
//! plus its WAL after a `wal_checkpoint(TRUNCATE)`; PostgreSQL: `pg_total_relation_size` summed
//! over the schema's tables): the patient rows, their blind index and the audit records of
//! creating them, against the mean size of the patients' FHIR JSON.

use std::future::Future;
use std::hint::black_box;
use std::io::BufRead;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Client, RequestBuilder, StatusCode};
use sqlx::Row;
use tokio::runtime::Handle;
use tokio::task::JoinSet;

use crate::people::Person;
use crate::schedule::{open_clinic, utc_date, Clinic, DAY_US, MINUTE_US, SLOT_MINUTES};
use crate::{baseline_pool, figure, file_mb, pick, progress, run_for, Bench, Run, WARMUP};

/// The name of the load clients' threads (at most 15 bytes: the kernel's `comm` keeps no more).
pub(crate) const CLIENT_THREAD: &str = "cv-load-client";
/// The name of the server runtime's threads.
pub(crate) const SERVER_THREAD: &str = "cv-server";
/// Worker threads of the client runtime.
pub(crate) const CLIENT_WORKERS: usize = 2;
/// Connection counts measured when `--conns` is not given.
pub(crate) const DEFAULT_CONNS: &[usize] = &[1, 2, 8, 32];
/// The most connections `--conns` accepts (one signed-in account each).
pub(crate) const MAX_CONNS: usize = 256;
/// Patients the searches and reads draw from: the seeded ones, generator seeds 0..this.
const SEEDED: usize = crate::SMALL_SET;

type OpFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

// ---------------------------------------------------------------------------------------------
// /proc: CPU time and memory of this process, without unsafe code.

/// Clock ticks per second of the CPU times in `/proc` (`sysconf(_SC_CLK_TCK)`): the kernel
/// hands it to every process in its auxiliary vector as `AT_CLKTCK`.
fn clock_ticks_per_sec() -> u64 {
    const AT_CLKTCK: usize = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let found = std::fs::read("/proc/self/auxv").ok().and_then(|bytes| {
        bytes.chunks_exact(2 * WORD).find_map(|entry| {
            let key = usize::from_ne_bytes(entry.get(..WORD)?.try_into().ok()?);
            let value = usize::from_ne_bytes(entry.get(WORD..)?.try_into().ok()?);
            (key == AT_CLKTCK).then_some(value as u64)
        })
    });
    found.filter(|t| *t > 0).unwrap_or(100)
}

/// The `comm` and utime + stime (clock ticks) of a `/proc/.../stat` line. `comm` is between the
/// first `(` and the last `)` (it may itself hold spaces or parentheses); utime and stime are
/// fields 14 and 15, the 12th and 13th after the `)`.
fn parse_stat(text: &str) -> Result<(&str, u64)> {
    let open = text.find('(').context("stat: no '('")?;
    let close = text.rfind(')').context("stat: no ')'")?;
    let comm = text.get(open + 1..close).context("stat: comm")?;
    let rest: Vec<&str> = text.get(close + 1..).context("stat: fields")?.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> { rest.get(i).context("stat: too few fields")?.parse::<u64>().context("stat: not a number") };
    Ok((comm, field(11)? + field(12)?))
}

/// CPU time used so far: by the whole process, and by the client threads.
#[derive(Clone, Copy)]
struct CpuSample {
    process_ticks: u64,
    client_ticks: u64,
}

impl CpuSample {
    fn take() -> Result<CpuSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        let (_, process_ticks) = parse_stat(&stat)?;
        let mut client_ticks = 0;
        for entry in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
            // A thread may end between the listing and the read: it is skipped.
            let Ok(text) = std::fs::read_to_string(entry?.path().join("stat")) else { continue };
            let (comm, ticks) = parse_stat(&text)?;
            if comm == CLIENT_THREAD {
                client_ticks += ticks;
            }
        }
        Ok(CpuSample { process_ticks, client_ticks })
    }
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
fn status_mib(pid: &str, key: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().with_context(|| format!("{key}: not a number"))?;
            return Ok(kb / 1024.0);
        }
    }
    bail!("no {key} in /proc/{pid}/status")
}

/// Resets the process's peak resident size (VmHWM) to the current one. False if refused.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

// ---------------------------------------------------------------------------------------------
// Timed phases

/// One timed loop and the CPU time spent during it.
struct Phase {
    run: Run,
    server_cpu_s: f64,
    client_cpu_s: f64,
}

impl Phase {
    fn server_us_per_op(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.run.ops().max(1) as f64
    }
    fn client_us_per_op(&self) -> f64 {
        self.client_cpu_s * 1e6 / self.run.ops().max(1) as f64
    }
}

/// A warm-up of [`WARMUP`], then `secs` timed, with `tasks` tasks, all on the client runtime;
/// CPU samples are taken around the timed loop only.
async fn timed<F, Fut>(client_rt: &Handle, label: String, tasks: usize, secs: u64, op: Arc<F>) -> Result<Phase>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let tick = clock_ticks_per_sec() as f64;
    let (run, before, after) = client_rt
        .spawn({
            let label = label.clone();
            async move {
                run_for(tasks, WARMUP, op.clone()).await.with_context(|| format!("{label} (warm-up)"))?;
                let before = CpuSample::take()?;
                let run = run_for(tasks, Duration::from_secs(secs), op).await.with_context(|| label.clone())?;
                let after = CpuSample::take()?;
                Ok::<_, anyhow::Error>((run, before, after))
            }
        })
        .await
        .context("load client task failed")??;
    let process_s = after.process_ticks.saturating_sub(before.process_ticks) as f64 / tick;
    let client_cpu_s = after.client_ticks.saturating_sub(before.client_ticks) as f64 / tick;
    let phase = Phase { run, server_cpu_s: (process_s - client_cpu_s).max(0.0), client_cpu_s };
    let rss = status_mib(&std::process::id().to_string(), "VmRSS")?;
    progress(format!(
        "  {label}: {} ops in {:.2} s = {:.0}/s (p50 {:.2} ms, p99 {:.2} ms); CPU: server {:.2} s = {:.0} µs/op, clients {:.2} s = {:.0} µs/op; \
         VmRSS {rss:.0} MiB",
        phase.run.ops(),
        phase.run.elapsed.as_secs_f64(),
        phase.run.rate(),
        phase.run.pct_ms(50.0),
        phase.run.pct_ms(99.0),
        phase.server_cpu_s,
        phase.server_us_per_op(),
        phase.client_cpu_s,
        phase.client_us_per_op()
    ));
    Ok(phase)
}

/// The figures of a phase: rate, p50, p99 and server CPU per operation, each against `base`.
fn phase_figures(name: &str, conns: usize, p: &Phase, base: &Phase) {
    let n = format!("load.{name}.c{conns}");
    figure(&n, p.run.rate(), "req/s", base.run.rate());
    figure(&format!("{n}.p50"), p.run.pct_ms(50.0), "ms", base.run.pct_ms(50.0));
    figure(&format!("{n}.p99"), p.run.pct_ms(99.0), "ms", base.run.pct_ms(99.0));
    figure(&format!("{n}.cpu"), p.server_us_per_op(), "µs/op", base.server_us_per_op());
}

// ---------------------------------------------------------------------------------------------
// Requests

/// What a phase's answers must be.
#[derive(Clone, Copy)]
struct Expect {
    label: &'static str,
    status: StatusCode,
    /// A searchset Bundle with a total above 0 and at least one entry.
    bundle: bool,
}

/// An operation for [`run_for`]: `build` makes the `i`-th request on connection `t`'s client;
/// the answer is read to its end and checked against `expect`.
fn http_op<B>(clients: &Arc<Vec<Client>>, expect: Expect, build: B) -> Arc<impl Fn(usize, u64) -> OpFuture + Send + Sync + 'static>
where
    B: Fn(&Client, u64) -> Result<RequestBuilder> + Send + Sync + 'static,
{
    let clients = clients.clone();
    Arc::new(move |t: usize, i: u64| -> OpFuture {
        let req = clients.get(t).context("no client for this task").and_then(|c| build(c, i));
        Box::pin(async move {
            let r = req?.send().await.with_context(|| expect.label)?;
            let status = r.status();
            let body = r.bytes().await.with_context(|| expect.label)?;
            if status != expect.status {
                let text = String::from_utf8_lossy(body.get(..body.len().min(400)).unwrap_or_default()).into_owned();
                bail!("{}: HTTP {status} (expected {}): {text}", expect.label, expect.status);
            }
            if expect.bundle {
                let v: serde_json::Value = serde_json::from_slice(&body).with_context(|| format!("{}: not JSON", expect.label))?;
                let total = v.get("total").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let entries = v.get("entry").and_then(serde_json::Value::as_array).map_or(0, Vec::len);
                ensure!(
                    v.get("resourceType").and_then(serde_json::Value::as_str) == Some("Bundle") && total > 0 && entries > 0,
                    "{}: an empty or malformed Bundle (total {total}, {entries} entries)",
                    expect.label
                );
            }
            black_box(body);
            Ok(())
        })
    })
}

/// `YYYY-MM-DDTHH:MM:00Z` of an instant in Unix microseconds (whole minutes).
fn rfc3339(us: i64) -> Result<String> {
    let minute = us.rem_euclid(DAY_US) / MINUTE_US;
    Ok(format!("{}T{:02}:{:02}:00Z", utc_date(us.div_euclid(DAY_US))?, minute / 60, minute % 60))
}

// ---------------------------------------------------------------------------------------------
// Storage and the real binary

/// The database's size in bytes and the patients it holds (see the module documentation).
/// Patients registered by each side of the bulk comparison.
const BULK_PATIENTS: usize = 4000;
/// Patients per `Vault::register_patients` call.
const BULK_BATCH: usize = 500;

/// Registration through the core, one patient a call (32 concurrent tasks, the group commit
/// batching them) against `Vault::register_patients` (batches of [`BULK_BATCH`], one job and one
/// audit record each): patients per second and bytes per patient.
async fn bulk_figures(b: &Bench, first: usize) -> Result<()> {
    progress(format!("load: {BULK_PATIENTS} registrations one by one (32 tasks), then {BULK_PATIENTS} in batches of {BULK_BATCH}"));
    let purpose = b.actor.default_purpose();
    let (bytes0, _) = database_size(b).await?;
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let (vault, actor, next) = (b.tv.vault.clone(), b.actor.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= BULK_PATIENTS {
                    return Ok::<_, anyhow::Error>(());
                }
                vault.create_patient(&actor, purpose, &Person::generate(first + i).fhir_json()).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let single = BULK_PATIENTS as f64 / start.elapsed().as_secs_f64();
    let (bytes1, _) = database_size(b).await?;
    let start = Instant::now();
    for chunk in (0..BULK_PATIENTS).collect::<Vec<_>>().chunks(BULK_BATCH) {
        let bodies: Vec<Vec<u8>> = chunk.iter().map(|i| Person::generate(first + BULK_PATIENTS + i).fhir_json()).collect();
        b.tv.vault.register_patients(&b.actor, purpose, &bodies).await?;
    }
    let bulk = BULK_PATIENTS as f64 / start.elapsed().as_secs_f64();
    let (bytes2, _) = database_size(b).await?;
    figure("load.bulk_register", bulk, "patients/s", single);
    let per = |d: u64| d as f64 / BULK_PATIENTS as f64;
    figure("load.bytes_per_patient.bulk", per(bytes2.saturating_sub(bytes1)), "bytes", per(bytes1.saturating_sub(bytes0)));
    Ok(())
}

/// Registers `n` more patients through `Vault::register_patients` (`load --patients N`: the
/// memory and speed of a large clinic). Their generator seeds start far above the created ones.
pub(crate) async fn seed_bulk(b: &Bench, n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    progress(format!("load: registering {n} more patients in batches of {BULK_BATCH}"));
    let purpose = b.actor.default_purpose();
    let start = Instant::now();
    let mut done = 0usize;
    while done < n {
        let k = BULK_BATCH.min(n - done);
        let bodies: Vec<Vec<u8>> = (done..done + k).map(|i| Person::generate(50_000_000 + i).fhir_json()).collect();
        b.tv.vault.register_patients(&b.actor, purpose, &bodies).await?;
        done += k;
        if done % 100_000 < BULK_BATCH || done == n {
            let s = start.elapsed().as_secs_f64();
            progress(format!("  {done}/{n} ({s:.0} s, {:.0}/s)", done as f64 / s.max(1e-9)));
        }
    }
    Ok(())
}

async fn database_size(b: &Bench) -> Result<(u64, i64)> {
    let pool = baseline_pool(&b.tv).await?;
    let patients: i64 = sqlx::query("SELECT COUNT(*) FROM patients").fetch_one(&pool).await?.try_get(0)?;
    let bytes = if b.tv.backend.is_postgres() {
        let n: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS BIGINT) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        )
        .fetch_one(&pool)
        .await?
        .try_get(0)?;
        progress(format!(
            "  on disk: {:.1} MB in the schema's tables (pg_total_relation_size, indexes and TOAST included)",
            n as f64 / 1e6
        ));
        u64::try_from(n).unwrap_or(0)
    } else {
        let db = b.tv.data_dir().join("carevault.db");
        let wal = b.tv.data_dir().join("carevault.db-wal");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display()))
            .await
            .context("opening carevault.db for a checkpoint")?;
        let busy: i64 = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut conn).await?.try_get(0)?;
        sqlx::Connection::close(conn).await?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        progress(format!(
            "  on disk after wal_checkpoint(TRUNCATE){}: carevault.db {:.1} MB + WAL {:.1} MB",
            if busy != 0 { " (busy: the WAL was not emptied)" } else { "" },
            file_mb(&db),
            file_mb(&wal)
        ));
        size(&db) + size(&wal)
    };
    pool.close().await;
    Ok((bytes, patients))
}

/// Kills the child when dropped (an error path must not leave a server running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `carevault` binary next to this one with `serve` on a fresh data folder (and, on
/// PostgreSQL, a fresh schema), waits until `/api/v1/health` answers over HTTPS, then two
/// seconds, and returns its VmRSS in MiB. `None` (with a note) when there is no binary.
async fn binary_idle_rss() -> Result<Option<f64>> {
    let bin = std::env::current_exe()?.with_file_name("carevault");
    if !bin.is_file() {
        progress(format!(
            "  NOTE no carevault binary at {}: load.rss.binary.idle skipped (cargo build --release -p carevault)",
            bin.display()
        ));
        return Ok(None);
    }
    let backend = carevault_testkit::backend().await?;
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let log = std::fs::File::create(work.path().join("serve.log"))?;
    let mut cmd = std::process::Command::new(&bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CAREVAULT_") {
            cmd.env_remove(&k);
        }
    }
    if let Some(url) = backend.vault_url() {
        cmd.env("CAREVAULT_DATABASE_URL", url);
    }
    let child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("CAREVAULT_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let spawned = Instant::now();
    let mut child = KillOnDrop(child);
    let pid = child.0.id().to_string();
    let stdout = child.0.stdout.take().context("the child's stdout")?;
    // The banner names the address: `carevault 0.1.0 listening on https://127.0.0.1:PORT (...)`.
    let banner = tokio::task::spawn_blocking(move || -> Option<std::net::SocketAddr> {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let found = lines
            .by_ref()
            .map_while(|l| l.ok())
            .find_map(|line| line.split_once(" listening on https://").and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok()));
        // Keep draining, so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        found
    });
    let addr = match tokio::time::timeout(Duration::from_secs(120), banner).await {
        Ok(Ok(Some(a))) => a,
        _ => {
            let status = child.0.try_wait().ok().flatten();
            let text = std::fs::read_to_string(work.path().join("serve.log")).unwrap_or_default();
            bail!("carevault serve did not print its address (exit {status:?}): {}", text.chars().take(2000).collect::<String>());
        }
    };
    let cert = std::fs::read(data.join("tls").join("cert.pem")).context("the generated certificate")?;
    let probe = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert)?)
        .resolve("localhost", addr)
        .https_only(true)
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("https://localhost:{}/api/v1/health", addr.port());
    let started = Instant::now();
    loop {
        match probe.get(&url).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if started.elapsed() > Duration::from_secs(60) => bail!("carevault serve on {addr} did not answer {url} within 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let up = spawned.elapsed();
    drop(probe);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = status_mib(&pid, "VmRSS")?;
    progress(format!(
        "  carevault serve (pid {pid}, {} on a fresh {}) answered on {addr} after {:.1} s; VmRSS 2 s later {rss:.1} MiB",
        bin.display(),
        if backend.is_postgres() { "PostgreSQL schema" } else { "SQLite data folder" },
        up.as_secs_f64()
    ));
    drop(child);
    Ok(Some(rss))
}

// ---------------------------------------------------------------------------------------------

pub(crate) async fn bench_load(b: &Bench, client_rt: &Handle, ids: Arc<Vec<String>>, conns: &[usize]) -> Result<()> {
    let max_conns = conns.iter().copied().max().context("no connection counts")?;
    let backend = b.tv.vault.backend_name();
    progress(format!(
        "load: backend {backend}, connections {conns:?}, {}-second phases; server on the `{SERVER_THREAD}` runtime, clients on \
         `{CLIENT_THREAD}` ({CLIENT_WORKERS} workers); CPU in ticks of 1/{} s",
        b.secs,
        clock_ticks_per_sec()
    ));
    let me = std::process::id().to_string();
    let rss_before = status_mib(&me, "VmRSS")?;
    let server = carevault_web::start(
        b.tv.vault.vault().clone(),
        carevault_web::WebConfig::new(
            "127.0.0.1:0".parse()?,
            carevault_web::TlsSource::SelfSigned { dir: b.tv.data_dir().join("tls"), hostnames: vec![] },
        ),
    )
    .await?;
    let rss_idle = status_mib(&me, "VmRSS")?;
    let addr = server.local_addr;
    progress(format!("  server on {addr}; VmRSS {rss_before:.1} MiB before it started, {rss_idle:.1} MiB after"));
    figure("load.rss.idle", rss_idle, "MiB", rss_before);

    // One physician account and session per connection, signed in through the core.
    let t0 = Instant::now();
    let mut signing = JoinSet::new();
    for c in 0..max_conns {
        let (vault, clock) = (b.tv.vault.clone(), b.tv.clock.clone());
        signing.spawn(async move { (c, crate::https::session_token(&vault, clock.as_ref(), &format!("bench.load.{c:03}")).await) });
    }
    let mut tokens = vec![String::new(); max_conns];
    while let Some(done) = signing.join_next().await {
        let (c, token) = done.context("sign-in task failed")?;
        if let Some(slot) = tokens.get_mut(c) {
            *slot = token.with_context(|| format!("signing in account {c}"))?;
        }
    }
    let rss_signed_in = status_mib(&me, "VmRSS")?;
    progress(format!(
        "  {max_conns} accounts signed in (password + TOTP, Argon2id of 19 MiB twice each) in {:.1} s; VmRSS now {rss_signed_in:.1} MiB",
        t0.elapsed().as_secs_f64()
    ));
    figure("load.rss.signed_in", rss_signed_in, "MiB", rss_idle);
    let cert = reqwest::Certificate::from_pem(server.cert_pem.as_bytes())?;
    let mut clients = Vec::with_capacity(max_conns);
    for token in &tokens {
        let cookie = reqwest::header::HeaderValue::from_str(&format!("{}={token}", carevault_web::SESSION_COOKIE))?;
        clients.push(crate::https::session_client(&cert, addr, cookie)?);
    }
    let clients = Arc::new(clients);
    let base: Arc<str> = Arc::from(format!("https://localhost:{}", addr.port()));

    // The clinic the bookings fill: 20 practitioners, Monday to Friday 08:00-16:00, 30-minute
    // slots, taken in time order from the first Monday at least two days ahead.
    let (clinic, _desk) = open_clinic(b).await?;
    let clinic: Arc<Clinic> = Arc::new(clinic);
    let next_slot = Arc::new(AtomicUsize::new(0));
    // Created patients take generator seeds after the seeded ones.
    let next_person = Arc::new(AtomicU64::new(SEEDED as u64));
    let persons: Arc<Vec<(String, String, String)>> = Arc::new(
        (0..SEEDED)
            .map(|i| {
                let p = Person::generate(i);
                let family = p.family_key();
                let prefix: String = family.chars().take(3).collect();
                (family, p.given.first().cloned().unwrap_or_default().to_ascii_lowercase(), prefix)
            })
            .collect(),
    );

    let health = http_op(&clients, Expect { label: "GET /api/v1/health", status: StatusCode::NO_CONTENT, bundle: false }, {
        let base = base.clone();
        move |c, _| Ok(c.get(format!("{base}/api/v1/health")))
    });
    let noop = http_op(&clients, Expect { label: "GET /fhir/r4/metadata", status: StatusCode::OK, bundle: false }, {
        let base = base.clone();
        move |c, _| Ok(c.get(format!("{base}/fhir/r4/metadata")))
    });
    let create = http_op(&clients, Expect { label: "POST /fhir/r4/Patient", status: StatusCode::CREATED, bundle: false }, {
        let (base, next_person) = (base.clone(), next_person.clone());
        move |c, _| {
            let i = usize::try_from(next_person.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
            Ok(c.post(format!("{base}/fhir/r4/Patient"))
                .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
                .body(Person::generate(i).fhir_json()))
        }
    });
    let book = http_op(&clients, Expect { label: "POST /api/v1/appointments", status: StatusCode::CREATED, bundle: false }, {
        let (base, clinic, next_slot, ids) = (base.clone(), clinic.clone(), next_slot.clone(), ids.clone());
        move |c, _| {
            let k = next_slot.fetch_add(1, Ordering::Relaxed);
            let (practitioner, start) = clinic.slot(k)?;
            let patient = pick(&ids, (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11)?;
            let body = serde_json::json!({
                "patient_id": patient,
                "practitioner_id": practitioner,
                "location_id": clinic.location,
                "start": rfc3339(start)?,
                "minutes": SLOT_MINUTES,
            });
            Ok(c.post(format!("{base}/api/v1/appointments")).json(&body))
        }
    });
    let read = http_op(&clients, Expect { label: "GET /fhir/r4/Patient/{id}", status: StatusCode::OK, bundle: false }, {
        let (base, ids) = (base.clone(), ids.clone());
        move |c, i| Ok(c.get(format!("{base}/fhir/r4/Patient/{}", pick(&ids, i)?)))
    });
    let search_exact =
        http_op(&clients, Expect { label: "GET /fhir/r4/Patient?family:exact&given:exact", status: StatusCode::OK, bundle: true }, {
            let (base, persons) = (base.clone(), persons.clone());
            move |c, i| {
                let (family, given, _) = persons.get(usize::try_from(i).unwrap_or(0) % persons.len().max(1)).context("no persons")?;
                Ok(c.get(format!("{base}/fhir/r4/Patient?family:exact={family}&given:exact={given}")))
            }
        });
    let search_prefix =
        http_op(&clients, Expect { label: "GET /fhir/r4/Patient?family=<prefix>", status: StatusCode::OK, bundle: true }, {
            let (base, persons) = (base.clone(), persons.clone());
            move |c, i| {
                let (_, _, prefix) = persons.get(usize::try_from(i).unwrap_or(0) % persons.len().max(1)).context("no persons")?;
                Ok(c.get(format!("{base}/fhir/r4/Patient?family={prefix}&_count=20")))
            }
        });

    let last = conns.len().saturating_sub(1);
    // The peak memory is taken over the first group of phases at the largest connection count.
    let peak_group = conns.iter().position(|&n| n == max_conns);
    for (g, &n) in conns.iter().enumerate() {
        progress(format!("load at {n} connection{} ({backend})", if n == 1 { "" } else { "s" }));
        let peak_reset = (peak_group == Some(g)).then(reset_peak_rss);
        let secs = b.secs;
        let h = timed(client_rt, format!("load.health.c{n}"), n, secs, health.clone()).await?;
        let base_phase = timed(client_rt, format!("load.noop.c{n}"), n, secs, noop.clone()).await?;
        phase_figures("noop", n, &base_phase, &h);
        // The storage a registration costs: what the database grew by over the create phase
        // (the patients, their blind index and the audit records of creating them), per patient
        // created in it.
        let before = if g == last { Some(database_size(b).await?) } else { None };
        let p = timed(client_rt, format!("load.create.c{n}"), n, secs, create.clone()).await?;
        phase_figures("create", n, &p, &base_phase);
        if let Some((bytes_before, patients_before)) = before {
            let (bytes, patients) = database_size(b).await?;
            let json: f64 = (0..SEEDED).map(|i| Person::generate(i).fhir_json().len() as f64).sum::<f64>() / SEEDED as f64;
            let created = patients - patients_before;
            progress(format!(
                "  {created} patients created in the phase ({patients} in all); their FHIR JSON is {json:.0} bytes on average"
            ));
            figure("load.bytes_per_patient", bytes.saturating_sub(bytes_before) as f64 / created.max(1) as f64, "bytes", json);
        }
        let p = timed(client_rt, format!("load.book.c{n}"), n, secs, book.clone()).await?;
        phase_figures("book", n, &p, &base_phase);
        let p = timed(client_rt, format!("load.read.c{n}"), n, secs, read.clone()).await?;
        phase_figures("read", n, &p, &base_phase);
        let p = timed(client_rt, format!("load.search_exact.c{n}"), n, secs, search_exact.clone()).await?;
        phase_figures("search_exact", n, &p, &base_phase);
        let p = timed(client_rt, format!("load.search_prefix.c{n}"), n, secs, search_prefix.clone()).await?;
        phase_figures("search_prefix", n, &p, &base_phase);
        if let Some(reset) = peak_reset {
            let peak = status_mib(&me, "VmHWM")?;
            let now = status_mib(&me, "VmRSS")?;
            if !reset {
                progress("  NOTE /proc/self/clear_refs refused the reset: VmHWM is the peak since the process started");
            }
            progress(format!("  VmHWM over the {n}-connection phases {peak:.1} MiB; VmRSS now {now:.1} MiB"));
            figure(&format!("load.rss.c{n}"), peak, "MiB", rss_idle);
        }
    }
    progress(format!(
        "  {} appointments booked, {} patients created over HTTPS",
        next_slot.load(Ordering::Relaxed),
        next_person.load(Ordering::Relaxed) - SEEDED as u64
    ));
    drop((health, noop, create, book, read, search_exact, search_prefix));
    drop(clients);
    server.stop().await;
    bulk_figures(b, next_person.load(Ordering::Relaxed) as usize + 1_000_000).await?;

    progress("load: the real binary, idle");
    if let Some(rss) = binary_idle_rss().await? {
        figure("load.rss.binary.idle", rss, "MiB", rss_idle);
    }
    Ok(())
}
