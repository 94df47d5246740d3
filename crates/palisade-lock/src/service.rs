//! [`LockService`]: takes the request's lock, runs the request, releases the lock.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::{
    BackendError, OnBackendError, Responder,
    deadline::Deadline,
    key::{KeyExtractor, RequestHead},
    responder::MissingKey,
};
use tower_service::Service;

use crate::{LockError, Locker, future::ResponseFuture};

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
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    L: Locker,
    K: KeyExtractor,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, R, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let responder = self.responder.clone();
        let name = match self.name.extract(&RequestHead::from(&request)) {
            Ok(key) => format!("{}:{key}", self.config.namespace),
            Err(error) => {
                // Refused before anything ran: the readied service stays for the next call.
                return ResponseFuture::refused(responder.respond(&MissingKey(error)), responder);
            }
        };
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        // Within the request's budget: wait no longer than it leaves, and cut the call off
        // when it runs out.
        let deadline = Deadline::of(&request);
        let wait = deadline.map_or(self.config.wait, |d| self.config.wait.min(d.remaining()));
        let locker = self.locker.clone();
        let acquire = Box::pin(async move {
            match deadline {
                None => locker.acquire(&name, wait).await,
                Some(d) => tokio::time::timeout_at(d.at(), locker.acquire(&name, wait))
                    .await
                    .unwrap_or(Err(LockError::Backend(BackendError::Timeout(
                        Duration::ZERO,
                    )))),
            }
        });
        ResponseFuture::acquiring(
            acquire,
            inner,
            request,
            responder,
            self.config.on_backend_error,
        )
    }
}
