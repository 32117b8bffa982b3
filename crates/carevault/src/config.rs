//! Settings: command-line flags win over environment variables, which win over the config
//! file (`carevault.toml` in the data folder, or `--config`), which wins over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub body_limit_bytes: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub log: Option<String>,
    /// Older spelling of `[server] public_origin`, still read.
    pub public_origin: Option<String>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub session: SessionSection,
    #[serde(default)]
    pub access: AccessSection,
    #[serde(default)]
    pub chart: ChartSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub storage: StorageSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Where staff and FHIR clients reach the server (`https://clinic.example:8443`).
    pub public_origin: Option<String>,
    /// Reverse proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    pub witness_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub min_free_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    pub password_min_chars: Option<usize>,
    pub break_glass_minutes: Option<i64>,
    pub inactive_account_days: Option<i64>,
    pub step_up_minutes: Option<i64>,
    pub require_approval: Option<bool>,
    pub invitation_hours: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSection {
    pub care_window_days: Option<i64>,
    pub document_max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    pub idle_timeout_secs: Option<i64>,
    pub max_age_secs: Option<i64>,
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub body_limit: usize,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub log: String,
    pub session_idle_secs: i64,
    pub session_max_secs: i64,
    pub password_min_chars: usize,
    pub break_glass_secs: i64,
    pub inactive_account_days: i64,
    pub step_up_secs: i64,
    /// Privileged changes wait for a second officer (`[access] require_approval`).
    pub require_approval: bool,
    /// Lifetime of enrollment invitations (`[access] invitation_hours`).
    pub invitation_hours: i64,
    /// The configured public origin, normalized (`None`: derived from the listener).
    pub public_origin: Option<String>,
    pub trusted_proxies: carevault_web::TrustedProxies,
    pub care_window_days: i64,
    pub document_max_bytes: usize,
    pub witness_dir: Option<PathBuf>,
    /// `None`: the default reserve (5 % of the disk, 8 MiB..512 MiB).
    pub min_free_mb: Option<u64>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match env(name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| anyhow::anyhow!("{name} must be a whole number (got an invalid value)")),
    }
}

pub fn load(data_dir: &Path, config_path: Option<&Path>, listen_flag: Option<&str>) -> anyhow::Result<Settings> {
    let file_path = config_path.map(Path::to_path_buf).unwrap_or_else(|| data_dir.join("carevault.toml"));
    let file: FileConfig = if file_path.exists() {
        let text = std::fs::read_to_string(&file_path).with_context(|| format!("reading {}", file_path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", file_path.display(), e.message()))?
    } else if config_path.is_some() {
        bail!("config file {} does not exist", file_path.display());
    } else {
        FileConfig::default()
    };
    let listen_text =
        listen_flag.map(str::to_string).or_else(|| env("CAREVAULT_LISTEN")).or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen: SocketAddr = listen_text.parse().map_err(|_| anyhow::anyhow!("listen address must be IP:PORT, e.g. 127.0.0.1:8443"))?;
    let idle = env_num::<i64>("CAREVAULT_SESSION_IDLE_TIMEOUT_SECS")?.or(file.session.idle_timeout_secs).unwrap_or(15 * 60);
    let max = env_num::<i64>("CAREVAULT_SESSION_MAX_AGE_SECS")?.or(file.session.max_age_secs).unwrap_or(12 * 3600);
    if !(1..=3600).contains(&idle) {
        bail!("the session idle timeout must be between 1 and 3600 seconds (NIST SP 800-63B AAL2 allows at most 1 hour)");
    }
    if !(60..=86_400).contains(&max) || max < idle {
        bail!("the session maximum age must be between 60 and 86400 seconds and not shorter than the idle timeout");
    }
    let password_min_chars = env_num::<usize>("CAREVAULT_PASSWORD_MIN_CHARS")?.or(file.access.password_min_chars).unwrap_or(12);
    if !(8..=64).contains(&password_min_chars) {
        bail!("password_min_chars must be between 8 and 64 (NIST SP 800-63B: never below 8)");
    }
    let break_glass = env_num::<i64>("CAREVAULT_BREAK_GLASS_MINUTES")?.or(file.access.break_glass_minutes).unwrap_or(60);
    if !(5..=720).contains(&break_glass) {
        bail!("break_glass_minutes must be between 5 and 720");
    }
    let inactive = env_num::<i64>("CAREVAULT_INACTIVE_ACCOUNT_DAYS")?.or(file.access.inactive_account_days).unwrap_or(90);
    if !(0..=3650).contains(&inactive) {
        bail!("inactive_account_days must be between 0 (never) and 3650");
    }
    let step_up = env_num::<i64>("CAREVAULT_STEP_UP_MINUTES")?.or(file.access.step_up_minutes).unwrap_or(5);
    if !(1..=60).contains(&step_up) {
        bail!("step_up_minutes must be between 1 and 60");
    }
    let require_approval = match env("CAREVAULT_REQUIRE_APPROVAL") {
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => bail!("CAREVAULT_REQUIRE_APPROVAL must be true or false"),
        },
        None => file.access.require_approval.unwrap_or(true),
    };
    let invitation_hours = env_num::<i64>("CAREVAULT_INVITATION_HOURS")?.or(file.access.invitation_hours).unwrap_or(72);
    if !(1..=720).contains(&invitation_hours) {
        bail!("invitation_hours must be between 1 and 720");
    }
    let care_window_days = env_num::<i64>("CAREVAULT_CARE_WINDOW_DAYS")?.or(file.chart.care_window_days).unwrap_or(30);
    if !(0..=365).contains(&care_window_days) {
        bail!("care_window_days must be between 0 (appointments and encounters give no care relationship) and 365");
    }
    let document_max_bytes =
        env_num::<usize>("CAREVAULT_DOCUMENT_MAX_BYTES")?.or(file.chart.document_max_bytes).unwrap_or(25 * 1024 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&document_max_bytes) {
        bail!("document_max_bytes must be between 1 KiB and 64 MiB");
    }
    let body_limit = env_num::<usize>("CAREVAULT_BODY_LIMIT_BYTES")?.or(file.body_limit_bytes).unwrap_or(1024 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&body_limit) {
        bail!("the body limit must be between 1 KiB and 64 MiB");
    }
    let tls_cert = env("CAREVAULT_TLS_CERT").map(PathBuf::from).or(file.tls_cert);
    let tls_key = env("CAREVAULT_TLS_KEY").map(PathBuf::from).or(file.tls_key);
    if tls_cert.is_some() != tls_key.is_some() {
        bail!("configure both tls_cert and tls_key, or neither (a self-signed certificate is then generated)");
    }
    let min_free_mb = env_num::<u64>("CAREVAULT_MIN_FREE_MB")?.or(file.storage.min_free_mb);
    if min_free_mb.is_some_and(|m| m > 1024 * 1024) {
        bail!("min_free_mb must be at most 1048576 (1 TiB); 0 turns the free-space reserve off");
    }
    let witness_dir = env("CAREVAULT_WITNESS_DIR").map(PathBuf::from).or(file.audit.witness_dir);
    if let (Some(a), Some(b)) = (&file.public_origin, &file.server.public_origin) {
        if a != b {
            bail!("public_origin is set twice in the config file, differently: keep [server] public_origin only");
        }
    }
    let public_origin = match env("CAREVAULT_PUBLIC_ORIGIN").or(file.server.public_origin).or(file.public_origin) {
        None => None,
        Some(o) => Some(carevault_web::normalize_origin(&o).map_err(|e| anyhow::anyhow!("public_origin: {e}"))?),
    };
    let trusted_proxies = match env("CAREVAULT_TRUSTED_PROXIES") {
        Some(v) => carevault_web::TrustedProxies::parse(v.split([',', ' '])),
        None => carevault_web::TrustedProxies::parse(file.server.trusted_proxies.iter().flatten().map(String::as_str)),
    }
    .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
    Ok(Settings {
        data_dir: data_dir.to_path_buf(),
        witness_dir,
        min_free_mb,
        listen,
        database_url: env("CAREVAULT_DATABASE_URL").or(file.database_url),
        master_key_file: env("CAREVAULT_MASTER_KEY_FILE").map(PathBuf::from).or(file.master_key_file),
        body_limit,
        tls_cert,
        tls_key,
        log: env("CAREVAULT_LOG").or(file.log).unwrap_or_else(|| "info".into()),
        session_idle_secs: idle,
        session_max_secs: max,
        password_min_chars,
        break_glass_secs: break_glass * 60,
        inactive_account_days: inactive,
        step_up_secs: step_up * 60,
        require_approval,
        invitation_hours,
        care_window_days,
        document_max_bytes,
        public_origin,
        trusted_proxies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("carevault.toml"), text)?;
        load(dir.path(), None, None)
    }

    #[test]
    fn server_section_public_origin_and_trusted_proxies() {
        let s =
            with_file("[server]\npublic_origin = \"https://Clinic.Example:8443/\"\ntrusted_proxies = [\"10.0.0.7\", \"10.1.0.0/16\"]\n")
                .expect("valid");
        assert_eq!(s.public_origin.as_deref(), Some("https://clinic.example:8443"));
        assert_eq!(s.trusted_proxies.len(), 2);
        // The older top-level spelling still works; two different values are refused.
        let s = with_file("public_origin = \"https://clinic.example\"\n").expect("top level");
        assert_eq!(s.public_origin.as_deref(), Some("https://clinic.example"));
        assert!(with_file("public_origin = \"https://a.example\"\n[server]\npublic_origin = \"https://b.example\"\n").is_err());
        assert!(with_file("[server]\npublic_origin = \"http://clinic.example\"\n").is_err(), "https only");
        assert!(with_file("[server]\npublic_origin = \"https://clinic.example/fhir\"\n").is_err(), "no path");
        assert!(with_file("[server]\ntrusted_proxies = [\"10.0.0.0/40\"]\n").is_err());
        let s = with_file("").expect("defaults");
        assert!(s.public_origin.is_none() && s.trusted_proxies.is_empty());
    }
}
