//! [`ProjectionRunner`]: feeds events in the global order to read-model projections, the
//! read-model write and the checkpoint in one transaction.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, Row};

use super::store::EventStore;
use crate::{
    error::StoreError,
    recorded::{Position, RecordedEvent},
};

/// A read model built from events.
///
/// `create` makes an empty read-model table named `table` (qualified: `schema.name`);
/// `apply` folds one event into the table named `table`. The runner passes the live table's
/// name, or a fresh one while rebuilding, so the same code serves both. A rebuild swaps the
/// fresh table in with `RENAME`, which keeps the names of its indexes and constraints: let
/// PostgreSQL name them (an unnamed `PRIMARY KEY`, `CREATE INDEX ON …`) or derive every name
/// from `table` — a fixed index name would be skipped by `IF NOT EXISTS` on the fresh table.
pub trait Projection: Send + Sync + 'static {
    /// The projection's name (its checkpoint's key).
    fn name(&self) -> &str;

    /// The live read-model table, unqualified (`balances`).
    fn table(&self) -> &str;

    /// Creates the table `table` if it does not exist.
    fn create<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        table: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// Applies `event` to the read model in `table`.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        table: &'a str,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: String,
    /// Its checkpoint: the last event applied.
    pub checkpoint: Position,
    /// Committed events after the checkpoint.
    pub lag: u64,
}

/// Runs projections: each batch takes the projection's transaction-scoped advisory lock (so
/// across instances each projection runs in one place at a time, and moves to another instance
/// as soon as PostgreSQL ends its holder's transaction — at once for a process that died,
/// after TCP keepalive for a half-open connection: set `idle_in_transaction_session_timeout`),
/// reads the events after its checkpoint, applies them and moves the checkpoint — in one
/// transaction, so a read model in this database sees each event exactly once.
#[derive(Clone)]
pub struct ProjectionRunner {
    store: EventStore,
    projections: Vec<Arc<dyn Projection>>,
    batch: i64,
    poll_interval: Duration,
}

impl std::fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field(
                "projections",
                &self
                    .projections
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>(),
            )
            .field("batch", &self.batch)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl ProjectionRunner {
    /// A runner over `store`: batches of 256, polling every 100 ms when caught up.
    pub fn new(store: EventStore) -> ProjectionRunner {
        ProjectionRunner {
            store,
            projections: Vec::new(),
            batch: 256,
            poll_interval: Duration::from_millis(100),
        }
    }

    /// Adds a projection.
    pub fn with(mut self, projection: impl Projection) -> ProjectionRunner {
        self.projections.push(Arc::new(projection));
        self
    }

    /// Events per transaction.
    pub fn batch(mut self, n: i64) -> ProjectionRunner {
        self.batch = n.max(1);
        self
    }

    /// Pause when every projection is caught up.
    pub fn poll_interval(mut self, interval: Duration) -> ProjectionRunner {
        self.poll_interval = interval;
        self
    }

    fn find(&self, name: &str) -> Result<&Arc<dyn Projection>, StoreError> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| StoreError::Invalid(format!("no projection named {name:?}")))
    }

    fn lock_key(&self, name: &str) -> String {
        format!("palisade-projection:{}:{name}", self.store.schema())
    }

    /// Creates every projection's table and checkpoint if missing.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        let mut tx = self.store.pool().begin().await?;
        for projection in &self.projections {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(self.lock_key(projection.name()))
                .execute(&mut *tx)
                .await?;
            let table = self.store.schema().table(projection.table());
            projection.create(&mut tx, &table).await?;
            sqlx::query(&format!(
                "INSERT INTO {} (projection) VALUES ($1) ON CONFLICT DO NOTHING",
                self.store.schema().table("projection_checkpoints")
            ))
            .bind(projection.name())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn checkpoint(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> Result<Position, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT transaction_id::text AS transaction_id, global_position FROM {} \
             WHERE projection = $1",
            self.store.schema().table("projection_checkpoints")
        ))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(Position::START);
        };
        let transaction_id: String = row.try_get("transaction_id")?;
        Ok(Position {
            transaction_id: transaction_id.parse().unwrap_or(0),
            global_position: row.try_get("global_position")?,
        })
    }

    async fn save_checkpoint(
        &self,
        conn: &mut PgConnection,
        name: &str,
        at: Position,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO {} (projection, transaction_id, global_position) \
             VALUES ($1, $2::text::xid8, $3) ON CONFLICT (projection) DO UPDATE SET \
             transaction_id = EXCLUDED.transaction_id, \
             global_position = EXCLUDED.global_position, updated_at = now()",
            self.store.schema().table("projection_checkpoints")
        ))
        .bind(name)
        .bind(at.transaction_id.to_string())
        .bind(at.global_position)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// One batch of `name`: how many events it applied (0 when caught up, or when another
    /// instance holds the projection right now).
    pub async fn catch_up(&self, name: &str) -> Result<usize, StoreError> {
        let projection = self.find(name)?;
        let mut tx = self.store.pool().begin().await?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
            .bind(self.lock_key(name))
            .fetch_one(&mut *tx)
            .await?;
        if !held {
            return Ok(0);
        }
        let after = self.checkpoint(&mut tx, name).await?;
        let events = self.store.read_all_on(&mut tx, after, self.batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(0);
        };
        let table = self.store.schema().table(projection.table());
        for event in &events {
            projection.apply(&mut tx, &table, event).await?;
        }
        self.save_checkpoint(&mut tx, name, last).await?;
        tx.commit().await?;
        metrics::counter!("palisade_projection_events_total", "projection" => name.to_owned())
            .increment(events.len() as u64);
        Ok(events.len())
    }

    /// Runs every projection until `shutdown` completes; failures are logged and retried.
    pub async fn run(&self, shutdown: impl Future) {
        let _ = palisade_core::shutdown::until(shutdown, self.run_forever()).await;
    }

    async fn run_forever(&self) {
        loop {
            let mut busy = false;
            for projection in &self.projections {
                match self.catch_up(projection.name()).await {
                    Ok(n) => busy |= n as i64 == self.batch,
                    Err(error) => {
                        tracing::warn!(projection = projection.name(), %error, "projection batch failed")
                    }
                }
            }
            if !busy {
                tokio::time::sleep(self.poll_interval).await;
            }
        }
    }

    /// Rebuilds `name` from the first event into a fresh table, then swaps it in for the live
    /// one and moves the checkpoint, in one transaction under the projection's lock (the live
    /// read model keeps answering until the swap). Answers the checkpoint it ends at.
    pub async fn rebuild(&self, name: &str) -> Result<Position, StoreError> {
        let projection = self.find(name)?;
        // One rebuild of a projection at a time, across instances: a session lock held on its
        // own connection for the whole rebuild (released if this process dies).
        let mut guard = self.store.pool().acquire().await?;
        let alone: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(format!("{}:rebuild", self.lock_key(name)))
            .fetch_one(&mut *guard)
            .await?;
        if !alone {
            return Err(StoreError::Invalid(format!(
                "a rebuild of {name:?} is already running"
            )));
        }
        let rebuilt = self.rebuild_alone(projection).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(format!("{}:rebuild", self.lock_key(name)))
            .execute(&mut *guard)
            .await;
        rebuilt
    }

    async fn rebuild_alone(
        &self,
        projection: &Arc<dyn Projection>,
    ) -> Result<Position, StoreError> {
        let name = projection.name();
        let schema = self.store.schema();
        let shadow_name = format!("{}_rebuild", projection.table());
        let shadow = schema.table(&shadow_name);
        let mut tx = self.store.pool().begin().await?;
        sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
            .execute(&mut *tx)
            .await?;
        projection.create(&mut tx, &shadow).await?;
        tx.commit().await?;
        let mut at = Position::START;
        loop {
            let mut tx = self.store.pool().begin().await?;
            let events = self.store.read_all_on(&mut tx, at, self.batch).await?;
            for event in &events {
                projection.apply(&mut tx, &shadow, event).await?;
            }
            tx.commit().await?;
            match events.last() {
                Some(last) if events.len() as i64 == self.batch => at = last.position,
                Some(last) => {
                    at = last.position;
                    break;
                }
                None => break,
            }
        }
        let mut tx = self.store.pool().begin().await?;
        // The swap waits for the live batches and for readers of the live table; bounded, so
        // a long reader fails the rebuild instead of stalling everything queued behind it.
        sqlx::query("SET LOCAL lock_timeout = '10s'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(self.lock_key(name))
            .execute(&mut *tx)
            .await?;
        loop {
            let events = self.store.read_all_on(&mut tx, at, self.batch).await?;
            for event in &events {
                projection.apply(&mut tx, &shadow, event).await?;
            }
            match events.last() {
                Some(last) => at = last.position,
                None => break,
            }
        }
        let live = schema.table(projection.table());
        sqlx::query(&format!("DROP TABLE IF EXISTS {live}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "ALTER TABLE {shadow} RENAME TO {}",
            projection.table()
        ))
        .execute(&mut *tx)
        .await?;
        self.save_checkpoint(&mut tx, name, at).await?;
        tx.commit().await?;
        tracing::info!(projection = name, ?at, "projection rebuilt");
        Ok(at)
    }

    /// Every projection's checkpoint and lag (committed events after it).
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, StoreError> {
        let mut conn = self.store.pool().acquire().await?;
        let mut all = Vec::new();
        for projection in &self.projections {
            let checkpoint = self.checkpoint(&mut conn, projection.name()).await?;
            let lag: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {} WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
                self.store.schema().table("events")
            ))
            .bind(checkpoint.transaction_id.to_string())
            .bind(checkpoint.global_position)
            .fetch_one(&mut *conn)
            .await?;
            metrics::gauge!("palisade_projection_lag_events", "projection" => projection.name().to_owned())
                .set(lag as f64);
            all.push(ProjectionStatus {
                name: projection.name().to_owned(),
                checkpoint,
                lag: lag.max(0) as u64,
            });
        }
        Ok(all)
    }
}
