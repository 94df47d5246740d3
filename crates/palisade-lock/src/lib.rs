//! Distributed locks for tokio services, and a tower layer that serialises requests per
//! resource.
//!
//! ```
//! use std::time::Duration;
//! use palisade_lock::{Locker, MemoryLock};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_lock::LockError> {
//! // RedisLock::new(redis_client, ttl) in production; the API is the same.
//! let locks = MemoryLock::new(Duration::from_secs(10));
//! locks
//!     .run("payment:order-123", Duration::from_secs(2), |lock| async move {
//!         // Only one holder at a time; lock.fencing_token goes with every write.
//!         assert!(lock.fencing_token.is_some());
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Python's `async with RedisLock(redis, "payment:order-123")`, in Rust — one expression,
//! released on every path, the work cancelled if the lock is lost:
//!
//! ```no_run
//! # async fn demo(redis: fred::clients::Client) -> Result<(), palisade_lock::LockError> {
//! use std::time::Duration;
//! use palisade_lock::{Locker, RedisLock};
//!
//! RedisLock::new(redis, Duration::from_secs(10))
//!     .run("payment:order-123", Duration::from_secs(2), |lock| async move {
//!         // charge the order, passing lock.fencing_token to the ledger
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Backends
//!
//! | backend | feature | fencing tokens | survives | notes |
//! |---|---|---|---|---|
//! | [`MemoryLock`] | — | yes | nothing | one process only |
//! | [`RedisLock`] | `fred` / `redis-rs` | yes (counter seeded by server time) | a restart only with persistence | one round trip to acquire |
//! | [`Redlock`] | `fred` / `redis-rs` | **no** (see its docs) | a minority of N nodes down | N parallel round trips |
//! | [`PgAdvisoryLock`] | `postgres` | with `with_fencing` | — (session dies → lock released) | holds a pooled connection while held |
//! | [`lock_xact`] | `postgres` | — | — | released at commit / rollback |
//!
//! Every guard is a [`LockGuard`]: a mandatory lease, a **watchdog** extending it every TTL/3,
//! a **lost** signal — as soon as the lease, counted from the send time of the last successful
//! extension, has run out (before the server can grant it to anyone else), or when an
//! extension finds the lock gone — and release on drop. The scoped
//! form [`Locker::run`] cancels the protected work when the lock is lost;
//! [`Locker::acquire_all`] takes several locks in sorted order (no deadlock).
//!
//! # What a lock can promise
//!
//! Mutual exclusion holds while the holder runs and the lease is extended in time. A holder
//! paused past its lease (GC, SIGSTOP, a VM migration) can wake up still "holding" a lock
//! someone else now holds — no lock service can stop that. Make the resource check the
//! holder's **fencing token** ([`fencing`]): a write with an older token than one already
//! accepted is refused.
//!
//! # Faults: what remains possible
//!
//! Every backend call has a deadline (a request's [`Deadline`](palisade_core::deadline::Deadline)
//! too, in [`LockLayer`]). A timeout is an unknown outcome: an acquisition whose reply was lost
//! — timed out, or its caller dropped mid-call — is undone in the background with the owner
//! token (owner-checked, so it never frees someone else's lock); if that undo cannot get through
//! either, the lock is free when its TTL ends. A release that does not get through leaves the
//! lock to its TTL. A PostgreSQL connection whose acquisition did not complete is closed, never
//! pooled. `TESTING.md` lists each operation under each fault and what is guaranteed.
//!
//! # Metrics
//! `palisade_lock_held` (gauge), `palisade_lock_lost_total`,
//! `palisade_lock_requests_total{outcome}` (layer: `acquired`, `locked`),
//! `palisade_backend_errors_total{layer="lock"}`.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `locker.rs`, `guard.rs`, `held.rs` | the [`Locker`] trait, the [`LockGuard`] and its watchdog, [`HeldLock`] |
//! | `store/` | `memory.rs`, `redis.rs` (scripts in `scripts/*.lua`), `redlock.rs`, `postgres.rs` |
//! | [`state`] | one lock's record as a pure state machine (memory runs it; the Lua scripts are its twin) |
//! | `quorum` (feature `redis`) | Redlock's quorum and validity arithmetic, pure |
//! | `layer.rs`, `service.rs`, `future.rs`, `rejection.rs` | [`LockLayer`], [`LockService`], its [`ResponseFuture`], [`Locked`] |
//! | [`fencing`] | the resource side: fenced writes |
//!
//! # Features
//! - `fred` (default) or `redis-rs`: [`RedisLock`], [`Redlock`], [`fencing::fenced_set`] on
//!   that client (`redis` alone: generic over `palisade_core::redis::RedisClient`).
//! - `postgres`: [`PgAdvisoryLock`], [`lock_xact`], [`held_advisory_locks`],
//!   [`fencing::check_fence`].
//! - `axum`: [`HeldLock`] as an axum extractor.
//! - `grpc`: gRPC refusals.
#![warn(missing_docs)]

mod error;
pub mod fencing;
mod future;
mod guard;
mod held;
mod layer;
mod locker;
#[cfg(feature = "redis")]
pub mod quorum;
mod rejection;
mod service;
pub mod state;
mod store;

pub use error::LockError;
pub use future::ResponseFuture;
pub use guard::{Held, HeldFuture, LockGuard, safety_margin};
pub use held::HeldLock;
pub use layer::LockLayer;
pub use locker::Locker;
/// The decoded path segment extractor, from `palisade-core` (re-exported here for lock names).
pub use palisade_core::key::PathSegment;
pub use rejection::Locked;
pub use service::LockService;
pub use store::memory::MemoryLock;
#[cfg(feature = "postgres")]
pub use store::postgres::{
    AdvisoryKey, HeldAdvisoryLock, MIGRATION, PgAdvisoryLock, held_advisory_locks, lock_xact,
    try_lock_xact,
};
#[cfg(feature = "redis")]
pub use store::redis::RedisLock;
#[cfg(feature = "redis")]
pub use store::redlock::{Redlock, TooFewNodes};
