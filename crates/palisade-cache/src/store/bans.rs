//! [`Bans`]: recent purges a process-local store remembers, so a fetch that was in flight
//! when a purge ran cannot store the purged response back.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use super::PurgeMode;
use crate::Entry;

/// How long a purge is remembered: longer than any fetch can be in flight.
pub(crate) const BAN_WINDOW: Duration = Duration::from_secs(600);
/// The most purges remembered per kind; past it, the oldest are forgotten first.
const MAX_BANS: usize = 10_000;

/// The latest hard and soft purge times of one URL, tag, or of everything.
#[derive(Debug, Clone, Copy, Default)]
struct Ban {
    hard: Option<SystemTime>,
    soft: Option<SystemTime>,
}

impl Ban {
    fn record(&mut self, mode: PurgeMode, at: SystemTime) {
        let slot = match mode {
            PurgeMode::Hard => &mut self.hard,
            PurgeMode::Soft => &mut self.soft,
        };
        *slot = Some(slot.map_or(at, |t| t.max(at)));
    }

    fn latest(&self) -> Option<SystemTime> {
        self.hard.max(self.soft)
    }
}

/// Invariant: every ban is younger than [`BAN_WINDOW`] as of the last record (older ones are
/// pruned then), and each map holds at most [`MAX_BANS`].
#[derive(Debug, Default)]
pub(crate) struct Bans {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    all: Ban,
    urls: HashMap<String, Ban>,
    tags: HashMap<String, Ban>,
}

/// What the bans say of an entry about to be stored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not purged after it was requested.
    Keep,
    /// Soft-purged after it was requested: store it, stale from this time.
    Stale(SystemTime),
    /// Hard-purged after it was requested: do not store it.
    Drop,
}

impl Bans {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn url(&self, key: &str, mode: PurgeMode, at: SystemTime) {
        let mut state = self.lock();
        Self::record(&mut state.urls, key, mode, at);
    }

    pub(crate) fn tag(&self, tag: &str, mode: PurgeMode, at: SystemTime) {
        let mut state = self.lock();
        Self::record(&mut state.tags, tag, mode, at);
    }

    pub(crate) fn all(&self, mode: PurgeMode, at: SystemTime) {
        self.lock().all.record(mode, at);
    }

    fn record(map: &mut HashMap<String, Ban>, name: &str, mode: PurgeMode, at: SystemTime) {
        let horizon = at.checked_sub(BAN_WINDOW).unwrap_or(SystemTime::UNIX_EPOCH);
        map.retain(|_, ban| ban.latest().is_some_and(|t| t > horizon));
        if map.len() >= MAX_BANS && !map.contains_key(name) {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, ban)| ban.latest())
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.entry(name.to_owned()).or_default().record(mode, at);
    }

    /// Whether `entry`, stored under `key`, was purged after it was requested.
    pub(crate) fn verdict(&self, key: &str, entry: &Entry) -> Verdict {
        let state = self.lock();
        let mut bans = vec![state.all];
        bans.extend(state.urls.get(key).copied());
        bans.extend(
            entry
                .surrogate_keys()
                .iter()
                .filter_map(|tag| state.tags.get(tag).copied()),
        );
        // Purged after it was requested (strictly: this clock has nanoseconds, and a request
        // made in the purge's own instant came after it).
        let requested = entry.request_time();
        if bans.iter().any(|b| b.hard.is_some_and(|t| t > requested)) {
            return Verdict::Drop;
        }
        match bans
            .iter()
            .filter_map(|b| b.soft)
            .filter(|t| *t > requested)
            .max()
        {
            Some(at) => Verdict::Stale(at),
            None => Verdict::Keep,
        }
    }
}
