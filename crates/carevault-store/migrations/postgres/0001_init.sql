-- carevault schema, version 1 (PostgreSQL). PHI columns hold AES-256-GCM ciphertext only
-- (BYTEA), search columns hold HMAC blind-index tokens only. Times are Unix microseconds.

CREATE TABLE store_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE keys (
    purpose TEXT NOT NULL,
    version BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    public_key BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret BYTEA NOT NULL,
    key_version BIGINT NOT NULL,
    totp_last_step BIGINT,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT,
    active BIGINT NOT NULL,
    is_demo BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    public_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    source_ip TEXT,
    mfa_failures BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    current_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    is_demo BIGINT NOT NULL
);

CREATE TABLE patient_versions (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    version BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    key_version BIGINT NOT NULL,
    name BYTEA NOT NULL,
    birth_date BYTEA NOT NULL,
    telecom BYTEA NOT NULL,
    identifier BYTEA NOT NULL,
    address BYTEA NOT NULL,
    other BYTEA NOT NULL,
    PRIMARY KEY (patient_id, version)
);
CREATE INDEX patient_versions_key_version ON patient_versions (key_version);

CREATE TABLE patient_index (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    kind BIGINT NOT NULL,
    token BYTEA NOT NULL,
    PRIMARY KEY (kind, token, patient_id)
);
CREATE INDEX patient_index_patient ON patient_index (patient_id);
CREATE UNIQUE INDEX patient_index_mrn_unique ON patient_index (token) WHERE kind = 12;

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    session TEXT,
    source_ip TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    patient_id TEXT,
    purpose TEXT,
    details BYTEA,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);

CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    signature BYTEA,
    lock_counter BIGINT NOT NULL
);

CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL,
    at BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    signature BYTEA NOT NULL
);
