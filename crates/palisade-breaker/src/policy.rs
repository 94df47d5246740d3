//! [`BreakerPolicy`]: when a breaker opens, how long it stays open, how it probes.

use std::{sync::Arc, time::Duration};

/// The window failure and slow-call rates are measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls: each new call pushes the oldest out.
    Count(u32),
    /// The calls of the last `n` whole seconds, kept as one aggregate per second.
    Time(u32),
}

/// How long an open breaker waits before probing: `base`, then `base × multiplier^k` after
/// `k` reopenings in a row, capped at `max`, optionally with ±`jitter` (a fraction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenDuration {
    /// The first wait.
    pub base: Duration,
    /// Growth per consecutive reopening (1.0: fixed).
    pub multiplier: f64,
    /// The longest wait.
    pub max: Duration,
    /// Random spread, as a fraction of the wait (0.0 ..= 1.0).
    pub jitter: f64,
}

impl OpenDuration {
    /// Always `wait`.
    pub fn fixed(wait: Duration) -> Self {
        OpenDuration {
            base: wait,
            multiplier: 1.0,
            max: wait,
            jitter: 0.0,
        }
    }

    /// `base`, doubling on each consecutive reopening up to `max`, ±10 % jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        OpenDuration {
            base,
            multiplier: 2.0,
            max,
            jitter: 0.1,
        }
    }
}

/// Why a policy cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker policy: {0}")]
pub struct PolicyError(String);

/// When a breaker trips and recovers. Defaults follow resilience4j: 50 % failures over the
/// last 100 calls (after at least 100 calls), open for 60 s, 10 half-open probes. Slow-call
/// detection is opt-in ([`slow_calls`](BreakerPolicyBuilder::slow_calls)); resilience4j's
/// default (100 % of calls slower than 60 s) almost never trips, and measuring every call
/// costs two clock reads.
///
/// ```
/// use std::time::Duration;
/// use palisade_breaker::{BreakerPolicy, OpenDuration};
///
/// let policy = BreakerPolicy::builder("payments-api")
///     .failure_rate(0.5)
///     .count_window(50)
///     .minimum_calls(20)
///     .consecutive_failures(5)
///     .slow_calls(Duration::from_secs(2), 0.8)
///     .open_for(OpenDuration::exponential(Duration::from_secs(5), Duration::from_secs(120)))
///     .half_open_probes(3)
///     .build()
///     .unwrap();
/// assert_eq!(policy.name(), "payments-api");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    pub(crate) name: Arc<str>,
    pub(crate) failure_rate: f64,
    pub(crate) slow_call_rate: f64,
    /// `None`: call durations are not measured (no clock read per call).
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) window: Window,
    pub(crate) minimum_calls: u32,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) half_open_probes: u32,
    pub(crate) open_duration: OpenDuration,
}

impl BreakerPolicy {
    /// Starts a policy for the breaker `name` (used in metrics, events and rejections).
    pub fn builder(name: &str) -> BreakerPolicyBuilder {
        BreakerPolicyBuilder {
            policy: BreakerPolicy {
                name: name.into(),
                failure_rate: 0.5,
                slow_call_rate: 1.0,
                slow_call_duration: None,
                window: Window::Count(100),
                minimum_calls: 100,
                consecutive_failures: None,
                half_open_probes: 10,
                open_duration: OpenDuration::fixed(Duration::from_secs(60)),
            },
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Probes admitted at once in half-open.
    pub fn half_open_probes(&self) -> u32 {
        self.half_open_probes
    }
}

/// Builds a [`BreakerPolicy`].
#[derive(Debug, Clone)]
pub struct BreakerPolicyBuilder {
    policy: BreakerPolicy,
}

impl BreakerPolicyBuilder {
    /// Opens when this fraction of calls in the window failed (0 < rate ≤ 1; default 0.5).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.policy.failure_rate = rate;
        self
    }

    /// Counts calls slower than `duration` as slow, and opens when `rate` of the window is slow.
    ///
    /// Off by default, so a closed breaker reads no clock per call.
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.policy.slow_call_duration = Some(duration);
        self.policy.slow_call_rate = rate;
        self
    }

    /// Measures over the last `calls` calls (1 ..= 10 000; default 100).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.policy.window = Window::Count(calls);
        self
    }

    /// Measures over the last `seconds` seconds (1 ..= 3 600), one aggregate per second.
    pub fn time_window(mut self, seconds: u32) -> Self {
        self.policy.window = Window::Time(seconds);
        self
    }

    /// Gives no verdict on rates before this many calls are in the window (default 100; for a
    /// count window at most its size).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.policy.minimum_calls = calls;
        self
    }

    /// Also opens after `n` failures in a row, whatever the rate.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.policy.consecutive_failures = Some(n);
        self
    }

    /// How long to stay open (default: fixed 60 s).
    pub fn open_for(mut self, duration: OpenDuration) -> Self {
        self.policy.open_duration = duration;
        self
    }

    /// Probes admitted at once in half-open (default 10); their failure rate decides.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.policy.half_open_probes = probes;
        self
    }

    /// Validates.
    pub fn build(self) -> Result<BreakerPolicy, PolicyError> {
        let mut p = self.policy;
        let err = |m: String| Err(PolicyError(format!("breaker `{}`: {m}", p.name)));
        if !(p.failure_rate > 0.0 && p.failure_rate <= 1.0) {
            return err(format!(
                "failure_rate must be in (0, 1], got {}",
                p.failure_rate
            ));
        }
        if !(p.slow_call_rate > 0.0 && p.slow_call_rate <= 1.0) {
            return err(format!(
                "slow call rate must be in (0, 1], got {}",
                p.slow_call_rate
            ));
        }
        match p.window {
            Window::Count(n) if !(1..=10_000).contains(&n) => {
                return err(format!("count window must be 1..=10000 calls, got {n}"));
            }
            Window::Time(n) if !(1..=3_600).contains(&n) => {
                return err(format!("time window must be 1..=3600 seconds, got {n}"));
            }
            Window::Count(n) => p.minimum_calls = p.minimum_calls.min(n),
            Window::Time(_) => {}
        }
        p.minimum_calls = p.minimum_calls.max(1);
        if p.consecutive_failures == Some(0) {
            return err("consecutive_failures must be at least 1".into());
        }
        if !(1..=1_000).contains(&p.half_open_probes) {
            return err(format!(
                "half_open_probes must be 1..=1000, got {}",
                p.half_open_probes
            ));
        }
        let d = p.open_duration;
        if d.base.is_zero()
            || d.max < d.base
            || d.multiplier.is_nan()
            || d.multiplier < 1.0
            || !(0.0..=1.0).contains(&d.jitter)
        {
            return err(format!(
                "open duration needs 0 < base <= max, multiplier >= 1, jitter in [0, 1]: {d:?}"
            ));
        }
        Ok(p)
    }
}

/// A [`BreakerPolicy`] as written in configuration (TOML, JSON…); deserialize a
/// `BreakerPolicy` directly to get it validated.
///
/// ```
/// let policy: palisade_breaker::BreakerPolicy = toml::from_str(r#"
///     name = "payments-api"
///     failure_rate = 0.5
///     window = { calls = 50 }            # or { seconds = 60 }
///     minimum_calls = 20
///     consecutive_failures = 5
///     slow_call_duration = "2s"
///     slow_call_rate = 0.8
///     half_open_probes = 3
///     open = { base = "5s", max = "2m", multiplier = 2.0, jitter = 0.1 }
/// "#).unwrap();
/// assert_eq!(policy.half_open_probes(), 3);
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicyConfig {
    /// Breaker name.
    pub name: String,
    /// Failure rate that opens (default 0.5).
    #[serde(default)]
    pub failure_rate: Option<f64>,
    /// `{ calls = n }` or `{ seconds = n }` (default 100 calls).
    #[serde(default)]
    pub window: Option<WindowConfig>,
    /// Calls needed before any rate verdict (default 100).
    #[serde(default)]
    pub minimum_calls: Option<u32>,
    /// Failures in a row that open.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// Calls at least this long are slow (enables slow-call detection).
    #[serde(default, with = "humantime_serde")]
    pub slow_call_duration: Option<Duration>,
    /// Slow-call rate that opens (default 1.0).
    #[serde(default)]
    pub slow_call_rate: Option<f64>,
    /// Probes admitted in half-open (default 10).
    #[serde(default)]
    pub half_open_probes: Option<u32>,
    /// How long to stay open (default: fixed 60 s).
    #[serde(default)]
    pub open: Option<OpenConfig>,
}

/// The window in configuration.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum WindowConfig {
    /// The last `calls` calls.
    Calls {
        /// Window size in calls.
        calls: u32,
    },
    /// The last `seconds` seconds.
    Seconds {
        /// Window size in seconds.
        seconds: u32,
    },
}

/// The open duration in configuration: `"30s"` or `{ base, max, multiplier, jitter }`.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(untagged)]
pub enum OpenConfig {
    /// Always this long.
    Fixed(#[serde(with = "humantime_serde")] Duration),
    /// Growing on consecutive reopenings.
    Growing {
        /// First wait.
        #[serde(with = "humantime_serde")]
        base: Duration,
        /// Longest wait.
        #[serde(with = "humantime_serde")]
        max: Duration,
        /// Growth per reopening (default 2.0).
        #[serde(default = "two")]
        multiplier: f64,
        /// Random spread (default 0.1).
        #[serde(default = "tenth")]
        jitter: f64,
    },
}

fn two() -> f64 {
    2.0
}

fn tenth() -> f64 {
    0.1
}

impl TryFrom<BreakerPolicyConfig> for BreakerPolicy {
    type Error = PolicyError;

    fn try_from(c: BreakerPolicyConfig) -> Result<Self, PolicyError> {
        let mut b = BreakerPolicy::builder(&c.name);
        if let Some(rate) = c.failure_rate {
            b = b.failure_rate(rate);
        }
        match c.window {
            Some(WindowConfig::Calls { calls }) => b = b.count_window(calls),
            Some(WindowConfig::Seconds { seconds }) => b = b.time_window(seconds),
            None => {}
        }
        if let Some(n) = c.minimum_calls {
            b = b.minimum_calls(n);
        }
        if let Some(n) = c.consecutive_failures {
            b = b.consecutive_failures(n);
        }
        if let Some(duration) = c.slow_call_duration {
            b = b.slow_calls(duration, c.slow_call_rate.unwrap_or(1.0));
        }
        if let Some(n) = c.half_open_probes {
            b = b.half_open_probes(n);
        }
        match c.open {
            Some(OpenConfig::Fixed(d)) => b = b.open_for(OpenDuration::fixed(d)),
            Some(OpenConfig::Growing {
                base,
                max,
                multiplier,
                jitter,
            }) => {
                b = b.open_for(OpenDuration {
                    base,
                    multiplier,
                    max,
                    jitter,
                })
            }
            None => {}
        }
        b.build()
    }
}

impl<'de> serde::Deserialize<'de> for BreakerPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let config = BreakerPolicyConfig::deserialize(deserializer)?;
        BreakerPolicy::try_from(config).map_err(serde::de::Error::custom)
    }
}
