//! The audit writer: one task that owns every write transaction. It drains the queue of jobs
//! into one transaction (group commit), gives each job its own savepoint, appends the audit
//! records to the chain and the Merkle tree, signs the new head, commits, appends due
//! checkpoints (with their signed tree heads) to the file, and only then answers each job with a
//! [`Receipt`]. If the commit fails, every job in the batch fails: no durable audit record, no
//! data; the store hands the next batch a fresh connection (see `carevault_store::WriteTx`).

use std::sync::Arc;
use std::time::Duration;

use carevault_crypto::signing::AuditSigner;
use carevault_store::{
    AlertRow, AllergyRow, AppointmentRow, AppointmentTypeRow, AssignmentRow, AuditRow, AvailabilityRow, Booked, BreakGlassRow,
    CareRelationshipRow, CeremonyRow, CheckpointRow, ConsentTemplateRow, CustomRoleRow, GrantRow, NewSession, PasskeyRow,
    PatientVersionRow, PractitionerRoleRow, PractitionerRow, RecordRow, Store, StoreError, UnitKind, UnitRow, UserRow, WaitlistRow,
    WriteTx,
};
use tokio::sync::{mpsc, oneshot};

use super::chain::{canonical, chain_hash, checkpoint_message, head_message};
use super::files::AuditFiles;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::tree::tree_head_message;
use super::{Draft, Receipt};
use crate::clock::Clock;
use crate::error::CoreError;
use crate::storage::StorageMonitor;

const MAX_BATCH: usize = 512;

/// A change to make in the same transaction as its audit records.
pub(crate) enum Op {
    InsertUser(Box<UserRow>),
    AdvanceTotp {
        user_id: String,
        step: i64,
    },
    SetLoginFailures {
        user_id: String,
        failed: i64,
        locked_until: Option<i64>,
    },
    InsertSession(NewSession),
    DeleteSession {
        token_hash: Vec<u8>,
    },
    TouchSession {
        token_hash: Vec<u8>,
        now: i64,
    },
    SessionMfaFailed {
        token_hash: Vec<u8>,
        max: i64,
    },
    InsertPatient {
        row: Box<PatientVersionRow>,
        tokens: Vec<(i64, Vec<u8>)>,
        is_demo: bool,
        organization_id: String,
    },
    UpdatePatient {
        row: Box<PatientVersionRow>,
        expected: i64,
        tokens: Vec<(i64, Vec<u8>)>,
        mrn_token: (i64, Vec<u8>),
    },
    InsertDataKey {
        version: i64,
        wrapped: Vec<u8>,
        now: i64,
    },
    ResealPatient {
        row: Box<PatientVersionRow>,
        old_key_version: i64,
    },
    ResealUser {
        user_id: String,
        secret: Vec<u8>,
        key_version: i64,
        old_key_version: i64,
    },
    InsertUnit {
        kind: UnitKind,
        row: UnitRow,
    },
    UpsertCustomRole(CustomRoleRow),
    InsertAssignment(AssignmentRow),
    DeleteAssignment {
        id: String,
    },
    /// Fails the job if the organization would be left without an active practice admin.
    GuardLastAdmin {
        organization_id: String,
        now: i64,
    },
    InsertGrant(Box<GrantRow>),
    RevokeGrant {
        id: String,
        by: String,
        now: i64,
    },
    SetPlacement {
        patient_id: String,
        location_id: Option<String>,
        department_id: Option<String>,
    },
    ReplaceFlags {
        patient_id: String,
        categories: Vec<String>,
        by: String,
        now: i64,
    },
    UpsertCare(CareRelationshipRow),
    EndCare {
        patient_id: String,
        user_id: String,
        relation: String,
        now: i64,
    },
    InsertBreakGlass(Box<BreakGlassRow>),
    CloseReview {
        id: String,
        by: String,
        now: i64,
        outcome: String,
        note: Vec<u8>,
    },
    InsertAlert(AlertRow),
    CloseAlert {
        id: String,
        category: String,
        by: String,
        now: i64,
    },
    SetUserActive {
        user_id: String,
        active: bool,
        now: i64,
    },
    DeleteUserSessions {
        user_id: String,
    },
    DeleteOtherSessions {
        user_id: String,
        keep: Vec<u8>,
    },
    DeleteSessionByPublicId {
        user_id: String,
        public_id: String,
    },
    SetLastLogin {
        user_id: String,
        now: i64,
    },
    SetPassword {
        user_id: String,
        hash: String,
        now: i64,
    },
    ReplaceTotp {
        user_id: String,
        secret: Vec<u8>,
        key_version: i64,
    },
    ReplaceRecoveryCodes {
        user_id: String,
        hashes: Vec<Vec<u8>>,
        now: i64,
    },
    UseRecoveryCode {
        user_id: String,
        hash: Vec<u8>,
        now: i64,
    },
    SetSessionAuthenticated {
        token_hash: Vec<u8>,
        now: i64,
    },
    InsertAllergy(Box<AllergyRow>),
    ResealAllergy {
        row: Box<AllergyRow>,
        old_key_version: i64,
    },
    InsertPasskey(Box<PasskeyRow>),
    RenamePasskey {
        user_id: String,
        id: String,
        name: String,
    },
    DeletePasskeys {
        user_id: String,
        id: Option<String>,
    },
    PasskeyUsed {
        credential_id: Vec<u8>,
        passkey: Option<Vec<u8>>,
        now: i64,
    },
    InsertCeremony(Box<CeremonyRow>),
    InsertPractitioner {
        row: Box<PractitionerRow>,
        roles: Vec<PractitionerRoleRow>,
    },
    ReplaceAvailability {
        practitioner_id: String,
        location_id: String,
        rows: Vec<AvailabilityRow>,
    },
    /// Fails the job with a conflict when a live appointment of the practitioner overlaps.
    BookAppointment {
        row: Box<AppointmentRow>,
        allow_overlap: bool,
    },
    AppointmentStatus {
        id: String,
        from: String,
        to: String,
        reason: Option<String>,
        actor: String,
        at: i64,
    },
    NoteAppointmentHistory {
        id: String,
        from: String,
        to: String,
        reason: Option<String>,
        actor: String,
        at: i64,
    },
    InsertClosure {
        id: String,
        location_id: String,
        practitioner_id: Option<String>,
        kind: String,
        start: i64,
        end: i64,
        now: i64,
    },
    /// Consumes a WebAuthn ceremony: a second use fails the job.
    TakeCeremony {
        id: String,
    },
    InsertRecord(Box<RecordRow>),
    /// Fails the job with a conflict when the record is no longer at that version and status.
    UpdateRecord {
        row: Box<RecordRow>,
        expected_version: i64,
        expected_status: String,
    },
    ResealRecord {
        id: String,
        version: i64,
        key_version: i64,
        body: Vec<u8>,
    },
    InsertConsentTemplate(Box<ConsentTemplateRow>),
    UpsertIcd10 {
        codes: Vec<(String, String, bool)>,
        release: String,
    },
    InsertAppointmentType(Box<AppointmentTypeRow>),
    InsertWaitlist(Box<WaitlistRow>),
    /// Fails the job with a conflict when the entry is no longer waiting.
    OfferWaitlist {
        id: String,
        span: (i64, i64),
        now: i64,
    },
    /// Fails the job with a conflict when the entry's status is no longer `from`.
    SetWaitlistStatus {
        id: String,
        from: &'static str,
        to: &'static str,
        appointment_id: Option<String>,
    },
}

impl Op {
    /// Whether the op is refused while free space is below the reserve. Sign-in and session
    /// upkeep, alerts, break-glass and deactivation stay possible (they are small, and a clinic
    /// must still be able to read a chart, raise an alarm and lock an account); every other
    /// change waits until space is freed.
    fn waits_for_space(&self) -> bool {
        !matches!(
            self,
            Op::AdvanceTotp { .. }
                | Op::SetLoginFailures { .. }
                | Op::InsertSession(_)
                | Op::DeleteSession { .. }
                | Op::TouchSession { .. }
                | Op::SessionMfaFailed { .. }
                | Op::DeleteUserSessions { .. }
                | Op::DeleteOtherSessions { .. }
                | Op::DeleteSessionByPublicId { .. }
                | Op::SetLastLogin { .. }
                | Op::UseRecoveryCode { .. }
                | Op::SetSessionAuthenticated { .. }
                | Op::PasskeyUsed { .. }
                | Op::InsertCeremony(_)
                | Op::TakeCeremony { .. }
                | Op::InsertAlert(_)
                | Op::InsertBreakGlass(_)
                | Op::SetUserActive { .. }
        )
    }
}

enum OpFailure {
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

struct Outcome {
    result: Result<(Vec<i64>, Vec<String>), CoreError>,
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
                        let _ = r.send(o.result.map(|(seqs, covers)| Receipt::issue(seqs, covers)));
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
        for job in batch.iter_mut() {
            let mut failure = None;
            if low_space && job.ops.iter().any(Op::waits_for_space) {
                failure = Some(CoreError::StorageLow);
            } else if !job.ops.is_empty() {
                tx.savepoint().await?;
                let mut store_failure = None;
                for op in &job.ops {
                    match apply(&mut tx, op).await {
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
                        d
                    })
                    .into_iter()
                    .collect(),
            };
            let mut seqs = Vec::with_capacity(drafts.len());
            let mut covers = Vec::new();
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
                    prev_hash: hash.clone(),
                    hash: vec![],
                };
                let encoded = canonical(row.as_ref());
                row.hash = chain_hash(&hash, &encoded).to_vec();
                tx.insert_audit(&row).await?;
                if let Some((idx, block)) = frontier.push(leaf_hash(&encoded)) {
                    tx.put_tree_block(i64::try_from(idx).unwrap_or(i64::MAX), &block).await?;
                }
                hash = row.hash;
                seqs.push(seq);
                covers.extend(d.covers);
                appended += 1;
            }
            outcomes.push(Outcome {
                result: match failure {
                    None => Ok((seqs, covers)),
                    Some(e) => Err(e),
                },
            });
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

/// A statement that had to change exactly one row: otherwise the thing is gone (or was never there).
fn found(changed: bool, what: &str) -> Result<(), OpFailure> {
    if changed {
        Ok(())
    } else {
        Err(OpFailure::Domain(CoreError::NotFound { resource: what.to_string() }))
    }
}

async fn apply(tx: &mut WriteTx, op: &Op) -> Result<(), OpFailure> {
    match op {
        Op::InsertUser(u) => tx.insert_user(u).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a user with this username already exists".into())),
            other => OpFailure::Store(other),
        }),
        Op::AdvanceTotp { user_id, step } => {
            if tx.advance_totp_step(user_id, *step).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::InvalidCode))
            }
        }
        Op::SetLoginFailures { user_id, failed, locked_until } => Ok(tx.set_login_failures(user_id, *failed, *locked_until).await?),
        Op::InsertSession(s) => Ok(tx.insert_session(s).await?),
        Op::DeleteSession { token_hash } => {
            tx.delete_session(token_hash).await?;
            Ok(())
        }
        Op::TouchSession { token_hash, now } => Ok(tx.touch_session(token_hash, *now).await?),
        Op::SessionMfaFailed { token_hash, max } => {
            if tx.session_mfa_failed(token_hash).await? >= *max {
                tx.delete_session(token_hash).await?;
            }
            Ok(())
        }
        Op::InsertPatient { row, tokens, is_demo, organization_id } => {
            tx.insert_patient(&row.patient_id, organization_id, row.recorded_at, *is_demo).await?;
            tx.insert_patient_version(row).await?;
            tx.replace_patient_index(&row.patient_id, tokens).await.map_err(|e| match e {
                StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("mrn".into())),
                other => OpFailure::Store(other),
            })
        }
        Op::UpdatePatient { row, expected, tokens, mrn_token } => {
            let id = &row.patient_id;
            let Some(current) = tx.current_patient_version(id).await? else {
                return Err(OpFailure::Domain(CoreError::NotFound { resource: format!("Patient/{id}") }));
            };
            if current != *expected {
                return Err(OpFailure::Domain(CoreError::VersionConflict { expected: *expected, current }));
            }
            if !tx.patient_has_token(id, mrn_token.0, &mrn_token.1).await? {
                return Err(OpFailure::Domain(CoreError::Invalid(carevault_domain::InputError::value(
                    "Patient.identifier",
                    "the medical record number assigned by carevault must be kept unchanged",
                ))));
            }
            if !tx.bump_patient_version(id, *expected, row.recorded_at).await? {
                return Err(OpFailure::Domain(CoreError::VersionConflict { expected: *expected, current }));
            }
            tx.insert_patient_version(row).await?;
            tx.replace_patient_index(id, tokens).await.map_err(|e| match e {
                StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("mrn".into())),
                other => OpFailure::Store(other),
            })
        }
        Op::InsertDataKey { version, wrapped, now } => tx
            .insert_key(&carevault_store::KeyRow {
                purpose: crate::keys::DATA.into(),
                version: *version,
                wrapped: wrapped.clone(),
                public_key: None,
                created_at: *now,
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a key rotation is already running elsewhere".into())),
                other => OpFailure::Store(other),
            }),
        Op::ResealPatient { row, old_key_version } => {
            // false: changed concurrently; the rotation loop picks it up again if still old.
            tx.reseal_patient_version(row, *old_key_version).await?;
            Ok(())
        }
        Op::ResealUser { user_id, secret, key_version, old_key_version } => {
            tx.reseal_user(user_id, *old_key_version, secret, *key_version).await?;
            Ok(())
        }
        Op::InsertUnit { kind, row } => tx.insert_unit(*kind, row).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("a unit with this name already exists there".into())),
            other => OpFailure::Store(other),
        }),
        Op::UpsertCustomRole(r) => Ok(tx.upsert_custom_role(r).await?),
        Op::InsertAssignment(a) => Ok(tx.insert_assignment(a).await?),
        Op::DeleteAssignment { id } => found(tx.delete_assignment(id).await?, "assignment"),
        Op::GuardLastAdmin { organization_id, now } => {
            if tx.count_live_assignments(carevault_domain::Role::PracticeAdmin.id(), organization_id, *now).await? == 0 {
                Err(OpFailure::Domain(CoreError::Refused {
                    reason: "last-admin",
                    message: "the organization would be left without an active practice admin".into(),
                }))
            } else {
                Ok(())
            }
        }
        Op::InsertGrant(g) => Ok(tx.insert_grant(g).await?),
        Op::RevokeGrant { id, by, now } => found(tx.revoke_grant(id, by, *now).await?, "active grant"),
        Op::SetPlacement { patient_id, location_id, department_id } => {
            found(tx.set_patient_placement(patient_id, location_id.as_deref(), department_id.as_deref()).await?, "patient")
        }
        Op::ReplaceFlags { patient_id, categories, by, now } => Ok(tx.replace_patient_flags(patient_id, categories, by, *now).await?),
        Op::UpsertCare(c) => Ok(tx.upsert_care_relationship(c).await?),
        Op::EndCare { patient_id, user_id, relation, now } => {
            found(tx.end_care_relationship(patient_id, user_id, relation, *now).await?, "current care relationship")
        }
        Op::InsertBreakGlass(b) => Ok(tx.insert_break_glass(b).await?),
        Op::CloseReview { id, by, now, outcome, note } => {
            found(tx.close_break_glass_review(id, by, *now, outcome, note).await?, "open review")
        }
        Op::InsertAlert(a) => Ok(tx.insert_alert(a).await?),
        Op::CloseAlert { id, category, by, now } => found(tx.close_alert(id, category, by, *now).await?, "open alert"),
        Op::SetUserActive { user_id, active, now } => {
            tx.set_user_active(user_id, *active, *now).await?;
            Ok(())
        }
        Op::DeleteUserSessions { user_id } => {
            tx.delete_user_sessions(user_id).await?;
            Ok(())
        }
        Op::DeleteOtherSessions { user_id, keep } => {
            tx.delete_other_sessions(user_id, keep).await?;
            Ok(())
        }
        Op::DeleteSessionByPublicId { user_id, public_id } => found(tx.delete_session_by_public_id(user_id, public_id).await?, "session"),
        Op::SetLastLogin { user_id, now } => Ok(tx.set_last_login(user_id, *now).await?),
        Op::SetPassword { user_id, hash, now } => Ok(tx.set_password(user_id, hash, *now).await?),
        Op::ReplaceTotp { user_id, secret, key_version } => Ok(tx.replace_totp(user_id, secret, *key_version).await?),
        Op::ReplaceRecoveryCodes { user_id, hashes, now } => Ok(tx.replace_recovery_codes(user_id, hashes, *now).await?),
        Op::UseRecoveryCode { user_id, hash, now } => {
            if tx.use_recovery_code(user_id, hash, *now).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::InvalidCode))
            }
        }
        Op::SetSessionAuthenticated { token_hash, now } => found(tx.set_session_authenticated(token_hash, *now).await?, "session"),
        Op::InsertAllergy(a) => Ok(tx.insert_allergy(a).await?),
        Op::ResealAllergy { row, old_key_version } => {
            tx.reseal_allergy(row, *old_key_version).await?;
            Ok(())
        }
        Op::InsertPasskey(p) => tx.insert_passkey(p).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this authenticator is already registered".into())),
            other => OpFailure::Store(other),
        }),
        Op::RenamePasskey { user_id, id, name } => found(tx.rename_passkey(user_id, id, name).await?, "passkey"),
        Op::DeletePasskeys { user_id, id } => {
            let n = tx.delete_passkeys(user_id, id.as_deref()).await?;
            if id.is_some() {
                found(n == 1, "passkey")
            } else {
                Ok(())
            }
        }
        Op::PasskeyUsed { credential_id, passkey, now } => Ok(tx.passkey_used(credential_id, passkey.as_deref(), *now).await?),
        Op::InsertCeremony(c) => Ok(tx.insert_ceremony(c).await?),
        Op::ReplaceAvailability { practitioner_id, location_id, rows } => {
            Ok(tx.replace_availability(practitioner_id, location_id, rows).await?)
        }
        Op::NoteAppointmentHistory { id, from, to, reason, actor, at } => {
            Ok(tx.note_appointment_history(id, from, to, reason.as_deref(), actor, *at).await?)
        }
        Op::InsertClosure { id, location_id, practitioner_id, kind, start, end, now } => {
            Ok(tx.insert_closure(id, location_id, practitioner_id.as_deref(), kind, *start, *end, *now).await?)
        }
        Op::AppointmentStatus { id, from, to, reason, actor, at } => {
            if tx.change_appointment_status(id, from, to, reason.as_deref(), actor, *at).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict("the appointment changed meanwhile; reload it".into())))
            }
        }
        Op::BookAppointment { row, allow_overlap } => match tx.book_appointment(row, *allow_overlap).await? {
            Booked::Yes => Ok(()),
            Booked::PractitionerBusy => Err(OpFailure::Domain(CoreError::Conflict("the slot is already booked".into()))),
            Booked::RoomBusy => Err(OpFailure::Domain(CoreError::Conflict("the room is already booked at that time".into()))),
        },
        Op::InsertAppointmentType(t) => tx.insert_appointment_type(t).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this organization already has a type with that code".into())),
            other => OpFailure::Store(other),
        }),
        Op::InsertWaitlist(w) => Ok(tx.insert_waitlist(w).await?),
        Op::InsertRecord(r) => Ok(tx.insert_record(r).await?),
        Op::UpdateRecord { row, expected_version, expected_status } => {
            if tx.update_record(row, *expected_version, expected_status).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict("the record changed meanwhile; reload it".into())))
            }
        }
        Op::ResealRecord { id, version, key_version, body } => {
            tx.reseal_record(id, *version, *key_version, body).await?;
            Ok(())
        }
        Op::InsertConsentTemplate(t) => tx.insert_consent_template(t).await.map_err(|e| match e {
            StoreError::Conflict(_) => OpFailure::Domain(CoreError::Conflict("this template version exists already".into())),
            other => OpFailure::Store(other),
        }),
        Op::UpsertIcd10 { codes, release } => Ok(tx.upsert_icd10(codes, release).await?),
        Op::OfferWaitlist { id, span, now } => {
            if tx.offer_waitlist(id, *span, *now).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict("the waitlist changed meanwhile; try again".into())))
            }
        }
        Op::SetWaitlistStatus { id, from, to, appointment_id } => {
            if tx.set_waitlist_status(id, from, to, appointment_id.as_deref()).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::Conflict(format!("the waitlist entry is no longer {from}"))))
            }
        }
        Op::InsertPractitioner { row, roles } => tx.insert_practitioner(row, roles).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                OpFailure::Domain(CoreError::Conflict("this NPI or account is already registered as a practitioner".into()))
            }
            other => OpFailure::Store(other),
        }),
        Op::TakeCeremony { id } => {
            if tx.take_ceremony(id).await? {
                Ok(())
            } else {
                Err(OpFailure::Domain(CoreError::InvalidCode))
            }
        }
    }
}
