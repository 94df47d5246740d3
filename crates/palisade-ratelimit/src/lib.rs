//! Distributed rate limiting as a tower layer: token bucket, GCRA, sliding-window log and
//! fixed window, on Redis (one `EVALSHA` per decision) or in memory.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use palisade_core::key::PeerAddr;
//! use palisade_ratelimit::{MemoryStore, Policy, RateLimitLayer, TokenBucket};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Bursts of 10 requests per client IP, refilled at 5 per second.
//! let policy = Policy::new("api", TokenBucket::new(10, 5.0)?)?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(MemoryStore::new(), policy));
//!
//! // A server passes each client's address along when served with
//! // `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`;
//! // here we hand it over ourselves.
//! let request = || {
//!     let mut req = http::Request::get("/").body(Body::empty()).unwrap();
//!     req.extensions_mut().insert(PeerAddr("192.0.2.1:4000".parse().unwrap()));
//!     req
//! };
//! for _ in 0..10 {
//!     let response = app.clone().oneshot(request()).await?;
//!     assert_eq!(response.status(), 200);
//!     assert_eq!(response.headers()["ratelimit-policy"], "\"api\";q=10;w=2");
//! }
//! let refused = app.clone().oneshot(request()).await?;
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! assert_eq!(refused.headers()["ratelimit"], "\"api\";r=0;t=1");
//! assert_eq!(refused.headers()["content-type"], "application/problem+json");
//! # Ok(()) }
//! ```
//!
//! Every response carries the IETF `RateLimit-Policy` and `RateLimit` fields (draft-10); a
//! refusal is `429 Too Many Requests` with `Retry-After` rounded **up** (never 0) and an
//! RFC 9457 `application/problem+json` body.
//!
//! # Shared by a fleet: Redis
//!
//! [`MemoryStore`] is per process: N instances admit N times the quota. For one limit across
//! instances, use [`RedisStore`] on a fred client or pool, or a redis-rs connection. Each decision is one `EVALSHA`
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
//! # gRPC
//!
//! With the `grpc` feature, `.responder(palisade_core::responder::Grpc)` answers refusals as
//! `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`, and the layer goes on a tonic server
//! like any other: `Server::builder().layer(layer).add_service(...)`. Key by metadata with
//! [`Header`](palisade_core::key::Header) (`x-api-key`), since tonic keeps the peer address in
//! its own `TcpConnectInfo`.
//!
//! # Direct use
//!
//! [`RateLimiter`] checks a key without any HTTP: `check(key, cost)`, `peek(key, cost)`.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `layer.rs`, `service.rs`, `future.rs` | [`RateLimitLayer`], its service, its [`ResponseFuture`] |
//! | `policy.rs`, `select.rs` | [`Policy`] (serde, validated) and per-request policy selection |
//! | [`algorithm`] | the pure decisions: GCRA, token bucket, sliding-window log, fixed window |
//! | [`store`] | memory and Redis (`scripts/check.lua`, the algorithms' Lua twin) stores |
//! | `limiter.rs`, `decision.rs`, `verdict.rs` | [`RateLimiter`] for direct use; a decision; allowed / refused / undecided |
//! | [`headers`], `sf.rs`, `rejection.rs`, `error.rs` | IETF `RateLimit` headers, structured fields, the refusal, errors |
//!
//! # Observability
//!
//! - `palisade_ratelimit_decisions_total{policy, outcome=allowed|rejected|shadow_rejected}`
//! - `palisade_backend_errors_total{layer="ratelimit", policy=fail_open|fail_closed}`
//! - `tracing` events under the `palisade::ratelimit` and `palisade::backend` targets.
//!
//! Without the default `layer` feature the crate is only the pure algorithms, policies,
//! decisions and headers, and builds without tokio (for edge runtimes; checked in CI).
#![warn(missing_docs)]
// Helpers the stores use (memory and Redis need the `layer` feature) are unused without them.
#![cfg_attr(not(feature = "layer"), allow(dead_code))]

pub mod algorithm;
mod decision;
mod error;
#[cfg(feature = "layer")]
mod future;
pub mod headers;
#[cfg(feature = "layer")]
mod layer;
#[cfg(feature = "layer")]
mod limiter;
mod policy;
mod rejection;
mod select;
#[cfg(feature = "layer")]
mod service;
mod sf;
pub mod store;
mod verdict;

pub use algorithm::{Algorithm, FixedWindow, Gcra, SlidingWindowLog, TokenBucket};
pub use decision::{Decision, LimitOutcome};
#[cfg(feature = "layer")]
pub use future::ResponseFuture;
#[cfg(feature = "layer")]
pub use layer::{CostFn, RateLimitLayer, RateLimitLayerBuilder};
#[cfg(feature = "layer")]
pub use limiter::{MAX_COST, RateLimiter};
pub use policy::{
    Limit, LimitConfig, MAX_LIMITS, Policy, PolicyBuilder, PolicyConfig, PolicyError,
};
pub use rejection::{QUOTA_EXCEEDED, RateLimited};
pub use select::{SelectPolicy, Tiers};
#[cfg(feature = "layer")]
pub use service::RateLimit;
#[cfg(feature = "layer")]
pub use store::MemoryStore;
pub use store::RateLimitStore;
#[cfg(feature = "redis")]
pub use store::redis::RedisStore;
