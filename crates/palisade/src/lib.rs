//! palisade: the distributed-systems patterns multi-instance services keep rewriting by hand,
//! as tower layers for axum, tonic and any `tower::Service`.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use palisade::prelude::*;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::new("api", TokenBucket::new(2, 1.0)?)?;
//! let layer = RateLimitLayer::builder(MemoryStore::new(), policy)
//!     .key(Header::new("x-api-key"))
//!     .build();
//! // Any tower service whose response body can carry a problem+json document.
//! let service = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
//! }));
//!
//! let request = || http::Request::get("/").header("x-api-key", "k1").body(()).unwrap();
//! assert_eq!(service.clone().oneshot(request()).await?.status(), 200);
//! assert_eq!(service.clone().oneshot(request()).await?.status(), 200);
//! assert_eq!(service.clone().oneshot(request()).await?.status(), 429);
//! # Ok(()) }
//! ```
//!
//! # Layers
//!
//! | feature | layer | crate |
//! |---|---|---|
//! | `ratelimit` (default) | `RateLimitLayer`: token bucket, GCRA, sliding-window log, fixed window | [`ratelimit`] |
//! | `breaker` (default) | `CircuitBreakerLayer`: sliding count/time windows, capped probes | [`breaker`] |
//! | `retry` (default) | `RetryLayer`, `client_stack` (breaker ⊃ retry) | [`retry`] |
//! | `bulkhead` (default) | `BulkheadLayer`: bounded queues, max wait, priority tiers, adaptive and fleet-wide limits | [`bulkhead`] |
//! | `idempotency` (default) | `IdempotencyLayer` (`Idempotency-Key`), `Deduplicator` (consumers) | [`idempotency`] |
//! | `lock` (default) | `LockLayer`, `RedisLock`, `Redlock`, `PgAdvisoryLock`, fencing tokens | [`lock`] |
//!
//! # Backends
//!
//! Every layer runs on an in-memory store (per process: for development, tests and single
//! instances — **not** a distributed limit) and, with a Redis client feature (`fred`, the
//! default, or `redis-rs`), on a shared Redis so a whole fleet enforces one limit.
//!
//! # Features
//! - `ratelimit` (default): [`ratelimit`].
//! - `breaker` (default): [`breaker`].
//! - `retry` (default): [`retry`].
//! - `bulkhead` (default): [`bulkhead`].
//! - `idempotency` (default): [`idempotency`].
//! - `lock` (default): [`lock`].
//! - `fred` (default) or `redis-rs`: Redis stores on that client (both may be on; `redis`
//!   alone gives the stores generic over [`core::redis::RedisClient`] for another client).
//! - `postgres`: PostgreSQL advisory locks, the PostgreSQL idempotency store and (with `redis`)
//!   the Redis + PostgreSQL dual store.
//! - `grpc`: render rejections as `tonic::Status` ([`core::responder::Grpc`]).
//! - `axum`: key by axum's matched route; read axum's `ConnectInfo`.
#![warn(missing_docs)]

pub use palisade_core as core;
pub use palisade_core::{BackendError, Either, OnBackendError, ProblemDetails, key};

/// Rate limiting: [`RateLimitLayer`](ratelimit::RateLimitLayer) and its stores.
#[cfg(feature = "ratelimit")]
pub mod ratelimit {
    pub use palisade_ratelimit::*;
}

/// Circuit breaking: [`CircuitBreakerLayer`](breaker::CircuitBreakerLayer) and
/// [`CircuitBreaker`](breaker::CircuitBreaker).
#[cfg(feature = "breaker")]
pub mod breaker {
    pub use palisade_breaker::*;
}

/// Retry: [`RetryLayer`](retry::RetryLayer) and [`client_stack`](retry::client_stack).
#[cfg(feature = "retry")]
pub mod retry {
    pub use crate::stack::{ClientStack, client_stack};
    pub use palisade_retry::*;
}

#[cfg(feature = "retry")]
mod stack;

/// Bulkheads: [`BulkheadLayer`](bulkhead::BulkheadLayer) over a shared
/// [`Pool`](bulkhead::Pool).
#[cfg(feature = "bulkhead")]
pub mod bulkhead {
    pub use palisade_bulkhead::*;
}

/// Idempotency keys and consumer deduplication:
/// [`IdempotencyLayer`](idempotency::IdempotencyLayer) and
/// [`Deduplicator`](idempotency::Deduplicator).
#[cfg(feature = "idempotency")]
pub mod idempotency {
    pub use palisade_idempotency::*;
}

/// An RFC 9111 shared HTTP cache: [`HttpCache`](cache::HttpCache) and
/// [`CacheLayer`](cache::CacheLayer).
#[cfg(feature = "cache")]
pub mod cache {
    pub use palisade_cache::*;
}

/// The transactional outbox: [`Outbox`](outbox::Outbox), [`Relay`](outbox::Relay), sinks for
/// NATS JetStream and Redis Streams, and the [`InboxLayer`](outbox::InboxLayer).
#[cfg(feature = "outbox")]
pub mod outbox {
    pub use palisade_outbox::*;
}

/// Event sourcing: [`Aggregate`](eventstore::Aggregate), the PostgreSQL
/// [`EventStore`](eventstore::EventStore), [`Repository`](eventstore::Repository) and
/// [`ProjectionRunner`](eventstore::ProjectionRunner).
#[cfg(feature = "eventstore")]
pub mod eventstore {
    pub use palisade_eventstore::*;
}

/// Sagas: [`SagaDefinition`](saga::SagaDefinition) and the persisted
/// [`SagaRunner`](saga::SagaRunner).
#[cfg(feature = "saga")]
pub mod saga {
    pub use palisade_saga::*;
}

/// Distributed locks: [`Locker`](lock::Locker) backends and [`LockLayer`](lock::LockLayer).
#[cfg(feature = "lock")]
pub mod lock {
    pub use palisade_lock::*;
}

/// The names most services use.
pub mod prelude {
    #[cfg(feature = "retry")]
    pub use crate::stack::client_stack;
    #[cfg(all(feature = "breaker", feature = "redis"))]
    pub use palisade_breaker::Fleet;
    #[cfg(feature = "breaker")]
    pub use palisade_breaker::{
        AsError, BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, CircuitOpen, OpenDuration,
    };
    #[cfg(feature = "bulkhead")]
    pub use palisade_bulkhead::{BulkheadLayer, Pool, PoolConfig, Tier};
    #[cfg(feature = "axum")]
    pub use palisade_core::key::MatchedRoute;
    #[cfg(feature = "grpc")]
    pub use palisade_core::responder::Grpc;
    pub use palisade_core::{
        OnBackendError, ProblemJson,
        key::{ClientIp, FnKey, Global, Header, Key, KeyExtractor, PeerAddr, Principal},
    };
    #[cfg(feature = "idempotency")]
    pub use palisade_idempotency::{Deduplicator, IdempotencyLayer, Processed};
    #[cfg(all(feature = "lock", feature = "redis"))]
    pub use palisade_lock::RedisLock;
    #[cfg(feature = "lock")]
    pub use palisade_lock::{LockGuard, LockLayer, Locker, MemoryLock};
    #[cfg(all(feature = "ratelimit", feature = "redis"))]
    pub use palisade_ratelimit::RedisStore;
    #[cfg(feature = "ratelimit")]
    pub use palisade_ratelimit::{
        FixedWindow, Gcra, MemoryStore, Policy, RateLimitLayer, RateLimiter, SlidingWindowLog,
        Tiers, TokenBucket,
    };
    #[cfg(feature = "retry")]
    pub use palisade_retry::{Jitter, RetryBudget, RetryLayer, RetryPolicy};
}
