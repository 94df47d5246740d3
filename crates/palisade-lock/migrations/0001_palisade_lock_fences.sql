-- palisade-lock: fencing counters for PostgreSQL advisory locks, and the last token each
-- fenced resource accepted. `PgAdvisoryLock::migrate` runs this (idempotently).
CREATE TABLE IF NOT EXISTS palisade_lock_fences (
    name  TEXT   PRIMARY KEY,
    fence BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS palisade_fenced_resources (
    resource TEXT   PRIMARY KEY,
    fence    BIGINT NOT NULL
);
