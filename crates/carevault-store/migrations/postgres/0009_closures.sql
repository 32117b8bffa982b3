-- carevault schema, version 9 (PostgreSQL): closures of a location (holidays) or of one
-- practitioner there (leave), as UTC intervals computed from local dates.

CREATE TABLE closures (
    id TEXT PRIMARY KEY,
    location_id TEXT NOT NULL REFERENCES locations (id),
    practitioner_id TEXT REFERENCES practitioners (id),
    kind TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX closures_location ON closures (location_id, start_at)
