//! [`RateLimited`]: the rejection, rendered as 429 + problem+json or `RESOURCE_EXHAUSTED`.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use palisade_core::{
    ProblemDetails, Rejection,
    responder::{GrpcCode, retry_after_seconds},
};

use crate::{Decision, headers};

/// The problem type the RateLimit draft registers for an exhausted quota.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// A request refused by a rate limit.
///
/// Rendered by [`ProblemJson`](palisade_core::ProblemJson) as `429 Too Many Requests` with
/// `Retry-After` (whole seconds, rounded up, never 0), the `RateLimit-Policy` / `RateLimit`
/// fields, and an RFC 9457 body:
///
/// ```json
/// {"type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
///  "title": "Request cannot be satisfied as assigned quota has been exceeded",
///  "status": 429, "detail": "Rate limit exceeded. Retry in 3 seconds.",
///  "retry_after": 3, "violated-policies": ["burst"]}
/// ```
///
/// and by `Grpc` as `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limit `{}` exceeded", .decision.policy().name())]
pub struct RateLimited {
    decision: Decision,
    legacy_headers: bool,
}

impl RateLimited {
    pub(crate) fn new(decision: Decision, legacy_headers: bool) -> Self {
        RateLimited {
            decision,
            legacy_headers,
        }
    }

    pub(crate) fn set_legacy_headers(&mut self, legacy: bool) {
        self.legacy_headers = legacy;
    }

    /// The decision that refused the request.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

impl Rejection for RateLimited {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn problem(&self) -> ProblemDetails {
        let violated: Vec<&str> = self.decision.violated().collect();
        let problem = ProblemDetails::new(StatusCode::TOO_MANY_REQUESTS).with_type(
            QUOTA_EXCEEDED,
            "Request cannot be satisfied as assigned quota has been exceeded",
        );
        let problem = match self.retry_after() {
            Some(wait) => {
                let secs = retry_after_seconds(wait);
                problem
                    .with_detail(format!("Rate limit exceeded. Retry in {secs} seconds."))
                    .with_member("retry_after", secs)
            }
            None => problem.with_detail(
                "The request costs more than the rate limit allows at once; it cannot succeed.",
            ),
        };
        problem.with_member("violated-policies", violated)
    }

    fn grpc_code(&self) -> GrpcCode {
        GrpcCode::ResourceExhausted
    }

    fn retry_after(&self) -> Option<Duration> {
        self.decision.retry_after()
    }

    fn add_headers(&self, headers_out: &mut HeaderMap) {
        headers::insert(headers_out, &self.decision, self.legacy_headers);
    }
}
