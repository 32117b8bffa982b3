//! How a job's writes reach the database: each feature module owns its changes (an enum of
//! what it writes, `<feature>/changes.rs`, implementing [`Change`]); the audit writer only
//! applies them, in its transaction and each job's savepoint, with the job's audit records.

use std::future::Future;
use std::pin::Pin;

use carevault_store::{StoreError, WriteTx};

use crate::error::CoreError;

/// What applying a change returns (boxed: changes are trait objects in a job).
pub(crate) type Applied<'a> = Pin<Box<dyn Future<Output = Result<(), OpFailure>> + Send + 'a>>;

/// A change to make in the same transaction as its audit records.
pub(crate) trait Change: Send + Sync + 'static {
    /// Runs the change's statements.
    fn apply<'a>(&'a self, tx: &'a mut WriteTx) -> Applied<'a>;

    /// Whether the change is refused while free space is below the reserve. Sign-in and session
    /// upkeep, alerts, break-glass and deactivation stay possible (they are small, and a clinic
    /// must still be able to read a chart, raise an alarm and lock an account); every other
    /// change waits until space is freed.
    fn waits_for_space(&self) -> bool;

    /// Whether the change alters what a signed-in session may do: its account, the session
    /// itself, roles, role assignments, grants. The writer then moves the access generation on
    /// in the same transaction, which makes every cached session stale (`auth::cache`). A
    /// change that answers no must not touch those rows.
    fn affects_access(&self) -> bool {
        false
    }
}

/// One change of a job, whichever feature it belongs to.
pub(crate) struct Op(Box<dyn Change>);

impl<C: Change> From<C> for Op {
    fn from(c: C) -> Op {
        Op(Box::new(c))
    }
}

impl Op {
    pub(crate) async fn apply(&self, tx: &mut WriteTx) -> Result<(), OpFailure> {
        self.0.apply(tx).await
    }

    pub(crate) fn waits_for_space(&self) -> bool {
        self.0.waits_for_space()
    }

    pub(crate) fn affects_access(&self) -> bool {
        self.0.affects_access()
    }
}

pub(crate) enum OpFailure {
    /// The job's own fault (conflict, replay): its savepoint is rolled back, the batch goes on.
    Domain(CoreError),
    /// The database failed: the job's savepoint is rolled back if the database still can, and
    /// only that job fails; otherwise the whole batch fails.
    Store(StoreError),
}

impl From<StoreError> for OpFailure {
    fn from(e: StoreError) -> Self {
        OpFailure::Store(e)
    }
}

/// A statement that had to change exactly one row: otherwise the thing is gone (or was never there).
pub(crate) fn found(changed: bool, what: &str) -> Result<(), OpFailure> {
    if changed {
        Ok(())
    } else {
        Err(OpFailure::Domain(CoreError::NotFound { resource: what.to_string() }))
    }
}
