-- carevault schema, version 4 (PostgreSQL): how many sensitive flags a patient carries, kept with
-- the patient row, so access checks and search need no per-patient subquery.

ALTER TABLE patients ADD COLUMN flag_count BIGINT NOT NULL DEFAULT 0;
UPDATE patients SET flag_count = (SELECT COUNT(*) FROM patient_flags f WHERE f.patient_id = patients.id)
