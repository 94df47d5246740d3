-- palisade-eventstore, migration 2: commands carried out, for idempotent commands. A row is
-- written in the transaction of the command's append, so a command id is recorded exactly
-- when its events are.
CREATE TABLE IF NOT EXISTS {schema}.processed_commands (
    stream_id   text        NOT NULL,
    command_id  text        NOT NULL,
    version     bigint      NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, command_id)
);
