//! [`DeadLetters`]: events a sink rejected `max_attempts` times, visible and replayable.

use sqlx::{PgPool, Row};

use crate::{error::OutboxError, event::OutboxEvent, relay::Tx, schema::Schema};

/// Moves `event` from the outbox to the dead letters, with `error`, in the relay's transaction.
pub(crate) async fn park(
    tx: &mut Tx<'_>,
    schema: &Schema,
    event: &OutboxEvent,
    error: &str,
) -> Result<(), OutboxError> {
    let (outbox, dead) = (schema.table("outbox"), schema.table("outbox_dead_letters"));
    sqlx::query(&format!(
        "WITH moved AS (DELETE FROM {outbox} WHERE position = $1 RETURNING *) \
         INSERT INTO {dead} (id, aggregatetype, aggregateid, type, payload, sequence, headers, \
                             occurred_at, attempts, error) \
         SELECT id, aggregatetype, aggregateid, type, payload, sequence, headers, occurred_at, \
                attempts + 1, $2 FROM moved \
         ON CONFLICT (id) DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, \
                dead_lettered_at = now()"
    ))
    .bind(event.position)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A parked event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event id.
    pub id: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The event's sequence in its aggregate.
    pub sequence: i64,
    /// The event type.
    pub event_type: String,
    /// The sink's last words.
    pub error: String,
    /// Rejections it went through.
    pub attempts: i32,
}

/// The dead-letter table of an outbox.
///
/// A dead letter is taken out of its aggregate's order: the aggregate's later events are
/// published without it. [`replay`](Self::replay) puts it back in the outbox (same id, same
/// sequence, attempts reset); it is then published after events that followed it — replay is
/// an operator's decision, made knowing that.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    schema: Schema,
}

impl DeadLetters {
    /// The dead letters of the outbox in `schema`.
    pub fn new(schema: Schema) -> DeadLetters {
        DeadLetters { schema }
    }

    /// The oldest `limit` dead letters.
    pub async fn list(&self, pool: &PgPool, limit: i64) -> Result<Vec<DeadLetter>, OutboxError> {
        let rows = sqlx::query(&format!(
            "SELECT id::text AS id, aggregatetype, aggregateid, sequence, type, error, attempts \
             FROM {} ORDER BY dead_lettered_at, id LIMIT $1",
            self.schema.table("outbox_dead_letters")
        ))
        .bind(limit)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    id: row.try_get("id")?,
                    aggregate_type: row.try_get("aggregatetype")?,
                    aggregate_id: row.try_get("aggregateid")?,
                    sequence: row.try_get("sequence")?,
                    event_type: row.try_get("type")?,
                    error: row.try_get("error")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Puts the dead letter `id` back into the outbox for publishing; `false` when there is no
    /// such dead letter.
    pub async fn replay(&self, pool: &PgPool, id: &str) -> Result<bool, OutboxError> {
        let Ok(id) = uuid::Uuid::parse_str(id) else {
            return Ok(false);
        };
        let (outbox, dead) = (
            self.schema.table("outbox"),
            self.schema.table("outbox_dead_letters"),
        );
        let moved = sqlx::query(&format!(
            "WITH moved AS (DELETE FROM {dead} WHERE id = $1::uuid RETURNING *) \
             INSERT INTO {outbox} (id, aggregatetype, aggregateid, type, payload, sequence, \
                                   headers, occurred_at) \
             SELECT id, aggregatetype, aggregateid, type, payload, sequence, headers, occurred_at \
             FROM moved"
        ))
        .bind(id.to_string())
        .execute(pool)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }
}
