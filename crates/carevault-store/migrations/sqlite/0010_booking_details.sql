-- carevault schema, version 10 (SQLite): appointment types (a name and a duration per
-- organization), the room an appointment holds, recurring series, and the waitlist that is
-- offered freed slots.

CREATE TABLE appointment_types (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    minutes BIGINT NOT NULL,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT appointment_types_code_key UNIQUE (organization_id, code)
);

ALTER TABLE appointments ADD COLUMN room_id TEXT REFERENCES rooms (id);
ALTER TABLE appointments ADD COLUMN type_id TEXT REFERENCES appointment_types (id);
ALTER TABLE appointments ADD COLUMN series_id TEXT;
CREATE INDEX appointments_room_time ON appointments (room_id, start_at);
CREATE INDEX appointments_location_time ON appointments (location_id, start_at);
CREATE INDEX appointments_series ON appointments (series_id);

CREATE TABLE waitlist (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients (id),
    practitioner_id TEXT NOT NULL REFERENCES practitioners (id),
    location_id TEXT NOT NULL REFERENCES locations (id),
    minutes BIGINT NOT NULL,
    earliest_at BIGINT NOT NULL,
    latest_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    offered_start BIGINT,
    offered_end BIGINT,
    offered_at BIGINT,
    appointment_id TEXT REFERENCES appointments (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX waitlist_open ON waitlist (practitioner_id, location_id, status, created_at)
