//! [`ResponseFuture`]: holds the slot until the inner call ends.

use std::{
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

use crate::reservation::{Reservation, Slot};

use crate::{
    Permit,
    rejection::{BulkheadFull, CallTimedOut, Reason},
};

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
