//! How an adaptive limit moves, pure: [`next_limit`] from the observed latency and errors.

use std::time::Duration;

/// How the limit moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitAlgorithm {
    /// Additive increase, multiplicative decrease: +1 after a fast success that finished while
    /// at least half the limit was in use; × `backoff` after an error or a call slower than
    /// `slow`.
    Aimd {
        /// Calls slower than this count as congestion.
        slow: Duration,
        /// Multiplier on congestion (0 < backoff < 1; 0.9 is usual).
        backoff: f64,
    },
    /// Gradient2-style: the limit follows `tolerance × long-term latency / latency` (clamped to
    /// [0.5, 1]) plus a √limit allowance, smoothed; the long-term latency is an average over
    /// roughly the last 100 calls; errors count as congestion.
    Gradient {
        /// Weight of each new estimate (0 < smoothing ≤ 1; 0.2 is usual).
        smoothing: f64,
        /// How much slower than the long-term latency is still healthy (2.0 is usual).
        tolerance: f64,
    },
}

/// The limit's bounds and starting point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitBounds {
    /// Never below.
    pub min: f64,
    /// Starting limit.
    pub initial: f64,
    /// Never above.
    pub max: f64,
}

/// The next limit after one call: a pure function. `long_rtt` is the Gradient algorithm's
/// long-term latency estimate (seconds), updated in place.
pub fn next_limit(
    algorithm: LimitAlgorithm,
    bounds: LimitBounds,
    limit: f64,
    in_flight: u32,
    rtt: Duration,
    dropped: bool,
    long_rtt: &mut f64,
) -> f64 {
    let next = match algorithm {
        LimitAlgorithm::Aimd { slow, backoff } => {
            if dropped || rtt >= slow {
                limit * backoff
            } else if f64::from(in_flight) * 2.0 >= limit {
                limit + 1.0
            } else {
                limit
            }
        }
        LimitAlgorithm::Gradient {
            smoothing,
            tolerance,
        } => {
            let rtt = rtt.as_secs_f64().max(1e-6);
            *long_rtt = if *long_rtt == 0.0 {
                rtt
            } else {
                *long_rtt * 0.99 + rtt * 0.01
            };
            let gradient = if dropped {
                0.5
            } else {
                (tolerance * *long_rtt / rtt).clamp(0.5, 1.0)
            };
            let estimate = limit * gradient + limit.sqrt();
            limit * (1.0 - smoothing) + estimate * smoothing
        }
    };
    next.clamp(bounds.min, bounds.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_term_latency_is_a_slow_moving_average() {
        let gradient = LimitAlgorithm::Gradient {
            smoothing: 0.2,
            tolerance: 2.0,
        };
        let bounds = LimitBounds {
            min: 1.0,
            initial: 10.0,
            max: 100.0,
        };
        let mut long_rtt = 0.0;
        let ms = Duration::from_millis;
        next_limit(gradient, bounds, 10.0, 5, ms(100), false, &mut long_rtt);
        assert!(
            (long_rtt - 0.1).abs() < 1e-12,
            "the first sample is taken as it is"
        );
        next_limit(gradient, bounds, 10.0, 5, ms(200), false, &mut long_rtt);
        // 99 % of the old estimate, 1 % of the new sample.
        assert!((long_rtt - 0.101).abs() < 1e-12, "{long_rtt}");
    }
}
