//! [`FleetSemaphore`] as a bulkhead [`Semaphore`]: what [`BulkheadLayer::from_semaphore`]
//! admits calls through, and its refusals.
//!
//! [`BulkheadLayer::from_semaphore`]: crate::BulkheadLayer::from_semaphore

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use palisade_core::{
    ProblemDetails, Rejection,
    redis::RedisClient,
    responder::{BackendUnavailable, GrpcCode},
};
use sync_wrapper::SyncWrapper;

use super::{FleetError, FleetPermit, FleetSemaphore};
use crate::semaphore::Semaphore;

/// Every fleet permit is taken: 503 with `Retry-After` (until the earliest lease ends) and
/// problem+json; gRPC `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fleet semaphore `{semaphore}` is full")]
pub struct FleetFull {
    /// The semaphore's name.
    pub semaphore: String,
    /// Until the earliest lease ends.
    pub retry_after: Duration,
}

impl Rejection for FleetFull {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn problem(&self) -> ProblemDetails {
        ProblemDetails::new(http::StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("Every instance together already runs as many of these calls as allowed.")
            .with_member("semaphore", self.semaphore.as_str())
    }

    fn grpc_code(&self) -> GrpcCode {
        GrpcCode::ResourceExhausted
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
}

/// Why a bulkhead over a [`FleetSemaphore`] refused a call.
#[derive(Debug, thiserror::Error)]
pub enum FleetRefusal {
    /// Every permit is taken.
    #[error(transparent)]
    Full(FleetFull),
    /// Redis did not answer and the semaphore fails closed
    /// ([`FleetSemaphore::on_backend_error`]): 503.
    #[error(transparent)]
    Unavailable(BackendUnavailable),
}

impl Rejection for FleetRefusal {
    fn status(&self) -> http::StatusCode {
        match self {
            FleetRefusal::Full(r) => r.status(),
            FleetRefusal::Unavailable(r) => r.status(),
        }
    }

    fn problem(&self) -> ProblemDetails {
        match self {
            FleetRefusal::Full(r) => r.problem(),
            FleetRefusal::Unavailable(r) => r.problem(),
        }
    }

    fn grpc_code(&self) -> GrpcCode {
        match self {
            FleetRefusal::Full(r) => r.grpc_code(),
            FleetRefusal::Unavailable(r) => r.grpc_code(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            FleetRefusal::Full(r) => r.retry_after(),
            FleetRefusal::Unavailable(r) => r.retry_after(),
        }
    }
}

type Acquiring<C> = Pin<Box<dyn Future<Output = Result<FleetPermit<C>, FleetError>> + Send>>;

/// A [`FleetSemaphore`] acquisition under way: one Redis round trip, bounded by the
/// semaphore's timeout. Dropped before its reply is known, the lease it may have taken is
/// released by its id.
pub struct FleetAcquisition<C: RedisClient> {
    // One allocation per acquisition: `try_acquire` is an `async fn` over the client's opaque
    // futures. `SyncWrapper` keeps the service `Sync` (axum asks it of layers); the future is
    // only ever reached through `&mut`.
    acquiring: SyncWrapper<Acquiring<C>>,
}

impl<C: RedisClient> fmt::Debug for FleetAcquisition<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetAcquisition").finish_non_exhaustive()
    }
}

impl<C: RedisClient> Semaphore for FleetSemaphore<C> {
    /// `None`: admitted without a permit, Redis being unreachable and the semaphore failing
    /// open.
    type Permit = Option<FleetPermit<C>>;
    type Refusal = FleetRefusal;
    type Acquisition = FleetAcquisition<C>;

    fn acquisition(&self) -> FleetAcquisition<C> {
        let semaphore = self.clone();
        FleetAcquisition {
            acquiring: SyncWrapper::new(Box::pin(async move { semaphore.try_acquire().await })),
        }
    }

    fn poll_acquire(
        &self,
        acquisition: &mut FleetAcquisition<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<FleetPermit<C>>, FleetRefusal>> {
        let refusal = match ready!(acquisition.acquiring.get_mut().as_mut().poll(cx)) {
            Ok(permit) => return Poll::Ready(Ok(Some(permit))),
            Err(FleetError::Full { retry_after }) => FleetRefusal::Full(FleetFull {
                semaphore: FleetSemaphore::name(self).to_owned(),
                retry_after,
            }),
            Err(FleetError::Backend(error)) => {
                if self.backend_error_policy().apply("bulkhead", &error) {
                    return Poll::Ready(Ok(None));
                }
                FleetRefusal::Unavailable(BackendUnavailable {
                    layer: "bulkhead",
                    source: error,
                })
            }
        };
        let reason = match refusal {
            FleetRefusal::Full(_) => "fleet_full",
            FleetRefusal::Unavailable(_) => "backend_unavailable",
        };
        metrics::counter!("palisade_bulkhead_rejections_total", "bulkhead" => FleetSemaphore::name(self).to_owned(), "reason" => reason)
            .increment(1);
        Poll::Ready(Err(refusal))
    }

    fn name(&self) -> &str {
        FleetSemaphore::name(self)
    }
}
