-- carevault schema, version 7 (PostgreSQL): weekly availability of practitioners at locations
-- (wall-clock minutes in the location's time zone) and appointments (UTC microseconds). The
-- booking rule (no two live appointments of a practitioner overlap) is checked inside the
-- write transaction, which every writer serializes on the audit head.

CREATE TABLE availability (
    id TEXT PRIMARY KEY,
    practitioner_id TEXT NOT NULL REFERENCES practitioners (id),
    location_id TEXT NOT NULL REFERENCES locations (id),
    weekday BIGINT NOT NULL,
    start_minute BIGINT NOT NULL,
    end_minute BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX availability_practitioner ON availability (practitioner_id, location_id);

CREATE TABLE appointments (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients (id),
    practitioner_id TEXT NOT NULL REFERENCES practitioners (id),
    location_id TEXT NOT NULL REFERENCES locations (id),
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX appointments_practitioner_time ON appointments (practitioner_id, start_at);
CREATE INDEX appointments_patient ON appointments (patient_id)
