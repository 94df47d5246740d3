//! [`Relay`]: publishes committed outbox events to a [`Sink`], at least once, in per-aggregate
//! order, with any number of relays running at once.

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use palisade_core::backoff::{self, Jitter};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgListener};

use crate::{
    claim::claim_sql,
    dead_letter,
    error::OutboxError,
    event::OutboxEvent,
    schema::Schema,
    sink::{Sink, SinkError},
};

/// How a [`Relay`] claims, publishes, retries and prunes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Events claimed per transaction (default 256).
    pub batch_size: u32,
    /// How long the relay sleeps when no notification comes (default 1 s). Notifications
    /// (`LISTEN`/`NOTIFY`) wake it within milliseconds of a commit; this is the fallback when
    /// the listening connection is down, and the pace of retrying backed-off events.
    pub poll_interval: Duration,
    /// Rejections after which an event is parked as a dead letter (default 5).
    pub max_attempts: i32,
    /// First wait after a rejection or an unavailable sink (default 100 ms), doubling up to
    /// [`backoff_cap`](Self::backoff_cap), with full jitter.
    pub backoff_base: Duration,
    /// Longest wait before retrying a rejected event (default 30 s). While the sink is
    /// unavailable the relay retries at most every `min(backoff_cap, 5 s)`, so it resumes
    /// within seconds of the broker's return.
    pub backoff_cap: Duration,
    /// How long published rows are kept before they are deleted (default 24 h; `None` keeps
    /// them).
    pub retention: Option<Duration>,
    /// How often published rows past retention are deleted, in batches (default 60 s).
    pub prune_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(30),
            retention: Some(Duration::from_secs(24 * 3600)),
            prune_interval: Duration::from_secs(60),
        }
    }
}

/// What one [`Relay::relay_batch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events claimed.
    pub claimed: usize,
    /// Events the sink acknowledged (marked published).
    pub published: usize,
    /// Events the sink rejected (to be retried after a backoff).
    pub rejected: usize,
    /// Events parked as dead letters in this batch.
    pub dead_lettered: usize,
    /// The sink was unavailable: the rest of the batch was left for later.
    pub unavailable: Option<String>,
}

/// Publishes committed events from the outbox to a [`Sink`].
///
/// Run as many as you like (one per instance, or a few dedicated processes): they share the
/// pending rows with `FOR UPDATE SKIP LOCKED`, and the claim's order rule (see the crate docs)
/// keeps each aggregate's events in sequence on the broker. An event is marked published only
/// after the sink acknowledged it, so a relay killed at any moment loses nothing; it may
/// publish an event twice, which the sink's dedup by event id drops.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, sink: impl palisade_outbox::Sink) -> Result<(), palisade_outbox::OutboxError> {
/// use palisade_outbox::{Relay, RelayConfig, Schema};
///
/// let relay = Relay::new(pool, Schema::new("shop")?, sink, RelayConfig::default());
/// relay.run(tokio::signal::ctrl_c()).await?;
/// # Ok(()) }
/// ```
pub struct Relay<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    pool: PgPool,
    schema: Schema,
    sink: S,
    config: RelayConfig,
    claim: String,
    mark: String,
    reject: String,
    prune: String,
}

impl<S> Clone for Relay<S> {
    fn clone(&self) -> Self {
        Relay {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Sink> Relay<S> {
    /// A relay for the outbox in `schema`, publishing to `sink`.
    pub fn new(pool: PgPool, schema: Schema, sink: S, config: RelayConfig) -> Relay<S> {
        let outbox = schema.table("outbox");
        Relay {
            inner: Arc::new(Inner {
                claim: claim_sql(&schema),
                mark: format!(
                    "UPDATE {outbox} SET published_at = now(), last_error = NULL \
                     WHERE position = ANY($1)"
                ),
                reject: format!(
                    "UPDATE {outbox} SET attempts = attempts + 1, last_error = $2, \
                     available_at = now() + $3 * interval '1 millisecond' WHERE position = $1"
                ),
                prune: format!(
                    "DELETE FROM {outbox} WHERE position IN ( \
                        SELECT position FROM {outbox} \
                        WHERE published_at IS NOT NULL \
                          AND published_at < now() - $1 * interval '1 millisecond' \
                        LIMIT 1000)"
                ),
                pool,
                schema,
                sink,
                config,
            }),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.inner.sink
    }

    /// Relays until `shutdown` completes: drains the pending events batch by batch, then waits
    /// for a `NOTIFY` from a writer (or the poll interval), and prunes published rows past
    /// retention every prune interval. Database and sink failures are logged, counted and
    /// backed off; they never end the loop. A batch in flight when `shutdown` completes is
    /// dropped: its transaction rolls back and its events are claimed again (and deduplicated
    /// by the sink if they were already published).
    pub async fn run(&self, shutdown: impl Future) -> Result<(), OutboxError> {
        palisade_core::shutdown::until(shutdown, self.run_forever())
            .await
            .unwrap_or(Ok(()))
    }

    async fn run_forever(&self) -> Result<(), OutboxError> {
        let config = &self.inner.config;
        let mut listener: Option<PgListener> = None;
        let mut failures = 0u32;
        let mut previous_wait = Duration::ZERO;
        let mut next_prune = tokio::time::Instant::now();
        loop {
            // First, whatever else happens (a backlog, an outage): prune and refresh the lag
            // gauges on time — an outage is when the gauges matter.
            if tokio::time::Instant::now() >= next_prune {
                next_prune = tokio::time::Instant::now() + config.prune_interval;
                if let Err(error) = self.prune().await {
                    tracing::warn!(%error, "outbox relay: pruning failed");
                }
                match crate::stats::OutboxStats::read(&self.inner.pool, &self.inner.schema).await {
                    Ok(stats) => stats.record(),
                    Err(error) => tracing::debug!(%error, "outbox relay: stats not read"),
                }
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            let report = self.relay_batch().await;
            let wait = match &report {
                Ok(report) if report.unavailable.is_none() => {
                    failures = 0;
                    if report.claimed > 0 {
                        continue;
                    }
                    None
                }
                Ok(report) => {
                    tracing::warn!(
                        error = report.unavailable.as_deref().unwrap_or_default(),
                        "outbox relay: sink unavailable, backing off"
                    );
                    Some(())
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox relay: batch failed, backing off");
                    metrics::counter!("palisade_outbox_relay_errors_total").increment(1);
                    Some(())
                }
            };
            if let Some(()) = wait {
                let delay = backoff::delay(
                    Jitter::Full,
                    config.backoff_base,
                    config.backoff_cap.min(Duration::from_secs(5)),
                    failures,
                    previous_wait,
                    palisade_core::random::unit(),
                );
                failures = failures.saturating_add(1);
                previous_wait = delay;
                tokio::time::sleep(delay.max(Duration::from_millis(10))).await;
                continue;
            }
            match listener.as_mut() {
                Some(l) => match tokio::time::timeout(config.poll_interval, l.recv()).await {
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "outbox relay: LISTEN connection lost");
                        listener = None;
                    }
                },
                None => tokio::time::sleep(config.poll_interval).await,
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.inner.pool).await.ok()?;
        listener.listen(&self.inner.schema.channel()).await.ok()?;
        Some(listener)
    }

    /// Claims one batch, publishes it and records the outcome, in one transaction. Called in a
    /// loop by [`run`](Self::run); public for tests and for callers with their own scheduling.
    pub async fn relay_batch(&self) -> Result<BatchReport, OutboxError> {
        let inner = &self.inner;
        let mut tx = inner.pool.begin().await?;
        let rows = sqlx::query(&inner.claim)
            .bind(i64::from(inner.config.batch_size.max(1)))
            .fetch_all(&mut *tx)
            .await?;
        let mut report = BatchReport {
            claimed: rows.len(),
            ..BatchReport::default()
        };
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(report);
        }
        let events = rows
            .iter()
            .map(event_of_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut published = Vec::new();
        let mut rejected = Vec::new();
        let mut blocked: HashSet<(String, String)> = HashSet::new();
        for wave in waves(events) {
            let wave: Vec<OutboxEvent> = wave
                .into_iter()
                .filter(|e| !blocked.contains(&aggregate_of(e)))
                .collect();
            if wave.is_empty() {
                continue;
            }
            let mut results = inner.sink.publish(&wave).await.into_iter();
            for event in wave {
                // A sink that answers fewer results than events says nothing about the rest:
                // they count as unavailable (their aggregates wait), never as published.
                let result = results.next().unwrap_or_else(|| {
                    Err(SinkError::Unavailable(
                        "the sink returned no result for this event".into(),
                    ))
                });
                match result {
                    Ok(()) => published.push(event.position),
                    Err(SinkError::Rejected(why)) => {
                        blocked.insert(aggregate_of(&event));
                        rejected.push((event, why));
                    }
                    Err(SinkError::Unavailable(why)) => {
                        blocked.insert(aggregate_of(&event));
                        report.unavailable.get_or_insert(why);
                    }
                }
            }
            if report.unavailable.is_some() {
                break;
            }
        }
        if !published.is_empty() {
            sqlx::query(&inner.mark)
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        report.published = published.len();
        for (event, why) in rejected {
            if event.attempts + 1 >= inner.config.max_attempts {
                dead_letter::park(&mut tx, &inner.schema, &event, &why).await?;
                report.dead_lettered += 1;
                tracing::error!(event_id = %event.id, error = %why, "outbox: event dead-lettered");
            } else {
                let delay = backoff::delay(
                    Jitter::Full,
                    inner.config.backoff_base,
                    inner.config.backoff_cap,
                    event.attempts.max(0) as u32,
                    Duration::ZERO,
                    palisade_core::random::unit(),
                );
                sqlx::query(&inner.reject)
                    .bind(event.position)
                    .bind(&why)
                    .bind(delay.as_millis() as f64)
                    .execute(&mut *tx)
                    .await?;
                report.rejected += 1;
                tracing::warn!(event_id = %event.id, error = %why, "outbox: sink rejected event");
            }
        }
        tx.commit().await?;
        metrics::counter!("palisade_outbox_published_total").increment(report.published as u64);
        if report.rejected > 0 {
            metrics::counter!("palisade_outbox_publish_errors_total", "kind" => "rejected")
                .increment(report.rejected as u64);
        }
        if report.unavailable.is_some() {
            metrics::counter!("palisade_outbox_publish_errors_total", "kind" => "unavailable")
                .increment(1);
        }
        if report.dead_lettered > 0 {
            metrics::counter!("palisade_outbox_dead_letters_total")
                .increment(report.dead_lettered as u64);
        }
        Ok(report)
    }

    /// Deletes published rows older than the retention, 1000 at a time; how many.
    pub async fn prune(&self) -> Result<u64, OutboxError> {
        let Some(retention) = self.inner.config.retention else {
            return Ok(0);
        };
        let mut total = 0;
        loop {
            let deleted = sqlx::query(&self.inner.prune)
                .bind(retention.as_millis() as f64)
                .execute(&self.inner.pool)
                .await?
                .rows_affected();
            total += deleted;
            if deleted < 1000 {
                return Ok(total);
            }
        }
    }
}

fn aggregate_of(event: &OutboxEvent) -> (String, String) {
    (event.aggregate_type.clone(), event.aggregate_id.clone())
}

/// Splits a claim (in position order) into waves: wave k holds the k-th claimed event of each
/// aggregate. A wave has at most one event per aggregate, so the sink may publish it all at
/// once; wave k+1 goes only after wave k's acknowledgements.
fn waves(events: Vec<OutboxEvent>) -> Vec<Vec<OutboxEvent>> {
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut waves: Vec<Vec<OutboxEvent>> = Vec::new();
    for event in events {
        let k = seen.entry(aggregate_of(&event)).or_default();
        if waves.len() <= *k {
            waves.push(Vec::new());
        }
        waves[*k].push(event);
        *k += 1;
    }
    waves
}

fn event_of_row(row: &sqlx::postgres::PgRow) -> Result<OutboxEvent, OutboxError> {
    let headers: String = row.try_get("headers")?;
    Ok(OutboxEvent {
        position: row.try_get("position")?,
        id: row.try_get("id")?,
        aggregate_type: row.try_get("aggregatetype")?,
        aggregate_id: row.try_get("aggregateid")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("type")?,
        payload: row.try_get("payload")?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        occurred_at: row.try_get("occurred_at")?,
        attempts: row.try_get("attempts")?,
    })
}

/// Keeps the type name short in signatures that take a transaction.
pub(crate) type Tx<'a> = Transaction<'a, Postgres>;

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate: &str, sequence: i64, position: i64) -> OutboxEvent {
        OutboxEvent {
            id: format!("{aggregate}-{sequence}"),
            aggregate_type: "order".into(),
            aggregate_id: aggregate.into(),
            sequence,
            event_type: "order.placed".into(),
            payload: "{}".into(),
            headers: BTreeMap::new(),
            occurred_at: String::new(),
            attempts: 0,
            position,
        }
    }

    #[test]
    fn waves_hold_one_event_per_aggregate_in_sequence() {
        let claim = vec![
            event("a", 1, 1),
            event("b", 1, 2),
            event("a", 2, 3),
            event("c", 1, 4),
            event("a", 3, 5),
            event("b", 2, 6),
        ];
        let ids: Vec<Vec<String>> = waves(claim)
            .into_iter()
            .map(|w| w.into_iter().map(|e| e.id).collect())
            .collect();
        assert_eq!(
            ids,
            vec![vec!["a-1", "b-1", "c-1"], vec!["a-2", "b-2"], vec!["a-3"],]
        );
    }
}
