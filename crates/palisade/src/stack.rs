//! A client stack in the one safe order: breaker ⊃ retry ⊃ (per-attempt) timeout.

use palisade_breaker::{AsError, Breaker, CircuitBreaker, CircuitBreakerLayer, HttpFailures};
use tower_layer::Layer;

use palisade_retry::{Retry, RetryLayer, classify::HttpRetry};

/// Wraps an HTTP client (any `tower::Service<Request<ReplayBody<B>>>`) in a circuit breaker
/// **around** a retry layer whose policy carries the per-attempt timeout.
///
/// The order is fixed by the types: the breaker sees one outcome per logical call (after the
/// retries), refuses at once while open (an error the retry layer would never retry anyway), and
/// retries never hammer an upstream the breaker has given up on — the forbidden "retry outside
/// the breaker" cannot be built with this function.
///
/// ```
/// use std::time::Duration;
/// use palisade::breaker::{BreakerPolicy, CircuitBreaker};
/// use palisade::retry::{client_stack, RetryLayer, RetryPolicy};
///
/// # fn demo<S>(client: S) {
/// let breaker = CircuitBreaker::new(BreakerPolicy::builder("payments-api").build().unwrap());
/// let retry = RetryLayer::new(RetryPolicy::new(3).attempt_timeout(Duration::from_secs(2)));
/// let service = client_stack(breaker, retry, client);
/// # }
/// ```
pub fn client_stack<S, C: Clone>(
    breaker: CircuitBreaker,
    retry: RetryLayer<C>,
    client: S,
) -> Breaker<Retry<S, C>, HttpFailures, AsError> {
    CircuitBreakerLayer::new(breaker)
        .on_open(AsError)
        .layer(retry.layer(client))
}

/// The default-classified stack type, for naming it in structs.
pub type ClientStack<S> = Breaker<Retry<S, HttpRetry>, HttpFailures, AsError>;
