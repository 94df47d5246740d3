//! [`Idempotency`]: the service the layer builds.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::{Responder, key::KeyExtractor};
use tower_service::Service;

use crate::{
    IdempotencyBody,
    body::{BoxError, InnerBody},
    journey::Journey,
    policy::Config,
    store::IdempotencyStore,
};

/// The service [`IdempotencyLayer`](crate::IdempotencyLayer) builds.
#[derive(Clone)]
pub struct Idempotency<Svc, S, K, R> {
    pub(crate) inner: Svc,
    pub(crate) store: S,
    pub(crate) scope: Arc<K>,
    pub(crate) responder: R,
    pub(crate) config: Arc<Config>,
}

impl<Svc, S, K, R> Idempotency<Svc, S, K, R> {
    palisade_core::inner_service_accessors!(Svc);
}

impl<Svc: fmt::Debug, S: fmt::Debug, K, R> fmt::Debug for Idempotency<Svc, S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The future of [`Idempotency`]: boxed, since a request takes several store round trips
/// (claim, renewals, complete) around the inner call.
pub type IdempotencyFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<Svc, S, K, R, ReqB, ResB> Service<Request<ReqB>> for Idempotency<Svc, S, K, R>
where
    Svc: Service<Request<InnerBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    Svc::Future: Send,
    Svc::Error: Send,
    ReqB: Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
    S: IdempotencyStore,
    K: KeyExtractor,
    R: Responder<IdempotencyBody<ResB>>,
{
    type Response = Response<IdempotencyBody<ResB>>;
    type Error = Svc::Error;
    type Future = IdempotencyFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // Use the service that was readied, leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let journey = Journey {
            inner,
            store: self.store.clone(),
            scope: self.scope.clone(),
            responder: self.responder.clone(),
            config: self.config.clone(),
            _bodies: PhantomData,
        };
        Box::pin(journey.run(request))
    }
}
