//! The `Vault` handle: the chokepoint's public face. Its fields are private to this crate and
//! it has no accessor to the store or the keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use carevault_store::Store;
use tokio::sync::Semaphore;

use crate::audit::writer::{AuditWriter, WriterConfig};
use crate::clock::{Clock, SystemClock};
use crate::config::CoreConfig;
use crate::datadir::DataDir;
use crate::error::{CoreError, StartupError};
use crate::sealing::Sealer;

/// Whether a data folder holds a real clinic's data or the synthetic demo clinic. The two
/// never mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceKind {
    Production,
    Demo,
}

impl InstanceKind {
    fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Production => "production",
            InstanceKind::Demo => "demo",
        }
    }
}

/// How to open a vault.
pub struct OpenOptions {
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; `None` for the embedded SQLite file in the data folder.
    pub database_url: Option<String>,
    /// The master key file; default `keys/master.key` in the data folder.
    pub master_key_file: Option<PathBuf>,
    /// Create the data folder, store and keys if they do not exist.
    pub create: bool,
    pub instance: InstanceKind,
    pub config: CoreConfig,
    pub clock: Arc<dyn Clock>,
}

impl OpenOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> OpenOptions {
        OpenOptions {
            data_dir: data_dir.into(),
            database_url: None,
            master_key_file: None,
            create: true,
            instance: InstanceKind::Production,
            config: CoreConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

pub(crate) struct Inner {
    pub store: Store,
    pub sealer: Sealer,
    pub writer: AuditWriter,
    pub clock: Arc<dyn Clock>,
    pub config: CoreConfig,
    pub hash_slots: Semaphore,
    /// Per source address: (window start, failures in the window, last failure).
    pub ip_failures: Mutex<HashMap<IpAddr, (i64, u32, i64)>>,
    pub data_dir: DataDir,
    pub kind: InstanceKind,
    pub created: bool,
    /// The WebAuthn relying party (passkeys), from `public_origin`.
    pub passkeys: carevault_crypto::passkey::RelyingParty,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The database, WAL and shared-memory files are readable by the owner only (SQLite gives
/// files it creates later the main file's mode).
fn restrict_sqlite_files(dd: &DataDir) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let db = dd.sqlite_path();
        for suffix in ["", "-wal", "-shm"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
            if p.exists() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dd;
}

/// Verifies the audit log of a data folder without the master key: only the store and the
/// pinned public key are needed (an auditor's view).
pub async fn verify_audit_at(data_dir: &std::path::Path, database_url: Option<&str>) -> Result<crate::VerifyReport, StartupError> {
    let dd = DataDir::new(data_dir);
    dd.prepare(false)?;
    if database_url.is_none() && !dd.sqlite_path().exists() {
        return Err(StartupError::DataDir { path: dd.root().display().to_string(), message: "holds no database".into() });
    }
    let url = database_url.map(str::to_string).unwrap_or_else(|| dd.sqlite_url());
    let store = Store::open(&url).await?;
    let report = crate::audit::verify::verify(&store, &dd).await.map_err(|e| StartupError::Store(e.to_string()));
    store.close().await;
    report
}

/// The chokepoint. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({:?})", self.inner.kind)
    }
}

impl Vault {
    /// Opens (and on first start, initializes) the data folder, store and keys, and starts the
    /// audit writer.
    pub async fn open(opts: OpenOptions) -> Result<Vault, StartupError> {
        let passkeys = carevault_crypto::passkey::RelyingParty::new(&opts.config.public_origin, &opts.config.totp_issuer)
            .map_err(|e| StartupError::Refused(format!("public_origin: {e}")))?;
        let dd = DataDir::new(&opts.data_dir);
        dd.prepare(opts.create)?;
        let url = opts.database_url.clone().unwrap_or_else(|| dd.sqlite_url());
        if opts.database_url.is_none() && !opts.create && !dd.sqlite_path().exists() {
            return Err(StartupError::DataDir {
                path: dd.root().display().to_string(),
                message: "holds no database (start `carevault serve` once to initialize it)".into(),
            });
        }
        let store = Store::open(&url).await?;
        if opts.database_url.is_none() {
            restrict_sqlite_files(&dd);
        }
        let master_path = opts.master_key_file.clone().unwrap_or_else(|| dd.master_key_path());
        let now = opts.clock.now_micros();
        let (keys, created) = crate::keys::load_or_init(&store, &dd, &master_path, now, opts.instance.as_str()).await?;
        let recorded = store.meta("instance_kind").await?.unwrap_or_else(|| "production".into());
        match (opts.instance, recorded.as_str()) {
            (InstanceKind::Demo, "demo") | (InstanceKind::Production, "production") => {}
            (InstanceKind::Demo, _) => {
                return Err(StartupError::Refused(format!(
                    "{} holds non-demo data; the demo refuses to run on it. Use another --data-dir (the default for demo is ./carevault-demo-data)",
                    dd.root().display()
                )))
            }
            (InstanceKind::Production, _) => {
                return Err(StartupError::Refused(format!(
                    "{} holds the synthetic demo clinic; run `carevault demo` on it, or use another --data-dir for real data",
                    dd.root().display()
                )))
            }
        }
        if opts.instance == InstanceKind::Demo && store.has_non_demo_data().await? {
            return Err(StartupError::Refused(format!("{} holds non-demo data; the demo refuses to run on it", dd.root().display())));
        }
        let signer = Arc::new(keys.signer);
        let (writer, task) = AuditWriter::start(
            store.clone(),
            signer,
            opts.clock.clone(),
            WriterConfig {
                checkpoint_every: opts.config.checkpoint_every.max(1),
                checkpoint_interval_micros: opts.config.checkpoint_interval_secs.max(1) * 1_000_000,
                checkpoint_file: dd.checkpoint_log_path(),
            },
        );
        let sealer = Sealer::new(keys.master, keys.keyring, keys.blind, now);
        Ok(Vault {
            inner: Arc::new(Inner {
                store,
                sealer,
                writer,
                clock: opts.clock,
                hash_slots: Semaphore::new(opts.config.hash_concurrency.max(1)),
                config: opts.config,
                ip_failures: Mutex::new(HashMap::new()),
                data_dir: dd,
                kind: opts.instance,
                created,
                passkeys,
                writer_task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Whether this open created a new store.
    pub fn was_created(&self) -> bool {
        self.inner.created
    }

    pub fn instance_kind(&self) -> InstanceKind {
        self.inner.kind
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.store.backend().name()
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.inner.data_dir
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    pub fn now_micros(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    pub async fn user_count(&self) -> Result<usize, CoreError> {
        Ok(self.inner.store.users().await?.len())
    }

    /// Verifies the audit log (chain, signed head, checkpoints in the database and the file).
    pub async fn verify_audit(&self) -> Result<crate::VerifyReport, CoreError> {
        crate::audit::verify::verify(&self.inner.store, &self.inner.data_dir).await
    }

    /// Writes a signed checkpoint of the audit head now.
    pub async fn checkpoint(&self) -> Result<(), CoreError> {
        self.inner.writer.checkpoint().await
    }

    /// Checkpoints, stops the writer and closes the store.
    pub async fn shutdown(&self) {
        let _ = self.inner.writer.checkpoint().await;
        let task = self.inner.writer_task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            t.abort();
        }
        self.inner.store.close().await;
    }

    /// Starts the periodic jobs (expired-session sweeper).
    pub fn start_background_jobs(&self) -> tokio::task::JoinHandle<()> {
        let v = self.clone();
        let every = std::time::Duration::from_secs(u64::try_from((v.inner.config.session_idle_secs / 4).clamp(1, 30)).unwrap_or(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut accounts = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = v.sweep_sessions().await {
                            tracing::warn!(code = e.code(), "session sweep failed");
                        }
                    }
                    _ = accounts.tick() => {
                        match v.deactivate_unused_accounts().await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(accounts = n, "unused accounts deactivated"),
                            Err(e) => tracing::warn!(code = e.code(), "inactive-account job failed"),
                        }
                    }
                }
            }
        })
    }
}
