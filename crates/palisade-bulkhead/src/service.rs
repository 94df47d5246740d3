//! [`BulkheadLayer`] and [`Bulkhead`]: a slot reserved in `poll_ready`, used in `call`.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::{ProblemJson, Responder};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    Acquire, Permit, Pool,
    rejection::{BulkheadFull, CallTimedOut, Reason},
};

/// Runs the inner service within one tier of a [`Pool`].
///
/// tower-correct: the slot is reserved in `poll_ready` (waiting in the tier's bounded queue,
/// at most its max wait) and used by the next `call`; a service readied and dropped without
/// being called gives its slot back, and so does a call whose future is dropped or panics. A
/// refused call never reaches the inner service: it is answered by the responder (503 +
/// `Retry-After` + problem+json by default).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{convert::Infallible, time::Duration};
/// use palisade_bulkhead::{BulkheadLayer, Pool, PoolConfig};
/// use tower::{Layer, ServiceExt};
///
/// let pool = Pool::new(PoolConfig::three_tiers("partner-api"));
/// let critical = BulkheadLayer::new(pool.clone(), pool.tier("critical").unwrap());
/// let svc = critical.layer(tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, Infallible>(http::Response::new(axum::body::Body::empty()))
/// }));
/// assert_eq!(svc.oneshot(http::Request::new(())).await.unwrap().status(), 200);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer<R = ProblemJson> {
    pool: Pool,
    tier: usize,
    responder: R,
    call_timeout: Option<Duration>,
}

impl BulkheadLayer {
    /// Calls run in tier `tier` (an index from [`Pool::tier`]) of `pool`.
    ///
    /// # Panics
    /// If the pool has no such tier.
    pub fn new(pool: Pool, tier: usize) -> Self {
        assert!(
            tier < pool.config().tiers.len(),
            "no tier {tier} in this pool"
        );
        BulkheadLayer {
            pool,
            tier,
            responder: ProblemJson,
            call_timeout: None,
        }
    }
}

impl<R> BulkheadLayer<R> {
    /// Renders refusals with `responder` (e.g. `palisade_core::responder::Grpc`).
    pub fn responder<R2>(self, responder: R2) -> BulkheadLayer<R2> {
        BulkheadLayer {
            pool: self.pool,
            tier: self.tier,
            responder,
            call_timeout: self.call_timeout,
        }
    }

    /// Cuts a call off after `timeout` (keep it shorter than the caller's own): the inner
    /// future is dropped, the slot freed, and the caller gets 504 ([`CallTimedOut`]) — a
    /// slow dependency cannot hold the tier's slots for longer than this.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }
}

impl<S, R: Clone> Layer<S> for BulkheadLayer<R> {
    type Service = Bulkhead<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead {
            inner,
            reservation: Reservation::new(self.pool.clone(), self.tier),
            responder: self.responder.clone(),
            call_timeout: self.call_timeout,
        }
    }
}

/// The service of [`BulkheadLayer`].
#[derive(Debug)]
pub struct Bulkhead<S, R> {
    inner: S,
    reservation: Reservation,
    responder: R,
    call_timeout: Option<Duration>,
}

impl<S: Clone, R: Clone> Clone for Bulkhead<S, R> {
    /// A clone starts without a reservation, as tower expects of a clone.
    fn clone(&self) -> Self {
        Bulkhead {
            inner: self.inner.clone(),
            reservation: Reservation::new(self.reservation.pool.clone(), self.reservation.tier),
            responder: self.responder.clone(),
            call_timeout: self.call_timeout,
        }
    }
}

impl<S, R> Bulkhead<S, R> {
    palisade_core::inner_service_accessors!(S);
}

/// The slot this service reserved for its next call.
#[derive(Debug)]
pub(crate) struct Reservation {
    pool: Pool,
    tier: usize,
    state: Slot,
}

#[derive(Debug)]
enum Slot {
    Empty,
    Waiting {
        ticket: u64,
        deadline: Pin<Box<Sleep>>,
    },
    Held(Permit),
    Refused(Reason),
}

impl Reservation {
    pub(crate) fn new(pool: Pool, tier: usize) -> Self {
        Reservation {
            pool,
            tier,
            state: Slot::Empty,
        }
    }

    /// Drives the reservation until it holds a slot or a refusal.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                Slot::Empty => {
                    self.state = match self.pool.acquire_or_queue(self.tier) {
                        Acquire::Acquired(permit) => Slot::Held(permit),
                        Acquire::Queued(ticket) => Slot::Waiting {
                            ticket,
                            deadline: Box::pin(tokio::time::sleep(
                                self.pool.config().tiers[self.tier].max_wait,
                            )),
                        },
                        Acquire::Full => Slot::Refused(Reason::QueueFull),
                    };
                }
                Slot::Waiting { ticket, deadline } => {
                    let ticket = *ticket;
                    if let Poll::Ready(permit) = self.pool.poll_ticket(ticket, cx) {
                        self.state = Slot::Held(permit);
                    } else if deadline.as_mut().poll(cx).is_ready() {
                        // A grant racing with the deadline is handed back by `cancel`.
                        self.pool.cancel(ticket);
                        self.state = Slot::Refused(Reason::WaitTimedOut);
                    } else {
                        return Poll::Pending;
                    }
                }
                Slot::Held(_) | Slot::Refused(_) => return Poll::Ready(()),
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Slot::Waiting { ticket, .. } = self.state {
            self.pool.cancel(ticket);
        }
    }
}

impl<S, R, ReqB, ResB> Service<Request<ReqB>> for Bulkhead<S, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.reservation.poll(cx).is_pending() {
            return Poll::Pending;
        }
        match self.reservation.state {
            Slot::Held(_) => self.inner.poll_ready(cx),
            // The refusal is answered by `call` without the inner service.
            _ => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        start(
            &mut self.reservation,
            &mut self.inner,
            req,
            &self.responder,
            self.call_timeout,
        )
    }
}

/// Uses a decided reservation: calls `inner` in the held slot, or answers the refusal.
pub(crate) fn start<S, R, ReqB, ResB>(
    reservation: &mut Reservation,
    inner: &mut S,
    req: Request<ReqB>,
    responder: &R,
    call_timeout: Option<Duration>,
) -> ResponseFuture<S::Future, R, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: Responder<ResB>,
{
    let config = reservation.pool.config();
    let tier = config.tiers[reservation.tier].name;
    match std::mem::replace(&mut reservation.state, Slot::Empty) {
        Slot::Held(permit) => ResponseFuture {
            state: State::Running {
                future: inner.call(req),
                permit: Some(permit),
                timeout: call_timeout.map(|after| Timeout {
                    sleep: Box::pin(tokio::time::sleep(after)),
                    refusal: CallTimedOut {
                        bulkhead: config.name,
                        tier,
                        after,
                    },
                    responder: responder.clone(),
                }),
            },
        },
        Slot::Refused(reason) => {
            let refusal = BulkheadFull {
                bulkhead: config.name,
                tier,
                reason,
            };
            let label = match reason {
                Reason::QueueFull => "queue_full",
                Reason::WaitTimedOut => "wait_timed_out",
            };
            metrics::counter!("palisade_bulkhead_rejections_total", "bulkhead" => config.name, "reason" => label)
                .increment(1);
            ResponseFuture {
                state: State::Refused {
                    response: Some(responder.respond(&refusal)),
                },
            }
        }
        _ => panic!("Bulkhead::call before poll_ready returned Ready"),
    }
}

pin_project! {
    /// The response future of [`Bulkhead`]: holds the slot until the inner call ends (or is
    /// dropped, panics, or runs out of the per-call timeout).
    pub struct ResponseFuture<F, R, B> {
        #[pin]
        state: State<F, R, B>,
    }
}

/// The per-call timeout of a running call.
struct Timeout<R> {
    sleep: Pin<Box<Sleep>>,
    refusal: CallTimedOut,
    responder: R,
}

pin_project! {
    #[project = StateProj]
    enum State<F, R, B> {
        Running {
            #[pin]
            future: F,
            permit: Option<Permit>,
            timeout: Option<Timeout<R>>,
        },
        Refused {
            response: Option<Response<B>>,
        },
    }
}

impl<F, R, B, E> Future for ResponseFuture<F, R, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: Responder<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let response = match state.as_mut().project() {
            StateProj::Running {
                future,
                permit,
                timeout,
            } => {
                if let Poll::Ready(output) = future.poll(cx) {
                    permit.take();
                    return Poll::Ready(output);
                }
                let Some(t) = timeout else {
                    return Poll::Pending;
                };
                if t.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                metrics::counter!("palisade_bulkhead_timeouts_total", "bulkhead" => t.refusal.bulkhead)
                    .increment(1);
                t.responder.respond(&t.refusal)
            }
            StateProj::Refused { response } => {
                return Poll::Ready(Ok(response
                    .take()
                    .expect("ResponseFuture polled after completion")));
            }
        };
        // Drops the inner future and frees the slot.
        state.set(State::Refused { response: None });
        Poll::Ready(Ok(response))
    }
}
