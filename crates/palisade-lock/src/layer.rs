//! [`LockLayer`]: one request at a time per lock name.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use palisade_core::{
    BackendError, OnBackendError, ProblemDetails, ProblemJson, Rejection, Responder,
    deadline::Deadline,
    key::{KeyError, KeyExtractor, RequestHead},
    responder::{BackendUnavailable, GrpcCode, MissingKey},
};
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use tower_service::Service;

use crate::{LockError, Locker};

/// What the holder of a lock needs to know: its name, its fencing token, and a token cancelled
/// if the lock is lost. [`Locker::run`] hands it to the protected work; [`LockLayer`] puts it in
/// the request extensions (and, with the `axum` feature, it is an axum extractor).
#[derive(Debug, Clone)]
pub struct HeldLock {
    /// The lock's name.
    pub name: Arc<str>,
    /// The fencing token, where the backend issues them.
    pub fencing_token: Option<u64>,
    /// Cancelled when the lock is lost while the request runs.
    pub lost: CancellationToken,
}

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

/// Serialises requests per lock name: the name comes from the request (a [`PathSegment`](crate::PathSegment) —
/// percent-decoded, so every spelling of one path takes the same lock — a header, any
/// [`KeyExtractor`]); the request waits up to [`wait`](Self::wait) for the lock
/// (default: fail fast) and is otherwise refused with 409 + `Retry-After` (problem+json). The
/// guard's [`HeldLock`] goes into the request extensions, and the lock is released as soon as
/// the inner service has produced its response (or failed, or the request was dropped).
///
/// When the lock backend cannot answer the layer fails **closed** (503) by default: the lock
/// exists to protect something.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::post};
/// use palisade_lock::{LockLayer, MemoryLock, PathSegment};
///
/// let app: Router = Router::new()
///     .route("/orders/{id}/payments", post(|| async { "charged" }))
///     .route_layer(
///         LockLayer::new(MemoryLock::new(Duration::from_secs(30)), PathSegment::new(1))
///             .namespace("order")
///             .wait(Duration::from_secs(2)),
///     );
/// ```
#[derive(Clone)]
pub struct LockLayer<L, K, R = ProblemJson> {
    locker: L,
    name: Arc<K>,
    responder: R,
    config: Config,
}

#[derive(Debug, Clone)]
struct Config {
    namespace: Arc<str>,
    wait: Duration,
    on_backend_error: OnBackendError,
}

impl<L: fmt::Debug, K, R> fmt::Debug for LockLayer<L, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockLayer")
            .field("locker", &self.locker)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<L: Locker, K: KeyExtractor> LockLayer<L, K> {
    /// Locks `name(request)` on `locker`, failing fast.
    pub fn new(locker: L, name: K) -> Self {
        LockLayer {
            locker,
            name: Arc::new(name),
            responder: ProblemJson,
            config: Config {
                namespace: "request".into(),
                wait: Duration::ZERO,
                on_backend_error: OnBackendError::FailClosed,
            },
        }
    }
}

impl<L, K, R> LockLayer<L, K, R> {
    /// Prefixes lock names (`<namespace>:<name>`; default `request`).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.config.namespace = namespace.into();
        self
    }

    /// Waits up to `wait` for a held lock (default 0: refuse at once).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config.wait = wait;
        self
    }

    /// What to do when the backend cannot answer (default fail closed: 503).
    pub fn on_backend_error(mut self, policy: OnBackendError) -> Self {
        self.config.on_backend_error = policy;
        self
    }

    /// Renders refusals with another responder.
    pub fn responder<R2>(self, responder: R2) -> LockLayer<L, K, R2> {
        LockLayer {
            locker: self.locker,
            name: self.name,
            responder,
            config: self.config,
        }
    }
}

impl<S, L: Clone, K, R: Clone> Layer<S> for LockLayer<L, K, R> {
    type Service = LockService<S, L, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        LockService {
            inner,
            locker: self.locker.clone(),
            name: self.name.clone(),
            responder: self.responder.clone(),
            config: self.config.clone(),
        }
    }
}

/// The service [`LockLayer`] builds.
#[derive(Clone)]
pub struct LockService<S, L, K, R> {
    inner: S,
    locker: L,
    name: Arc<K>,
    responder: R,
    config: Config,
}

impl<S, L, K, R> LockService<S, L, K, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S: fmt::Debug, L: fmt::Debug, K, R> fmt::Debug for LockService<S, L, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockService")
            .field("inner", &self.inner)
            .field("locker", &self.locker)
            .finish_non_exhaustive()
    }
}

impl<S, L, K, R, ReqB, ResB> Service<Request<ReqB>> for LockService<S, L, K, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqB: Send + 'static,
    ResB: Send + 'static,
    L: Locker,
    K: KeyExtractor,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let name = self.name.extract(&RequestHead::from(&request));
        let locker = self.locker.clone();
        let responder = self.responder.clone();
        let config = self.config.clone();
        let deadline = request.extensions().get::<Deadline>().copied();
        Box::pin(async move {
            let name = match name {
                Ok(key) => format!("{}:{key}", config.namespace),
                Err(error) => return Ok(responder.respond(&MissingKey(error))),
            };
            // Within the request's budget: wait no longer than it leaves, and cut the call
            // off when it runs out.
            let wait = deadline.map_or(config.wait, |d| config.wait.min(d.remaining()));
            let acquired = match deadline {
                None => locker.acquire(&name, wait).await,
                Some(d) => tokio::time::timeout_at(d.at(), locker.acquire(&name, wait))
                    .await
                    .unwrap_or(Err(LockError::Backend(BackendError::Timeout(
                        Duration::ZERO,
                    )))),
            };
            let guard = match acquired {
                Ok(guard) => guard,
                Err(LockError::Busy { .. }) => {
                    metrics::counter!("palisade_lock_requests_total", "outcome" => "locked")
                        .increment(1);
                    return Ok(responder.respond(&Locked {
                        name,
                        retry_after: Duration::from_secs(1),
                    }));
                }
                Err(LockError::Backend(error)) => {
                    if config.on_backend_error.apply("lock", &error) {
                        return inner.call(request).await;
                    }
                    return Ok(responder.respond(&BackendUnavailable {
                        layer: "lock",
                        source: error,
                    }));
                }
                Err(other) => {
                    let error = KeyError::Custom(other.to_string().into());
                    return Ok(responder.respond(&MissingKey(error)));
                }
            };
            metrics::counter!("palisade_lock_requests_total", "outcome" => "acquired").increment(1);
            request.extensions_mut().insert(guard.held_lock());
            let response = inner.call(request).await;
            let release = async move {
                if let Err(error) = guard.release().await {
                    tracing::warn!(target: "palisade::lock", %error, "could not release the request's lock; it expires with its lease");
                }
            };
            // The answer waits no longer than the budget; the release carries on behind it.
            Deadline::finish(deadline, release).await;
            response
        })
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for HeldLock {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<HeldLock>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no lock held: add LockLayer to this route",
        ))
    }
}
