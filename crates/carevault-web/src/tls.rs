//! TLS: rustls with the ring provider, TLS 1.2 and 1.3 only, AEAD cipher suites with ECDHE
//! (forward secrecy) only. A self-signed certificate is generated on first start unless the
//! operator configures one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::server::WebError;

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Operator-provided PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated once into this folder (cert.pem, key.pem), then reused.
    SelfSigned { dir: PathBuf, hostnames: Vec<String> },
}

pub(crate) struct Loaded {
    pub config: Arc<ServerConfig>,
    pub cert_pem: String,
    pub generated: bool,
}

/// Crash-safe (temporary name, sync, rename, folder sync): a power cut leaves the old file or
/// the whole new one, never an empty certificate that would stop the next start.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    carevault_core::durable::write_replace(path, contents.as_bytes())
}

pub(crate) fn load(source: &TlsSource) -> Result<Loaded, WebError> {
    match source {
        TlsSource::Files { cert, key } => load_pair(cert, key, false),
        TlsSource::SelfSigned { dir, hostnames } => {
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if cert.exists() && key.exists() {
                match load_pair(&cert, &key, false) {
                    Ok(l) => return Ok(l),
                    // A pair a crash left half-replaced (the key of one certificate, the
                    // certificate of another) is ours to make again.
                    Err(e) => tracing::warn!(error = %e, "the generated TLS certificate could not be loaded; generating a new one"),
                }
            }
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
            names.extend(hostnames.iter().cloned());
            let ck = rcgen::generate_simple_self_signed(names).map_err(|e| WebError::Tls(format!("certificate generation failed: {e}")))?;
            write_private(&key, &ck.key_pair.serialize_pem()).map_err(|e| WebError::Tls(format!("{}: {e}", key.display())))?;
            write_private(&cert, &ck.cert.pem()).map_err(|e| WebError::Tls(format!("{}: {e}", cert.display())))?;
            load_pair(&cert, &key, true)
        }
    }
}

fn load_pair(cert_path: &Path, key_path: &Path, generated: bool) -> Result<Loaded, WebError> {
    let cert_pem = std::fs::read_to_string(cert_path).map_err(|e| WebError::Tls(format!("{}: {e}", cert_path.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| WebError::Tls(format!("{}: not a PEM certificate chain: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(WebError::Tls(format!("{} holds no certificate", cert_path.display())));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| WebError::Tls(format!("{}: not a PEM private key: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| WebError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| WebError::Tls(format!("certificate and key do not match or are unsupported: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Loaded { config: Arc::new(config), cert_pem, generated })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustls' ring provider offers only AEAD suites with ECDHE (and TLS 1.3 suites); this
    /// test fails if that ever changes, so a weaker suite cannot slip in with an upgrade.
    #[test]
    fn only_aead_forward_secret_suites() {
        let p = rustls::crypto::ring::default_provider();
        for s in &p.cipher_suites {
            let name = format!("{:?}", s.suite());
            let ok = name.starts_with("TLS13_")
                || (name.starts_with("TLS_ECDHE_") && (name.contains("GCM") || name.contains("CHACHA20_POLY1305")));
            assert!(ok, "{name}");
        }
    }

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile_dir();
        let src = TlsSource::SelfSigned { dir: dir.clone(), hostnames: vec![] };
        let a = load(&src).expect("first");
        assert!(a.generated);
        let b = load(&src).expect("second");
        assert!(!b.generated);
        assert_eq!(a.cert_pem, b.cert_pem);
        // A crash that left an empty certificate (or one of another key) does not stop a start.
        std::fs::write(dir.join("cert.pem"), b"").expect("truncate");
        let c = load(&src).expect("after a torn certificate");
        assert!(c.generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("key.pem")).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("cv-tls-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
