//! `carevault audit verify`: recomputes the hash chain, checks the signed head and every
//! signed checkpoint (database and file), and names the first bad record.

use std::collections::BTreeMap;

use carevault_crypto::signing;
use carevault_store::Store;

use super::chain::{checkpoint_message, head_message, record_hash, GENESIS};
use crate::datadir::DataDir;

/// What verification found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub records: i64,
    pub head_seq: i64,
    pub checkpoints_in_database: usize,
    pub checkpoints_in_file: usize,
    /// Every problem found, the first bad record first. Empty when the log is intact.
    pub failures: Vec<VerifyFailure>,
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

struct Checkpoint {
    origin: &'static str,
    seq: i64,
    hash: Vec<u8>,
    at: i64,
    public_key: Vec<u8>,
    signature: Vec<u8>,
}

fn fail(out: &mut Vec<VerifyFailure>, seq: Option<i64>, message: String) {
    out.push(VerifyFailure { seq, message });
}

fn read_file_checkpoints(dd: &DataDir, failures: &mut Vec<VerifyFailure>) -> Vec<Checkpoint> {
    let path = dd.checkpoint_log_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed: Option<Checkpoint> = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| {
            Some(Checkpoint {
                origin: "checkpoint file",
                seq: v.get("seq")?.as_i64()?,
                hash: hex::decode(v.get("hash")?.as_str()?).ok()?,
                at: v.get("at")?.as_i64()?,
                public_key: hex::decode(v.get("public_key")?.as_str()?).ok()?,
                signature: hex::decode(v.get("signature")?.as_str()?).ok()?,
            })
        });
        match parsed {
            Some(c) => out.push(c),
            None => fail(failures, None, format!("{} line {} is not a valid checkpoint", path.display(), i + 1)),
        }
    }
    out
}

/// Verifies the audit log of `store`, using the public key pinned in the data folder.
pub async fn verify(store: &Store, dd: &DataDir) -> Result<VerifyReport, crate::CoreError> {
    let mut failures = Vec::new();
    let db_key = store.keys(crate::keys::SIGNING).await?.into_iter().next().and_then(|k| k.public_key);
    let pinned = std::fs::read_to_string(dd.signing_public_key_path()).ok().and_then(|t| hex::decode(t.trim()).ok());
    let public_key = match (pinned, db_key) {
        (Some(p), Some(d)) => {
            if p != d {
                fail(
                    &mut failures,
                    None,
                    "the signing public key in the database differs from the key pinned in the data folder (keys/audit-signing.pub)".into(),
                );
            }
            p
        }
        (Some(p), None) => p,
        (None, Some(d)) => d,
        (None, None) => {
            fail(&mut failures, None, "no audit signing public key found (keys/audit-signing.pub)".into());
            Vec::new()
        }
    };

    let mut checkpoints: Vec<Checkpoint> = store
        .audit_checkpoints()
        .await?
        .into_iter()
        .map(|c| Checkpoint {
            origin: "database checkpoint",
            seq: c.seq,
            hash: c.hash,
            at: c.at,
            public_key: c.public_key,
            signature: c.signature,
        })
        .collect();
    let in_db = checkpoints.len();
    let from_file = read_file_checkpoints(dd, &mut failures);
    let in_file = from_file.len();
    checkpoints.extend(from_file);
    let mut wanted: BTreeMap<i64, Option<Vec<u8>>> = checkpoints.iter().map(|c| (c.seq, None)).collect();

    // Walk the chain.
    let mut expected = 1i64;
    let mut prev = GENESIS.to_vec();
    let mut chain_broken = false;
    loop {
        let page = store.audit_events(expected - 1, 5000).await?;
        if page.is_empty() {
            break;
        }
        for row in &page {
            if row.seq != expected {
                fail(
                    &mut failures,
                    Some(expected),
                    format!("record {expected} is missing: the log jumps from {} to {} (records deleted)", expected - 1, row.seq),
                );
                chain_broken = true;
                break;
            }
            if row.prev_hash != prev {
                fail(&mut failures, Some(row.seq), format!(
                    "record {} does not follow record {}: its link to the previous record is wrong (a record was altered, removed or reordered)",
                    row.seq,
                    row.seq - 1
                ));
                chain_broken = true;
                break;
            }
            if record_hash(&prev, row).as_slice() != row.hash.as_slice() {
                fail(&mut failures, Some(row.seq), format!("record {} was altered: its content does not match its hash", row.seq));
                chain_broken = true;
                break;
            }
            if let Some(slot) = wanted.get_mut(&row.seq) {
                *slot = Some(row.hash.clone());
            }
            prev = row.hash.clone();
            expected += 1;
        }
        if chain_broken {
            break;
        }
    }
    let last = expected - 1;

    // The signed head: catches truncation of the tail and records appended outside carevault.
    let head = store.audit_head().await?;
    let head_seq = head.as_ref().map_or(0, |h| h.seq);
    if let Some(h) = &head {
        if !chain_broken {
            if h.seq > last {
                fail(
                    &mut failures,
                    Some(last + 1),
                    format!(
                        "records {}..{} are missing: the log ends at {last} but its signed head is at {} (tail truncated)",
                        last + 1,
                        h.seq,
                        h.seq
                    ),
                );
            } else if h.seq < last {
                fail(
                    &mut failures,
                    Some(h.seq + 1),
                    format!("records {}..{last} are not covered by the signed head (added outside carevault)", h.seq + 1),
                );
            } else if h.hash != prev {
                fail(&mut failures, Some(last), format!("record {last} does not match the signed head"));
            }
        }
        if h.seq > 0 {
            let ok = h.signature.as_ref().is_some_and(|s| signing::verify(&public_key, &head_message(h.seq, &h.hash), s));
            if !ok {
                fail(&mut failures, None, "the signature of the audit head is invalid (head replaced or forged)".into());
            }
        }
    }

    // Checkpoints, in the database and in the file outside it.
    for c in &checkpoints {
        if c.public_key != public_key || !signing::verify(&public_key, &checkpoint_message(c.seq, &c.hash, c.at), &c.signature) {
            fail(&mut failures, None, format!("{} at record {}: invalid signature", c.origin, c.seq));
            continue;
        }
        match wanted.get(&c.seq) {
            Some(Some(h)) if *h == c.hash => {}
            Some(Some(_)) => fail(&mut failures, Some(c.seq), format!("record {} differs from the {} signed for it", c.seq, c.origin)),
            _ if chain_broken => {}
            _ => fail(
                &mut failures,
                Some(last + 1),
                format!("the {} covers record {} but the log ends at {last} (tail truncated)", c.origin, c.seq),
            ),
        }
    }

    failures.sort_by_key(|f| (f.seq.is_none(), f.seq.unwrap_or(0)));
    failures.dedup();
    Ok(VerifyReport { records: last, head_seq, checkpoints_in_database: in_db, checkpoints_in_file: in_file, failures })
}
