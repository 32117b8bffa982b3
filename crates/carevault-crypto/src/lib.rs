//! Key management and cryptographic building blocks of carevault. Primitives come from
//! RustCrypto (AES-256-GCM, HMAC-SHA-256, SHA-256, Argon2id), ed25519-dalek and totp-rs; this
//! crate only composes them. Only `carevault-core` depends on it.

pub mod files;
pub mod keyring;
pub mod passkey;
pub mod password;
pub mod signing;
pub mod stream;
pub mod totp;

pub use keyring::{Aad, BlindIndexKey, DataKey, KeyError, Keyring, MasterKey};

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
