//! [`ResponseFuture`]: a request the layer lets through, refuses, or takes on its keyed journey.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use crate::IdempotencyBody;

/// The keyed journey (read the body, claim, run, store), boxed: it is several store round
/// trips, each far costlier than one allocation. Requests the layer does not deduplicate never
/// allocate one.
pub(crate) type Journey<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

pin_project! {
    /// The response future of [`Idempotency`](crate::Idempotency).
    pub struct ResponseFuture<F, ResB, E> {
        #[pin]
        kind: Kind<F, ResB, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, ResB, E> {
        // Not a deduplicated request (another method, or no key where none is required): the
        // inner service's future, its body streamed through.
        Passing {
            #[pin]
            future: F,
        },
        // Refused before anything ran (a malformed key, a missing caller).
        Refused { response: Option<Response<IdempotencyBody<ResB>>> },
        // A request with a key.
        Keyed { journey: Journey<Response<IdempotencyBody<ResB>>, E> },
    }
}

impl<F, ResB, E> ResponseFuture<F, ResB, E> {
    pub(crate) fn passing(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Passing { future },
        }
    }

    pub(crate) fn refused(response: Response<IdempotencyBody<ResB>>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }

    pub(crate) fn keyed(journey: Journey<Response<IdempotencyBody<ResB>>, E>) -> Self {
        ResponseFuture {
            kind: Kind::Keyed { journey },
        }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F, ResB, E>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<IdempotencyBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passing { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(IdempotencyBody::streamed)))
            }
            KindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("`ResponseFuture` polled after it completed"))),
            KindProj::Keyed { journey } => journey.as_mut().poll(cx),
        }
    }
}

impl<F, ResB, E> fmt::Debug for ResponseFuture<F, ResB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Passing { .. } => "passing",
            Kind::Refused { .. } => "refused",
            Kind::Keyed { .. } => "keyed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
