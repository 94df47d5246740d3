//! [`OutboxStats`]: the outbox's lag, as counts and an age.

use std::time::Duration;

use sqlx::{PgPool, Row};

use crate::{error::OutboxError, schema::Schema};

/// A snapshot of an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Committed events not yet acknowledged by the sink.
    pub pending: u64,
    /// Published events still kept (within the relay's retention).
    pub published: u64,
    /// Events parked as dead letters.
    pub dead_letters: u64,
    /// How long the oldest pending event has waited (zero when none is pending).
    pub oldest_pending_age: Duration,
}

impl OutboxStats {
    /// Reads the snapshot in one query.
    pub async fn read(pool: &PgPool, schema: &Schema) -> Result<OutboxStats, OutboxError> {
        let (outbox, dead) = (schema.table("outbox"), schema.table("outbox_dead_letters"));
        let row = sqlx::query(&format!(
            "SELECT \
                (SELECT count(*) FROM {outbox} WHERE published_at IS NULL) AS pending, \
                (SELECT count(*) FROM {outbox} WHERE published_at IS NOT NULL) AS published, \
                (SELECT count(*) FROM {dead}) AS dead_letters, \
                COALESCE((SELECT (extract(epoch FROM now() - min(occurred_at)) * 1000)::bigint \
                          FROM {outbox} WHERE published_at IS NULL), 0) AS oldest_ms"
        ))
        .fetch_one(pool)
        .await?;
        let count = |name: &str| -> Result<u64, OutboxError> {
            Ok(row.try_get::<i64, _>(name)?.max(0) as u64)
        };
        Ok(OutboxStats {
            pending: count("pending")?,
            published: count("published")?,
            dead_letters: count("dead_letters")?,
            oldest_pending_age: Duration::from_millis(count("oldest_ms")?),
        })
    }

    /// Sets the gauges `palisade_outbox_pending`, `palisade_outbox_dead_letters` and
    /// `palisade_outbox_oldest_pending_age_seconds`.
    pub fn record(&self) {
        metrics::gauge!("palisade_outbox_pending").set(self.pending as f64);
        metrics::gauge!("palisade_outbox_dead_letters").set(self.dead_letters as f64);
        metrics::gauge!("palisade_outbox_oldest_pending_age_seconds")
            .set(self.oldest_pending_age.as_secs_f64());
    }
}
