-- carevault schema, version 2 (SQLite): the access model. Organizations, locations and
-- departments scope role assignments and time-bound grants; care relationships, sensitive
-- record flags and break-glass decide clinical access; alerts feed the officers' queues.
-- Free text that may hold PHI (grant and break-glass reasons, review notes) is sealed (BLOB).

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT organizations_name_key UNIQUE (name)
);

CREATE TABLE locations (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT locations_name_key UNIQUE (organization_id, name)
);

CREATE TABLE departments (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    location_id TEXT REFERENCES locations (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT departments_name_key UNIQUE (organization_id, name)
);

INSERT INTO organizations (id, name, created_at) VALUES ('default', 'Default organization', 0);

CREATE TABLE custom_roles (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    permissions TEXT NOT NULL,
    purposes TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE role_assignments (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    location_id TEXT REFERENCES locations (id),
    department_id TEXT REFERENCES departments (id),
    expires_at BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX role_assignments_user ON role_assignments (user_id);
CREATE INDEX role_assignments_role ON role_assignments (role);

CREATE TABLE access_grants (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    permission TEXT NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    location_id TEXT REFERENCES locations (id),
    department_id TEXT REFERENCES departments (id),
    patient_id TEXT REFERENCES patients (id),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    reason BLOB NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT
);
CREATE INDEX access_grants_user ON access_grants (user_id);

INSERT INTO role_assignments (id, user_id, role, organization_id, location_id, department_id, expires_at, created_by, created_at)
    SELECT 'ra-' || id,
           id,
           CASE role WHEN 'admin' THEN 'practice_admin' WHEN 'clinician' THEN 'physician' ELSE role END,
           'default', NULL, NULL, NULL, 'system:migration-2', created_at
    FROM users;

ALTER TABLE users DROP COLUMN role;
ALTER TABLE users ADD COLUMN organization_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE users ADD COLUMN last_login_at BIGINT;
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;
ALTER TABLE users ADD COLUMN password_changed_at BIGINT;

ALTER TABLE sessions ADD COLUMN authenticated_at BIGINT;
UPDATE sessions SET authenticated_at = created_at;

ALTER TABLE patients ADD COLUMN organization_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE patients ADD COLUMN location_id TEXT REFERENCES locations (id);
ALTER TABLE patients ADD COLUMN department_id TEXT REFERENCES departments (id);
CREATE INDEX patients_organization ON patients (organization_id);

CREATE TABLE care_relationships (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    relation TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT,
    created_by TEXT NOT NULL,
    PRIMARY KEY (patient_id, user_id, relation)
);
CREATE INDEX care_relationships_user ON care_relationships (user_id);

CREATE TABLE patient_flags (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    category TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (patient_id, category)
);

CREATE TABLE break_glass (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    patient_id TEXT NOT NULL REFERENCES patients (id),
    reason_code TEXT NOT NULL,
    reason_text BLOB NOT NULL,
    opened_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    review_state TEXT NOT NULL,
    reviewed_by TEXT,
    reviewed_at BIGINT,
    review_outcome TEXT,
    review_note BLOB
);
CREATE INDEX break_glass_user_patient ON break_glass (user_id, patient_id);
CREATE INDEX break_glass_review ON break_glass (review_state);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject_user TEXT,
    patient_id TEXT,
    reference TEXT,
    raised_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    closed_by TEXT,
    closed_at BIGINT
);
CREATE INDEX alerts_open ON alerts (category, state);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id),
    code_hash BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE allergies (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    patient_id TEXT NOT NULL REFERENCES patients (id),
    recorded_at BIGINT NOT NULL,
    key_version BIGINT NOT NULL,
    body BLOB NOT NULL,
    is_current BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX allergies_patient ON allergies (patient_id, is_current);
CREATE INDEX allergies_key_version ON allergies (key_version);

ALTER TABLE audit_events ADD COLUMN review_flags TEXT
