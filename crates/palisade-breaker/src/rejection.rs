//! [`CircuitOpen`]: the rejection, and how a layer hands it to the caller.

use std::{sync::Arc, time::Duration};

use http::StatusCode;
use palisade_core::{ProblemDetails, ProblemJson, Rejection, Responder, responder::GrpcCode};

use crate::State;

/// A call refused because the circuit is open (or half-open with every probe slot taken, or
/// forced open).
///
/// Rendered by [`ProblemJson`] as `503 Service Unavailable` with `Retry-After` (the time until
/// the next probe, rounded up) and a problem+json body; by `Grpc` as `UNAVAILABLE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit `{breaker}` is {}", .state.as_str())]
pub struct CircuitOpen {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// Its state when it refused.
    pub state: State,
    /// Time until a probe may pass; `None` while forced open.
    pub retry_after: Option<Duration>,
}

impl Rejection for CircuitOpen {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn problem(&self) -> ProblemDetails {
        ProblemDetails::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(format!(
                "The circuit breaker `{}` is {}: the upstream is failing and is not being called.",
                self.breaker,
                self.state.as_str()
            ))
            .with_member("breaker", self.breaker.as_ref())
    }

    fn grpc_code(&self) -> GrpcCode {
        GrpcCode::Unavailable
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// How a [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) hands a refusal back.
pub trait OnOpen<Res, E>: Clone + Send + Sync + 'static {
    /// The result returned instead of calling the inner service.
    fn refuse(&self, open: CircuitOpen) -> Result<Res, E>;
}

/// Refuse with a response rendered by a [`Responder`] (default: RFC 9457 problem+json, 503):
/// for servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Respond<R = ProblemJson>(pub R);

impl<R: Responder<B>, B, E> OnOpen<http::Response<B>, E> for Respond<R> {
    fn refuse(&self, open: CircuitOpen) -> Result<http::Response<B>, E> {
        Ok(self.0.respond(&open))
    }
}

/// Refuse with an error (`E: From<CircuitOpen>`, e.g. `tower::BoxError`): for clients and
/// non-HTTP services, so retry layers can see it is not worth retrying.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsError;

impl<Res, E: From<CircuitOpen>> OnOpen<Res, E> for AsError {
    fn refuse(&self, open: CircuitOpen) -> Result<Res, E> {
        Err(E::from(open))
    }
}
