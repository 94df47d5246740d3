//! Circuit breaking as a tower layer: stop calling an upstream that is failing, probe it now
//! and then, and tell callers when to come back.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use palisade_breaker::{BreakerPolicy, CircuitBreaker, CircuitBreakerLayer, OpenDuration};
//!
//! let breaker = CircuitBreaker::new(
//!     BreakerPolicy::builder("payments-api")
//!         .failure_rate(0.5)                 // open at 50 % failures…
//!         .count_window(100)                 // …over the last 100 calls…
//!         .minimum_calls(20)                 // …once there are 20 of them
//!         .consecutive_failures(10)          // or after 10 failures in a row
//!         .open_for(OpenDuration::exponential(Duration::from_secs(5), Duration::from_secs(120)))
//!         .half_open_probes(3)
//!         .build()
//!         .unwrap(),
//! );
//! let layer = CircuitBreakerLayer::new(breaker.clone());
//! // Router::new().route(...).layer(layer), or around a client with `.on_open(AsError)`.
//!
//! // A health endpoint can serve the state as JSON.
//! let snapshot = serde_json::to_value(breaker.snapshot()).unwrap();
//! assert_eq!(snapshot["state"], "closed");
//! # }
//! ```
//!
//! # Behaviour
//!
//! - **Closed**: calls flow and their outcomes enter a sliding window — the last N calls
//!   ([`Window::Count`], a ring that truly forgets the oldest call) or the last N seconds
//!   ([`Window::Time`], one aggregate per second, O(1) per call). Once the window holds
//!   `minimum_calls`, a failure rate or slow-call rate at or above its threshold opens the
//!   breaker; so do `consecutive_failures` in a row.
//! - **Open**: calls are refused at once with [`CircuitOpen`] carrying `retry_after`, the
//!   time until probing starts. The open duration is fixed or grows on consecutive reopenings
//!   ([`OpenDuration::exponential`], capped, jittered).
//! - **Half-open**: at most `half_open_probes` calls pass at once, the rest are refused. The
//!   breaker reopens as soon as the probes' failures reach the failure rate, and closes (with an
//!   empty window) once all probes finished below it.
//! - Operators can [`force_open`](CircuitBreaker::force_open),
//!   [`disable`](CircuitBreaker::disable), switch to
//!   [`metrics_only`](CircuitBreaker::metrics_only), and [`reset`](CircuitBreaker::reset).
//!
//! With the `redis` feature, [`CircuitBreaker::join_fleet`] shares openings across instances
//! and lets one instance at a time probe (`Fleet`); per-process remains the default.
//!
//! Per-key breakers (one per upstream authority, say) come from a [`BreakerRegistry`] with
//! bounded memory, through [`KeyedCircuitBreakerLayer`].
//!
//! Classification is pluggable ([`Classify`]): [`HttpFailures`] (5xx, errors) by default,
//! [`GrpcFailures`], [`ErrorsAreFailures`], or a closure.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `layer.rs`, `service.rs`, `future.rs` | [`CircuitBreakerLayer`], the [`Breaker`] service, its [`ResponseFuture`] |
//! | `policy.rs` | [`BreakerPolicy`] and its serde form, validated |
//! | [`state`], [`decide`] | the pure state machine ([`state::Machine`], the specification) and its thresholds |
//! | `breaker.rs`, `permit.rs`, `window.rs` | the atomic executor of that machine ([`CircuitBreaker`]), the [`Permit`] that records an outcome, the lock-free windows |
//! | `keyed.rs` | per-key breakers in core's bounded registry |
//! | `fleet/` | fleet-shared state in Redis (`Fleet`, feature `redis`): `scripts/fleet.lua` and its pure twin (`fleet::state`) |
//! | [`classify`], `rejection.rs` | what counts as a failure; the refusal ([`CircuitOpen`]) |
//!
//! # Observability
//!
//! - `palisade_breaker_state{breaker, state}`: one-hot gauge (the previous state is zeroed);
//! - `palisade_breaker_calls_total{breaker, outcome=success|failure|slow|ignored}`;
//! - `palisade_breaker_rejections_total{breaker}`;
//! - `palisade_breaker_transitions_total{breaker, from, to}`;
//! - `tracing` events under `palisade::breaker` on every transition, and
//!   [`CircuitBreaker::subscribe`] for transitions as values. Nothing is allocated per call.
//!
//! Metric handles are registered when the breaker is created: install the recorder first.
//!
//! Without the default `layer` feature the crate is only the pure state machine ([`state`],
//! [`decide`]), the policies and the classifiers, and builds without tokio (for edge runtimes;
//! checked in CI).
#![warn(missing_docs)]

#[cfg(feature = "layer")]
mod breaker;
pub mod classify;
pub mod decide;
#[cfg(feature = "redis")]
pub mod fleet;
#[cfg(feature = "layer")]
mod future;
#[cfg(feature = "layer")]
mod keyed;
#[cfg(feature = "layer")]
mod layer;
#[cfg(feature = "layer")]
mod permit;
mod policy;
mod rejection;
#[cfg(feature = "layer")]
mod service;
pub mod state;
#[cfg(feature = "layer")]
mod window;

#[cfg(feature = "layer")]
pub use breaker::{CircuitBreaker, Snapshot, Transition};
pub use classify::{Classify, ClassifyFn, ErrorsAreFailures, GrpcFailures, HttpFailures};
#[cfg(feature = "redis")]
pub use fleet::Fleet;
#[cfg(feature = "layer")]
pub use future::ResponseFuture;
#[cfg(feature = "layer")]
pub use keyed::{BreakerRegistry, KeyedBreaker, KeyedCircuitBreakerLayer, UriAuthority};
#[cfg(feature = "layer")]
pub use layer::CircuitBreakerLayer;
#[cfg(feature = "layer")]
pub use permit::Permit;
pub use policy::{
    BreakerPolicy, BreakerPolicyBuilder, BreakerPolicyConfig, OpenConfig, OpenDuration,
    PolicyError, Window, WindowConfig,
};
pub use rejection::{AsError, CircuitOpen, OnOpen, Respond};
#[cfg(feature = "layer")]
pub use service::Breaker;
pub use state::{Outcome, State};
