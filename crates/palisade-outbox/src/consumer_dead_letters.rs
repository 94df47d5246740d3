//! [`ConsumerDeadLetters`]: messages a consumer gave up on.

use sqlx::PgPool;

use crate::{error::OutboxError, schema::Schema};

/// Where consumers park what they cannot process: a message that does not decode, or one whose
/// handler still failed on its last allowed delivery. Rows of `consumer_dead_letters`, keyed
/// by consumer and event id (a message without one is keyed by its broker position).
#[derive(Debug, Clone)]
pub struct ConsumerDeadLetters {
    pool: PgPool,
    insert: String,
    count: String,
}

/// One parked message, as a consumer reports it.
#[derive(Debug, Clone, Copy)]
pub struct Parked<'a> {
    /// The consumer's name.
    pub consumer: &'a str,
    /// The event id (or the broker's position when the message has none).
    pub event_id: &'a str,
    /// The subject or stream it came from.
    pub subject: &'a str,
    /// The raw body.
    pub body: &'a [u8],
    /// How many times it was delivered.
    pub deliveries: u64,
    /// Why it was parked.
    pub error: &'a str,
}

impl ConsumerDeadLetters {
    /// The consumer dead letters in `schema` (run [`Schema::migrate`] first).
    pub fn new(pool: PgPool, schema: &Schema) -> ConsumerDeadLetters {
        let table = schema.table("consumer_dead_letters");
        ConsumerDeadLetters {
            pool,
            insert: format!(
                "INSERT INTO {table} (consumer, event_id, subject, body, deliveries, error) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (consumer, event_id) DO UPDATE SET deliveries = EXCLUDED.deliveries, \
                 error = EXCLUDED.error, dead_lettered_at = now()"
            ),
            count: format!("SELECT count(*) FROM {table} WHERE consumer = $1"),
        }
    }

    /// Parks a message.
    pub async fn park(&self, parked: Parked<'_>) -> Result<(), OutboxError> {
        sqlx::query(&self.insert)
            .bind(parked.consumer)
            .bind(parked.event_id)
            .bind(parked.subject)
            .bind(parked.body)
            .bind(i64::try_from(parked.deliveries).unwrap_or(i64::MAX))
            .bind(parked.error)
            .execute(&self.pool)
            .await?;
        metrics::counter!("palisade_consumer_dead_letters_total", "consumer" => parked.consumer.to_owned())
            .increment(1);
        Ok(())
    }

    /// How many messages `consumer` has parked.
    pub async fn count(&self, consumer: &str) -> Result<u64, OutboxError> {
        let n: i64 = sqlx::query_scalar(&self.count)
            .bind(consumer)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }
}
