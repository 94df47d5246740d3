//! Bulkheads as a tower layer: a concurrency limit with bounded queues, a max wait, and
//! priority tiers sharing one pool, so a flood of optional work never starves critical work.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use palisade_bulkhead::{BulkheadLayer, Pool, PoolConfig};
//!
//! // Three tiers: optional (4, queue 6), standard (8, queue 12), critical (5, queue 10).
//! let pool = Pool::new(PoolConfig::three_tiers("partner-api"));
//! let checkout = BulkheadLayer::new(pool.clone(), pool.tier("critical").unwrap());
//! let recommendations = BulkheadLayer::new(pool.clone(), pool.tier("optional").unwrap());
//! // Router::new()
//! //     .route("/checkout", post(checkout_handler).route_layer(checkout))
//! //     .route("/recommendations", get(recs).route_layer(recommendations));
//! let status = serde_json::to_value(pool.snapshot()).unwrap();
//! assert_eq!(status["tiers"][2]["name"], "critical");
//! # }
//! ```
//!
//! # Admission
//!
//! A tier may use its own slots and those of the tiers below it, never those above. A call
//! that finds no slot waits in its tier's FIFO queue (bounded) for at most the tier's max wait;
//! with a full queue or after the wait it is refused with [`BulkheadFull`]: 503 + `Retry-After`
//! + problem+json, never a 500. Released slots go to the highest-priority waiter that fits.
//!
//! Per-key bulkheads (one pool per dependency or upstream) come from a [`PoolRegistry`] with
//! bounded memory, through [`KeyedBulkheadLayer`].
//!
//! [`AdaptiveLimitLayer`] moves its limit with observed latency and errors (AIMD or a
//! Gradient2-style rule, [`next_limit`] being the pure function) and refuses over the limit
//! rather than queueing forever; `palisade_bulkhead_adaptive_limit{bulkhead}` shows the limit.
//!
//! Slots come from a [`Semaphore`]: one tier of a local [`Pool`] ([`PoolTier`], what
//! [`BulkheadLayer::new`] uses) or, with the `redis` feature, a [`FleetSemaphore`] that bounds
//! calls across every instance ("at most 20 concurrent calls to the partner API") with leases
//! that expire when an instance dies and are renewed for long calls —
//! `BulkheadLayer::from_semaphore(fleet)`: the same layer, service and future either way.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `layer.rs`, `service.rs`, `future.rs`, `reservation.rs` | [`BulkheadLayer`], its service, its [`ResponseFuture`], the slot a call reserves |
//! | `semaphore.rs` | the [`Semaphore`] trait every source of slots implements |
//! | `pool.rs`, `tier.rs`, `pool_tier.rs` | the local pool with priority tiers ([`TierId`]) and bounded queues; one tier of it as a [`Semaphore`] |
//! | `keyed.rs` | per-key pools in core's bounded registry |
//! | `adaptive/` | adaptive limits: the pure `next_limit` (`algorithm.rs`), the limit, its layer |
//! | `fleet/` | the Redis-wide semaphore (feature `redis`): pure lease rules (`state.rs`) and their Lua twin (`scripts/semaphore.lua`), permits, its [`Semaphore`] impl (`admission.rs`) |
//! | `fallback.rs`, `rejection.rs` | what a refused call answers |
//!
//! # Observability
//!
//! [`Pool::snapshot`] (serde) gives active, queued and the most ever active. Metrics:
//! `palisade_bulkhead_active{bulkhead, tier}`, `palisade_bulkhead_queued{bulkhead, tier}`,
//! `palisade_bulkhead_max_active{bulkhead}` (gauges registered when the pool is created: install
//! the recorder first), `palisade_bulkhead_rejections_total{bulkhead, reason}`,
//! `palisade_bulkhead_timeouts_total{bulkhead}`; a `tracing` warning when a queue is above 80 %
//! full.
#![warn(missing_docs)]

mod adaptive;
mod fallback;
#[cfg(feature = "redis")]
pub mod fleet;
mod future;
mod keyed;
mod layer;
mod pool;
mod pool_tier;
mod rejection;
mod reservation;
mod semaphore;
mod service;
mod tier;

pub use adaptive::{
    Adaptive, AdaptiveFuture, AdaptiveLimit, AdaptiveLimitLayer, AdaptivePermit, LimitAlgorithm,
    LimitBounds, next_limit,
};
pub use fallback::Fallback;
#[cfg(feature = "redis")]
pub use fleet::{
    FleetAcquisition, FleetError, FleetFull, FleetPermit, FleetRefusal, FleetSemaphore,
};
pub use future::ResponseFuture;
pub use keyed::{KeyedBulkhead, KeyedBulkheadLayer, KeyedResponseFuture, PoolRegistry};
pub use layer::BulkheadLayer;
pub use pool::{Acquire, Permit, Pool, Snapshot, TierSnapshot};
pub use pool_tier::{PoolAcquisition, PoolTier};
pub use rejection::{BulkheadFull, CallTimedOut, Reason};
pub use semaphore::Semaphore;
pub use service::Bulkhead;
pub use tier::{PoolConfig, Tier, TierId};
