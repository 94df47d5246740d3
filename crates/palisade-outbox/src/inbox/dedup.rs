//! [`DedupLayer`]: the inbox for handlers without a database, on the idempotency crate's
//! [`Deduplicator`] (memory, Redis, PostgreSQL or the dual store).

use std::{
    fmt,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use palisade_idempotency::{DedupError, Deduplicator, IdempotencyStore, Processed};
use tower_layer::Layer;
use tower_service::Service;

use super::service::Handled;
use crate::message::Message;

/// Makes a `tower::Service<Message<M>>` run at most once per event id through a
/// [`Deduplicator`]: the id is claimed (a lease, renewed while the handler runs) before the
/// handler and marked done after it. Use it when the handler's effects are **not** in the
/// outbox's PostgreSQL (a call to another service, a cache write): it stops duplicates from the
/// broker, but a handler that dies after its effect and before the mark runs again once the
/// lease ends — at least once, said plainly. For effects in PostgreSQL prefer
/// [`InboxLayer`](crate::InboxLayer), which commits the mark with them.
///
/// ```
/// use palisade_idempotency::{Deduplicator, MemoryStore};
/// use palisade_outbox::{DedupLayer, Envelope, Handled, Message};
/// use tower::{Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut handler = tower::ServiceBuilder::new()
///     .layer(DedupLayer::new(Deduplicator::new(MemoryStore::new()).namespace("mailer")))
///     .service(service_fn(|_: Message<()>| async { Ok::<_, std::io::Error>("sent") }));
/// let message = Message::new(Envelope {
///     event_id: "e-1".into(),
///     event_type: "order.placed".into(),
///     aggregate_type: "order".into(),
///     aggregate_id: "o-1".into(),
///     sequence: 1,
///     occurred_at: String::new(),
///     data: (),
/// });
/// let first = handler.ready().await.unwrap().call(message.clone()).await.unwrap();
/// assert_eq!(first, Handled::Processed("sent"));
/// let again = handler.ready().await.unwrap().call(message).await.unwrap();
/// assert_eq!(again, Handled::Duplicate);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DedupLayer<S> {
    dedup: Deduplicator<S>,
}

impl<S> DedupLayer<S> {
    /// A layer deduplicating through `dedup` (its namespace separates consumers).
    pub fn new(dedup: Deduplicator<S>) -> DedupLayer<S> {
        DedupLayer { dedup }
    }
}

impl<S: Clone, H> Layer<H> for DedupLayer<S> {
    type Service = Dedup<S, H>;

    fn layer(&self, inner: H) -> Dedup<S, H> {
        Dedup {
            dedup: self.dedup.clone(),
            inner,
        }
    }
}

/// The service made by [`DedupLayer`].
#[derive(Clone)]
pub struct Dedup<S, H> {
    dedup: Deduplicator<S>,
    inner: H,
}

impl<S: fmt::Debug, H: fmt::Debug> fmt::Debug for Dedup<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("dedup", &self.dedup)
            .field("inner", &self.inner)
            .finish()
    }
}

/// Why a [`Dedup`] service did not process a message; the message should be redelivered
/// (except after [`DedupError::DeadLettered`], which the consumer may acknowledge).
#[derive(Debug, thiserror::Error)]
pub enum DedupHandlerError<E> {
    /// Another worker holds the event's claim right now.
    #[error("another worker is processing this event")]
    InProgress,
    /// The handler failed, or the store could not answer.
    #[error(transparent)]
    Dedup(#[from] DedupError<E>),
}

impl<S, H, M> Service<Message<M>> for Dedup<S, H>
where
    S: IdempotencyStore + Clone + Send + Sync + 'static,
    H: Service<Message<M>> + Clone + Send + 'static,
    H::Future: Send,
    H::Response: Send,
    H::Error: fmt::Display + Send,
    M: Send + 'static,
{
    type Response = Handled<H::Response>;
    type Error = DedupHandlerError<H::Error>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| DedupHandlerError::Dedup(DedupError::Failed { error, attempts: 0 }))
    }

    fn call(&mut self, message: Message<M>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let dedup = self.dedup.clone();
        Box::pin(async move {
            let id = message.event_id().to_owned();
            match dedup.process_once(&id, || inner.call(message)).await? {
                Processed::Done(response) => Ok(Handled::Processed(response)),
                Processed::Duplicate => Ok(Handled::Duplicate),
                Processed::InProgress => Err(DedupHandlerError::InProgress),
            }
        })
    }
}
