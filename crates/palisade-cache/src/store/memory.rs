//! [`MemoryStore`]: responses in this process, bounded by bytes.

use std::{fmt, sync::Arc, time::SystemTime};

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
    cache: Arc<Cache<String, Variants, ByBytes>>,
    bans: Arc<Bans>,
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
        MemoryStore {
            cache: Arc::new(Cache::with_options(
                options,
                ByBytes,
                Default::default(),
                Default::default(),
            )),
            bans: Arc::default(),
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

impl Store for MemoryStore {
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
