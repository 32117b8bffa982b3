-- carevault schema, version 13 (PostgreSQL): separation of duties.
-- Enrollment invitations: a new account (or one whose second factor was reset) enrols its own
-- authenticator at first sign-in only with the password AND this single-use, expiring code,
-- kept as a keyed hash. Approvals: a change that carries PHI, audit or security permissions
-- (an account, a custom role, a role assignment, a grant) waits here until a privacy or
-- security officer other than the requester approves it; its parameters are sealed.

CREATE TABLE enrollment_invitations (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    code_hash BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    subject_user TEXT,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    summary TEXT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX approvals_state ON approvals (state, requested_at);
CREATE INDEX approvals_subject ON approvals (subject_user, state)
