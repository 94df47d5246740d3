//! Backoff between attempts: pure functions of the attempt number and a random unit (draw it
//! with [`crate::random::unit`]). Used by retries, lock waits and idempotency's waits.

use std::time::Duration;

/// How the wait between attempts grows and spreads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// `uniform(0, min(cap, base × 2^n))` — AWS's "full jitter", the default: spreads
    /// retrying clients the most.
    #[default]
    Full,
    /// `d/2 + uniform(0, d/2)` with `d = min(cap, base × 2^n)`: never shorter than half.
    Equal,
    /// `min(cap, uniform(base, 3 × previous))`: grows from the last wait, not the attempt.
    Decorrelated,
    /// Always `base`.
    Constant,
}

/// The wait before retry number `retry` (0 for the first retry), given the previous wait and
/// `unit` uniform in [0, 1).
pub fn delay(
    jitter: Jitter,
    base: Duration,
    cap: Duration,
    retry: u32,
    previous: Duration,
    unit: f64,
) -> Duration {
    let unit = unit.clamp(0.0, 1.0);
    let exp = || {
        let grown = base.as_secs_f64() * 2f64.powi(retry.min(62) as i32);
        grown.min(cap.as_secs_f64())
    };
    let secs = match jitter {
        Jitter::Full => exp() * unit,
        Jitter::Equal => {
            let d = exp();
            d / 2.0 + d / 2.0 * unit
        }
        Jitter::Decorrelated => {
            let low = base.as_secs_f64();
            let high = (previous.as_secs_f64() * 3.0).max(low);
            (low + (high - low) * unit).min(cap.as_secs_f64())
        }
        Jitter::Constant => base.as_secs_f64().min(cap.as_secs_f64()),
    };
    Duration::from_secs_f64(secs.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn full_jitter_stays_within_the_exponential_envelope() {
        for retry in 0..10 {
            for u in [0.0, 0.3, 0.999] {
                let d = delay(Jitter::Full, 100 * MS, 2000 * MS, retry, Duration::ZERO, u);
                let envelope = (100 * MS * 2u32.pow(retry)).min(2000 * MS);
                assert!(d <= envelope, "{retry} {u} {d:?}");
            }
        }
        assert_eq!(
            delay(Jitter::Full, 100 * MS, 2000 * MS, 3, Duration::ZERO, 0.5),
            400 * MS
        );
    }

    #[test]
    fn equal_decorrelated_constant() {
        assert_eq!(
            delay(Jitter::Equal, 100 * MS, 10_000 * MS, 1, Duration::ZERO, 0.0),
            100 * MS
        );
        assert_eq!(
            delay(Jitter::Equal, 100 * MS, 10_000 * MS, 1, Duration::ZERO, 1.0),
            200 * MS
        );
        let d = delay(Jitter::Decorrelated, 100 * MS, 1000 * MS, 5, 500 * MS, 1.0);
        assert_eq!(d, 1000 * MS, "capped");
        assert_eq!(
            delay(
                Jitter::Decorrelated,
                100 * MS,
                10_000 * MS,
                0,
                Duration::ZERO,
                0.0
            ),
            100 * MS
        );
        assert_eq!(
            delay(
                Jitter::Constant,
                250 * MS,
                10_000 * MS,
                9,
                Duration::ZERO,
                0.7
            ),
            250 * MS
        );
    }

    #[test]
    fn decorrelated_draws_between_the_base_and_three_times_the_last_wait() {
        let draw = |previous, unit| {
            delay(
                Jitter::Decorrelated,
                100 * MS,
                10_000 * MS,
                4,
                previous,
                unit,
            )
        };
        // From 100 ms up to 3 × 400 ms = 1200 ms, linearly in the draw.
        assert_eq!(draw(400 * MS, 0.0), 100 * MS);
        assert_eq!(draw(400 * MS, 0.5), 650 * MS);
        assert_eq!(draw(400 * MS, 1.0), 1200 * MS);
        // A last wait below a third of the base: the base.
        assert_eq!(draw(10 * MS, 0.7), 100 * MS);
    }
}
