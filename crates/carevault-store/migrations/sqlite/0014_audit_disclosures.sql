-- carevault schema, version 14 (SQLite): every patient an audit record disclosed, findable.
-- A record that returned several patients' data (a patient search, an appointment list, the
-- waitlist, the break-glass queue) names them in its column disclosed (patient ids separated by
-- a space; part of the hash chain, records written before it existed hash as before), and
-- audit_disclosures holds one row per (record, patient): an index for "who saw patient X",
-- written in the same transaction as the record. Ids only, never PHI.

ALTER TABLE audit_events ADD COLUMN disclosed TEXT;

CREATE TABLE audit_disclosures (
    seq BIGINT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (seq, patient_id)
);

CREATE INDEX audit_disclosures_patient ON audit_disclosures (patient_id, seq);
