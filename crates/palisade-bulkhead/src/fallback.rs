//! Answering a refusal with a fallback instead of an error.

use http::Response;
use palisade_core::{Rejection, Responder};

/// A responder that answers every refusal with `f()` — a cached or degraded response — instead
/// of a 503, as the "answer with a fallback" rejection policy.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{convert::Infallible, time::Duration};
/// use palisade_bulkhead::{BulkheadLayer, Fallback, Pool, PoolConfig};
/// use tower::{Layer, ServiceExt};
///
/// let pool = Pool::new(PoolConfig::single("recommendations", 1, 0, Duration::ZERO));
/// let _busy = pool.try_acquire(pool.lowest_tier()).unwrap();
/// let svc = BulkheadLayer::new(pool.clone(), pool.lowest_tier())
///     .responder(Fallback(|| http::Response::new(String::from("[]"))))
///     .layer(tower::service_fn(|_req: http::Request<()>| async {
///         Ok::<_, Infallible>(http::Response::new(String::from("[personalised]")))
///     }));
/// let response = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.into_body(), "[]");
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fallback<F>(pub F);

impl<F, B> Responder<B> for Fallback<F>
where
    F: Fn() -> Response<B> + Clone + Send + Sync + 'static,
{
    fn respond<R: Rejection>(&self, _rejection: &R) -> Response<B> {
        (self.0)()
    }
}
