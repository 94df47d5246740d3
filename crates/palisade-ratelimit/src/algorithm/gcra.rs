use std::time::Duration;

use super::{LimitState, MAX_EXACT, Micros, Step, Update};
use crate::error::PolicyError;

/// The generic cell rate algorithm: `quota` per `window`, bursts of up to `burst` (default:
/// the quota), kept as one timestamp per key.
///
/// Equivalent to a token bucket of `burst` tokens refilled at `quota / window`, but its state is
/// a single number — the theoretical arrival time (TAT) of the next request — so it costs one
/// small Redis value per key.
///
/// ```
/// use std::time::Duration;
/// use palisade_ratelimit::Gcra;
///
/// // 100 per minute, at most 10 at once.
/// let gcra = Gcra::new(100, Duration::from_secs(60)).unwrap().with_burst(10).unwrap();
/// assert_eq!(gcra.burst(), 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gcra {
    quota: u64,
    window: Micros,
    burst: u64,
    /// Microseconds per unit (`window / quota`, at least 1).
    emission_interval: Micros,
}

impl Gcra {
    /// `quota` units per `window`, with a burst equal to the quota.
    pub fn new(quota: u64, window: Duration) -> Result<Self, PolicyError> {
        let window = super::window_micros(window)?;
        if quota == 0 || quota > window {
            return Err(PolicyError::invalid(format!(
                "GCRA quota must be 1..=one per microsecond of the window, got {quota}"
            )));
        }
        let mut gcra = Gcra {
            quota,
            window,
            burst: quota,
            emission_interval: window / quota,
        };
        gcra = gcra.with_burst(quota)?;
        Ok(gcra)
    }

    /// Allows bursts of `burst` units (1 ..= quota × 1000).
    pub fn with_burst(mut self, burst: u64) -> Result<Self, PolicyError> {
        if burst == 0 || burst.saturating_mul(self.emission_interval) > MAX_EXACT {
            return Err(PolicyError::invalid(format!(
                "GCRA burst must be at least 1 and burst × window / quota at most 2^52 µs, got {burst}"
            )));
        }
        self.burst = burst;
        Ok(self)
    }

    /// Units per window.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The largest burst.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The window, in microseconds.
    pub fn window(&self) -> Micros {
        self.window
    }

    pub(crate) fn emission_interval(&self) -> Micros {
        self.emission_interval
    }

    /// Delay variation tolerance: how far ahead of now the TAT may run.
    pub(crate) fn tolerance(&self) -> Micros {
        self.burst * self.emission_interval
    }

    pub(crate) fn decide(&self, state: Option<&LimitState>, now: Micros, cost: u64) -> Step {
        let interval = self.emission_interval;
        let tolerance = self.tolerance();
        let tat = match state {
            Some(&LimitState::Gcra { tat }) => tat.max(now),
            _ => now,
        };
        let increment = cost.saturating_mul(interval);
        let new_tat = tat.saturating_add(increment);
        let fits = increment <= tolerance && new_tat - now <= tolerance;
        let retry_after = if fits {
            Some(0)
        } else if increment > tolerance {
            None
        } else {
            Some(new_tat - now - tolerance)
        };
        let remaining = |t: Micros| (tolerance.saturating_sub(t - now)) / interval;
        Step {
            fits,
            remaining_before: remaining(tat),
            remaining_after: if fits { remaining(new_tat) } else { 0 },
            retry_after,
            reset_before: tat - now,
            reset_after: if fits { new_tat - now } else { tat - now },
            update: Update::Set(LimitState::Gcra {
                tat: if fits { new_tat } else { tat },
            }),
        }
    }
}
