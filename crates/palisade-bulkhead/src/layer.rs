//! [`BulkheadLayer`]: calls run within one tier of a [`Pool`].

use std::time::Duration;

use palisade_core::ProblemJson;
use tower_layer::Layer;

use crate::{Pool, reservation::Reservation, service::Bulkhead};

/// Runs the inner service within one tier of a [`Pool`].
///
/// tower-correct: the slot is reserved in `poll_ready` (waiting in the tier's bounded queue,
/// at most its max wait) and used by the next `call`; a service readied and dropped without
/// being called gives its slot back, and so does a call whose future is dropped or panics. A
/// refused call never reaches the inner service: it is answered by the responder (503 +
/// `Retry-After` + problem+json by default).
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
pub struct BulkheadLayer<R = ProblemJson> {
    pool: Pool,
    tier: usize,
    responder: R,
    call_timeout: Option<Duration>,
}

impl BulkheadLayer {
    /// Calls run in tier `tier` (an index from [`Pool::tier`]) of `pool`.
    ///
    /// # Panics
    /// If the pool has no such tier.
    pub fn new(pool: Pool, tier: usize) -> Self {
        assert!(
            tier < pool.config().tiers.len(),
            "no tier {tier} in this pool"
        );
        BulkheadLayer {
            pool,
            tier,
            responder: ProblemJson,
            call_timeout: None,
        }
    }
}

impl<R> BulkheadLayer<R> {
    /// Renders refusals with `responder` (e.g. `palisade_core::responder::Grpc`).
    pub fn responder<R2>(self, responder: R2) -> BulkheadLayer<R2> {
        BulkheadLayer {
            pool: self.pool,
            tier: self.tier,
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

impl<S, R: Clone> Layer<S> for BulkheadLayer<R> {
    type Service = Bulkhead<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead {
            inner,
            reservation: Reservation::new(self.pool.clone(), self.tier),
            responder: self.responder.clone(),
            call_timeout: self.call_timeout,
        }
    }
}
