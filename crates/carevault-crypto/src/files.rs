//! Crash-safe writes of small files (keys, pins, certificates): the bytes go to a temporary
//! name in the same folder, are synced, then take their final name in one step, and the folder
//! is synced so the name itself survives a power cut. A reader sees the old file or the whole
//! new one, never an empty or partial one.

use std::io::Write;
use std::path::{Path, PathBuf};

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tag = hex::encode(crate::random_bytes::<6>());
    path.with_file_name(format!(".{name}.{tag}.tmp"))
}

fn write_temp(path: &Path, contents: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = temp_name(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = opts.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Syncs a folder, so that names created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `path` (mode 0600) with `contents`, failing with `AlreadyExists` if it exists.
pub fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, contents)?;
    // A hard link takes the final name only if it is free: no existing file is ever replaced.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_dir(parent(path))
}

/// Writes `path` (mode 0600) with `contents`, replacing it if it exists.
pub fn write_replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, contents)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(path))
}

/// Renames `from` to `to` (same folder) and syncs the folder.
pub fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(parent(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_are_private_whole_and_never_replace() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("key");
        write_new(&p, b"first").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"first");
        let e = write_new(&p, b"second").expect_err("must not replace");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).expect("read"), b"first");
        write_replace(&p, b"third").expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"third");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("key")]);
    }
}
