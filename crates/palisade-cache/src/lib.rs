//! An RFC 9111 **shared** HTTP cache as a tower layer — for reverse proxies, edge services and
//! any `Service<http::Request<B>>` — that takes freshness from the responses' own headers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use palisade_cache::{HttpCache, MemoryStore};
//! use tower::{Layer, ServiceExt};
//!
//! let cache = HttpCache::new(MemoryStore::new(64 << 20)).name("edge");
//! let origin = tower::service_fn(|_req: Request<Full<Bytes>>| async {
//!     let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
//!     let headers = response.headers_mut();
//!     headers.insert("cache-control", "max-age=60, stale-while-revalidate=30".parse().unwrap());
//!     headers.insert("surrogate-key", "greetings".parse().unwrap());
//!     Ok::<_, Infallible>(response)
//! });
//! let svc = cache.layer().layer(origin);
//! let get = || Request::get("http://example.com/hello").body(Full::default()).unwrap();
//! svc.clone().oneshot(get()).await.unwrap();                 // fwd=uri-miss; stored
//! let hit = svc.clone().oneshot(get()).await.unwrap();
//! assert!(hit.headers()["cache-status"].to_str().unwrap().starts_with("edge; hit"));
//! // Purge by tag (soft: stale now, so stale-while-revalidate still answers at once).
//! cache.purge_surrogate_key("greetings", palisade_cache::PurgeMode::Soft).await.unwrap();
//! # }
//! ```
//!
//! # What it implements
//!
//! - **RFC 9111 as a shared cache**: storable methods and statuses (heuristically cacheable
//!   ones included), `no-store`, `private` (also `private="field"`), `no-cache` (also with
//!   field names), `must-revalidate`, `proxy-revalidate`, `must-understand`, `s-maxage` over
//!   `max-age` over `Expires`, `Age` (§4.2.3), heuristic freshness only where allowed
//!   (`Last-Modified`, 10 %, capped), request `max-age` / `max-stale` / `min-fresh` /
//!   `no-cache` / `no-store` / `only-if-cached` (504), `Pragma: no-cache`, `Authorization`
//!   (§3.5), `Vary` (with `*`, normalised values), conditional revalidation (`ETag` →
//!   `If-None-Match`, `Last-Modified` → `If-Modified-Since`) and 304 freshening (§4.3.4),
//!   answering clients' own preconditions with 304, `HEAD` served from stored `GET`s, and
//!   invalidation after unsafe methods (§4.4). Malformed directives and dates are read as the
//!   RFC prescribes (invalid freshness is stale, an invalid `Expires` is in the past).
//! - **RFC 5861**: `stale-while-revalidate` (stale served at once, one background
//!   revalidation per URI) and `stale-if-error` (stale served when the origin fails or
//!   answers 500/502/503/504), both suppressed where stale is forbidden.
//! - **RFC 9213** targeted fields: `CDN-Cache-Control` (and your own, e.g.
//!   `Palisade-Cache-Control`, first) replace `Cache-Control` and `Expires` for this cache.
//! - **RFC 9211** `Cache-Status` on every response: `hit`, `fwd=uri-miss|vary-miss|miss|
//!   stale|request|method`, `fwd-status`, `ttl`, `stored`, `collapsed`, `detail`.
//! - **Request coalescing**: concurrent misses for one URI make one origin request; the others
//!   wait (at most [`HttpCache::coalesce_wait`]) and are served what it stored — or go to the
//!   origin themselves when it turned out not storable.
//! - **Purge** by URL, by surrogate key (`Surrogate-Key`), or all; hard (delete) or soft
//!   (mark stale, so stale-while-revalidate and stale-if-error still apply).
//! - A store that fails makes the layer a pass-through for that request, never an error.
//! - **The origin side**: [`CdnHeadersLayer`] stamps per-route [`CdnPolicy`]s (from code or
//!   TOML) — `Cache-Control`, `CDN-Cache-Control`, `Surrogate-Key`, `Vary` — on a service's own
//!   responses, for the caches in front of it.
//!
//! The rules live in [`policy`], pure functions with no tokio, clock or I/O; without the
//! default `layer` feature the crate is only those rules, [`Entry`] and the origin-side
//! [`CdnHeadersLayer`], and builds without tokio (for edge runtimes).
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `policy/` | the pure rules (see its table) |
//! | `cache.rs` | [`HttpCache`]: store, settings, flights, counters; purges |
//! | `layer.rs`, `service.rs` | [`CacheLayer`], its service [`Caching`] |
//! | `flow/` | one request: lookup, then serve, revalidate, coalesce, forward, store (see its table) |
//! | `serve.rs` | responses built from stored entries; `Cache-Status` |
//! | `entry.rs` | [`Entry`], a stored response |
//! | `store/` | the [`Store`] trait, [`MemoryStore`] with its recent purges (`bans.rs`), `RedisStore` (feature `redis`) with its codec and scripts (`scripts/*.lua`), `Either` |
//! | `cdn/` | the origin side: [`CdnPolicy`] and [`CdnHeadersLayer`] |
//! | `coalesce.rs` | in-process request coalescing |
//! | `clock.rs`, `stats.rs` | [`Clock`], [`CacheStats`] |
//!
//! # Observability
//!
//! `palisade_cache_events_total{cache, event}` (`hit`, `miss`, `stale_served`,
//! `revalidated`, `stored`, `not_stored`, `coalesced`, `bypassed`, `purge`, `store_error`),
//! `palisade_cache_forwarded_total{cache, reason}` (misses by reason: `uri-miss`,
//! `vary-miss`, `stale`, `request`, `method`, `bypass`, `miss`),
//! `palisade_cache_stored_bytes{cache}` and `palisade_cache_evictions_total{cache}` (stores
//! that count them: the memory store), the same numbers from [`HttpCache::stats`], and
//! `tracing` warnings when the store fails.
#![warn(missing_docs)]

#[cfg(feature = "layer")]
mod cache;
mod cdn;
#[cfg(feature = "layer")]
mod clock;
#[cfg(feature = "layer")]
mod coalesce;
mod entry;
#[cfg(feature = "layer")]
mod flow;
#[cfg(feature = "layer")]
mod layer;
pub mod policy;
#[cfg(feature = "layer")]
mod serve;
#[cfg(feature = "layer")]
mod service;
#[cfg(feature = "layer")]
mod stats;
#[cfg(feature = "layer")]
pub mod store;

#[cfg(feature = "layer")]
pub use cache::{DEFAULT_MAX_OBJECT_BYTES, HttpCache};
pub use cdn::{CdnFuture, CdnHeaders, CdnHeadersLayer, CdnPolicy, CdnPolicyError, WithCdnHeaders};
#[cfg(feature = "layer")]
pub use clock::Clock;

/// A response extension: the inner service answered for an origin it could not reach (a
/// proxy's own 502/504), not with the origin's answer — so the cache may serve a stale stored
/// response instead ([`HttpCache::stale_when_disconnected`]).
#[cfg(feature = "layer")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OriginUnreachable;
pub use entry::Entry;
#[cfg(feature = "layer")]
pub use layer::CacheLayer;
#[cfg(feature = "layer")]
pub use service::{Caching, ResponseFuture};
#[cfg(feature = "layer")]
pub use stats::CacheStats;
#[cfg(feature = "layer")]
pub use store::{MemoryStore, PurgeMode, Store};
