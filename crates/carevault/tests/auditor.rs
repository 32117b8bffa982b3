//! The audit log as an outside auditor checks it: every tampering `audit verify` must catch on
//! its own, the two it can only catch against a head kept elsewhere (a rollback to an older
//! genuine copy, a log re-signed with a substituted key), and the auditor's flow against the
//! real binary (keep a head, verify against it, get proofs and check them with the independent
//! Python verifier printed in docs/audit.md). Both stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use std::path::Path;
use std::process::Output;

use carevault_core::{CoreConfig, VerifyOptions, VerifyReport};
use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::{test_config, Backend, TestVault};
use sqlx::{Executor, Row};

const TREAT: PurposeOfUse = PurposeOfUse::Treatment;
const BIN: &str = env!("CARGO_BIN_EXE_carevault");

fn patient(n: usize) -> Vec<u8> {
    let given: String = n.to_string().bytes().map(|d| char::from(b'a' + (d - b'0'))).collect();
    serde_json::json!({"resourceType": "Patient", "name": [{"family": "Auditon", "given": [format!("A{given}")]}]}).to_string().into_bytes()
}

/// A vault with some history: a physician, patients, reads; checkpoints every 3 records.
async fn with_history(records: usize) -> TestVault {
    let tv = TestVault::with_config(CoreConfig { checkpoint_every: 3, ..test_config() }).await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    // Two records per patient (its creation and one read), beyond the sign-in's few.
    for n in 0..records.div_ceil(2) {
        let p = tv.vault.create_patient(&clin, TREAT, &patient(n)).await.expect("create");
        tv.vault.read_patient(&clin, TREAT, p.id.as_str()).await.expect("read");
    }
    tv.vault.checkpoint().await.expect("checkpoint");
    tv
}

fn messages(r: &VerifyReport) -> String {
    r.failures.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join(" | ")
}

async fn sql(tv: &TestVault, statements: &[&str]) {
    let mut c = tv.raw().await.expect("raw");
    for s in statements {
        c.execute(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

async fn head_seq(tv: &TestVault) -> i64 {
    let mut c = tv.raw().await.expect("raw");
    sqlx::query("SELECT seq FROM audit_head").fetch_one(&mut c).await.expect("head").get(0)
}

/// Each tampering listed in the issue, on its own fresh log: detected by `audit verify` alone,
/// with a message that says what happened.
#[tokio::test]
async fn the_verifier_trusts_only_what_it_checks() {
    type Tamper = fn(&TestVault) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        ("head row deleted", |tv| Box::pin(sql(tv, &["DELETE FROM audit_head"])), "table audit_head) is missing"),
        (
            "head row deleted and the tail cut off",
            |tv| {
                Box::pin(async move {
                    let keep = head_seq(tv).await - 4;
                    let cut = [
                        format!("DELETE FROM audit_events WHERE seq > {keep}"),
                        format!("DELETE FROM audit_checkpoints WHERE seq > {keep}"),
                        "DELETE FROM audit_head".to_string(),
                    ];
                    sql(tv, &cut.iter().map(String::as_str).collect::<Vec<_>>()).await;
                })
            },
            "is missing",
        ),
        ("every record deleted", |tv| Box::pin(sql(tv, &["DELETE FROM audit_events", "DELETE FROM audit_tree_blocks"])), "empty"),
        (
            "every record, checkpoint and the head reset",
            |tv| {
                Box::pin(async move {
                    sql(
                        tv,
                        &[
                            "DELETE FROM audit_events",
                            "DELETE FROM audit_checkpoints",
                            "DELETE FROM audit_tree_blocks",
                            "UPDATE audit_head SET seq = 0, signature = NULL, tree_frontier = NULL",
                        ],
                    )
                    .await;
                    std::fs::write(tv.data_dir().join("audit/checkpoints.log"), "").expect("wipe file");
                })
            },
            "the audit log is empty",
        ),
        (
            "checkpoint file deleted",
            |tv| Box::pin(async move { std::fs::remove_file(tv.data_dir().join("audit/checkpoints.log")).expect("rm") }),
            "(the file was deleted)",
        ),
        (
            "checkpoint file shortened by its last line",
            |tv| {
                Box::pin(async move {
                    let p = tv.data_dir().join("audit/checkpoints.log");
                    let text = std::fs::read_to_string(&p).expect("file");
                    let mut lines: Vec<&str> = text.lines().collect();
                    lines.pop();
                    std::fs::write(&p, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("shorten");
                })
            },
            "lacks 1 checkpoint(s) the database holds",
        ),
        (
            "a checkpoint deleted from the database",
            |tv| Box::pin(sql(tv, &["DELETE FROM audit_checkpoints WHERE seq = (SELECT MIN(seq) FROM audit_checkpoints)"])),
            "that the database lacks",
        ),
        (
            "the public-key pin removed",
            |tv| Box::pin(async move { std::fs::remove_file(tv.data_dir().join("keys/audit-signing.pub")).expect("rm") }),
            "pin",
        ),
        (
            "the database's signing key replaced",
            |tv| {
                Box::pin(sql(
                    tv,
                    &["UPDATE keys SET public_key = (SELECT hash FROM audit_events WHERE seq = 1) WHERE purpose = 'audit-signing'"],
                ))
            },
            "differs from the key pinned",
        ),
        (
            "a stored tree block altered",
            |tv| Box::pin(sql(tv, &["UPDATE audit_tree_blocks SET hash = (SELECT hash FROM audit_events WHERE seq = 1)"])),
            "stored Merkle root",
        ),
        (
            "a database tree head altered",
            |tv| {
                Box::pin(sql(
                    tv,
                    &["UPDATE audit_checkpoints SET root_hash = (SELECT hash FROM audit_events WHERE seq = 1) WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)"],
                ))
            },
            "invalid signature",
        ),
    ];
    for (name, tamper, needle) in cases {
        // 260 records: one complete block of the tree is stored.
        let tv = with_history(260).await;
        let before = tv.vault.verify_audit().await.expect("verify");
        assert!(before.intact(), "{name}: intact before: {}", messages(&before));
        assert!(before.tree_blocks >= 1 && before.tree_heads >= 2, "{name}: {before:?}");
        // Stopped, as an attacker with the files would find it: a running server appends what
        // its checkpoint file lacks again within seconds (logged).
        tv.vault.shutdown().await;
        tamper(&tv).await;
        let after = carevault_core::verify_audit_at(&tv.data_dir(), tv.backend.vault_url().as_deref(), &VerifyOptions::default())
            .await
            .expect("verify");
        assert!(!after.intact(), "{name}: not detected");
        assert!(messages(&after).contains(needle), "{name}: {}", messages(&after));
    }
}

fn run(backend: &Backend, args: &[&str]) -> Output {
    carevault_testkit::run_command(BIN, backend, args, None).expect("run carevault")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Python verifier exactly as docs/audit.md prints it.
fn python_verifier(dir: &Path) -> std::path::PathBuf {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/audit.md")).expect("docs/audit.md");
    let start = doc.find("```python\n").expect("a python block in docs/audit.md") + "```python\n".len();
    let end = start + doc[start..].find("```").expect("end of the block");
    let path = dir.join("verify_proofs.py");
    std::fs::write(&path, &doc[start..end]).expect("write verifier");
    path
}

fn python(verifier: &Path, args: &[&Path]) -> (bool, String) {
    let o = std::process::Command::new("python3").arg(verifier).args(args).output().expect("python3");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// The chain head row: seq, hash, signature, tree frontier.
type HeadRow = (i64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The state of the audit tables and files at one moment: a genuine older copy.
struct Snapshot {
    head: HeadRow,
    file: String,
}

async fn snapshot(tv: &TestVault) -> Snapshot {
    let mut c = tv.raw().await.expect("raw");
    let r = sqlx::query("SELECT seq, hash, signature, tree_frontier FROM audit_head").fetch_one(&mut c).await.expect("head");
    Snapshot {
        head: (r.get(0), r.get(1), r.get(2), r.get(3)),
        file: std::fs::read_to_string(tv.data_dir().join("audit/checkpoints.log")).expect("file"),
    }
}

/// Puts the audit log back as it was at `s` (records, head, checkpoints, blocks and file): what
/// restoring an older genuine copy of the folder does to the log.
async fn roll_back(tv: &TestVault, s: &Snapshot) {
    let mut c = tv.raw().await.expect("raw");
    let (seq, hash, sig, frontier) = &s.head;
    c.execute(format!("DELETE FROM audit_events WHERE seq > {seq}").as_str()).await.expect("events");
    c.execute(format!("DELETE FROM audit_disclosures WHERE seq > {seq}").as_str()).await.expect("disclosures");
    c.execute(format!("DELETE FROM audit_checkpoints WHERE seq > {seq}").as_str()).await.expect("checkpoints");
    c.execute(format!("DELETE FROM audit_tree_blocks WHERE idx >= {}", seq / 256).as_str()).await.expect("blocks");
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, signature = $3, tree_frontier = $4")
        .bind(*seq)
        .bind(hash.clone())
        .bind(sig.clone())
        .bind(frontier.clone())
        .execute(&mut c)
        .await
        .expect("head");
    std::fs::write(tv.data_dir().join("audit/checkpoints.log"), &s.file).expect("file");
}

/// The auditor's visit against the real binary: keep a head, come back, verify with it, prove
/// inclusion and consistency, check the proofs with the documented Python verifier; a rollback
/// and a substituted key are caught by the witness heads and the witness folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_keeps_heads_and_checks_proofs_independently() {
    let witness = tempfile::tempdir().expect("witness");
    let config = CoreConfig { checkpoint_every: 5, witness_dir: Some(witness.path().to_path_buf()), ..test_config() };
    let mut tv = TestVault::with_config(config).await.expect("vault");
    let (clin, staff) = tv.staff(Role::Physician).await.expect("staff");
    for i in 0..40 {
        tv.vault.create_patient(&clin, TREAT, &patient(i)).await.expect("create");
    }
    tv.vault.shutdown().await;
    // The operator's settings, as the CLI reads them: `audit head` appends to the witness too.
    let toml = format!("[audit]\nwitness_dir = \"{}\"\n", witness.path().display());
    std::fs::write(tv.data_dir().join("carevault.toml"), toml).expect("config");
    let work = tempfile::tempdir().expect("work");
    let d = tv.data_dir();
    let d = d.to_str().expect("path");
    let backend = tv.backend.clone();
    let b = &backend;

    // Visit 1: a head to keep.
    let o = run(b, &["audit", "head", "--data-dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let head1: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("head JSON");
    for k in ["tree_size", "root_hash", "timestamp", "signature", "public_key"] {
        assert!(head1.get(k).is_some(), "head lacks {k}: {head1}");
    }
    assert_eq!(head1.as_object().expect("object").len(), 5, "{head1}");
    let pin = std::fs::read_to_string(tv.data_dir().join("keys/audit-signing.pub")).expect("pin");
    assert_eq!(head1["public_key"], pin.trim());
    let head1_path = work.path().join("head1.json");
    std::fs::write(&head1_path, stdout(&o)).expect("keep");
    let older = snapshot(&tv).await;

    // The clinic goes on.
    tv.reopen().await.expect("reopen");
    tv.clock.advance_secs(31);
    let clin = tv.sign_in(&staff).await.expect("sign in");
    for i in 40..90 {
        tv.vault.create_patient(&clin, TREAT, &patient(i)).await.expect("create");
    }
    tv.vault.shutdown().await;

    // Visit 2.
    let o = run(b, &["audit", "head", "--data-dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let head2: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("head JSON");
    let head2_path = work.path().join("head2.json");
    std::fs::write(&head2_path, stdout(&o)).expect("keep");
    let (size1, size2) = (head1["tree_size"].as_u64().expect("size"), head2["tree_size"].as_u64().expect("size"));
    assert!(size2 > size1 + 50, "{size1} {size2}");
    let witness_arg = witness.path().to_str().expect("path");
    let o = run(
        b,
        &[
            "audit",
            "verify",
            "--data-dir",
            d,
            "--witness",
            head1_path.to_str().expect("p"),
            "--witness",
            head2_path.to_str().expect("p"),
            "--witness-dir",
            witness_arg,
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("audit verify: OK") && stdout(&o).contains("consistent with every witness head"), "{}", stdout(&o));
    let o = run(b, &["audit", "verify", "--data-dir", d]);
    assert!(stdout(&o).contains("note: no outside witness was given"), "{}", stdout(&o));

    // Proofs, checked by the Python verifier from the documentation.
    let verifier = python_verifier(work.path());
    let o = run(b, &["audit", "prove", "inclusion", "--data-dir", d, "--seq", "7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let inclusion: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("proof JSON");
    assert_eq!(inclusion["leaf_index"], 6);
    assert_eq!(inclusion["tree_size"], head2["tree_size"]);
    let inclusion_path = work.path().join("inclusion.json");
    std::fs::write(&inclusion_path, stdout(&o)).expect("proof");
    let (ok, said) = python(&verifier, &[Path::new("inclusion"), &inclusion_path, &head2_path]);
    assert!(ok, "{said}");
    let o = run(b, &["audit", "prove", "consistency", "--data-dir", d, "--from-size", &size1.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let consistency_path = work.path().join("consistency.json");
    std::fs::write(&consistency_path, stdout(&o)).expect("proof");
    let (ok, said) = python(&verifier, &[Path::new("consistency"), &consistency_path, &head1_path, &head2_path]);
    assert!(ok, "{said}");
    // A proof against a size of the auditor's choosing, and one for every record of a small tree.
    for seq in [1, 2, size1, size1 + 1] {
        let o = run(b, &["audit", "prove", "inclusion", "--data-dir", d, "--seq", &seq.to_string(), "--tree-size", &size1.to_string()]);
        if seq > size1 {
            assert_eq!(o.status.code(), Some(2), "record beyond the tree: {}", stdout(&o));
            assert!(stderr(&o).contains(&format!("record {seq} is not in a tree of {size1} records")), "{}", stderr(&o));
            continue;
        }
        std::fs::write(&inclusion_path, stdout(&o)).expect("proof");
        let (ok, said) = python(&verifier, &[Path::new("inclusion"), &inclusion_path, &head1_path]);
        assert!(ok, "record {seq}: {said}");
    }
    // A forged proof and a proof against the wrong head are not proven.
    let mut forged = inclusion.clone();
    forged["audit_path"][0] = serde_json::json!("00".repeat(32));
    std::fs::write(&inclusion_path, forged.to_string()).expect("forged");
    let (ok, said) = python(&verifier, &[Path::new("inclusion"), &inclusion_path, &head2_path]);
    assert!(!ok && said.contains("NOT PROVEN"), "{said}");
    let (ok, _) = python(&verifier, &[Path::new("consistency"), &consistency_path, &head2_path, &head1_path]);
    assert!(!ok);
    // Bad input: a precise message and exit 2.
    for (args, needle) in [
        (vec!["inclusion", "--seq", "0"], "records are numbered from 1"),
        (vec!["inclusion", "--seq", "99999"], "not in the newest signed tree head"),
        (vec!["inclusion", "--seq", "3", "--tree-size", "99999"], "out of range"),
        (vec!["consistency", "--from-size", "0"], "--from-size must be between 1"),
        (vec!["consistency", "--from-size", "5", "--to-size", "4"], "--from-size must be between 1"),
    ] {
        let mut a = vec!["audit", "prove"];
        a.extend(args.iter().copied());
        a.extend(["--data-dir", d]);
        let o = run(b, &a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stdout(&o));
        assert!(stderr(&o).contains(needle), "{a:?}: {}", stderr(&o));
    }

    // A log rewritten and re-signed with another key, pin replaced too: another installation's
    // folder and database. Intact on its own; the auditor's head names the substitution.
    let other = with_history(30).await;
    other.vault.shutdown().await;
    let od = other.data_dir();
    let alone = carevault_core::verify_audit_at(&od, other.backend.vault_url().as_deref(), &VerifyOptions::default()).await.expect("v");
    assert!(alone.intact());
    let o = run(&other.backend, &["audit", "verify", "--data-dir", od.to_str().expect("p"), "--witness", head1_path.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the signing key was substituted"), "{}", stderr(&o));
    let o = run(&other.backend, &["audit", "verify", "--data-dir", od.to_str().expect("p"), "--witness-dir", witness_arg]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds no tree heads of this installation"), "{}", stderr(&o));

    // A rollback to the older genuine copy: intact on its own, caught by the witnesses.
    roll_back(&tv, &older).await;
    let alone = carevault_core::verify_audit_at(&tv.data_dir(), b.vault_url().as_deref(), &VerifyOptions::default()).await.expect("verify");
    assert!(alone.intact(), "the older copy is genuine: {}", messages(&alone));
    let o = run(b, &["audit", "verify", "--data-dir", d, "--witness", head2_path.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("records were removed (the log was rolled back"), "{}", stderr(&o));
    let o = run(b, &["audit", "verify", "--data-dir", d, "--witness-dir", witness_arg]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("rolled back"), "{}", stderr(&o));

    // A wiped log fails on its own and against the witness.
    sql(&tv, &["DELETE FROM audit_events"]).await;
    let o = run(b, &["audit", "verify", "--data-dir", d, "--witness", head1_path.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("records were removed"), "{}", stderr(&o));
}

/// A log written before the Merkle tree existed gets its tree built at the next start, and its
/// proofs and heads work like any other.
#[tokio::test]
async fn a_log_from_before_the_tree_gets_its_tree_at_the_next_start() {
    let mut tv = with_history(300).await;
    let before = tv.vault.verify_audit().await.expect("verify");
    // As the schema-11 store had it: no frontier, no blocks, checkpoints without tree heads.
    sql(
        &tv,
        &[
            "UPDATE audit_head SET tree_frontier = NULL",
            "DELETE FROM audit_tree_blocks",
            "UPDATE audit_checkpoints SET root_hash = NULL, tree_signature = NULL",
        ],
    )
    .await;
    tv.reopen().await.expect("reopen");
    let head = tv.vault.tree_head().await.expect("head");
    assert!(head.signature_valid());
    let after = tv.vault.verify_audit().await.expect("verify");
    // The file still holds the old lines with tree heads; they agree with the rebuilt tree.
    assert!(after.intact(), "{}", messages(&after));
    assert_eq!(after.tree_blocks, 1);
    assert_eq!(after.records, before.records);
    let p =
        carevault_core::prove_inclusion_at(&tv.data_dir(), tv.backend.vault_url().as_deref(), 5, None).await.expect("open").expect("proof");
    assert_eq!(p.tree_size, head.tree_size);
    assert_eq!(p.root_hash, head.root_hash);
}
