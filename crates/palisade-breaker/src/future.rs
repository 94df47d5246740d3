//! [`ResponseFuture`]: records the call's outcome when it completes.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use crate::{Permit, classify::Classify};

pin_project! {
    /// The response future of [`Breaker`](crate::Breaker).
    pub struct ResponseFuture<F, C, Res, E> {
        #[pin]
        state: State<F, C, Res, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, Res, E> {
        // The inner call; the permit reports its outcome (or, if this future is dropped first,
        // frees its probe slot).
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
            classify: C,
        },
        // Refused: the result is ready.
        Refused {
            result: Option<Result<Res, E>>,
        },
    }
}

impl<F, C, Res, E> ResponseFuture<F, C, Res, E> {
    pub(crate) fn called(future: F, permit: Permit, classify: C) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                permit: Some(permit),
                classify,
            },
        }
    }

    pub(crate) fn refused(result: Result<Res, E>) -> Self {
        ResponseFuture {
            state: State::Refused {
                result: Some(result),
            },
        }
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C, Res, E>
where
    F: Future<Output = Result<Res, E>>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                future,
                permit,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(classify.classify(&result));
                }
                Poll::Ready(result)
            }
            StateProj::Refused { result } => Poll::Ready(
                result
                    .take()
                    .expect("ResponseFuture polled after completion"),
            ),
        }
    }
}

impl<F, C, Res, E> fmt::Debug for ResponseFuture<F, C, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
