-- carevault schema, version 8 (SQLite): every status change of an appointment, kept.

CREATE TABLE appointment_history (
    id TEXT PRIMARY KEY,
    appointment_id TEXT NOT NULL REFERENCES appointments (id),
    at BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    reason TEXT,
    actor TEXT NOT NULL
);
CREATE INDEX appointment_history_appointment ON appointment_history (appointment_id, at)
