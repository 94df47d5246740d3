//! Redis, once for every store (feature `redis`).
//!
//! - [`RedisClient`]: the three operations the stores need (`EVALSHA`, `EVAL`, one command),
//!   implemented for **fred** (feature `fred`, the default: `Client`, `Pool`) and
//!   **redis-rs** (feature `redis-rs`: `ConnectionManager`, `MultiplexedConnection`,
//!   `ClusterConnection`). No other palisade type names a client library's type, so a service
//!   already on redis-rs needs no second client.
//! - [`RedisScript`]: one `EVALSHA` per decision, reloaded on `NOSCRIPT`, bounded by a timeout.
//! - [`RedisBackend`]: client + key names + call timeout, embedded by every Redis store; the two
//!   default timeouts, [`DECISION_TIMEOUT`] and [`OWNERSHIP_TIMEOUT`], are defined here once.
//!
//! Late replies — a call that timed out but may still land — are undone by
//! [`Undo`](crate::backend::Undo), which every state-changing store call arms.
//!
//! ```no_run
//! # async fn demo<C: palisade_core::redis::RedisClient>(client: C) -> Result<(), palisade_core::BackendError> {
//! use std::sync::LazyLock;
//! use palisade_core::{key::Key, redis::{Arg, DECISION_TIMEOUT, RedisBackend, RedisScript}};
//!
//! static HITS: LazyLock<RedisScript> = LazyLock::new(|| {
//!     RedisScript::new("return redis.call('INCRBY', KEYS[1], ARGV[1])")
//! });
//! let backend = RedisBackend::new(client, "hits", DECISION_TIMEOUT);
//! let key = backend.key("page", &Key::from("home"));
//! let hits: i64 = backend.run(&HITS, &[key], &[Arg::Int(1)]).await?;
//! # Ok(()) }
//! ```

mod backend;
mod client;
#[cfg(feature = "fred")]
pub mod fred;
#[cfg(feature = "redis-rs")]
pub mod redis_rs;
mod script;

pub use backend::{DECISION_TIMEOUT, OWNERSHIP_TIMEOUT, RedisBackend};
pub use client::{Arg, CallError, FromReply, RedisClient, Reply};
pub use script::RedisScript;
