-- carevault schema, version 3 (PostgreSQL): WebAuthn passkeys and ceremony state. The stored
-- passkey (public key, counter) and the ceremony state are sealed (BYTEA); the credential id is
-- kept in the clear for lookup and uniqueness.

CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    credential_id BYTEA NOT NULL,
    name TEXT NOT NULL,
    passkey BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    CONSTRAINT passkeys_credential_key UNIQUE (credential_id)
);
CREATE INDEX passkeys_user ON passkeys (user_id);

CREATE TABLE webauthn_ceremonies (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL,
    state BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_user ON webauthn_ceremonies (user_id)
