//! Argon2id password hashing with OWASP's parameters (m = 19 MiB, t = 2, p = 1). Hashing is
//! CPU-bound: callers run it off the async runtime and bound how many run at once.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand_core::OsRng;

pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

fn argon2() -> Result<Argon2<'static>, argon2::Error> {
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)?))
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

/// The capacity Argon2's working memory is allocated with: above glibc's largest dynamic mmap
/// threshold (32 MiB on 64-bit), so every hash's memory is a mapping of its own, returned to the
/// system when the hash ends. Allocated at its real size (19 MiB), a freed block stays in the
/// arena of each thread that ever hashed once glibc has raised its threshold past it: the
/// server's idle memory was 165 MiB after the demo's sign-ups, against 28 MiB this way. Only the
/// blocks Argon2 uses are ever touched (resident); the rest of the capacity is address space.
const RESERVE_BYTES: usize = 33 * 1024 * 1024;

/// Zeroed working memory of `blocks` blocks (see [`RESERVE_BYTES`]).
fn memory(blocks: usize) -> Vec<Block> {
    let mut v = Vec::with_capacity((RESERVE_BYTES / std::mem::size_of::<Block>()).max(blocks));
    v.resize(blocks, Block::default());
    v
}

/// Argon2 of `password` and `salt` into `out`, in its own working memory.
fn compute(a: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    a.hash_password_into_with_memory(password, salt, out, memory(a.params().block_count()))
}

/// The PHC string of `password` ($argon2id$v=19$m=19456,t=2,p=1$…).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let a = argon2().map_err(|_| HashError)?;
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|_| HashError)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&a, password.as_bytes(), salt_bytes, &mut out).map_err(|_| HashError)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(a.params()).map_err(|_| HashError)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|_| HashError)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the stored PHC string, under the string's own algorithm, version
/// and parameters (`Output`'s comparison is constant-time).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let a = Argon2::new(algorithm, version, params);
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    if compute(&a, password.as_bytes(), salt_bytes, &mut out).is_err() {
        return false;
    }
    Output::new(&out).is_ok_and(|o| o == expected)
}

/// A hash to verify against when the account does not exist, so that the time taken does not
/// tell whether a username is valid.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3xV3VvZ1mP8Yq6t0QkqgQ2hQ0aJ3n8mE6m9kA0w7pXo"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_use_owasp_parameters() {
        let h = hash_password("correct horse battery staple").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("correct horse battery stapler", &h));
        assert!(!verify_password("x", "not a phc string"));
        assert!(!verify_password("x", dummy_hash()));
    }

    /// The crate's own hasher and verifier agree with ours, both ways (the PHC encoding, the
    /// salt's decoding and the parameters are the crate's).
    #[test]
    fn agrees_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_password("correct horse battery staple").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("parse");
        assert!(argon2().expect("argon2").verify_password(b"correct horse battery staple", &parsed).is_ok());
        assert!(argon2().expect("argon2").verify_password(b"Correct horse battery staple", &parsed).is_err());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2().expect("argon2").hash_password(b"tr0ub4dor&3 tr0ub4dor&3", &salt).expect("hash").to_string();
        assert!(verify_password("tr0ub4dor&3 tr0ub4dor&3", &theirs));
        assert!(!verify_password("tr0ub4dor&3 tr0ub4dor&4", &theirs));
        // Other parameters in the stored string are honoured (a hash made before a change).
        let light = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).expect("params"));
        let old = light.hash_password(b"an older parameter set", &salt).expect("hash").to_string();
        assert!(old.contains("m=8192,t=1,p=1"), "{old}");
        assert!(verify_password("an older parameter set", &old));
    }
}
