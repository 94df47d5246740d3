//! [`AdaptiveLimitLayer`]: each call under an adaptive permit, rejected over the limit.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use palisade_core::{ProblemJson, Responder};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{AdaptiveLimit, AdaptivePermit};
use crate::rejection::{BulkheadFull, Reason};

/// Runs calls under an [`AdaptiveLimit`]: over the limit they are refused at once (503 +
/// `Retry-After` + problem+json), never queued; 5xx responses and errors count as congestion.
#[derive(Debug, Clone)]
pub struct AdaptiveLimitLayer<R = ProblemJson> {
    limit: AdaptiveLimit,
    responder: R,
}

impl AdaptiveLimitLayer {
    /// Limits with `limit`.
    pub fn new(limit: AdaptiveLimit) -> Self {
        AdaptiveLimitLayer {
            limit,
            responder: ProblemJson,
        }
    }
}

impl<R> AdaptiveLimitLayer<R> {
    /// Renders refusals with `responder`.
    pub fn responder<R2>(self, responder: R2) -> AdaptiveLimitLayer<R2> {
        AdaptiveLimitLayer {
            limit: self.limit,
            responder,
        }
    }
}

impl<S, R: Clone> Layer<S> for AdaptiveLimitLayer<R> {
    type Service = Adaptive<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Adaptive {
            inner,
            limit: self.limit.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The service of [`AdaptiveLimitLayer`].
#[derive(Debug, Clone)]
pub struct Adaptive<S, R> {
    inner: S,
    limit: AdaptiveLimit,
    responder: R,
}

impl<S, R> Adaptive<S, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S, R, ReqB, ResB> Service<Request<ReqB>> for Adaptive<S, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = AdaptiveFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match self.limit.try_acquire() {
            Some(permit) => AdaptiveFuture {
                future: Some(self.inner.call(req)),
                permit: Some(permit),
                refused: None,
            },
            None => {
                let refusal = BulkheadFull {
                    bulkhead: self.limit.name(),
                    tier: "adaptive",
                    reason: Reason::QueueFull,
                };
                AdaptiveFuture {
                    future: None,
                    permit: None,
                    refused: Some(self.responder.respond(&refusal)),
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`Adaptive`].
    pub struct AdaptiveFuture<F, B> {
        #[pin]
        future: Option<F>,
        permit: Option<AdaptivePermit>,
        refused: Option<Response<B>>,
    }
}

impl<F, B, E> Future for AdaptiveFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.refused.take() {
            return Poll::Ready(Ok(response));
        }
        let Some(future) = this.future.as_pin_mut() else {
            panic!("AdaptiveFuture polled after completion")
        };
        let output = ready!(future.poll(cx));
        if let Some(permit) = this.permit.take() {
            let dropped = output
                .as_ref()
                .map_or(true, |r| r.status().is_server_error());
            permit.record(dropped);
        }
        Poll::Ready(output)
    }
}
