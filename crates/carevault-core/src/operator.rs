//! The operator's handle: what only the server's own shell does — open the vault, create the
//! first accounts, unlock an account, lay out organizations, rotate keys, import reference codes,
//! seed the demo, run the periodic jobs, verify and checkpoint the audit log.
//!
//! Only [`Operator::open`] makes one, from [`OpenOptions`] (data folder, database, master-key
//! file, clock). The binary constructs it and hands the web crate a plain [`Vault`]
//! (`Operator::vault`), whose methods all take an authenticated [`crate::Actor`]; a test
//! (`tests/cli.rs`, `the_web_crate_never_reaches_the_operator`) keeps the web crate's sources
//! free of `Operator` and `OpenOptions`. The operator's changes are audited as the system actor
//! `operator` like any other.

use std::ops::Deref;

use carevault_domain::Role;

use crate::auth::NewUser;
use crate::error::{CoreError, StartupError};
use crate::rotation::{KeyStatus, RotationProgress};
use crate::vault::{OpenOptions, Vault};

/// The server shell's handle on the vault (see the module documentation).
#[derive(Clone)]
pub struct Operator {
    vault: Vault,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Operator")
    }
}

/// Reads go through the vault like everyone's; the operator's own powers are the methods below.
impl Deref for Operator {
    type Target = Vault;

    fn deref(&self) -> &Vault {
        &self.vault
    }
}

impl Operator {
    /// Opens (and on first start, initializes) the data folder, store and keys, and starts the
    /// audit writer.
    pub async fn open(opts: OpenOptions) -> Result<Operator, StartupError> {
        Ok(Operator { vault: Vault::open(opts).await? })
    }

    /// The handle the web server gets: everything it does needs an authenticated actor.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Creates a staff account from the operator's shell (`carevault user add`): the bootstrap,
    /// so its key is printed to the operator.
    pub async fn add_user(&self, username: &str, role: Role, password: &str) -> Result<NewUser, CoreError> {
        self.vault.add_user(username, role, password).await
    }

    /// The same with a built-in or custom role in `organization` (default: the default one).
    pub async fn add_user_in(&self, username: &str, role: &str, organization: Option<&str>, password: &str) -> Result<NewUser, CoreError> {
        self.vault.add_user_in(username, role, organization, password).await
    }

    /// Clears an account's failed-sign-in lock (`carevault user unlock`).
    pub async fn unlock_user(&self, username: &str) -> Result<(), CoreError> {
        self.vault.unlock_user(username).await
    }

    /// Adds an organization, location or department (`carevault org add …`).
    pub async fn add_unit(
        &self,
        kind: &str,
        name: &str,
        organization_id: Option<&str>,
        location_id: Option<&str>,
        time_zone: Option<&str>,
    ) -> Result<String, CoreError> {
        self.vault.add_unit(kind, name, organization_id, location_id, time_zone).await
    }

    /// Rotates the data key and re-seals everything under it (`carevault keys rotate`).
    pub async fn rotate_keys(&self, batch: usize, progress: impl FnMut(RotationProgress)) -> Result<RotationProgress, CoreError> {
        self.vault.rotate_keys(batch, progress).await
    }

    pub async fn key_status(&self) -> Result<KeyStatus, CoreError> {
        self.vault.key_status().await
    }

    /// Imports a CMS ICD-10-CM code file (`carevault icd10 import`).
    pub async fn import_icd10(&self, text: &str, release: &str) -> Result<usize, CoreError> {
        self.vault.import_icd10(text, release).await
    }

    /// Seeds the demo clinic (a demo instance's first start).
    pub async fn seed_demo_clinic(&self) -> Result<Vec<crate::DemoAccount>, CoreError> {
        self.vault.seed_demo_clinic().await
    }

    /// Deactivates accounts unused for `inactive_account_days` (also run hourly by the jobs).
    pub async fn deactivate_unused_accounts(&self) -> Result<usize, CoreError> {
        self.vault.deactivate_unused_accounts().await
    }

    /// Ends expired sessions, each audited (also run by the jobs).
    pub async fn sweep_sessions(&self) -> Result<usize, CoreError> {
        self.vault.sweep_sessions().await
    }

    /// Starts the periodic jobs (expired sessions, unused accounts).
    pub fn start_background_jobs(&self) -> tokio::task::JoinHandle<()> {
        self.vault.start_background_jobs()
    }

    pub async fn user_count(&self) -> Result<usize, CoreError> {
        self.vault.user_count().await
    }

    /// Whether this open created a new store.
    pub fn was_created(&self) -> bool {
        self.vault.was_created()
    }

    /// Verifies the audit log (`carevault audit verify` on a running server's folder).
    pub async fn verify_audit(&self) -> Result<crate::VerifyReport, CoreError> {
        self.vault.verify_audit().await
    }

    pub async fn verify_audit_with(&self, options: &crate::VerifyOptions) -> Result<crate::VerifyReport, CoreError> {
        self.vault.verify_audit_with(options).await
    }

    /// Writes a signed checkpoint of the audit head now.
    pub async fn checkpoint(&self) -> Result<(), CoreError> {
        self.vault.checkpoint().await
    }
}
