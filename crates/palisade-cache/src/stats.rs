//! [`Stats`]: what the cache did, counted (also exported as `metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::policy::cache_status::Forward;

/// Counters of one cache, shared by its layers and handles.
#[derive(Debug)]
pub(crate) struct Stats {
    /// `palisade_cache_events_total{cache, event}`, registered once per event so counting
    /// allocates nothing.
    exported: Vec<metrics::Counter>,
    /// `palisade_cache_forwarded_total{cache, reason}`: misses by reason (`uri-miss`,
    /// `vary-miss`, `stale`, `request`, `method`…).
    forwarded: Vec<metrics::Counter>,
    /// `palisade_cache_stored_bytes{cache}` (stores that count their bytes).
    stored_bytes: metrics::Gauge,
    /// `palisade_cache_evictions_total{cache}` (stores that count their evictions).
    evictions: metrics::Counter,
    hits: AtomicU64,
    misses: AtomicU64,
    stale_served: AtomicU64,
    revalidated: AtomicU64,
    stored: AtomicU64,
    not_stored: AtomicU64,
    coalesced: AtomicU64,
    bypassed: AtomicU64,
    purges: AtomicU64,
    store_errors: AtomicU64,
}

/// What happened to one request or store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Event {
    Hit,
    Miss,
    StaleServed,
    Revalidated,
    Stored,
    NotStored,
    Coalesced,
    Bypassed,
    Purge,
    StoreError,
}

const EVENTS: [Event; 10] = [
    Event::Hit,
    Event::Miss,
    Event::StaleServed,
    Event::Revalidated,
    Event::Stored,
    Event::NotStored,
    Event::Coalesced,
    Event::Bypassed,
    Event::Purge,
    Event::StoreError,
];

impl Event {
    fn label(self) -> &'static str {
        match self {
            Event::Hit => "hit",
            Event::Miss => "miss",
            Event::StaleServed => "stale_served",
            Event::Revalidated => "revalidated",
            Event::Stored => "stored",
            Event::NotStored => "not_stored",
            Event::Coalesced => "coalesced",
            Event::Bypassed => "bypassed",
            Event::Purge => "purge",
            Event::StoreError => "store_error",
        }
    }
}

impl Stats {
    pub(crate) fn new(cache: &str) -> Self {
        let exported = EVENTS
            .iter()
            .map(|e| metrics::counter!("palisade_cache_events_total", "cache" => cache.to_owned(), "event" => e.label()))
            .collect();
        let forwarded = Forward::ALL
            .iter()
            .map(|why| metrics::counter!("palisade_cache_forwarded_total", "cache" => cache.to_owned(), "reason" => why.token()))
            .collect();
        let zero = || AtomicU64::new(0);
        Stats {
            exported,
            forwarded,
            stored_bytes: metrics::gauge!("palisade_cache_stored_bytes", "cache" => cache.to_owned()),
            evictions: metrics::counter!("palisade_cache_evictions_total", "cache" => cache.to_owned()),
            hits: zero(),
            misses: zero(),
            stale_served: zero(),
            revalidated: zero(),
            stored: zero(),
            not_stored: zero(),
            coalesced: zero(),
            bypassed: zero(),
            purges: zero(),
            store_errors: zero(),
        }
    }

    pub(crate) fn record(&self, event: Event) {
        let counter = match event {
            Event::Hit => &self.hits,
            Event::Miss => &self.misses,
            Event::StaleServed => &self.stale_served,
            Event::Revalidated => &self.revalidated,
            Event::Stored => &self.stored,
            Event::NotStored => &self.not_stored,
            Event::Coalesced => &self.coalesced,
            Event::Bypassed => &self.bypassed,
            Event::Purge => &self.purges,
            Event::StoreError => &self.store_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.exported[event as usize].increment(1);
    }

    /// Counts one request that went forward for `why`.
    pub(crate) fn forwarded(&self, why: Forward) {
        self.forwarded[why as usize].increment(1);
    }

    /// Exports what the store says of itself.
    pub(crate) fn store_figures(&self, bytes: Option<u64>, evictions: Option<u64>) {
        if let Some(bytes) = bytes {
            self.stored_bytes.set(bytes as f64);
        }
        if let Some(evictions) = evictions {
            self.evictions.absolute(evictions);
        }
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            stale_served: get(&self.stale_served),
            revalidated: get(&self.revalidated),
            stored: get(&self.stored),
            not_stored: get(&self.not_stored),
            coalesced: get(&self.coalesced),
            bypassed: get(&self.bypassed),
            purges: get(&self.purges),
            store_errors: get(&self.store_errors),
            stored_bytes: None,
            evictions: None,
        }
    }
}

/// A cache's counters at one moment (serde: the edge-proxy's `GET /stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Requests answered from the store without the origin (stale-while-revalidate included).
    pub hits: u64,
    /// Requests with nothing usable stored.
    pub misses: u64,
    /// Stale responses served (stale-while-revalidate, stale-if-error, `max-stale`).
    pub stale_served: u64,
    /// Stored responses the origin confirmed with a 304.
    pub revalidated: u64,
    /// Responses stored.
    pub stored: u64,
    /// Origin responses that could not be stored.
    pub not_stored: u64,
    /// Requests that waited for another one's origin request instead of making their own.
    pub coalesced: u64,
    /// Requests the cache did not handle (unsafe methods, `no-store` requests).
    pub bypassed: u64,
    /// Purge operations.
    pub purges: u64,
    /// Store operations that failed (the request then went through uncached).
    pub store_errors: u64,
    /// The bytes the store holds, when it counts them (the memory store does).
    pub stored_bytes: Option<u64>,
    /// Responses the store evicted to stay within its bound, when it counts them.
    pub evictions: Option<u64>,
}
