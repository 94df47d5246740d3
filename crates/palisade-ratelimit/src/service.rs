//! [`RateLimit`]: the service the layer wraps around the inner one.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use palisade_core::{
    Responder,
    deadline::Deadline,
    key::{KeyExtractor, RequestHead},
    responder::MissingKey,
};
use tower_service::Service;

use crate::{
    future::{Pending, ResponseFuture},
    layer::Config,
    limiter::MAX_COST,
    select::SelectPolicy,
    store::{Checked, Mode, RateLimitStore},
    verdict::{Verdict, verdict},
};

/// Rate-limits requests to `S`; built by [`RateLimitLayer`](crate::RateLimitLayer).
pub struct RateLimit<S, St, K, P, R> {
    /// Driven ready by `poll_ready`. When the store answers remotely, this ready service moves
    /// into the response future (a fresh clone takes its place) and is called only once the
    /// store has allowed the request — so a refused request never reaches it.
    pub(crate) inner: S,
    pub(crate) config: Arc<Config<St, K, P>>,
    pub(crate) responder: R,
}

impl<S, St, K, P, R> RateLimit<S, St, K, P, R> {
    palisade_core::inner_service_accessors!(S);
}

impl<S: Clone, St, K, P, R: Clone> Clone for RateLimit<S, St, K, P, R> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            config: self.config.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<S: fmt::Debug, St, K, P, R> fmt::Debug for RateLimit<S, St, K, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, St, K, P, R, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, St, K, P, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    St: RateLimitStore,
    K: KeyExtractor,
    P: SelectPolicy,
    R: Responder<ResB>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St::Future, S, R, ReqB, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let config = &*self.config;
        let head = RequestHead::from(&req);
        let Some(policy) = config.policy.select(&head) else {
            return ResponseFuture::inner(self.inner.call(req), None, false);
        };
        let key = match config.key.extract(&head) {
            Ok(key) => key,
            Err(error) => {
                tracing::debug!(target: "palisade::ratelimit", %error, "no rate-limit key");
                return ResponseFuture::rejected(self.responder.respond(&MissingKey(error)));
            }
        };
        let cost = config
            .cost
            .as_ref()
            .map_or(1, |cost| cost(&head))
            .min(MAX_COST);
        match config.store.check(policy, &key, cost, Mode::Consume) {
            Checked::Ready(result) => match verdict(policy, config.shadow, result) {
                Verdict::Proceed(decision) => {
                    ResponseFuture::inner(self.inner.call(req), decision, config.legacy_headers)
                }
                Verdict::Reject(rejection) => ResponseFuture::rejected(
                    rejection.render(&self.responder, config.legacy_headers),
                ),
            },
            Checked::Pending(check) => {
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                let deadline =
                    Deadline::of(&req).map(|d| Box::pin(tokio::time::sleep_until(d.at())));
                ResponseFuture::checking(
                    check,
                    Pending {
                        inner: ready,
                        req,
                        policy: policy.clone(),
                        shadow: config.shadow,
                        legacy_headers: config.legacy_headers,
                        responder: self.responder.clone(),
                        deadline,
                    },
                )
            }
        }
    }
}
