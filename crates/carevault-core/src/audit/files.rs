//! The audit evidence kept outside the database: `audit/checkpoints.log` (one JSON line per
//! signed checkpoint, with its signed tree head) and, when configured, a witness folder on
//! another disk or share (one tree head per line in `carevault-<store id>.heads.jsonl`).
//!
//! Rules that keep the files truthful:
//! - a line is appended only after the database committed its checkpoint, and only checkpoints
//!   the database holds are appended, so the file never speaks for records that are not durable;
//! - each append is one write of whole lines, synced; if it fails the file is cut back to its
//!   previous length, and a torn tail left by a crash is set aside (renamed, logged), never read
//!   as a checkpoint;
//! - a writer holds an exclusive lock on `audit/checkpoints.lock` from its commit until its lines
//!   are written, and the verifier reads database and file under a shared lock, so they never
//!   see each other halfway;
//! - a file that lags behind the database (an append failed: full disk, I/O error) is caught up
//!   from the database at the next checkpoint or tick; a *missing* checkpoint file is never
//!   recreated from the database once checkpoints exist (`audit verify` reports it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use carevault_store::{CheckpointRow, Store};
use serde_json::{json, Value};

use super::tree::TreeHead;

/// A checkpoint as a line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileCheckpoint {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: i64,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    pub tree_head: Option<TreeHead>,
}

pub(crate) fn checkpoint_line(c: &CheckpointRow) -> String {
    let mut v = json!({
        "seq": c.seq,
        "hash": hex::encode(&c.hash),
        "at": c.at,
        "public_key": hex::encode(&c.public_key),
        "signature": hex::encode(&c.signature),
    });
    if let Some(h) = TreeHead::from_checkpoint(c) {
        v["tree_head"] = h.to_json();
    }
    format!("{v}\n")
}

pub(crate) fn parse_checkpoint_line(line: &str) -> Option<FileCheckpoint> {
    let v: Value = serde_json::from_str(line).ok()?;
    let tree_head = match v.get("tree_head") {
        None => None,
        Some(t) => Some(TreeHead::from_json(t).ok()?),
    };
    Some(FileCheckpoint {
        seq: v.get("seq")?.as_i64()?,
        hash: hex::decode(v.get("hash")?.as_str()?).ok()?,
        at: v.get("at")?.as_i64()?,
        public_key: hex::decode(v.get("public_key")?.as_str()?).ok()?,
        signature: hex::decode(v.get("signature")?.as_str()?).ok()?,
        tree_head,
    })
}

/// The lines of a line file: complete lines (with their line numbers) and a torn tail (bytes
/// after the last newline), if any.
pub(crate) struct Lines {
    pub complete: Vec<(usize, String)>,
    pub torn: Option<String>,
}

pub(crate) fn read_lines(path: &Path) -> std::io::Result<Option<Lines>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&bytes);
    let (body, torn) = match text.rfind('\n') {
        Some(i) => (&text[..=i], Some(&text[i + 1..]).filter(|t| !t.is_empty())),
        None => ("", Some(&text[..]).filter(|t| !t.is_empty())),
    };
    let complete = body.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l.to_string())).collect();
    Ok(Some(Lines { complete, torn: torn.map(str::to_string) }))
}

/// An advisory lock on the checkpoint lock file, released when dropped.
pub(crate) struct FileLock {
    _file: File,
}

fn open_lock(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn lock(path: &Path, exclusive: bool) -> std::io::Result<FileLock> {
    use rustix::fs::{flock, FlockOperation};
    let file = open_lock(path)?;
    flock(&file, if exclusive { FlockOperation::LockExclusive } else { FlockOperation::LockShared })?;
    Ok(FileLock { _file: file })
}

/// The end of a line file: its length, where a torn tail starts (if any) and the value of
/// `key` in its last complete line.
struct Tail {
    len: u64,
    torn_at: Option<u64>,
    last: Option<i64>,
}

fn read_tail(path: &Path, key: &str) -> std::io::Result<Option<Tail>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let end_of_lines = buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1);
    let torn_at = match end_of_lines {
        Some(e) if e == buf.len() => None,
        Some(e) => Some(start + e as u64),
        None if buf.is_empty() => None,
        None => Some(start),
    };
    let body = &buf[..end_of_lines.unwrap_or(0)];
    let last = String::from_utf8_lossy(body)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v.get(key).and_then(Value::as_i64));
    Ok(Some(Tail { len, torn_at, last }))
}

/// Moves the bytes from `at` to the end of `path` into `<path>.torn-<now>` and cuts the file
/// there. Returns the notice to log.
fn set_aside_torn(path: &Path, at: u64, now_micros: i64) -> std::io::Result<String> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    f.seek(SeekFrom::Start(at))?;
    let mut torn = Vec::new();
    f.read_to_end(&mut torn)?;
    let aside = PathBuf::from(format!("{}.torn-{now_micros}", path.display()));
    carevault_crypto::files::write_new(&aside, &torn)?;
    f.set_len(at)?;
    f.sync_all()?;
    Ok(format!(
        "{}: an incomplete last line ({} bytes, from an interrupted write) was set aside to {}; it is not a checkpoint",
        path.display(),
        torn.len(),
        aside.display()
    ))
}

/// Appends `text` (whole lines) in one write and syncs; on failure cuts the file back.
fn append(path: &Path, text: &str, create: bool) -> std::io::Result<()> {
    let mut o = OpenOptions::new();
    o.append(true).create(create);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    let before = f.metadata()?.len();
    let result = f.write_all(text.as_bytes()).and_then(|()| f.sync_data());
    if let Err(e) = result {
        // Leave no partial line behind; if even that fails, the next append sets it aside.
        let _ = f.set_len(before).and_then(|()| f.sync_data());
        return Err(e);
    }
    if before == 0 && create {
        if let Some(dir) = path.parent() {
            carevault_crypto::files::sync_dir(dir)?;
        }
    }
    Ok(())
}

/// The evidence files of one data folder.
pub(crate) struct AuditFiles {
    checkpoint_file: PathBuf,
    lock_file: PathBuf,
    witness_file: Option<PathBuf>,
    behind: AtomicBool,
    problem: Mutex<Option<String>>,
    /// The last checkpoint this process saw the file end with: a file that later ends earlier
    /// was shortened behind its back.
    seen: Mutex<Option<i64>>,
}

impl AuditFiles {
    pub(crate) fn new(audit_dir: &Path, witness_dir: Option<&Path>, store_id: &str) -> AuditFiles {
        AuditFiles {
            checkpoint_file: audit_dir.join("checkpoints.log"),
            lock_file: audit_dir.join("checkpoints.lock"),
            witness_file: witness_dir.map(|d| witness_file(d, store_id)),
            behind: AtomicBool::new(false),
            problem: Mutex::new(None),
            seen: Mutex::new(None),
        }
    }

    pub(crate) fn checkpoint_file(&self) -> &Path {
        &self.checkpoint_file
    }

    /// What is wrong with the files, while they lag behind the database.
    pub(crate) fn problem(&self) -> Option<String> {
        if !self.behind.load(Ordering::Relaxed) {
            return None;
        }
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    fn set_problem(&self, p: Option<String>) {
        let was = self.behind.swap(p.is_some(), Ordering::Relaxed);
        if let Some(msg) = &p {
            if !was {
                tracing::error!(problem = %msg, "audit evidence files are behind the database");
            }
        } else if was {
            tracing::info!("audit evidence files caught up with the database");
        }
        if let Ok(mut slot) = self.problem.lock() {
            *slot = p;
        }
    }

    /// Takes the exclusive lock (waiting off the async runtime).
    pub(crate) async fn lock_exclusive(&self) -> std::io::Result<FileLock> {
        let path = self.lock_file.clone();
        tokio::task::spawn_blocking(move || lock(&path, true)).await.map_err(std::io::Error::other)?
    }

    /// Creates the empty checkpoint file of a new installation.
    pub(crate) fn create_empty(&self) -> std::io::Result<()> {
        match carevault_crypto::files::write_new(&self.checkpoint_file, b"") {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// At start: sets aside a torn last line of the checkpoint file. Returns notices to log.
    pub(crate) fn repair_at_start(&self, now_micros: i64) -> std::io::Result<Vec<String>> {
        let _lock = lock(&self.lock_file, true)?;
        let mut notices = Vec::new();
        if let Some(t) = read_tail(&self.checkpoint_file, "seq")? {
            if let Some(at) = t.torn_at {
                notices.push(set_aside_torn(&self.checkpoint_file, at, now_micros)?);
            }
        }
        Ok(notices)
    }

    /// Appends to the checkpoint file (and the witness) every checkpoint the database holds
    /// beyond their last lines. Call with the exclusive lock held. Failures are recorded (and
    /// reported by `/health`); the next call tries again.
    pub(crate) async fn catch_up(&self, store: &Store, now_micros: i64) {
        let mut problems = Vec::new();
        if let Err(p) = self.catch_up_checkpoints(store, now_micros).await {
            problems.push(p);
        }
        if let Err(p) = self.catch_up_witness(store, now_micros).await {
            problems.push(p);
        }
        self.set_problem(if problems.is_empty() { None } else { Some(problems.join("; ")) });
    }

    async fn catch_up_checkpoints(&self, store: &Store, now: i64) -> Result<(), String> {
        let path = &self.checkpoint_file;
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let Some(tail) = read_tail(path, "seq").map_err(io)? else {
            // Never recreated from the database once it holds checkpoints.
            return match store.checkpoints_after(-1).await {
                Ok(rows) if rows.is_empty() => Ok(()),
                Ok(_) => Err(format!(
                    "{} is missing although the database holds checkpoints; restore it from a copy (`carevault audit verify` reports it)",
                    path.display()
                )),
                Err(e) => Err(e.to_string()),
            };
        };
        if let Some(at) = tail.torn_at {
            let notice = set_aside_torn(path, at, now).map_err(io)?;
            tracing::warn!(notice = %notice, "audit checkpoint file repaired");
        }
        let seen = self.seen.lock().ok().and_then(|s| *s);
        if let (Some(seen), Some(now_last)) = (seen, tail.last.or(Some(-1))) {
            if now_last < seen {
                tracing::error!(
                    file = %path.display(),
                    ends_at = now_last,
                    had_reached = seen,
                    "the audit checkpoint file was shortened while carevault ran; the missing checkpoints are appended again from the database"
                );
            }
        }
        let rows = store.checkpoints_after(tail.last.unwrap_or(-1)).await.map_err(|e| e.to_string())?;
        if rows.len() > 1 && tail.len > 0 && seen.is_none_or(|s| tail.last.unwrap_or(-1) >= s) {
            tracing::warn!(
                checkpoints = rows.len(),
                from_seq = rows.first().map_or(0, |r| r.seq),
                "the audit checkpoint file lacked checkpoints the database holds (an append failed or was cut off); appending them now"
            );
        }
        if !rows.is_empty() {
            let text: String = rows.iter().map(checkpoint_line).collect();
            append(path, &text, false).map_err(io)?;
        }
        if let Ok(mut s) = self.seen.lock() {
            *s = rows.last().map(|r| r.seq).or(tail.last).or(*s);
        }
        Ok(())
    }

    async fn catch_up_witness(&self, store: &Store, now: i64) -> Result<(), String> {
        let Some(path) = &self.witness_file else { return Ok(()) };
        let io = |e: std::io::Error| format!("witness {}: {e}", path.display());
        let tail = read_tail(path, "tree_size").map_err(io)?;
        if let Some(at) = tail.as_ref().and_then(|t| t.torn_at) {
            let notice = set_aside_torn(path, at, now).map_err(io)?;
            tracing::warn!(notice = %notice, "witness file repaired");
        }
        let after = tail.as_ref().and_then(|t| t.last);
        let mut heads: Vec<TreeHead> = store
            .checkpoints_after(after.unwrap_or(0))
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(TreeHead::from_checkpoint)
            .collect();
        if tail.is_none() {
            // A new witness starts with the newest head; it does not take the past from this
            // machine's database.
            heads = heads.pop().into_iter().collect();
        }
        if heads.is_empty() {
            return Ok(());
        }
        let text: String = heads.iter().map(|h| format!("{}\n", h.to_json())).collect();
        append(path, &text, true).map_err(io)
    }
}

/// The witness file of an installation inside a witness folder.
pub(crate) fn witness_file(dir: &Path, store_id: &str) -> PathBuf {
    dir.join(format!("carevault-{store_id}.heads.jsonl"))
}

/// The shared lock a verifier holds while it fixes its database snapshot and reads the file, so
/// a writer's commit and its file append are seen both or neither. `None` when the folder has
/// no lock file yet (nothing was ever checkpointed) or it cannot be taken.
pub(crate) async fn lock_shared(audit_dir: &Path) -> Option<FileLock> {
    let path = audit_dir.join("checkpoints.lock");
    if !path.exists() {
        return None;
    }
    tokio::task::spawn_blocking(move || lock(&path, false)).await.ok().and_then(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tails_are_found_and_set_aside() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("checkpoints.log");
        std::fs::write(&p, "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3,\"ha").expect("write");
        let t = read_tail(&p, "seq").expect("tail").expect("exists");
        assert_eq!(t.last, Some(2));
        assert_eq!(t.torn_at, Some(20));
        let notice = set_aside_torn(&p, 20, 7).expect("set aside");
        assert!(notice.contains("incomplete last line"), "{notice}");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "{\"seq\":1}\n{\"seq\":2}\n");
        let aside = dir.path().join("checkpoints.log.torn-7");
        assert_eq!(std::fs::read_to_string(aside).expect("aside"), "{\"seq\":3,\"ha");
        let lines = read_lines(&p).expect("read").expect("exists");
        assert_eq!(lines.complete.len(), 2);
        assert!(lines.torn.is_none());
        append(&p, "{\"seq\":4}\n", false).expect("append");
        assert_eq!(read_tail(&p, "seq").expect("tail").expect("exists").last, Some(4));
    }
}
