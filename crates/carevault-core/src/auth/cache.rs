//! Signed-in sessions kept in memory, so a request does not look up its session, its account,
//! the account's role assignments and its grants again (four lookups) when none of them changed.
//!
//! **Correctness.** Every entry is tagged with the *access generation* it was loaded under: a
//! counter in the database that every committed change to accounts, sessions, roles,
//! assignments or grants moves on in its own transaction (the audit writer does it for each
//! change that says it affects access, whichever process makes it: this server, another
//! instance on the same PostgreSQL database, or the operator's CLI). A request reads the
//! generation (one indexed row; on SQLite a read in place, on PostgreSQL one round trip) and
//! uses an entry only if its generation is the current one; the generation is read *before* the
//! rows an entry is built from, so an entry can never be newer than its tag. An entry is also
//! dropped at the first moment one of the user's assignments or grants starts or ends.
//!
//! **Idle limit.** The entry keeps the time of the session's last request exactly (in memory);
//! the database copy is brought up to date at most once a second per session, through the
//! audit writer's batches (no write per request, and the limit stays exact to the second for
//! other processes, whose sweeps read the database copy).
//!
//! Nothing here is patient data: account names, role names and privileges.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use carevault_domain::UserId;
use carevault_store::SessionRow;

use crate::authz::Privileges;

/// The most sessions kept; beyond it the cache starts over (a clinic has far fewer).
const MAX_ENTRIES: usize = 10_000;

/// A signed-in (MFA-completed) session of an active account, as of `generation`.
pub(crate) struct Entry {
    pub generation: i64,
    pub session: SessionRow,
    pub user_id: UserId,
    pub username: String,
    pub organization_id: String,
    pub roles: Vec<String>,
    pub privileges: Arc<Privileges>,
    /// When an assignment or grant of the user starts or ends next (the entry is stale then).
    pub changes_at: Option<i64>,
    /// The session's last request (µs), exact.
    pub last_seen: AtomicI64,
    /// The last time written to the database (µs).
    pub stored_seen: AtomicI64,
}

#[derive(Default)]
pub(crate) struct SessionCache {
    entries: Mutex<HashMap<Vec<u8>, Arc<Entry>>>,
}

impl SessionCache {
    /// The entry of `token_hash` if it is current at `generation` and `now`; a stale one is
    /// dropped.
    pub(crate) fn get(&self, token_hash: &[u8], generation: i64, now: i64) -> Option<Arc<Entry>> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get(token_hash)?;
        if e.generation == generation && e.changes_at.is_none_or(|t| now < t) {
            return Some(e.clone());
        }
        map.remove(token_hash);
        None
    }

    pub(crate) fn put(&self, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(entry.session.token_hash.clone(), entry.clone());
        entry
    }

    pub(crate) fn remove(&self, token_hash: &[u8]) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(token_hash);
    }
}

impl Entry {
    /// Records a request at `now`; returns whether the database copy is due (more than
    /// `every` µs old), and marks it written if so.
    pub(crate) fn seen(&self, now: i64, every: i64) -> bool {
        self.last_seen.fetch_max(now, Ordering::Relaxed);
        let stored = self.stored_seen.load(Ordering::Relaxed);
        now - stored >= every && self.stored_seen.compare_exchange(stored, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    pub(crate) fn last_seen(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}
