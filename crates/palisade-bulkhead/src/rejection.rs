//! [`BulkheadFull`]: the refusal.

use std::time::Duration;

use http::StatusCode;
use palisade_core::{ProblemDetails, Rejection, responder::GrpcCode};

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every slot was taken and the tier's queue was full (or it has none).
    QueueFull,
    /// The call waited in the queue for the tier's max wait without getting a slot.
    WaitTimedOut,
}

/// A call refused by a bulkhead: 503 with `Retry-After` and problem+json (never a 500); gRPC
/// `RESOURCE_EXHAUSTED` when the queue was full, `UNAVAILABLE` when the wait timed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead `{bulkhead}` ({tier}) refused the call: {reason:?}")]
pub struct BulkheadFull {
    /// The pool's name.
    pub bulkhead: &'static str,
    /// The tier's name.
    pub tier: &'static str,
    /// Why.
    pub reason: Reason,
}

impl Rejection for BulkheadFull {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn problem(&self) -> ProblemDetails {
        let detail = match self.reason {
            Reason::QueueFull => "Every slot for this kind of work is taken and its queue is full.",
            Reason::WaitTimedOut => "No slot for this kind of work became free in time.",
        };
        ProblemDetails::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail(detail)
            .with_member("bulkhead", self.bulkhead)
            .with_member("tier", self.tier)
    }

    fn grpc_code(&self) -> GrpcCode {
        match self.reason {
            Reason::QueueFull => GrpcCode::ResourceExhausted,
            Reason::WaitTimedOut => GrpcCode::Unavailable,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

/// A call that ran past the bulkhead's per-call timeout: cut off (the inner future is dropped),
/// its slot freed, answered 504 with problem+json; gRPC `DEADLINE_EXCEEDED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead `{bulkhead}` cut a call off after {after:?}")]
pub struct CallTimedOut {
    /// The bulkhead's name (the pool's, or the fleet semaphore's).
    pub bulkhead: String,
    /// The tier's name, for a tier of a pool.
    pub tier: Option<&'static str>,
    /// The per-call timeout.
    pub after: Duration,
}

impl Rejection for CallTimedOut {
    fn status(&self) -> StatusCode {
        StatusCode::GATEWAY_TIMEOUT
    }

    fn problem(&self) -> ProblemDetails {
        let problem = ProblemDetails::new(StatusCode::GATEWAY_TIMEOUT)
            .with_detail(format!(
                "The call took longer than the bulkhead's {} ms limit.",
                self.after.as_millis()
            ))
            .with_member("bulkhead", self.bulkhead.as_str());
        match self.tier {
            Some(tier) => problem.with_member("tier", tier),
            None => problem,
        }
    }

    fn grpc_code(&self) -> GrpcCode {
        GrpcCode::DeadlineExceeded
    }
}
