//! [`LockLayer`]: one request at a time per lock name.

use std::{fmt, sync::Arc, time::Duration};

use palisade_core::{OnBackendError, ProblemJson, key::KeyExtractor};
use tower_layer::Layer;

use crate::{
    Locker,
    service::{Config, LockService},
};

/// Serialises requests per lock name: the name comes from the request (a [`PathSegment`](crate::PathSegment) —
/// percent-decoded, so every spelling of one path takes the same lock — a header, any
/// [`KeyExtractor`]); the request waits up to [`wait`](Self::wait) for the lock
/// (default: fail fast) and is otherwise refused with 409 + `Retry-After` (problem+json). The
/// guard's [`HeldLock`](crate::HeldLock) goes into the request extensions, and the lock is released as soon as
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
