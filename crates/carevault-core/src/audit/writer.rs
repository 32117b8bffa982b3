//! The audit writer: one task that owns every write transaction. It drains the queue of jobs
//! into one transaction (group commit), gives each job its own savepoint, appends the audit
//! records to the chain and the Merkle tree, signs the new head, commits, appends due
//! checkpoints (with their signed tree heads) to the file, and only then answers each job with a
//! [`Receipt`]. If the commit fails, every job in the batch fails: no durable audit record, no
//! data; the store hands the next batch a fresh connection (see `carevault_store::WriteTx`).

use std::sync::Arc;
use std::time::Duration;

use carevault_crypto::signing::AuditSigner;
use carevault_store::{AuditRow, CheckpointRow, Store, StoreError, WriteTx};
use tokio::sync::{mpsc, oneshot};

use super::chain::{canonical, chain_hash, checkpoint_message, head_message};
pub(crate) use super::change::Op;
use super::change::OpFailure;
use super::files::AuditFiles;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::tree::tree_head_message;
use super::{Draft, Receipt};
use crate::clock::Clock;
use crate::error::CoreError;
use crate::storage::StorageMonitor;

const MAX_BATCH: usize = 512;

struct Job {
    ops: Vec<Op>,
    events: Vec<Draft>,
    /// Appended instead of `events` when an op fails with a domain error.
    on_failure: Option<Draft>,
    force_checkpoint: bool,
    /// Kept and retried when its batch fails (alerts raised without a caller waiting).
    durable: bool,
    reply: Option<oneshot::Sender<Result<Receipt, CoreError>>>,
}

impl Job {
    fn new(ops: Vec<Op>, events: Vec<Draft>) -> Job {
        Job { ops, events, on_failure: None, force_checkpoint: false, durable: false, reply: None }
    }
}

/// Jobs kept for retry after failed batches, at most.
const MAX_RETRY: usize = 10_000;

#[derive(Clone)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

pub(crate) struct WriterConfig {
    pub checkpoint_every: i64,
    pub checkpoint_interval_micros: i64,
    pub queue: usize,
    pub files: Arc<AuditFiles>,
    pub storage: Arc<StorageMonitor>,
}

impl AuditWriter {
    pub(crate) fn start(
        store: Store,
        signer: Arc<AuditSigner>,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
    ) -> (AuditWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let now = clock.now_micros();
        let task = Writer { store, signer, clock, config, since_checkpoint: 0, last_checkpoint_at: now, retry: Vec::new() };
        let handle = tokio::spawn(task.run(rx));
        (AuditWriter { tx }, handle)
    }

    async fn submit(&self, job: Job) -> Result<Receipt, CoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { reply: Some(reply), ..job }).await.map_err(|_| CoreError::AuditUnavailable)?;
        rx.await.map_err(|_| CoreError::AuditUnavailable)?
    }

    /// Appends one audit record and waits until it is durable.
    pub(crate) async fn append(&self, draft: Draft) -> Result<Receipt, CoreError> {
        self.submit(Job::new(vec![], vec![draft])).await
    }

    /// Applies `ops` and appends `events` in one transaction. If an op fails with a domain
    /// error, nothing of the job is kept but `on_failure` (with the error's outcome).
    pub(crate) async fn write(&self, ops: Vec<Op>, events: Vec<Draft>, on_failure: Option<Draft>) -> Result<Receipt, CoreError> {
        self.submit(Job { on_failure, ..Job::new(ops, events) }).await
    }

    /// Queues ops that need no audit record and no answer (session keep-alive).
    pub(crate) fn fire(&self, ops: Vec<Op>) {
        let _ = self.tx.try_send(Job::new(ops, vec![]));
    }

    /// Queues ops with their audit records without waiting (alerts raised on a refusal path).
    /// Never dropped: a full queue is waited out off the caller's path, and a failed batch keeps
    /// the job for the next one.
    pub(crate) fn fire_audited(&self, ops: Vec<Op>, events: Vec<Draft>) {
        let job = Job { durable: true, ..Job::new(ops, events) };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if tx.send(job).await.is_err() {
                        tracing::error!("an alert could not be queued: the audit writer has stopped");
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => tracing::error!("an alert could not be queued: the audit writer has stopped"),
        }
    }

    /// Jobs waiting in the queue.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Writes a signed checkpoint now (shutdown, tests, operator request).
    pub(crate) async fn checkpoint(&self) -> Result<(), CoreError> {
        self.submit(Job { force_checkpoint: true, ..Job::new(vec![], vec![]) }).await.map(|_| ())
    }
}

struct Writer {
    store: Store,
    signer: Arc<AuditSigner>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    since_checkpoint: i64,
    last_checkpoint_at: i64,
    retry: Vec<Job>,
}

/// What a committed job's receipt is issued from: its sequence numbers, the patients it
/// covers, and its actor and data class.
type Issued = (Vec<i64>, Vec<String>, (String, bool));

struct Outcome {
    result: Result<Issued, CoreError>,
}

/// How often the writer looks after itself: catches up lagging evidence files, re-checks free
/// space, retries kept alerts, and probes a failing store.
const TICK: Duration = Duration::from_secs(2);

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                j = rx.recv() => match j {
                    Some(j) => Some(j),
                    None => break,
                },
                _ = tick.tick() => None,
            };
            let ticked = first.is_none();
            if ticked {
                self.look_after().await;
            }
            let mut batch = std::mem::take(&mut self.retry);
            batch.extend(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.process(batch).await;
            }
        }
    }

    /// Every tick (about every 2 s, busy or not): free space, a probe write while the store
    /// fails, and the evidence files caught up with the database (an append that failed, or
    /// checkpoints another instance on a shared database wrote).
    async fn look_after(&mut self) {
        self.config.storage.below_reserve();
        if self.config.storage.is_failing() {
            // A real durable commit (the head re-signed): success clears the failing state.
            self.process(vec![Job { force_checkpoint: true, ..Job::new(vec![], vec![]) }]).await;
        }
        let lock = self.config.files.lock_exclusive().await;
        self.config.files.catch_up(&self.store, self.clock.now_micros()).await;
        drop(lock);
    }

    async fn process(&mut self, mut batch: Vec<Job>) {
        let force = batch.iter().any(|j| j.force_checkpoint);
        match self.commit_batch(&mut batch, force).await {
            Ok(outcomes) => {
                self.config.storage.write_succeeded();
                for (job, o) in batch.into_iter().zip(outcomes) {
                    if let Some(r) = job.reply {
                        let _ = r.send(o.result.map(|(seqs, covers, actor)| Receipt::issue(seqs, covers, actor)));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "audit batch failed; nothing in it was kept");
                self.config.storage.write_failed(self.clock.now_micros(), &e.to_string());
                for job in batch {
                    if let Some(r) = job.reply {
                        let _ = r.send(Err(CoreError::AuditUnavailable));
                    } else if job.durable {
                        if self.retry.len() < MAX_RETRY {
                            self.retry.push(job);
                        } else {
                            tracing::error!("an alert was dropped: too many alerts wait for the store to recover");
                        }
                    }
                }
            }
        }
    }

    async fn commit_batch(&mut self, batch: &mut [Job], force_checkpoint: bool) -> Result<Vec<Outcome>, StoreError> {
        let low_space = self.config.storage.below_reserve();
        let mut tx = self.store.begin().await?;
        let head = tx.lock_audit_head().await?;
        let mut seq = head.seq;
        let mut hash = head.hash.clone();
        let stored = head.tree_frontier.as_deref().and_then(Frontier::decode).filter(|f| i64::try_from(f.size()) == Ok(head.seq));
        let rebuilt = stored.is_none();
        let mut frontier = match stored {
            Some(f) => f,
            None => rebuild_tree(&mut tx, head.seq).await?,
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut appended = 0i64;
        let mut access_changed = false;
        // The batch's records, inserted together once every job has run (a few statements for
        // the whole batch rather than one per record).
        let mut rows = Vec::new();
        for job in batch.iter_mut() {
            let mut failure = None;
            if low_space && job.ops.iter().any(Op::waits_for_space) {
                failure = Some(CoreError::StorageLow);
            } else if !job.ops.is_empty() {
                tx.savepoint().await?;
                let mut store_failure = None;
                for op in &job.ops {
                    match op.apply(&mut tx).await {
                        Ok(()) => {}
                        Err(OpFailure::Store(e)) => {
                            store_failure = Some(e);
                            break;
                        }
                        Err(OpFailure::Domain(e)) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = store_failure {
                    // Only this job fails, if the database can still roll back to its savepoint
                    // (after a full disk or a lost connection it cannot: the batch fails).
                    if tx.rollback_to_savepoint().await.is_err() {
                        return Err(e);
                    }
                    tracing::error!(error = %e, "a job of the batch failed in the store; the others go on");
                    failure = Some(CoreError::from(e));
                } else if failure.is_some() {
                    tx.rollback_to_savepoint().await?;
                } else {
                    tx.release_savepoint().await?;
                    access_changed |= job.ops.iter().any(Op::affects_access);
                }
            }
            let drafts: Vec<Draft> = match &failure {
                // A job nobody waits for may be retried after a failed batch: keep its drafts.
                None if job.reply.is_none() => job.events.clone(),
                None => std::mem::take(&mut job.events),
                Some(e) => job
                    .on_failure
                    .take()
                    .map(|mut d| {
                        d.outcome = e.outcome();
                        d.covers.clear();
                        d.disclosed.clear();
                        d
                    })
                    .into_iter()
                    .collect(),
            };
            let mut seqs = Vec::with_capacity(drafts.len());
            let mut covers = Vec::new();
            let actor = drafts.first().map(|d| d.actor.clone()).unwrap_or_default();
            let clinical = drafts.iter().any(|d| d.resource_type.as_deref() != Some("Patient"));
            for d in drafts {
                seq += 1;
                let mut row = AuditRow {
                    seq,
                    event_id: d.event_id,
                    at: d.at,
                    actor: d.actor,
                    session: d.session,
                    source_ip: d.source_ip,
                    action: d.action.as_str().to_string(),
                    outcome: d.outcome.as_str().to_string(),
                    resource_type: d.resource_type,
                    resource_id: d.resource_id,
                    patient_id: d.patient_id,
                    purpose: d.purpose.map(|p| p.code().to_string()),
                    details: d.details,
                    review_flags: d.review,
                    // Written with the record, and indexed row by row by `insert_audits`.
                    disclosed: (!d.disclosed.is_empty()).then(|| d.disclosed.join(" ")),
                    prev_hash: hash.clone(),
                    hash: vec![],
                };
                let encoded = canonical(row.as_ref());
                row.hash = chain_hash(&hash, &encoded).to_vec();
                if let Some((idx, block)) = frontier.push(leaf_hash(&encoded)) {
                    tx.put_tree_block(i64::try_from(idx).unwrap_or(i64::MAX), &block).await?;
                }
                hash = row.hash.clone();
                rows.push(row);
                seqs.push(seq);
                covers.extend(d.covers);
                appended += 1;
            }
            outcomes.push(Outcome {
                result: match failure {
                    None => Ok((seqs, covers, (actor, clinical))),
                    Some(e) => Err(e),
                },
            });
        }
        tx.insert_audits(&rows).await?;
        if access_changed {
            // Every cached session, in every process, is stale from this commit on.
            tx.bump_access_generation().await?;
        }
        let now = self.clock.now_micros();
        let mut checkpointed = false;
        if seq != head.seq || force_checkpoint || rebuilt {
            tx.set_audit_head(seq, &hash, &self.signer.sign(&head_message(seq, &hash)), &frontier.encode()).await?;
            let due = self.since_checkpoint + appended >= self.config.checkpoint_every
                || now - self.last_checkpoint_at >= self.config.checkpoint_interval_micros
                || force_checkpoint;
            if due && seq > 0 {
                let root = frontier.root();
                let size = u64::try_from(seq).unwrap_or(0);
                let c = CheckpointRow {
                    seq,
                    hash: hash.clone(),
                    at: now,
                    public_key: self.signer.public_key().to_vec(),
                    signature: self.signer.sign(&checkpoint_message(seq, &hash, now)).to_vec(),
                    root_hash: Some(root.to_vec()),
                    tree_signature: Some(
                        self.signer.sign(&tree_head_message(size, &root, u64::try_from(now / 1000).unwrap_or(0))).to_vec(),
                    ),
                };
                // Another process may have checkpointed this very head already.
                checkpointed = tx.insert_checkpoint(&c).await?;
            }
        }
        // The checkpoint file's lock is held from before the commit until its line is written,
        // so the verifier never sees the one without the other.
        let lock = if checkpointed {
            match self.config.files.lock_exclusive().await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(error = %e, "could not lock the audit checkpoint file");
                    None
                }
            }
        } else {
            None
        };
        tx.commit().await?;
        self.since_checkpoint += appended;
        if checkpointed {
            self.since_checkpoint = 0;
            self.last_checkpoint_at = now;
            self.config.files.catch_up(&self.store, now).await;
        }
        drop(lock);
        Ok(outcomes)
    }
}

/// Builds the Merkle tree over the records already in the log (a log written before the tree
/// existed, or a head row whose frontier is unusable), inside the write transaction.
async fn rebuild_tree(tx: &mut WriteTx, head_seq: i64) -> Result<Frontier, StoreError> {
    let mut frontier = Frontier::default();
    let mut after = 0i64;
    let mut missing = 0u64;
    while after < head_seq {
        let page = tx.audit_events(after, 5000).await?;
        if page.is_empty() {
            break;
        }
        for row in &page {
            if row.seq > head_seq {
                break;
            }
            // A record missing from the log still takes its place in the tree; `audit verify`
            // names it.
            while i64::try_from(frontier.size()).unwrap_or(i64::MAX) + 1 < row.seq {
                missing += 1;
                push_block(tx, &mut frontier, [0u8; 32]).await?;
            }
            push_block(tx, &mut frontier, leaf_hash(&canonical(row.as_ref()))).await?;
            after = row.seq;
        }
    }
    while i64::try_from(frontier.size()).unwrap_or(i64::MAX) < head_seq {
        missing += 1;
        push_block(tx, &mut frontier, [0u8; 32]).await?;
    }
    if missing > 0 {
        tracing::error!(missing, "audit records are missing from the log; run `carevault audit verify`");
    }
    if head_seq > 0 {
        tracing::info!(records = head_seq, "built the Merkle tree over the existing audit log");
    }
    Ok(frontier)
}

async fn push_block(tx: &mut WriteTx, frontier: &mut Frontier, leaf: Hash) -> Result<(), StoreError> {
    if let Some((idx, block)) = frontier.push(leaf) {
        tx.put_tree_block(i64::try_from(idx).unwrap_or(i64::MAX), &block).await?;
    }
    Ok(())
}
