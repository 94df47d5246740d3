-- palisade-idempotency: one row per idempotent operation (HTTP request or consumed message).
-- `PostgresStore::migrate` runs this (idempotently); it is shipped as a file too, for
-- projects that run their own migration tool. `{table}` is the table name (default
-- `palisade_idempotency`).
CREATE TABLE IF NOT EXISTS {table} (
    -- SHA-256 (hex) of namespace, caller, route and client key: see `RecordKey`.
    id            TEXT        PRIMARY KEY,
    fingerprint   TEXT        NOT NULL,
    state         TEXT        NOT NULL CHECK (state IN ('processing', 'completed', 'released')),
    owner_token   TEXT,
    response      BYTEA,
    failures      INTEGER     NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The lease's end while processing; the retention's end otherwise.
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at);
