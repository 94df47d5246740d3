//! Idempotency for tower services: each `Idempotency-Key` runs once, and every retry gets the
//! same answer — across replicas, concurrently, after a timeout.
//!
//! ```
//! use axum::{Router, body::Body, routing::post};
//! use palisade_core::key::Header;
//! use palisade_idempotency::{IdempotencyLayer, MemoryStore};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/payments", post(|| async { (http::StatusCode::CREATED, "payment 1") }))
//!     .route_layer(
//!         IdempotencyLayer::new(MemoryStore::new())
//!             .scope(Header::new("x-api-key")) // one client never sees another's responses
//!             .require_key(),
//!     );
//!
//! let pay = || {
//!     http::Request::post("/payments")
//!         .header("x-api-key", "client-1")
//!         .header("idempotency-key", "\"order-7:charge\"")
//!         .body(Body::from(r#"{"amount_cents":500}"#))
//!         .unwrap()
//! };
//! let first = app.clone().oneshot(pay()).await.unwrap();
//! assert_eq!(first.status(), 201);
//! let retry = app.clone().oneshot(pay()).await.unwrap();
//! assert_eq!(retry.status(), 201);
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! # }
//! ```
//!
//! # What it does
//!
//! [`IdempotencyLayer`] claims the key atomically with a lease before the handler runs, renews
//! the lease while it runs, stores the response (2xx and 3xx; never 5xx) and replays it with
//! `Idempotent-Replayed: true`. A retry of a request still running gets 409 (or waits, if
//! configured); the same key with a different request gets 422; a missing (when required) or
//! malformed key gets 400 — all RFC 9457 problem+json, per the IETF Idempotency-Key draft.
//! A 4xx (not stored) releases its claim, so the client's corrected retry runs. When the
//! outcome is **unknown** — a 5xx, an error, a panic, a request dropped mid-handler — the
//! handler's effect may have happened, so by default the claim is kept until its lease ends
//! ([`UnknownOutcome`]); the handler keys its effect by the [`IdempotencyRecord`] in its
//! request extensions, so a retry after the lease finds the effect instead of repeating it, and
//! marks a 5xx that applied nothing with [`NotApplied`] to release the key at once.
//!
//! [`Deduplicator`] does the same for message consumers: `process_once(id, handler)`.
//!
//! # Stores
//!
//! | store | shared by replicas | survives a restart | round trips (claim / complete) |
//! |---|---|---|---|
//! | [`MemoryStore`] | no | no | none |
//! | [`RedisStore`] (feature `redis`) | yes | only with Redis persistence | 1 / 1 |
//! | [`PostgresStore`] (feature `postgres`) | yes | yes | 1 (2 on conflict) / 1 |
//! | [`DualStore`] (both) | yes | yes | replays 1 (Redis); first execution 2 / 2 |
//!
//! Every store is a twin of one pure state machine, [`state`]: the memory store runs it, and a
//! differential test runs random operation sequences through it and through the Redis scripts
//! (both clients) and the PostgreSQL statements, comparing every answer.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `layer.rs`, `policy.rs` | [`IdempotencyLayer`] and its settings ([`InFlight`]) |
//! | `service.rs`, `future.rs`, `journey.rs` | the service (what needs no store is decided in `call`), its [`ResponseFuture`] (pass-through and refusals unboxed), and one keyed request's way through it |
//! | `capture.rs`, `claim_guard.rs` | the response kept and stored; the claim settled however the request ends |
//! | [`state`] | the record's pure state machine |
//! | [`store`] | memory, Redis (`scripts/*.lua`), PostgreSQL and dual stores |
//! | [`dedup`] | [`Deduplicator`] for message consumers |
//! | `fingerprint.rs`, [`header`], `record.rs`, `rejection.rs`, `body.rs` | request fingerprints, the header, stored responses, refusals, bodies |
//!
//! # Guarantees, honestly
//!
//! - Of concurrent requests with one key, exactly one runs while its claim is held; the claim
//!   is held until the response is stored or the lease (renewed while the handler runs)
//!   runs out. A handler that outlives its lease *without renewing* — the instance froze for
//!   longer than the lease — can overlap a retry: the lease is the price of not blocking a
//!   key forever after a crash. Keep the lease well above your longest pause.
//! - A response that could not be stored (store down after the handler ran) is still sent,
//!   and storing it is retried in the background while the claim is still ours (two thirds of
//!   a lease). If the store stays unreachable longer, the claim runs out and a retry after that
//!   runs again: key the handler's own writes by the [`IdempotencyRecord`] (a unique
//!   constraint on the payment) where a second run would be costly.
//! - A claim whose reply came too late (the store timed out, but the claim may have landed) is
//!   released in the background with its owner token, so the client's retry is not refused
//!   for a whole lease by a claim nobody holds.
//! - After an unknown outcome (see [`UnknownOutcome`]) a key is refused with 409 for at most
//!   one lease; then a retry runs again, and only a handler that keys its effect is safe
//!   from a second effect.
//!
//! # Metrics
//!
//! `palisade_idempotency_requests_total{outcome}` with outcome `executed`, `replayed`,
//! `in_flight`, `key_reused`, `not_replayable`, `bad_request`, `bypassed`, `not_stored`,
//! `failed`, `unknown`, `backend_error`; `palisade_idempotency_fast_store_errors_total` (dual store);
//! `palisade_backend_errors_total{layer="idempotency"}` from the backend policy.
//!
//! # Features
//! - `redis` (default): [`RedisStore`].
//! - `postgres`: [`PostgresStore`]; with `redis`, [`DualStore`].
//! - `grpc`: render refusals as gRPC statuses (`palisade_core::responder::Grpc`).
#![warn(missing_docs)]

mod body;
mod capture;
mod claim_guard;
mod client_key;
pub mod dedup;
mod fingerprint;
mod future;
pub mod header;
mod journey;
mod json;
mod layer;
mod metrics;
mod outcome;
mod policy;
mod record;
mod rejection;
mod service;
pub mod state;
pub mod store;

pub use body::IdempotencyBody;
pub use body::InnerBody;
pub use client_key::idempotency_key_for;
pub use dedup::{DedupError, Deduplicator, Processed};
pub use fingerprint::Fingerprint;
pub use future::ResponseFuture;
pub use layer::IdempotencyLayer;
pub use outcome::{IdempotencyRecord, NotApplied, UnknownOutcome};
pub use policy::InFlight;
pub use record::{CorruptRecord, StoredResponse};
pub use rejection::IdempotencyRejection;
pub use service::Idempotency;
#[cfg(all(feature = "redis", feature = "postgres"))]
pub use store::DualStore;
#[cfg(feature = "postgres")]
pub use store::PostgresStore;
#[cfg(feature = "redis")]
pub use store::RedisStore;
pub use store::{IdempotencyStore, MemoryStore};
