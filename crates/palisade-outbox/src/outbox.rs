//! [`Outbox`]: writes events inside the caller's transaction.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::{error::OutboxError, event::NewEvent, schema::Schema};

/// The writer side of the transactional outbox.
///
/// [`enqueue`](Self::enqueue) writes an event with the same transaction as the business rows,
/// so the event commits or rolls back with them — there is no "committed but not published"
/// window to lose it in, and no "published but rolled back" event. A
/// [`Relay`](crate::Relay) publishes committed events afterwards, at least once.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), palisade_outbox::OutboxError> {
/// use palisade_outbox::{NewEvent, Outbox, Schema};
///
/// let schema = Schema::new("shop")?;
/// schema.migrate(&pool).await?;
/// let outbox = Outbox::new(schema);
///
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO shop_orders (id) VALUES ($1)").bind("o-1").execute(&mut *tx).await?;
/// outbox
///     .enqueue(&mut tx, NewEvent::new("order", "o-1", "order.placed", serde_json::json!({})))
///     .await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    insert: String,
}

/// What [`Outbox::enqueue`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The event id.
    pub id: Uuid,
    /// The event's sequence number among its aggregate's events (1, 2, …).
    pub sequence: i64,
}

impl Outbox {
    /// A writer for the outbox in `schema` (run [`Schema::migrate`] once first).
    pub fn new(schema: Schema) -> Outbox {
        // One statement, one round trip: the aggregate's next sequence number (its row stays
        // locked until commit, so an aggregate's numbers follow its commit order and have no
        // gaps), the event row, and the NOTIFY that wakes relays — delivered only on commit.
        let insert = format!(
            "WITH seq AS ( \
                INSERT INTO {sequences} AS s (aggregatetype, aggregateid, last_sequence) \
                VALUES ($2, $3, 1) \
                ON CONFLICT (aggregatetype, aggregateid) \
                DO UPDATE SET last_sequence = s.last_sequence + 1 \
                RETURNING last_sequence \
             ), ins AS ( \
                INSERT INTO {outbox} (id, aggregatetype, aggregateid, type, payload, sequence, headers) \
                SELECT $1::uuid, $2, $3, $4, $5::jsonb, last_sequence, $6::jsonb FROM seq \
                RETURNING sequence \
             ) \
             SELECT ins.sequence FROM ins CROSS JOIN LATERAL pg_notify($7, '') AS woken",
            sequences = schema.table("outbox_sequences"),
            outbox = schema.table("outbox"),
        );
        Outbox {
            insert: insert.replace("$7", &format!("'{}'", schema.channel())),
        }
    }

    /// Writes `event` in `tx`; it is published only if and after `tx` commits.
    ///
    /// Two transactions writing events of the same aggregate are serialized from this call to
    /// their commit (the aggregate's sequence row is locked), which is what keeps sequence order
    /// equal to commit order.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: NewEvent,
    ) -> Result<Enqueued, OutboxError> {
        event.validate()?;
        let headers = serde_json::to_string(event.headers())
            .map_err(|e| OutboxError::InvalidEvent(e.to_string()))?;
        let sequence: i64 = sqlx::query_scalar(&self.insert)
            .bind(event.id().to_string())
            .bind(event.aggregate_type())
            .bind(event.aggregate_id())
            .bind(event.event_type())
            .bind(event.payload().to_string())
            .bind(headers)
            .fetch_one(&mut **tx)
            .await?;
        Ok(Enqueued {
            id: event.id(),
            sequence,
        })
    }
}
