//! The breaker's decisions as pure functions: no atomics, no clock.

use std::time::Duration;

use crate::policy::{BreakerPolicy, OpenDuration};

/// What a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Counts {
    /// Calls recorded.
    pub calls: u32,
    /// Of which failed.
    pub failures: u32,
    /// Of which were slow.
    pub slow: u32,
}

impl Counts {
    /// Failures / calls (0 when empty).
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls / calls (0 when empty).
    pub fn slow_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// Whether a closed breaker with these counts (and this many failures in a row) must open.
pub fn should_open(policy: &BreakerPolicy, counts: Counts, consecutive_failures: u32) -> bool {
    if policy
        .consecutive_failures
        .is_some_and(|n| consecutive_failures >= n)
    {
        return true;
    }
    counts.calls >= policy.minimum_calls
        && (counts.failure_rate() >= policy.failure_rate
            || counts.slow_rate() >= policy.slow_call_rate)
}

/// The verdict of the half-open probes so far, if there is one yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// The upstream is healthy: close.
    Close,
    /// Still failing: open again.
    Reopen,
}

/// Judges `failures` (failed or slow) out of `done` finished probes of `probes` admitted: reopen
/// as soon as the failures alone reach the failure rate over all probes, close once every probe
/// finished below it.
pub fn probe_verdict(policy: &BreakerPolicy, done: u32, failures: u32) -> Option<ProbeVerdict> {
    let probes = policy.half_open_probes;
    if f64::from(failures) / f64::from(probes) >= policy.failure_rate {
        Some(ProbeVerdict::Reopen)
    } else if done >= probes {
        Some(ProbeVerdict::Close)
    } else {
        None
    }
}

/// How long to stay open after `reopenings` reopenings in a row; `unit` in [0, 1) spreads the
/// jitter.
pub fn open_duration(d: &OpenDuration, reopenings: u32, unit: f64) -> Duration {
    let grown = d.base.as_secs_f64() * d.multiplier.powi(reopenings.min(64) as i32);
    let wait = grown.min(d.max.as_secs_f64());
    let spread = wait * d.jitter * (2.0 * unit - 1.0);
    Duration::from_secs_f64((wait + spread).clamp(0.001, d.max.as_secs_f64() * (1.0 + d.jitter)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy::builder("t")
            .count_window(10)
            .minimum_calls(4)
            .failure_rate(0.5)
            .half_open_probes(4)
            .build()
            .unwrap()
    }

    #[test]
    fn rates_need_the_minimum_calls() {
        let p = policy();
        let c = |calls, failures| Counts {
            calls,
            failures,
            slow: 0,
        };
        assert!(!should_open(&p, c(3, 3), 3));
        assert!(should_open(&p, c(4, 2), 0));
        assert!(!should_open(&p, c(5, 2), 0));
    }

    #[test]
    fn probes_reopen_early_and_close_when_all_pass() {
        let p = policy();
        assert_eq!(probe_verdict(&p, 1, 0), None);
        assert_eq!(probe_verdict(&p, 2, 2), Some(ProbeVerdict::Reopen));
        assert_eq!(probe_verdict(&p, 4, 1), Some(ProbeVerdict::Close));
    }

    #[test]
    fn open_duration_grows_and_is_capped() {
        let d = OpenDuration {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(10),
            jitter: 0.0,
        };
        assert_eq!(open_duration(&d, 0, 0.5), Duration::from_secs(1));
        assert_eq!(open_duration(&d, 3, 0.5), Duration::from_secs(8));
        assert_eq!(open_duration(&d, 30, 0.5), Duration::from_secs(10));
    }

    #[test]
    fn open_duration_jitter_spreads_both_ways_within_its_share() {
        let d = OpenDuration {
            base: Duration::from_secs(4),
            multiplier: 2.0,
            max: Duration::from_secs(10),
            jitter: 0.25,
        };
        let secs = |reopenings, unit| open_duration(&d, reopenings, unit).as_secs_f64();
        // ±25 % of 4 s: 3 s at the low end, 5 s at the high end, 4 s in the middle.
        assert!((secs(0, 0.0) - 3.0).abs() < 1e-9);
        assert!((secs(0, 0.5) - 4.0).abs() < 1e-9);
        assert!((secs(0, 1.0) - 5.0).abs() < 1e-9);
        // Capped at 10 s before the spread, so at most 12.5 s.
        assert!((secs(5, 1.0) - 12.5).abs() < 1e-9);
        assert!((secs(5, 0.0) - 7.5).abs() < 1e-9);
    }

    #[test]
    fn slow_calls_open_it_on_their_own() {
        let p = BreakerPolicy::builder("slow")
            .minimum_calls(4)
            .failure_rate(1.0)
            .slow_calls(Duration::from_millis(100), 0.5)
            .build()
            .unwrap();
        let counts = |slow| Counts {
            calls: 4,
            failures: 0,
            slow,
        };
        assert_eq!(counts(3).slow_rate(), 0.75);
        assert!(!should_open(&p, counts(1), 0));
        assert!(should_open(&p, counts(2), 0));
    }
}
