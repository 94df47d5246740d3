//! [`RateLimiter`]: the direct API, for code that is not an HTTP handler.

use palisade_core::{BackendError, key::Key};

use crate::{
    Decision, Policy,
    store::{Checked, Mode, RateLimitStore},
};

/// Largest cost one request may claim; larger costs are clamped (and can never fit).
pub const MAX_COST: u64 = 1_000_000_000;

/// A policy on a store: check keys directly, without a tower stack.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use palisade_ratelimit::{MemoryStore, Policy, RateLimiter, TokenBucket};
///
/// let limiter = RateLimiter::new(
///     MemoryStore::new(),
///     Policy::new("jobs", TokenBucket::new(100, 10.0).unwrap()).unwrap(),
/// );
/// let decision = limiter.check(&"user:42".into(), 5).await.unwrap();
/// assert!(decision.is_allowed());
/// assert_eq!(decision.remaining(), 95);
///
/// // Peek: what a cost of 200 would do, consuming nothing.
/// let peek = limiter.peek(&"user:42".into(), 200).await.unwrap();
/// assert!(!peek.is_allowed() && peek.is_never());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter<S> {
    store: S,
    policy: Policy,
}

impl<S: RateLimitStore> RateLimiter<S> {
    /// `policy` enforced on `store`.
    pub fn new(store: S, policy: Policy) -> Self {
        RateLimiter { store, policy }
    }

    /// Checks `cost` units for `key` and consumes them when every limit has room.
    pub async fn check(&self, key: &Key, cost: u64) -> Result<Decision, BackendError> {
        self.run(key, cost, Mode::Consume).await
    }

    /// What [`check`](Self::check) would answer, consuming nothing.
    pub async fn peek(&self, key: &Key, cost: u64) -> Result<Decision, BackendError> {
        self.run(key, cost, Mode::Peek).await
    }

    /// Whether one unit for `key` is allowed (and consumed), with the policy's
    /// `on_backend_error` deciding when the store cannot.
    pub async fn is_allowed(&self, key: &Key) -> bool {
        match self.check(key, 1).await {
            Ok(decision) => decision.is_allowed(),
            Err(error) => self.policy.on_backend_error().apply("ratelimit", &error),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    async fn run(&self, key: &Key, cost: u64, mode: Mode) -> Result<Decision, BackendError> {
        match self
            .store
            .check(&self.policy, key, cost.min(MAX_COST), mode)
        {
            Checked::Ready(result) => result,
            Checked::Pending(future) => future.await,
        }
    }
}
