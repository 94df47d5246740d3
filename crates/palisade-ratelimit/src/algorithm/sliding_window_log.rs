use std::time::Duration;

use super::{LimitState, Micros, Step, Update};
use crate::error::PolicyError;

/// Largest quota of a sliding-window log: it keeps one entry per admitted unit.
pub const MAX_LOG_QUOTA: u64 = 1_000_000;

/// Exactly `quota` units in any trailing `window`: a log of admission times (a Redis sorted
/// set), for strict quotas such as billing.
///
/// Memory is one entry per admitted unit (up to `quota` per key), so prefer GCRA or a token
/// bucket for large quotas.
///
/// ```
/// use std::time::Duration;
/// use palisade_ratelimit::SlidingWindowLog;
///
/// let strict = SlidingWindowLog::new(100, Duration::from_secs(60)).unwrap();
/// assert_eq!(strict.quota(), 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlidingWindowLog {
    quota: u64,
    window: Micros,
}

impl SlidingWindowLog {
    /// `quota` units in any trailing `window` (quota 1 ..= 1 000 000).
    pub fn new(quota: u64, window: Duration) -> Result<Self, PolicyError> {
        let window = super::window_micros(window)?;
        if quota == 0 || quota > MAX_LOG_QUOTA {
            return Err(PolicyError::invalid(format!(
                "sliding window log quota must be 1..={MAX_LOG_QUOTA}, got {quota}"
            )));
        }
        Ok(SlidingWindowLog { quota, window })
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
        static EMPTY: std::collections::VecDeque<Micros> = std::collections::VecDeque::new();
        let log = match state {
            Some(LimitState::SlidingWindowLog(log)) => &**log,
            _ => &EMPTY,
        };
        // Entries are never stamped in the past of the newest one, so the log stays sorted
        // even if the clock steps back.
        let now = log.back().map_or(now, |newest| now.max(*newest));
        let expire_through = now.saturating_sub(self.window);
        let live = log.partition_point(|t| *t <= expire_through);
        let count = (log.len() - live) as u64;
        let fits = cost <= self.quota - count.min(self.quota);
        let retry_after = if fits {
            Some(0)
        } else if cost > self.quota {
            None
        } else {
            // The (count + cost - quota)-th oldest live entry must leave the window.
            let k = (count + cost - self.quota) as usize;
            Some(log[live + k - 1] + self.window - now)
        };
        let reset_before = log
            .back()
            .filter(|_| count > 0)
            .map_or(0, |newest| newest + self.window - now);
        Step {
            fits,
            remaining_before: self.quota.saturating_sub(count),
            remaining_after: if fits {
                self.quota - count - cost
            } else {
                self.quota.saturating_sub(count)
            },
            retry_after,
            reset_before,
            reset_after: if fits && cost > 0 {
                self.window
            } else {
                reset_before
            },
            update: Update::Append {
                expire_through,
                at: now,
                count: cost,
            },
        }
    }
}
