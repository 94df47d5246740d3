//! Adaptive concurrency limits: AIMD and a Gradient2-style limit that move with observed
//! latency and errors, and **reject** over the limit instead of queueing.
//!
//! - `algorithm.rs`: [`LimitAlgorithm`], [`LimitBounds`] and the pure [`next_limit`];
//! - `limit.rs`: [`AdaptiveLimit`] and its [`AdaptivePermit`]s;
//! - `layer.rs`: [`AdaptiveLimitLayer`], its service and future.

mod algorithm;
mod layer;
mod limit;

pub use algorithm::{LimitAlgorithm, LimitBounds, next_limit};
pub use layer::{Adaptive, AdaptiveFuture, AdaptiveLimitLayer};
pub use limit::{AdaptiveLimit, AdaptivePermit};
