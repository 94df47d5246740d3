//! [`AdaptiveLimit`]: the moving limit and its [`AdaptivePermit`]s.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use super::{LimitAlgorithm, LimitBounds, next_limit};

/// A concurrency limit that adapts; shared by clones.
#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    algorithm: LimitAlgorithm,
    bounds: LimitBounds,
    /// Invariant: `in_flight` counts the permits alive; `limit` stays within `bounds`.
    state: Mutex<State>,
}

struct State {
    limit: f64,
    in_flight: u32,
    long_rtt: f64,
}

impl AdaptiveLimit {
    /// The limit's name (in metrics and refusals).
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// A limit named `name` moved by `algorithm` within `bounds`.
    pub fn new(name: &'static str, algorithm: LimitAlgorithm, bounds: LimitBounds) -> Self {
        let bounds = LimitBounds {
            min: bounds.min.max(1.0),
            initial: bounds
                .initial
                .clamp(bounds.min.max(1.0), bounds.max.max(1.0)),
            max: bounds.max.max(bounds.min.max(1.0)),
        };
        AdaptiveLimit {
            inner: Arc::new(Inner {
                name,
                algorithm,
                bounds,
                state: Mutex::new(State {
                    limit: bounds.initial,
                    in_flight: 0,
                    long_rtt: 0.0,
                }),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current limit.
    pub fn limit(&self) -> f64 {
        self.lock().limit
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// A permit if fewer than `limit` calls are in flight, else `None` (no queue).
    pub fn try_acquire(&self) -> Option<AdaptivePermit> {
        let mut state = self.lock();
        if f64::from(state.in_flight) + 1.0 > state.limit.floor() {
            return None;
        }
        state.in_flight += 1;
        Some(AdaptivePermit {
            limit: self.clone(),
            started: Instant::now(),
            done: false,
        })
    }

    fn finish(&self, rtt: Option<Duration>, dropped: bool) {
        let mut state = self.lock();
        if let Some(rtt) = rtt {
            let in_flight = state.in_flight;
            let (limit, mut long_rtt) = (state.limit, state.long_rtt);
            state.limit = next_limit(
                self.inner.algorithm,
                self.inner.bounds,
                limit,
                in_flight,
                rtt,
                dropped,
                &mut long_rtt,
            );
            state.long_rtt = long_rtt;
            metrics::gauge!("palisade_bulkhead_adaptive_limit", "bulkhead" => self.inner.name)
                .set(state.limit);
        }
        state.in_flight -= 1;
    }
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.inner.name)
            .field("limit", &self.limit())
            .finish_non_exhaustive()
    }
}

/// A call admitted under an [`AdaptiveLimit`]; report how it went with
/// [`record`](Self::record). Dropped unreported, it frees its place and teaches nothing.
pub struct AdaptivePermit {
    limit: AdaptiveLimit,
    started: Instant,
    done: bool,
}

impl AdaptivePermit {
    /// The call ended; `dropped` for an error or overload signal (5xx, timeout).
    pub fn record(mut self, dropped: bool) {
        self.done = true;
        self.limit.finish(Some(self.started.elapsed()), dropped);
    }
}

impl Drop for AdaptivePermit {
    fn drop(&mut self) {
        if !self.done {
            self.limit.finish(None, false);
        }
    }
}

impl fmt::Debug for AdaptivePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit").finish_non_exhaustive()
    }
}
