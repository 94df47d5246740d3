//! Where responses are stored: [`Store`], with [`MemoryStore`] (bounded by bytes) and, with
//! the `redis` feature, [`RedisStore`] (shared by a fleet: storage, purges and coalescing).

mod bans;
#[cfg(feature = "redis")]
mod codec;
mod either;
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use palisade_core::BackendError;

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;

use crate::{Entry, policy::PolicyConfig};

/// The most variants (responses differing by `Vary`) kept per URI; the oldest goes first.
pub const MAX_VARIANTS: usize = 8;

/// How a purge treats what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeMode {
    /// Delete: the next request goes to the origin.
    Hard,
    /// Mark stale (at the purge time): the next request revalidates, and
    /// stale-while-revalidate / stale-if-error still apply.
    Soft,
}

/// A store of responses by primary key (the target URI), each key holding up to
/// [`MAX_VARIANTS`] variants.
///
/// Every method is bounded in time by the store itself (a Redis store by its timeout); an
/// `Err` makes the layer act as a pass-through for that request, never fail it.
pub trait Store: Clone + Send + Sync + 'static {
    /// Every stored variant of `key`, newest first; a store that keeps entries encoded
    /// derives their directives and lifetimes with the cache's `policy`.
    fn get(
        &self,
        key: &str,
        policy: &PolicyConfig,
    ) -> impl Future<Output = Result<Vec<Arc<Entry>>, BackendError>> + Send;

    /// Stores `entry` under `key`: it replaces the variant with the same selection, and the
    /// oldest variant goes when there are too many. `Ok(false)`: the store declined it (too
    /// large for it).
    fn put(
        &self,
        key: &str,
        entry: Arc<Entry>,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Purges every variant of `key`; how many were purged, when the store knows.
    fn purge_key(
        &self,
        key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<usize>, BackendError>> + Send;

    /// Purges every response tagged `surrogate_key`; how many were purged, when the store
    /// knows (a store that purges by recording the purge, as [`RedisStore`] does, does not).
    fn purge_surrogate_key(
        &self,
        surrogate_key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<usize>, BackendError>> + Send;

    /// Purges everything; how many responses were purged, when the store knows.
    fn purge_all(
        &self,
        mode: PurgeMode,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<usize>, BackendError>> + Send;

    /// Claims, for `lease`, the fetch of `key` from the origin on behalf of every instance
    /// sharing this store: `Some(token)` — this instance fetches, and gives the claim back
    /// with [`release_fetch`](Self::release_fetch); `None` — another instance is fetching,
    /// so wait for its response to appear here. A claim whose holder dies expires with its
    /// lease. A store private to one process always answers `Some` (coalescing within the
    /// process happened before).
    fn claim_fetch(
        &self,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<String>, BackendError>> + Send {
        let _ = (key, lease);
        std::future::ready(Ok(Some(String::new())))
    }

    /// Gives back the claim `token` on `key` (a no-op when it expired or was not ours).
    fn release_fetch(&self, key: &str, token: &str) -> impl Future<Output = ()> + Send {
        let _ = (key, token);
        std::future::ready(())
    }

    /// The bytes the store holds, if it counts them (a process-local store does).
    fn stored_bytes(&self) -> Option<u64> {
        None
    }

    /// How many responses it evicted to stay within its bound, if it counts them.
    fn evictions(&self) -> Option<u64> {
        None
    }

    /// Whether some instance holds a claim on fetching `key`.
    fn fetch_claimed(&self, key: &str) -> impl Future<Output = Result<bool, BackendError>> + Send {
        let _ = key;
        std::future::ready(Ok(false))
    }
}

/// The variants of a key after storing `entry`: the one with the same selection replaced,
/// `entry` first, at most [`MAX_VARIANTS`].
pub(crate) fn with_variant(existing: &[Arc<Entry>], entry: Arc<Entry>) -> Vec<Arc<Entry>> {
    let mut out = Vec::with_capacity(existing.len().min(MAX_VARIANTS) + 1);
    out.push(entry.clone());
    out.extend(
        existing
            .iter()
            .filter(|e| e.selection() != entry.selection())
            .take(MAX_VARIANTS - 1)
            .cloned(),
    );
    out
}
