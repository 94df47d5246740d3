//! Tiers: how much of the pool each class of work may use, and how it waits.

use std::time::Duration;

/// One class of work in a [`Pool`](crate::Pool), from lowest to highest priority by its
/// position in [`PoolConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// The tier's name (metrics, rejections).
    pub name: &'static str,
    /// Calls this tier may run at once from its own share.
    pub concurrency: u32,
    /// Calls that may wait for a slot (0: reject at once when full).
    pub queue: u32,
    /// How long a call may wait in the queue before it is refused.
    pub max_wait: Duration,
}

impl Tier {
    /// A tier of `concurrency` slots, no queue.
    pub fn new(name: &'static str, concurrency: u32) -> Self {
        Tier {
            name,
            concurrency,
            queue: 0,
            max_wait: Duration::ZERO,
        }
    }

    /// Lets `depth` calls wait up to `max_wait` for a slot.
    pub fn queue(mut self, depth: u32, max_wait: Duration) -> Self {
        self.queue = depth;
        self.max_wait = max_wait;
        self
    }

    /// The critical tier preset: 5 concurrent, 10 queued, up to 300 s of waiting (payments,
    /// auth).
    pub fn critical() -> Self {
        Tier::new("critical", 5).queue(10, Duration::from_secs(300))
    }

    /// The standard tier preset: 8 concurrent, 12 queued, up to 60 s.
    pub fn standard() -> Self {
        Tier::new("standard", 8).queue(12, Duration::from_secs(60))
    }

    /// The optional tier preset: 4 concurrent, 6 queued, up to 10 s (recommendations, enrichment).
    pub fn optional() -> Self {
        Tier::new("optional", 4).queue(6, Duration::from_secs(10))
    }
}

/// Which tier of a [`Pool`](crate::Pool) a call runs in: from [`Pool::tier`](crate::Pool::tier)
/// (by name) or [`Pool::lowest_tier`](crate::Pool::lowest_tier). Tiers are ordered: a higher
/// one has priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TierId(pub(crate) usize);

impl TierId {
    /// The tier's position in its [`PoolConfig`], 0 being the lowest priority (the index of its
    /// entry in [`Snapshot::tiers`](crate::Snapshot::tiers)).
    pub fn index(self) -> usize {
        self.0
    }
}

/// The tiers of a pool, lowest priority first.
///
/// Priority admission: a tier may use its own slots and those of the tiers **below** it, never
/// those of tiers above. With the presets of [`PoolConfig::three_tiers`] optional
/// work runs at most 4 at once, standard at most 12, critical all 17 — so a flood of optional
/// work never takes the 13 slots standard and critical count on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub(crate) name: &'static str,
    pub(crate) tiers: Vec<Tier>,
}

impl PoolConfig {
    /// A pool named `name` with `tiers`, lowest priority first.
    ///
    /// # Panics
    /// With no tier, more than 16, or a tier of 0 concurrency — configuration errors caught at
    /// start-up.
    pub fn new(name: &'static str, tiers: Vec<Tier>) -> Self {
        assert!(
            (1..=16).contains(&tiers.len()),
            "bulkhead `{name}`: 1..=16 tiers, got {}",
            tiers.len()
        );
        for t in &tiers {
            assert!(
                t.concurrency > 0,
                "bulkhead `{name}`: tier `{}` has no slot",
                t.name
            );
        }
        PoolConfig { name, tiers }
    }

    /// The pool's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The tiers, lowest priority first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tier called `name`.
    pub fn tier(&self, name: &str) -> Option<TierId> {
        self.tiers.iter().position(|t| t.name == name).map(TierId)
    }

    /// The lowest-priority tier (the only one of a [`single`](Self::single) pool).
    pub fn lowest_tier(&self) -> TierId {
        TierId(0)
    }

    /// Calls the whole pool may run at once (the sum of the tiers' slots).
    pub fn capacity(&self) -> u32 {
        self.tiers.iter().map(|t| t.concurrency).sum()
    }

    /// One tier of `concurrency` slots and a queue.
    pub fn single(name: &'static str, concurrency: u32, queue: u32, max_wait: Duration) -> Self {
        PoolConfig::new(
            name,
            vec![Tier::new("default", concurrency).queue(queue, max_wait)],
        )
    }

    /// Three tiers, optional < standard < critical ([`Tier::optional`], [`Tier::standard`],
    /// [`Tier::critical`]: 4, 8 and 5 slots).
    pub fn three_tiers(name: &'static str) -> Self {
        PoolConfig::new(
            name,
            vec![Tier::optional(), Tier::standard(), Tier::critical()],
        )
    }
}
