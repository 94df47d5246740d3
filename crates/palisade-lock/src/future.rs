//! [`ResponseFuture`]: takes the request's lock, runs the inner service, releases the lock.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::{
    OnBackendError, Responder,
    deadline::Deadline,
    key::KeyError,
    responder::{BackendUnavailable, MissingKey},
};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{LockError, LockGuard, Locked};

/// The acquisition, boxed: [`Locker`](crate::Locker)'s futures are opaque (they borrow the
/// name), and a backend round trip dwarfs one allocation. The inner service's future is not
/// boxed.
pub(crate) type Acquiring = Pin<Box<dyn Future<Output = Result<LockGuard, LockError>> + Send>>;

/// The release, cut off at the request's deadline (it then carries on in the background).
type Releasing = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project! {
    /// The response future of [`LockService`](crate::LockService).
    ///
    /// Invariant: `inner` and `request` are `Some` while the lock is being acquired, and taken
    /// when the inner service is called (or the request refused).
    pub struct ResponseFuture<S, R, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<S::Future, S::Response, S::Error>,
        inner: Option<S>,
        request: Option<Request<ReqB>>,
        responder: R,
        on_backend_error: OnBackendError,
        deadline: Option<Deadline>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T, E> {
        // Waiting for the lock.
        Acquiring { acquire: Acquiring },
        // The inner service runs, holding the lock (none when the backend failed open).
        Calling {
            #[pin]
            future: F,
            guard: Option<LockGuard>,
        },
        // The inner service answered; the lock is being released.
        Releasing {
            release: Releasing,
            result: Option<Result<T, E>>,
        },
        // Refused before anything ran.
        Refused { response: Option<T> },
        // The result was returned.
        Done,
    }
}

impl<S, R, ReqB> ResponseFuture<S, R, ReqB>
where
    S: Service<Request<ReqB>>,
{
    pub(crate) fn acquiring(
        acquire: Acquiring,
        inner: S,
        request: Request<ReqB>,
        responder: R,
        on_backend_error: OnBackendError,
    ) -> Self {
        let deadline = Deadline::of(&request);
        ResponseFuture {
            state: State::Acquiring { acquire },
            inner: Some(inner),
            request: Some(request),
            responder,
            on_backend_error,
            deadline,
        }
    }

    pub(crate) fn refused(response: S::Response, responder: R) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(response),
            },
            inner: None,
            request: None,
            responder,
            on_backend_error: OnBackendError::FailClosed,
            deadline: None,
        }
    }
}

impl<S, R, ReqB, ResB> Future for ResponseFuture<S, R, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: Responder<ResB>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Acquiring { acquire } => {
                    let acquired = ready!(acquire.as_mut().poll(cx));
                    let mut inner = this.inner.take().expect("kept until the lock is taken");
                    let mut request = this.request.take().expect("kept until the lock is taken");
                    let refusal = match acquired {
                        Ok(guard) => {
                            metrics::counter!("palisade_lock_requests_total", "outcome" => "acquired")
                                .increment(1);
                            request.extensions_mut().insert(guard.held_lock());
                            let future = inner.call(request);
                            this.state.set(State::Calling {
                                future,
                                guard: Some(guard),
                            });
                            continue;
                        }
                        Err(LockError::Busy { name, .. }) => {
                            metrics::counter!("palisade_lock_requests_total", "outcome" => "locked")
                                .increment(1);
                            this.responder.respond(&Locked {
                                name,
                                retry_after: Duration::from_secs(1),
                            })
                        }
                        Err(LockError::Backend(error)) => {
                            if this.on_backend_error.apply("lock", &error) {
                                let future = inner.call(request);
                                this.state.set(State::Calling {
                                    future,
                                    guard: None,
                                });
                                continue;
                            }
                            this.responder.respond(&BackendUnavailable {
                                layer: "lock",
                                source: error,
                            })
                        }
                        Err(other) => {
                            let error = KeyError::Custom(other.to_string().into());
                            this.responder.respond(&MissingKey(error))
                        }
                    };
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(refusal));
                }
                StateProj::Calling { future, guard } => {
                    let result = ready!(future.poll(cx));
                    let Some(guard) = guard.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    };
                    let release = async move {
                        if let Err(error) = guard.release().await {
                            tracing::warn!(target: "palisade::lock", %error, "could not release the request's lock; it expires with its lease");
                        }
                    };
                    // The answer waits no longer than the budget; the release carries on
                    // behind it.
                    let release = Box::pin(Deadline::finish(*this.deadline, release));
                    this.state.set(State::Releasing {
                        release,
                        result: Some(result),
                    });
                }
                StateProj::Releasing { release, result } => {
                    ready!(release.as_mut().poll(cx));
                    let result = result.take().expect("kept until the release ends");
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Refused { response } => {
                    let response = response.take().expect("returned once");
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("`ResponseFuture` polled after it completed"),
            }
        }
    }
}

impl<S, R, ReqB> fmt::Debug for ResponseFuture<S, R, ReqB>
where
    S: Service<Request<ReqB>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
