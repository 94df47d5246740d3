//! Distributed rate limiting as a tower layer: token bucket, GCRA, sliding-window log and
//! fixed window, on Redis (one `EVALSHA` per decision) or in memory.
//!
//! ```
//! use std::{net::SocketAddr, time::Duration};
//! use axum::{Router, routing::get};
//! use palisade_ratelimit::{MemoryStore, Policy, RateLimitLayer, TokenBucket};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // 10 requests at once per client IP, refilled at 5 per second.
//! let policy = Policy::new("api", TokenBucket::new(10, 5.0)?)?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(MemoryStore::new(), policy));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // Connect info gives the layer each client's address.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! Every response then carries the IETF fields (draft-10):
//!
//! ```text
//! RateLimit-Policy: "api";q=10;w=2
//! RateLimit: "api";r=9;t=1
//! ```
//!
//! and the eleventh request in a burst gets `429 Too Many Requests` with `Retry-After: 1`
//! (rounded **up**, never 0) and an RFC 9457 `application/problem+json` body.
//!
//! # Shared by a fleet: Redis
//!
//! [`MemoryStore`] is per process: N instances admit N times the quota. For one limit across
//! instances, use [`RedisStore`] on a `fred` client (or pool). Each decision is one `EVALSHA`
//! of a Lua script that checks every limit of the policy atomically with the Redis server's
//! clock, so instance clock skew cannot change a verdict. When Redis does not answer within
//! the store's timeout, the policy's [`OnBackendError`](palisade_core::OnBackendError) decides
//! (fail open by default; fail closed answers 503), and decisions resume by themselves when
//! Redis returns.
//!
//! # Algorithms
//!
//! | | state per key | bursts | exact over any window |
//! |---|---|---|---|
//! | [`TokenBucket`] (default choice) | 3 integers | up to capacity | no (rate-limited) |
//! | [`Gcra`] | 1 integer | up to burst | no (rate-limited) |
//! | [`SlidingWindowLog`] | one entry per unit | up to quota | **yes** |
//! | [`FixedWindow`] | 2 integers | 2 × quota across an edge | no |
//!
//! All four are pure functions in [`algorithm`], and `scripts/check.lua` is their Redis twin; a
//! differential test demands identical decisions from both.
//!
//! # Policies
//!
//! A [`Policy`] is a named set of up to four limits checked atomically: a request passes only
//! if its cost fits every limit (`10/s` **and** `1000/day`), and a refused request consumes
//! nothing. Policies are built in code or deserialized (TOML, JSON…) with humane durations
//! and validated with clear errors. [`Tiers`] picks a policy per request (anonymous, free,
//! pro…); axum's `route_layer` gives each route its own.
//!
//! # Direct use
//!
//! [`RateLimiter`] checks a key without any HTTP: `check(key, cost)`, `peek(key, cost)`.
//!
//! # Observability
//!
//! - `palisade_ratelimit_decisions_total{policy, outcome=allowed|rejected|shadow_rejected}`
//! - `palisade_backend_errors_total{layer="ratelimit", policy=fail_open|fail_closed}`
//! - `tracing` events under the `palisade::ratelimit` and `palisade::backend` targets.
#![warn(missing_docs)]

pub mod algorithm;
mod decision;
pub mod headers;
mod layer;
mod limiter;
mod policy;
mod rejection;
mod select;
mod service;
pub mod store;
mod future;

pub use algorithm::{Algorithm, FixedWindow, Gcra, SlidingWindowLog, TokenBucket};
pub use decision::{Decision, LimitOutcome};
pub use future::ResponseFuture;
pub use layer::{CostFn, RateLimitLayer, RateLimitLayerBuilder};
pub use limiter::{MAX_COST, RateLimiter};
pub use policy::{Limit, LimitConfig, MAX_LIMITS, Policy, PolicyBuilder, PolicyConfig, PolicyError};
pub use rejection::{QUOTA_EXCEEDED, RateLimited};
pub use select::{SelectPolicy, Tiers};
pub use service::RateLimit;
pub use store::{MemoryStore, RateLimitStore};
#[cfg(feature = "redis")]
pub use store::redis::RedisStore;
