//! Rejections are values; a [`Responder`] renders them at the edge.
//!
//! Layers reject with typed errors that implement [`Rejection`]. The layer's `Responder`
//! turns one into a response: [`ProblemJson`] (RFC 9457, the default) for HTTP APIs, or
//! [`Grpc`] (with the `grpc` feature) for tonic services.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::{ProblemDetails, backend::BackendError, key::KeyError};

/// The gRPC status code a rejection maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument,
    /// `RESOURCE_EXHAUSTED` (8): quota or capacity used up.
    ResourceExhausted,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition,
    /// `ABORTED` (10): a conflict.
    Aborted,
    /// `UNAVAILABLE` (14): try again later.
    Unavailable,
    /// `DEADLINE_EXCEEDED` (4): it took too long.
    DeadlineExceeded,
}

impl GrpcCode {
    /// The numeric code on the wire.
    pub fn as_i32(self) -> i32 {
        match self {
            GrpcCode::InvalidArgument => 3,
            GrpcCode::ResourceExhausted => 8,
            GrpcCode::FailedPrecondition => 9,
            GrpcCode::Aborted => 10,
            GrpcCode::Unavailable => 14,
            GrpcCode::DeadlineExceeded => 4,
        }
    }
}

/// Marks a response as a palisade layer's refusal (in the response extensions), so a retry
/// layer never retries it: an open circuit or an exhausted local quota will not change in a
/// few milliseconds.
///
/// As an error it is the [`source`](std::error::Error::source) of a layer's refusal errors (an
/// open circuit turned into an error with `AsError`), so [`is_refusal`] recognises them without
/// knowing their types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refused by a palisade layer")]
pub struct Rejected;

/// Whether `error`, or any error in its `source` chain, is a palisade layer's refusal
/// ([`Rejected`]): another attempt cannot fix it.
///
/// ```
/// use palisade_core::responder::{Rejected, is_refusal};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("circuit open")]
/// struct Open(#[source] Rejected);
///
/// assert!(is_refusal(&Open(Rejected)));
/// assert!(!is_refusal(&std::io::Error::other("reset")));
/// ```
pub fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<Rejected>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// A typed refusal produced by a palisade layer.
pub trait Rejection: std::error::Error + Send + Sync + 'static {
    /// The HTTP status (429 for a rate limit, 503 for a closed backend…).
    fn status(&self) -> StatusCode;

    /// The RFC 9457 body.
    fn problem(&self) -> ProblemDetails;

    /// The gRPC code.
    fn grpc_code(&self) -> GrpcCode;

    /// How long the client should wait before trying again, if the layer knows.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Adds rejection-specific headers (beyond `Retry-After`, which responders add from
    /// [`retry_after`](Rejection::retry_after)).
    fn add_headers(&self, _headers: &mut HeaderMap) {}
}

/// Renders a [`Rejection`] as a response with body `B`.
pub trait Responder<B>: Clone + Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond<R: Rejection>(&self, rejection: &R) -> http::Response<B>;
}

pub use crate::wire::retry_after_seconds;

/// RFC 9457 `application/problem+json` responses: the default responder.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemJson;

impl<B: From<Bytes>> Responder<B> for ProblemJson {
    fn respond<R: Rejection>(&self, rejection: &R) -> http::Response<B> {
        let body = rejection.problem().to_bytes();
        let mut response = http::Response::new(B::from(body));
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(wait) = rejection.retry_after() {
            headers.insert(header::RETRY_AFTER, crate::wire::retry_after_value(wait));
        }
        rejection.add_headers(headers);
        response.extensions_mut().insert(Rejected);
        response
    }
}

/// gRPC responses: status in the headers (a trailers-only response), `grpc-retry-pushback-ms`
/// when the layer knows when to come back.
#[cfg(feature = "grpc")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Grpc;

#[cfg(feature = "grpc")]
impl<B: Default> Responder<B> for Grpc {
    fn respond<R: Rejection>(&self, rejection: &R) -> http::Response<B> {
        let code = tonic::Code::from_i32(rejection.grpc_code().as_i32());
        let mut status = tonic::Status::new(code, rejection.to_string());
        if let Some(wait) = rejection.retry_after()
            && let Ok(value) = crate::wire::pushback_value(wait).to_str()
            && let Ok(value) = value.parse()
        {
            status
                .metadata_mut()
                .insert(crate::wire::GRPC_RETRY_PUSHBACK_MS.as_str(), value);
        }
        let mut response = status.into_http::<B>();
        rejection.add_headers(response.headers_mut());
        response.extensions_mut().insert(Rejected);
        response
    }
}

/// The backend could not decide and the policy is fail-closed: 503.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{layer} backend unavailable: {source}")]
pub struct BackendUnavailable {
    /// The layer that could not decide.
    pub layer: &'static str,
    /// What failed.
    pub source: BackendError,
}

impl Rejection for BackendUnavailable {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn problem(&self) -> ProblemDetails {
        ProblemDetails::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(format!("The {} backend is unavailable.", self.layer))
    }

    fn grpc_code(&self) -> GrpcCode {
        GrpcCode::Unavailable
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

/// No key could be taken from the request: 400.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot identify the client: {0}")]
pub struct MissingKey(pub KeyError);

impl Rejection for MissingKey {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    fn problem(&self) -> ProblemDetails {
        ProblemDetails::new(StatusCode::BAD_REQUEST).with_detail(self.to_string())
    }

    fn grpc_code(&self) -> GrpcCode {
        GrpcCode::InvalidArgument
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(60)), 60);
    }
}
