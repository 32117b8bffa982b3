//! Argon2id password hashing with OWASP's parameters (m = 19 MiB, t = 2, p = 1). Hashing is
//! CPU-bound: callers run it off the async runtime and bound how many run at once.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
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

/// The PHC string of `password` ($argon2id$v=19$m=19456,t=2,p=1$…).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2().map_err(|_| HashError)?.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| HashError)
}

/// Whether `password` matches the stored PHC string (constant-time comparison inside).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(a) = argon2() else { return false };
    a.verify_password(password.as_bytes(), &parsed).is_ok()
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
}
