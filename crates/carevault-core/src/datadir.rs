//! The data folder: its layout and its permissions.

use std::path::{Path, PathBuf};

use crate::error::StartupError;

/// Layout of a data folder. Everything in it is readable by its owner only.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn sqlite_path(&self) -> PathBuf {
        self.root.join("carevault.db")
    }
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.sqlite_path().display())
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn master_key_path(&self) -> PathBuf {
        self.keys_dir().join("master.key")
    }
    pub fn signing_public_key_path(&self) -> PathBuf {
        self.keys_dir().join("audit-signing.pub")
    }
    pub fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }
    pub fn checkpoint_log_path(&self) -> PathBuf {
        self.audit_dir().join("checkpoints.log")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    /// Sealed document streams (`<id>.cvs`): ciphertext only.
    pub fn documents_dir(&self) -> PathBuf {
        self.root.join("documents")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    fn err(&self, message: impl Into<String>) -> StartupError {
        StartupError::DataDir { path: self.root.display().to_string(), message: message.into() }
    }

    /// Creates the folder and its subfolders (mode 0700) when `create`, then checks that the
    /// folder is not accessible to group or others.
    pub fn prepare(&self, create: bool) -> Result<(), StartupError> {
        if !self.root.exists() {
            if !create {
                return Err(self.err("does not exist (start `carevault serve` once to initialize it)"));
            }
            create_private_dir(&self.root).map_err(|e| self.err(format!("could not be created: {e}")))?;
        }
        if !self.root.is_dir() {
            return Err(self.err("is not a folder"));
        }
        check_private(&self.root).map_err(|m| self.err(m))?;
        for d in [self.keys_dir(), self.audit_dir(), self.tls_dir(), self.logs_dir(), self.documents_dir()] {
            if !d.exists() {
                create_private_dir(&d).map_err(|e| self.err(format!("{} could not be created: {e}", d.display())))?;
            }
            check_private(&d).map_err(|m| self.err(m))?;
        }
        Ok(())
    }
}

fn create_private_dir(p: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(p)
}

#[cfg(unix)]
fn check_private(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is accessible to group or others (mode {mode:o}); it holds keys and patient data. Run: chmod 700 {}",
            p.display(),
            p.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_p: &Path) -> Result<(), String> {
    Ok(())
}
