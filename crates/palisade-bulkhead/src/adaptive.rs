//! Adaptive concurrency limits: AIMD and a Gradient2-style limit that move with observed
//! latency and errors, and **reject** over the limit instead of queueing.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::{ProblemJson, Responder};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{BulkheadFull, Reason};

/// How the limit moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitAlgorithm {
    /// Additive increase, multiplicative decrease: +1 after a fast success that finished while
    /// at least half the limit was in use; × `backoff` after an error or a call slower than
    /// `slow`.
    Aimd {
        /// Calls slower than this count as congestion.
        slow: Duration,
        /// Multiplier on congestion (0 < backoff < 1; 0.9 is usual).
        backoff: f64,
    },
    /// Gradient2-style: the limit follows `tolerance × long-term latency / latency` (clamped to
    /// [0.5, 1]) plus a √limit allowance, smoothed; the long-term latency is an average over
    /// roughly the last 100 calls; errors count as congestion.
    Gradient {
        /// Weight of each new estimate (0 < smoothing ≤ 1; 0.2 is usual).
        smoothing: f64,
        /// How much slower than the long-term latency is still healthy (2.0 is usual).
        tolerance: f64,
    },
}

/// The limit's bounds and starting point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitBounds {
    /// Never below.
    pub min: f64,
    /// Starting limit.
    pub initial: f64,
    /// Never above.
    pub max: f64,
}

/// The next limit after one call: a pure function. `long_rtt` is the Gradient algorithm's
/// long-term latency estimate (seconds), updated in place.
pub fn next_limit(
    algorithm: LimitAlgorithm,
    bounds: LimitBounds,
    limit: f64,
    in_flight: u32,
    rtt: Duration,
    dropped: bool,
    long_rtt: &mut f64,
) -> f64 {
    let next = match algorithm {
        LimitAlgorithm::Aimd { slow, backoff } => {
            if dropped || rtt >= slow {
                limit * backoff
            } else if f64::from(in_flight) * 2.0 >= limit {
                limit + 1.0
            } else {
                limit
            }
        }
        LimitAlgorithm::Gradient {
            smoothing,
            tolerance,
        } => {
            let rtt = rtt.as_secs_f64().max(1e-6);
            *long_rtt = if *long_rtt == 0.0 {
                rtt
            } else {
                *long_rtt * 0.99 + rtt * 0.01
            };
            let gradient = if dropped {
                0.5
            } else {
                (tolerance * *long_rtt / rtt).clamp(0.5, 1.0)
            };
            let estimate = limit * gradient + limit.sqrt();
            limit * (1.0 - smoothing) + estimate * smoothing
        }
    };
    next.clamp(bounds.min, bounds.max)
}

/// A concurrency limit that adapts; shared by clones.
#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    algorithm: LimitAlgorithm,
    bounds: LimitBounds,
    /// Invariant: `in_flight` counts the permits alive; `limit` stays within `bounds`.
    state: Mutex<State>,
}

struct State {
    limit: f64,
    in_flight: u32,
    long_rtt: f64,
}

impl AdaptiveLimit {
    /// A limit named `name` moved by `algorithm` within `bounds`.
    pub fn new(name: &'static str, algorithm: LimitAlgorithm, bounds: LimitBounds) -> Self {
        let bounds = LimitBounds {
            min: bounds.min.max(1.0),
            initial: bounds
                .initial
                .clamp(bounds.min.max(1.0), bounds.max.max(1.0)),
            max: bounds.max.max(bounds.min.max(1.0)),
        };
        AdaptiveLimit {
            inner: Arc::new(Inner {
                name,
                algorithm,
                bounds,
                state: Mutex::new(State {
                    limit: bounds.initial,
                    in_flight: 0,
                    long_rtt: 0.0,
                }),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current limit.
    pub fn limit(&self) -> f64 {
        self.lock().limit
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// A permit if fewer than `limit` calls are in flight, else `None` (no queue).
    pub fn try_acquire(&self) -> Option<AdaptivePermit> {
        let mut state = self.lock();
        if f64::from(state.in_flight) + 1.0 > state.limit.floor() {
            return None;
        }
        state.in_flight += 1;
        Some(AdaptivePermit {
            limit: self.clone(),
            started: Instant::now(),
            done: false,
        })
    }

    fn finish(&self, rtt: Option<Duration>, dropped: bool) {
        let mut state = self.lock();
        if let Some(rtt) = rtt {
            let in_flight = state.in_flight;
            let (limit, mut long_rtt) = (state.limit, state.long_rtt);
            state.limit = next_limit(
                self.inner.algorithm,
                self.inner.bounds,
                limit,
                in_flight,
                rtt,
                dropped,
                &mut long_rtt,
            );
            state.long_rtt = long_rtt;
            metrics::gauge!("palisade_bulkhead_adaptive_limit", "bulkhead" => self.inner.name)
                .set(state.limit);
        }
        state.in_flight -= 1;
    }
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.inner.name)
            .field("limit", &self.limit())
            .finish_non_exhaustive()
    }
}

/// A call admitted under an [`AdaptiveLimit`]; report how it went with
/// [`record`](Self::record). Dropped unreported, it frees its place and teaches nothing.
pub struct AdaptivePermit {
    limit: AdaptiveLimit,
    started: Instant,
    done: bool,
}

impl AdaptivePermit {
    /// The call ended; `dropped` for an error or overload signal (5xx, timeout).
    pub fn record(mut self, dropped: bool) {
        self.done = true;
        self.limit.finish(Some(self.started.elapsed()), dropped);
    }
}

impl Drop for AdaptivePermit {
    fn drop(&mut self) {
        if !self.done {
            self.limit.finish(None, false);
        }
    }
}

impl fmt::Debug for AdaptivePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit").finish_non_exhaustive()
    }
}

/// Runs calls under an [`AdaptiveLimit`]: over the limit they are refused at once (503 +
/// `Retry-After` + problem+json), never queued; 5xx responses and errors count as congestion.
#[derive(Debug, Clone)]
pub struct AdaptiveLimitLayer<R = ProblemJson> {
    limit: AdaptiveLimit,
    responder: R,
}

impl AdaptiveLimitLayer {
    /// Limits with `limit`.
    pub fn new(limit: AdaptiveLimit) -> Self {
        AdaptiveLimitLayer {
            limit,
            responder: ProblemJson,
        }
    }
}

impl<R> AdaptiveLimitLayer<R> {
    /// Renders refusals with `responder`.
    pub fn responder<R2>(self, responder: R2) -> AdaptiveLimitLayer<R2> {
        AdaptiveLimitLayer {
            limit: self.limit,
            responder,
        }
    }
}

impl<S, R: Clone> Layer<S> for AdaptiveLimitLayer<R> {
    type Service = Adaptive<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Adaptive {
            inner,
            limit: self.limit.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The service of [`AdaptiveLimitLayer`].
#[derive(Debug, Clone)]
pub struct Adaptive<S, R> {
    inner: S,
    limit: AdaptiveLimit,
    responder: R,
}

impl<S, R> Adaptive<S, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, R, ReqB, ResB> Service<Request<ReqB>> for Adaptive<S, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AdaptiveFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match self.limit.try_acquire() {
            Some(permit) => AdaptiveFuture {
                future: Some(self.inner.call(req)),
                permit: Some(permit),
                refused: None,
            },
            None => {
                let refusal = BulkheadFull {
                    bulkhead: self.limit.inner.name,
                    tier: "adaptive",
                    reason: Reason::QueueFull,
                };
                AdaptiveFuture {
                    future: None,
                    permit: None,
                    refused: Some(self.responder.respond(&refusal)),
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`Adaptive`].
    pub struct AdaptiveFuture<F, B> {
        #[pin]
        future: Option<F>,
        permit: Option<AdaptivePermit>,
        refused: Option<Response<B>>,
    }
}

impl<F, B, E> Future for AdaptiveFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.refused.take() {
            return Poll::Ready(Ok(response));
        }
        let Some(future) = this.future.as_pin_mut() else {
            panic!("AdaptiveFuture polled after completion")
        };
        let output = ready!(future.poll(cx));
        if let Some(permit) = this.permit.take() {
            let dropped = output
                .as_ref()
                .map_or(true, |r| r.status().is_server_error());
            permit.record(dropped);
        }
        Poll::Ready(output)
    }
}
