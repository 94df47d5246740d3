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
///
/// Its [`source`](std::error::Error::source) is [`Rejected`](palisade_core::responder::Rejected),
/// so a retry layer recognises it as a refusal without depending on this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// Its state when it refused.
    pub state: State,
    /// Time until a probe may pass; `None` while forced open.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "circuit `{}` is {}", self.breaker, self.state.as_str())
    }
}

impl std::error::Error for CircuitOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&palisade_core::responder::Rejected)
    }
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
