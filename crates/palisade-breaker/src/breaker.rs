//! [`CircuitBreaker`]: the shared state every clone of a layer (and the direct API) uses.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering::*},
    },
    time::Duration,
};

use metrics::{Counter, Gauge};
use serde::Serialize;
use tokio::{sync::broadcast, time::Instant};

use crate::{
    CircuitOpen,
    decide::{self, Counts},
    policy::BreakerPolicy,
    state::{self, State},
    window::Outcomes,
};

/// The state in a packed word (low 8 bits).
pub(crate) fn state_of(word: u64) -> State {
    State::ALL[(word & 0xff) as usize % 6]
}

/// A state change, published to [`CircuitBreaker::subscribe`] listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

/// A breaker's state for a health endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The breaker's name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// The window's counts.
    pub counts: Counts,
    /// Failures / calls in the window.
    pub failure_rate: f64,
    /// Slow calls / calls in the window.
    pub slow_call_rate: f64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Milliseconds until an open breaker lets a probe through.
    pub retry_after_ms: Option<u64>,
}

/// A circuit breaker: cheap to clone, shared by every clone of its layer.
///
/// In `Closed` the admission path is one atomic load and the record path a handful of atomic
/// adds: no lock, no allocation. Time comes from `tokio::time`, so tests pause it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use palisade_breaker::{BreakerPolicy, CircuitBreaker, Outcome, State};
///
/// let breaker = CircuitBreaker::new(
///     BreakerPolicy::builder("db").count_window(4).minimum_calls(4).build().unwrap(),
/// );
/// for _ in 0..4 {
///     let permit = breaker.try_acquire().unwrap();
///     permit.record(Outcome::Failure);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let refused = breaker.try_acquire().unwrap_err();
/// assert!(refused.retry_after.unwrap().as_secs() > 0);
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) policy: BreakerPolicy,
    /// The `breaker` label of this breaker's metrics: its name, or for a per-key breaker the
    /// registry's policy name (a key never goes into a label: the series would be unbounded).
    pub(crate) metrics_name: Arc<str>,
    pub(crate) epoch: Instant,
    /// The state (low 8 bits) and the number of transitions so far (the rest). One CAS moves
    /// both, so an outcome from a call admitted under an earlier state is recognised and
    /// never counted against the new one.
    pub(crate) word: AtomicU64,
    /// While `Open`: when (µs since `epoch`) probing may start. Written before the state.
    pub(crate) open_until: AtomicU64,
    /// Reopenings in a row since the breaker last closed (grows the open duration).
    pub(crate) reopenings: AtomicU32,
    pub(crate) consecutive_failures: AtomicU32,
    /// Half-open bookkeeping, zeroed when the breaker opens (before any probe can start).
    pub(crate) probes_admitted: AtomicU32,
    pub(crate) probes_done: AtomicU32,
    pub(crate) probe_failures: AtomicU32,
    pub(crate) window: Outcomes,
    pub(crate) events: broadcast::Sender<Transition>,
    pub(crate) metrics: Metrics,
    /// Set when the breaker joins a fleet (see `Fleet`): its probe gate and outbox.
    pub(crate) fleet: std::sync::OnceLock<FleetLink>,
}

/// What the local state machine shares with a fleet synchroniser.
pub(crate) struct FleetLink {
    /// Whether this instance holds the fleet's probe lease: without it, an expired open
    /// period does not turn into half-open here.
    pub(crate) may_probe: std::sync::atomic::AtomicBool,
    /// Whether a call was refused here for want of the probe lease since the last transition:
    /// only an instance with demand asks for the lease, so an idle one never holds the fleet
    /// up by winning a lease it will not use.
    pub(crate) wants_probe: std::sync::atomic::AtomicBool,
    /// Openings and closings to publish.
    pub(crate) outbox: tokio::sync::mpsc::UnboundedSender<FleetEvent>,
    /// How often the fleet state is read (the retry-after while waiting for the lease).
    pub(crate) interval: Duration,
}

/// A local transition the fleet must hear about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FleetEvent {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Opened(Duration),
    Closed,
}

pub(crate) struct Metrics {
    state: [Gauge; 6],
    pub(crate) calls: [Counter; 4],
    rejections: Counter,
}

impl CircuitBreaker {
    /// A closed breaker enforcing `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        let name = policy.name.clone();
        Self::with_metrics_name(policy, name)
    }

    /// A closed breaker whose metrics carry `metrics_name` as their `breaker` label. The state
    /// gauges count breakers (each adds one to its current state), so several breakers sharing
    /// a label add up: `palisade_breaker_state{state="open"}` is how many are open.
    pub(crate) fn with_metrics_name(policy: BreakerPolicy, metrics_name: Arc<str>) -> Self {
        let name = metrics_name.to_string();
        let metrics = Metrics {
            state: State::ALL.map(|s| {
                metrics::gauge!("palisade_breaker_state", "breaker" => name.clone(), "state" => s.as_str())
            }),
            calls: ["success", "failure", "slow", "ignored"].map(|o| {
                metrics::counter!("palisade_breaker_calls_total", "breaker" => name.clone(), "outcome" => o)
            }),
            rejections: metrics::counter!("palisade_breaker_rejections_total", "breaker" => name.clone()),
        };
        metrics.state[State::Closed as usize].increment(1.0);
        CircuitBreaker {
            inner: Arc::new(Inner {
                window: Outcomes::new(policy.window),
                policy,
                metrics_name,
                epoch: Instant::now(),
                word: AtomicU64::new(State::Closed as u64),
                open_until: AtomicU64::new(0),
                reopenings: AtomicU32::new(0),
                consecutive_failures: AtomicU32::new(0),
                probes_admitted: AtomicU32::new(0),
                probes_done: AtomicU32::new(0),
                probe_failures: AtomicU32::new(0),
                events: broadcast::channel(64).0,
                metrics,
                fleet: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &BreakerPolicy {
        &self.inner.policy
    }

    /// The current state.
    pub fn state(&self) -> State {
        state_of(self.inner.word.load(Acquire))
    }

    /// State transitions from now on. Nothing is built or sent per call; a slow listener
    /// loses the oldest transitions (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.inner.events.subscribe()
    }

    pub(crate) fn now(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.inner.epoch)
            .as_micros() as u64
    }

    pub(crate) fn reject(&self, state: State, retry_after: Option<Duration>) -> CircuitOpen {
        self.inner.metrics.rejections.increment(1);
        CircuitOpen {
            breaker: self.inner.policy.name.clone(),
            state,
            retry_after,
        }
    }

    /// Moves from exactly `from` (state and transition count) to `to`; false if another
    /// thread moved first.
    pub(crate) fn transition(&self, from: u64, to: State) -> bool {
        self.transition_with(from, to, None)
    }

    /// As [`transition`](Self::transition), opening for `wait` instead of the policy's duration.
    fn transition_with(&self, from: u64, to: State, wait: Option<Duration>) -> bool {
        let inner = &*self.inner;
        let from_state = state_of(from);
        let mut opened_for = Duration::ZERO;
        if to == State::Open {
            // The first opening waits the base duration; each failed probe round grows it.
            let reopenings =
                state::reopenings_on_opening(from_state, inner.reopenings.load(Acquire));
            let wait = wait.unwrap_or_else(|| {
                decide::open_duration(
                    &inner.policy.open_duration,
                    reopenings,
                    palisade_core::random::unit(),
                )
            });
            opened_for = wait;
            // Published before the state, so nobody sees `Open` with a stale deadline.
            inner
                .open_until
                .store(self.now() + wait.as_micros() as u64, Release);
        }
        let next = ((from >> 8) + 1) << 8 | to as u64;
        if inner
            .word
            .compare_exchange(from, next, AcqRel, Acquire)
            .is_err()
        {
            return false;
        }
        match to {
            State::Open => {
                if from_state == State::HalfOpen {
                    inner.reopenings.fetch_add(1, AcqRel);
                }
                inner.probes_admitted.store(0, Release);
                inner.probes_done.store(0, Release);
                inner.probe_failures.store(0, Release);
            }
            State::Closed => {
                inner.window.clear();
                inner.consecutive_failures.store(0, Release);
                inner.reopenings.store(0, Release);
            }
            _ => {}
        }
        if let Some(fleet) = inner.fleet.get() {
            match to {
                State::Open => {
                    fleet.may_probe.store(false, Release);
                    fleet.wants_probe.store(false, Release);
                    let _ = fleet.outbox.send(FleetEvent::Opened(opened_for));
                }
                State::Closed => {
                    fleet.may_probe.store(false, Release);
                    fleet.wants_probe.store(false, Release);
                    let _ = fleet.outbox.send(FleetEvent::Closed);
                }
                _ => {}
            }
        }
        self.announce(from_state, to);
        true
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// Another instance opened the breaker until `wait` from now: open here too (or stay open
    /// at least that long).
    pub(crate) fn open_remotely(&self, wait: Duration) {
        let inner = &*self.inner;
        loop {
            let word = inner.word.load(Acquire);
            match state_of(word) {
                State::Closed => {
                    if self.transition_with(word, State::Open, Some(wait)) {
                        return;
                    }
                }
                State::Open => {
                    inner
                        .open_until
                        .fetch_max(self.now() + wait.as_micros() as u64, AcqRel);
                    return;
                }
                _ => return,
            }
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// Another instance's probe round succeeded after the last fleet opening: an open breaker
    /// closes here too, without a probe round of its own.
    pub(crate) fn close_remotely(&self) {
        let word = self.inner.word.load(Acquire);
        if state_of(word) == State::Open {
            // Lost to a concurrent transition: the next sync looks again.
            self.transition(word, State::Closed);
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// Microseconds until an open breaker's period ends (0 if it has or it is not open).
    pub(crate) fn open_remaining(&self) -> Duration {
        let until = self.inner.open_until.load(Acquire);
        Duration::from_micros(until.saturating_sub(self.now()))
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn inner_fleet(&self) -> &std::sync::OnceLock<FleetLink> {
        &self.inner.fleet
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<CircuitBreaker> {
        weak.upgrade().map(|inner| CircuitBreaker { inner })
    }

    fn announce(&self, from: State, to: State) {
        let inner = &*self.inner;
        inner.metrics.state[from as usize].decrement(1.0);
        inner.metrics.state[to as usize].increment(1.0);
        metrics::counter!(
            "palisade_breaker_transitions_total",
            "breaker" => inner.metrics_name.to_string(),
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        if to == State::Open {
            tracing::warn!(target: "palisade::breaker", breaker = %inner.policy.name, from = from.as_str(), to = to.as_str(), "circuit opened");
        } else {
            tracing::info!(target: "palisade::breaker", breaker = %inner.policy.name, from = from.as_str(), to = to.as_str(), "circuit state changed");
        }
        let _ = inner.events.send(Transition {
            breaker: inner.policy.name.clone(),
            from,
            to,
        });
    }

    fn set(&self, to: State) {
        loop {
            let word = self.inner.word.load(Acquire);
            if state_of(word) == to || self.transition(word, to) {
                return;
            }
        }
    }

    /// Refuses every call until [`reset`](Self::reset) (an operator's kill switch).
    pub fn force_open(&self) {
        self.set(State::ForcedOpen);
    }

    /// Lets every call through and measures nothing, until [`reset`](Self::reset).
    pub fn disable(&self) {
        self.set(State::Disabled);
    }

    /// Measures and publishes but never opens, until [`reset`](Self::reset).
    pub fn metrics_only(&self) {
        self.set(State::MetricsOnly);
    }

    /// Back to `Closed` with an empty window.
    pub fn reset(&self) {
        self.set(State::Closed);
    }

    /// The breaker's state for a health endpoint.
    pub fn snapshot(&self) -> Snapshot {
        let inner = &*self.inner;
        let state = self.state();
        let counts = inner.window.counts(self.now() / 1_000_000);
        let retry_after_ms = (state == State::Open).then(|| {
            inner
                .open_until
                .load(Acquire)
                .saturating_sub(self.now())
                .div_ceil(1_000)
        });
        Snapshot {
            name: inner.policy.name.to_string(),
            state,
            counts,
            failure_rate: counts.failure_rate(),
            slow_call_rate: counts.slow_rate(),
            consecutive_failures: inner.consecutive_failures.load(Relaxed),
            retry_after_ms,
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.policy.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    // A breaker that goes (evicted from a registry) leaves the state count it added.
    fn drop(&mut self) {
        let state = state_of(*self.word.get_mut());
        self.metrics.state[state as usize].decrement(1.0);
    }
}

/// A random identifier for this process's fleet lease.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn instance_id() -> u64 {
    palisade_core::random::u64()
}
