//! The health of the storage the vault writes to: a free-space reserve below which changes are
//! refused cleanly (before the disk is actually full), and whether the last write failed.
//! `/health` and the log say which, and why.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What `/health` reports about storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageHealth {
    /// Writes work and free space is above the reserve.
    Ok,
    /// Free space on the data folder's disk is below the reserve: changes are refused, reads
    /// (and their audit records) and sign-ins continue.
    Low { free_bytes: u64, reserve_bytes: u64, path: String },
    /// The last write transaction failed (full disk, I/O error, database unreachable): nothing
    /// of it was acknowledged. Clears at the next successful commit.
    Failing { since_micros: i64, cause: String },
}

pub(crate) struct StorageMonitor {
    dir: PathBuf,
    reserve: u64,
    low: AtomicBool,
    free: AtomicU64,
    failing: Mutex<Option<(i64, String)>>,
}

impl StorageMonitor {
    pub(crate) fn new(dir: PathBuf, reserve: u64) -> StorageMonitor {
        StorageMonitor { dir, reserve, low: AtomicBool::new(false), free: AtomicU64::new(u64::MAX), failing: Mutex::new(None) }
    }

    /// The reserve when none is configured: 5 % of the filesystem, at least 8 MiB and at most
    /// 512 MiB.
    pub(crate) fn default_reserve(dir: &std::path::Path) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match rustix::fs::statvfs(dir) {
            Ok(s) => (s.f_blocks.saturating_mul(s.f_frsize) / 20).clamp(8 * MIB, 512 * MIB),
            Err(_) => 64 * MIB,
        }
    }

    pub(crate) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Free bytes available to this process on the data folder's filesystem.
    fn free_bytes(&self) -> std::io::Result<u64> {
        let s = rustix::fs::statvfs(&self.dir)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Checks free space now (one `statvfs`); true when it is below the reserve. A reserve of 0
    /// disables the check.
    pub(crate) fn below_reserve(&self) -> bool {
        if self.reserve == 0 {
            return false;
        }
        let free = match self.free_bytes() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the free space of the data folder");
                return false;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let low = free < self.reserve;
        let was = self.low.swap(low, Ordering::Relaxed);
        if low && !was {
            tracing::error!(
                free_bytes = free,
                reserve_bytes = self.reserve,
                path = %self.dir.display(),
                "free space is below the reserve: changes are refused (503) until space is freed; reads continue"
            );
        } else if !low && was {
            tracing::info!(free_bytes = free, "free space is above the reserve again: changes are accepted");
        }
        low
    }

    pub(crate) fn write_failed(&self, now: i64, cause: &str) {
        if let Ok(mut f) = self.failing.lock() {
            if f.is_none() {
                *f = Some((now, cause.to_string()));
            }
        }
    }

    pub(crate) fn write_succeeded(&self) {
        if let Ok(mut f) = self.failing.lock() {
            if let Some((since, _)) = f.take() {
                tracing::info!(failing_since_micros = since, "writes succeed again");
            }
        }
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.failing.lock().map(|f| f.is_some()).unwrap_or(false)
    }

    pub(crate) fn health(&self) -> StorageHealth {
        if let Some((since, cause)) = self.failing.lock().ok().and_then(|f| f.clone()) {
            return StorageHealth::Failing { since_micros: since, cause };
        }
        if self.low.load(Ordering::Relaxed) {
            return StorageHealth::Low {
                free_bytes: self.free.load(Ordering::Relaxed),
                reserve_bytes: self.reserve,
                path: self.dir.display().to_string(),
            };
        }
        StorageHealth::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_failures_are_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let off = StorageMonitor::new(dir.path().to_path_buf(), 0);
        assert!(!off.below_reserve());
        let huge = StorageMonitor::new(dir.path().to_path_buf(), u64::MAX);
        assert!(huge.below_reserve());
        assert!(matches!(huge.health(), StorageHealth::Low { reserve_bytes: u64::MAX, .. }));
        huge.write_failed(5, "disk full");
        huge.write_failed(6, "later");
        assert_eq!(huge.health(), StorageHealth::Failing { since_micros: 5, cause: "disk full".into() });
        huge.write_succeeded();
        assert!(matches!(huge.health(), StorageHealth::Low { .. }));
    }
}
