//! [`PostgresStore`]: durable records in a PostgreSQL table.

use std::time::Duration;

use bytes::Bytes;
use palisade_core::BackendError;
use sqlx::{PgPool, Row};

use super::{Claim, Failed, IdempotencyStore, Owner, RecordKey};

/// The shipped migration; `{table}` stands for the table name.
pub const MIGRATION: &str = include_str!("../../migrations/0001_palisade_idempotency.sql");

/// Default bound on one statement, including waiting for a pooled connection.
pub const DEFAULT_PG_TIMEOUT: Duration = Duration::from_secs(2);

/// Idempotency records in PostgreSQL: the durable source of truth.
///
/// The table (see [`MIGRATION`], run by [`migrate`](Self::migrate)) has the record key as its
/// primary key. A claim is **insert first**: one `INSERT … ON CONFLICT DO UPDATE … WHERE
/// expired or released` statement, so of any number of concurrent claims exactly one inserts
/// (or takes over an expired row) and the others see the row — processing or completed — with
/// a second `SELECT`. Completing, releasing and renewing are single `UPDATE`s conditioned on
/// the owner token. Times come from the database's `now()`, so instances' clocks do not
/// matter.
///
/// Expired rows are skipped by every query and deleted in batches by
/// [`delete_expired`](Self::delete_expired) (run it from a periodic job).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use palisade_idempotency::PostgresStore;
///
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// let store = PostgresStore::new(pool);
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    table: String,
    timeout: Duration,
}

/// A table name that is not a plain (optionally schema-qualified) SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid table name {0:?}: use letters, digits and underscores, optionally schema.table")]
pub struct InvalidTableName(pub String);

impl PostgresStore {
    /// A store on `pool` using the table `palisade_idempotency`.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore {
            pool,
            table: "palisade_idempotency".to_owned(),
            timeout: DEFAULT_PG_TIMEOUT,
        }
    }

    /// Uses another table (`name` or `schema.name`).
    pub fn with_table(mut self, table: &str) -> Result<Self, InvalidTableName> {
        let valid = !table.is_empty()
            && table.split('.').count() <= 2
            && table.split('.').all(|part| {
                !part.is_empty()
                    && !part.starts_with(|c: char| c.is_ascii_digit())
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !valid {
            return Err(InvalidTableName(table.to_owned()));
        }
        self.table = table.to_owned();
        Ok(self)
    }

    /// The bound on one statement (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table and its index if they do not exist.
    pub async fn migrate(&self) -> Result<(), BackendError> {
        let sql = MIGRATION
            .replace(
                "{table}_expires_at",
                &format!("{}_expires_at", self.table.replace('.', "_")),
            )
            .replace("{table}", &self.table);
        self.bounded(sqlx::raw_sql(&sql).execute(&self.pool))
            .await
            .map(|_| ())
    }

    /// Deletes expired rows `batch` at a time (pausing `pause` between batches so the table is
    /// never locked for long) and returns how many were deleted.
    pub async fn delete_expired(&self, batch: u32, pause: Duration) -> Result<u64, BackendError> {
        let sql = format!(
            "DELETE FROM {t} WHERE id IN \
             (SELECT id FROM {t} WHERE expires_at < now() LIMIT $1 FOR UPDATE SKIP LOCKED)",
            t = self.table
        );
        let mut total = 0;
        loop {
            let deleted = self
                .bounded(sqlx::query(&sql).bind(i64::from(batch)).execute(&self.pool))
                .await?
                .rows_affected();
            total += deleted;
            if deleted < u64::from(batch) {
                return Ok(total);
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn bounded<T>(
        &self,
        query: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(error)),
            Err(_) => Err(BackendError::Timeout(self.timeout)),
        }
    }
}

fn classify(error: sqlx::Error) -> BackendError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => BackendError::Protocol(error.to_string()),
        sqlx::Error::Database(db) => BackendError::Protocol(db.to_string()),
        other => BackendError::Unavailable(other.to_string()),
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64().max(0.001)
}

impl IdempotencyStore for PostgresStore {
    async fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Claim, BackendError> {
        let insert = format!(
            "INSERT INTO {t} AS r (id, fingerprint, state, owner_token, expires_at) \
             VALUES ($1, $2, 'processing', $3, now() + make_interval(secs => $4)) \
             ON CONFLICT (id) DO UPDATE SET \
               fingerprint = EXCLUDED.fingerprint, state = 'processing', \
               owner_token = EXCLUDED.owner_token, response = NULL, \
               expires_at = EXCLUDED.expires_at, created_at = now(), \
               failures = CASE WHEN r.state = 'released' AND r.expires_at > now() \
                          THEN r.failures ELSE 0 END \
             WHERE r.expires_at <= now() OR r.state = 'released' \
             RETURNING id",
            t = self.table
        );
        let select = format!(
            "SELECT state, fingerprint = $2 AS same, response, \
               GREATEST(0, (EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::bigint) AS left_ms \
             FROM {t} WHERE id = $1 AND expires_at > now()",
            t = self.table
        );
        // The row can vanish between the two statements (expired and swept): claim again.
        for _ in 0..3 {
            let inserted = self
                .bounded(
                    sqlx::query(&insert)
                        .bind(key.as_str())
                        .bind(fingerprint)
                        .bind(owner.as_str())
                        .bind(seconds(lease))
                        .fetch_optional(&self.pool),
                )
                .await?;
            if inserted.is_some() {
                return Ok(Claim::Acquired);
            }
            let row = self
                .bounded(
                    sqlx::query(&select)
                        .bind(key.as_str())
                        .bind(fingerprint)
                        .fetch_optional(&self.pool),
                )
                .await?;
            let Some(row) = row else { continue };
            let state: String = row.try_get("state").map_err(classify)?;
            let same: bool = row.try_get("same").map_err(classify)?;
            if state == "released" {
                continue;
            }
            if !same {
                return Ok(Claim::Mismatch);
            }
            if state == "processing" {
                let left: i64 = row.try_get("left_ms").map_err(classify)?;
                return Ok(Claim::InFlight {
                    lease_left: Duration::from_millis(left.max(0) as u64),
                });
            }
            let response: Option<Vec<u8>> = row.try_get("response").map_err(classify)?;
            return match response {
                Some(bytes) => Ok(Claim::Completed(Bytes::from(bytes))),
                None => Err(BackendError::Protocol(
                    "completed record without a response".to_owned(),
                )),
            };
        }
        Err(BackendError::Unavailable(
            "the record kept changing during the claim".to_owned(),
        ))
    }

    async fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: Bytes,
        retention: Duration,
    ) -> Result<bool, BackendError> {
        let sql = format!(
            "UPDATE {t} SET state = 'completed', response = $3, owner_token = NULL, \
               expires_at = now() + make_interval(secs => $4) \
             WHERE id = $1 AND state = 'processing' AND owner_token = $2 AND expires_at > now()",
            t = self.table
        );
        let done = self
            .bounded(
                sqlx::query(&sql)
                    .bind(key.as_str())
                    .bind(owner.as_str())
                    .bind(response.as_ref())
                    .bind(seconds(retention))
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
    ) -> Result<Option<Failed>, BackendError> {
        let sql = format!(
            "UPDATE {t} SET \
               state = CASE WHEN failures + 1 >= $4 THEN 'completed' ELSE 'released' END, \
               response = CASE WHEN failures + 1 >= $4 THEN $5 ELSE NULL END, \
               owner_token = NULL, failures = failures + 1, \
               expires_at = now() + make_interval(secs => $3) \
             WHERE id = $1 AND state = 'processing' AND owner_token = $2 AND expires_at > now() \
             RETURNING failures, state",
            t = self.table
        );
        let row = self
            .bounded(
                sqlx::query(&sql)
                    .bind(key.as_str())
                    .bind(owner.as_str())
                    .bind(seconds(retention))
                    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
                    .bind(dead.as_ref())
                    .fetch_optional(&self.pool),
            )
            .await?;
        match row {
            Some(row) => {
                let failures: i32 = row.try_get("failures").map_err(classify)?;
                let state: String = row.try_get("state").map_err(classify)?;
                Ok(Some(Failed {
                    attempts: failures.max(0) as u32,
                    retired: state == "completed",
                }))
            }
            None => Ok(None),
        }
    }

    async fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<bool, BackendError> {
        let sql = format!(
            "UPDATE {t} SET expires_at = now() + make_interval(secs => $3) \
             WHERE id = $1 AND state = 'processing' AND owner_token = $2 AND expires_at > now()",
            t = self.table
        );
        let done = self
            .bounded(
                sqlx::query(&sql)
                    .bind(key.as_str())
                    .bind(owner.as_str())
                    .bind(seconds(lease))
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
