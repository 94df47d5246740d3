-- palisade-outbox, migration 1. `{schema}` is replaced by the configured schema name.
--
-- `outbox` keeps the column names Debezium's outbox event router reads by default (`id`,
-- `aggregatetype`, `aggregateid`, `type`, `payload`), so a team can move to log-based CDC
-- later without rewriting its writers. The relay's own columns come after them.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id            uuid        PRIMARY KEY,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       jsonb       NOT NULL,
    sequence      bigint      NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '{}',
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    -- Claim order. Within one aggregate it follows `sequence` (writers of one aggregate are
    -- serialized by its row in `outbox_sequences`); across aggregates it is insertion order.
    position      bigserial   NOT NULL UNIQUE,
    published_at  timestamptz,
    attempts      integer     NOT NULL DEFAULT 0,
    available_at  timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    UNIQUE (aggregatetype, aggregateid, sequence)
);

-- What the relay scans: only unpublished rows, in claim order.
CREATE INDEX IF NOT EXISTS outbox_pending ON {schema}.outbox (position)
    WHERE published_at IS NULL;
-- The per-aggregate order check: an earlier unpublished event of the same aggregate.
CREATE INDEX IF NOT EXISTS outbox_pending_by_aggregate
    ON {schema}.outbox (aggregatetype, aggregateid, sequence) WHERE published_at IS NULL;
-- Retention: published rows, oldest first.
CREATE INDEX IF NOT EXISTS outbox_published ON {schema}.outbox (published_at)
    WHERE published_at IS NOT NULL;

-- The last sequence number given to each aggregate. Its row lock, held until commit, is what
-- makes an aggregate's sequence numbers follow its commit order.
CREATE TABLE IF NOT EXISTS {schema}.outbox_sequences (
    aggregatetype text   NOT NULL,
    aggregateid   text   NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (aggregatetype, aggregateid)
);

-- Events a sink rejected `max_attempts` times, with the last error; replayable.
CREATE TABLE IF NOT EXISTS {schema}.outbox_dead_letters (
    id               uuid        PRIMARY KEY,
    aggregatetype    text        NOT NULL,
    aggregateid      text        NOT NULL,
    type             text        NOT NULL,
    payload          jsonb       NOT NULL,
    sequence         bigint      NOT NULL,
    headers          jsonb       NOT NULL,
    occurred_at      timestamptz NOT NULL,
    attempts         integer     NOT NULL,
    error            text        NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);

-- The inbox: one row per (consumer, event) processed, inserted in the handler's transaction.
CREATE TABLE IF NOT EXISTS {schema}.processed_messages (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Messages a consumer gave up on (undecodable, or failed on their last allowed delivery).
CREATE TABLE IF NOT EXISTS {schema}.consumer_dead_letters (
    consumer         text        NOT NULL,
    event_id         text        NOT NULL,
    subject          text        NOT NULL,
    body             bytea       NOT NULL,
    deliveries       bigint      NOT NULL,
    error            text        NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
