//! [`EventStore`]: append with optimistic concurrency, read a stream, read everything in a
//! global order projections can trust, snapshots.

use std::sync::Arc;

use palisade_outbox::Schema;
use serde_json::Value;
use sqlx::{Executor, PgConnection, PgPool, Postgres, Row, Transaction};

use crate::{
    error::StoreError,
    recorded::{Position, RecordedEvent},
};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_eventstore.sql"),
    include_str!("../../migrations/0002_commands.sql"),
];

/// An event to append: type, schema version, payload and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStored {
    /// The event type.
    pub event_type: String,
    /// The schema version of `payload`.
    pub schema_version: u32,
    /// The payload.
    pub payload: Value,
    /// Metadata (defaults to `{}`).
    pub metadata: Value,
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream version the state was taken at.
    pub version: u64,
    /// The state's schema version.
    pub schema_version: u32,
    /// The state.
    pub state: Value,
}

/// An event store on PostgreSQL, in one schema (`event_streams`, `events`, `snapshots`,
/// `projection_checkpoints`; see `migrations/`).
///
/// **Appends** take the caller's transaction, so the same transaction can write outbox events
/// ([`palisade_outbox::Outbox::enqueue`]) and anything else; the stream's row moves from the
/// expected version to the new one with a conditional write (a stale expectation matches
/// nothing: [`StoreError::Conflict`]), and `PRIMARY KEY (stream_id, version)` on the events is
/// the guard behind it.
///
/// **Reading everything** ([`read_all`](Self::read_all)) is in the order of
/// [`Position`] — transaction id, then position — and returns only events of transactions
/// older than the oldest still running. A plain "position > P" reader loses events: positions
/// are allocated when a transaction inserts and commit in another order, so a reader can pass
/// position 8 (committed) while 7 (allocated earlier, committed later) is still invisible, and
/// never come back for it. The price: any transaction with an id assigned, anywhere in the
/// cluster (a prepared one too), holds projections back until it ends — watch the lag, and
/// set `idle_in_transaction_session_timeout`. Transaction ids belong to the cluster: moving
/// the events to another cluster by dump and restore or logical replication (not
/// `pg_upgrade`, which keeps the counter) breaks the order; rebuild every projection after
/// such a move.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    schema: Schema,
    sql: Arc<Sql>,
}

struct Sql {
    create: String,
    advance: String,
    actual: String,
    insert: String,
    read_stream: String,
    read_all: String,
    save_snapshot: String,
    load_snapshot: String,
}

const EVENT_COLUMNS: &str = "stream_id, version, transaction_id::text AS transaction_id, \
     global_position, event_type, schema_version, payload, metadata, \
     to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS recorded_at";

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl EventStore {
    /// The store in `schema` (run [`migrate`](Self::migrate) once).
    pub fn new(pool: PgPool, schema: Schema) -> EventStore {
        let (streams, events, snapshots) = (
            schema.table("event_streams"),
            schema.table("events"),
            schema.table("snapshots"),
        );
        let sql = Sql {
            // A new stream is inserted at its new version (nothing when it exists: a conflict);
            // an existing one moves on only from the expected version (nothing otherwise).
            // No row back = a conflict.
            create: format!(
                "INSERT INTO {streams} (stream_id, aggregate_type, version) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream_id) DO NOTHING RETURNING version"
            ),
            advance: format!(
                "UPDATE {streams} SET version = $3 WHERE stream_id = $1 AND version = $2 \
                 RETURNING version"
            ),
            actual: format!("SELECT version FROM {streams} WHERE stream_id = $1"),
            insert: format!(
                "INSERT INTO {events} (stream_id, version, event_type, schema_version, payload, metadata) \
                 SELECT $1, $2 + e.ord, e.t, e.v, e.p::jsonb, e.m::jsonb \
                 FROM unnest($3::text[], $4::int4[], $5::text[], $6::text[]) \
                      WITH ORDINALITY AS e(t, v, p, m, ord)"
            ),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {events} WHERE stream_id = $1 AND version > $2 \
                 ORDER BY version"
            ),
            read_all: format!(
                "SELECT {EVENT_COLUMNS} FROM {events} \
                 WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
                   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY transaction_id, global_position LIMIT $3"
            ),
            save_snapshot: format!(
                "INSERT INTO {snapshots} (stream_id, version, schema_version, state) \
                 VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (stream_id) DO UPDATE SET \
                 version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, \
                 state = EXCLUDED.state, taken_at = now() \
                 WHERE {snapshots}.version < EXCLUDED.version"
            ),
            load_snapshot: format!(
                "SELECT version, schema_version, state FROM {snapshots} WHERE stream_id = $1"
            ),
        };
        EventStore {
            pool,
            schema,
            sql: Arc::new(sql),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Creates the tables if missing (idempotent; safe for several instances at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("palisade-eventstore:{}", self.schema))
            .execute(&mut *tx)
            .await?;
        for migration in MIGRATIONS {
            tx.execute(
                migration
                    .replace("{schema}", &self.schema.to_string())
                    .as_str(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends `events` to `stream_id` (of `aggregate_type`) in `tx`, if the stream is at
    /// `expected`; answers the new version. On [`StoreError::Conflict`] nothing was written
    /// (the transaction stays usable). Concurrent appends to one stream wait for each other
    /// from this call to commit.
    pub async fn append(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        stream_id: &str,
        aggregate_type: &str,
        expected: u64,
        events: &[NewStored],
    ) -> Result<u64, StoreError> {
        if stream_id.is_empty() || stream_id.len() > 512 {
            return Err(StoreError::Invalid(format!(
                "a stream id is 1 to 512 bytes, not {}",
                stream_id.len()
            )));
        }
        if events.is_empty() {
            return Ok(expected);
        }
        let new_version = expected
            .checked_add(events.len() as u64)
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or_else(|| StoreError::Invalid("the stream version would overflow".into()))?;
        let advanced: Option<i64> = if expected == 0 {
            sqlx::query_scalar(&self.sql.create)
                .bind(stream_id)
                .bind(aggregate_type)
                .bind(to_i64(new_version))
                .fetch_optional(&mut **tx)
                .await?
        } else {
            sqlx::query_scalar(&self.sql.advance)
                .bind(stream_id)
                .bind(to_i64(expected))
                .bind(to_i64(new_version))
                .fetch_optional(&mut **tx)
                .await?
        };
        if advanced.is_none() {
            let actual: Option<i64> = sqlx::query_scalar(&self.sql.actual)
                .bind(stream_id)
                .fetch_optional(&mut **tx)
                .await?;
            return Err(StoreError::Conflict {
                expected,
                actual: actual.unwrap_or(0).max(0) as u64,
            });
        }
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<i32> = events
            .iter()
            .map(|e| i32::try_from(e.schema_version).unwrap_or(i32::MAX))
            .collect();
        let payloads: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
        let metadata: Vec<String> = events
            .iter()
            .map(|e| match &e.metadata {
                Value::Null => "{}".to_owned(),
                other => other.to_string(),
            })
            .collect();
        sqlx::query(&self.sql.insert)
            .bind(stream_id)
            .bind(to_i64(expected))
            .bind(&types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata)
            .execute(&mut **tx)
            .await?;
        Ok(new_version)
    }

    /// Records that command `command_id` brought `stream_id` to `version`, in `tx` (the
    /// command's append); `false` when it was recorded already (a concurrent duplicate won).
    pub async fn record_command(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        stream_id: &str,
        command_id: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO {} (stream_id, command_id, version) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            self.schema.table("processed_commands")
        ))
        .bind(stream_id)
        .bind(command_id)
        .bind(to_i64(version))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// The version command `command_id` brought `stream_id` to, if it was carried out.
    pub async fn command_version(
        &self,
        stream_id: &str,
        command_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT version FROM {} WHERE stream_id = $1 AND command_id = $2",
            self.schema.table("processed_commands")
        ))
        .bind(stream_id)
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(version.map(|v| v.max(0) as u64))
    }

    /// The events of `stream_id` after `after_version`, in order.
    pub async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&self.sql.read_stream)
            .bind(stream_id)
            .bind(to_i64(after_version))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(recorded).collect()
    }

    /// Up to `limit` events after `after` in the global order — only of transactions that
    /// have ended, so a reader that checkpoints the last one it saw never skips an event.
    pub async fn read_all(
        &self,
        after: Position,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.read_all_on(&mut conn, after, limit).await
    }

    /// [`read_all`](Self::read_all) on `conn` (a projection's transaction).
    pub async fn read_all_on(
        &self,
        conn: &mut PgConnection,
        after: Position,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&self.sql.read_all)
            .bind(after.transaction_id.to_string())
            .bind(after.global_position)
            .bind(limit)
            .fetch_all(conn)
            .await?;
        rows.iter().map(recorded).collect()
    }

    /// Stores `snapshot` of `stream_id` in `tx` (kept only if newer than the stored one).
    pub async fn save_snapshot(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        stream_id: &str,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql.save_snapshot)
            .bind(stream_id)
            .bind(to_i64(snapshot.version))
            .bind(i32::try_from(snapshot.schema_version).unwrap_or(i32::MAX))
            .bind(snapshot.state.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The latest snapshot of `stream_id`.
    pub async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(&self.sql.load_snapshot)
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let state: sqlx::types::JsonValue = row.try_get("state")?;
            Ok(Snapshot {
                version: row.try_get::<i64, _>("version")?.max(0) as u64,
                schema_version: row.try_get::<i32, _>("schema_version")?.max(0) as u32,
                state,
            })
        })
        .transpose()
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn recorded(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, StoreError> {
    let transaction_id: String = row.try_get("transaction_id")?;
    Ok(RecordedEvent {
        stream_id: row.try_get("stream_id")?,
        version: row.try_get::<i64, _>("version")?.max(0) as u64,
        position: Position {
            transaction_id: transaction_id.parse().map_err(|_| StoreError::Decode {
                what: "a transaction id".into(),
                reason: format!("{transaction_id:?} is not a number"),
            })?,
            global_position: row.try_get("global_position")?,
        },
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get::<i32, _>("schema_version")?.max(0) as u32,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}
