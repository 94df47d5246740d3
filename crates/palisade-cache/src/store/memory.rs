//! [`MemoryStore`]: responses in this process, bounded by bytes.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use palisade_core::BackendError;
use quick_cache::{Weighter, sync::Cache};

use super::{
    PurgeMode, Store,
    bans::{Bans, Verdict},
    with_variant,
};
use crate::{Entry, policy::PolicyConfig};

type Variants = Arc<[Arc<Entry>]>;

#[derive(Clone)]
struct ByBytes;

/// Counts what leaves the cache through its lifecycle: evictions to stay within its bound —
/// and, since quick_cache 0.7, the old value of every replacement (subtracted by the store,
/// which counts its own replacements).
#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl quick_cache::Lifecycle<String, Variants> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: String, _: Variants) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Weighter<String, Variants> for ByBytes {
    fn weight(&self, key: &String, variants: &Variants) -> u64 {
        let entries: usize = variants.iter().map(|e| e.weight()).sum();
        (key.len() + entries) as u64
    }
}

/// Responses held in this process, at most `max_bytes` of them (bodies, fields and
/// bookkeeping, as [`Entry::weight`] counts), the least useful evicted first (S3-FIFO, from
/// `quick_cache`: scan-resistant, no background thread). Cheap to clone: clones share the
/// responses.
///
/// ```
/// use palisade_cache::MemoryStore;
///
/// let store = MemoryStore::new(64 << 20); // 64 MiB
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: Arc<Cache<String, Variants, ByBytes, quick_cache::DefaultHashBuilder, CountEvictions>>,
    evictions: CountEvictions,
    replacements: Arc<AtomicU64>,
    bans: Arc<Bans>,
    /// Fetch claims of the caches sharing this store: key → (token, lease end).
    claims:
        Arc<std::sync::Mutex<std::collections::HashMap<String, (String, tokio::time::Instant)>>>,
}

impl MemoryStore {
    /// A store of at most `max_bytes`.
    ///
    /// The store is sharded for concurrency, and one URI's variants must fit one shard: shards
    /// are at least 64 MiB (room for [`MAX_VARIANTS`](super::MAX_VARIANTS) responses of the
    /// default 8 MiB limit), so a store under 128 MiB has one shard.
    pub fn new(max_bytes: u64) -> Self {
        // quick_cache sizes its tables from an estimate of the item count: assume ~8 KiB each.
        let estimated_items = (max_bytes / 8192).clamp(16, 1 << 20) as usize;
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get() * 4);
        let shards = ((max_bytes / (64 << 20)) as usize).clamp(1, parallelism);
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(estimated_items)
            .weight_capacity(max_bytes.max(1))
            .shards(shards)
            .build()
            .expect("a positive capacity and shard count");
        let evictions = CountEvictions::default();
        MemoryStore {
            cache: Arc::new(Cache::with_options(
                options,
                ByBytes,
                Default::default(),
                evictions.clone(),
            )),
            evictions,
            replacements: Arc::default(),
            bans: Arc::default(),
            claims: Arc::default(),
        }
    }

    /// How many URIs have responses stored.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The bytes held, as [`Entry::weight`] counts them.
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    fn purge_where(
        &self,
        mode: PurgeMode,
        now: SystemTime,
        matches: impl Fn(&Entry) -> bool,
    ) -> usize {
        let mut purged = 0;
        let keys: Vec<String> = self
            .cache
            .iter()
            .filter(|(_, variants)| variants.iter().any(|e| matches(e)))
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            purged += self.purge_variants(&key, mode, now, &matches);
        }
        purged
    }

    fn purge_variants(
        &self,
        key: &str,
        mode: PurgeMode,
        now: SystemTime,
        matches: &impl Fn(&Entry) -> bool,
    ) -> usize {
        let Some(variants) = self.cache.get(key) else {
            return 0;
        };
        let purged = variants.iter().filter(|e| matches(e)).count();
        let kept: Vec<Arc<Entry>> = variants
            .iter()
            .filter_map(|e| match (matches(e), mode) {
                (false, _) => Some(e.clone()),
                (true, PurgeMode::Soft) => Some(Arc::new(e.purged(now))),
                (true, PurgeMode::Hard) => None,
            })
            .collect();
        if kept.is_empty() {
            self.cache.remove(key);
        } else {
            self.replacements.fetch_add(1, Ordering::Relaxed);
            self.cache.insert(key.to_owned(), kept.into());
        }
        purged
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("uris", &self.len())
            .field("bytes", &self.bytes())
            .field("max_bytes", &self.cache.capacity())
            .finish()
    }
}

impl MemoryStore {
    fn claims(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (String, tokio::time::Instant)>>
    {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Several caches may share one memory store (one `HttpCache` per router, say): fetch claims
/// coalesce their misses as they coalesce a fleet's on Redis. Claims are bounded by the keys
/// being fetched at once, and expire with their lease.
impl Store for MemoryStore {
    async fn claim_fetch(
        &self,
        key: &str,
        lease: std::time::Duration,
    ) -> Result<Option<String>, BackendError> {
        let now = tokio::time::Instant::now();
        let mut claims = self.claims();
        if claims.get(key).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        claims.retain(|_, (_, until)| *until > now);
        let token = format!("{:016x}", palisade_core::random::u64());
        claims.insert(key.to_owned(), (token.clone(), now + lease));
        Ok(Some(token))
    }

    async fn release_fetch(&self, key: &str, token: &str) {
        let mut claims = self.claims();
        if claims.get(key).is_some_and(|(t, _)| t == token) {
            claims.remove(key);
        }
    }

    async fn fetch_claimed(&self, key: &str) -> Result<bool, BackendError> {
        let now = tokio::time::Instant::now();
        Ok(self
            .claims()
            .get(key)
            .is_some_and(|(_, until)| *until > now))
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(self.bytes())
    }

    fn evictions(&self) -> Option<u64> {
        let left = self.evictions.0.load(Ordering::Relaxed);
        Some(left.saturating_sub(self.replacements.load(Ordering::Relaxed)))
    }

    async fn get(&self, key: &str, _: &PolicyConfig) -> Result<Vec<Arc<Entry>>, BackendError> {
        Ok(self.cache.get(key).map(|v| v.to_vec()).unwrap_or_default())
    }

    async fn put(&self, key: &str, entry: Arc<Entry>) -> Result<bool, BackendError> {
        // A fetch that was in flight when a purge ran must not store the purged response back.
        let entry = match self.bans.verdict(key, &entry) {
            Verdict::Keep => entry,
            Verdict::Stale(at) => Arc::new(entry.purged(at)),
            Verdict::Drop => return Ok(false),
        };
        let existing = self.cache.get(key);
        let variants: Variants = with_variant(existing.as_deref().unwrap_or(&[]), entry).into();
        // quick_cache admits nothing heavier than (nearly) one shard: say so rather than
        // claim it was stored.
        if ByBytes.weight(&String::new(), &variants) + key.len() as u64
            > self.cache.shard_capacity() * 9 / 10
        {
            return Ok(false);
        }
        if existing.is_some() {
            self.replacements.fetch_add(1, Ordering::Relaxed);
        }
        self.cache.insert(key.to_owned(), variants);
        Ok(true)
    }

    async fn purge_key(
        &self,
        key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        self.bans.url(key, mode, now);
        Ok(Some(self.purge_variants(key, mode, now, &|_| true)))
    }

    async fn purge_surrogate_key(
        &self,
        surrogate_key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        self.bans.tag(surrogate_key, mode, now);
        Ok(Some(self.purge_where(mode, now, |e| {
            e.surrogate_keys().iter().any(|k| k == surrogate_key)
        })))
    }

    async fn purge_all(
        &self,
        mode: PurgeMode,
        now: SystemTime,
    ) -> Result<Option<usize>, BackendError> {
        self.bans.all(mode, now);
        Ok(Some(self.purge_where(mode, now, |_| true)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::policy::{PolicyConfig, vary::Selection};

    fn entry(body: usize) -> Arc<Entry> {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", "max-age=60".parse().unwrap());
        let now = SystemTime::now();
        Arc::new(Entry::new(
            StatusCode::OK,
            headers,
            Bytes::from(vec![b'x'; body]),
            now - Duration::from_millis(1),
            now,
            Selection::default(),
            None,
            &PolicyConfig::default(),
        ))
    }

    #[tokio::test]
    async fn stays_within_its_bytes_and_counts_evictions_not_replacements() {
        let store = MemoryStore::new(64 * 1024);
        for _ in 0..10 {
            assert!(store.put("same", entry(1000)).await.unwrap());
        }
        assert_eq!(store.evictions(), Some(0), "replacing a key evicts nothing");
        for i in 0..200 {
            store.put(&format!("k{i}"), entry(1000)).await.unwrap();
        }
        assert!(store.bytes() <= 64 * 1024, "{}", store.bytes());
        assert!(store.evictions().unwrap() > 100, "{:?}", store.evictions());
        assert!(
            !store.put("huge", entry(100 * 1024)).await.unwrap(),
            "declined, not claimed"
        );
    }
}
