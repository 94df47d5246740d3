//! Event messaging for tower services: a **transactional outbox** on PostgreSQL, **relays**
//! that publish it to NATS JetStream or Redis Streams with broker-side deduplication, and
//! **idempotent consumers** (an inbox) as tower services.
//!
//! A dual write — commit, then publish — loses the event when the process dies in between, and
//! publishes events of transactions that then roll back. The outbox writes the event in the
//! business transaction; a relay publishes committed events afterwards, at least once; the
//! broker drops duplicates by event id; the consumer's inbox records each event id in the same
//! transaction as the handler's writes.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use palisade_outbox::{NewEvent, Outbox, Relay, RelayConfig, Schema};
//! # #[cfg(feature = "nats")] {
//! use palisade_outbox::jetstream::{JetStreamSink, ensure_stream};
//!
//! let schema = Schema::new("shop")?;
//! schema.migrate(&pool).await?;
//!
//! // Write: the event commits or rolls back with the order.
//! let outbox = Outbox::new(schema.clone());
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO shop.orders (id) VALUES ('o-1')").execute(&mut *tx).await?;
//! outbox.enqueue(&mut tx, NewEvent::new("order", "o-1", "order.placed", serde_json::json!({}))).await?;
//! tx.commit().await?;
//!
//! // Relay (any number of them): committed events to JetStream, `Nats-Msg-Id` = event id.
//! let nats = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let context = async_nats::jetstream::new(nats);
//! ensure_stream(&context, "ORDERS", "orders", std::time::Duration::from_secs(120)).await?;
//! let relay = Relay::new(pool, schema, JetStreamSink::new(context, "orders"), RelayConfig::default());
//! relay.run(tokio::signal::ctrl_c()).await?;
//! # }
//! # Ok(()) }
//! ```
//!
//! # What is guaranteed, and how
//!
//! - **No lost event, no phantom event.** [`Outbox::enqueue`] takes the caller's transaction.
//!   A relay marks an event published only after the sink acknowledged it, in the same
//!   transaction that claimed it; a relay killed at any point leaves the event to be claimed
//!   again.
//! - **Per-aggregate order with several relays.** Writers of one aggregate are serialized by its
//!   row in `outbox_sequences` until commit, so sequence numbers follow commit order without
//!   gaps. Relays claim with `FOR UPDATE SKIP LOCKED`, keeping only events with no *earlier*
//!   unpublished event of their aggregate outside the claim (the oldest-unpublished rule), and
//!   publish an aggregate's events one acknowledgement at a time (events of different
//!   aggregates in one wave, pipelined). So the broker receives event n before n+1.
//! - **At least once to the broker, deduplicated there.** JetStream drops a message whose
//!   `Nats-Msg-Id` it saw within the stream's duplicate window; the Redis Streams sink adds an
//!   entry only once per event id (a script, within a configured window). A republish after
//!   the window would be a duplicate: keep the window longer than a relay can be stuck.
//! - **Failures.** An unavailable sink backs off (shared backoff, full jitter) and never counts
//!   against an event; a sink that *rejects* an event retries it with backoff and, after
//!   `max_attempts`, parks it in `outbox_dead_letters` ([`DeadLetters`], replayable). A parked
//!   event no longer holds back its aggregate's later events.
//! - **Consumers.** [`InboxLayer`] makes a handler effectively once for its writes in the same
//!   PostgreSQL database, at least once beyond it. Consumers ack after the handler (and so the
//!   inbox's commit) succeeded.
//!
//! # Stacking layers onto handlers
//!
//! Consumers drive any `tower::Service<Message<M>>`, so generic layers stack onto handlers as
//! onto HTTP: palisade's `CircuitBreakerLayer` (with `ErrorsAreFailures` and `AsError`),
//! tower's `TimeoutLayer`, `RetryLayer` and `ConcurrencyLimitLayer`. Put them **outside** the
//! inbox: each attempt then has its own transaction, and a timed-out attempt rolls back (no
//! effect, no processed mark — the redelivery runs it; `tests/stacking.rs`). palisade's
//! `BulkheadLayer` and `RetryLayer` are typed for `http::Request` today; for messages use
//! tower's concurrency limit and retry.
//!
//! # Schema
//!
//! [`Schema::migrate`] creates, in one schema: `outbox` (Debezium outbox-router compatible
//! columns `id`, `aggregatetype`, `aggregateid`, `type`, `payload`, then the relay's),
//! `outbox_sequences`, `outbox_dead_letters`, `processed_messages` and
//! `consumer_dead_letters`. The SQL is in `migrations/`.
//!
//! # Metrics
//!
//! Counters `palisade_outbox_published_total`, `palisade_outbox_publish_errors_total{kind}`,
//! `palisade_outbox_dead_letters_total`, `palisade_outbox_relay_errors_total`,
//! `palisade_inbox_processed_total{consumer}`, `palisade_inbox_duplicates_total{consumer}`,
//! `palisade_consumer_redeliveries_total{consumer}`,
//! `palisade_consumer_dead_letters_total{consumer}`; gauges (set by relays every prune
//! interval, or by [`OutboxStats::record`]) `palisade_outbox_pending`,
//! `palisade_outbox_dead_letters`, `palisade_outbox_oldest_pending_age_seconds`.

#![warn(missing_docs)]

mod claim;
mod consumer_dead_letters;
mod dead_letter;
#[cfg(any(feature = "nats", feature = "redis"))]
mod delivery;
mod error;
mod event;
mod inbox;
mod message;
mod outbox;
mod relay;
mod schema;
mod sink;
mod stats;

#[cfg(feature = "nats")]
pub mod jetstream;
#[cfg(feature = "redis")]
pub mod redis_streams;

pub use consumer_dead_letters::{ConsumerDeadLetters, Parked};
pub use dead_letter::{DeadLetter, DeadLetters};
pub use error::OutboxError;
pub use event::{Envelope, MAX_NAME_LEN, NewEvent, OutboxEvent};
pub use inbox::{
    Dedup, DedupHandlerError, DedupLayer, Handled, Inbox, InboxError, InboxLayer, InboxTransaction,
    TransactionFinished,
};
pub use message::Message;
pub use outbox::{Enqueued, Outbox};
pub use relay::{BatchReport, Relay, RelayConfig};
pub use schema::Schema;
pub use sink::{Sink, SinkError};
pub use stats::OutboxStats;
