//! WebAuthn passkeys (webauthn-rs): the relying party's side of registration and
//! authentication ceremonies. Everything crosses this boundary as JSON bytes, so no other crate
//! depends on the WebAuthn types. Ceremony state is returned to the caller to be stored (sealed)
//! and used once.

use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid,
    Webauthn, WebauthnBuilder, WebauthnError,
};

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("passkeys need a public origin whose host is a domain name (https://name[:port]): {0}")]
    Origin(String),
    #[error("the authenticator's response is not well formed")]
    Malformed,
    #[error("the authenticator's response was refused ({0})")]
    Refused(&'static str),
    #[error("stored passkey data could not be read")]
    Stored,
}

fn refused(e: &WebauthnError) -> PasskeyError {
    PasskeyError::Refused(match e {
        WebauthnError::CredentialNotFound => "credential-not-found",
        WebauthnError::MismatchedChallenge => "challenge-mismatch",
        WebauthnError::InvalidRPOrigin => "origin",
        WebauthnError::CredentialPossibleCompromise => "counter",
        WebauthnError::UserNotVerified => "user-not-verified",
        _ => "verification-failed",
    })
}

/// A registered credential: its id (for lookup and the unique index) and the passkey to store.
#[derive(Debug, Clone)]
pub struct Registered {
    pub credential_id: Vec<u8>,
    pub passkey: Vec<u8>,
}

/// A verified assertion: which credential, and the updated passkey to store when the
/// authenticator's counter moved.
#[derive(Debug, Clone)]
pub struct Asserted {
    pub credential_id: Vec<u8>,
    pub updated_passkey: Option<Vec<u8>>,
}

/// The relying party: our origin and id.
#[derive(Clone)]
pub struct RelyingParty(Webauthn);

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelyingParty")
    }
}

impl RelyingParty {
    /// `origin` is where staff open carevault (`https://clinic.example:8443`); its host is the
    /// relying-party id. `localhost` accepts any port (development, tests, the demo).
    pub fn new(origin: &str, name: &str) -> Result<RelyingParty, PasskeyError> {
        let url = Url::parse(origin).map_err(|e| PasskeyError::Origin(e.to_string()))?;
        if url.scheme() != "https" {
            return Err(PasskeyError::Origin("the scheme must be https".into()));
        }
        let host = url.host_str().ok_or_else(|| PasskeyError::Origin("no host".into()))?.to_string();
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return Err(PasskeyError::Origin("an IP address cannot be a relying-party id".into()));
        }
        let b = WebauthnBuilder::new(&host, &url).map_err(|e| PasskeyError::Origin(e.to_string()))?;
        let b = b.rp_name(name).allow_any_port(host == "localhost");
        Ok(RelyingParty(b.build().map_err(|e| PasskeyError::Origin(e.to_string()))?))
    }

    /// Starts a registration for the user (stable 16-byte handle). Returns the options for the
    /// browser (`navigator.credentials.create`) and the state to keep until the answer.
    pub fn start_registration(
        &self,
        user_handle: [u8; 16],
        username: &str,
        exclude: &[Vec<u8>],
    ) -> Result<(serde_json::Value, Vec<u8>), PasskeyError> {
        let exclude: Vec<CredentialID> = exclude.iter().map(|c| CredentialID::from(c.clone())).collect();
        let exclude = (!exclude.is_empty()).then_some(exclude);
        let (options, state) =
            self.0.start_passkey_registration(Uuid::from_bytes(user_handle), username, username, exclude).map_err(|e| refused(&e))?;
        let options = serde_json::to_value(options).map_err(|_| PasskeyError::Malformed)?;
        Ok((options, serde_json::to_vec(&state).map_err(|_| PasskeyError::Stored)?))
    }

    pub fn finish_registration(&self, response: &[u8], state: &[u8]) -> Result<Registered, PasskeyError> {
        let response: RegisterPublicKeyCredential = serde_json::from_slice(response).map_err(|_| PasskeyError::Malformed)?;
        let state: PasskeyRegistration = serde_json::from_slice(state).map_err(|_| PasskeyError::Stored)?;
        let passkey = self.0.finish_passkey_registration(&response, &state).map_err(|e| refused(&e))?;
        Ok(Registered {
            credential_id: passkey.cred_id().to_vec(),
            passkey: serde_json::to_vec(&passkey).map_err(|_| PasskeyError::Stored)?,
        })
    }

    /// Starts an authentication against the user's stored passkeys (JSON as stored).
    pub fn start_authentication(&self, passkeys: &[Vec<u8>]) -> Result<(serde_json::Value, Vec<u8>), PasskeyError> {
        let keys: Vec<Passkey> =
            passkeys.iter().map(|p| serde_json::from_slice(p)).collect::<Result<_, _>>().map_err(|_| PasskeyError::Stored)?;
        if keys.is_empty() {
            return Err(PasskeyError::Refused("no-passkeys"));
        }
        let (options, state) = self.0.start_passkey_authentication(&keys).map_err(|e| refused(&e))?;
        let options = serde_json::to_value(options).map_err(|_| PasskeyError::Malformed)?;
        Ok((options, serde_json::to_vec(&state).map_err(|_| PasskeyError::Stored)?))
    }

    /// Verifies an assertion. `stored` finds the stored passkey of a credential id, so the
    /// counter can be advanced.
    pub fn finish_authentication(
        &self,
        response: &[u8],
        state: &[u8],
        stored: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Asserted, PasskeyError> {
        let response: PublicKeyCredential = serde_json::from_slice(response).map_err(|_| PasskeyError::Malformed)?;
        let state: PasskeyAuthentication = serde_json::from_slice(state).map_err(|_| PasskeyError::Stored)?;
        let result = self.0.finish_passkey_authentication(&response, &state).map_err(|e| refused(&e))?;
        let credential_id = result.cred_id().to_vec();
        let mut updated_passkey = None;
        if let Some(bytes) = stored(&credential_id) {
            let mut pk: Passkey = serde_json::from_slice(&bytes).map_err(|_| PasskeyError::Stored)?;
            if pk.update_credential(&result) == Some(true) {
                updated_passkey = Some(serde_json::to_vec(&pk).map_err(|_| PasskeyError::Stored)?);
            }
        }
        Ok(Asserted { credential_id, updated_passkey })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webauthn_authenticator_rs::softpasskey::SoftPasskey;
    use webauthn_authenticator_rs::WebauthnAuthenticator;

    const ORIGIN: &str = "https://localhost:8443";

    #[test]
    fn origins() {
        assert!(RelyingParty::new("https://127.0.0.1:8443", "x").is_err());
        assert!(RelyingParty::new("http://localhost:8443", "x").is_err());
        assert!(RelyingParty::new("not a url", "x").is_err());
        assert!(RelyingParty::new("https://clinic.example", "x").is_ok());
    }

    #[test]
    fn register_sign_in_and_refuse_cross_user() {
        let rp = RelyingParty::new(ORIGIN, "carevault").expect("rp");
        let mut alice = WebauthnAuthenticator::new(SoftPasskey::new(true));
        let mut bob = WebauthnAuthenticator::new(SoftPasskey::new(true));
        let origin = Url::parse(ORIGIN).expect("url");
        let register = |auth: &mut WebauthnAuthenticator<SoftPasskey>, handle: u8, name: &str| {
            let (options, state) = rp.start_registration([handle; 16], name, &[]).expect("start");
            let options = serde_json::from_value(options).expect("options");
            let answer = auth.do_registration(origin.clone(), options).expect("authenticator");
            rp.finish_registration(&serde_json::to_vec(&answer).expect("json"), &state).expect("finish")
        };
        let a = register(&mut alice, 1, "alice");
        let b = register(&mut bob, 2, "bob");
        let (options, state_a) = rp.start_authentication(std::slice::from_ref(&a.passkey)).expect("start");
        let answer = alice.do_authentication(origin.clone(), serde_json::from_value(options).expect("options")).expect("assert");
        let bytes = serde_json::to_vec(&answer).expect("json");
        let ok = rp.finish_authentication(&bytes, &state_a, |_| Some(a.passkey.clone())).expect("verified");
        assert_eq!(ok.credential_id, a.credential_id);
        assert!(ok.updated_passkey.is_some(), "the counter moved");
        // Alice's assertion against Bob's ceremony is refused.
        let (_, state_b) = rp.start_authentication(std::slice::from_ref(&b.passkey)).expect("start b");
        assert!(matches!(rp.finish_authentication(&bytes, &state_b, |_| None), Err(PasskeyError::Refused(_))));
        // A forged signature is refused.
        let mut forged: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        forged["response"]["signature"] = serde_json::json!("AAAA");
        let forged = serde_json::to_vec(&forged).expect("json");
        assert!(rp.finish_authentication(&forged, &state_a, |_| None).is_err());
        assert!(matches!(rp.finish_authentication(b"{", &state_a, |_| None), Err(PasskeyError::Malformed)));
        assert!(rp.start_authentication(&[]).is_err());
    }
}
