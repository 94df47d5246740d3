//! [`Breaker`]: the service the layer wraps around the inner one.

use std::task::{Context, Poll};

use tower_service::Service;

use crate::{CircuitBreaker, classify::Classify, future::ResponseFuture, rejection::OnOpen};

/// Guards `S` with a circuit breaker; built by [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
#[derive(Debug, Clone)]
pub struct Breaker<S, C, O> {
    pub(crate) inner: S,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) classify: C,
    pub(crate) on_open: O,
}

impl<S, C, O> Breaker<S, C, O> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, C, O, Req> Service<Req> for Breaker<S, C, O>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
    O: OnOpen<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        guarded_call(
            &self.breaker,
            &mut self.inner,
            req,
            &self.classify,
            &self.on_open,
        )
    }
}

/// Calls `inner` under `breaker`: at once if it admits the call, else the refusal.
pub(crate) fn guarded_call<S, Req, C, O>(
    breaker: &CircuitBreaker,
    inner: &mut S,
    req: Req,
    classify: &C,
    on_open: &O,
) -> ResponseFuture<S::Future, C, S::Response, S::Error>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
    O: OnOpen<S::Response, S::Error>,
{
    match breaker.try_acquire() {
        Ok(permit) => ResponseFuture::called(inner.call(req), permit, classify.clone()),
        Err(open) => ResponseFuture::refused(on_open.refuse(open)),
    }
}
