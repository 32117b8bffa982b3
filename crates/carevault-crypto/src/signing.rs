//! Ed25519 keys that sign audit checkpoints. Separate from the data keys: a verifier needs only
//! the public key.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

pub struct AuditSigner(SigningKey);

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditSigner(public={})", hex::encode(self.public_key()))
    }
}

impl AuditSigner {
    pub fn generate() -> AuditSigner {
        AuditSigner(SigningKey::from_bytes(&crate::random_bytes::<32>()))
    }

    pub fn from_secret(bytes: &[u8; 32]) -> AuditSigner {
        AuditSigner(SigningKey::from_bytes(bytes))
    }

    pub fn secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

/// Verifies an Ed25519 signature with a 32-byte public key.
pub fn verify(public_key: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    let Ok(pk) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    vk.verify(msg, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let s = AuditSigner::generate();
        let sig = s.sign(b"checkpoint 7");
        assert!(verify(&s.public_key(), b"checkpoint 7", &sig));
        assert!(!verify(&s.public_key(), b"checkpoint 8", &sig));
        let again = AuditSigner::from_secret(&s.secret());
        assert_eq!(again.public_key(), s.public_key());
    }
}
