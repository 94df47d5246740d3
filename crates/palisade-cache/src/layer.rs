//! [`CacheLayer`]: puts an [`HttpCache`] in front of a service.

use tower_layer::Layer;

use crate::{HttpCache, service::Caching};

/// Serves requests from an [`HttpCache`], forwarding to the inner service (the origin) what
/// it cannot answer, and storing what the origin allows.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use palisade_cache::{HttpCache, MemoryStore};
/// use tower::{Layer, ServiceExt};
///
/// let cache = HttpCache::new(MemoryStore::new(1 << 20)).name("edge");
/// let origin = tower::service_fn(|_req: Request<Full<Bytes>>| async {
///     let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
///     response.headers_mut().insert("cache-control", "max-age=60".parse().unwrap());
///     Ok::<_, Infallible>(response)
/// });
/// let svc = cache.layer().layer(origin);
/// let request = || Request::get("http://example.com/").body(Full::default()).unwrap();
/// let first = svc.clone().oneshot(request()).await.unwrap();
/// assert_eq!(first.headers()["cache-status"], "edge; fwd=uri-miss; fwd-status=200; ttl=60; stored");
/// let second = svc.oneshot(request()).await.unwrap();
/// assert_eq!(second.headers()["cache-status"], "edge; hit; ttl=60");
/// # }
/// ```
#[derive(Debug)]
pub struct CacheLayer<St> {
    cache: HttpCache<St>,
}

impl<St> Clone for CacheLayer<St> {
    fn clone(&self) -> Self {
        CacheLayer {
            cache: self.cache.clone(),
        }
    }
}

impl<St> CacheLayer<St> {
    /// A layer serving from `cache`.
    pub fn new(cache: HttpCache<St>) -> Self {
        CacheLayer { cache }
    }
}

impl<S, St> Layer<S> for CacheLayer<St> {
    type Service = Caching<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Caching {
            inner,
            cache: self.cache.clone(),
        }
    }
}
