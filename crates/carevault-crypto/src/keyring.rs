//! The keyring: a master key (a file readable by its owner only) wraps versioned data keys and
//! the blind-index key; data keys seal PHI fields with AES-256-GCM whose associated data binds
//! table, column, row id and key version.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::random_bytes;

/// Format tag of a sealed value (first byte), so the layout can evolve.
const SEALED_FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key file {path} is readable or writable by others (mode {mode:o}); run: chmod 600 {path}")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("master key file {path} could not be read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("master key file {path} is not a 256-bit key (64 hexadecimal characters expected)")]
    Malformed { path: PathBuf },
    #[error("the master key does not open this store's {what} (wrong master key file, or the store belongs to another installation)")]
    WrongMasterKey { what: String },
    #[error("no data key with version {0} (the store refers to a key that is missing)")]
    UnknownVersion(u32),
    #[error("a sealed value could not be opened: it was altered, moved to another row or column, or sealed with another key")]
    Open,
    #[error("a sealed value is truncated or has an unknown format")]
    Format,
}

/// The 256-bit key that wraps every other key. Never leaves memory unwrapped except in its
/// own file.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

#[cfg(unix)]
fn check_owner_only(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Writes `contents` to a new file that only its owner can read (0600), failing if it exists;
/// crash-safe (see [`crate::files`]).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    crate::files::write_new(path, contents)
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey(Zeroizing::new(random_bytes::<32>()))
    }

    /// Reads a master key file: 64 hex characters (white space ignored), owner-only mode.
    pub fn load(path: &Path) -> Result<MasterKey, KeyError> {
        check_owner_only(path)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?);
        let hex_text: Zeroizing<String> = Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_text.as_bytes(), key.as_mut_slice()).map_err(|_| KeyError::Malformed { path: path.to_path_buf() })?;
        Ok(MasterKey(key))
    }

    /// Creates a new key file (0600) holding a fresh key.
    pub fn create(path: &Path) -> Result<MasterKey, KeyError> {
        let key = MasterKey::generate();
        let mut text = Zeroizing::new(hex::encode(key.0.as_slice()));
        text.push('\n');
        write_secret_file(path, text.as_bytes()).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
        Ok(key)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_slice().into())
    }

    /// Wraps a key with AES-256-GCM; the associated data names what the key is for.
    pub fn wrap(&self, label: &str, key: &[u8; 32]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let ct =
            self.cipher().encrypt(Nonce::from_slice(&nonce), Payload { msg: key, aad: wrap_aad(label).as_bytes() }).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(ct);
        out
    }

    pub fn unwrap_key(&self, label: &str, wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let wrong = || KeyError::WrongMasterKey { what: label.to_string() };
        if wrapped.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let pt = Zeroizing::new(
            self.cipher().decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: wrap_aad(label).as_bytes() }).map_err(|_| wrong())?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if pt.len() != 32 {
            return Err(wrong());
        }
        key.copy_from_slice(&pt);
        Ok(key)
    }
}

fn wrap_aad(label: &str) -> String {
    format!("carevault/wrap/v1|{label}")
}

/// A 256-bit data key (AES-256-GCM) of one version.
pub struct DataKey {
    version: u32,
    cipher: Aes256Gcm,
}

impl DataKey {
    pub fn from_bytes(version: u32, bytes: &[u8; 32]) -> DataKey {
        DataKey { version, cipher: Aes256Gcm::new(bytes.into()) }
    }
    pub fn version(&self) -> u32 {
        self.version
    }
}

/// Fresh key material for a new data key, blind-index key or signing key.
pub fn new_key_material() -> Zeroizing<[u8; 32]> {
    Zeroizing::new(random_bytes::<32>())
}

/// Where a sealed value lives. The key version is added when sealing, so a ciphertext copied to
/// another table, column or row, or relabelled with another version, fails to open.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row_id: &'a str,
}

impl Aad<'_> {
    fn bytes(&self, version: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        for part in [self.table.as_bytes(), self.column.as_bytes(), self.row_id.as_bytes()] {
            v.extend_from_slice(&(part.len() as u32).to_be_bytes());
            v.extend_from_slice(part);
        }
        v.extend_from_slice(&version.to_be_bytes());
        v
    }
}

/// HMAC-SHA-256 key for blind indexes (separate from the data keys).
pub struct BlindIndexKey(Hmac<Sha256>);

impl BlindIndexKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> BlindIndexKey {
        // HMAC zero-pads keys shorter than its block, so padding here yields the same MAC and
        // lets us use the infallible fixed-size constructor.
        let mut padded = Zeroizing::new([0u8; 64]);
        padded[..32].copy_from_slice(bytes);
        BlindIndexKey(<Hmac<Sha256> as hmac::digest::KeyInit>::new(padded.as_slice().into()))
    }

    /// The token stored for (kind, normalized text): 128 bits of HMAC-SHA-256.
    pub fn token(&self, kind: u8, text: &str) -> [u8; 16] {
        let mut mac = self.0.clone();
        mac.update(&[kind, 0]);
        mac.update(text.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// All data keys of the store by version, with the one new values are sealed under.
pub struct Keyring {
    keys: BTreeMap<u32, DataKey>,
    current: u32,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring(versions={:?}, current={})", self.keys.keys().collect::<Vec<_>>(), self.current)
    }
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring { keys: BTreeMap::new(), current: 0 }
    }

    pub fn insert(&mut self, key: DataKey) {
        self.current = self.current.max(key.version);
        self.keys.insert(key.version, key);
    }

    pub fn has(&self, version: u32) -> bool {
        self.keys.contains_key(&version)
    }

    pub fn current(&self) -> u32 {
        self.current
    }

    pub fn set_current(&mut self, version: u32) -> Result<(), KeyError> {
        if !self.keys.contains_key(&version) {
            return Err(KeyError::UnknownVersion(version));
        }
        self.current = version;
        Ok(())
    }

    /// Seals `plaintext` under the current key: [format][version][nonce][ciphertext+tag].
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.seal_with(self.current, aad, plaintext)
    }

    pub fn seal_with(&self, version: u32, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.keys.get(&version).ok_or(KeyError::UnknownVersion(version))?;
        let nonce = random_bytes::<NONCE_LEN>();
        let ct = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad.bytes(version) })
            .map_err(|_| KeyError::Format)?;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(SEALED_FORMAT);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend(ct);
        Ok(out)
    }

    /// The key version a sealed value was written under.
    pub fn version_of(blob: &[u8]) -> Result<u32, KeyError> {
        if blob.len() < HEADER_LEN + 16 || blob[0] != SEALED_FORMAT {
            return Err(KeyError::Format);
        }
        Ok(u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]))
    }

    pub fn open(&self, aad: &Aad<'_>, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let version = Self::version_of(blob)?;
        let key = self.keys.get(&version).ok_or(KeyError::UnknownVersion(version))?;
        let nonce = &blob[5..HEADER_LEN];
        key.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: &blob[HEADER_LEN..], aad: &aad.bytes(version) })
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Open)
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        let mut k = Keyring::new();
        k.insert(DataKey::from_bytes(1, &[1u8; 32]));
        k.insert(DataKey::from_bytes(2, &[2u8; 32]));
        k
    }

    const AAD: Aad<'static> = Aad { table: "patient_versions", column: "name", row_id: "p1/1" };

    #[test]
    fn sealed_values_are_bound_to_their_place() {
        let k = ring();
        let blob = k.seal(&AAD, b"Zoe Example").expect("seal");
        assert_eq!(Keyring::version_of(&blob).expect("v"), 2);
        assert_eq!(k.open(&AAD, &blob).expect("open").as_slice(), b"Zoe Example");
        for other in [Aad { table: "users", ..AAD }, Aad { column: "address", ..AAD }, Aad { row_id: "p2/1", ..AAD }] {
            assert!(matches!(k.open(&other, &blob), Err(KeyError::Open)));
        }
        // Relabelling the version fails too (the version is in the associated data).
        let mut relabelled = blob.clone();
        relabelled[4] = 1;
        assert!(k.open(&AAD, &relabelled).is_err());
        assert!(!blob.windows(3).any(|w| w == b"Zoe"));
    }

    #[test]
    fn wrong_master_key_is_detected() {
        let m1 = MasterKey::generate();
        let m2 = MasterKey::generate();
        let w = m1.wrap("data-key/1", &[9u8; 32]);
        assert_eq!(*m1.unwrap_key("data-key/1", &w).expect("ok"), [9u8; 32]);
        assert!(matches!(m2.unwrap_key("data-key/1", &w), Err(KeyError::WrongMasterKey { .. })));
        assert!(m1.unwrap_key("data-key/2", &w).is_err());
    }

    #[test]
    fn master_key_file_must_be_owner_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("master.key");
        let k = MasterKey::create(&p).expect("create");
        let again = MasterKey::load(&p).expect("load");
        assert_eq!(k.0.as_slice(), again.0.as_slice());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(MasterKey::load(&p), Err(KeyError::Permissions { .. })));
        }
    }

    #[test]
    fn blind_index_tokens_depend_on_kind_and_key() {
        let a = BlindIndexKey::from_bytes(&[3u8; 32]);
        let b = BlindIndexKey::from_bytes(&[4u8; 32]);
        assert_eq!(a.token(1, "smith"), a.token(1, "smith"));
        assert_ne!(a.token(1, "smith"), a.token(2, "smith"));
        assert_ne!(a.token(1, "smith"), b.token(1, "smith"));
        // Same as HMAC-SHA-256 with the unpadded key.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&[3u8; 32]).expect("hmac");
        m.update(&[1, 0]);
        m.update(b"smith");
        assert_eq!(a.token(1, "smith")[..], m.finalize().into_bytes()[..16]);
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_detected(data in proptest::collection::vec(any::<u8>(), 0..200), pos in any::<usize>(), bit in 0u8..8) {
            let k = ring();
            let mut blob = k.seal(&AAD, &data).expect("seal");
            let i = pos % blob.len();
            blob[i] ^= 1 << bit;
            prop_assert!(k.open(&AAD, &blob).is_err());
        }
    }
}
