//! [`Pool`]: slots shared by priority tiers, with bounded FIFO queues per tier.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use serde::Serialize;

use crate::tier::{PoolConfig, TierId};

/// Concurrency slots shared by the tiers of a [`PoolConfig`]. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::{Pool, PoolConfig};
///
/// let pool = Pool::new(PoolConfig::three_tiers("partner-api"));
/// let critical = pool.tier("critical").unwrap();
/// let permit = pool.try_acquire(critical).unwrap();
/// assert_eq!(pool.snapshot().tiers[critical.index()].active, 1);
/// drop(permit);
/// assert_eq!(pool.snapshot().tiers[critical.index()].active, 0);
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolConfig,
    /// Per tier: `palisade_bulkhead_active` and `palisade_bulkhead_queued` gauges, registered
    /// once so updating them costs no allocation.
    gauges: Vec<[metrics::Gauge; 2]>,
    max_active: metrics::Gauge,
    /// `caps[k]`: slots tiers `0..=k` may hold together (their concurrencies summed).
    caps: Vec<u32>,
    state: Mutex<State>,
}

/// Invariant: for every tier `k`, the calls active in tiers `0..=k` never exceed `caps[k]`;
/// a waiter is in exactly one queue until it is granted (then `granted` holds its permit's
/// slot) or cancelled.
#[derive(Default)]
struct State {
    active: Vec<u32>,
    queues: Vec<VecDeque<u64>>,
    waiters: HashMap<u64, Waiter>,
    next_id: u64,
    max_active: u32,
}

struct Waiter {
    tier: usize,
    waker: Option<Waker>,
    granted: bool,
}

/// A slot held in the pool; released when dropped.
pub struct Permit {
    pool: Pool,
    tier: usize,
}

/// The answer to an attempt to take a slot.
#[derive(Debug)]
pub enum Acquire {
    /// Got one.
    Acquired(Permit),
    /// Waiting in the tier's queue under this ticket.
    Queued(u64),
    /// The tier is full and so is its queue.
    Full,
}

/// How a pool stands, for health endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The pool's name.
    pub name: &'static str,
    /// Per tier, lowest priority first.
    pub tiers: Vec<TierSnapshot>,
    /// The most calls ever active at once.
    pub max_active: u32,
}

/// One tier's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierSnapshot {
    /// The tier's name.
    pub name: &'static str,
    /// Calls running.
    pub active: u32,
    /// Calls waiting.
    pub queued: u32,
    /// Queue capacity.
    pub queue_capacity: u32,
}

impl Pool {
    /// A pool with every slot free.
    pub fn new(config: PoolConfig) -> Self {
        let caps = config
            .tiers
            .iter()
            .scan(0u32, |sum, t| {
                *sum += t.concurrency;
                Some(*sum)
            })
            .collect();
        let n = config.tiers.len();
        let gauges = config
            .tiers
            .iter()
            .map(|t| {
                [
                    metrics::gauge!("palisade_bulkhead_active", "bulkhead" => config.name, "tier" => t.name),
                    metrics::gauge!("palisade_bulkhead_queued", "bulkhead" => config.name, "tier" => t.name),
                ]
            })
            .collect();
        let max_active = metrics::gauge!("palisade_bulkhead_max_active", "bulkhead" => config.name);
        Pool {
            inner: Arc::new(Inner {
                gauges,
                max_active,
                caps,
                state: Mutex::new(State {
                    active: vec![0; n],
                    queues: vec![VecDeque::new(); n],
                    ..State::default()
                }),
                config,
            }),
        }
    }

    /// The tier called `name`.
    pub fn tier(&self, name: &str) -> Option<TierId> {
        self.inner.config.tier(name)
    }

    /// The lowest-priority tier (the only one of a [`PoolConfig::single`] pool).
    pub fn lowest_tier(&self) -> TierId {
        self.inner.config.lowest_tier()
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters only: a panic elsewhere leaves them consistent.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether one more call of `tier` fits every constraint at and above it.
    fn admissible(&self, state: &State, tier: usize) -> bool {
        let mut used = 0;
        for k in 0..self.inner.caps.len() {
            used += state.active[k];
            if k >= tier && used + 1 > self.inner.caps[k] {
                return false;
            }
        }
        true
    }

    fn admit(&self, state: &mut State, tier: usize) {
        state.active[tier] += 1;
        let total: u32 = state.active.iter().sum();
        if total > state.max_active {
            state.max_active = total;
            self.inner.max_active.set(f64::from(total));
        }
        self.publish(state, tier);
    }

    fn publish(&self, state: &State, tier: usize) {
        let [active, queued] = &self.inner.gauges[tier];
        active.set(f64::from(state.active[tier]));
        queued.set(state.queues[tier].len() as f64);
    }

    /// A slot at once if one is free (and no one of the tier waits), else `None`.
    pub fn try_acquire(&self, tier: TierId) -> Option<Permit> {
        let tier = tier.0;
        let mut state = self.lock();
        if state.queues[tier].is_empty() && self.admissible(&state, tier) {
            self.admit(&mut state, tier);
            Some(Permit {
                pool: self.clone(),
                tier,
            })
        } else {
            None
        }
    }

    /// A slot now, a place in the tier's queue, or `Full`.
    pub fn acquire_or_queue(&self, tier: TierId) -> Acquire {
        let tier = tier.0;
        let mut state = self.lock();
        if state.queues[tier].is_empty() && self.admissible(&state, tier) {
            self.admit(&mut state, tier);
            return Acquire::Acquired(Permit {
                pool: self.clone(),
                tier,
            });
        }
        let capacity = self.inner.config.tiers[tier].queue as usize;
        if state.queues[tier].len() >= capacity {
            return Acquire::Full;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.queues[tier].push_back(id);
        self.publish(&state, tier);
        state.waiters.insert(
            id,
            Waiter {
                tier,
                waker: None,
                granted: false,
            },
        );
        if state.queues[tier].len() * 5 > capacity * 4 {
            tracing::warn!(
                target: "palisade::bulkhead",
                bulkhead = self.inner.config.name,
                tier = self.inner.config.tiers[tier].name,
                queued = state.queues[tier].len(),
                capacity,
                "bulkhead queue above 80 % full"
            );
        }
        Acquire::Queued(id)
    }

    /// Whether ticket `id` has been granted its slot (registering `cx` to be woken if not).
    pub fn poll_ticket(&self, id: u64, cx: &mut Context<'_>) -> Poll<Permit> {
        let mut state = self.lock();
        match state.waiters.get_mut(&id) {
            Some(w) if w.granted => {
                let tier = w.tier;
                state.waiters.remove(&id);
                Poll::Ready(Permit {
                    pool: self.clone(),
                    tier,
                })
            }
            Some(w) => {
                w.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            None => unreachable!("a ticket is polled only while it is outstanding"),
        }
    }

    /// Gives up ticket `id` (timed out or dropped): out of the queue, or, if it was granted
    /// meanwhile, its slot back to the pool.
    pub fn cancel(&self, id: u64) {
        let mut state = self.lock();
        if let Some(w) = state.waiters.remove(&id) {
            if w.granted {
                self.release_locked(&mut state, w.tier);
            } else {
                state.queues[w.tier].retain(|q| *q != id);
                self.publish(&state, w.tier);
            }
        }
    }

    fn release_locked(&self, state: &mut State, tier: usize) {
        state.active[tier] -= 1;
        self.publish(state, tier);
        // Wake the highest-priority waiters that now fit. If the front of a higher tier does
        // not fit, no lower tier can: its constraints include the higher tier's.
        for t in (0..state.queues.len()).rev() {
            while let Some(&id) = state.queues[t].front() {
                if !self.admissible(state, t) {
                    return;
                }
                state.queues[t].pop_front();
                self.admit(state, t);
                if let Some(w) = state.waiters.get_mut(&id) {
                    w.granted = true;
                    if let Some(waker) = w.waker.take() {
                        waker.wake();
                    }
                }
            }
        }
    }

    /// How the pool stands.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            name: self.inner.config.name,
            tiers: self
                .inner
                .config
                .tiers
                .iter()
                .enumerate()
                .map(|(i, t)| TierSnapshot {
                    name: t.name,
                    active: state.active[i],
                    queued: state.queues[i].len() as u32,
                    queue_capacity: t.queue,
                })
                .collect(),
            max_active: state.max_active,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        self.pool.release_locked(&mut state, self.tier);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("tier", &self.tier).finish()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.config.name)
            .finish_non_exhaustive()
    }
}
