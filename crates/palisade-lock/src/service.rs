//! [`LockService`]: takes the request's lock, runs the request, releases the lock.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::{
    BackendError, OnBackendError, Responder,
    deadline::Deadline,
    key::{KeyError, KeyExtractor, RequestHead},
    responder::{BackendUnavailable, MissingKey},
};
use tower_service::Service;

use crate::{LockError, Locked, Locker};

/// Settings shared by the layer and its services.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) namespace: Arc<str>,
    pub(crate) wait: Duration,
    pub(crate) on_backend_error: OnBackendError,
}

/// The service [`LockLayer`](crate::LockLayer) builds.
#[derive(Clone)]
pub struct LockService<S, L, K, R> {
    pub(crate) inner: S,
    pub(crate) locker: L,
    pub(crate) name: Arc<K>,
    pub(crate) responder: R,
    pub(crate) config: Config,
}

impl<S, L, K, R> LockService<S, L, K, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S: fmt::Debug, L: fmt::Debug, K, R> fmt::Debug for LockService<S, L, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockService")
            .field("inner", &self.inner)
            .field("locker", &self.locker)
            .finish_non_exhaustive()
    }
}

impl<S, L, K, R, ReqB, ResB> Service<Request<ReqB>> for LockService<S, L, K, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqB: Send + 'static,
    ResB: Send + 'static,
    L: Locker,
    K: KeyExtractor,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let name = self.name.extract(&RequestHead::from(&request));
        let locker = self.locker.clone();
        let responder = self.responder.clone();
        let config = self.config.clone();
        let deadline = request.extensions().get::<Deadline>().copied();
        Box::pin(async move {
            let name = match name {
                Ok(key) => format!("{}:{key}", config.namespace),
                Err(error) => return Ok(responder.respond(&MissingKey(error))),
            };
            // Within the request's budget: wait no longer than it leaves, and cut the call
            // off when it runs out.
            let wait = deadline.map_or(config.wait, |d| config.wait.min(d.remaining()));
            let acquired = match deadline {
                None => locker.acquire(&name, wait).await,
                Some(d) => tokio::time::timeout_at(d.at(), locker.acquire(&name, wait))
                    .await
                    .unwrap_or(Err(LockError::Backend(BackendError::Timeout(
                        Duration::ZERO,
                    )))),
            };
            let guard = match acquired {
                Ok(guard) => guard,
                Err(LockError::Busy { .. }) => {
                    metrics::counter!("palisade_lock_requests_total", "outcome" => "locked")
                        .increment(1);
                    return Ok(responder.respond(&Locked {
                        name,
                        retry_after: Duration::from_secs(1),
                    }));
                }
                Err(LockError::Backend(error)) => {
                    if config.on_backend_error.apply("lock", &error) {
                        return inner.call(request).await;
                    }
                    return Ok(responder.respond(&BackendUnavailable {
                        layer: "lock",
                        source: error,
                    }));
                }
                Err(other) => {
                    let error = KeyError::Custom(other.to_string().into());
                    return Ok(responder.respond(&MissingKey(error)));
                }
            };
            metrics::counter!("palisade_lock_requests_total", "outcome" => "acquired").increment(1);
            request.extensions_mut().insert(guard.held_lock());
            let response = inner.call(request).await;
            let release = async move {
                if let Err(error) = guard.release().await {
                    tracing::warn!(target: "palisade::lock", %error, "could not release the request's lock; it expires with its lease");
                }
            };
            // The answer waits no longer than the budget; the release carries on behind it.
            Deadline::finish(deadline, release).await;
            response
        })
    }
}
