//! `carevault audit verify`: recomputes the hash chain and the Merkle tree, checks the signed
//! head, every signed checkpoint and tree head (database and file, which must agree), the stored
//! tree blocks, any tree heads kept elsewhere (witnesses), and the disclosure index
//! (`audit_disclosures`) against the patients the records disclose; names the first bad record.
//!
//! It trusts only what it checks: the public key comes from the pin in the data folder (a
//! missing pin, or a database key that differs, fails); a missing head row, an empty log, a
//! missing or shortened checkpoint file and a checkpoint only one side holds each fail. The
//! report lists what was checked, and says what it could not check (a rollback of the whole
//! folder to an older genuine copy is visible only against a witness).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use carevault_crypto::signing;
use std::ops::{ControlFlow, Range};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use carevault_store::{AuditRowRef, AuditVisitor, CheckpointRow, Store};

use super::chain::{chain_hash, checkpoint_message, encode_into, head_message, GENESIS};
use super::files::{checkpoint_line, lock_shared, parse_checkpoint_line, read_lines, witness_file, FileCheckpoint};
use super::merkle::{leaf_hash, Frontier, Hash, BLOCK};
use super::tree::TreeHead;
use crate::datadir::DataDir;

/// Tree heads kept outside the machine to check the log against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Heads an auditor kept (`--witness HEAD.json`), each with where it came from.
    pub witness_heads: Vec<(String, TreeHead)>,
    /// A witness folder written by `[audit] witness_dir` (`--witness-dir`).
    pub witness_dir: Option<PathBuf>,
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub records: i64,
    pub head_seq: i64,
    pub checkpoints_in_database: usize,
    pub checkpoints_in_file: usize,
    /// Signed tree heads checked against the recomputed tree (database, file).
    pub tree_heads: usize,
    /// Stored roots of complete blocks checked against the recomputed tree.
    pub tree_blocks: usize,
    /// Heads kept outside the machine that the log was checked against.
    pub witness_heads: usize,
    /// The Merkle root over all records.
    pub root_hash: String,
    /// Every problem found, the first bad record first. Empty when the log is intact.
    pub failures: Vec<VerifyFailure>,
    /// What the check could not cover, and harmless findings (an interrupted write).
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.failures.is_empty()
    }
    pub fn first_failure(&self) -> Option<&VerifyFailure> {
        self.failures.first()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The first bad record, when the problem is tied to one.
    pub seq: Option<i64>,
    pub message: String,
}

struct Failures(Vec<VerifyFailure>);

impl Failures {
    fn add(&mut self, seq: Option<i64>, message: impl Into<String>) {
        self.0.push(VerifyFailure { seq, message: message.into() });
    }
}

/// A signature to check: public key, message, signature.
type Signed = (Vec<u8>, Vec<u8>, Vec<u8>);

fn head_signed(h: &TreeHead) -> Signed {
    (h.public_key.to_vec(), super::tree::tree_head_message(h.tree_size, &h.root_hash, h.timestamp), h.signature.to_vec())
}

/// A signed tree head to hold against the recomputed tree, and where it came from.
struct HeadToCheck {
    origin: String,
    head: TreeHead,
    witness: bool,
}

/// The public key to check signatures with: the pin, compared with the database's key.
async fn public_key(store: &Store, dd: &DataDir, f: &mut Failures) -> Result<Vec<u8>, crate::CoreError> {
    let db_key = store.keys(crate::keys::SIGNING).await?.into_iter().next().and_then(|k| k.public_key);
    let pin_path = dd.signing_public_key_path();
    let pinned = match std::fs::read_to_string(&pin_path) {
        Ok(t) => match hex::decode(t.trim()) {
            Ok(k) if k.len() == 32 => Some(k),
            _ => {
                f.add(None, format!("the public-key pin {} is damaged (not a 32-byte hex key)", pin_path.display()));
                None
            }
        },
        Err(_) => {
            f.add(
                None,
                format!(
                    "the public-key pin {} is missing: the key in the database cannot be trusted (restore the pin from a backup)",
                    pin_path.display()
                ),
            );
            None
        }
    };
    match (pinned, db_key) {
        (Some(p), Some(d)) => {
            if p != d {
                f.add(
                    None,
                    "the signing public key in the database differs from the key pinned in the data folder (keys/audit-signing.pub): the database's key was replaced",
                );
            }
            Ok(p)
        }
        (Some(p), None) => {
            f.add(None, "the database holds no audit signing key although the data folder pins one");
            Ok(p)
        }
        // Without a pin, signatures are still checked against the database's key, so the
        // report also says whether the log is at least consistent with it.
        (None, Some(d)) => Ok(d),
        (None, None) => {
            f.add(None, "no audit signing public key found (neither keys/audit-signing.pub nor in the database)");
            Ok(Vec::new())
        }
    }
}

/// The checkpoint file's lines, and the cross-check with the database's checkpoints.
fn check_file(
    dd: &DataDir,
    rows: &[CheckpointRow],
    lines: std::io::Result<Option<super::files::Lines>>,
    f: &mut Failures,
    notes: &mut Vec<String>,
) -> Vec<FileCheckpoint> {
    let path = dd.checkpoint_log_path();
    let lines = match lines {
        Ok(Some(l)) => l,
        Ok(None) => {
            if !rows.is_empty() {
                f.add(
                    None,
                    format!("{} is missing although the database holds {} checkpoints (the file was deleted)", path.display(), rows.len()),
                );
            } else {
                notes.push(format!("{} does not exist yet (no checkpoint was written)", path.display()));
            }
            return Vec::new();
        }
        Err(e) => {
            f.add(None, format!("{} could not be read: {e}", path.display()));
            return Vec::new();
        }
    };
    let mut parsed = Vec::new();
    for (n, line) in &lines.complete {
        match parse_checkpoint_line(line) {
            Some(c) => parsed.push(c),
            None => f.add(None, format!("{} line {n} is not a valid checkpoint", path.display())),
        }
    }
    let in_file: BTreeMap<i64, &FileCheckpoint> = parsed.iter().map(|c| (c.seq, c)).collect();
    let in_db: BTreeMap<i64, &CheckpointRow> = rows.iter().map(|c| (c.seq, c)).collect();
    // The one checkpoint a crash can leave only half-written: the next one the database holds,
    // whose line the torn tail begins.
    let last_in_file = parsed.iter().map(|c| c.seq).max().unwrap_or(-1);
    let mut torn_explained = None;
    if let Some(torn) = &lines.torn {
        let next = rows.iter().find(|r| r.seq > last_in_file);
        match next {
            Some(r) if checkpoint_line(r).starts_with(torn.as_str()) => {
                torn_explained = Some(r.seq);
                notes.push(format!(
                    "{} ends with an incomplete line: the write of the checkpoint at record {} was interrupted (the database holds it; carevault repairs the file at its next start)",
                    path.display(),
                    r.seq
                ));
            }
            _ => f.add(None, format!("{} ends with an incomplete line that matches no checkpoint of the database", path.display())),
        }
    }
    let missing: Vec<i64> = in_db.keys().filter(|s| !in_file.contains_key(s) && Some(**s) != torn_explained).copied().collect();
    if let Some(first) = missing.first() {
        f.add(
            None,
            format!(
                "the checkpoint file lacks {} checkpoint(s) the database holds (first at record {first}): the file was shortened or edited",
                missing.len()
            ),
        );
    }
    for (seq, c) in &in_file {
        match in_db.get(seq) {
            None => f.add(
                None,
                format!("the checkpoint file holds a checkpoint at record {seq} that the database lacks: checkpoints were deleted from the database"),
            ),
            Some(d) if d.hash != c.hash || d.signature != c.signature || d.at != c.at => {
                f.add(None, format!("the checkpoint at record {seq} differs between the database and the checkpoint file"))
            }
            Some(_) => {}
        }
    }
    parsed
}

/// Heads from `--witness` files and the witness folder.
async fn witness_heads(store: &Store, options: &VerifyOptions, f: &mut Failures, notes: &mut Vec<String>) -> Vec<HeadToCheck> {
    let mut out: Vec<HeadToCheck> = options
        .witness_heads
        .iter()
        .map(|(origin, head)| HeadToCheck { origin: origin.clone(), head: head.clone(), witness: true })
        .collect();
    if let Some(dir) = &options.witness_dir {
        let store_id = store.meta("store_id").await.ok().flatten().unwrap_or_default();
        let path = witness_file(dir, &store_id);
        match read_lines(&path) {
            Ok(Some(lines)) => {
                if lines.torn.is_some() {
                    notes.push(format!("{} ends with an incomplete line (an interrupted write); it was skipped", path.display()));
                }
                if lines.complete.is_empty() {
                    f.add(None, format!("the witness file {} holds no tree head", path.display()));
                }
                for (n, line) in lines.complete {
                    match serde_json::from_str::<serde_json::Value>(&line).map_err(|e| e.to_string()).and_then(|v| TreeHead::from_json(&v)) {
                        Ok(head) => out.push(HeadToCheck { origin: format!("{} line {n}", path.display()), head, witness: true }),
                        Err(e) => f.add(None, format!("{} line {n} is not a tree head: {e}", path.display())),
                    }
                }
            }
            Ok(None) => f.add(
                None,
                format!(
                    "the witness folder {} holds no tree heads of this installation (expected {}): the database may have been replaced, or the witness was never written",
                    dir.display(),
                    path.display()
                ),
            ),
            Err(e) => f.add(None, format!("{} could not be read: {e}", path.display())),
        }
    }
    out
}

/// Verifies the audit log of `store`, using the public key pinned in the data folder.
pub async fn verify(store: &Store, dd: &DataDir, options: &VerifyOptions) -> Result<VerifyReport, crate::CoreError> {
    let mut f = Failures(Vec::new());
    let mut notes = Vec::new();
    let key = public_key(store, dd, &mut f).await?;

    // One snapshot of the database for everything below; the file is read under the shared
    // lock while the snapshot is fixed, so neither is ahead of the other.
    let lock = lock_shared(&dd.audit_dir()).await;
    let mut snap = store.audit_snapshot().await?;
    let head = snap.head().await?;
    let lines = read_lines(&dd.checkpoint_log_path());
    drop(lock);
    if head.is_none() {
        f.add(None, "the signed head of the audit log (table audit_head) is missing: it was deleted");
    }
    let db_checkpoints = snap.checkpoints().await?;
    let file_checkpoints = check_file(dd, &db_checkpoints, lines, &mut f, &mut notes);

    // Every tree head to hold against the recomputed tree.
    let mut heads: Vec<HeadToCheck> = Vec::new();
    for c in &db_checkpoints {
        if let Some(h) = TreeHead::from_checkpoint(c) {
            heads.push(HeadToCheck { origin: "database tree head".into(), head: h, witness: false });
        }
    }
    for c in &file_checkpoints {
        if let Some(h) = &c.tree_head {
            heads.push(HeadToCheck { origin: "checkpoint file tree head".into(), head: h.clone(), witness: false });
        }
    }
    heads.extend(witness_heads(store, options, &mut f, &mut notes).await);
    let wanted_roots: BTreeSet<u64> = heads.iter().map(|h| h.head.tree_size).collect();
    let wanted_chain: BTreeSet<i64> = db_checkpoints.iter().map(|c| c.seq).chain(file_checkpoints.iter().map(|c| c.seq)).collect();

    // The disclosure index, summed up to compare with what the records disclose.
    let index = snap.scan_disclosures(Disclosures::default(), Disclosures::add).await?;

    // The stored block roots, checked as the walk completes each block.
    let stored_blocks: BTreeMap<i64, Vec<u8>> = snap.tree_blocks().await?.into_iter().collect();

    // Signatures are checked on another thread while the records are walked; a checkpoint the
    // database and the file both hold is checked once.
    let mut signed: BTreeSet<Signed> = BTreeSet::new();
    for (seq, hash, at, sig) in db_checkpoints
        .iter()
        .map(|c| (c.seq, &c.hash, c.at, &c.signature))
        .chain(file_checkpoints.iter().map(|c| (c.seq, &c.hash, c.at, &c.signature)))
    {
        signed.insert((key.clone(), checkpoint_message(seq, hash, at), sig.clone()));
    }
    for h in &heads {
        signed.insert(head_signed(&h.head));
    }
    let signatures =
        tokio::task::spawn_blocking(move || signed.into_iter().filter(|(k, m, s)| signing::verify(k, m, s)).collect::<BTreeSet<Signed>>());

    // Walk the chain and build the tree: one thread steps through the records and encodes
    // them, another hashes (chain, leaves, tree) and checks.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    let stop = Arc::new(AtomicBool::new(false));
    let hasher = {
        let stop = stop.clone();
        let mut walk = Walk::new(wanted_roots, wanted_chain, stored_blocks);
        tokio::task::spawn_blocking(move || {
            'batches: for batch in rx {
                for r in &batch.rows {
                    let row = (r.seq, &batch.bytes[r.prev.clone()], &batch.bytes[r.hash.clone()], &batch.bytes[r.canon.clone()]);
                    if walk.row(row.0, row.1, row.2, row.3).is_break() {
                        stop.store(true, Ordering::Relaxed);
                        break 'batches;
                    }
                }
            }
            walk.finish()
        })
    };
    // The feeder is dropped when the scan ends (or fails): its last batch goes out, and the
    // channel closes.
    let scanned = snap
        .scan_events(Feeder { tx, batch: Batch::default(), stop, disclosed: Disclosures::default() })
        .await
        .map(|mut feeder| std::mem::take(&mut feeder.disclosed));
    let walk = hasher.await.map_err(|e| crate::CoreError::Internal(format!("audit hashing: {e}")))?;
    let disclosed = scanned?;
    let valid = signatures.await.map_err(|e| crate::CoreError::Internal(format!("signature checks: {e}")))?;
    for x in &walk.failures {
        f.add(x.seq, x.message.clone());
    }
    let last = walk.last;
    if last == 0 && !walk.broken {
        f.add(
            None,
            "the audit log is empty: an initialized data folder always holds at least its installation record (records were wiped)",
        );
    }

    // The disclosure index holds exactly the patients the records (hashed) disclose.
    if !walk.broken && index != disclosed {
        let what = if index.rows < disclosed.rows {
            "rows were deleted"
        } else if index.rows > disclosed.rows {
            "rows were added"
        } else {
            "rows were altered"
        };
        f.add(
            None,
            format!(
                "the disclosure index (table audit_disclosures) does not match the records: it holds {} row(s), the records disclose {} patient(s) ({what}; the audit viewer's patient filter relies on it)",
                index.rows, disclosed.rows
            ),
        );
    }

    // The signed chain head: catches truncation of the tail and records appended outside carevault.
    let head_seq = head.as_ref().map_or(0, |h| h.seq);
    if let Some(h) = &head {
        if !walk.broken {
            if h.seq > last {
                f.add(
                    Some(last + 1),
                    format!(
                        "records {}..{} are missing: the log ends at {last} but its signed head is at {} (tail truncated)",
                        last + 1,
                        h.seq,
                        h.seq
                    ),
                );
            } else if h.seq < last {
                f.add(
                    Some(h.seq + 1),
                    format!("records {}..{last} are not covered by the signed head (added outside carevault)", h.seq + 1),
                );
            } else if h.hash != walk.prev.as_slice() {
                f.add(Some(last), format!("record {last} does not match the signed head"));
            } else if let Some(fr) = h.tree_frontier.as_deref() {
                if Frontier::decode(fr).map(|x| x.root()) != Some(walk.frontier.root()) {
                    f.add(None, "the Merkle tree state kept with the head does not match the records (it was altered)");
                }
            }
        }
        if h.seq > 0 && !h.signature.as_ref().is_some_and(|s| signing::verify(&key, &head_message(h.seq, &h.hash), s)) {
            f.add(None, "the signature of the audit head is invalid (head replaced or forged)");
        }
    }

    // Checkpoints (chain hash signatures), in the database and in the file.
    let checkpoints = db_checkpoints
        .iter()
        .map(|c| ("database checkpoint", c.seq, &c.hash, c.at, &c.public_key, &c.signature))
        .chain(file_checkpoints.iter().map(|c| ("checkpoint file", c.seq, &c.hash, c.at, &c.public_key, &c.signature)));
    for (origin, seq, hash, at, pk, sig) in checkpoints {
        if *pk != key || !valid.contains(&(key.clone(), checkpoint_message(seq, hash, at), sig.clone())) {
            f.add(None, format!("{origin} at record {seq}: invalid signature"));
            continue;
        }
        match walk.chain_at.get(&seq) {
            Some(h) if h == hash => {}
            Some(_) => f.add(Some(seq), format!("record {seq} differs from the {origin} signed for it")),
            None if walk.broken => {}
            None => f.add(Some(last + 1), format!("the {origin} covers record {seq} but the log ends at {last} (tail truncated)")),
        }
    }

    // Tree heads: signed by the pinned key, and the recomputed tree has the same root at that size.
    let mut tree_heads = 0;
    let mut witnesses = 0;
    for h in &heads {
        let size = h.head.tree_size;
        let signed_ok = valid.contains(&head_signed(&h.head));
        if !signed_ok {
            f.add(None, format!("{} at size {size}: invalid signature (the head was altered)", h.origin));
            continue;
        }
        if h.head.public_key.as_slice() != key.as_slice() {
            f.add(
                None,
                format!(
                    "{} at size {size} was signed by key {} but this log's key is {}: the signing key was substituted",
                    h.origin,
                    hex::encode(h.head.public_key),
                    hex::encode(&key)
                ),
            );
            continue;
        }
        let last_u = u64::try_from(last).unwrap_or(0);
        match walk.roots.get(&size) {
            Some(root) if *root == h.head.root_hash => {}
            Some(_) => f.add(
                None,
                format!(
                    "{} at size {size} does not match the log: the first {size} records were rewritten since that head was signed",
                    h.origin
                ),
            ),
            None if walk.broken => {}
            None if size > last_u => f.add(
                Some(last + 1),
                format!(
                    "{} covers {size} records but the log holds {last}: records were removed (the log was rolled back, truncated or wiped)",
                    h.origin
                ),
            ),
            None => {}
        }
        if h.witness {
            witnesses += 1;
        } else {
            tree_heads += 1;
        }
    }
    if options.witness_heads.is_empty() && options.witness_dir.is_none() {
        notes.push(
            "no outside witness was given: a rollback of the whole data folder to an older genuine copy, or a log re-signed with a substituted key and pin, can only be detected against a tree head kept elsewhere (--witness, --witness-dir)"
                .into(),
        );
    }

    let mut failures = f.0;
    failures.sort_by_key(|x| (x.seq.is_none(), x.seq.unwrap_or(0)));
    failures.dedup();
    Ok(VerifyReport {
        records: last,
        head_seq,
        checkpoints_in_database: db_checkpoints.len(),
        checkpoints_in_file: file_checkpoints.len(),
        tree_heads,
        tree_blocks: walk.blocks_checked,
        witness_heads: witnesses,
        root_hash: hex::encode(walk.frontier.root()),
        failures,
        notes,
    })
}

/// Walks the records in order: recomputes the chain and the tree, checks the stored block
/// roots, and keeps the roots and chain hashes asked for.
struct Walk {
    wanted_roots: BTreeSet<u64>,
    wanted_chain: BTreeSet<i64>,
    stored_blocks: BTreeMap<i64, Vec<u8>>,
    /// The last record of the unbroken chain.
    last: i64,
    prev: [u8; 32],
    broken: bool,
    frontier: Frontier,
    /// Merkle roots at the sizes asked for.
    roots: BTreeMap<u64, Hash>,
    /// Chain hashes at the sequence numbers asked for.
    chain_at: BTreeMap<i64, Vec<u8>>,
    blocks_checked: usize,
    failures: Vec<VerifyFailure>,
}

impl Walk {
    fn new(wanted_roots: BTreeSet<u64>, wanted_chain: BTreeSet<i64>, stored_blocks: BTreeMap<i64, Vec<u8>>) -> Walk {
        let mut w = Walk {
            wanted_roots,
            wanted_chain,
            stored_blocks,
            last: 0,
            prev: GENESIS,
            broken: false,
            frontier: Frontier::default(),
            roots: BTreeMap::new(),
            chain_at: BTreeMap::new(),
            blocks_checked: 0,
            failures: Vec::new(),
        };
        if w.wanted_roots.contains(&0) {
            w.roots.insert(0, w.frontier.root());
        }
        w
    }

    fn fail(&mut self, seq: Option<i64>, message: String) {
        self.failures.push(VerifyFailure { seq, message });
    }

    /// Stored blocks beyond the records walked.
    fn finish(mut self) -> Walk {
        let complete = self.frontier.size() / BLOCK;
        let beyond = self.stored_blocks.keys().filter(|i| u64::try_from(**i).map_or(true, |i| i >= complete)).count();
        if beyond > 0 && !self.broken {
            self.fail(None, format!("{beyond} stored Merkle block root(s) cover records beyond the end of the log (tail truncated)"));
        }
        self
    }
}

impl Walk {
    /// One record: its sequence number, the stored link and hash, its canonical encoding.
    fn row(&mut self, seq: i64, prev_hash: &[u8], hash: &[u8], canonical: &[u8]) -> ControlFlow<()> {
        let expected = self.last + 1;
        if seq != expected {
            self.fail(
                Some(expected),
                format!("record {expected} is missing: the log jumps from {} to {seq} (records deleted)", expected - 1),
            );
            self.broken = true;
            return ControlFlow::Break(());
        }
        if prev_hash != self.prev {
            self.fail(
                Some(seq),
                format!(
                    "record {seq} does not follow record {}: its link to the previous record is wrong (a record was altered, removed or reordered)",
                    seq - 1
                ),
            );
            self.broken = true;
            return ControlFlow::Break(());
        }
        let chained = chain_hash(&self.prev, canonical);
        if chained.as_slice() != hash {
            self.fail(Some(seq), format!("record {seq} was altered: its content does not match its hash"));
            self.broken = true;
            return ControlFlow::Break(());
        }
        if let Some((idx, block)) = self.frontier.push(leaf_hash(canonical)) {
            let idx = i64::try_from(idx).unwrap_or(i64::MAX);
            let first = idx * BLOCK as i64 + 1;
            match self.stored_blocks.get(&idx) {
                Some(stored) if stored.as_slice() == block.as_slice() => self.blocks_checked += 1,
                Some(_) => self.fail(
                    None,
                    format!(
                        "the stored Merkle root of records {first}..{} does not match them (proofs would be wrong)",
                        first + BLOCK as i64 - 1
                    ),
                ),
                None => self.fail(None, format!("the stored Merkle root of records {first}..{} is missing", first + BLOCK as i64 - 1)),
            }
        }
        if self.wanted_roots.contains(&self.frontier.size()) {
            self.roots.insert(self.frontier.size(), self.frontier.root());
        }
        if self.wanted_chain.contains(&seq) {
            self.chain_at.insert(seq, chained.to_vec());
        }
        self.prev = chained;
        self.last = seq;
        ControlFlow::Continue(())
    }
}

/// An order-independent summary of a set of (record, patient id) pairs: how many, and the
/// wrapping sum of a SHA-256 of each. The records' `disclosed` columns and the index
/// `audit_disclosures` must give the same summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Disclosures {
    rows: u64,
    sum: u128,
}

impl Disclosures {
    fn add(&mut self, seq: i64, patient_id: &[u8]) {
        let h = carevault_crypto::sha256(&[&seq.to_be_bytes(), patient_id]);
        let mut first = [0u8; 16];
        first.copy_from_slice(&h[..16]);
        self.rows += 1;
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
    }

    /// The patient ids of one record's `disclosed` column (space-separated).
    fn add_record(&mut self, seq: i64, disclosed: &[u8]) {
        for id in disclosed.split(|b| *b == b' ').filter(|s| !s.is_empty()) {
            self.add(seq, id);
        }
    }
}

/// Records handed from the scanning thread to the hashing one: their bytes back to back.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    rows: Vec<BatchRow>,
}

struct BatchRow {
    seq: i64,
    prev: Range<usize>,
    hash: Range<usize>,
    canon: Range<usize>,
}

const BATCH_ROWS: usize = 512;

/// The scanning side: encodes each record into the batch and sends full batches.
struct Feeder {
    tx: std::sync::mpsc::SyncSender<Batch>,
    batch: Batch,
    stop: Arc<AtomicBool>,
    /// What the records' `disclosed` columns name, for the check of the index.
    disclosed: Disclosures,
}

impl AuditVisitor for Feeder {
    fn visit(&mut self, r: AuditRowRef<'_>) -> ControlFlow<()> {
        if self.stop.load(Ordering::Relaxed) {
            return ControlFlow::Break(());
        }
        let b = &mut self.batch;
        let start = b.bytes.len();
        b.bytes.extend_from_slice(r.prev_hash);
        let prev = start..b.bytes.len();
        b.bytes.extend_from_slice(r.hash);
        let hash = prev.end..b.bytes.len();
        encode_into(&mut b.bytes, r);
        let canon = hash.end..b.bytes.len();
        if let Some(ids) = r.disclosed {
            self.disclosed.add_record(r.seq, ids);
        }
        b.rows.push(BatchRow { seq: r.seq, prev, hash, canon });
        if b.rows.len() >= BATCH_ROWS {
            let full = std::mem::replace(b, Batch { bytes: Vec::with_capacity(b.bytes.capacity()), rows: Vec::with_capacity(BATCH_ROWS) });
            if self.tx.send(full).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

impl Drop for Feeder {
    /// The last, partial batch; dropping the sender then ends the hashing thread's loop.
    fn drop(&mut self) {
        if !self.batch.rows.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut self.batch));
        }
    }
}
