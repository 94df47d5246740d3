//! What every consumer does with a decoded message and a shutdown signal, once.

use std::future::Future;

use tower_service::Service;

use crate::{error::OutboxError, message::Message};

/// Runs `work` until it ends or `shutdown` completes, whichever is first.
pub(crate) async fn until_shutdown(
    shutdown: impl Future,
    work: impl Future<Output = Result<(), OutboxError>>,
) -> Result<(), OutboxError> {
    palisade_core::shutdown::until(shutdown, work)
        .await
        .unwrap_or(Ok(()))
}

/// Waits for `service` to be ready and calls it with `message`; the response is dropped (a
/// consumer only needs to know it succeeded).
pub(crate) async fn deliver<S, M>(service: &mut S, message: Message<M>) -> Result<(), S::Error>
where
    S: Service<Message<M>>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(message).await.map(drop)
}
