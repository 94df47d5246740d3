//! One deadline per request, carried through the layers: [`Deadline`], [`DeadlineLayer`].
//!
//! Every backend call has its own timeout, and a request may make several in sequence — a
//! rate-limit check, a claim, a lock, the handler's own writes. In a stall those add up: four
//! 500 ms timeouts answer after two seconds. A **budget** bounds the whole request instead:
//! [`DeadlineLayer`] puts a [`Deadline`] into the request extensions, and every palisade layer
//! (and a handler, with [`Deadline::bound`]) bounds each backend call by
//! `min(its own timeout, time left)`, so the answer comes within the budget whatever fails.
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::deadline::{Deadline, DeadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(2)))
//!     .service_fn(|request: http::Request<()>| async move {
//!         let deadline = Deadline::of(&request).expect("set by the layer");
//!         assert!(deadline.remaining() <= Duration::from_secs(2));
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     });
//! service.oneshot(http::Request::new(())).await.unwrap();
//! # }
//! ```

use std::{
    future::Future,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::BackendError;

/// When the request must be answered by (tokio's clock, so tests can pause time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    /// The instant.
    pub fn at(self) -> Instant {
        self.0
    }

    /// Time left (zero once passed).
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The request's deadline, if a [`DeadlineLayer`] (or anyone) set one.
    pub fn of<B>(request: &http::Request<B>) -> Option<Deadline> {
        request.extensions().get::<Deadline>().copied()
    }

    /// `call`, cut off at this deadline: [`BackendError::Timeout`] if it does not finish in
    /// time. With `None`, `call` as it is (its own timeout still bounds it).
    pub async fn bound<T, F>(deadline: Option<Deadline>, call: F) -> Result<T, BackendError>
    where
        F: Future<Output = Result<T, BackendError>>,
    {
        match deadline {
            None => call.await,
            Some(deadline) => match tokio::time::timeout_at(deadline.0, call).await {
                Ok(result) => result,
                Err(_) => Err(BackendError::Timeout(Duration::ZERO)),
            },
        }
    }
}

impl Deadline {
    /// Runs `work` (a release, a cleanup: something the answer need not wait for beyond the
    /// budget) until it finishes or the deadline passes; then the rest of it carries on in the
    /// background on the current tokio runtime. With `None`, `work` is simply awaited. Nothing
    /// is spawned when `work` finishes in time.
    pub async fn finish<F>(deadline: Option<Deadline>, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(deadline) = deadline else {
            return work.await;
        };
        let mut work = Box::pin(work);
        if tokio::time::timeout_at(deadline.0, &mut work)
            .await
            .is_err()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(work);
        }
    }
}

/// Gives every request a [`Deadline`] `budget` from its arrival (keeping an earlier one already
/// set, say by an outer layer or a gRPC `grpc-timeout` reader).
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    budget: Duration,
}

impl DeadlineLayer {
    /// Requests must be answered within `budget`.
    pub fn new(budget: Duration) -> Self {
        DeadlineLayer { budget }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDeadline {
            inner,
            budget: self.budget,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct WithDeadline<S> {
    inner: S,
    budget: Duration,
}

impl<S> WithDeadline<S> {
    crate::inner_service_accessors!(S);
}

impl<S, B> Service<http::Request<B>> for WithDeadline<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        let mine = Deadline::after(self.budget);
        let deadline = Deadline::of(&request).map_or(mine, |earlier| earlier.min(mine));
        request.extensions_mut().insert(deadline);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn finish_returns_at_the_deadline_and_the_work_carries_on() {
        let done = Arc::new(AtomicBool::new(false));
        let work = {
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                done.store(true, Ordering::SeqCst);
            }
        };
        let started = Instant::now();
        Deadline::finish(Some(Deadline::after(Duration::from_secs(1))), work).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(!done.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            done.load(Ordering::SeqCst),
            "the rest ran in the background"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bound_cuts_a_call_at_the_deadline() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, BackendError>(())
        };
        let deadline = Some(Deadline::after(Duration::from_millis(300)));
        assert!(matches!(
            Deadline::bound(deadline, slow).await,
            Err(BackendError::Timeout(_))
        ));
    }
}
