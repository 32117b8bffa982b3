//! Test fixtures: a vault in a temporary data folder on the backend chosen by the environment
//! (SQLite by default; PostgreSQL in a fresh schema when `CAREVAULT_TEST_DATABASE_URL` is set),
//! signed-in staff, and the real HTTPS server on 127.0.0.1:0.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use carevault_core::{Actor, Clock, CoreConfig, InstanceKind, ManualClock, OpenOptions, Operator, RequestContext};
use carevault_domain::Role;
use sqlx::Executor;

pub const TEST_DATABASE_ENV: &str = "CAREVAULT_TEST_DATABASE_URL";

/// A password that passes the policy.
pub const PASSWORD: &str = "tulip marble orbit canyon";

/// Where the test's database lives.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres { base_url: String, schema: String },
}

impl Backend {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres { .. })
    }

    /// The URL the vault uses (PostgreSQL: the test schema first on the search path).
    pub fn vault_url(&self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres { base_url, schema } => {
                // The application name lets a fault test end exactly this test's backends.
                let sep = if base_url.contains('?') { '&' } else { '?' };
                Some(format!("{base_url}{sep}options[search_path]={schema}&application_name={schema}"))
            }
        }
    }
}

/// Picks the backend from the environment; for PostgreSQL creates a fresh schema.
pub async fn backend() -> anyhow::Result<Backend> {
    match std::env::var(TEST_DATABASE_ENV).ok().filter(|s| !s.is_empty()) {
        None => Ok(Backend::Sqlite),
        Some(base_url) => {
            sqlx::any::install_default_drivers();
            let schema = format!("cvt_{}", hex_random(8));
            let mut conn =
                <sqlx::AnyConnection as sqlx::Connection>::connect(&base_url).await.context("connecting to the test PostgreSQL")?;
            conn.execute(format!("CREATE SCHEMA {schema}").as_str()).await?;
            sqlx::Connection::close(conn).await?;
            Ok(Backend::Postgres { base_url, schema })
        }
    }
}

fn hex_random(n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let seed = u128::try_from(carevault_core::SystemClock.now_micros()).unwrap_or(0);
    let mut x =
        seed ^ (u128::from(std::process::id()) << 64) ^ (u128::from(COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) << 32);
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let _ = write!(s, "{:02x}", (x >> 64) as u8);
    }
    s
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A vault in a temporary data folder with a manual clock.
pub struct TestVault {
    /// The operator's handle (it dereferences to the `Vault` every staff call goes through).
    pub vault: Operator,
    pub clock: Arc<ManualClock>,
    pub backend: Backend,
    pub config: CoreConfig,
    dir: tempfile::TempDir,
}

/// Test settings: everything default except a signed checkpoint after every batch.
pub fn test_config() -> CoreConfig {
    CoreConfig { checkpoint_every: 1, hash_concurrency: 2, ..CoreConfig::default() }
}

impl TestVault {
    pub async fn new() -> anyhow::Result<TestVault> {
        Self::with_config(test_config()).await
    }

    pub async fn with_config(config: CoreConfig) -> anyhow::Result<TestVault> {
        Self::with_config_in(config, &std::env::temp_dir()).await
    }

    /// A vault whose data folder is inside `parent` (e.g. a small filesystem).
    pub async fn with_config_in(config: CoreConfig, parent: &Path) -> anyhow::Result<TestVault> {
        let dir = tempfile::tempdir_in(parent)?;
        let backend = backend().await?;
        let clock = Arc::new(ManualClock::starting_now());
        // A folder that does not exist yet: the vault creates it (mode 0700).
        let vault = open_vault(&dir.path().join("data"), &backend, clock.clone(), config.clone(), InstanceKind::Production, true).await?;
        Ok(TestVault { vault, clock, backend, config, dir })
    }

    /// A location (`time_zone`) in the default organization with one practitioner (NPI
    /// 1245319599) working there, made by `admin`: what scheduling and the chart start from.
    pub async fn location_and_practitioner(&self, admin: &Actor, time_zone: &str) -> anyhow::Result<(String, String)> {
        let loc = self.vault.add_unit("location", "Main Street", Some("default"), None, Some(time_zone)).await?;
        let req = carevault_core::PractitionerRequest {
            npi: "1245319599".into(),
            family: "Ng".into(),
            given: "Mei".into(),
            organization_id: "default".into(),
            location_ids: vec![loc.clone()],
            ..Default::default()
        };
        let pr = self.vault.add_practitioner(admin, &req).await?.id;
        Ok((loc, pr))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Closes and reopens the vault on the same folder and database.
    pub async fn reopen(&mut self) -> anyhow::Result<()> {
        let config = self.config.clone();
        self.reopen_with(config).await
    }

    /// Closes and reopens the vault with other settings.
    pub async fn reopen_with(&mut self, config: CoreConfig) -> anyhow::Result<()> {
        self.vault.shutdown().await;
        self.config = config;
        self.vault =
            open_vault(&self.data_dir(), &self.backend, self.clock.clone(), self.config.clone(), InstanceKind::Production, false).await?;
        Ok(())
    }

    /// Creates a staff account and signs it in (password + TOTP), returning the actor.
    pub async fn staff(&self, role: Role) -> anyhow::Result<(Actor, Staff)> {
        self.staff_in(role.id(), None).await
    }

    /// A staff account with `role` (built-in or custom) in `organization`, signed in.
    pub async fn staff_in(&self, role: &str, organization: Option<&str>) -> anyhow::Result<(Actor, Staff)> {
        let username = format!("{}-{}", role.replace('_', ""), hex_random(3));
        let u = self.vault.add_user_in(&username, role, organization, PASSWORD).await?;
        let staff = Staff { username, secret: u.totp_secret_base32.clone(), id: u.id.clone() };
        let actor = self.sign_in(&staff).await?;
        Ok((actor, staff))
    }

    /// Signs an account in (a new session), returning the actor. A second sign-in needs the
    /// clock moved to the next TOTP step first (codes are single-use).
    pub async fn sign_in(&self, staff: &Staff) -> anyhow::Result<Actor> {
        let ctx = RequestContext { source_ip: Some([127, 0, 0, 1].into()) };
        let step = self.vault.login(&ctx, &staff.username, PASSWORD).await?;
        let grant = self.vault.verify_totp(&ctx, Some(&step.pending_token), &staff.code_at(self.clock.now_secs())).await?;
        Ok(self.vault.authenticate(&ctx, Some(&grant.token)).await?)
    }

    /// Direct SQL on the test database (tamper tests only).
    pub async fn raw(&self) -> anyhow::Result<sqlx::AnyConnection> {
        raw_connection(&self.data_dir(), &self.backend).await
    }

    /// Every file in the data folder whose bytes contain one of `needles` (case-insensitive).
    pub fn grep_data_dir(&self, needles: &[&str]) -> Vec<(PathBuf, String)> {
        grep_tree(&self.data_dir(), needles)
    }

    /// `pg_dump` of the test schema (PostgreSQL only).
    pub fn pg_dump(&self) -> anyhow::Result<Option<String>> {
        pg_dump(&self.backend)
    }
}

/// A staff member's sign-in material.
#[derive(Debug, Clone)]
pub struct Staff {
    pub id: String,
    pub username: String,
    pub secret: String,
}

impl Staff {
    pub fn code_at(&self, unix_secs: u64) -> String {
        totp_code(&self.secret, unix_secs)
    }
}

/// RFC 6238 code (SHA-1, 6 digits, 30 s) computed by totp-rs, the way an authenticator app does.
pub fn totp_code(secret_base32: &str, unix_secs: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret_base32.to_string()).to_bytes().unwrap_or_default();
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).generate(unix_secs)
}

pub async fn open_vault(
    dir: &Path,
    backend: &Backend,
    clock: Arc<dyn Clock>,
    config: CoreConfig,
    instance: InstanceKind,
    create: bool,
) -> anyhow::Result<Operator> {
    let opts = OpenOptions {
        data_dir: dir.to_path_buf(),
        database_url: backend.vault_url(),
        master_key_file: None,
        create,
        instance,
        config,
        clock,
    };
    Ok(Operator::open(opts).await?)
}

pub async fn raw_connection(dir: &Path, backend: &Backend) -> anyhow::Result<sqlx::AnyConnection> {
    sqlx::any::install_default_drivers();
    let url = match backend.vault_url() {
        Some(u) => u,
        None => format!("sqlite://{}", dir.join("carevault.db").display()),
    };
    Ok(<sqlx::AnyConnection as sqlx::Connection>::connect(&url).await?)
}

pub fn grep_tree(root: &Path, needles: &[&str]) -> Vec<(PathBuf, String)> {
    let mut hits = Vec::new();
    let lowered: Vec<Vec<u8>> = needles.iter().map(|n| n.to_lowercase().into_bytes()).collect();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let lower: Vec<u8> = bytes.iter().map(u8::to_ascii_lowercase).collect();
                for (n, needle) in lowered.iter().zip(needles) {
                    if !needle.is_empty() && lower.windows(n.len()).any(|w| w == n.as_slice()) {
                        hits.push((path.clone(), needle.to_string()));
                    }
                }
            }
        }
    }
    hits
}

/// Runs the calling test again inside a private mount namespace with a small tmpfs of `size_mb`
/// mounted, so it can fill a real filesystem without touching the machine's disks.
///
/// In the parent test process: re-runs `test_name` (the test function's name) inside
/// `unshare --mount` (or, without root, `unshare --mount --map-root-user`), asserts that it
/// passed, and returns `None`. In that child: returns the mount point. When no mount namespace
/// can be made here, the test is skipped with a notice, unless `CAREVAULT_TEST_REQUIRE_FAULTS`
/// is set (CI sets it), in which case it fails.
pub fn private_tmpfs(test_name: &str, size_mb: u32) -> anyhow::Result<Option<PathBuf>> {
    const CHILD: &str = "CAREVAULT_TEST_TMPFS";
    if let Some(dir) = std::env::var_os(CHILD) {
        return Ok(Some(PathBuf::from(dir)));
    }
    let exe = std::env::current_exe()?;
    let mount = tempfile::Builder::new().prefix("cv-tmpfs-").tempdir()?;
    let script = format!("mount -t tmpfs -o size={size_mb}m,mode=0700 cvtest \"$0\" || exit 97; exec \"$@\"");
    let mut last = String::new();
    for extra in [&[][..], &["--map-root-user"][..]] {
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private"])
            .args(extra)
            .args(["sh", "-c", &script])
            .arg(mount.path())
            .arg(&exe)
            .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
            .env(CHILD, mount.path())
            .output();
        match out {
            Ok(o) if o.status.code() == Some(97) || (!o.status.success() && String::from_utf8_lossy(&o.stderr).starts_with("unshare:")) => {
                last = String::from_utf8_lossy(&o.stderr).into_owned();
            }
            Ok(o) => {
                let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                anyhow::ensure!(o.status.success(), "{test_name} failed inside its private {size_mb} MiB filesystem:\n{text}");
                anyhow::ensure!(text.contains("1 passed"), "{test_name} did not run inside its private filesystem:\n{text}");
                return Ok(None);
            }
            Err(e) => last = e.to_string(),
        }
    }
    let msg = format!("{test_name}: cannot make a private mount namespace with a small filesystem here ({})", last.trim());
    anyhow::ensure!(std::env::var_os("CAREVAULT_TEST_REQUIRE_FAULTS").is_none(), "{msg}");
    eprintln!("SKIPPED {msg}; set CAREVAULT_TEST_REQUIRE_FAULTS=1 to make this a failure");
    Ok(None)
}

/// The `carevault` binary at `bin` (a test's `CARGO_BIN_EXE_carevault`) with the environment
/// cleared of settings and pointed at `backend`'s database.
pub fn command(bin: &str, backend: &Backend) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.env_remove("CAREVAULT_DATABASE_URL").env_remove("CAREVAULT_DATA_DIR").env_remove("CAREVAULT_MASTER_KEY_FILE");
    if let Some(url) = backend.vault_url() {
        c.env("CAREVAULT_DATABASE_URL", url);
    }
    c
}

/// Runs the binary with `args` (and `stdin`) to the end; fails on a panic message.
pub fn run_command(bin: &str, backend: &Backend, args: &[&str], stdin: Option<&str>) -> anyhow::Result<std::process::Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command(bin, backend).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    if let Some(input) = stdin {
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!stderr.contains("panicked"), "a panic: {stderr}");
    Ok(out)
}

pub fn pg_dump(backend: &Backend) -> anyhow::Result<Option<String>> {
    let Backend::Postgres { base_url, schema } = backend else {
        return Ok(None);
    };
    let out = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(base_url)
        .arg("--schema")
        .arg(schema)
        .output()
        .context("running pg_dump (install the PostgreSQL client)")?;
    anyhow::ensure!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The real HTTPS server over a test vault.
pub struct App {
    pub tv: TestVault,
    pub base: String,
    pub cert_pem: String,
    server: Option<carevault_web::RunningServer>,
}

impl App {
    pub async fn spawn() -> anyhow::Result<App> {
        Self::spawn_with(test_config(), 1024 * 1024).await
    }

    pub async fn spawn_with(config: CoreConfig, body_limit: usize) -> anyhow::Result<App> {
        Self::serve(TestVault::with_config(config).await?, body_limit).await
    }

    /// The server over an existing test vault (e.g. one on a small filesystem, or reopened).
    pub async fn serve(tv: TestVault, body_limit: usize) -> anyhow::Result<App> {
        Self::serve_configured(tv, |w| w.body_limit = body_limit).await
    }

    /// The server with web settings of the test's choosing (trusted proxies, public origin).
    pub async fn spawn_web(config: CoreConfig, web: impl FnOnce(&mut carevault_web::WebConfig)) -> anyhow::Result<App> {
        Self::serve_configured(TestVault::with_config(config).await?, web).await
    }

    pub async fn serve_configured(tv: TestVault, web: impl FnOnce(&mut carevault_web::WebConfig)) -> anyhow::Result<App> {
        let tls = carevault_web::TlsSource::SelfSigned { dir: tv.data_dir().join("tls"), hostnames: vec![] };
        let mut config = carevault_web::WebConfig::new("127.0.0.1:0".parse()?, tls);
        web(&mut config);
        let server = carevault_web::start(tv.vault.vault().clone(), config).await?;
        let base = format!("https://localhost:{}", server.local_addr.port());
        Ok(App { cert_pem: server.cert_pem.clone(), tv, base, server: Some(server) })
    }

    /// A client that trusts the server's certificate and keeps cookies (HTTP/1.1).
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(self.client_builder()?.http1_only().build()?)
    }

    /// The same over HTTP/2 (negotiated by ALPN).
    pub fn client_h2(&self) -> anyhow::Result<reqwest::Client> {
        Ok(self.client_builder()?.build()?)
    }

    fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let cert = reqwest::Certificate::from_pem(self.cert_pem.as_bytes())?;
        Ok(reqwest::Client::builder()
            .add_root_certificate(cert)
            .resolve("localhost", ([127, 0, 0, 1], 0).into())
            .cookie_store(true)
            .https_only(true))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a staff account through the vault (as `carevault user add` does).
    pub async fn add_staff(&self, role: Role) -> anyhow::Result<Staff> {
        let username = format!("{}-{}", role.as_str().replace('_', ""), hex_random(3));
        let u = self.tv.vault.add_user(&username, role, PASSWORD).await?;
        Ok(Staff { username, secret: u.totp_secret_base32, id: u.id })
    }

    /// Signs in over HTTPS (password, then TOTP) and returns the client holding the session.
    pub async fn signed_in(&self, role: Role) -> anyhow::Result<(reqwest::Client, Staff)> {
        let staff = self.add_staff(role).await?;
        let c = self.client()?;
        self.sign_in(&c, &staff).await?;
        Ok((c, staff))
    }

    pub async fn sign_in(&self, c: &reqwest::Client, staff: &Staff) -> anyhow::Result<()> {
        let r = c
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": staff.username, "password": PASSWORD}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "login: {}", r.status());
        let code = staff.code_at(self.tv.clock.now_secs());
        let r = c.post(self.url("/api/v1/auth/mfa/totp")).json(&serde_json::json!({"code": code})).send().await?;
        anyhow::ensure!(r.status() == 200, "mfa: {}", r.status());
        Ok(())
    }

    pub async fn stop(mut self) -> TestVault {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        self.tv
    }
}

/// A software passkey authenticator (webauthn-authenticator-rs) standing in for a browser and
/// a security key: it answers the server's real WebAuthn options with real signatures.
pub struct SoftAuthenticator {
    inner: webauthn_authenticator_rs::WebauthnAuthenticator<webauthn_authenticator_rs::softpasskey::SoftPasskey>,
    origin: url::Url,
}

impl SoftAuthenticator {
    /// `origin` is what the browser would put in clientDataJSON (e.g. `https://localhost:8443`).
    pub fn new(origin: &str) -> anyhow::Result<SoftAuthenticator> {
        Ok(SoftAuthenticator {
            inner: webauthn_authenticator_rs::WebauthnAuthenticator::new(webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true)),
            origin: url::Url::parse(origin)?,
        })
    }

    /// Answers `navigator.credentials.create(options)`.
    pub fn create(&mut self, options: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let opts = serde_json::from_value(options.clone())?;
        let answer = self.inner.do_registration(self.origin.clone(), opts).map_err(|e| anyhow::anyhow!("authenticator: {e:?}"))?;
        Ok(serde_json::to_value(answer)?)
    }

    /// Answers `navigator.credentials.get(options)`.
    pub fn get(&mut self, options: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let opts = serde_json::from_value(options.clone())?;
        let answer = self.inner.do_authentication(self.origin.clone(), opts).map_err(|e| anyhow::anyhow!("authenticator: {e:?}"))?;
        Ok(serde_json::to_value(answer)?)
    }
}
