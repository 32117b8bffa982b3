-- The blind index rebuilt compact. SQLite (WITHOUT ROWID): its rows live in the primary key's B-tree only, instead of
-- a table plus a copy of every row in the primary key's index (about a third of a patient's
-- bytes on disk went to that copy).
CREATE TABLE patient_index_compact (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    kind BIGINT NOT NULL,
    token BLOB NOT NULL,
    PRIMARY KEY (kind, token, patient_id)
) WITHOUT ROWID;
INSERT INTO patient_index_compact (patient_id, kind, token) SELECT patient_id, kind, token FROM patient_index;
DROP TABLE patient_index;
ALTER TABLE patient_index_compact RENAME TO patient_index;
CREATE INDEX patient_index_patient ON patient_index (patient_id);
CREATE UNIQUE INDEX patient_index_mrn_unique ON patient_index (token) WHERE kind = 12;
