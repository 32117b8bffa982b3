-- carevault schema, version 11 (SQLite): the chart. Encounters, notes (and their addenda),
-- conditions, documents and consents are rows of one table: plain columns say only what
-- access control, ordering and the signing rules need (kind, patient, parent, status, the
-- SHA-256 of signed content); everything else is a sealed JSON body bound to id and version.
-- Document contents live outside the database as sealed chunk streams (documents/<id>.cvs).

CREATE TABLE records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    patient_id TEXT NOT NULL REFERENCES patients (id),
    parent_id TEXT,
    status TEXT NOT NULL,
    version BIGINT NOT NULL,
    key_version BIGINT NOT NULL,
    body BLOB NOT NULL,
    content_sha256 TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX records_patient ON records (patient_id, kind, created_at);
CREATE INDEX records_parent ON records (parent_id);

-- Consent templates: not patient data. Version 1 of each kind is built in.
CREATE TABLE consent_templates (
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, version)
);

-- ICD-10-CM codes (reference data): the starter set is loaded on first start; the full CMS
-- file with `carevault icd10 import`.
CREATE TABLE icd10_codes (
    code TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    billable BIGINT NOT NULL,
    release TEXT NOT NULL
)
