use std::{
    collections::HashMap,
    fmt,
    hash::BuildHasher,
    sync::{Arc, Mutex},
};

use palisade_core::{BackendError, key::Key};
use tokio::time::Instant;

use super::{Checked, Mode, RateLimitStore};
use crate::{
    Decision, Policy,
    algorithm::{self, LimitState, Micros, Step, Update},
    policy::MAX_LIMITS,
};

/// Rate-limit state in this process's memory: the same algorithms as Redis, for one instance.
///
/// **Per process, not distributed**: with N instances behind a load balancer each admits the
/// full quota, N times in all. Use it for development, tests and single-instance services; use
/// [`RedisStore`](crate::RedisStore) for a limit shared by a fleet.
///
/// Concurrent: keys are spread over mutex-guarded shards, and all limits of one key live in
/// one entry, so a multi-limit check is atomic under one short lock. Time comes from
/// `tokio::time`, so tests can pause it.
///
/// Memory stays bounded: an entry expires once every limit in it is fully restored — when
/// forgetting it changes no decision — and is dropped by a sweep a second later. Each shard
/// sweeps as time passes (every second) or when it has doubled since its last sweep, so a
/// stream of never-repeated keys costs at most the keys seen within the longest window plus
/// about two seconds.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Key, Entry, foldhash::fast::RandomState>,
    /// Sweep no earlier than this (µs since the store's epoch)…
    next_sweep: Micros,
    /// …unless the shard has grown past this many entries.
    sweep_above: usize,
}

/// The state of every limit (of any policy) one key has.
struct Entry {
    limits: Slots,
    /// After this instant every limit is fully restored and the entry can go.
    expires_at: Micros,
}

impl Entry {
    /// Records an admitted request: the limit in `slot` (`usize::MAX`: new, added under
    /// `namespace`) takes `update`, and the entry lives at least until `expires_at`.
    fn admit(&mut self, expires_at: Micros, slot: usize, namespace: &Arc<str>, update: Update) {
        self.expires_at = self.expires_at.max(expires_at);
        let slot = if slot == usize::MAX {
            self.limits.push(namespace.clone())
        } else {
            slot
        };
        update.apply(self.limits.state_mut(slot));
    }
}

/// `(namespace, state)` of each limit a key has: few per key, so a list beats a map, and the
/// first lives inline — most keys see one single-limit policy and then cost no allocation.
#[derive(Default)]
struct Slots {
    first: Option<Slot>,
    rest: Vec<Slot>,
}

type Slot = (Arc<str>, Option<LimitState>);

impl Slots {
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.first.iter_mut().chain(&mut self.rest)
    }

    fn position(&self, namespace: &Arc<str>) -> Option<usize> {
        let same = |(have, _): &Slot| Arc::ptr_eq(have, namespace) || have == namespace;
        match &self.first {
            Some(first) if same(first) => Some(0),
            _ => self.rest.iter().position(same).map(|i| i + 1),
        }
    }

    fn slot(&self, slot: usize) -> Option<&Slot> {
        if slot == 0 {
            self.first.as_ref()
        } else {
            self.rest.get(slot - 1)
        }
    }

    /// The state in `slot` (`usize::MAX`: none).
    fn state(&self, slot: usize) -> Option<&LimitState> {
        self.slot(slot).and_then(|(_, state)| state.as_ref())
    }

    fn state_mut(&mut self, slot: usize) -> &mut Option<LimitState> {
        let slot = if slot == 0 {
            self.first.as_mut()
        } else {
            self.rest.get_mut(slot - 1)
        };
        &mut slot.expect("slot exists").1
    }

    /// Adds a limit; returns its slot.
    fn push(&mut self, namespace: Arc<str>) -> usize {
        if self.first.is_none() {
            self.first = Some((namespace, None));
            0
        } else {
            self.rest.push((namespace, None));
            self.rest.len()
        }
    }
}

/// How often a shard sweeps (µs), at most, unless it has doubled.
const SWEEP_EVERY: Micros = 1_000_000;
/// How long an entry outlives its expiry before a sweep drops it (µs). An expired entry reads
/// as "never seen", so keeping it changes no decision; the grace spares busy keys, whose
/// state often lapses between requests, from being freed and reallocated over and over.
const IDLE_GRACE: Micros = 1_000_000;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let shards = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .saturating_mul(4)
            .next_power_of_two()
            .clamp(8, 256);
        MemoryStore {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                hasher: foldhash::fast::RandomState::default(),
                shards: (0..shards)
                    .map(|_| {
                        Mutex::new(Shard {
                            sweep_above: 1024,
                            ..Shard::default()
                        })
                    })
                    .collect(),
            }),
        }
    }

    /// How many keys hold state (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.entries.len()))
            .sum()
    }

    /// Whether no key holds state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now(&self) -> Micros {
        Instant::now()
            .saturating_duration_since(self.inner.epoch)
            .as_micros() as Micros
    }

    /// Decides at `now` (µs since the store's epoch) instead of the store's clock: for the
    /// differential test against the Redis script.
    #[doc(hidden)]
    pub fn check_at(
        &self,
        policy: &Policy,
        key: &Key,
        cost: u64,
        mode: Mode,
        now: Micros,
    ) -> Decision {
        let hash = self.inner.hasher.hash_one(key);
        let shard = &self.inner.shards[hash as usize & (self.inner.shards.len() - 1)];
        // A poisoned shard only means another thread panicked mid-update of plain data; the
        // state is still consistent enough to rate-limit with.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        shard.maybe_sweep(now);

        let namespaces = policy.namespaces();
        let limits = policy.limits();
        let mut entry = shard.entries.get_mut(key);
        // Where each limit's state sits in the entry (usize::MAX: not there yet).
        let mut slots = [usize::MAX; MAX_LIMITS];
        if let Some(e) = entry.as_deref_mut() {
            if e.expires_at <= now {
                // Every limit is fully restored: the same as never seen.
                e.limits.iter_mut().for_each(|(_, state)| *state = None);
            }
            for (slot, ns) in slots.iter_mut().zip(namespaces) {
                if let Some(found) = e.limits.position(ns) {
                    *slot = found;
                }
            }
        }
        if let [limit] = limits {
            // One limit (the common case): no step array to fill and move.
            let state = entry.as_ref().and_then(|e| e.limits.state(slots[0]));
            let step = algorithm::decide(limit.algorithm(), state, now, cost);
            let decision = Decision::from_steps(policy, std::slice::from_ref(&step));
            if decision.is_allowed() && mode == Mode::Consume {
                let entry = match entry {
                    Some(e) => e,
                    None => shard.entries.entry(key.clone()).or_insert(Entry {
                        limits: Slots::default(),
                        expires_at: 0,
                    }),
                };
                entry.admit(
                    now + step.reset_after,
                    slots[0],
                    &namespaces[0],
                    step.update,
                );
            }
            return decision;
        }
        let mut steps: [Option<Step>; MAX_LIMITS] = Default::default();
        for (i, limit) in limits.iter().enumerate() {
            let state = match (&entry, slots[i]) {
                (Some(e), slot) if slot != usize::MAX => e.limits.state(slot),
                _ => None,
            };
            steps[i] = Some(algorithm::decide(limit.algorithm(), state, now, cost));
        }
        let decision = Decision::from_steps(policy, steps.iter().flatten());
        if !decision.is_allowed() || mode == Mode::Peek {
            return decision;
        }

        let expires_in = decision
            .limits()
            .iter()
            .map(|o| o.reset_micros())
            .max()
            .unwrap_or(0);
        let entry = match entry {
            Some(e) => e,
            None => shard.entries.entry(key.clone()).or_insert(Entry {
                limits: Slots::default(),
                expires_at: 0,
            }),
        };
        for (i, step) in steps.into_iter().flatten().enumerate() {
            entry.admit(now + expires_in, slots[i], &namespaces[i], step.update);
        }
        decision
    }
}

impl Shard {
    fn maybe_sweep(&mut self, now: Micros) {
        if now < self.next_sweep && self.entries.len() <= self.sweep_above {
            return;
        }
        self.entries
            .retain(|_, e| e.expires_at.saturating_add(IDLE_GRACE) > now);
        self.next_sweep = now + SWEEP_EVERY;
        self.sweep_above = (self.entries.len() * 2).max(1024);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

impl RateLimitStore for MemoryStore {
    type Future = std::future::Ready<Result<Decision, BackendError>>;

    fn check(&self, policy: &Policy, key: &Key, cost: u64, mode: Mode) -> Checked<Self::Future> {
        Checked::Ready(Ok(self.check_at(policy, key, cost, mode, self.now())))
    }
}
