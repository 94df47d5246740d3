-- palisade-eventstore, migration 1. `{schema}` is replaced by the configured schema name.
CREATE SCHEMA IF NOT EXISTS {schema};

-- One row per stream: its current version. Appends move it from the expected version to the
-- new one with a conditional UPDATE (or INSERT for a new stream); its row lock serializes
-- concurrent appends to one stream, and a stale expected version matches nothing.
CREATE TABLE IF NOT EXISTS {schema}.event_streams (
    stream_id      text   PRIMARY KEY,
    aggregate_type text   NOT NULL,
    version        bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.events (
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL,
    -- The global order is (transaction_id, global_position): positions are allocated in
    -- concurrent transactions and commit out of order, so readers of "everything after P"
    -- only read events of transactions older than every transaction still running
    -- (`pg_snapshot_xmin`), and order by transaction first.
    global_position bigserial   NOT NULL UNIQUE,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The guard behind the version check: two appends can never both write version n.
    PRIMARY KEY (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_global_order
    ON {schema}.events (transaction_id, global_position);

-- The latest snapshot of a stream (every N events).
CREATE TABLE IF NOT EXISTS {schema}.snapshots (
    stream_id      text        PRIMARY KEY,
    version        bigint      NOT NULL,
    schema_version integer     NOT NULL,
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now()
);

-- Where each projection is in the global order; written in the same transaction as its read
-- model.
CREATE TABLE IF NOT EXISTS {schema}.projection_checkpoints (
    projection      text        PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT '0',
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
