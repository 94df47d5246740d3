//! [`Caching`]: the service of [`CacheLayer`](crate::CacheLayer).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use palisade_core::body::{BoxError, PrefixedBody};
use tower_service::Service;

use crate::{HttpCache, flow, store::Store};

/// The service of [`CacheLayer`](crate::CacheLayer): answers from the cache or forwards to
/// `S`. Its responses carry `Cache-Status`; bodies served from the store are whole, origin
/// bodies are streamed (and read into memory only when being stored, up to the size limit).
pub struct Caching<S, St> {
    pub(crate) inner: S,
    pub(crate) cache: HttpCache<St>,
}

impl<S: Clone, St> Clone for Caching<S, St> {
    fn clone(&self) -> Self {
        Caching {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<S: fmt::Debug, St> fmt::Debug for Caching<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caching")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .finish()
    }
}

impl<S, St> Caching<S, St> {
    palisade_core::inner_service_accessors!(S);
}

/// The response future of [`Caching`]. Boxed: a request may take several store and origin
/// round trips (lookup, coalescing wait, revalidation, store).
pub type ResponseFuture<ResB, E> =
    Pin<Box<dyn Future<Output = Result<Response<PrefixedBody<ResB>>, E>> + Send>>;

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Caching<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    St: Store,
    ReqB: Default + Send + 'static,
    ResB: Body<Data = Bytes> + Send + Unpin + 'static,
    ResB::Error: Into<BoxError> + Send,
{
    type Response = Response<PrefixedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The readied instance serves this request; a fresh clone waits for the next.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(flow::respond(self.cache.clone(), ready, request))
    }
}
