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
    /// PEM files the installation provides.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated once into this folder (cert.pem, key.pem), then reused.
    SelfSigned { dir: PathBuf, hostnames: Vec<String> },
}

pub(crate) struct Loaded {
    pub config: Arc<ServerConfig>,
    pub cert_pem: String,
    pub generated: bool,
    /// End of the leaf certificate's validity (Unix seconds), when it could be read.
    pub not_after: Option<i64>,
}

/// Crash-safe (temporary name, sync, rename, folder sync): a power cut leaves the old file or
/// the whole new one, never an empty certificate that would stop the next start.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    carevault_core::durable::write_replace(path, contents.as_bytes())
}

/// A generated certificate is valid this long (the CA/Browser Forum's ceiling for public
/// certificates, which clients increasingly apply to all).
pub(crate) const GENERATED_VALIDITY_DAYS: i64 = 397;
/// A generated certificate this close to its end is replaced at start; an operator's is
/// reported in the log.
pub(crate) const RENEW_WITHIN_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// Loads the certificate. `now` (Unix seconds, from the vault's clock) decides whether the
/// generated certificate is due for renewal.
pub(crate) fn load(source: &TlsSource, now: i64) -> Result<Loaded, WebError> {
    match source {
        TlsSource::Files { cert, key } => {
            let loaded = load_pair(cert, key, false)?;
            match loaded.not_after {
                Some(end) if end <= now => tracing::warn!(
                    certificate = %cert.display(),
                    expired = %format_time(end),
                    "the configured TLS certificate has EXPIRED: clients will refuse to connect; replace it (it is never replaced automatically)"
                ),
                Some(end) if end - now <= RENEW_WITHIN_DAYS * DAY => tracing::warn!(
                    certificate = %cert.display(),
                    expires = %format_time(end),
                    days_left = (end - now) / DAY,
                    "the configured TLS certificate expires soon; replace it (it is never replaced automatically)"
                ),
                _ => {}
            }
            Ok(loaded)
        }
        TlsSource::SelfSigned { dir, hostnames } => {
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if cert.exists() && key.exists() {
                match load_pair(&cert, &key, false) {
                    Ok(l) if l.not_after.is_some_and(|end| end - now > RENEW_WITHIN_DAYS * DAY) => return Ok(l),
                    Ok(l) => tracing::info!(
                        expires = %l.not_after.map(format_time).unwrap_or_default(),
                        "the generated TLS certificate expires within {RENEW_WITHIN_DAYS} days (or has expired); generating a new one"
                    ),
                    // A pair a crash left half-replaced (the key of one certificate, the
                    // certificate of another) is ours to make again.
                    Err(e) => tracing::warn!(error = %e, "the generated TLS certificate could not be loaded; generating a new one"),
                }
            }
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
            names.extend(hostnames.iter().filter(|h| !names.contains(*h)).cloned().collect::<Vec<_>>());
            let (cert_pem, key_pem) = generate(names, now)?;
            write_private(&key, &key_pem).map_err(|e| WebError::Tls(format!("{}: {e}", key.display())))?;
            write_private(&cert, &cert_pem).map_err(|e| WebError::Tls(format!("{}: {e}", cert.display())))?;
            load_pair(&cert, &key, true)
        }
    }
}

/// A self-signed certificate for `names`, valid from an hour before `now` for
/// [`GENERATED_VALIDITY_DAYS`] (rcgen's default would be 1975 to 4096). Returns (cert, key) PEM.
fn generate(names: Vec<String>, now: i64) -> Result<(String, String), WebError> {
    let fail = |e: rcgen::Error| WebError::Tls(format!("certificate generation failed: {e}"));
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    let start = time::OffsetDateTime::from_unix_timestamp(now - 3600).map_err(|e| WebError::Tls(format!("clock: {e}")))?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(GENERATED_VALIDITY_DAYS);
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn format_time(unix: i64) -> String {
    carevault_core::format_instant(unix.saturating_mul(1_000_000))
}

/// The end of the first certificate's validity (Unix seconds).
fn not_after(der: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| c.validity().not_after.timestamp())
}

fn load_pair(cert_path: &Path, key_path: &Path, generated: bool) -> Result<Loaded, WebError> {
    let cert_pem = std::fs::read_to_string(cert_path).map_err(|e| WebError::Tls(format!("{}: {e}", cert_path.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| WebError::Tls(format!("{}: not a PEM certificate chain: {e}", cert_path.display())))?;
    let Some(leaf) = certs.first() else {
        return Err(WebError::Tls(format!("{} holds no certificate", cert_path.display())));
    };
    let not_after = not_after(leaf.as_ref());
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
    Ok(Loaded { config: Arc::new(config), cert_pem, generated, not_after })
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

    const NOW: i64 = 1_767_225_600; // 2026-01-01

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile_dir("reuse");
        let src = TlsSource::SelfSigned { dir: dir.clone(), hostnames: vec![] };
        let a = load(&src, NOW).expect("first");
        assert!(a.generated);
        let b = load(&src, NOW + DAY).expect("second");
        assert!(!b.generated);
        assert_eq!(a.cert_pem, b.cert_pem);
        // A crash that left an empty certificate (or one of another key) does not stop a start.
        std::fs::write(dir.join("cert.pem"), b"").expect("truncate");
        let c = load(&src, NOW).expect("after a torn certificate");
        assert!(c.generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("key.pem")).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    fn validity(pem: &str) -> (i64, i64) {
        let der = CertificateDer::pem_slice_iter(pem.as_bytes()).next().expect("one").expect("pem");
        let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        (c.validity().not_before.timestamp(), c.validity().not_after.timestamp())
    }

    /// rcgen's default validity is 1975..4096; ours is at most 397 days from now, starting a
    /// little in the past (clock skew), and names the configured host.
    #[test]
    fn the_generated_certificate_lives_at_most_397_days() {
        let dir = tempfile_dir("validity");
        let src = TlsSource::SelfSigned { dir: dir.clone(), hostnames: vec!["clinic.example".into()] };
        let a = load(&src, NOW).expect("generate");
        let (from, until) = validity(&a.cert_pem);
        assert!((NOW - DAY..NOW).contains(&from), "not before {from}");
        assert!(until > NOW + 300 * DAY && until <= NOW + GENERATED_VALIDITY_DAYS * DAY, "not after {until}");
        assert_eq!(a.not_after, Some(until));
        let der = CertificateDer::pem_slice_iter(a.cert_pem.as_bytes()).next().expect("one").expect("pem");
        let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        let san = format!("{:?}", c.subject_alternative_name().expect("ext").expect("san").value);
        assert!(san.contains("clinic.example") && san.contains("localhost"), "{san}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// At start, a generated certificate within 30 days of its end (or past it) is replaced; an
    /// operator's is never replaced, however old.
    #[test]
    fn an_expiring_generated_certificate_is_renewed_and_an_operators_is_kept() {
        let dir = tempfile_dir("renew");
        let src = TlsSource::SelfSigned { dir: dir.clone(), hostnames: vec![] };
        let first = load(&src, NOW).expect("generate");
        let end = first.not_after.expect("end");
        let kept = load(&src, end - 31 * DAY).expect("31 days left");
        assert!(!kept.generated && kept.cert_pem == first.cert_pem);
        let renewed = load(&src, end - 29 * DAY).expect("29 days left");
        assert!(renewed.generated && renewed.cert_pem != first.cert_pem);
        assert!(validity(&renewed.cert_pem).1 > end, "the new one lasts longer");
        let expired = load(&src, renewed.not_after.expect("end") + DAY).expect("expired");
        assert!(expired.generated, "an expired generated certificate is replaced");

        // The operator's certificate: an expired one is served as it is (and the log says so).
        let (cert_pem, key_pem) = generate(vec!["clinic.example".into()], NOW - 400 * DAY).expect("old");
        std::fs::write(dir.join("op-cert.pem"), &cert_pem).expect("cert");
        std::fs::write(dir.join("op-key.pem"), &key_pem).expect("key");
        let files = TlsSource::Files { cert: dir.join("op-cert.pem"), key: dir.join("op-key.pem") };
        let op = load(&files, NOW).expect("operator's certificate");
        assert!(!op.generated && op.cert_pem == cert_pem);
        assert_eq!(std::fs::read_to_string(dir.join("op-cert.pem")).expect("file"), cert_pem, "never replaced");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cv-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
