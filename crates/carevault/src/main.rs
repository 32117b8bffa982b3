//! The `carevault` command: serve, demo, user, audit, keys.

mod config;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use carevault_core::{CoreConfig, InstanceKind, OpenOptions, Operator, SystemClock};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "carevault",
    version,
    about = "A clinic server with HIPAA safeguards built in: encrypted PHI, tamper-evident audit, MFA, one chokepoint."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// The data folder (database, keys, certificate, audit checkpoints, logs).
    #[arg(long, env = "CAREVAULT_DATA_DIR", default_value = "./carevault-data")]
    data_dir: PathBuf,
    /// A config file (default: carevault.toml in the data folder, if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve over HTTPS; initializes the data folder on first start.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on (IP:PORT). Default 127.0.0.1:8443.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Serve a synthetic demo clinic (bannered demo accounts and made-up patients).
    Demo {
        /// The demo data folder; refused if it holds non-demo data.
        #[arg(long, env = "CAREVAULT_DEMO_DATA_DIR", default_value = "./carevault-demo-data")]
        data_dir: PathBuf,
        /// Address to listen on (IP:PORT). Default 127.0.0.1:8443.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage staff accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// ICD-10-CM diagnosis codes (reference data).
    Icd10 {
        #[command(subcommand)]
        command: Icd10Command,
    },
    /// Organization structure: organizations, locations and departments (the scopes of roles).
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// List organizations, locations and departments with their ids.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Add an organization, a location (needs --organization and --time-zone), a department
    /// (needs --organization, optionally --location) or a room (needs --organization and
    /// --location). Prints the new id.
    Add {
        /// organization, location, department or room.
        kind: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        organization: Option<String>,
        #[arg(long)]
        location: Option<String>,
        /// IANA time zone of a location (e.g. America/Chicago): appointments are shown in it.
        #[arg(long)]
        time_zone: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a staff account; prints JSON with its id and TOTP provisioning URI.
    Add {
        #[arg(long)]
        username: String,
        /// A built-in role (front_desk, nurse, physician, biller, practice_admin, privacy_officer,
        /// security_officer, auditor) or a custom role's name.
        #[arg(long)]
        role: String,
        /// The organization the account belongs to and the role applies in (default: the
        /// default organization; see `carevault org list`).
        #[arg(long)]
        organization: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Clear an account's lock after repeated failed sign-ins.
    Unlock {
        #[arg(long)]
        username: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain, the Merkle tree, the signed head, and the signed checkpoints and
    /// tree heads (database and file, which must agree); with --witness/--witness-dir, also that
    /// the log extends every tree head kept elsewhere. Exits 0 when intact, 1 naming the first
    /// bad record otherwise. Needs no master key.
    Verify {
        #[command(flatten)]
        data: DataArgs,
        /// A tree head kept off the machine (the JSON `audit head` printed; a file may hold
        /// several, one per line). Repeatable.
        #[arg(long = "witness", value_name = "HEAD.json")]
        witness: Vec<PathBuf>,
        /// A witness folder written by `[audit] witness_dir`: every tree head in it is checked.
        #[arg(long, value_name = "DIR")]
        witness_dir: Option<PathBuf>,
    },
    /// Sign a tree head of the audit log as it stands now and print it as JSON
    /// {"tree_size","root_hash","timestamp","signature","public_key"}: keep it off the machine.
    Head {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print an RFC 9162 proof as JSON (needs no master key).
    Prove {
        #[command(subcommand)]
        proof: ProveCommand,
    },
}

#[derive(Subcommand)]
enum ProveCommand {
    /// That record N is in the tree of the newest signed tree head (or of --tree-size):
    /// {"leaf_index","tree_size","leaf_hash","root_hash","audit_path"}.
    Inclusion {
        /// The record's sequence number (from 1).
        #[arg(long)]
        seq: i64,
        #[arg(long)]
        tree_size: Option<u64>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// That the tree of --to-size records (default: the newest signed tree head) extends the
    /// tree of --from-size records: {"first_size","second_size","first_root","second_root","proof"}.
    Consistency {
        #[arg(long)]
        from_size: u64,
        #[arg(long)]
        to_size: Option<u64>,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
enum Icd10Command {
    /// Import a CMS ICD-10-CM code file (icd10cm_codes_YYYY.txt or icd10cm_order_YYYY.txt from
    /// cms.gov): every line is checked first; codes already present are replaced.
    Import {
        #[command(flatten)]
        data: DataArgs,
        /// The CMS file.
        file: PathBuf,
        /// The release it is, e.g. 2027.
        #[arg(long)]
        release: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Show key versions and how many rows each key seals.
    Status {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Create a new data-key version and re-encrypt existing rows (or resume an interrupted
    /// rotation). The server keeps serving meanwhile.
    Rotate {
        #[command(flatten)]
        data: DataArgs,
        /// Rows re-encrypted per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        // Operator commands: warnings (a repaired file, a finished initialization) to stderr.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn core_config(s: &config::Settings) -> CoreConfig {
    CoreConfig {
        session_idle_secs: s.session_idle_secs,
        session_max_secs: s.session_max_secs,
        password_min_chars: s.password_min_chars,
        break_glass_secs: s.break_glass_secs,
        care_window_days: s.care_window_days,
        document_max_bytes: s.document_max_bytes,
        inactive_account_days: s.inactive_account_days,
        step_up_secs: s.step_up_secs,
        require_approval: s.require_approval,
        invitation_hours: s.invitation_hours,
        // The WebAuthn relying party; `localhost` accepts any port.
        public_origin: s.public_origin.clone().unwrap_or_else(|| "https://localhost:8443".into()),
        min_free_bytes: s.min_free_mb.map(|m| m * 1024 * 1024),
        witness_dir: s.witness_dir.clone(),
        ..CoreConfig::default()
    }
}

async fn open(s: &config::Settings, create: bool, instance: InstanceKind) -> anyhow::Result<Operator> {
    let opts = OpenOptions {
        data_dir: s.data_dir.clone(),
        database_url: s.database_url.clone(),
        master_key_file: s.master_key_file.clone(),
        create,
        instance,
        config: core_config(s),
        clock: Arc::new(SystemClock),
    };
    Ok(Operator::open(opts).await?)
}

fn init_logging(s: &config::Settings) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let path = s.data_dir.join("logs").join("carevault.log");
    let mut o = std::fs::OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let file = o.open(&path).with_context(|| format!("opening {}", path.display()))?;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&s.log).map_err(|_| anyhow::anyhow!("invalid log filter in CAREVAULT_LOG / log"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr.and(Arc::new(file)))
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging: {e}"))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { data, listen } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), listen.as_deref())?;
            serve(s, InstanceKind::Production).await
        }
        Command::Demo { data_dir, listen } => {
            let s = config::load(&data_dir, None, listen.as_deref())?;
            serve(s, InstanceKind::Demo).await
        }
        Command::User { command: UserCommand::Add { username, role, organization, password_stdin, data } } => {
            if !password_stdin {
                bail!("pass --password-stdin and write the password on standard input (passwords on the command line leak into shell history)");
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\n', '\r']);
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open(&s, false, InstanceKind::Production).await?;
            let result = vault.add_user_in(&username, &role, organization.as_deref(), password).await;
            vault.shutdown().await;
            let u = result?;
            println!(
                "{}",
                serde_json::json!({"id": u.id, "username": u.username, "role": u.role, "organization_id": u.organization_id, "otpauth_uri": u.otpauth_uri})
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Org { command: OrgCommand::List { data } } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open(&s, false, InstanceKind::Production).await?;
            let r = vault.units().await;
            vault.shutdown().await;
            for u in r? {
                let parent = [
                    u.organization_id.map(|o| format!("organization={o}")),
                    u.location_id.map(|l| format!("location={l}")),
                    u.time_zone.map(|t| format!("time_zone={t}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
                println!("{:<12} {:<30} {} {parent}", u.kind, u.id, u.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Org { command: OrgCommand::Add { kind, name, organization, location, time_zone, data } } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open(&s, false, InstanceKind::Production).await?;
            let r = vault.add_unit(&kind, &name, organization.as_deref(), location.as_deref(), time_zone.as_deref()).await;
            vault.shutdown().await;
            println!("{}", r?);
            Ok(ExitCode::SUCCESS)
        }
        Command::User { command: UserCommand::Unlock { username, data } } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open(&s, false, InstanceKind::Production).await?;
            let r = vault.unlock_user(&username).await;
            vault.shutdown().await;
            r?;
            println!("unlocked {username}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Verify { data, witness, witness_dir } } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let mut options = carevault_core::VerifyOptions { witness_heads: Vec::new(), witness_dir };
            for path in &witness {
                match read_heads(path) {
                    Ok(heads) => options.witness_heads.extend(heads.into_iter().map(|h| (path.display().to_string(), h))),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            let report = carevault_core::verify_audit_at(&s.data_dir, s.database_url.as_deref(), &options).await?;
            print_verify_report(&report, &s.data_dir);
            Ok(if report.intact() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Audit { command: AuditCommand::Head { data } } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open_any(&s).await?;
            let head = vault.tree_head().await;
            vault.shutdown().await;
            println!("{}", head?.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Prove { proof } } => {
            let (data, json) = match proof {
                ProveCommand::Inclusion { seq, tree_size, data } => {
                    let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
                    let r = carevault_core::prove_inclusion_at(&s.data_dir, s.database_url.as_deref(), seq, tree_size).await?;
                    (data, r.map(|p| p.to_json()))
                }
                ProveCommand::Consistency { from_size, to_size, data } => {
                    let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
                    let r = carevault_core::prove_consistency_at(&s.data_dir, s.database_url.as_deref(), from_size, to_size).await?;
                    (data, r.map(|p| p.to_json()))
                }
            };
            let _ = data;
            match json {
                Ok(v) => {
                    println!("{v}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Icd10 { command: Icd10Command::Import { data, file, release } } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return Ok(ExitCode::from(2));
                }
            };
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open_any(&s).await?;
            let r = vault.import_icd10(&text, &release).await;
            vault.shutdown().await;
            match r {
                Ok(n) => {
                    println!("imported {n} ICD-10-CM codes (release {release})");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Keys { command: KeysCommand::Status { data } } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open_any(&s).await?;
            let st = vault.key_status().await;
            vault.shutdown().await;
            let st = st?;
            println!("current data key: v{}", st.current_version);
            for (v, created) in &st.versions {
                println!("  v{v} created {}", carevault_core::format_instant(*created));
            }
            for (table, v, n) in &st.rows_by_version {
                println!("  {table}: {n} rows sealed with v{v}");
            }
            if st.rows_behind() > 0 {
                println!("rotation unfinished: {} rows still under an older key; run `carevault keys rotate` to resume", st.rows_behind());
            } else {
                println!("all rows are sealed with the current key");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::Rotate { data, batch_size } } => {
            let s = config::load(&data.data_dir, data.config.as_deref(), None)?;
            let vault = open_any(&s).await?;
            let tty = std::io::stderr().is_terminal();
            let r = vault
                .rotate_keys(batch_size, |p| {
                    let width = 30usize;
                    let filled = if p.total == 0 { width } else { (p.done as usize * width / p.total as usize).min(width) };
                    let line = format!(
                        "[{}{}] {}/{} rows re-encrypted under data key v{}{}",
                        "#".repeat(filled),
                        ".".repeat(width - filled),
                        p.done,
                        p.total,
                        p.target_version,
                        if p.resumed { " (resumed)" } else { "" }
                    );
                    let mut e = std::io::stderr().lock();
                    let _ = if tty { write!(e, "\r{line}") } else { writeln!(e, "{line}") };
                    let _ = e.flush();
                })
                .await;
            if tty {
                eprintln!();
            }
            vault.shutdown().await;
            let p = r?;
            println!("key rotation complete: data key v{} is current; {} rows re-encrypted", p.target_version, p.done);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Tree heads from a file: one JSON object, or one per line.
fn read_heads(path: &Path) -> anyhow::Result<Vec<carevault_core::TreeHead>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the witness head {}", path.display()))?;
    let parse = |t: &str| -> anyhow::Result<carevault_core::TreeHead> {
        let v: serde_json::Value = serde_json::from_str(t).map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))?;
        carevault_core::TreeHead::from_json(&v).map_err(|e| anyhow::anyhow!("{}: not a tree head: {e}", path.display()))
    };
    if let Ok(h) = parse(text.trim()) {
        return Ok(vec![h]);
    }
    let heads = text.lines().filter(|l| !l.trim().is_empty()).map(parse).collect::<anyhow::Result<Vec<_>>>()?;
    if heads.is_empty() {
        bail!("{} holds no tree head", path.display());
    }
    Ok(heads)
}

/// What `audit verify` checked, and what it found; never "intact" for a part it did not check.
fn print_verify_report(r: &carevault_core::VerifyReport, data_dir: &Path) {
    println!(
        "audit log: {} records (hash chain and Merkle tree recomputed, root {}), signed head at {}",
        r.records, r.root_hash, r.head_seq
    );
    println!(
        "checkpoints: {} in the database, {} in {}; {} signed tree heads and {} stored block roots checked",
        r.checkpoints_in_database,
        r.checkpoints_in_file,
        data_dir.join("audit").join("checkpoints.log").display(),
        r.tree_heads,
        r.tree_blocks
    );
    if r.witness_heads > 0 {
        println!("witness: the log was checked against {} tree head(s) kept elsewhere", r.witness_heads);
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    match r.first_failure() {
        None => {
            let witness = if r.witness_heads > 0 { ", consistent with every witness head" } else { "" };
            println!("audit verify: OK (hash chain, Merkle tree, signed head, checkpoints and tree heads intact{witness})");
        }
        Some(first) => {
            match first.seq {
                Some(seq) => eprintln!("audit verify: FAILED at record {seq}: {}", first.message),
                None => eprintln!("audit verify: FAILED: {}", first.message),
            }
            for f in r.failures.iter().skip(1).take(20) {
                eprintln!("  also: {}", f.message);
            }
        }
    }
}

/// `keys` commands work on demo folders too.
async fn open_any(s: &config::Settings) -> anyhow::Result<Operator> {
    match open(s, false, InstanceKind::Production).await {
        Err(e) if matches!(e.downcast_ref::<carevault_core::StartupError>(), Some(carevault_core::StartupError::Refused(_))) => {
            open(s, false, InstanceKind::Demo).await
        }
        other => other,
    }
}

async fn serve(s: config::Settings, kind: InstanceKind) -> anyhow::Result<ExitCode> {
    let fresh = !s.data_dir.exists();
    // The log first, so what the vault says while it opens (a repaired checkpoint file, an
    // initialization finished after a crash) is kept.
    carevault_core::prepare_data_dir(&s.data_dir)?;
    init_logging(&s)?;
    if let Some(w) = s.witness_dir.as_ref().filter(|w| !w.is_dir()) {
        tracing::error!(witness_dir = %w.display(), "the audit witness folder does not exist (is the share mounted?); tree heads are not written there until it does");
    }
    let vault = open(&s, true, kind).await?;
    let demo_file = s.data_dir.join("DEMO-ACCOUNTS.txt");
    if kind == InstanceKind::Demo && vault.was_created() {
        let accounts = vault.seed_demo_clinic().await?;
        let mut text = String::from("carevault DEMO accounts (synthetic data only)\n");
        for a in &accounts {
            text.push_str(&format!(
                "  {:<16} role {:<16} password {}  TOTP secret {}\n    {}\n",
                a.user.username,
                a.user.role.as_str(),
                a.password,
                a.user.totp_secret_base32,
                a.user.otpauth_uri
            ));
        }
        write_private(&demo_file, &text)?;
    }
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => carevault_web::TlsSource::Files { cert: cert.clone(), key: key.clone() },
        _ => carevault_web::TlsSource::SelfSigned { dir: s.data_dir.join("tls"), hostnames: origin_host(s.public_origin.as_deref()) },
    };
    if s.public_origin.is_none() && !s.listen.ip().is_loopback() {
        tracing::warn!(listen = %s.listen, "no public_origin is configured: links and the cross-origin check use the listener's address; set [server] public_origin to the address clients use");
    }
    let web = carevault_web::WebConfig {
        body_limit: s.body_limit,
        public_origin: s.public_origin.clone(),
        trusted_proxies: s.trusted_proxies.clone(),
        ..carevault_web::WebConfig::new(s.listen, tls)
    };
    if !s.trusted_proxies.is_empty() {
        tracing::info!(blocks = s.trusted_proxies.len(), "X-Forwarded-For is read from the trusted proxies");
    }
    let server = carevault_web::start(vault.vault().clone(), web).await?;
    let jobs = vault.start_background_jobs();
    print_banner(&s, &vault, &server, fresh, &demo_file).await;
    tracing::info!(addr = %server.local_addr, backend = vault.backend_name(), "listening");
    wait_for_signal().await;
    tracing::info!("shutting down");
    jobs.abort();
    server.stop().await;
    vault.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The host of the public origin, for the generated certificate's names.
fn origin_host(origin: Option<&str>) -> Vec<String> {
    let Some(rest) = origin.and_then(|o| o.strip_prefix("https://")) else { return vec![] };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => rest.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() || host == "localhost" {
        vec![]
    } else {
        vec![host.to_string()]
    }
}

async fn print_banner(s: &config::Settings, vault: &Operator, server: &carevault_web::RunningServer, fresh: bool, demo_file: &Path) {
    let url = format!("https://{}", server.local_addr);
    if vault.instance_kind() == InstanceKind::Demo {
        println!("==================================================================");
        println!(" carevault DEMO - synthetic patients only. Never enter real data.");
        println!("==================================================================");
    }
    println!("carevault {} listening on {url} ({}, data folder {})", env!("CARGO_PKG_VERSION"), vault.backend_name(), s.data_dir.display());
    // Browsers and FHIR clients use the public origin (by default `https://localhost:PORT` on a
    // loopback listener: the WebAuthn relying party and the certificate's name).
    let ui = server.public_origin.clone();
    println!("staff web UI: {ui}/ui/");
    println!("FHIR R4: {ui}/fhir/r4/metadata");
    if fresh || vault.was_created() {
        println!("initialized: data folder, database, master key (keys/master.key - back it up apart from the data), audit signing key");
    }
    if server.generated_certificate {
        println!(
            "generated a self-signed TLS certificate: {} (configure tls_cert/tls_key for a real one)",
            s.data_dir.join("tls").join("cert.pem").display()
        );
    }
    if vault.instance_kind() == InstanceKind::Demo {
        if let Ok(text) = std::fs::read_to_string(demo_file) {
            print!("{text}");
        }
        println!("sign in: open {ui}/ui/ with a demo account; at the first sign-in, \"Show my QR code\" sets up an authenticator app");
        println!("  (or keep the printed TOTP secret: \"Enter its code instead\", e.g. oathtool --totp -b SECRET)");
        println!("API: POST {url}/api/v1/auth/login, then POST {url}/api/v1/auth/mfa/totp");
    } else if vault.user_count().await.unwrap_or(0) == 0 {
        println!("no staff account yet; create the first one with:");
        println!("  carevault user add --username admin --role practice_admin --password-stdin --data-dir {}", s.data_dir.display());
    }
    let _ = std::io::stdout().flush();
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    carevault_core::durable::write_replace(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
