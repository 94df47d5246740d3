//! The pure decision logic: no I/O, no clock reads.
//!
//! Every algorithm is a function of `(state, now, parameters, cost)` in integer microseconds.
//! The Redis script `scripts/check.lua` computes exactly the same functions with the same integer
//! operations (all magnitudes stay below 2⁵², where Lua's doubles are exact), and a differential
//! test runs both on long random sequences and demands identical answers.
//!
//! A decision is taken in two steps so several limits can be checked atomically: [`decide`]
//! says whether the cost fits each limit without changing anything, and only when it fits
//! **every** limit is each limit's [`Update`] applied. A denied request consumes nothing.

mod fixed_window;
mod gcra;
mod sliding_window_log;
mod token_bucket;

use std::collections::VecDeque;

use crate::error::PolicyError;

pub use fixed_window::FixedWindow;
pub use gcra::Gcra;
pub use sliding_window_log::SlidingWindowLog;
pub use token_bucket::TokenBucket;

/// Microseconds: every time in the algorithms (now, waits, windows).
pub type Micros = u64;

/// Largest magnitude any algorithm computes with. Lua numbers are doubles, exact for integers
/// below 2⁵³; staying under 2⁵² also keeps `floor(a / b)` exact.
pub(crate) const MAX_EXACT: u64 = 1 << 52;

/// How a limit counts: one of the four algorithms.
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    /// Bursts up to a capacity, refilled continuously.
    TokenBucket(TokenBucket),
    /// Generic cell rate algorithm: a token bucket kept as one timestamp.
    Gcra(Gcra),
    /// Exact count over the trailing window (one entry per unit).
    SlidingWindowLog(SlidingWindowLog),
    /// Count per aligned window; allows up to twice the quota across a window edge.
    FixedWindow(FixedWindow),
}

/// The stored state of one limit for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitState {
    /// Token bucket: milli-tokens, the time they were counted, and the refill remainder
    /// (in milli-token-microseconds per second, always `< 1_000_000`).
    TokenBucket {
        /// Tokens × 1000.
        tokens_milli: u64,
        /// When `tokens_milli` was last brought up to date.
        updated_at: Micros,
        /// Refill not yet worth a whole milli-token.
        carry: u64,
    },
    /// GCRA: the theoretical arrival time of the next request.
    Gcra {
        /// Theoretical arrival time.
        tat: Micros,
    },
    /// Fixed window: the window's start and the units counted in it.
    FixedWindow {
        /// Start of the counted window.
        start: Micros,
        /// Units admitted in it.
        count: u64,
    },
    /// Sliding-window log: one timestamp per admitted unit, oldest first. Boxed, so the
    /// common scalar states stay small.
    SlidingWindowLog(Box<VecDeque<Micros>>),
}

/// What a cost would do to one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Whether the cost fits this limit.
    pub fits: bool,
    /// Units left if nothing is consumed.
    pub remaining_before: u64,
    /// Units left after consuming the cost (meaningful when `fits`).
    pub remaining_after: u64,
    /// When it does not fit: microseconds until it would, or `None` if it never can (the cost
    /// exceeds the limit's capacity).
    pub retry_after: Option<Micros>,
    /// Microseconds until the limit is fully restored, if nothing is consumed.
    pub reset_before: Micros,
    /// Microseconds until the limit is fully restored, after consuming the cost.
    pub reset_after: Micros,
    /// The state change consuming the cost makes.
    pub update: Update,
}

/// The state change of one limit when a request is admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Replace the state.
    Set(LimitState),
    /// Sliding log: drop entries at or before `expire_through`, then append `count` entries at `at`.
    Append {
        /// Entries with timestamps `<=` this are outside the window.
        expire_through: Micros,
        /// The timestamp of the new entries.
        at: Micros,
        /// How many entries (the cost).
        count: u64,
    },
}

impl Update {
    /// Applies the change to a stored state.
    pub fn apply(self, state: &mut Option<LimitState>) {
        match self {
            Update::Set(next) => *state = Some(next),
            Update::Append {
                expire_through,
                at,
                count,
            } => {
                if !matches!(state, Some(LimitState::SlidingWindowLog(_))) {
                    *state = Some(LimitState::SlidingWindowLog(Box::default()));
                }
                if let Some(LimitState::SlidingWindowLog(log)) = state {
                    while log.front().is_some_and(|t| *t <= expire_through) {
                        log.pop_front();
                    }
                    log.extend(std::iter::repeat_n(at, count as usize));
                }
            }
        }
    }
}

/// What `cost` units at `now` would do to a limit in `state` (`None`: never seen, or expired).
///
/// A state of another algorithm (the policy changed) counts as no state.
pub fn decide(algorithm: &Algorithm, state: Option<&LimitState>, now: Micros, cost: u64) -> Step {
    match algorithm {
        Algorithm::TokenBucket(a) => a.decide(state, now, cost),
        Algorithm::Gcra(a) => a.decide(state, now, cost),
        Algorithm::SlidingWindowLog(a) => a.decide(state, now, cost),
        Algorithm::FixedWindow(a) => a.decide(state, now, cost),
    }
}

impl Algorithm {
    /// The quota advertised in `RateLimit-Policy` (`q`).
    pub fn quota(&self) -> u64 {
        match self {
            Algorithm::TokenBucket(a) => a.capacity(),
            Algorithm::Gcra(a) => a.burst(),
            Algorithm::SlidingWindowLog(a) => a.quota(),
            Algorithm::FixedWindow(a) => a.quota(),
        }
    }

    /// The window advertised in `RateLimit-Policy` (`w`), in microseconds: the time over which
    /// the quota is restored.
    pub fn window(&self) -> Micros {
        match self {
            Algorithm::TokenBucket(a) => a.full_refill(),
            Algorithm::Gcra(a) => a.window(),
            Algorithm::SlidingWindowLog(a) => a.window(),
            Algorithm::FixedWindow(a) => a.window(),
        }
    }

    /// The script's encoding: algorithm code and two integer parameters.
    pub(crate) fn script_args(&self) -> [u64; 3] {
        match self {
            Algorithm::TokenBucket(a) => [1, a.capacity_milli(), a.refill_milli_per_second()],
            Algorithm::Gcra(a) => [2, a.emission_interval(), a.tolerance()],
            Algorithm::FixedWindow(a) => [3, a.quota(), a.window()],
            Algorithm::SlidingWindowLog(a) => [4, a.quota(), a.window()],
        }
    }
}

/// A window as microseconds, validated: 1 ms ..= 366 days.
pub(crate) fn window_micros(window: std::time::Duration) -> Result<Micros, PolicyError> {
    let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
    if !(1_000..=366 * 86_400 * 1_000_000).contains(&micros) {
        return Err(PolicyError::invalid(format!(
            "window must be between 1ms and 366 days, got {window:?}"
        )));
    }
    Ok(micros)
}

/// `ceil(a / b)` for `b > 0`, as the script computes it: `floor((a + b - 1) / b)`.
pub(crate) fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

#[cfg(test)]
mod tests;
