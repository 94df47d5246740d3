-- palisade-saga, migration 1. `{schema}` is replaced by the configured schema name.
CREATE SCHEMA IF NOT EXISTS {schema};

-- One row per saga: its definition, input, state (every step's status, written before and
-- after each step) and the lease of the instance driving it.
CREATE TABLE IF NOT EXISTS {schema}.sagas (
    saga_id     text        PRIMARY KEY,
    definition  text        NOT NULL,
    status      text        NOT NULL,
    state       jsonb       NOT NULL,
    input       jsonb       NOT NULL,
    deadline    timestamptz,
    lease_owner text,
    -- A fresh token per claim: writes and renewals must carry it, so a driver whose lease was
    -- taken over (even by another driver in the same process) can never write again.
    lease_token text,
    lease_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sagas_unfinished ON {schema}.sagas (updated_at)
    WHERE status IN ('running', 'compensating');
