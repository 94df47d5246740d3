//! [`ResponseFuture`]: waits for a remote decision, then for the inner service.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use palisade_core::{BackendError, Responder};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{
    Decision, Policy, headers,
    verdict::{Verdict, verdict},
};

/// What a request waiting for a remote decision keeps.
pub(crate) struct Pending<S, R, ReqB> {
    pub(crate) inner: S,
    pub(crate) req: Request<ReqB>,
    pub(crate) policy: Policy,
    pub(crate) shadow: bool,
    pub(crate) legacy_headers: bool,
    pub(crate) responder: R,
    /// The request's deadline (a `DeadlineLayer` budget), if any: the check is cut off there,
    /// and the policy's `on_backend_error` decides.
    pub(crate) deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<F, C, S, R, ReqB, ResB> {
        #[pin]
        state: State<F, C, S, R, ReqB, ResB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, S, R, ReqB, ResB> {
        // Waiting for the store's answer; the inner service is not called yet.
        Checking {
            #[pin]
            check: C,
            // Boxed: only the remote path needs it, and it would make every future large.
            pending: Option<Box<Pending<S, R, ReqB>>>,
        },
        // Allowed: waiting for the inner service, then adding the rate-limit fields.
        Inner {
            #[pin]
            future: F,
            decision: Option<Decision>,
            legacy_headers: bool,
        },
        // Refused (or undecidable): the response is ready.
        Rejected {
            response: Option<Response<ResB>>,
        },
    }
}

impl<F, C, S, R, ReqB, ResB> ResponseFuture<F, C, S, R, ReqB, ResB> {
    pub(crate) fn inner(future: F, decision: Option<Decision>, legacy_headers: bool) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                decision,
                legacy_headers,
            },
        }
    }

    pub(crate) fn rejected(response: Response<ResB>) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn checking(check: C, pending: Pending<S, R, ReqB>) -> Self {
        ResponseFuture {
            state: State::Checking {
                check,
                pending: Some(Box::new(pending)),
            },
        }
    }
}

impl<F, C, S, R, ReqB, ResB, E> Future for ResponseFuture<F, C, S, R, ReqB, ResB>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    C: Future<Output = Result<Decision, BackendError>>,
    S: Service<Request<ReqB>, Response = Response<ResB>, Error = E, Future = F>,
    R: Responder<ResB>,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Checking { check, pending } => {
                    let result = match check.poll(cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => {
                            let out_of_time = pending
                                .as_mut()
                                .and_then(|p| p.deadline.as_mut())
                                .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                            if !out_of_time {
                                return Poll::Pending;
                            }
                            Err(BackendError::Timeout(std::time::Duration::ZERO))
                        }
                    };
                    let Pending {
                        mut inner,
                        req,
                        policy,
                        shadow,
                        legacy_headers,
                        responder,
                        deadline: _,
                    } = *pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    match verdict(&policy, shadow, result) {
                        Verdict::Proceed(decision) => State::Inner {
                            future: inner.call(req),
                            decision,
                            legacy_headers,
                        },
                        Verdict::Reject(refusal) => State::Rejected {
                            response: Some(refusal.render(&responder, legacy_headers)),
                        },
                    }
                }
                StateProj::Inner {
                    future,
                    decision,
                    legacy_headers,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(decision) = decision.take() {
                        headers::insert(response.headers_mut(), &decision, *legacy_headers);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}

impl<F, C, S, R, ReqB, ResB> fmt::Debug for ResponseFuture<F, C, S, R, ReqB, ResB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
