//! [`FleetSemaphore`]: at most N concurrent calls across every instance, on Redis.

use std::{
    fmt,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use palisade_core::{
    BackendError,
    backend::{Undo, compensation_timeout},
    key::Key,
    lease::Lease,
    redis::{Arg, DECISION_TIMEOUT, RedisBackend, RedisClient, RedisScript},
};
use tokio::{task::JoinHandle, time::Instant};

static SEMAPHORE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("scripts/semaphore.lua")));

/// "At most N concurrent calls to this partner API across all instances": a semaphore whose
/// permits are Redis leases.
///
/// A permit is a lease that expires (default 30 s) unless renewed; the holder renews it every
/// third of the lease while it lives, so a long call keeps its slot, and an instance that dies
/// (or stalls past its lease) gives its slots back on its own — no leaked permits. Every Redis
/// call is bounded by a timeout.
///
/// ```no_run
/// # async fn demo(client: impl palisade_core::redis::RedisClient) -> Result<(), palisade_bulkhead::FleetError> {
/// use palisade_bulkhead::FleetSemaphore;
///
/// let partner = FleetSemaphore::new(client, "partner-api", 20);
/// let permit = partner.try_acquire().await?;   // FleetError::Full { retry_after } when taken
/// // … call the partner API …
/// permit.release().await;
/// # Ok(()) }
/// ```
pub struct FleetSemaphore<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    backend: RedisBackend<C>,
    name: String,
    key: String,
    capacity: u32,
    lease: Duration,
    instance: u64,
    next: AtomicU64,
}

/// Why no permit was granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Every permit is held; the earliest lease ends within `retry_after` at the latest.
    #[error("all fleet permits are taken; retry after {retry_after:?}")]
    Full {
        /// Until the earliest lease expires (if it is not renewed or released first).
        retry_after: Duration,
    },
    /// Redis did not answer.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl<C> Clone for FleetSemaphore<C> {
    fn clone(&self) -> Self {
        FleetSemaphore {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for FleetSemaphore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetSemaphore")
            .field("key", &self.inner.key)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl<C: RedisClient> FleetSemaphore<C> {
    /// At most `capacity` permits named `name` across every instance using the same Redis
    /// (any [`RedisClient`]), 30 s leases, 50 ms Redis timeout ([`DECISION_TIMEOUT`]).
    pub fn new(client: C, name: &str, capacity: u32) -> Self {
        let backend = RedisBackend::new(client, "semaphore", DECISION_TIMEOUT);
        FleetSemaphore {
            inner: Arc::new(Inner {
                key: backend.key("leases", &Key::from(name)),
                backend,
                name: name.to_owned(),
                capacity,
                lease: Duration::from_secs(30),
                instance: palisade_core::random::u64(),
                next: AtomicU64::new(0),
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        let i = &self.inner;
        let mut inner = Inner {
            backend: i.backend.clone(),
            name: i.name.clone(),
            key: i.key.clone(),
            capacity: i.capacity,
            lease: i.lease,
            instance: i.instance,
            next: AtomicU64::new(0),
        };
        f(&mut inner);
        FleetSemaphore {
            inner: Arc::new(inner),
        }
    }

    /// Keys under `prefix` instead of `palisade`.
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.map(|i| {
            i.backend = i.backend.clone().with_prefix(prefix);
            i.key = i.backend.key("leases", &Key::from(i.name.as_str()));
        })
    }

    /// How long a permit lives without renewal (default 30 s): the longest a dead instance's
    /// slots stay taken.
    pub fn lease(self, lease: Duration) -> Self {
        self.map(|i| i.lease = lease.max(Duration::from_millis(10)))
    }

    /// Bounds every Redis call (default 50 ms).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|i| i.backend = i.backend.clone().with_timeout(timeout))
    }

    async fn run(&self, op: &str, id: &str) -> Result<(bool, Duration), BackendError> {
        self.run_within(op, id, self.inner.backend.timeout()).await
    }

    async fn run_within(
        &self,
        op: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<(bool, Duration), BackendError> {
        let i = &*self.inner;
        let args = [
            Arg::from(op),
            Arg::from(id),
            Arg::from(i.capacity),
            Arg::Int(i.lease.as_millis() as i64),
        ];
        let reply: Vec<i64> = i
            .backend
            .run_within(&SEMAPHORE, std::slice::from_ref(&i.key), &args, timeout)
            .await?;
        match reply.as_slice() {
            [granted, _, wait] => Ok((*granted == 1, Duration::from_millis((*wait).max(0) as u64))),
            _ => Err(BackendError::Protocol(format!(
                "semaphore script replied {reply:?}"
            ))),
        }
    }

    /// A permit if one is free now. It is renewed in the background (on the current tokio
    /// runtime) until released or dropped.
    pub async fn try_acquire(&self) -> Result<FleetPermit<C>, FleetError> {
        let i = &*self.inner;
        let id = format!(
            "{:016x}-{}",
            i.instance,
            i.next.fetch_add(1, Ordering::Relaxed)
        );
        // Armed until the reply is known: the script may run after a timeout, or after this
        // future is dropped, taking a slot nobody renews or releases. Released by its id (a
        // no-op if it never landed; the id is ours alone).
        let undo = Undo::new("bulkhead", || {
            let (semaphore, id) = (self.clone(), id.clone());
            let within = compensation_timeout(self.inner.backend.timeout());
            async move { semaphore.run_within("release", &id, within).await }
        });
        let sent_at = Instant::now();
        let (granted, wait) = undo.settle(self.run("acquire", &id).await)?;
        if !granted {
            return Err(FleetError::Full {
                retry_after: wait.max(Duration::from_millis(1)),
            });
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (semaphore, id, lost) = (self.clone(), id.clone(), lost.clone());
            tokio::spawn(async move {
                // The lease counts from the send time of the last success, and the permit is
                // lost once it has run out — even while a renewal is pending — so it never
                // believes it holds a slot the server may already have given away.
                let mut lease = Lease::new(semaphore.inner.lease, sent_at);
                let every = semaphore.inner.lease / 3;
                let mut next = sent_at + every;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(lease.lost_at()) => break,
                        _ = tokio::time::sleep_until(next) => {}
                    }
                    let sent = Instant::now();
                    let renewed = tokio::select! {
                        renewed = semaphore.run("renew", &id) => renewed,
                        _ = tokio::time::sleep_until(lease.lost_at()) => break,
                    };
                    match renewed {
                        Ok((true, _)) => lease = lease.extended(sent),
                        Ok((false, _)) => break,
                        Err(error) => {
                            tracing::warn!(target: "palisade::bulkhead", %error, "fleet permit renewal failed")
                        }
                    }
                    next = Instant::now().max(sent + every);
                }
                tracing::warn!(target: "palisade::bulkhead", lease = %id, "fleet permit lost: its lease expired");
                lost.store(true, Ordering::Release);
            })
        };
        Ok(FleetPermit {
            semaphore: self.clone(),
            id,
            lost,
            renewer: Some(renewer),
        })
    }
}

/// A fleet-wide slot. Release it with [`release`](Self::release); dropping it stops the
/// renewal and releases it in the background (or the lease expires).
pub struct FleetPermit<C: RedisClient> {
    semaphore: FleetSemaphore<C>,
    id: String,
    lost: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl<C: RedisClient> FleetPermit<C> {
    /// Whether the lease was lost (the instance stalled past it, or Redis forgot it): another
    /// instance may now hold this slot, so work that must stay within the limit should stop.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Gives the slot back.
    pub async fn release(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Err(error) = self.semaphore.run("release", &self.id).await {
            tracing::warn!(target: "palisade::bulkhead", %error, "fleet permit release failed; its lease will expire");
        }
    }

    /// Stops renewing and leaves the lease to expire, as when the process dies: for tests of
    /// recovery, or a process about to exit abruptly.
    pub fn abandon(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.id.clear();
    }
}

impl<C: RedisClient> Drop for FleetPermit<C> {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let (semaphore, id) = (self.semaphore.clone(), std::mem::take(&mut self.id));
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = semaphore.run("release", &id).await;
                });
            }
        }
    }
}

impl<C: RedisClient> fmt::Debug for FleetPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetPermit")
            .field("id", &self.id)
            .field("lost", &self.is_lost())
            .finish()
    }
}

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
                    semaphore: semaphore.inner.name.clone(),
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
