use std::time::Duration;

use super::{LimitState, MAX_EXACT, Micros, Step, Update};
use crate::error::PolicyError;

/// `quota` units per fixed window aligned to the Unix epoch (every minute on the minute…).
///
/// Cheapest to store, but a client can spend a quota at the end of one window and another at
/// the start of the next: up to twice the quota in a short span. Use a sliding window or GCRA
/// where that matters.
///
/// ```
/// use std::time::Duration;
/// use palisade_ratelimit::FixedWindow;
///
/// let daily = FixedWindow::new(1000, Duration::from_secs(86_400)).unwrap();
/// assert_eq!(daily.quota(), 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedWindow {
    quota: u64,
    window: Micros,
}

impl FixedWindow {
    /// `quota` units per `window`.
    pub fn new(quota: u64, window: Duration) -> Result<Self, PolicyError> {
        let window = super::window_micros(window)?;
        if quota == 0 || quota > MAX_EXACT {
            return Err(PolicyError::invalid(format!(
                "fixed window quota must be at least 1, got {quota}"
            )));
        }
        Ok(FixedWindow { quota, window })
    }

    /// Units per window.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The window, in microseconds.
    pub fn window(&self) -> Micros {
        self.window
    }

    pub(crate) fn decide(&self, state: Option<&LimitState>, now: Micros, cost: u64) -> Step {
        let start = now - now % self.window;
        let count = match state {
            Some(&LimitState::FixedWindow { start: s, count }) if s == start => count,
            _ => 0,
        };
        let fits = cost <= self.quota - count.min(self.quota);
        let after = if fits { count + cost } else { count };
        let reset = start + self.window - now;
        Step {
            fits,
            remaining_before: self.quota.saturating_sub(count),
            remaining_after: self.quota.saturating_sub(after),
            retry_after: if fits {
                Some(0)
            } else if cost > self.quota {
                None
            } else {
                Some(reset)
            },
            reset_before: if count == 0 { 0 } else { reset },
            reset_after: if after == 0 { 0 } else { reset },
            update: Update::Set(LimitState::FixedWindow {
                start,
                count: after,
            }),
        }
    }
}
