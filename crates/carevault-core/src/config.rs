/// Settings of the core. The binary fills it from the config file and the environment.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// A session unused for this long ends (server-enforced). Default 15 minutes.
    pub session_idle_secs: i64,
    /// A session ends this long after sign-in, whatever its use. Default 12 hours.
    pub session_max_secs: i64,
    /// Time allowed between password and second factor. Default 5 minutes.
    pub mfa_pending_secs: i64,
    /// Password hashes computed at once (each ≈ 19 MiB and tens of ms of CPU).
    pub hash_concurrency: usize,
    /// Consecutive failures after which an account is locked for a growing delay.
    pub lockout_threshold: i64,
    /// Consecutive failures after which an account is locked until an administrator unlocks it.
    pub lockout_hard_limit: i64,
    /// Failed sign-ins allowed per source address in `ip_window_secs`, across all names (password
    /// spraying). From half of it on, each failure doubles the address's wait. Default 100: a
    /// clinic behind one NAT or proxy is not locked out by its staff's typos.
    pub ip_failure_limit: u32,
    /// Failed sign-ins allowed per name (known or not) from one address in `ip_window_secs`, with
    /// the same backoff from half of it on. Default 10.
    pub pair_failure_limit: u32,
    pub ip_window_secs: i64,
    /// Requests without a valid session are audited once per source address and this window:
    /// the first at once, the rest as one record carrying their count. Default 60 s.
    pub unauthenticated_window_secs: i64,
    /// A signed checkpoint is written after this many audit events (and at least every
    /// `checkpoint_interval_secs` while events arrive).
    pub checkpoint_every: i64,
    pub checkpoint_interval_secs: i64,
    /// Name shown by authenticator apps.
    pub totp_issuer: String,
    /// Minimum password length (NIST SP 800-63B: never below 8). Default 12.
    pub password_min_chars: usize,
    /// Exports, break-glass, role and MFA changes need a sign-in proven this recently. Default 5 minutes.
    pub step_up_secs: i64,
    /// How long a break-glass opens a record. Default 60 minutes.
    pub break_glass_secs: i64,
    /// Accounts unused this long are deactivated automatically (0 disables). Default 90 days.
    pub inactive_account_days: i64,
    /// Longest time-bound grant. Default 30 days.
    pub grant_max_days: i64,
    /// Where staff open carevault (`https://host[:port]`); its host is the WebAuthn
    /// relying-party id, so it must be a domain name. Default `https://localhost:8443`
    /// (`localhost` accepts any port).
    pub public_origin: String,
    /// An appointment with a practitioner, or an encounter a user opened, gives that user a
    /// care relationship with the patient for this many days either side. Default 30.
    pub care_window_days: i64,
    /// Largest document upload, in bytes. Default 25 MiB.
    pub document_max_bytes: usize,
    /// Free space (bytes) to keep on the data folder's disk: below it changes are refused with
    /// 503 while reads and sign-ins go on. `None`: 5 % of the disk, at least 8 MiB and at most
    /// 512 MiB. `Some(0)` disables the reserve.
    pub min_free_bytes: Option<u64>,
    /// A folder on another disk or share where every signed tree head is appended too.
    pub witness_dir: Option<std::path::PathBuf>,
    /// Jobs the audit writer queues before callers wait. Default 8192.
    pub writer_queue: usize,
    /// Privileged changes (accounts, custom roles, assignments and grants carrying PHI, audit
    /// or security permissions) wait for a second officer's approval. Default on; an
    /// installation with a single officer may turn it off (the security alert remains).
    pub require_approval: bool,
    /// How long an enrollment invitation stays valid. Default 72 hours.
    pub invitation_hours: i64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            session_idle_secs: 15 * 60,
            session_max_secs: 12 * 3600,
            mfa_pending_secs: 5 * 60,
            hash_concurrency: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(1),
            lockout_threshold: 5,
            lockout_hard_limit: 100,
            ip_failure_limit: 100,
            pair_failure_limit: 10,
            ip_window_secs: 600,
            unauthenticated_window_secs: 60,
            checkpoint_every: 256,
            checkpoint_interval_secs: 10,
            totp_issuer: "carevault".to_string(),
            password_min_chars: crate::auth::MIN_PASSWORD_CHARS,
            step_up_secs: 5 * 60,
            break_glass_secs: 60 * 60,
            inactive_account_days: 90,
            grant_max_days: 30,
            public_origin: "https://localhost:8443".to_string(),
            care_window_days: 30,
            document_max_bytes: 25 * 1024 * 1024,
            min_free_bytes: None,
            witness_dir: None,
            writer_queue: 8192,
            require_approval: true,
            invitation_hours: 72,
        }
    }
}
