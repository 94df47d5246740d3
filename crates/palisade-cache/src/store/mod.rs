//! Where responses are stored: [`Store`], with [`MemoryStore`] (bounded by bytes).

mod memory;

use std::{future::Future, sync::Arc, time::SystemTime};

use palisade_core::BackendError;

pub use memory::MemoryStore;

use crate::Entry;

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
    /// Every stored variant of `key`, newest first.
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<Arc<Entry>>, BackendError>> + Send;

    /// Stores `entry` under `key`: it replaces the variant with the same selection, and the
    /// oldest variant goes when there are too many.
    fn put(
        &self,
        key: &str,
        entry: Arc<Entry>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Purges every variant of `key`; how many were purged.
    fn purge_key(
        &self,
        key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> impl Future<Output = Result<usize, BackendError>> + Send;

    /// Purges every response tagged `surrogate_key`; how many were purged.
    fn purge_surrogate_key(
        &self,
        surrogate_key: &str,
        mode: PurgeMode,
        now: SystemTime,
    ) -> impl Future<Output = Result<usize, BackendError>> + Send;

    /// Purges everything; how many responses were purged.
    fn purge_all(
        &self,
        mode: PurgeMode,
        now: SystemTime,
    ) -> impl Future<Output = Result<usize, BackendError>> + Send;
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
