//! The writer against a real SQLite store: failed batches acknowledge nothing, a job's own store
//! error fails only that job, alerts survive a full queue and a failed batch.

use std::sync::Arc;
use std::time::Duration;

use carevault_crypto::signing::AuditSigner;
use carevault_domain::{AuditAction, Outcome};
use carevault_store::Store;

use super::files::AuditFiles;
use super::writer::{AuditWriter, WriterConfig};
use super::Draft;
use crate::access::changes::AccessChange;
use crate::clock::{Clock, SystemClock};
use crate::error::CoreError;
use crate::storage::StorageMonitor;

struct Rig {
    store: Store,
    writer: AuditWriter,
    _dir: tempfile::TempDir,
}

async fn rig(queue: usize) -> Rig {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("audit")).expect("audit dir");
    let store = Store::open(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display())).await.expect("store");
    let files = Arc::new(AuditFiles::new(&dir.path().join("audit"), None, "test"));
    files.create_empty().expect("file");
    let config = WriterConfig {
        checkpoint_every: 1,
        checkpoint_interval_micros: 1_000_000,
        queue,
        files,
        storage: Arc::new(StorageMonitor::new(dir.path().to_path_buf(), 0)),
    };
    let (writer, _task) = AuditWriter::start(store.clone(), Arc::new(AuditSigner::generate()), Arc::new(SystemClock), config);
    Rig { store, writer, _dir: dir }
}

fn draft(tag: &str) -> Draft {
    Draft::new(SystemClock.now_micros(), AuditAction::Read, Outcome::Success).actor_name(format!("system:{tag}"))
}

async fn actors(store: &Store) -> Vec<String> {
    store.audit_events(0, 10_000).await.expect("events").into_iter().map(|r| r.actor).collect()
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// While table `fault` holds a row, every append to the audit log ends its transaction inside
/// SQLite (RAISE(ROLLBACK)), as a full disk does.
async fn install_fault(store: &Store) {
    store.execute_for_tests("CREATE TABLE fault (x INTEGER)").await.expect("table");
    store
        .execute_for_tests(
            "CREATE TRIGGER fault BEFORE INSERT ON audit_events WHEN EXISTS (SELECT 1 FROM fault) BEGIN SELECT RAISE(ROLLBACK, 'injected'); END",
        )
        .await
        .expect("trigger");
}

/// Waits (bounded) for alert `id` to be stored.
async fn alert_stored(store: &Store, id: &str) -> bool {
    for _ in 0..200 {
        if store.alert(id).await.expect("alert").is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_store_error_in_one_job_fails_only_that_job() {
    let r = rig(64).await;
    r.store
        .execute_for_tests(
            "CREATE TRIGGER poison BEFORE INSERT ON alerts WHEN NEW.kind = 'poison' BEGIN SELECT RAISE(ABORT, 'injected statement failure'); END",
        )
        .await
        .expect("trigger");
    // Hold the write connection so that the three jobs queue up and go into one batch.
    let hold = r.store.begin().await.expect("hold");
    let w = r.writer.clone();
    let a = tokio::spawn(async move { w.append(draft("a")).await });
    let w = r.writer.clone();
    let poison = crate::access::alert("security", "poison", None, None, None, 1);
    let b =
        tokio::spawn(
            async move { w.write(vec![AccessChange::InsertAlert(poison).into()], vec![draft("b")], Some(draft("b-failed"))).await },
        );
    let w = r.writer.clone();
    let c = tokio::spawn(async move { w.append(draft("c")).await });
    // The three tasks run before the writer is woken (this runtime is single-threaded), so they
    // reach it together: one batch.
    tokio::time::sleep(Duration::from_millis(200)).await;
    hold.rollback().await.expect("release");
    assert!(a.await.expect("a").is_ok());
    assert!(matches!(b.await.expect("b"), Err(CoreError::Internal(_))));
    assert!(c.await.expect("c").is_ok());
    let got = actors(&r.store).await;
    assert!(got.contains(&"system:a".into()) && got.contains(&"system:c".into()), "{got:?}");
    assert!(got.contains(&"system:b-failed".into()) && !got.contains(&"system:b".into()), "{got:?}");
    assert!(r.store.alerts("security", false, 10).await.expect("alerts").is_empty());
}

#[tokio::test]
async fn a_failed_commit_acknowledges_nothing_and_the_next_batch_commits() {
    let r = rig(64).await;
    install_fault(&r.store).await;
    r.writer.append(draft("before")).await.expect("before");
    r.store.execute_for_tests("INSERT INTO fault VALUES (1)").await.expect("on");
    for i in 0..5 {
        assert!(matches!(r.writer.append(draft(&format!("lost{i}"))).await, Err(CoreError::AuditUnavailable)));
    }
    r.store.execute_for_tests("DELETE FROM fault").await.expect("off");
    for i in 0..5 {
        r.writer.append(draft(&format!("after{i}"))).await.expect("after");
    }
    let got = actors(&r.store).await;
    assert_eq!(got, ["system:before", "system:after0", "system:after1", "system:after2", "system:after3", "system:after4"]);
}

#[tokio::test]
async fn alerts_survive_a_full_queue_and_a_failed_batch() {
    let r = rig(1).await;
    let hold = r.store.begin().await.expect("hold");
    let mut waiting = Vec::new();
    for i in 0..3 {
        let w = r.writer.clone();
        waiting.push(tokio::spawn(async move { w.append(draft(&format!("read{i}"))).await }));
    }
    until("the queue is full", || r.writer.queued() >= 1).await;
    let alert = crate::access::alert("security", "sign-in-storm", None, None, Some("198.51.100.7"), 1);
    let id = alert.id.clone();
    r.writer.fire_audited(vec![AccessChange::InsertAlert(alert).into()], vec![draft("storm")]);
    hold.rollback().await.expect("release");
    for w in waiting {
        w.await.expect("join").expect("read");
    }
    assert!(alert_stored(&r.store, &id).await, "the alert raised while the queue was full was dropped");
    assert!(actors(&r.store).await.contains(&"system:storm".into()));

    // A batch that fails keeps the alert and retries it once the store recovers.
    install_fault(&r.store).await;
    r.store.execute_for_tests("INSERT INTO fault VALUES (1)").await.expect("on");
    let alert = crate::access::alert("security", "sign-in-storm", None, None, Some("198.51.100.8"), 2);
    let id = alert.id.clone();
    r.writer.fire_audited(vec![AccessChange::InsertAlert(alert).into()], vec![draft("storm2")]);
    assert!(r.writer.append(draft("probe")).await.is_err());
    r.store.execute_for_tests("DELETE FROM fault").await.expect("off");
    assert!(alert_stored(&r.store, &id).await, "the alert of a failed batch was not retried");
    assert!(actors(&r.store).await.contains(&"system:storm2".into()));
}
