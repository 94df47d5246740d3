//! [`Bulkhead`]: a slot reserved in `poll_ready`, used in `call`.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use palisade_core::Responder;
use tower_service::Service;

use crate::{
    future::{ResponseFuture, start},
    pool_tier::PoolTier,
    reservation::Reservation,
    semaphore::Semaphore,
};

/// The service of [`BulkheadLayer`](crate::BulkheadLayer).
#[derive(Debug)]
pub struct Bulkhead<S, M: Semaphore = PoolTier, R = palisade_core::ProblemJson> {
    pub(crate) inner: S,
    pub(crate) reservation: Reservation<M>,
    pub(crate) responder: R,
    pub(crate) call_timeout: Option<Duration>,
}

impl<S: Clone, M: Semaphore, R: Clone> Clone for Bulkhead<S, M, R> {
    /// A clone starts without a reservation, as tower expects of a clone.
    fn clone(&self) -> Self {
        Bulkhead {
            inner: self.inner.clone(),
            reservation: Reservation::new(self.reservation.semaphore.clone()),
            responder: self.responder.clone(),
            call_timeout: self.call_timeout,
        }
    }
}

impl<S, M: Semaphore, R> Bulkhead<S, M, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, M, R, ReqB, ResB> Service<Request<ReqB>> for Bulkhead<S, M, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    M: Semaphore,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, M, R, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.reservation.poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.reservation.is_held() {
            self.inner.poll_ready(cx)
        } else {
            // The refusal is answered by `call` without the inner service.
            Poll::Ready(Ok(()))
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
