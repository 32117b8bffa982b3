//! The `Vault` handle: the chokepoint's public face. Its fields are private to this crate and
//! it has no accessor to the store or the keys.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use carevault_store::Store;
use tokio::sync::Semaphore;

use crate::audit::files::AuditFiles;
use crate::audit::writer::{AuditWriter, WriterConfig};
use crate::clock::{Clock, SystemClock};
use crate::config::CoreConfig;
use crate::datadir::DataDir;
use crate::error::{CoreError, StartupError};
use crate::sealing::Sealer;
use crate::storage::{StorageHealth, StorageMonitor};

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
    /// Sign-in throttles (per name and address, per address, unknown names).
    pub throttle: crate::auth::throttle::Throttle,
    /// Unauthenticated refusals counted per address and window.
    pub refusals: crate::auth::refusals::Refusals,
    /// Signed-in sessions with their accounts and privileges (`auth::cache`).
    pub sessions: crate::auth::cache::SessionCache,
    pub data_dir: DataDir,
    pub kind: InstanceKind,
    pub created: bool,
    /// The WebAuthn relying party (passkeys), from `public_origin`.
    pub passkeys: carevault_crypto::passkey::RelyingParty,
    pub storage: Arc<StorageMonitor>,
    pub files: Arc<AuditFiles>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    tick_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
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

/// Opens the store of a data folder for read-only audit work (verify, proofs), without the
/// master key: only the store and the pinned public key are needed (an auditor's view).
async fn open_for_audit(data_dir: &std::path::Path, database_url: Option<&str>) -> Result<(DataDir, Store), StartupError> {
    let dd = DataDir::new(data_dir);
    dd.prepare(false)?;
    if database_url.is_none() && !dd.sqlite_path().exists() {
        return Err(StartupError::DataDir { path: dd.root().display().to_string(), message: "holds no database".into() });
    }
    let url = database_url.map(str::to_string).unwrap_or_else(|| dd.sqlite_url());
    let store = Store::open(&url).await?;
    Ok((dd, store))
}

/// Verifies the audit log of a data folder (and, with `options`, its consistency with tree
/// heads kept elsewhere).
pub async fn verify_audit_at(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    options: &crate::VerifyOptions,
) -> Result<crate::VerifyReport, StartupError> {
    let (dd, store) = open_for_audit(data_dir, database_url).await?;
    let report = crate::audit::verify::verify(&store, &dd, options).await.map_err(|e| StartupError::Store(e.to_string()));
    store.close().await;
    report
}

/// The RFC 9162 inclusion proof of record `seq` (default tree size: the newest signed head).
pub async fn prove_inclusion_at(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    seq: i64,
    tree_size: Option<u64>,
) -> Result<Result<crate::InclusionProof, CoreError>, StartupError> {
    let (_, store) = open_for_audit(data_dir, database_url).await?;
    let r = crate::audit::tree::prove_inclusion(&store, seq, tree_size).await;
    store.close().await;
    Ok(r)
}

/// The RFC 9162 consistency proof between two tree sizes (default second size: the newest
/// signed head).
pub async fn prove_consistency_at(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    first: u64,
    second: Option<u64>,
) -> Result<Result<crate::ConsistencyProof, CoreError>, StartupError> {
    let (_, store) = open_for_audit(data_dir, database_url).await?;
    let r = crate::audit::tree::prove_consistency(&store, first, second).await;
    store.close().await;
    Ok(r)
}

/// A new log starts with the installation's own record, so an initialized folder never has an
/// empty log. An empty log beside accounts or patients means records were removed: refused.
async fn record_installation(store: &Store, writer: &AuditWriter, store_id: &str, now: i64) -> Result<(), StartupError> {
    let head = store.audit_head().await?;
    if head.as_ref().is_some_and(|h| h.seq > 0) {
        return Ok(());
    }
    if head.is_none() || !store.users().await?.is_empty() || store.patient_count().await? > 0 {
        return Err(StartupError::Refused(
            "the audit log is empty (or its head row is missing) although the database holds accounts or patients: audit records \
             were removed. Restore the database from a backup; `carevault audit verify` shows what is wrong"
                .into(),
        ));
    }
    let draft = crate::audit::Draft::new(now, carevault_domain::AuditAction::ConfigChange, carevault_domain::Outcome::Success)
        .actor_name("system:init".into())
        .resource("Installation", Some(store_id));
    writer.append(draft).await.map(|_| ()).map_err(|e| StartupError::Store(format!("the first audit record could not be written: {e}")))
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
    pub(crate) async fn open(opts: OpenOptions) -> Result<Vault, StartupError> {
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
        let store_id = store.meta("store_id").await?.unwrap_or_else(|| "unknown".into());
        let files = Arc::new(AuditFiles::new(&dd.audit_dir(), opts.config.witness_dir.as_deref(), &store_id));
        let file_error = |e: std::io::Error| StartupError::DataDir {
            path: dd.root().display().to_string(),
            message: format!("{}: {e}", files.checkpoint_file().display()),
        };
        if created {
            files.create_empty().map_err(file_error)?;
        } else {
            match files.repair_at_start(now) {
                Ok(notices) => {
                    for notice in notices {
                        tracing::warn!(notice = %notice, "audit checkpoint file repaired at start");
                    }
                }
                // Not fatal (a full disk, say): the file stays as it is, nothing is appended
                // behind a torn line, `/health` reports the lag and the next tick retries.
                Err(e) => tracing::error!(error = %e, "the audit checkpoint file could not be repaired at start"),
            }
        }
        {
            // Checkpoints committed just before a crash, whose line was not yet written.
            let lock = files.lock_exclusive().await.map_err(file_error)?;
            files.catch_up(&store, now).await;
            drop(lock);
        }
        let reserve = opts.config.min_free_bytes.unwrap_or_else(|| StorageMonitor::default_reserve(dd.root()));
        let storage = Arc::new(StorageMonitor::new(dd.root().to_path_buf(), reserve));
        let signer = Arc::new(keys.signer);
        let (writer, task) = AuditWriter::start(
            store.clone(),
            signer,
            opts.clock.clone(),
            WriterConfig {
                checkpoint_every: opts.config.checkpoint_every.max(1),
                checkpoint_interval_micros: opts.config.checkpoint_interval_secs.max(1) * 1_000_000,
                queue: opts.config.writer_queue,
                files: files.clone(),
                storage: storage.clone(),
            },
        );
        if let Err(e) = record_installation(&store, &writer, &store_id, now).await {
            task.abort();
            store.close().await;
            return Err(e);
        }
        let sealer = Sealer::new(keys.master, keys.keyring, keys.blind, now);
        let vault = Vault {
            inner: Arc::new(Inner {
                store,
                sealer,
                writer,
                clock: opts.clock,
                hash_slots: Semaphore::new(opts.config.hash_concurrency.max(1)),
                throttle: crate::auth::throttle::Throttle::new(),
                refusals: crate::auth::refusals::Refusals::new(opts.config.unauthenticated_window_secs),
                sessions: crate::auth::cache::SessionCache::default(),
                config: opts.config,
                data_dir: dd,
                kind: opts.instance,
                created,
                passkeys,
                storage,
                files,
                writer_task: Mutex::new(Some(task)),
                tick_task: Mutex::new(None),
            }),
        };
        if let Err(e) = vault.upgrade_sealed_bindings().await {
            vault.shutdown().await;
            return Err(StartupError::Upgrade(e.to_string()));
        }
        vault.start_tick();
        Ok(vault)
    }

    /// Every two seconds (the writer's rhythm), writes the counts of ended windows of
    /// unauthenticated refusals. Holds the vault weakly: dropping the last handle ends it.
    fn start_tick(&self) {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                Vault { inner }.flush_ended_refusals();
            }
        });
        if let Ok(mut t) = self.inner.tick_task.lock() {
            *t = Some(task);
        }
    }

    /// Whether this open created a new store.
    pub(crate) fn was_created(&self) -> bool {
        self.inner.created
    }

    pub fn instance_kind(&self) -> InstanceKind {
        self.inner.kind
    }

    pub fn backend_name(&self) -> &'static str {
        self.inner.store.backend().name()
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    pub fn now_micros(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    pub(crate) async fn user_count(&self) -> Result<usize, CoreError> {
        Ok(self.inner.store.users().await?.len())
    }

    /// Verifies the audit log (chain, signed head, Merkle tree, checkpoints in the database and
    /// the file, and any witness heads in `options`).
    pub(crate) async fn verify_audit(&self) -> Result<crate::VerifyReport, CoreError> {
        self.verify_audit_with(&crate::VerifyOptions::default()).await
    }

    pub(crate) async fn verify_audit_with(&self, options: &crate::VerifyOptions) -> Result<crate::VerifyReport, CoreError> {
        crate::audit::verify::verify(&self.inner.store, &self.inner.data_dir, options).await
    }

    /// Writes a signed checkpoint of the audit head now.
    pub(crate) async fn checkpoint(&self) -> Result<(), CoreError> {
        self.inner.writer.checkpoint().await
    }

    /// Signs a tree head of the audit log as it stands now (a checkpoint, also appended to the
    /// checkpoint file and the witness folder) and returns it: what an auditor keeps.
    pub async fn tree_head(&self) -> Result<crate::TreeHead, CoreError> {
        self.inner.writer.checkpoint().await?;
        let row =
            self.inner.store.latest_tree_head().await?.ok_or_else(|| CoreError::Internal("no tree head after a checkpoint".into()))?;
        crate::TreeHead::from_checkpoint(&row).ok_or_else(|| CoreError::Internal("malformed tree head".into()))
    }

    /// Whether the vault can write: free space above the reserve, last write committed.
    pub fn storage_health(&self) -> StorageHealth {
        self.inner.storage.health()
    }

    /// The configured free-space reserve, in bytes (0: none).
    pub fn storage_reserve(&self) -> u64 {
        self.inner.storage.reserve()
    }

    /// Why the evidence files (checkpoint file, witness) lag behind the database, if they do.
    pub fn audit_files_problem(&self) -> Option<String> {
        self.inner.files.problem()
    }

    /// Checkpoints, stops the writer and closes the store.
    pub async fn shutdown(&self) {
        if let Some(t) = self.inner.tick_task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
        if let Err(e) = self.flush_all_refusals().await {
            tracing::error!(code = e.code(), "the counts of unauthenticated refusals could not be written at shutdown");
        }
        let _ = self.inner.writer.checkpoint().await;
        let task = self.inner.writer_task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            t.abort();
        }
        self.inner.store.close().await;
    }

    /// Starts the periodic jobs (expired-session sweeper).
    pub(crate) fn start_background_jobs(&self) -> tokio::task::JoinHandle<()> {
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
