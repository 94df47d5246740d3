//! [`InboxLayer`]: wraps a message handler in an [`Inbox`].

use std::sync::Arc;

use sqlx::PgPool;
use tower_layer::Layer;

use super::service::{Inbox, Shared};
use crate::schema::Schema;

/// Makes a `tower::Service<Message<M>>` an idempotent consumer: each event id is processed at
/// most once per consumer name, and the handler's own writes commit in the same transaction as
/// that record — **effectively once for effects in this PostgreSQL database**. Effects beyond
/// it (an email, an HTTP call) stay at least once: a handler that fails after sending one is
/// retried and sends it again.
///
/// Stack retries, timeouts and breakers *outside* the inbox: every attempt then gets a fresh
/// transaction, and a timed-out attempt's transaction rolls back.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use palisade_outbox::{InboxLayer, Message, Schema};
/// use tower::{ServiceBuilder, service_fn};
///
/// let handler = ServiceBuilder::new()
///     .layer(InboxLayer::new(pool, Schema::new("shop")?, "billing"))
///     .service(service_fn(|message: Message<serde_json::Value>| async move {
///         let tx = message.transaction().expect("inside the inbox");
///         let mut db = tx.lock().await?;
///         sqlx::query("UPDATE balances SET n = n + 1").execute(&mut *db).await?;
///         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
///     }));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct InboxLayer {
    shared: Arc<Shared>,
}

impl InboxLayer {
    /// An inbox over `processed_messages` in `schema` (run [`Schema::migrate`] first), for the
    /// consumer named `consumer` (each consumer of the same events has its own name).
    pub fn new(pool: PgPool, schema: Schema, consumer: impl Into<String>) -> InboxLayer {
        InboxLayer {
            shared: Arc::new(Shared::new(pool, &schema, consumer.into())),
        }
    }
}

impl<S> Layer<S> for InboxLayer {
    type Service = Inbox<S>;

    fn layer(&self, inner: S) -> Inbox<S> {
        Inbox::new(inner, self.shared.clone())
    }
}
