//! [`ResponseFuture`]: holds the slot until the inner call ends.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::Responder;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::{
    rejection::CallTimedOut,
    reservation::{Reservation, Slot},
    semaphore::Semaphore,
};

pin_project! {
    /// The response future of [`Bulkhead`](crate::Bulkhead): holds the slot until the inner
    /// call ends (or is dropped, panics, or runs out of the per-call timeout).
    pub struct ResponseFuture<F, M, R, B>
    where
        M: Semaphore,
    {
        #[pin]
        state: State<F, M, R, B>,
    }
}

/// The per-call timeout of a running call.
struct Timeout<M, R> {
    sleep: Pin<Box<Sleep>>,
    after: Duration,
    semaphore: M,
    responder: R,
}

pin_project! {
    #[project = StateProj]
    enum State<F, M, R, B>
    where
        M: Semaphore,
    {
        Running {
            #[pin]
            future: F,
            permit: Option<M::Permit>,
            timeout: Option<Timeout<M, R>>,
        },
        Refused {
            response: Option<Response<B>>,
        },
    }
}

impl<F, M, R, B, E> Future for ResponseFuture<F, M, R, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    M: Semaphore,
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
                let refusal = CallTimedOut {
                    bulkhead: t.semaphore.name().to_owned(),
                    tier: t.semaphore.tier(),
                    after: t.after,
                };
                metrics::counter!("palisade_bulkhead_timeouts_total", "bulkhead" => refusal.bulkhead.clone())
                    .increment(1);
                t.responder.respond(&refusal)
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

impl<F, M: Semaphore, R, B> fmt::Debug for ResponseFuture<F, M, R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { .. } => "running",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// Uses a decided reservation: calls `inner` in the held slot, or answers the refusal.
pub(crate) fn start<M, S, R, ReqB, ResB>(
    reservation: &mut Reservation<M>,
    inner: &mut S,
    req: Request<ReqB>,
    responder: &R,
    call_timeout: Option<Duration>,
) -> ResponseFuture<S::Future, M, R, ResB>
where
    M: Semaphore,
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: Responder<ResB>,
{
    let state = match reservation.take() {
        Slot::Held(permit) => State::Running {
            future: inner.call(req),
            permit: Some(permit),
            timeout: call_timeout.map(|after| Timeout {
                sleep: Box::pin(tokio::time::sleep(after)),
                after,
                semaphore: reservation.semaphore.clone(),
                responder: responder.clone(),
            }),
        },
        Slot::Refused(refusal) => State::Refused {
            response: Some(responder.respond(&refusal)),
        },
        Slot::Empty | Slot::Acquiring(_) => {
            panic!("Bulkhead::call before poll_ready returned Ready")
        }
    };
    ResponseFuture { state }
}
