//! [`KeyedRegistry`]: one value per key (a breaker per upstream, a pool per dependency),
//! created on first use, at most `max_keys` of them, idle ones evicted first.

use std::{collections::HashMap, fmt, sync::RwLock};

use crate::key::Key;

/// Whether a registry entry may be dropped without losing anything but its history: a closed
/// breaker, a pool with nothing active or queued.
pub trait Idle {
    /// Whether this entry is idle now.
    fn is_idle(&self) -> bool;
}

/// Values by key, bounded: when a new key arrives at the cap, an [idle](Idle) entry makes
/// room — a busy one only if none is idle (whose holders keep their clone; new callers get a
/// fresh value). Lookups of existing keys take a read lock only.
///
/// ```
/// use palisade_core::{key::Key, registry::{Idle, KeyedRegistry}};
///
/// #[derive(Clone)]
/// struct Counter(std::sync::Arc<std::sync::atomic::AtomicU32>);
/// impl Idle for Counter {
///     fn is_idle(&self) -> bool { self.0.load(std::sync::atomic::Ordering::Relaxed) == 0 }
/// }
///
/// let registry = KeyedRegistry::new(2);
/// let make = || Counter(Default::default());
/// let a = registry.get_or_insert_with(&Key::from("a"), make);
/// a.0.store(1, std::sync::atomic::Ordering::Relaxed); // "a" is busy
/// registry.get_or_insert_with(&Key::from("b"), make);
/// registry.get_or_insert_with(&Key::from("c"), make); // evicts idle "b", not busy "a"
/// assert!(registry.contains(&Key::from("a")) && !registry.contains(&Key::from("b")));
/// ```
pub struct KeyedRegistry<V> {
    max_keys: usize,
    // Invariant: at most `max_keys` entries.
    entries: RwLock<HashMap<Key, V>>,
}

impl<V> fmt::Debug for KeyedRegistry<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRegistry")
            .field("max_keys", &self.max_keys)
            .field("len", &self.len())
            .finish()
    }
}

impl<V> KeyedRegistry<V> {
    /// At most `max_keys` (at least 1) entries.
    pub fn new(max_keys: usize) -> Self {
        KeyedRegistry {
            max_keys: max_keys.max(1),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Whether `key` has a value now.
    pub fn contains(&self, key: &Key) -> bool {
        self.read().contains_key(key)
    }

    /// How many entries exist.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether none exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, V>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl<V: Clone + Idle> KeyedRegistry<V> {
    /// The value of `key`, made by `make` (once, even when callers race) if there is none.
    pub fn get_or_insert_with(&self, key: &Key, make: impl FnOnce() -> V) -> V {
        if let Some(found) = self.read().get(key) {
            return found.clone();
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = entries.get(key) {
            return found.clone();
        }
        if entries.len() >= self.max_keys {
            let victim = entries
                .iter()
                .find(|(_, v)| v.is_idle())
                .or_else(|| entries.iter().next())
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                entries.remove(&victim);
            }
        }
        let value = make();
        entries.insert(key.clone(), value.clone());
        value
    }

    /// A clone of every value, for a health endpoint.
    pub fn values(&self) -> Vec<V> {
        self.read().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };

    use super::*;

    #[derive(Clone, Default)]
    struct Entry {
        busy: Arc<AtomicBool>,
    }

    impl Idle for Entry {
        fn is_idle(&self) -> bool {
            !self.busy.load(Ordering::Relaxed)
        }
    }

    fn key(i: usize) -> Key {
        Key::from(format!("k{i}"))
    }

    #[test]
    fn never_more_than_the_cap_and_idle_entries_go_first() {
        let registry = KeyedRegistry::new(3);
        for i in 0..3 {
            let entry = registry.get_or_insert_with(&key(i), Entry::default);
            entry.busy.store(i != 1, Ordering::Relaxed);
        }
        registry.get_or_insert_with(&key(3), Entry::default);
        assert_eq!(registry.len(), 3);
        assert!(!registry.contains(&key(1)), "the idle entry was evicted");
        assert!(registry.contains(&key(0)) && registry.contains(&key(2)));
        // All busy now (k3 too): one busy entry makes room rather than exceeding the cap.
        registry
            .get_or_insert_with(&key(3), Entry::default)
            .busy
            .store(true, Ordering::Relaxed);
        registry.get_or_insert_with(&key(4), Entry::default);
        assert_eq!(registry.len(), 3);
        assert!(registry.contains(&key(4)));
    }

    #[test]
    fn what_it_reports() {
        let registry = KeyedRegistry::new(5);
        assert!(registry.is_empty() && registry.values().is_empty());
        assert_eq!(registry.max_keys(), 5);
        registry.get_or_insert_with(&key(0), Entry::default);
        registry.get_or_insert_with(&key(1), Entry::default);
        assert!(!registry.is_empty());
        assert_eq!(registry.values().len(), 2);
        assert_eq!(
            format!("{registry:?}"),
            "KeyedRegistry { max_keys: 5, len: 2 }"
        );
    }

    #[test]
    fn a_cap_of_zero_still_holds_one() {
        let registry = KeyedRegistry::new(0);
        registry.get_or_insert_with(&key(0), Entry::default);
        assert_eq!((registry.len(), registry.max_keys()), (1, 1));
    }

    #[test]
    fn racing_callers_share_one_value_per_key() {
        let registry = Arc::new(KeyedRegistry::new(16));
        let made = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (registry, made) = (registry.clone(), made.clone());
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let entry = registry.get_or_insert_with(&key(i % 4), || {
                            made.fetch_add(1, Ordering::Relaxed);
                            Entry::default()
                        });
                        drop(entry);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            made.load(Ordering::Relaxed),
            4,
            "one value per key, never two"
        );
    }
}
