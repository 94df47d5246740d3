//! [`RetryLayer`] and the retries it publishes ([`RetryEvent`]).

use std::{sync::Arc, time::Duration};

use tokio::sync::broadcast;
use tower_layer::Layer;

use crate::{Retry, RetryBudget, RetryPolicy, classify::HttpRetry};

/// Retries failed HTTP requests to the inner service (usually a client).
///
/// Each request is first classified as retryable or not (idempotent method or an
/// `Idempotency-Key` header, and a body that fits the replay buffer). Then attempts follow the
/// [`RetryPolicy`]: jittered backoff, `Retry-After` honoured (capped), a per-attempt timeout, an
/// overall deadline, and a [`RetryBudget`] shared by every clone so a failing upstream never
/// sees retry amplification. The inner service receives [`ReplayBody`](crate::ReplayBody)s.
///
/// Put it **inside** the circuit breaker — `palisade::retry::client_stack` builds that
/// order — so retries stop while the circuit is open and the breaker counts one outcome per
/// logical call.
#[derive(Debug, Clone)]
pub struct RetryLayer<C = HttpRetry> {
    policy: Arc<RetryPolicy>,
    budget: RetryBudget,
    classify: C,
    events: broadcast::Sender<RetryEvent>,
}

/// A retry about to happen, published to [`RetryLayer::subscribe`] listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEvent {
    /// The attempt about to be made (2 for the first retry).
    pub attempt: u32,
    /// The wait before it.
    pub delay: Duration,
    /// Why: the status or the error of the previous attempt.
    pub reason: String,
}

impl RetryLayer {
    /// Retries by `policy`, with the default budget (20 % of requests + 10/s).
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            policy: Arc::new(policy),
            budget: RetryBudget::default(),
            classify: HttpRetry,
            events: broadcast::channel(64).0,
        }
    }
}

impl<C> RetryLayer<C> {
    /// Shares `budget` (with other layers too, if you like).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Classifies results with `classify`.
    pub fn classify<C2>(self, classify: C2) -> RetryLayer<C2> {
        RetryLayer {
            policy: self.policy,
            budget: self.budget,
            classify,
            events: self.events,
        }
    }

    /// Retries from now on, as events. Nothing is built unless someone listens.
    pub fn subscribe(&self) -> broadcast::Receiver<RetryEvent> {
        self.events.subscribe()
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(
            inner,
            self.policy.clone(),
            self.budget.clone(),
            self.classify.clone(),
            self.events.clone(),
        )
    }
}
