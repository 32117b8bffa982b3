//! Storage faults injected for real: a full filesystem under eight writing clients (SQLite, a
//! private tmpfs), failed commits (a trigger that ends the transaction on SQLite, a deferred
//! trigger that fails COMMIT on PostgreSQL), terminated PostgreSQL backends, the free-space
//! reserve, a torn checkpoint line, and crashes during the first start. Afterwards every
//! acknowledged write reads back, `audit verify` passes, and new writes succeed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carevault_core::{CoreConfig, CoreError, StorageHealth};
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::{test_config, App, Backend, TestVault, PASSWORD};
use sqlx::Executor;

const TREAT: PurposeOfUse = PurposeOfUse::Treatment;
const BIN: &str = env!("CARGO_BIN_EXE_carevault");

/// A patient whose given name spells `n` in letters (names take no digits).
fn patient(n: usize) -> Vec<u8> {
    let given: String = n.to_string().bytes().map(|d| char::from(b'a' + (d - b'0'))).collect();
    serde_json::json!({"resourceType": "Patient", "name": [{"family": "Faultline", "given": [format!("W{given}")]}], "birthDate": "1970-01-02"})
        .to_string()
        .into_bytes()
}

/// What the writing clients saw.
#[derive(Default)]
struct Tally {
    acked: Mutex<BTreeSet<String>>,
    unavailable: AtomicUsize,
    other: Mutex<Vec<String>>,
}

impl Tally {
    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// Eight clients, each signed in over HTTPS as its own physician, creating patients (and
/// reading one back now and then) until `stop`.
async fn writers(app: &App, tally: Arc<Tally>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for w in 0..8 {
        let (client, _) = app.signed_in(Role::Physician).await.expect("sign in");
        let (tally, stop, base) = (tally.clone(), stop.clone(), app.base.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let r = client
                    .post(format!("{base}/fhir/r4/Patient"))
                    .header("content-type", "application/fhir+json")
                    .body(patient(w * 100_000 + n))
                    .send()
                    .await;
                let Ok(r) = r else {
                    tally.other.lock().unwrap().push("transport error".into());
                    continue;
                };
                match r.status().as_u16() {
                    201 => {
                        let v: serde_json::Value = r.json().await.expect("json");
                        let id = v["id"].as_str().expect("id").to_string();
                        tally.acked.lock().unwrap().insert(id.clone());
                        if n.is_multiple_of(5) {
                            let g = client.get(format!("{base}/fhir/r4/Patient/{id}")).send().await.expect("read");
                            if !matches!(g.status().as_u16(), 200 | 503) {
                                tally.other.lock().unwrap().push(format!("read {}", g.status()));
                            }
                        }
                    }
                    503 => {
                        tally.unavailable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    s => {
                        let text = r.text().await.unwrap_or_default();
                        tally.other.lock().unwrap().push(format!("create {s}: {text}"));
                    }
                }
            }
        }));
    }
    handles
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fills the filesystem holding `dir` until a write fails with "no space left".
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0x5au8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

/// Every id reads back through the vault (a fresh sign-in after a restart).
async fn all_read_back(tv: &TestVault, ids: &BTreeSet<String>) {
    tv.clock.advance_secs(31);
    let (reader, _) = tv.staff(Role::Physician).await.expect("reader");
    for id in ids {
        tv.vault.read_patient(&reader, TREAT, id).await.unwrap_or_else(|e| panic!("acknowledged patient {id} is gone: {e}"));
    }
}

fn user_add(data_dir: &std::path::Path, name: &str) -> std::process::Output {
    let d = data_dir.to_str().expect("path");
    let args = ["user", "add", "--username", name, "--role", "nurse", "--password-stdin", "--data-dir", d];
    carevault_testkit::run_command(BIN, &Backend::Sqlite, &args, Some(&format!("{PASSWORD}\n"))).expect("user add")
}

/// A full disk under eight writers: clean 503s while full, no acknowledged write lost, the audit
/// log and its checkpoint file intact, recovery without a restart once space is freed, and an
/// operator command beside it that fails clearly, then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_under_eight_writers_loses_nothing_and_recovers() {
    if std::env::var_os(carevault_testkit::TEST_DATABASE_ENV).is_some() {
        return; // the embedded store's disk; PostgreSQL's own disk is the database server's
    }
    let Some(fs) = carevault_testkit::private_tmpfs("disk_full_under_eight_writers_loses_nothing_and_recovers", 48).expect("tmpfs") else {
        return;
    };
    // No reserve: the writes themselves must meet the full disk.
    let config = CoreConfig { checkpoint_every: 16, min_free_bytes: Some(0), ..test_config() };
    let tv = TestVault::with_config_in(config, &fs).await.expect("vault");
    let app = App::serve(tv, 1 << 20).await.expect("app");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = writers(&app, tally.clone(), stop.clone()).await;

    wait_for("150 acknowledged creates", 120, || tally.acked() >= 150).await;
    let filler = fill(&fs);
    let before_full = tally.unavailable.load(Ordering::Relaxed);
    wait_for("clients see the full disk", 120, || tally.unavailable.load(Ordering::Relaxed) >= before_full + 40).await;
    let c = app.client().expect("client");
    let mut said = String::new();
    for _ in 0..200 {
        let h = c.get(app.url("/api/v1/health")).send().await.expect("health");
        if h.status() == 503 {
            said = h.text().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(said.contains("storage-failing") && said.contains("the disk is full"), "health while the disk is full: {said}");
    // An operator command beside the server ends with an answer, not a hang or a panic: when it
    // cannot write, it says so.
    let o = user_add(&app.tv.data_dir(), "nurse.full");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "user add on a full disk: {err}");
    if !o.status.success() {
        assert!(err.contains("audit log could not be written") || err.contains("unavailable") || err.contains("nearly full"), "{err}");
    }

    std::fs::remove_file(&filler).expect("free space");
    let at_free = tally.acked();
    wait_for("150 more acknowledged creates after space is freed", 180, || tally.acked() >= at_free + 150).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("writer");
    }
    let other = tally.other.lock().unwrap().clone();
    assert!(other.is_empty(), "answers other than 201/503: {other:?}");
    let h = c.get(app.url("/api/v1/health")).send().await.expect("health");
    assert_eq!(h.status(), 204, "health after recovery: {}", h.text().await.unwrap_or_default());
    let o = user_add(&app.tv.data_dir(), "nurse.after");
    assert!(o.status.success(), "user add after recovery: {}", String::from_utf8_lossy(&o.stderr));

    let ids = tally.acked.lock().unwrap().clone();
    let mut tv = app.stop().await;
    let report = tv.vault.verify_audit().await.expect("verify");
    assert!(report.intact(), "after recovery: {:?}", report.failures);
    all_read_back(&tv, &ids).await;
    tv.reopen().await.expect("restart");
    let report = tv.vault.verify_audit().await.expect("verify");
    assert!(report.intact(), "after a restart: {:?}", report.failures);
    all_read_back(&tv, &ids).await;
    assert_eq!(patient_count(&tv).await as usize, ids.len(), "a patient was committed but never acknowledged");
    // No torn or foreign line in the checkpoint file.
    let text = std::fs::read_to_string(tv.data_dir().join("audit/checkpoints.log")).expect("file");
    assert!(text.ends_with('\n') && text.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
    eprintln!(
        "disk full: {} acknowledged creates, {} answered 503, 0 lost; verify intact before and after a restart",
        ids.len(),
        tally.unavailable.load(Ordering::Relaxed)
    );

    // The reserve: free space below it refuses changes (503, health says why) and keeps reads;
    // freeing space lifts it without a restart.
    let (_, staff) = tv.staff(Role::Physician).await.expect("staff");
    let spare = fill_leaving(&fs, 16 << 20);
    let free = free_bytes(&fs);
    tv.reopen_with(CoreConfig { min_free_bytes: Some(free + (4 << 20)), ..tv.config.clone() }).await.expect("reopen");
    tv.clock.advance_secs(31);
    let clin = tv.sign_in(&staff).await.expect("sign-in continues below the reserve");
    let some = ids.iter().next().expect("an id").clone();
    tv.vault.read_patient(&clin, TREAT, &some).await.expect("reads continue below the reserve");
    assert!(matches!(tv.vault.create_patient(&clin, TREAT, &patient(1)).await, Err(CoreError::StorageLow)));
    assert!(matches!(tv.vault.storage_health(), StorageHealth::Low { .. }), "{:?}", tv.vault.storage_health());
    std::fs::remove_file(spare).expect("free");
    tv.vault.create_patient(&clin, TREAT, &patient(2)).await.expect("writes resume once space is freed");
    assert_eq!(tv.vault.storage_health(), StorageHealth::Ok);
    assert!(tv.vault.verify_audit().await.expect("verify").intact());
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().expect("df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df output")
}

/// Fills the filesystem until about `leave` bytes are free; returns the filler's path.
fn fill_leaving(dir: &std::path::Path, leave: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("spare");
    let mut f = std::fs::File::create(&path).expect("spare");
    let buf = vec![0xa5u8; 1 << 20];
    while free_bytes(dir) > leave + (1 << 20) {
        f.write_all(&buf).expect("fill");
    }
    f.sync_all().expect("sync");
    path
}

/// The fault switch: while `cv_fault` holds a row, every transaction that appends to the audit
/// log fails (SQLite: RAISE(ROLLBACK) ends the transaction inside the engine, as a full disk
/// does; PostgreSQL: a deferred constraint trigger fails the COMMIT itself).
async fn install_fault(tv: &TestVault) -> sqlx::AnyConnection {
    let mut c = tv.raw().await.expect("raw");
    c.execute("CREATE TABLE cv_fault (x INTEGER)").await.expect("table");
    if tv.backend.is_postgres() {
        c.execute(
            "CREATE FUNCTION cv_fault_fn() RETURNS trigger AS $$ BEGIN IF EXISTS (SELECT 1 FROM cv_fault) THEN \
             RAISE EXCEPTION 'injected fault at commit'; END IF; RETURN NULL; END $$ LANGUAGE plpgsql",
        )
        .await
        .expect("function");
        c.execute(
            "CREATE CONSTRAINT TRIGGER cv_fault_commit AFTER INSERT ON audit_events DEFERRABLE INITIALLY DEFERRED \
             FOR EACH ROW EXECUTE FUNCTION cv_fault_fn()",
        )
        .await
        .expect("trigger");
    } else {
        c.execute(
            "CREATE TRIGGER cv_fault_rollback BEFORE INSERT ON audit_events WHEN EXISTS (SELECT 1 FROM cv_fault) \
             BEGIN SELECT RAISE(ROLLBACK, 'injected fault'); END",
        )
        .await
        .expect("trigger");
    }
    c
}

/// Failed commits under eight concurrent writers, switched on and off: nothing of a failed batch
/// is acknowledged or kept, the writer starts clean after each, the checkpoint file never speaks
/// for a record that is not committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_acknowledge_nothing_and_the_writer_recovers() {
    let mut tv = TestVault::with_config(CoreConfig { checkpoint_every: 4, ..test_config() }).await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let mut switch = install_fault(&tv).await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    for round in 0..6 {
        let on = round % 2 == 1;
        if on {
            switch.execute("INSERT INTO cv_fault VALUES (1)").await.expect("on");
        } else {
            switch.execute("DELETE FROM cv_fault").await.expect("off");
        }
        let mut tasks = Vec::new();
        for w in 0..8 {
            let (v, clin, acked, refused) = (tv.vault.clone(), clin.clone(), acked.clone(), refused.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..6 {
                    match v.create_patient(&clin, TREAT, &patient(round * 1000 + w * 10 + i)).await {
                        Ok(p) => {
                            assert!(!on, "a create was acknowledged while every commit fails");
                            acked.lock().unwrap().insert(p.id.as_str().to_string());
                        }
                        Err(CoreError::AuditUnavailable) => {
                            assert!(on, "a create failed while commits work");
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
        if on {
            let r = tv.vault.verify_audit().await.expect("verify");
            assert!(r.intact(), "the log while commits fail: {:?}", r.failures);
        }
    }
    switch.execute("DELETE FROM cv_fault").await.expect("off");
    let ids = acked.lock().unwrap().clone();
    assert_eq!(ids.len(), 3 * 8 * 6);
    assert_eq!(refused.load(Ordering::Relaxed), 3 * 8 * 6);
    assert_eq!(patient_count(&tv).await as usize, ids.len(), "a failed batch left a patient behind");
    let r = tv.vault.verify_audit().await.expect("verify");
    assert!(r.intact(), "{:?}", r.failures);
    assert!(r.checkpoints_in_file > 0 && r.checkpoints_in_file == r.checkpoints_in_database);
    all_read_back(&tv, &ids).await;
    drop(switch);
    tv.reopen().await.expect("restart");
    let r = tv.vault.verify_audit().await.expect("verify");
    assert!(r.intact(), "after a restart: {:?}", r.failures);
    all_read_back(&tv, &ids).await;
}

/// PostgreSQL backends terminated under load (`pg_terminate_backend`): reads and writes answer
/// 200/201 or 503, never 500; every acknowledged create reads back; the pool reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_postgres_backends_answer_503_and_lose_nothing() {
    let app = App::spawn_with(CoreConfig { checkpoint_every: 8, ..test_config() }, 1 << 20).await.expect("app");
    let Backend::Postgres { schema, .. } = app.tv.backend.clone() else {
        return; // PostgreSQL only: SQLite has no server to lose
    };
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = writers(&app, tally.clone(), stop.clone()).await;
    let mut killer = app.tv.raw().await.expect("raw");
    for round in 0..6 {
        wait_for("more acknowledged creates", 120, || tally.acked() >= (round + 1) * 25).await;
        let q = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{schema}' AND pid <> pg_backend_pid()"
        );
        killer.execute(q.as_str()).await.expect("terminate");
    }
    let at = tally.acked();
    wait_for("writes succeed after the last termination", 120, || tally.acked() >= at + 50).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("writer");
    }
    let other = tally.other.lock().unwrap().clone();
    assert!(other.is_empty(), "answers other than 201/200/503: {other:?}");
    let ids = tally.acked.lock().unwrap().clone();
    let tv = app.stop().await;
    all_read_back(&tv, &ids).await;
    let r = tv.vault.verify_audit().await.expect("verify");
    assert!(r.intact(), "{:?}", r.failures);
    eprintln!(
        "terminated backends 6 times: {} creates acknowledged, {} answered 503",
        ids.len(),
        tally.unavailable.load(Ordering::Relaxed)
    );
}

/// A crash in the middle of appending a checkpoint leaves a torn last line: the next start sets
/// it aside (logged), never reads it as a checkpoint, and the log verifies.
#[tokio::test]
async fn a_torn_checkpoint_line_is_set_aside_at_start() {
    let mut tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    tv.vault.create_patient(&clin, TREAT, &patient(1)).await.expect("create");
    tv.vault.shutdown().await;
    let file = tv.data_dir().join("audit/checkpoints.log");
    let text = std::fs::read_to_string(&file).expect("file");
    let last = text.lines().last().expect("a line").to_string();
    // The database holds the last checkpoint; the file got only half of its line.
    let kept = &text[..text.len() - last.len() - 1];
    std::fs::write(&file, format!("{kept}{}", &last[..last.len() / 2])).expect("tear");
    let (url, dir, none) = (tv.backend.vault_url(), tv.data_dir(), carevault_core::VerifyOptions::default());
    let verify = || carevault_core::verify_audit_at(&dir, url.as_deref(), &none);
    let before = verify().await.expect("verify");
    assert!(before.intact(), "an interrupted write is not tampering: {:?}", before.failures);
    assert!(before.notes.iter().any(|n| n.contains("incomplete line")), "{:?}", before.notes);
    // A torn line that is not the start of the database's checkpoint is not excused.
    std::fs::write(&file, format!("{kept}{{\"seq\":99,\"ha")).expect("garble");
    let r = verify().await.expect("verify");
    assert!(r.failures.iter().any(|f| f.message.contains("incomplete line")), "{:?}", r.failures);
    std::fs::write(&file, format!("{kept}{}", &last[..last.len() / 2])).expect("tear");
    tv.reopen().await.expect("restart");
    let aside: Vec<_> = std::fs::read_dir(tv.data_dir().join("audit"))
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("checkpoints.log.torn-"))
        .collect();
    assert_eq!(aside.len(), 1, "the torn line is kept aside for inspection");
    let repaired = std::fs::read_to_string(&file).expect("file");
    assert!(repaired.ends_with(&format!("{last}\n")), "the checkpoint is re-appended whole from the database");
    let r = tv.vault.verify_audit().await.expect("verify");
    assert!(r.intact() && r.notes.iter().all(|n| !n.contains("incomplete")), "{:?} {:?}", r.failures, r.notes);
}

/// Every file of a first start is written crash-safe; a start after a crash at any point either
/// finishes the initialization or says exactly what to do.
#[tokio::test]
async fn a_crash_during_the_first_start_is_finished_or_explained() {
    let backend = carevault_testkit::backend().await.expect("backend");
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let open = |create: bool| {
        let (data, backend) = (data.clone(), backend.clone());
        async move {
            carevault_testkit::open_vault(
                &data,
                &backend,
                Arc::new(carevault_core::SystemClock),
                test_config(),
                carevault_core::InstanceKind::Production,
                create,
            )
            .await
        }
    };
    let v = open(true).await.expect("first start");
    v.shutdown().await;
    let keys = data.join("keys");
    let pin = keys.join("audit-signing.pub");
    // No temporary files are left behind, and every key file is private.
    for f in std::fs::read_dir(&keys).expect("keys").flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.') && !name.ends_with(".tmp"), "left behind: {name}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(f.metadata().expect("meta").permissions().mode() & 0o777, 0o600, "{name}");
    }
    // Crash after the keys were committed but before the pin took its name.
    std::fs::rename(&pin, keys.join("audit-signing.pub.init")).expect("unpin");
    let v = open(false).await.expect("the start finishes the initialization");
    v.shutdown().await;
    assert!(pin.exists() && !keys.join("audit-signing.pub.init").exists());
    // An empty pin (written without fsync by an older version) is explained, not a riddle.
    let good = std::fs::read_to_string(&pin).expect("pin");
    std::fs::write(&pin, "").expect("empty");
    let e = open(false).await.expect_err("an empty pin is refused");
    assert!(e.to_string().contains("is damaged") && e.to_string().contains(good.trim()), "{e}");
    // A missing pin on a folder that was in use: restore it; never trust the database's key.
    std::fs::remove_file(&pin).expect("remove");
    let e = open(false).await.expect_err("a missing pin is refused");
    assert!(e.to_string().contains("is missing") && e.to_string().contains("audit/signing-key.pub"), "{e}");
    std::fs::write(&pin, &good).expect("restore");
    let v = open(false).await.expect("restored");
    assert!(v.verify_audit().await.expect("verify").intact());
    v.shutdown().await;

    // Crash before anything reached the database: the master key file alone. The next start
    // initializes, keeping that key.
    let dir2 = tempfile::tempdir().expect("dir");
    let data2 = dir2.path().join("data");
    std::fs::create_dir_all(data2.join("keys")).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data2, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(data2.join("keys"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let master = data2.join("keys/master.key");
    carevault_core::durable::write_new(&master, format!("{}\n", "ab".repeat(32)).as_bytes()).expect("master");
    std::fs::write(data2.join("keys/audit-signing.pub.init"), "cd".repeat(32)).expect("stale pending pin");
    let backend2 = carevault_testkit::backend().await.expect("backend");
    let v = carevault_testkit::open_vault(
        &data2,
        &backend2,
        Arc::new(carevault_core::SystemClock),
        test_config(),
        carevault_core::InstanceKind::Production,
        true,
    )
    .await
    .expect("initialized after the crash");
    assert!(v.was_created());
    assert_eq!(std::fs::read_to_string(&master).expect("master").trim(), "ab".repeat(32));
    assert!(v.verify_audit().await.expect("verify").intact());
    v.shutdown().await;
}

/// The free-space reserve: below it changes are refused with a precise error while reads and
/// sign-ins continue; `/health` says why.
#[tokio::test]
async fn below_the_free_space_reserve_changes_are_refused_and_reads_continue() {
    let app = App::spawn().await.expect("app");
    let (clin, _) = app.tv.staff(Role::Physician).await.expect("staff");
    let p = app.tv.vault.create_patient(&clin, TREAT, &patient(1)).await.expect("create");
    let staff = app.add_staff(Role::Physician).await.expect("staff");
    let mut tv = app.stop().await;
    tv.reopen_with(CoreConfig { min_free_bytes: Some(u64::MAX), ..tv.config.clone() }).await.expect("reopen");
    let tv_dir = tv.data_dir();
    let app = App::serve(tv, 1 << 20).await.expect("serve");
    let c = app.client().expect("client");
    app.sign_in(&c, &staff).await.expect("sign-in works below the reserve");
    let r = c.get(app.url(&format!("/fhir/r4/Patient/{}", p.id.as_str()))).send().await.expect("read");
    assert_eq!(r.status(), 200, "reads continue");
    let r =
        c.post(app.url("/fhir/r4/Patient")).header("content-type", "application/fhir+json").body(patient(2)).send().await.expect("create");
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let body: serde_json::Value = r.json().await.expect("outcome");
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "CV-STORE-002", "{body}");
    let h = c.get(app.url("/api/v1/health")).send().await.expect("health");
    assert_eq!(h.status(), 503);
    let h: serde_json::Value = h.json().await.expect("problem");
    assert_eq!(h["code"], "storage-low");
    let detail = h["detail"].as_str().unwrap();
    assert!(detail.contains("below the reserve"), "{h}");
    assert!(!detail.contains(tv_dir.to_str().unwrap()), "health names the data folder to anyone: {h}");
    let tv = app.stop().await;
    assert_eq!(patient_count(&tv).await, 1, "nothing was written");
    assert!(tv.vault.verify_audit().await.expect("verify").intact());
}

async fn patient_count(tv: &TestVault) -> i64 {
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    sqlx::query("SELECT COUNT(*) FROM patients").fetch_one(&mut c).await.expect("count").get(0)
}

/// A checkpoint file that lags behind the database while the server runs (an append that
/// failed, or lines cut off) is completed from the database within a tick, and says so in the
/// log; the log verifies again without a restart.
#[tokio::test]
async fn a_lagging_checkpoint_file_is_completed_while_the_server_runs() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    tv.vault.create_patient(&clin, TREAT, &patient(7)).await.expect("create");
    let file = tv.data_dir().join("audit/checkpoints.log");
    let whole = std::fs::read_to_string(&file).expect("file");
    let lines: Vec<&str> = whole.lines().collect();
    assert!(lines.len() >= 3);
    std::fs::write(&file, lines[..lines.len() - 2].iter().map(|l| format!("{l}\n")).collect::<String>()).expect("cut");
    for _ in 0..200 {
        if std::fs::read_to_string(&file).expect("file").starts_with(&whole) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(std::fs::read_to_string(&file).expect("file").starts_with(&whole), "the file was not completed from the database");
    let r = tv.vault.verify_audit().await.expect("verify");
    assert!(r.intact(), "{:?}", r.failures);
}
