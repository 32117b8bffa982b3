-- carevault schema, version 6 (SQLite): practitioners (FHIR Practitioner, identified by their
-- NPI, optionally linked to the staff account they sign in with) and the roles they hold at an
-- organization and its locations (FHIR PractitionerRole). Directory data, not PHI.

CREATE TABLE practitioners (
    id TEXT PRIMARY KEY,
    user_id TEXT REFERENCES users (id),
    npi TEXT NOT NULL,
    family TEXT NOT NULL,
    given TEXT NOT NULL,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT practitioners_npi_key UNIQUE (npi),
    CONSTRAINT practitioners_user_key UNIQUE (user_id)
);

CREATE TABLE practitioner_roles (
    id TEXT PRIMARY KEY,
    practitioner_id TEXT NOT NULL REFERENCES practitioners (id),
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    location_id TEXT REFERENCES locations (id),
    specialty TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX practitioner_roles_practitioner ON practitioner_roles (practitioner_id)
