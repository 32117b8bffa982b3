-- carevault schema, version 5 (SQLite): each location's time zone (appointments are stored in
-- UTC and shown in the location's zone) and the rooms of a location.

ALTER TABLE locations ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    location_id TEXT NOT NULL REFERENCES locations (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT rooms_name_key UNIQUE (location_id, name)
)
