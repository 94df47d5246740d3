//! Retry as a tower layer, for clients: jittered exponential backoff, `Retry-After` and gRPC
//! pushback honoured, a retry budget shared by every clone, HTTP body replay, and HTTP
//! classification that never retries a palisade refusal. The client stack that keeps retries
//! inside the circuit breaker is `palisade::retry::client_stack` (the facade holds it, so this
//! crate does not depend on the breaker).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::{convert::Infallible, sync::{Arc, atomic::{AtomicU32, Ordering}}, time::Duration};
//! use palisade_retry::{ReplayBody, RetryLayer, RetryPolicy};
//! use tower::{Layer, ServiceExt};
//!
//! // An upstream that fails twice with 503, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = calls.clone();
//! let upstream = tower::service_fn(move |_req: http::Request<ReplayBody<String>>| {
//!     let n = seen.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let status = if n < 2 { 503 } else { 200 };
//!         Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap())
//!     }
//! });
//! let policy = RetryPolicy::new(3).backoff(
//!     palisade_retry::Jitter::Full,
//!     Duration::from_millis(1),
//!     Duration::from_millis(5),
//! );
//! let client = RetryLayer::new(policy).layer(upstream);
//! let response = client.oneshot(http::Request::get("http://api/x").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```
//!
//! # What is retried
//!
//! By default ([`HttpRetry`]): 408, 429, 500, 502, 503, 504, connection errors and timeouts —
//! and only for GET, HEAD, OPTIONS, PUT, DELETE, TRACE or a request carrying an
//! `Idempotency-Key`. Never 400, 401, 403, 404, 405, 409, 422, unknown errors, or a palisade
//! refusal (an open circuit, a local rate limit). Bodies up to the replay limit (64 KiB) are
//! buffered and sent byte-for-byte on every attempt; larger bodies are streamed once.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `layer.rs`, `service.rs`, `shared.rs`, `future.rs` | [`RetryLayer`], the [`Retry`] service and what its calls share, its [`ResponseFuture`] (the attempts as a state machine) |
//! | `policy.rs`, [`decide`] | [`RetryPolicy`]; the pure decision after each attempt |
//! | `budget.rs`, [`backoff`] | the shared [`RetryBudget`]; jittered backoff (core's) |
//! | [`classify`] | what is retried ([`HttpRetry`]) |
//!
//! # Metrics
//!
//! `palisade_retry_calls_total{outcome=success_without_retry|success_with_retry|failed_without_retry|failed_with_retry}`
//! (logical calls that were retryable), `palisade_retry_retries_total`,
//! `palisade_retry_budget_exhausted_total`; `tracing` debug events under `palisade::retry` with
//! the attempt number, delay and reason; [`RetryLayer::subscribe`] for retries as values.
//!
//! Without the default `layer` feature the crate is only the pure [`decide`], [`RetryPolicy`]
//! and the classifiers, and builds without tokio (for edge runtimes; checked in CI).
#![warn(missing_docs)]

pub use palisade_core::backoff;
#[cfg(feature = "layer")]
mod budget;
pub mod classify;
pub mod decide;
#[cfg(feature = "layer")]
mod future;
#[cfg(feature = "layer")]
mod layer;
mod policy;
#[cfg(feature = "layer")]
mod service;
#[cfg(feature = "layer")]
mod shared;

use std::time::Duration;

pub use backoff::Jitter;
/// The request body the inner service receives: the buffered bytes (sent again on every
/// attempt), or — when the body was larger than the policy's `body_limit` or failed to read —
/// what was read, then the rest of the stream (or its error), sent once. Core's
/// [`PrefixedBody`](palisade_core::body::PrefixedBody), shared with the idempotency layer.
pub type ReplayBody<B> = palisade_core::body::PrefixedBody<B>;
#[cfg(feature = "layer")]
pub use budget::RetryBudget;
pub use classify::{HttpRetry, RetryClassify, RetryDecision};
#[cfg(feature = "layer")]
pub use future::ResponseFuture;
#[cfg(feature = "layer")]
pub use layer::{RetryEvent, RetryLayer};
pub use policy::RetryPolicy;
#[cfg(feature = "layer")]
pub use service::{Retry, is_idempotent};

/// An attempt ran out of its per-attempt timeout (or of the overall deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attempt timed out after {0:?}")]
pub struct AttemptTimedOut(pub Duration);
