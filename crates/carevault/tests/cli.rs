//! The `carevault` command as an operator uses it, and the architecture rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use carevault_domain::{PurposeOfUse, Role};
use carevault_testkit::{Backend, TestVault, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_carevault");

fn cmd(backend: &Backend) -> Command {
    carevault_testkit::command(BIN, backend)
}

fn run(backend: &Backend, args: &[&str], stdin: Option<&str>) -> Output {
    carevault_testkit::run_command(BIN, backend, args, stdin).expect("run carevault")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Starts `carevault serve` (or demo), reads its banner until it says it listens, stops it.
fn first_start(backend: &Backend, args: &[&str]) -> String {
    let mut child = cmd(backend).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                out.push_str(&l);
                out.push('\n');
                if l.starts_with("FHIR R4:") {
                    // Give the rest of the banner a moment, then stop.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().expect("wait");
    for l in lines.map_while(Result::ok) {
        out.push_str(&l);
        out.push('\n');
    }
    assert!(status.success(), "serve exited with {status}: {out}");
    out
}

#[tokio::test]
async fn first_start_then_user_add_prints_json_with_a_totp_uri() {
    let backend = carevault_testkit::backend().await.expect("backend");
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let d = data.to_str().expect("path");
    let banner = first_start(&backend, &["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    assert!(banner.contains("listening on https://127.0.0.1:"), "{banner}");
    assert!(banner.contains("carevault user add --username admin --role practice_admin --password-stdin"), "{banner}");
    assert!(data.join("tls/cert.pem").exists() && data.join("keys/master.key").exists());

    let o = run(
        &backend,
        &["user", "add", "--username", "Alice", "--role", "physician", "--password-stdin", "--data-dir", d],
        Some(&format!("{PASSWORD}\n")),
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(v["username"], "alice");
    assert_eq!(v["role"], "physician");
    assert!(v["id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(v["otpauth_uri"].as_str().is_some_and(|s| s.starts_with("otpauth://totp/carevault:alice?secret=")));

    let refusals: &[(&[&str], Option<&str>, &str)] = &[
        (&["user", "add", "--username", "bob", "--role", "superuser", "--password-stdin"], Some("x"), "unknown role"),
        (&["user", "add", "--username", "bob", "--role", "physician", "--password-stdin"], Some("short\n"), "at least 12"),
        (&["user", "add", "--username", "bob", "--role", "physician", "--password-stdin"], Some("Password1234\n"), "commonly used"),
        (&["user", "add", "--username", "bob", "--role", "physician"], None, "--password-stdin"),
        (
            &["user", "add", "--username", "alice", "--role", "physician", "--password-stdin"],
            Some("another good passphrase\n"),
            "already exists",
        ),
        (&["user", "add", "--username", "a b", "--role", "physician", "--password-stdin"], Some("another good passphrase\n"), "username"),
    ];
    for (args, input, needle) in refusals {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--data-dir", d]);
        let o = run(&backend, &a, *input);
        let (_, stderr) = text(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// The organization structure from the shell: organizations, locations with a time zone,
/// departments, rooms; bad input gets a precise message and a non-zero exit.
#[tokio::test]
async fn org_commands_build_the_structure_and_refuse_bad_input() {
    let backend = carevault_testkit::backend().await.expect("backend");
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let d = data.to_str().expect("path");
    first_start(&backend, &["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    let ok = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--data-dir", d]);
        let o = run(&backend, &a, None);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        out.trim().to_string()
    };
    let org = ok(&["org", "add", "organization", "--name", "Lakeside Clinic"]);
    assert!(org.starts_with("org-"), "{org}");
    let loc = ok(&["org", "add", "location", "--organization", &org, "--name", "Main Street", "--time-zone", "America/Chicago"]);
    ok(&["org", "add", "department", "--organization", &org, "--location", &loc, "--name", "Pediatrics"]);
    ok(&["org", "add", "room", "--organization", &org, "--location", &loc, "--name", "Exam 1"]);
    let list = ok(&["org", "list"]);
    assert!(list.contains("time_zone=America/Chicago") && list.contains("Exam 1") && list.contains("Pediatrics"), "{list}");
    for (args, needle) in [
        (vec!["org", "add", "location", "--organization", org.as_str(), "--name", "Nowhere"], "time zone"),
        (
            vec!["org", "add", "location", "--organization", org.as_str(), "--name", "Mars", "--time-zone", "Mars/Olympus"],
            "unknown time zone",
        ),
        (vec!["org", "add", "room", "--organization", org.as_str(), "--name", "Exam 2"], "belongs to a location"),
        (vec!["org", "add", "room", "--organization", org.as_str(), "--location", loc.as_str(), "--name", "Exam 1"], "already exists"),
        (vec!["org", "add", "wing", "--name", "West"], "organization, location, department or room"),
        (vec!["org", "add", "location", "--organization", "org-nope", "--name", "X", "--time-zone", "UTC"], "not found"),
    ] {
        let mut a = args.clone();
        a.extend(["--data-dir", d]);
        let o = run(&backend, &a, None);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn audit_verify_command_exit_codes() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    let body = serde_json::json!({"resourceType": "Patient", "name": [{"family": "Verity"}]}).to_string();
    let p = tv.vault.create_patient(&clin, PurposeOfUse::Treatment, body.as_bytes()).await.expect("create");
    tv.vault.read_patient(&clin, PurposeOfUse::Treatment, p.id.as_str()).await.expect("read");
    tv.vault.shutdown().await;
    let d = tv.data_dir();
    let d = d.to_str().expect("path");
    let o = run(&tv.backend, &["audit", "verify", "--data-dir", d], None);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("audit verify: OK"), "{stdout}");
    let mut c = tv.raw().await.expect("raw");
    sqlx::Executor::execute(&mut c, "UPDATE audit_events SET source_ip = '203.0.113.9' WHERE seq = 3").await.expect("tamper");
    let o = run(&tv.backend, &["audit", "verify", "--data-dir", d], None);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("FAILED at record 3"), "{stderr}");
}

#[tokio::test]
async fn keys_rotate_and_status_from_the_shell() {
    let tv = TestVault::new().await.expect("vault");
    let (clin, _) = tv.staff(Role::Physician).await.expect("staff");
    for i in 0..5 {
        let body = serde_json::json!({"resourceType": "Patient", "name": [{"family": format!("Keyson{}", "a".repeat(i))}]}).to_string();
        tv.vault.create_patient(&clin, PurposeOfUse::Treatment, body.as_bytes()).await.expect("create");
    }
    tv.vault.shutdown().await;
    let d = tv.data_dir();
    let d = d.to_str().expect("path");
    let o = run(&tv.backend, &["keys", "rotate", "--data-dir", d, "--batch-size", "2"], None);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("rows re-encrypted under data key v2"), "{stderr}");
    assert!(stdout.contains("key rotation complete: data key v2 is current"), "{stdout}");
    let o = run(&tv.backend, &["keys", "status", "--data-dir", d], None);
    let (stdout, _) = text(&o);
    assert!(stdout.contains("current data key: v2") && stdout.contains("all rows are sealed with the current key"), "{stdout}");
    let o = run(&tv.backend, &["audit", "verify", "--data-dir", d], None);
    assert!(o.status.success());
}

#[tokio::test]
async fn demo_is_bannered_and_never_mixes_with_real_data() {
    let sqlite = Backend::Sqlite;
    let dir = tempfile::tempdir().expect("tmp");
    let demo = dir.path().join("demo");
    let banner = first_start(&sqlite, &["demo", "--data-dir", demo.to_str().expect("p"), "--listen", "127.0.0.1:0"]);
    assert!(banner.contains("carevault DEMO"), "{banner}");
    assert!(banner.contains("demo.clinician") && banner.contains("otpauth://totp/"), "{banner}");
    // serve refuses the demo folder; demo refuses a real one.
    let o = run(&sqlite, &["serve", "--data-dir", demo.to_str().expect("p"), "--listen", "127.0.0.1:0"], None);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("demo clinic"), "{}", text(&o).1);
    let real = dir.path().join("real");
    first_start(&sqlite, &["serve", "--data-dir", real.to_str().expect("p"), "--listen", "127.0.0.1:0"]);
    let o = run(&sqlite, &["demo", "--data-dir", real.to_str().expect("p"), "--listen", "127.0.0.1:0"], None);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("non-demo data"), "{}", text(&o).1);
}

#[tokio::test]
async fn broken_stores_and_folders_get_clear_messages_not_panics() {
    use std::os::unix::fs::PermissionsExt;
    let sqlite = Backend::Sqlite;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let d = data.to_str().expect("p");
    first_start(&sqlite, &["serve", "--data-dir", d, "--listen", "127.0.0.1:0"]);
    // Corrupted database file.
    let db = data.join("carevault.db");
    let original = std::fs::read(&db).expect("db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::write(&db, b"this is not an sqlite database at all, just some bytes....................................").expect("corrupt");
    let o = run(&sqlite, &["keys", "status", "--data-dir", d], None);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("corrupted"), "{}", text(&o).1);
    std::fs::write(&db, original).expect("restore");
    // Folder open to others.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let o = run(&sqlite, &["keys", "status", "--data-dir", d], None);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("chmod 700"), "{}", text(&o).1);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // Missing folder.
    let o = run(&sqlite, &["audit", "verify", "--data-dir", dir.path().join("nope").to_str().expect("p")], None);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("does not exist"), "{}", text(&o).1);
    // Bad settings.
    let mut c = cmd(&sqlite);
    let o = c.args(["keys", "status", "--data-dir", d]).env("CAREVAULT_SESSION_IDLE_TIMEOUT_SECS", "ten").output().expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("CAREVAULT_SESSION_IDLE_TIMEOUT_SECS"));
}

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["demo"],
        &["user"],
        &["user", "add"],
        &["user", "unlock"],
        &["audit"],
        &["audit", "verify"],
        &["keys"],
        &["keys", "status"],
        &["keys", "rotate"],
    ];
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let o = Command::new(BIN).args(&args).output().expect("run");
        assert!(o.status.success(), "{args:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Usage: carevault"), "{args:?}: {out}");
    }
}

/// Only carevault-core may depend on carevault-store and carevault-crypto; only the store (and
/// the test and benchmark tools) on sqlx; the shipped binary never links the test kit.
#[test]
fn dependency_edges_keep_the_chokepoint() {
    // An allow-list per crate and kind: a dependency not written here fails the test, so a new
    // edge (a crate reaching the database, a crypto library outside carevault-crypto, the test
    // kit in a shipped crate) is a reviewed change of this table, never an accident.
    const NORMAL: &[(&str, &[&str])] = &[
        ("carevault-domain", &["jiff", "pdf-writer", "serde", "serde_json", "sha2", "thiserror", "time", "unicode-normalization"]),
        (
            "carevault-crypto",
            &[
                "aes-gcm",
                "argon2",
                "ed25519-dalek",
                "hex",
                "hmac",
                "rand_core",
                "serde_json",
                "sha2",
                "subtle",
                "thiserror",
                "totp-rs",
                "webauthn-rs",
                "zeroize",
            ],
        ),
        ("carevault-store", &["rusqlite", "sqlx", "thiserror", "tokio", "tracing"]),
        (
            "carevault-core",
            &[
                "base64",
                "carevault-crypto",
                "carevault-domain",
                "carevault-store",
                "data-encoding",
                "hex",
                "rustix",
                "serde",
                "serde_json",
                "thiserror",
                "time",
                "tokio",
                "tracing",
                "zeroize",
            ],
        ),
        (
            "carevault-web",
            &[
                "axum",
                "base64",
                "carevault-core",
                "carevault-domain",
                "form_urlencoded",
                "http-body-util",
                "hyper",
                "hyper-util",
                "maud",
                "qrcode",
                "rcgen",
                "rustls",
                "serde",
                "serde_json",
                "thiserror",
                "time",
                "tokio",
                "tokio-rustls",
                "tower",
                "tracing",
                "x509-parser",
            ],
        ),
        (
            "carevault",
            &[
                "anyhow",
                "carevault-core",
                "carevault-domain",
                "carevault-web",
                "clap",
                "serde",
                "serde_json",
                "tokio",
                "toml",
                "tracing",
                "tracing-subscriber",
            ],
        ),
        (
            "carevault-testkit",
            &[
                "anyhow",
                "carevault-core",
                "carevault-domain",
                "carevault-web",
                "reqwest",
                "serde_json",
                "sqlx",
                "tempfile",
                "tokio",
                "totp-rs",
                "url",
                "webauthn-authenticator-rs",
            ],
        ),
        (
            "carevault-bench",
            &[
                "anyhow",
                "carevault-core",
                "carevault-domain",
                "carevault-testkit",
                "carevault-web",
                "reqwest",
                "serde_json",
                "sha2",
                "sqlx",
                "tempfile",
                "tokio",
            ],
        ),
    ];
    const DEV: &[(&str, &[&str])] = &[
        ("carevault-domain", &["proptest"]),
        ("carevault-crypto", &["proptest", "tempfile", "url", "webauthn-authenticator-rs"]),
        ("carevault-store", &[]),
        // The store's test-support feature (`Store::execute_for_tests`), for fault tests only.
        ("carevault-core", &["carevault-store", "proptest", "tempfile"]),
        ("carevault-web", &[]),
        (
            "carevault",
            &["base64", "carevault-testkit", "hex", "jiff", "reqwest", "serde_json", "sha2", "sqlx", "tempfile", "totp-rs", "x509-parser"],
        ),
        ("carevault-testkit", &[]),
        ("carevault-bench", &[]),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--no-deps"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let mut checked = 0;
    let mut unexpected = Vec::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("name");
        let normal = NORMAL.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("crate {name} has no allow-list")).1;
        let dev = DEV.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("crate {name} has no dev allow-list")).1;
        for dep in pkg["dependencies"].as_array().expect("deps") {
            let dep_name = dep["name"].as_str().expect("dep");
            let allowed = match dep["kind"].as_str() {
                None => normal,
                Some("dev") => dev,
                Some(other) => panic!("{name}: {other}-dependency {dep_name} is not expected"),
            };
            if !allowed.contains(&dep_name) {
                unexpected.push(format!("{name} -> {dep_name} ({})", dep["kind"].as_str().unwrap_or("normal")));
            }
            checked += 1;
        }
    }
    assert!(unexpected.is_empty(), "dependencies outside the allow-list:\n{}", unexpected.join("\n"));
    // The invariants the table encodes, stated once more so an edit of the table is read twice.
    for (name, deps) in NORMAL {
        if *name != "carevault-core" {
            assert!(!deps.contains(&"carevault-store") && !deps.contains(&"carevault-crypto"), "{name}: go through carevault-core");
        }
        for c in ["aes-gcm", "argon2", "ed25519-dalek", "hmac", "webauthn-rs"] {
            assert!(*name == "carevault-crypto" || !deps.contains(&c), "{name} must not depend on {c}");
        }
        assert!(*name == "carevault-store" || !deps.contains(&"rusqlite"), "{name}: only the store reaches the database");
        if ["carevault", "carevault-web", "carevault-core"].contains(name) {
            assert!(!deps.contains(&"carevault-testkit") && !deps.contains(&"sqlx"), "{name} ships the test kit or sqlx");
        }
    }
    assert!(checked > 20);
}

/// The web crate holds a `Vault`, whose every method takes an authenticated actor; the
/// operator's handle (opening the store, bootstrap accounts, key rotation, the clock, the data
/// folder's paths) is made only by the binary. The web crate's sources never name it.
#[test]
fn the_web_crate_never_reaches_the_operator() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../carevault-web/src");
    let mut stack = vec![web];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let src = std::fs::read_to_string(&p).expect("read");
            for word in ["Operator", "OpenOptions", "prepare_data_dir", "ManualClock", "verify_audit_at", "prove_inclusion_at", "DataDir"] {
                assert!(!src.contains(word), "{} names {word}: the web crate gets a Vault, never the operator's handle", p.display());
            }
            files += 1;
        }
    }
    assert!(files > 10);
}

/// Inside core, only the sealing module opens sealed values, and only the audit writer issues
/// the receipts that opening patient data requires.
#[test]
fn decryption_and_receipts_stay_in_their_modules() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("../carevault-core/src");
    let mut stack = vec![core.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&core).expect("rel").to_string_lossy().into_owned();
            let src = std::fs::read_to_string(&p).expect("read");
            if rel != "sealing.rs" {
                assert!(
                    !src.contains("keyring.open(") && !src.contains("Aad {"),
                    "{rel} seals or opens values itself; only sealing.rs may"
                );
            }
            if rel != "audit/writer.rs" && rel != "audit/mod.rs" {
                assert!(!src.contains("Receipt::issue"), "{rel} issues audit receipts; only the audit writer may");
            }
        }
    }
}

/// `keys rotate` from the shell while `carevault serve` keeps answering: two processes on one
/// store, reads and writes all succeed, and the server reads rows re-encrypted by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_from_the_shell_while_the_server_serves() {
    let backend = carevault_testkit::backend().await.expect("backend");
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let d = data.to_str().expect("path").to_string();
    // Start the server and read its port from the banner.
    let mut server = cmd(&backend)
        .args(["serve", "--data-dir", &d, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let mut port = None;
    for l in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = l.split("listening on https://127.0.0.1:").nth(1) {
            port = rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
        }
        if l.starts_with("FHIR R4:") {
            break;
        }
    }
    let port = port.expect("port in banner");
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let o = run(
        &backend,
        &["user", "add", "--username", "rot.clin", "--role", "physician", "--password-stdin", "--data-dir", &d],
        Some(PASSWORD),
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let uri: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let secret =
        uri["otpauth_uri"].as_str().and_then(|u| u.split("secret=").nth(1)).and_then(|s| s.split('&').next()).expect("secret").to_string();
    let cert = std::fs::read(data.join("tls/cert.pem")).expect("cert");
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).expect("pem"))
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .cookie_store(true)
        .build()
        .expect("client");
    let base = format!("https://localhost:{port}");
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "rot.clin", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let now = u64::try_from(carevault_core::Clock::now_micros(&carevault_core::SystemClock) / 1_000_000).expect("time");
    let r = c
        .post(format!("{base}/api/v1/auth/mfa/totp"))
        .json(&serde_json::json!({"code": carevault_testkit::totp_code(&secret, now)}))
        .send()
        .await
        .expect("mfa");
    assert_eq!(r.status(), 200);
    let create = |i: usize| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let body = serde_json::json!({"resourceType": "Patient", "name": [{"family": "Rotaflex", "given": [format!("G{}", "a".repeat(i % 20 + 1))]}]});
            let r = c
                .post(format!("{base}/fhir/r4/Patient"))
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .expect("create");
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string()
        }
    };
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(create(i).await);
    }
    // Rotate from another process while reading and writing over HTTPS.
    let rotate = {
        let backend = backend.clone();
        let d = d.clone();
        tokio::task::spawn_blocking(move || run(&backend, &["keys", "rotate", "--data-dir", &d, "--batch-size", "3"], None))
    };
    let mut served = 0;
    while !rotate.is_finished() || served < 20 {
        let id = &ids[served % ids.len()];
        let r = c.get(format!("{base}/fhir/r4/Patient/{id}")).send().await.expect("read");
        assert_eq!(r.status(), 200, "read during rotation");
        ids.push(create(served).await);
        served += 1;
        assert!(served < 2000, "rotation did not finish");
    }
    let o = rotate.await.expect("rotate task");
    assert!(o.status.success(), "{}", text(&o).1);
    // Rows the server wrote under the old key in the seconds before it saw the new one are
    // picked up by running the command again (it resumes, or starts the next version).
    let o = run(&backend, &["keys", "rotate", "--data-dir", &d], None);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = run(&backend, &["keys", "status", "--data-dir", &d], None);
    assert!(text(&o).0.contains("all rows are sealed with the current key"), "{}", text(&o).0);
    for id in &ids {
        let r = c.get(format!("{base}/fhir/r4/Patient/{id}")).send().await.expect("read");
        assert_eq!(r.status(), 200);
    }
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    assert!(server.wait().expect("wait").success());
    let o = run(&backend, &["audit", "verify", "--data-dir", &d], None);
    assert!(o.status.success(), "{}", text(&o).1);
}
