-- The access generation: moved on by every committed change to accounts, sessions, roles,
-- assignments and grants, in that change's transaction. Servers cache sessions and privileges
-- under the generation they read them at, and read it again on every request (one indexed row),
-- so a change made by any process is seen on the very next request.
CREATE TABLE access_generation (
    id INTEGER PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO access_generation (id, n) VALUES (1, 0);
