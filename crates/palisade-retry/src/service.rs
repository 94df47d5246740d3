//! [`Retry`], the service of [`RetryLayer`](crate::RetryLayer).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use palisade_core::deadline::Deadline;
use tokio::sync::broadcast;
use tower::{BoxError, Service};

use crate::{
    ReplayBody, RetryBudget, RetryEvent, RetryPolicy, classify::RetryClassify,
    future::ResponseFuture, shared::Shared,
};

/// The service of [`RetryLayer`](crate::RetryLayer).
#[derive(Debug, Clone)]
pub struct Retry<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S, C> Retry<S, C> {
    pub(crate) fn new(
        inner: S,
        policy: Arc<RetryPolicy>,
        budget: RetryBudget,
        classify: C,
        events: broadcast::Sender<RetryEvent>,
    ) -> Self {
        Retry {
            inner,
            shared: Arc::new(Shared {
                policy,
                budget,
                classify,
                events,
            }),
        }
    }

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
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    C: RetryClassify<Response<RB>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes with the call (it makes every attempt, readied again before
        // each retry); this service keeps a clone for the next call.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let policy = &self.shared.policy;
        let retryable = policy.max_attempts > 1 && (policy.any_method || is_idempotent(&req));
        // The request's own budget (a `DeadlineLayer` upstream) bounds the attempts and waits
        // as the policy's deadline does: the earlier of the two.
        let request_deadline = Deadline::of(&req).map(Deadline::at);
        self.shared.budget.deposit();
        ResponseFuture::new(ready, req, retryable, request_deadline, self.shared.clone())
    }
}
