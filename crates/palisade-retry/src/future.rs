//! [`ResponseFuture`]: the attempts of one logical call, as a state machine (no allocation
//! beyond the replay buffer, no boxed future).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, request::Parts};
use http_body::Body;
use palisade_core::body::{Collect, Collected, collect_within};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Service};

use crate::{
    AttemptTimedOut, ReplayBody, RetryEvent,
    classify::{RetryClassify, RetryDecision},
    decide::{Next, decide},
    shared::Shared,
};

pin_project! {
    /// The response future of [`Retry`](crate::Retry).
    ///
    /// Invariants: `parts` is `Some` only while the body is being read; `replay` is `Some` from
    /// then on exactly when the call may be retried (a single-shot call never clones its
    /// request); `timer` is the current attempt's time limit while an attempt is readying or in
    /// flight, and the backoff while waiting.
    pub struct ResponseFuture<S, C, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<B, S::Future>,
        #[pin]
        timer: Option<Sleep>,
        // Ready when the call starts; readied again before every retry.
        service: S,
        // A clone taken before the first attempt: every retry starts from a fresh clone of it,
        // never from an instance whose `poll_ready` failed (tower treats that as final).
        template: Option<S>,
        parts: Option<Parts>,
        replay: Option<Replay>,
        // The current attempt's time limit, for the timeout error.
        limit: Duration,
        attempts: u32,
        previous_wait: Duration,
        deadline: Option<Instant>,
        shared: Arc<Shared<C>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, F> {
        // Reading the request body into the replay buffer.
        Collecting {
            #[pin]
            collect: Collect<B>,
        },
        // Waiting for the service to be ready for a retry.
        Readying,
        // An attempt in flight.
        Calling {
            #[pin]
            future: F,
        },
        // The backoff before the next attempt.
        Waiting,
        // The result was returned.
        Done,
    }
}

impl<S, C, B> ResponseFuture<S, C, B>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body<Data = Bytes> + Unpin,
{
    pub(crate) fn new(
        mut service: S,
        req: Request<B>,
        retryable: bool,
        request_deadline: Option<Instant>,
        shared: Arc<Shared<C>>,
    ) -> Self {
        let policy = &shared.policy;
        let deadline = match (
            policy.deadline.map(|d| Instant::now() + d),
            request_deadline,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (parts, body) = req.into_parts();
        let (state, parts, (limit, timer)) = if retryable {
            // The first attempt's time limit starts once the body is read.
            let collect = collect_within(body, policy.body_limit);
            (
                State::Collecting { collect },
                Some(parts),
                (Duration::ZERO, None),
            )
        } else {
            // Sent once, streamed: nothing is buffered or cloned.
            let body = ReplayBody::prefixed(Bytes::new(), body);
            let future = service.call(Request::from_parts(parts, body));
            let limit = attempt_limit(policy.attempt_timeout, deadline);
            (State::Calling { future }, None, limit)
        };
        ResponseFuture {
            state,
            timer,
            service,
            template: None,
            parts,
            replay: None,
            limit,
            attempts: 0,
            previous_wait: shared.policy.base,
            deadline,
            shared,
        }
    }
}

impl<S, C, B> std::fmt::Debug for ResponseFuture<S, C, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Collecting { .. } => "collecting",
            State::Readying => "readying",
            State::Calling { .. } => "calling",
            State::Waiting => "waiting",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
            .field("retryable", &self.replay.is_some())
            .finish_non_exhaustive()
    }
}

/// The time limit of an attempt starting now: the per-attempt timeout, cut to the deadline.
fn attempt_limit(
    timeout: Option<Duration>,
    deadline: Option<Instant>,
) -> (Duration, Option<Sleep>) {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    match (timeout, left) {
        (Some(t), Some(l)) => (t.min(l), Some(tokio::time::sleep(t.min(l)))),
        (Some(t), None) | (None, Some(t)) => (t, Some(tokio::time::sleep(t))),
        (None, None) => (Duration::ZERO, None),
    }
}

impl<S, C, B, RB> Future for ResponseFuture<S, C, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    C: RetryClassify<Response<RB>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::Collecting { collect } => {
                    let collected = ready!(collect.poll(cx));
                    let parts = this
                        .parts
                        .take()
                        .expect("parts are kept until the body is read");
                    let (limit, timer) =
                        attempt_limit(this.shared.policy.attempt_timeout, *this.deadline);
                    *this.limit = limit;
                    this.timer.set(timer);
                    let future = match collected {
                        Collected::Complete { data, trailers } => {
                            *this.template = Some(this.service.clone());
                            let replay = this.replay.insert(Replay {
                                head: Head::from(parts),
                                data,
                                trailers,
                            });
                            this.service.call(replay.request())
                        }
                        // Too large (or failed): what was read, then the rest, sent once.
                        other => {
                            let body = ReplayBody::from_collected(other);
                            this.service.call(Request::from_parts(parts, body))
                        }
                    };
                    this.state.set(State::Calling { future });
                    continue;
                }
                StateProj::Readying => match this.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let replay = this.replay.as_ref().expect("only retries are readied");
                        let future = this.service.call(replay.request());
                        this.state.set(State::Calling { future });
                        continue;
                    }
                    Poll::Ready(Err(e)) => Err(e.into()),
                    Poll::Pending => match timed_out(this.timer.as_mut(), *this.limit, cx) {
                        Some(timeout) => Err(timeout),
                        None => return Poll::Pending,
                    },
                },
                StateProj::Calling { future } => match future.poll(cx) {
                    Poll::Ready(result) => result.map_err(Into::into),
                    Poll::Pending => match timed_out(this.timer.as_mut(), *this.limit, cx) {
                        Some(timeout) => Err(timeout),
                        None => return Poll::Pending,
                    },
                },
                StateProj::Waiting => {
                    if let Some(wait) = this.timer.as_mut().as_pin_mut() {
                        ready!(wait.poll(cx));
                    }
                    let (limit, timer) =
                        attempt_limit(this.shared.policy.attempt_timeout, *this.deadline);
                    *this.limit = limit;
                    this.timer.set(timer);
                    if let Some(template) = this.template.as_ref() {
                        *this.service = template.clone();
                    }
                    this.state.set(State::Readying);
                    continue;
                }
                StateProj::Done => panic!("`ResponseFuture` polled after it completed"),
            };
            // An attempt ended with `result`.
            if this.replay.is_none() {
                this.state.set(State::Done);
                return Poll::Ready(result);
            }
            *this.attempts += 1;
            let attempts = *this.attempts;
            let shared = &**this.shared;
            let decision = shared.classify.classify(&result);
            let time_left = this
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            let unit = palisade_core::random::unit();
            let wait = match decide(
                &shared.policy,
                attempts,
                decision,
                *this.previous_wait,
                time_left,
                unit,
            ) {
                Next::Stop(_) => {
                    this.state.set(State::Done);
                    return Poll::Ready(finished(result, decision, attempts));
                }
                Next::Retry(wait) => wait,
            };
            if !shared.budget.withdraw() {
                tracing::debug!(target: "palisade::retry", attempts, "retry budget spent");
                metrics::counter!("palisade_retry_budget_exhausted_total").increment(1);
                this.state.set(State::Done);
                return Poll::Ready(finished(result, decision, attempts));
            }
            announce(shared, &result, attempts + 1, wait);
            *this.previous_wait = wait;
            drop(result);
            this.timer.set(Some(tokio::time::sleep(wait)));
            this.state.set(State::Waiting);
        }
    }
}

/// The attempt's error if its time limit has passed (registers for the wake-up if not).
fn timed_out(
    timer: Pin<&mut Option<Sleep>>,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Option<BoxError> {
    let timer = timer.as_pin_mut()?;
    timer
        .poll(cx)
        .is_ready()
        .then(|| Box::new(AttemptTimedOut(limit)) as BoxError)
}

/// Publishes a retry about to happen: event (if anyone listens), trace, counter.
fn announce<C, R>(
    shared: &Shared<C>,
    result: &Result<Response<R>, BoxError>,
    attempt: u32,
    delay: Duration,
) {
    if shared.events.receiver_count() > 0 {
        let _ = shared.events.send(RetryEvent {
            attempt,
            delay,
            reason: reason(result),
        });
    }
    tracing::debug!(
        target: "palisade::retry",
        attempt,
        delay_ms = delay.as_millis() as u64,
        reason = %reason(result),
        "retrying"
    );
    metrics::counter!("palisade_retry_retries_total").increment(1);
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

/// A retryable request, kept to build each attempt: the head and the buffered body.
struct Replay {
    head: Head,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Replay {
    fn request<B>(&self) -> Request<ReplayBody<B>> {
        self.head
            .request(ReplayBody::whole(self.data.clone(), self.trailers.clone()))
    }
}

/// The request head, kept to rebuild each attempt (`http::request::Parts` is not `Clone`).
struct Head {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl Head {
    fn from(parts: Parts) -> Self {
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
