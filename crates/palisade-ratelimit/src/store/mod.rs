//! Where limit state lives: the [`RateLimitStore`] trait, [`MemoryStore`] and
//! [`RedisStore`](redis::RedisStore).

mod either;
#[cfg(feature = "layer")]
mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::future::Future;

#[cfg(feature = "layer")]
pub use memory::MemoryStore;
use palisade_core::{BackendError, key::Key};

use crate::{Decision, Policy};

/// What a check asks of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decide and, when every limit has room, consume the cost.
    Consume,
    /// Decide only; nothing is written.
    Peek,
}

/// A store's answer: at once, or after a round trip.
pub enum Checked<F> {
    /// Decided synchronously (the in-memory store): no future, no allocation.
    Ready(Result<Decision, BackendError>),
    /// Deciding remotely.
    Pending(F),
}

/// Keeps rate-limit state and decides checks atomically.
///
/// Implementations must take a check as one atomic step over all the policy's limits for the
/// key: a request passes only if its cost fits every limit, and then it is taken from all of
/// them; a denied request changes nothing. The in-memory and Redis stores run the same test
/// suite.
pub trait RateLimitStore: Clone + Send + Sync + 'static {
    /// The future of a remote decision.
    type Future: Future<Output = Result<Decision, BackendError>> + Send + 'static;

    /// Checks `cost` units for `key` against every limit of `policy`.
    fn check(&self, policy: &Policy, key: &Key, cost: u64, mode: Mode) -> Checked<Self::Future>;
}
