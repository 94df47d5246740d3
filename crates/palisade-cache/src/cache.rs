//! [`HttpCache`]: one cache — its store, its rules, its flights and counters — shared by the
//! layers that serve from it and the code that purges it.

use std::{fmt, sync::Arc, time::Duration};

use http::{HeaderName, Uri};
use palisade_core::BackendError;

use crate::{
    CacheLayer, Clock,
    coalesce::Flights,
    policy::{PolicyConfig, primary_key},
    stats::{CacheStats, Event, Stats},
    store::{PurgeMode, Store},
};

/// An RFC 9111 shared cache over a [`Store`]: build one, hand [`layer`](Self::layer)s of it to
/// your routers or proxy, and keep a clone to purge it. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use palisade_cache::{HttpCache, MemoryStore};
///
/// let cache = HttpCache::new(MemoryStore::new(64 << 20))
///     .name("edge")                              // Cache-Status: edge; hit; ttl=…
///     .max_object_size(1 << 20)                  // larger responses stream through uncached
///     .coalesce_wait(Duration::from_secs(5));    // followers of a slow miss wait this long
/// let layer = cache.layer();
/// # let _ = layer;
/// ```
pub struct HttpCache<St> {
    pub(crate) inner: Arc<Inner<St>>,
}

pub(crate) struct Inner<St> {
    pub(crate) store: St,
    pub(crate) config: CacheConfig,
    pub(crate) flights: Arc<Flights>,
    pub(crate) stats: Stats,
}

/// The settings of an [`HttpCache`].
#[derive(Debug, Clone)]
pub(crate) struct CacheConfig {
    pub(crate) policy: PolicyConfig,
    pub(crate) name: String,
    pub(crate) max_object_bytes: usize,
    pub(crate) coalesce_wait: Duration,
    pub(crate) stale_when_disconnected: Duration,
    pub(crate) store_set_cookie: bool,
    pub(crate) clock: Clock,
}

impl<St> Clone for HttpCache<St> {
    fn clone(&self) -> Self {
        HttpCache {
            inner: self.inner.clone(),
        }
    }
}

impl<St> fmt::Debug for HttpCache<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("name", &self.inner.config.name)
            .field("max_object_bytes", &self.inner.config.max_object_bytes)
            .finish_non_exhaustive()
    }
}

/// The default [`HttpCache::max_object_size`]: 8 MiB.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 8 << 20;

impl<St: Store> HttpCache<St> {
    /// A cache named `palisade` over `store`: responses up to 8 MiB stored, followers of a miss
    /// wait up to 10 s, `CDN-Cache-Control` obeyed over `Cache-Control`.
    pub fn new(store: St) -> Self {
        Self::build(
            store,
            CacheConfig {
                policy: PolicyConfig::default(),
                name: "palisade".to_owned(),
                max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
                coalesce_wait: Duration::from_secs(10),
                stale_when_disconnected: Duration::from_secs(24 * 3600),
                store_set_cookie: true,
                clock: Clock::system(),
            },
        )
    }

    fn build(store: St, config: CacheConfig) -> Self {
        HttpCache {
            inner: Arc::new(Inner {
                stats: Stats::new(&config.name),
                store,
                config,
                flights: Arc::new(Flights::default()),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut CacheConfig)) -> Self {
        let mut config = self.inner.config.clone();
        change(&mut config);
        Self::build(self.inner.store.clone(), config)
    }

    /// The name this cache gives itself in `Cache-Status` (default `palisade`).
    pub fn name(self, name: &str) -> Self {
        self.with(|c| c.name = name.to_owned())
    }

    /// Responses with bodies larger than this are streamed through, not stored (default
    /// 8 MiB). Memory per request stays bounded by it.
    pub fn max_object_size(self, bytes: usize) -> Self {
        self.with(|c| c.max_object_bytes = bytes)
    }

    /// How long requests that find another request fetching the same URI wait for it before
    /// going to the origin themselves (default 10 s).
    pub fn coalesce_wait(self, wait: Duration) -> Self {
        self.with(|c| c.coalesce_wait = wait)
    }

    /// How stale a stored response may be served when the origin cannot be reached — the
    /// inner service failed, or answered with [`OriginUnreachable`](crate::OriginUnreachable) in its response's
    /// extensions — and nothing forbids serving it stale (`must-revalidate`, `no-cache`,
    /// `proxy-revalidate`, `s-maxage`): RFC 9111 §4.2.4 lets a disconnected cache do so.
    /// Default one day; zero: only within `stale-if-error`.
    pub fn stale_when_disconnected(self, at_most: Duration) -> Self {
        self.with(|c| c.stale_when_disconnected = at_most)
    }

    /// Whether responses carrying `Set-Cookie` may be stored (and the cookie replayed to every
    /// client that gets the stored response). RFC 9111 allows it, and the default follows the
    /// RFC; most CDNs refuse — `false` does too, for origins that set session cookies on
    /// otherwise cacheable pages.
    pub fn store_set_cookie(self, store: bool) -> Self {
        self.with(|c| c.store_set_cookie = store)
    }

    /// Targeted fields this cache obeys instead of `Cache-Control` (RFC 9213), first match
    /// wins — e.g. `[palisade-cache-control, cdn-cache-control]`. Default: `CDN-Cache-Control`;
    /// empty: `Cache-Control` only.
    pub fn targets(self, targets: Vec<HeaderName>) -> Self {
        self.with(|c| c.policy.targets = targets)
    }

    /// The heuristic lifetime for responses with a `Last-Modified` but no explicit expiry:
    /// `fraction` of their age, at most `cap` (default 10 %, one day).
    pub fn heuristic(self, fraction: f64, cap: Duration) -> Self {
        self.with(|c| {
            c.policy.heuristic_fraction = fraction.clamp(0.0, 1.0);
            c.policy.heuristic_cap = cap;
        })
    }

    /// Where the cache reads the time (default the system clock; [`Clock::tokio`] in tests).
    pub fn clock(self, clock: Clock) -> Self {
        self.with(|c| c.clock = clock)
    }

    /// A layer serving from this cache.
    pub fn layer(&self) -> CacheLayer<St> {
        CacheLayer::new(self.clone())
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.inner.store
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let store = &self.inner.store;
        CacheStats {
            stored_bytes: store.stored_bytes(),
            evictions: store.evictions(),
            ..self.inner.stats.snapshot()
        }
    }

    /// Purges the responses stored for `url` (absolute, as clients request it:
    /// `http://host/path?query`); how many were purged, when the store knows. Every purge is
    /// visible to every instance sharing the store when it returns.
    pub async fn purge_url(
        &self,
        url: &Uri,
        mode: PurgeMode,
    ) -> Result<Option<usize>, BackendError> {
        let key = primary_key(url, None);
        let now = self.inner.config.clock.now();
        self.inner.stats.record(Event::Purge);
        self.inner.store.purge_key(&key, mode, now).await
    }

    /// Purges every response tagged `surrogate_key` (from the origin's `Surrogate-Key`).
    pub async fn purge_surrogate_key(
        &self,
        surrogate_key: &str,
        mode: PurgeMode,
    ) -> Result<Option<usize>, BackendError> {
        let now = self.inner.config.clock.now();
        self.inner.stats.record(Event::Purge);
        self.inner
            .store
            .purge_surrogate_key(surrogate_key, mode, now)
            .await
    }

    /// Purges everything.
    pub async fn purge_all(&self, mode: PurgeMode) -> Result<Option<usize>, BackendError> {
        let now = self.inner.config.clock.now();
        self.inner.stats.record(Event::Purge);
        self.inner.store.purge_all(mode, now).await
    }
}
