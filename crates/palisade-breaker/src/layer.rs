//! [`CircuitBreakerLayer`].

use tower_layer::Layer;

use crate::{CircuitBreaker, classify::HttpFailures, rejection::Respond, service::Breaker};

/// Guards the inner service with a [`CircuitBreaker`]: while it is open, calls are refused
/// at once (the inner service is not called) and the refusal says when to come back.
///
/// Defaults suit an HTTP server: [`HttpFailures`] classification and [`Respond`] with RFC 9457
/// problem+json (503 + `Retry-After`). Around a client use `.on_open(AsError)` so the refusal is
/// an error a retry layer recognises as not retryable.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::convert::Infallible;
/// use palisade_breaker::{BreakerPolicy, CircuitBreaker, CircuitBreakerLayer};
/// use tower::{Layer, ServiceExt};
///
/// let breaker = CircuitBreaker::new(
///     BreakerPolicy::builder("upstream").count_window(2).minimum_calls(2).build().unwrap(),
/// );
/// let svc = CircuitBreakerLayer::new(breaker.clone()).layer(tower::service_fn(|_req: http::Request<()>| async {
///     let mut failing = http::Response::new(axum::body::Body::empty());
///     *failing.status_mut() = http::StatusCode::BAD_GATEWAY;
///     Ok::<_, Infallible>(failing)
/// }));
/// for _ in 0..2 {
///     assert_eq!(svc.clone().oneshot(http::Request::new(())).await.unwrap().status(), 502);
/// }
/// let refused = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(refused.status(), 503);
/// assert!(refused.headers().contains_key("retry-after"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = HttpFailures, O = Respond> {
    breaker: CircuitBreaker,
    classify: C,
    on_open: O,
}

impl CircuitBreakerLayer {
    /// Guards with `breaker`, classifying HTTP results, refusing with 503 problem+json.
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classify: HttpFailures,
            on_open: Respond::default(),
        }
    }
}

impl<C, O> CircuitBreakerLayer<C, O> {
    /// Classifies results with `classify` (e.g. `GrpcFailures`, `ErrorsAreFailures`).
    pub fn classify<C2>(self, classify: C2) -> CircuitBreakerLayer<C2, O> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classify,
            on_open: self.on_open,
        }
    }

    /// Refuses with `on_open` (e.g. `AsError`, or `Respond(Grpc)`).
    pub fn on_open<O2>(self, on_open: O2) -> CircuitBreakerLayer<C, O2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classify: self.classify,
            on_open,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone, O: Clone> Layer<S> for CircuitBreakerLayer<C, O> {
    type Service = Breaker<S, C, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
            on_open: self.on_open.clone(),
        }
    }
}
