//! Signed tree heads and RFC 9162 proofs over the audit log, in the JSON shapes an auditor's
//! own tool reads: a head is `{"tree_size", "root_hash", "timestamp", "signature",
//! "public_key"}`, an inclusion proof `{"leaf_index", "tree_size", "leaf_hash", "root_hash",
//! "audit_path"}`, a consistency proof `{"first_size", "second_size", "first_root",
//! "second_root", "proof"}`; hashes, keys and signatures in lowercase hex, the timestamp in
//! milliseconds since the Unix epoch.

use std::collections::BTreeMap;

use carevault_store::{CheckpointRow, Store};
use serde_json::{json, Value};

use super::chain::canonical;
use super::merkle::{leaf_hash, Hash, TreeView, BLOCK};
use crate::error::CoreError;

/// The message an Ed25519 tree-head signature covers: a domain tag, then tree size,
/// root hash and timestamp (milliseconds), integers as 8 bytes big-endian.
pub(crate) fn tree_head_message(tree_size: u64, root: &[u8], timestamp_ms: u64) -> Vec<u8> {
    let mut m = b"carevault-tree-head-v1".to_vec();
    m.extend_from_slice(&tree_size.to_be_bytes());
    m.extend_from_slice(root);
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m
}

/// A signed tree head: what an auditor keeps off the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub signature: [u8; 64],
    pub public_key: [u8; 32],
}

fn hex_field<const N: usize>(v: &Value, name: &str) -> Result<[u8; N], String> {
    let s = v.get(name).and_then(Value::as_str).ok_or_else(|| format!("\"{name}\" is missing or not a string"))?;
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| format!("\"{name}\" is not {N} bytes of hexadecimal"))?;
    Ok(out)
}

fn u64_field(v: &Value, name: &str) -> Result<u64, String> {
    v.get(name).and_then(Value::as_u64).ok_or_else(|| format!("\"{name}\" is missing or not a non-negative integer"))
}

impl TreeHead {
    pub fn to_json(&self) -> Value {
        json!({
            "tree_size": self.tree_size,
            "root_hash": hex::encode(self.root_hash),
            "timestamp": self.timestamp,
            "signature": hex::encode(self.signature),
            "public_key": hex::encode(self.public_key),
        })
    }

    /// Parses a head; the message says which field is wrong.
    pub fn from_json(v: &Value) -> Result<TreeHead, String> {
        Ok(TreeHead {
            tree_size: u64_field(v, "tree_size")?,
            root_hash: hex_field(v, "root_hash")?,
            timestamp: u64_field(v, "timestamp")?,
            signature: hex_field(v, "signature")?,
            public_key: hex_field(v, "public_key")?,
        })
    }

    /// Whether the signature is the head's own key's signature over its fields.
    pub fn signature_valid(&self) -> bool {
        carevault_crypto::signing::verify(
            &self.public_key,
            &tree_head_message(self.tree_size, &self.root_hash, self.timestamp),
            &self.signature,
        )
    }

    /// The head carried by a checkpoint row (schema 12 on).
    pub(crate) fn from_checkpoint(c: &CheckpointRow) -> Option<TreeHead> {
        Some(TreeHead {
            tree_size: u64::try_from(c.seq).ok()?,
            root_hash: c.root_hash.as_deref()?.try_into().ok()?,
            timestamp: u64::try_from(c.at / 1000).ok()?,
            signature: c.tree_signature.as_deref()?.try_into().ok()?,
            public_key: c.public_key.as_slice().try_into().ok()?,
        })
    }
}

/// An RFC 9162 inclusion proof of one audit record.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub root_hash: Hash,
    pub audit_path: Vec<Hash>,
}

impl InclusionProof {
    pub fn to_json(&self) -> Value {
        json!({
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": hex::encode(self.leaf_hash),
            "root_hash": hex::encode(self.root_hash),
            "audit_path": self.audit_path.iter().map(hex::encode).collect::<Vec<_>>(),
        })
    }
}

/// An RFC 9162 consistency proof between two sizes of the audit log.
#[derive(Debug, Clone)]
pub struct ConsistencyProof {
    pub first_size: u64,
    pub second_size: u64,
    pub first_root: Hash,
    pub second_root: Hash,
    pub proof: Vec<Hash>,
}

impl ConsistencyProof {
    pub fn to_json(&self) -> Value {
        json!({
            "first_size": self.first_size,
            "second_size": self.second_size,
            "first_root": hex::encode(self.first_root),
            "second_root": hex::encode(self.second_root),
            "proof": self.proof.iter().map(hex::encode).collect::<Vec<_>>(),
        })
    }
}

fn invalid(msg: String) -> CoreError {
    CoreError::Invalid(carevault_domain::InputError::value("audit proof", &msg))
}

/// The tree size proofs default to: that of the newest signed tree head.
async fn default_size(store: &Store) -> Result<u64, CoreError> {
    match store.latest_tree_head().await? {
        Some(c) => Ok(u64::try_from(c.seq).unwrap_or(0)),
        None => Err(invalid("the log has no signed tree head yet: run `carevault audit head` first".into())),
    }
}

/// Number of records in the log (its chain head).
async fn log_size(store: &Store) -> Result<u64, CoreError> {
    let head = store.audit_head().await?.ok_or_else(|| invalid("the audit chain head is missing (run `carevault audit verify`)".into()))?;
    Ok(u64::try_from(head.seq).unwrap_or(0))
}

/// A view of the tree at `size`, with the leaves of every block the proofs need loaded from the
/// log. `compute` runs the proof computation; it is run once to learn what it needs.
async fn with_view<T>(store: &Store, size: u64, mut compute: impl FnMut(&mut TreeView) -> T) -> Result<T, CoreError> {
    let complete = i64::try_from(size / BLOCK).unwrap_or(i64::MAX);
    let mut blocks = BTreeMap::new();
    for (idx, hash) in store.audit_tree_blocks(complete).await? {
        if let (Ok(i), Ok(h)) = (u64::try_from(idx), <[u8; 32]>::try_from(hash.as_slice())) {
            blocks.insert(i, h);
        }
    }
    let mut view = TreeView::new(size, blocks);
    compute(&mut view);
    let needed: Vec<u64> = view.missing().iter().copied().collect();
    for b in needed {
        let first = b * BLOCK;
        let last = ((b + 1) * BLOCK).min(size);
        let rows = store.audit_events(i64::try_from(first).unwrap_or(i64::MAX), i64::try_from(last - first).unwrap_or(i64::MAX)).await?;
        if rows.len() as u64 != last - first || rows.iter().enumerate().any(|(i, r)| r.seq != (first + i as u64 + 1) as i64) {
            return Err(CoreError::Refused {
                reason: "audit-log-damaged",
                message: format!("records {}..{} are not all in the log: run `carevault audit verify`", first + 1, last),
            });
        }
        view.add_leaves(b, rows.iter().map(|r| leaf_hash(&canonical(r.as_ref()))).collect());
    }
    let out = compute(&mut view);
    if !view.missing().is_empty() {
        return Err(CoreError::Internal("audit proof: leaves missing after loading".into()));
    }
    Ok(out)
}

/// The inclusion proof of record `seq` (1-based) in the tree of `tree_size` records (default:
/// the newest signed tree head).
pub async fn prove_inclusion(store: &Store, seq: i64, tree_size: Option<u64>) -> Result<InclusionProof, CoreError> {
    let size = match tree_size {
        Some(s) => s,
        None => default_size(store).await?,
    };
    let have = log_size(store).await?;
    if size == 0 || size > have {
        return Err(invalid(format!("tree size {size} is out of range: the log holds 1..{have} records")));
    }
    if seq < 1 {
        return Err(invalid(format!("record {seq} does not exist: records are numbered from 1")));
    }
    let index = u64::try_from(seq).ok().filter(|s| (1..=size).contains(s)).map(|s| s - 1).ok_or_else(|| {
        invalid(if tree_size.is_none() {
            format!(
                "record {seq} is not in the newest signed tree head (size {size}): run `carevault audit head` first, or give --tree-size"
            )
        } else {
            format!("record {seq} is not in a tree of {size} records (records are numbered from 1)")
        })
    })?;
    let (path, root) = with_view(store, size, |v| (v.inclusion(index), v.root())).await?;
    let row = store.audit_events(seq - 1, 1).await?.into_iter().next().ok_or_else(|| invalid(format!("record {seq} is missing")))?;
    Ok(InclusionProof {
        leaf_index: index,
        tree_size: size,
        leaf_hash: leaf_hash(&canonical(row.as_ref())),
        root_hash: root,
        audit_path: path,
    })
}

/// The consistency proof from the tree of `first` records to that of `second` (default: the
/// newest signed tree head).
pub async fn prove_consistency(store: &Store, first: u64, second: Option<u64>) -> Result<ConsistencyProof, CoreError> {
    let second = match second {
        Some(s) => s,
        None => default_size(store).await?,
    };
    let have = log_size(store).await?;
    if second > have {
        return Err(invalid(format!("tree size {second} is out of range: the log holds {have} records")));
    }
    if first == 0 || first > second {
        return Err(invalid(format!("--from-size must be between 1 and the second size ({second}); got {first}")));
    }
    let (proof, second_root) = with_view(store, second, |v| (v.consistency(first), v.root())).await?;
    let first_root = if first == second { second_root } else { with_view(store, first, |v| v.root()).await? };
    Ok(ConsistencyProof { first_size: first, second_size: second, first_root, second_root, proof })
}
