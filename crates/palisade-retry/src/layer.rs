//! [`RetryLayer`] and its service.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use palisade_core::{
    body::{Collected, collect_within},
    deadline::Deadline,
};
use tokio::{sync::broadcast, time::Instant};
use tower::{BoxError, Service, ServiceExt};
use tower_layer::Layer;

use crate::{
    AttemptTimedOut, ReplayBody, RetryBudget, RetryPolicy,
    classify::{HttpRetry, RetryClassify, RetryDecision},
    decide::{Next, decide},
};

/// Retries failed HTTP requests to the inner service (usually a client).
///
/// Each request is first classified as retryable or not (idempotent method or an
/// `Idempotency-Key` header, and a body that fits the replay buffer). Then attempts follow the
/// [`RetryPolicy`]: jittered backoff, `Retry-After` honoured (capped), a per-attempt timeout, an
/// overall deadline, and a [`RetryBudget`] shared by every clone so a failing upstream never
/// sees retry amplification. The inner service receives [`ReplayBody`]s.
///
/// Put it **inside** the circuit breaker — `palisade::retry::client_stack` builds that
/// order — so retries stop while the circuit is open and the breaker counts one outcome per
/// logical call.
#[derive(Debug, Clone)]
pub struct RetryLayer<C = HttpRetry> {
    policy: Arc<RetryPolicy>,
    budget: RetryBudget,
    classify: C,
    events: broadcast::Sender<RetryEvent>,
}

/// A retry about to happen, published to [`RetryLayer::subscribe`] listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEvent {
    /// The attempt about to be made (2 for the first retry).
    pub attempt: u32,
    /// The wait before it.
    pub delay: Duration,
    /// Why: the status or the error of the previous attempt.
    pub reason: String,
}

impl RetryLayer {
    /// Retries by `policy`, with the default budget (20 % of requests + 10/s).
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            policy: Arc::new(policy),
            budget: RetryBudget::default(),
            classify: HttpRetry,
            events: broadcast::channel(64).0,
        }
    }
}

impl<C> RetryLayer<C> {
    /// Shares `budget` (with other layers too, if you like).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Classifies results with `classify`.
    pub fn classify<C2>(self, classify: C2) -> RetryLayer<C2> {
        RetryLayer {
            policy: self.policy,
            budget: self.budget,
            classify,
            events: self.events,
        }
    }

    /// Retries from now on, as events. Nothing is built unless someone listens.
    pub fn subscribe(&self) -> broadcast::Receiver<RetryEvent> {
        self.events.subscribe()
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
            budget: self.budget.clone(),
            classify: self.classify.clone(),
            events: self.events.clone(),
        }
    }
}

/// The service of [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S, C> {
    inner: S,
    policy: Arc<RetryPolicy>,
    budget: RetryBudget,
    classify: C,
    events: broadcast::Sender<RetryEvent>,
}

impl<S, C> Retry<S, C> {
    palisade_core::inner_service_accessors!(S);
}

/// Whether a request may be sent more than once by default.
pub fn is_idempotent<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || req.headers().contains_key("idempotency-key")
}

impl<S, C, B, RB> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    C: RetryClassify<Response<RB>>,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let policy = self.policy.clone();
        let budget = self.budget.clone();
        let classify = self.classify.clone();
        let events = self.events.clone();
        // The ready service makes the first attempt; later attempts wait on a clone.
        let fresh = self.inner.clone();
        let first = std::mem::replace(&mut self.inner, fresh);
        let retryable = policy.max_attempts > 1 && (policy.any_method || is_idempotent(&req));
        // The request's own budget (a `DeadlineLayer` upstream) bounds the attempts and waits
        // as the policy's deadline does: the earlier of the two.
        let request_deadline = Deadline::of(&req).map(Deadline::at);
        budget.deposit();
        Box::pin(async move {
            let started = Instant::now();
            let deadline = match (policy.deadline.map(|d| started + d), request_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let (parts, body) = req.into_parts();
            let head = Head::from(parts);
            let (data, trailers) = if retryable {
                match collect_within(body, policy.body_limit).await {
                    Collected::Complete { data, trailers } => (data, trailers),
                    // Too large (or failed): what was read, then the rest, sent once.
                    other => {
                        let body = ReplayBody::from_collected(other);
                        return attempt(
                            first,
                            head.request(body),
                            policy.attempt_timeout,
                            deadline,
                        )
                        .await;
                    }
                }
            } else {
                let body = ReplayBody::prefixed(Bytes::new(), body);
                return attempt(first, head.request(body), policy.attempt_timeout, deadline).await;
            };

            // The first attempt uses the service readied in `poll_ready`; later ones, clones
            // (readied by `attempt`).
            let template = first.clone();
            let mut readied = Some(first);
            let mut previous_wait = policy.base;
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let req = head.request(ReplayBody::whole(data.clone(), trailers.clone()));
                let svc = readied.take().unwrap_or_else(|| template.clone());
                let result = attempt(svc, req, policy.attempt_timeout, deadline).await;
                let decision = classify.classify(&result);
                let time_left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let unit = palisade_core::random::unit();
                let wait = match decide(&policy, attempts, decision, previous_wait, time_left, unit)
                {
                    Next::Stop(_) => return finished(result, decision, attempts),
                    Next::Retry(wait) => wait,
                };
                if !budget.withdraw() {
                    tracing::debug!(target: "palisade::retry", attempts, "retry budget spent");
                    metrics::counter!("palisade_retry_budget_exhausted_total").increment(1);
                    return finished(result, decision, attempts);
                }
                if events.receiver_count() > 0 {
                    let _ = events.send(RetryEvent {
                        attempt: attempts + 1,
                        delay: wait,
                        reason: reason(&result),
                    });
                }
                tracing::debug!(
                    target: "palisade::retry",
                    attempt = attempts + 1,
                    delay_ms = wait.as_millis() as u64,
                    reason = %reason(&result),
                    "retrying"
                );
                metrics::counter!("palisade_retry_retries_total").increment(1);
                previous_wait = wait;
                drop(result);
                tokio::time::sleep(wait).await;
            }
        })
    }
}

/// Counts a finished logical call in `palisade_retry_calls_total{outcome}` and returns it.
fn finished<R>(
    result: Result<Response<R>, BoxError>,
    last: RetryDecision,
    attempts: u32,
) -> Result<Response<R>, BoxError> {
    let succeeded =
        last == RetryDecision::Stop && result.as_ref().is_ok_and(|r| !r.status().is_server_error());
    let outcome = match (succeeded, attempts > 1) {
        (true, false) => "success_without_retry",
        (true, true) => "success_with_retry",
        (false, false) => "failed_without_retry",
        (false, true) => "failed_with_retry",
    };
    metrics::counter!("palisade_retry_calls_total", "outcome" => outcome).increment(1);
    result
}

fn reason<R>(result: &Result<Response<R>, BoxError>) -> String {
    match result {
        Ok(r) => r.status().to_string(),
        Err(e) => e.to_string(),
    }
}

/// One attempt, bounded by the per-attempt timeout and the overall deadline.
async fn attempt<S, B, RB>(
    mut svc: S,
    req: Request<ReplayBody<B>>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    let limit = match (timeout, deadline) {
        (Some(t), Some(d)) => Some(t.min(d.saturating_duration_since(Instant::now()))),
        (Some(t), None) => Some(t),
        (None, Some(d)) => Some(d.saturating_duration_since(Instant::now())),
        (None, None) => None,
    };
    let call = async {
        svc.ready().await.map_err(Into::into)?;
        svc.call(req).await.map_err(Into::into)
    };
    match limit {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .unwrap_or_else(|_| Err(Box::new(AttemptTimedOut(limit)))),
        None => call.await,
    }
}

/// The request head, kept to rebuild each attempt (`http::request::Parts` is not `Clone`).
struct Head {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    extensions: http::Extensions,
}

impl Head {
    fn from(parts: http::request::Parts) -> Self {
        Head {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            extensions: parts.extensions,
        }
    }

    fn request<T>(&self, body: T) -> Request<T> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        *req.extensions_mut() = self.extensions.clone();
        req
    }
}
