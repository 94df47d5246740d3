//! [`Inbox`]: the service: claim, handle, commit.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use sqlx::PgPool;
use tower_service::Service;

use super::transaction::InboxTransaction;
use crate::{message::Message, schema::Schema};

pub(crate) struct Shared {
    pool: PgPool,
    consumer: String,
    claim: String,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(pool: PgPool, schema: &Schema, consumer: String) -> Shared {
        Shared {
            pool,
            claim: format!(
                "INSERT INTO {} (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                schema.table("processed_messages")
            ),
            consumer,
        }
    }
}

/// What the inbox did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled<R> {
    /// First time: the handler ran and its transaction committed.
    Processed(R),
    /// This consumer had already processed the event: the handler was not called.
    Duplicate,
}

/// Why an inbox did not process a message. The message should be redelivered (nothing of it
/// was committed).
#[derive(Debug, thiserror::Error)]
pub enum InboxError<E> {
    /// PostgreSQL failed (begin, claim or commit). After a failed commit the outcome is
    /// unknown; a redelivery finds out (processed: a duplicate; not: processed again).
    #[error("inbox database: {0}")]
    Database(#[from] sqlx::Error),
    /// The handler failed; its writes were rolled back.
    #[error("handler: {0}")]
    Handler(E),
}

/// The service made by [`InboxLayer`](crate::InboxLayer).
///
/// For each message: begin a transaction; insert `(consumer, event_id)` into
/// `processed_messages` (`ON CONFLICT DO NOTHING` — a concurrent delivery of the same event
/// waits on the first one's row and then sees it); if it was already there, roll back and
/// answer [`Handled::Duplicate`]; else call the handler with the transaction in the message
/// and commit when it succeeds. Its future is boxed: it awaits three PostgreSQL round trips,
/// beside which a box is noise.
pub struct Inbox<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Inbox<S> {
    fn clone(&self) -> Self {
        Inbox {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Inbox<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("inner", &self.inner)
            .field("consumer", &self.shared.consumer)
            .finish()
    }
}

impl<S> Inbox<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Inbox<S> {
        Inbox { inner, shared }
    }

    /// The consumer name.
    pub fn consumer(&self) -> &str {
        &self.shared.consumer
    }
}

impl<S, M> Service<Message<M>> for Inbox<S>
where
    S: Service<Message<M>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    S::Response: Send,
    M: Send + 'static,
{
    type Response = Handled<S::Response>;
    type Error = InboxError<S::Error>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(InboxError::Handler)
    }

    fn call(&mut self, mut message: Message<M>) -> Self::Future {
        // The readied service goes into the future; a fresh clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut tx = shared.pool.begin().await?;
            let claimed = sqlx::query(&shared.claim)
                .bind(&shared.consumer)
                .bind(message.event_id())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !claimed {
                tx.rollback().await?;
                metrics::counter!("palisade_inbox_duplicates_total", "consumer" => shared.consumer.clone())
                    .increment(1);
                return Ok(Handled::Duplicate);
            }
            let handle = InboxTransaction::new(tx);
            message.transaction = Some(handle.clone());
            let response = inner.call(message).await.map_err(InboxError::Handler)?;
            match handle.take().await {
                Some(tx) => tx.commit().await?,
                None => {
                    return Err(InboxError::Database(sqlx::Error::Protocol(
                        "the inbox transaction was taken away".into(),
                    )));
                }
            }
            metrics::counter!("palisade_inbox_processed_total", "consumer" => shared.consumer.clone())
                .increment(1);
            Ok(Handled::Processed(response))
        })
    }
}
