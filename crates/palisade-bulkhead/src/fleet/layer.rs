//! [`FleetBulkheadLayer`]: each call under a fleet permit, and [`FleetFull`], its refusal.

use std::time::Duration;

use palisade_core::{BackendError, redis::RedisClient};

use super::{FleetError, FleetSemaphore};

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

impl palisade_core::Rejection for FleetFull {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn problem(&self) -> palisade_core::ProblemDetails {
        palisade_core::ProblemDetails::new(http::StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("Every instance together already runs as many of these calls as allowed.")
            .with_member("semaphore", self.semaphore.as_str())
    }

    fn grpc_code(&self) -> palisade_core::responder::GrpcCode {
        palisade_core::responder::GrpcCode::ResourceExhausted
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
}

/// Runs each call under a [`FleetSemaphore`] permit: at most N such calls across the fleet.
///
/// The permit is taken in `call` (one Redis round trip, bounded by the semaphore's timeout);
/// the inner service, readied in `poll_ready`, is called once it is held (so `S: Clone`), and
/// the permit is released when the response arrives. If Redis cannot answer, the
/// [`OnBackendError`](palisade_core::OnBackendError) policy decides (fail open by default).
#[derive(Debug, Clone)]
pub struct FleetBulkheadLayer<C, R = palisade_core::ProblemJson> {
    semaphore: FleetSemaphore<C>,
    responder: R,
    on_backend_error: palisade_core::OnBackendError,
}

impl<C: RedisClient> FleetBulkheadLayer<C> {
    /// Limits calls with `semaphore`.
    pub fn new(semaphore: FleetSemaphore<C>) -> Self {
        FleetBulkheadLayer {
            semaphore,
            responder: palisade_core::ProblemJson,
            on_backend_error: palisade_core::OnBackendError::default(),
        }
    }
}

impl<C, R> FleetBulkheadLayer<C, R> {
    /// Renders refusals with `responder`.
    pub fn responder<R2>(self, responder: R2) -> FleetBulkheadLayer<C, R2> {
        FleetBulkheadLayer {
            semaphore: self.semaphore,
            responder,
            on_backend_error: self.on_backend_error,
        }
    }

    /// What to do when Redis cannot answer (default: fail open).
    pub fn on_backend_error(mut self, policy: palisade_core::OnBackendError) -> Self {
        self.on_backend_error = policy;
        self
    }
}

impl<S, C: Clone, R: Clone> tower_layer::Layer<S> for FleetBulkheadLayer<C, R> {
    type Service = FleetBulkhead<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        FleetBulkhead {
            inner,
            semaphore: self.semaphore.clone(),
            responder: self.responder.clone(),
            on_backend_error: self.on_backend_error,
        }
    }
}

/// The service of [`FleetBulkheadLayer`].
#[derive(Debug, Clone)]
pub struct FleetBulkhead<S, C, R> {
    inner: S,
    semaphore: FleetSemaphore<C>,
    responder: R,
    on_backend_error: palisade_core::OnBackendError,
}

impl<S, C, R> FleetBulkhead<S, C, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, C, R, ReqB, ResB> tower_service::Service<http::Request<ReqB>> for FleetBulkhead<S, C, R>
where
    S: tower_service::Service<http::Request<ReqB>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send,
    C: RedisClient,
    R: palisade_core::Responder<ResB>,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = http::Response<ResB>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<ResB>, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let (semaphore, responder, on_error) = (
            self.semaphore.clone(),
            self.responder.clone(),
            self.on_backend_error,
        );
        let deadline = req
            .extensions()
            .get::<palisade_core::deadline::Deadline>()
            .copied();
        Box::pin(async move {
            // Within the request's budget: a stalled Redis costs what is left of it, no more
            // (a permit taken as the budget runs out is undone by its id).
            let acquired = match deadline {
                None => semaphore.try_acquire().await,
                Some(d) => tokio::time::timeout_at(d.at(), semaphore.try_acquire())
                    .await
                    .unwrap_or(Err(FleetError::Backend(BackendError::Timeout(
                        Duration::ZERO,
                    )))),
            };
            match acquired {
                Ok(permit) => {
                    let result = inner.call(req).await;
                    permit.release().await;
                    result
                }
                Err(FleetError::Full { retry_after }) => Ok(responder.respond(&FleetFull {
                    semaphore: semaphore.name().to_owned(),
                    retry_after,
                })),
                Err(FleetError::Backend(error)) => {
                    if on_error.apply("bulkhead", &error) {
                        inner.call(req).await
                    } else {
                        Ok(
                            responder.respond(&palisade_core::responder::BackendUnavailable {
                                layer: "bulkhead",
                                source: error,
                            }),
                        )
                    }
                }
            }
        })
    }
}
