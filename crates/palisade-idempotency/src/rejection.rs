//! Why the idempotency layer refused a request.

use std::time::Duration;

use http::StatusCode;
use palisade_core::{ProblemDetails, Rejection, responder::GrpcCode};

use crate::header::KeyProblem;

/// The idempotency layer's refusals, rendered by the layer's responder (RFC 9457
/// problem+json by default), with the statuses the IETF Idempotency-Key draft gives them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyRejection {
    /// 400: the key is required but absent, or malformed.
    #[error("{0}")]
    BadKey(KeyProblem),
    /// 422: the key was already used with a different request.
    #[error("the Idempotency-Key was already used with a different request")]
    KeyReused,
    /// 409: a request with this key is still being processed.
    #[error("a request with this Idempotency-Key is still being processed")]
    InFlight {
        /// When to try again.
        retry_after: Duration,
    },
    /// 409: the operation completed, but its response was too large to keep for replay.
    #[error("the operation with this Idempotency-Key was performed, but its response was not kept")]
    NotReplayable,
    /// 413: the request body is larger than the layer buffers to fingerprint it.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 400: the request body could not be read.
    #[error("the request body could not be read")]
    BodyUnreadable,
}

impl Rejection for IdempotencyRejection {
    fn status(&self) -> StatusCode {
        match self {
            IdempotencyRejection::BadKey(_) | IdempotencyRejection::BodyUnreadable => {
                StatusCode::BAD_REQUEST
            }
            IdempotencyRejection::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            IdempotencyRejection::InFlight { .. } | IdempotencyRejection::NotReplayable => {
                StatusCode::CONFLICT
            }
            IdempotencyRejection::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn problem(&self) -> ProblemDetails {
        let (type_uri, title) = match self {
            IdempotencyRejection::BadKey(KeyProblem::Missing) => (
                "https://palisade.rs/problems/idempotency-key-missing",
                "Idempotency-Key is missing",
            ),
            IdempotencyRejection::BadKey(KeyProblem::Malformed(_)) => (
                "https://palisade.rs/problems/idempotency-key-malformed",
                "Idempotency-Key is malformed",
            ),
            IdempotencyRejection::KeyReused => (
                "https://palisade.rs/problems/idempotency-key-reused",
                "Idempotency-Key is already used",
            ),
            IdempotencyRejection::InFlight { .. } => (
                "https://palisade.rs/problems/idempotency-key-in-flight",
                "A request outstanding for this Idempotency-Key",
            ),
            IdempotencyRejection::NotReplayable => (
                "https://palisade.rs/problems/idempotency-response-not-kept",
                "The original response was not kept",
            ),
            IdempotencyRejection::BodyTooLarge { .. } => (
                "https://palisade.rs/problems/request-body-too-large",
                "Request body too large",
            ),
            IdempotencyRejection::BodyUnreadable => (
                "https://palisade.rs/problems/request-body-unreadable",
                "Request body unreadable",
            ),
        };
        ProblemDetails::new(self.status())
            .with_type(type_uri, title)
            .with_detail(self.to_string())
    }

    fn grpc_code(&self) -> GrpcCode {
        match self {
            IdempotencyRejection::BadKey(_)
            | IdempotencyRejection::BodyUnreadable
            | IdempotencyRejection::BodyTooLarge { .. } => GrpcCode::InvalidArgument,
            IdempotencyRejection::KeyReused => GrpcCode::FailedPrecondition,
            IdempotencyRejection::InFlight { .. } | IdempotencyRejection::NotReplayable => {
                GrpcCode::Aborted
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            IdempotencyRejection::InFlight { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}
