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
    reservation::{Reservation, Slot},
};

/// The service of [`BulkheadLayer`](crate::BulkheadLayer).
#[derive(Debug)]
pub struct Bulkhead<S, R> {
    pub(crate) inner: S,
    pub(crate) reservation: Reservation,
    pub(crate) responder: R,
    pub(crate) call_timeout: Option<Duration>,
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
