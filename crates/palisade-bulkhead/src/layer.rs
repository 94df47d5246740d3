//! [`BulkheadLayer`]: calls run within a slot of a [`Semaphore`] — one tier of a local
//! [`Pool`], or a fleet-wide semaphore.

use std::time::Duration;

use palisade_core::ProblemJson;
use tower_layer::Layer;

use crate::{
    Pool, pool_tier::PoolTier, reservation::Reservation, semaphore::Semaphore, service::Bulkhead,
    tier::TierId,
};

/// Runs the inner service within a slot of a [`Semaphore`]: one tier of a local [`Pool`]
/// ([`new`](Self::new)) or any other semaphore, such as the fleet-wide
/// [`FleetSemaphore`](crate::FleetSemaphore) ([`from_semaphore`](Self::from_semaphore)).
///
/// tower-correct: the slot is reserved in `poll_ready` (waiting in the tier's bounded queue,
/// at most its max wait; for a fleet semaphore, one Redis round trip bounded by its timeout)
/// and used by the next `call`; a service readied and dropped without being called gives its
/// slot back, and so does a call whose future is dropped or panics. A refused call never
/// reaches the inner service: it is answered by the responder (503 + `Retry-After` +
/// problem+json by default).
///
/// Over a fleet semaphore the Redis round trip happens in `poll_ready`, before the request is
/// seen, so it is bounded by the semaphore's own timeout (50 ms by default) rather than by the
/// request's [`Deadline`](palisade_core::deadline::Deadline); the lease is released (in the
/// background) when the response future completes or is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{convert::Infallible, time::Duration};
/// use palisade_bulkhead::{BulkheadLayer, Pool, PoolConfig};
/// use tower::{Layer, ServiceExt};
///
/// let pool = Pool::new(PoolConfig::three_tiers("partner-api"));
/// let critical = BulkheadLayer::new(pool.clone(), pool.tier("critical").unwrap());
/// let svc = critical.layer(tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(axum::body::Body::empty()))
/// }));
/// assert_eq!(svc.oneshot(http::Request::new(())).await.unwrap().status(), 200);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer<M = PoolTier, R = ProblemJson> {
    semaphore: M,
    responder: R,
    call_timeout: Option<Duration>,
}

impl BulkheadLayer {
    /// Calls run in tier `tier` of `pool`.
    ///
    /// # Panics
    /// If the pool has no such tier (a [`TierId`] from another pool's configuration).
    pub fn new(pool: Pool, tier: TierId) -> Self {
        BulkheadLayer::from_semaphore(PoolTier::new(pool, tier))
    }
}

impl<M: Semaphore> BulkheadLayer<M> {
    /// Calls run in slots of `semaphore`.
    pub fn from_semaphore(semaphore: M) -> Self {
        BulkheadLayer {
            semaphore,
            responder: ProblemJson,
            call_timeout: None,
        }
    }
}

impl<M, R> BulkheadLayer<M, R> {
    /// Renders refusals with `responder` (e.g. `palisade_core::responder::Grpc`).
    pub fn responder<R2>(self, responder: R2) -> BulkheadLayer<M, R2> {
        BulkheadLayer {
            semaphore: self.semaphore,
            responder,
            call_timeout: self.call_timeout,
        }
    }

    /// Cuts a call off after `timeout` (keep it shorter than the caller's own): the inner
    /// future is dropped, the slot freed, and the caller gets 504 ([`CallTimedOut`](crate::CallTimedOut)) — a
    /// slow dependency cannot hold the tier's slots for longer than this.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }
}

impl<S, M: Semaphore, R: Clone> Layer<S> for BulkheadLayer<M, R> {
    type Service = Bulkhead<S, M, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead {
            inner,
            reservation: Reservation::new(self.semaphore.clone()),
            responder: self.responder.clone(),
            call_timeout: self.call_timeout,
        }
    }
}
