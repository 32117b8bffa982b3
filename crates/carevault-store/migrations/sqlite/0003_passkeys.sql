-- carevault schema, version 3 (SQLite): WebAuthn passkeys and ceremony state. The stored
-- passkey (public key, counter) and the ceremony state are sealed (BLOB); the credential id is
-- kept in the clear for lookup and uniqueness.

CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    credential_id BLOB NOT NULL,
    name TEXT NOT NULL,
    passkey BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    CONSTRAINT passkeys_credential_key UNIQUE (credential_id)
);
CREATE INDEX passkeys_user ON passkeys (user_id);

CREATE TABLE webauthn_ceremonies (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL,
    state BLOB NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_user ON webauthn_ceremonies (user_id)
