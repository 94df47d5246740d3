//! [`Locked`]: the refusal when the lock stays busy.

use std::time::Duration;

use http::StatusCode;
use palisade_core::{ProblemDetails, Rejection, responder::GrpcCode};

/// The lock is held by another request: 409 with `Retry-After`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the resource `{name}` is locked by another request")]
pub struct Locked {
    /// The lock's name.
    pub name: String,
    /// When to try again.
    pub retry_after: Duration,
}

impl Rejection for Locked {
    fn status(&self) -> StatusCode {
        StatusCode::CONFLICT
    }

    fn problem(&self) -> ProblemDetails {
        ProblemDetails::new(StatusCode::CONFLICT)
            .with_type("https://palisade.rs/problems/locked", "Resource locked")
            .with_detail(format!(
                "Another request is working on `{}`; retry shortly.",
                self.name
            ))
    }

    fn grpc_code(&self) -> GrpcCode {
        GrpcCode::Aborted
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
}
