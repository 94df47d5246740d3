//! [`Idempotency`]: the service the layer builds.

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Either;
use palisade_core::{
    Responder,
    key::{KeyExtractor, RequestHead},
    responder::MissingKey,
};
use tower_service::Service;

use crate::{
    IdempotencyBody, IdempotencyRejection,
    body::{BoxError, InnerBody},
    future::ResponseFuture,
    header::{KeyProblem, idempotency_key},
    journey::{Journey, refuse},
    metrics::count,
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
    type Future = ResponseFuture<Svc::Future, ResB, Svc::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // What needs no store is decided here, without an allocation: the method, the key
        // header, the caller.
        if !self.config.methods.contains(request.method()) {
            return ResponseFuture::passing(self.inner.call(request.map(Either::Right)));
        }
        let key = match idempotency_key(request.headers()) {
            Ok(Some(key)) => key,
            Ok(None) if !self.config.required => {
                count("bypassed");
                return ResponseFuture::passing(self.inner.call(request.map(Either::Right)));
            }
            Ok(None) => {
                let rejection = IdempotencyRejection::BadKey(KeyProblem::Missing);
                return ResponseFuture::refused(refuse(&self.responder, rejection));
            }
            Err(problem) => {
                let rejection = IdempotencyRejection::BadKey(problem);
                return ResponseFuture::refused(refuse(&self.responder, rejection));
            }
        };
        let caller = match self.scope.extract(&RequestHead::from(&request)) {
            Ok(caller) => caller,
            Err(error) => {
                count("bad_request");
                return ResponseFuture::refused(self.responder.respond(&MissingKey(error)));
            }
        };
        // Use the service that was readied, leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let journey = Journey {
            inner,
            store: self.store.clone(),
            responder: self.responder.clone(),
            config: self.config.clone(),
            _bodies: PhantomData,
        };
        let (parts, body) = request.into_parts();
        ResponseFuture::keyed(Box::pin(journey.run(parts, body, key, caller)))
    }
}
