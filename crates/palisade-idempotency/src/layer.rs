//! [`IdempotencyLayer`]: configuration and the tower `Layer`.

use std::{sync::Arc, time::Duration};

use http::{HeaderName, Method};
use palisade_core::{OnBackendError, ProblemJson, key::Global};
use tower_layer::Layer;

use crate::{
    Fingerprint, UnknownOutcome,
    policy::{Config, InFlight},
    service::Idempotency,
};

/// Executes each `Idempotency-Key` once and replays its response to every retry.
///
/// For a request whose method the layer covers (POST, PUT and PATCH by default) and which
/// carries an `Idempotency-Key`:
///
/// 1. the body is read (up to [`max_request_body`](Self::max_request_body), else 413) and the
///    request [`Fingerprint`] computed;
/// 2. the key — scoped to the caller ([`scope`](Self::scope)), the path and the
///    [`namespace`](Self::namespace) — is **claimed** atomically in the store with a lease;
/// 3. the claim's winner runs the inner service, renewing its lease every third of it; a
///    2xx or 3xx response (4xx too with [`store_client_errors`](Self::store_client_errors),
///    never a 5xx or a failed gRPC status) is stored for the [`retention`](Self::retention)
///    period; a 4xx that is not stored releases the claim so a corrected retry runs; an
///    **unknown outcome** — a 5xx, an error, a panic, a timeout that drops the request — keeps
///    the claim until its lease ends by default ([`on_unknown_outcome`](Self::on_unknown_outcome));
/// 4. everyone else gets the stored response with `Idempotent-Replayed: true`, or 409 while the
///    first request runs ([`InFlight`]), or 422 if the key was used with a different request.
///
/// A missing key passes through unless [`require_key`](Self::require_key) (then 400); a
/// malformed one is 400. When the store cannot answer the layer **fails closed** with 503 by
/// default: running without deduplication risks executing twice
/// ([`on_backend_error`](Self::on_backend_error)).
///
/// Configure per route by putting differently configured layers on different routes
/// (`Router::route_layer`).
///
/// ```
/// use axum::{Router, routing::post};
/// use palisade_core::key::Header;
/// use palisade_idempotency::{IdempotencyLayer, MemoryStore};
///
/// let app: Router = Router::new()
///     .route("/payments", post(|| async { (http::StatusCode::CREATED, "charged") }))
///     .route_layer(
///         IdempotencyLayer::new(MemoryStore::new())
///             .scope(Header::new("x-api-key"))
///             .require_key(),
///     );
/// ```
///
/// The inner service receives the buffered body as
/// `http_body_util::Either<Full<Bytes>, B>` (the original body `B` when the layer lets the
/// request through untouched), and answers with [`IdempotencyBody`](crate::IdempotencyBody).
/// Response bodies must be `Unpin` (axum's, hyper's and tonic's are). Streaming responses are
/// buffered to be stored: keep this layer off streaming routes.
#[derive(Debug, Clone)]
pub struct IdempotencyLayer<S, K = Global, R = ProblemJson> {
    pub(crate) store: S,
    pub(crate) scope: Arc<K>,
    pub(crate) responder: R,
    pub(crate) config: Arc<Config>,
}

impl<S> IdempotencyLayer<S> {
    /// A layer on `store` with the defaults: POST/PUT/PATCH, key optional, one global caller
    /// scope, 60 s lease, 24 h retention, 1 MiB bodies, 409 while in flight, fail closed.
    ///
    /// Set [`scope`](Self::scope) whenever requests come from more than one client.
    pub fn new(store: S) -> Self {
        IdempotencyLayer {
            store,
            scope: Arc::new(Global),
            responder: ProblemJson,
            config: Arc::new(Config::default()),
        }
    }
}

impl<S, K, R> IdempotencyLayer<S, K, R> {
    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Scopes keys to the caller this extractor names (an API key header, an authenticated
    /// principal, a tenant): the same `Idempotency-Key` from two callers is two operations,
    /// and one caller can never receive another's stored response. A request the extractor
    /// cannot identify is refused with 400.
    pub fn scope<K2>(self, extractor: K2) -> IdempotencyLayer<S, K2, R> {
        IdempotencyLayer {
            store: self.store,
            scope: Arc::new(extractor),
            responder: self.responder,
            config: self.config,
        }
    }

    /// Renders refusals with another responder (e.g. `palisade_core::responder::Grpc`).
    pub fn responder<R2>(self, responder: R2) -> IdempotencyLayer<S, K, R2> {
        IdempotencyLayer {
            store: self.store,
            scope: self.scope,
            responder,
            config: self.config,
        }
    }

    /// Refuses requests without an `Idempotency-Key` (400) instead of letting them through.
    pub fn require_key(self) -> Self {
        self.edit(|c| c.required = true)
    }

    /// The methods covered (default POST, PUT, PATCH); others pass through.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter().collect();
        self.edit(|c| c.methods = methods)
    }

    /// Separates this layer's keys from other layers' on the same store (default `default`).
    pub fn namespace(self, namespace: &str) -> Self {
        let namespace = namespace.to_owned();
        self.edit(|c| c.namespace = namespace)
    }

    /// How long a claim lasts without renewal (default 60 s). The running request renews it
    /// every third of this, so it bounds how long a crashed instance's claim blocks retries,
    /// not how long a handler may run.
    pub fn lease(self, lease: Duration) -> Self {
        self.edit(|c| c.lease = lease.max(Duration::from_millis(30)))
    }

    /// How long a stored response is replayed (default 24 h; 24–72 h is the usual range —
    /// longer than any client's retry horizon).
    pub fn retention(self, retention: Duration) -> Self {
        self.edit(|c| c.retention = retention)
    }

    /// Stores 4xx responses too (by default they are not: the client may fix the request and
    /// retry with the same key).
    pub fn store_client_errors(self, store: bool) -> Self {
        self.edit(|c| c.store_client_errors = store)
    }

    /// The largest request body read to fingerprint (default 1 MiB); larger → 413.
    pub fn max_request_body(self, bytes: usize) -> Self {
        self.edit(|c| c.max_request_body = bytes)
    }

    /// The largest response body stored (default 1 MiB). A larger response is sent to the
    /// client, the operation is recorded as done, and retries get 409 (it is never run again).
    pub fn max_response_body(self, bytes: usize) -> Self {
        self.edit(|c| c.max_response_body = bytes)
    }

    /// Waits up to `max` for an in-flight duplicate to finish and replays its response,
    /// instead of answering 409 at once.
    pub fn wait_for_in_flight(self, max: Duration) -> Self {
        self.edit(|c| c.in_flight = InFlight::Wait(max))
    }

    /// What to do when the store cannot answer: fail closed with 503 (default) or fail open
    /// (run the request without deduplication).
    pub fn on_backend_error(self, policy: OnBackendError) -> Self {
        self.edit(|c| c.on_backend_error = policy)
    }

    /// How requests are compared (default: method, path and query, body bytes).
    pub fn fingerprint(self, fingerprint: Fingerprint) -> Self {
        self.edit(|c| c.fingerprint = fingerprint)
    }

    /// Does not store (nor replay) this response header. Hop-by-hop headers, `Date`,
    /// `Content-Length` and `Set-Cookie` are never stored.
    pub fn exclude_header(self, name: HeaderName) -> Self {
        self.edit(|c| c.excluded_headers.push(name))
    }

    /// What to do with the claim when the request's outcome is unknown (default
    /// [`UnknownOutcome::KeepClaim`]: retries get 409 until the lease ends). A handler marks a
    /// 5xx that applied nothing with [`NotApplied`](crate::NotApplied) to release the key.
    pub fn on_unknown_outcome(self, policy: UnknownOutcome) -> Self {
        self.edit(|c| c.unknown_outcome = policy)
    }

    /// Stores and replays `Set-Cookie` (off by default: a session cookie replayed to a retry
    /// is rarely what anyone wants).
    pub fn keep_set_cookie(self) -> Self {
        self.edit(|c| c.keep_set_cookie = true)
    }
}

impl<Svc, S: Clone, K, R: Clone> Layer<Svc> for IdempotencyLayer<S, K, R> {
    type Service = Idempotency<Svc, S, K, R>;

    fn layer(&self, inner: Svc) -> Self::Service {
        Idempotency {
            inner,
            store: self.store.clone(),
            scope: self.scope.clone(),
            responder: self.responder.clone(),
            config: self.config.clone(),
        }
    }
}
