//! The breaker's state machine, pure and sequential: [`State`], [`Outcome`], and [`Machine`] —
//! the specification that the atomic [`CircuitBreaker`](crate::CircuitBreaker) executes
//! without locks.
//!
//! Both run the same rules, written once here or in [`decide`]: when a closed
//! breaker evaluates its window ([`evaluates`]), how many reopenings an opening counts
//! ([`reopenings_on_opening`]), what each state starts with (see [`Machine`]'s transitions),
//! and the thresholds in `decide`. The machine takes time (µs) and randomness as arguments;
//! the crate's model test drives it and the atomic breaker with the same random sequences and
//! requires the same admissions, waits and states.
//!
//! ```
//! use palisade_breaker::{BreakerPolicy, Outcome, State, state::Machine};
//!
//! let policy = BreakerPolicy::builder("db").count_window(4).minimum_calls(4).build().unwrap();
//! let mut machine = Machine::new(&policy);
//! for _ in 0..4 {
//!     let ticket = machine.admit(&policy, 0).unwrap();
//!     machine.record(&policy, ticket, Outcome::Failure, false, 0, 0.5);
//! }
//! assert_eq!(machine.state(), State::Open);
//! // Open for the policy's base duration (60 s by default, no jitter at the middle draw).
//! let refused = machine.admit(&policy, 1_000_000).unwrap_err();
//! assert_eq!(refused.retry_after.unwrap().as_secs(), 59);
//! ```

use std::{collections::VecDeque, time::Duration};

use serde::Serialize;

use crate::{
    decide::{self, Counts, ProbeVerdict},
    policy::{BreakerPolicy, Window},
};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum State {
    /// Calls flow; outcomes are measured.
    Closed = 0,
    /// Calls are refused until the open duration has passed.
    Open = 1,
    /// A few probe calls decide between closing and opening again.
    HalfOpen = 2,
    /// Set by an operator: every call is refused.
    ForcedOpen = 3,
    /// Set by an operator: every call flows, nothing is measured.
    Disabled = 4,
    /// Set by an operator: calls flow and are measured, the breaker never opens.
    MetricsOnly = 5,
}

impl State {
    #[cfg(feature = "layer")]
    pub(crate) const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
        State::MetricsOnly,
    ];

    /// The name used in metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }
}

/// How a call ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Success,
    /// It failed (a 5xx, a connection error, a timeout…).
    Failure,
    /// Neither: it says nothing about the upstream's health (a cancelled call…).
    Ignored,
}

/// Whether a closed breaker looks at its rates after this call: rates can only reach a
/// threshold on a bad call, or on the call that fills a count window up to `minimum_calls`
/// (`count_window_calls`, `None` for a time window, whose next bad call decides — so good
/// calls stay O(1)).
pub fn evaluates(bad: bool, count_window_calls: Option<u32>, policy: &BreakerPolicy) -> bool {
    bad || count_window_calls == Some(policy.minimum_calls)
}

/// The reopenings in a row an opening from `from` counts (the open duration grows with it):
/// a failed probe round adds one to `reopenings`; any other opening is the first.
pub fn reopenings_on_opening(from: State, reopenings: u32) -> u32 {
    if from == State::HalfOpen {
        reopenings + 1
    } else {
        0
    }
}

/// What kind of call a [`Ticket`] admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// A closed (or metrics-only) breaker's call: counted in the window.
    Measured,
    /// One of the half-open probes.
    Probe,
    /// A disabled breaker's call: counted nowhere.
    Unmeasured,
}

/// The right to make one call, from [`Machine::admit`]: report it with
/// [`Machine::record`] or give it back with [`Machine::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// What kind of call.
    pub kind: Admitted,
    /// The number of transitions when it was admitted: an outcome of a call admitted under an
    /// earlier state says nothing about the current one, and is ignored.
    pub cycle: u64,
}

/// A call refused by [`Machine::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The state that refused it.
    pub state: State,
    /// When to try again (none for a forced-open breaker).
    pub retry_after: Option<Duration>,
}

/// The breaker as a sequential state machine. Times are microseconds on any clock the caller
/// chooses; `unit` arguments are uniform draws in `[0, 1)` for the open duration's jitter.
///
/// Invariants (the atomic breaker keeps the same ones):
/// - `Open`: `open_until` is the end of the open period; the probe counts are zero.
/// - `HalfOpen`: `probes_done <= probes_admitted <= half_open_probes`.
/// - Entering `Closed` empties the window and resets failures in a row and reopenings.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    cycle: u64,
    open_until: u64,
    reopenings: u32,
    consecutive_failures: u32,
    probes_admitted: u32,
    probes_done: u32,
    probe_failures: u32,
    window: PlainWindow,
}

/// A window of outcomes without atomics: the last N calls, or one aggregate per second.
#[derive(Debug, Clone)]
enum PlainWindow {
    Count {
        size: usize,
        calls: VecDeque<(bool, bool)>,
    },
    Time {
        seconds: u64,
        buckets: VecDeque<(u64, Counts)>,
    },
}

impl PlainWindow {
    fn record(&mut self, failed: bool, slow: bool, second: u64) {
        match self {
            PlainWindow::Count { size, calls } => {
                calls.push_back((failed, slow));
                if calls.len() > *size {
                    calls.pop_front();
                }
            }
            PlainWindow::Time { buckets, .. } => {
                if buckets.back().is_none_or(|(s, _)| *s != second) {
                    buckets.push_back((second, Counts::default()));
                }
                let (_, counts) = buckets.back_mut().expect("just pushed");
                counts.calls += 1;
                counts.failures += u32::from(failed);
                counts.slow += u32::from(slow);
            }
        }
    }

    fn counts(&mut self, second: u64) -> Counts {
        match self {
            PlainWindow::Count { calls, .. } => Counts {
                calls: calls.len() as u32,
                failures: calls.iter().filter(|c| c.0).count() as u32,
                slow: calls.iter().filter(|c| c.1).count() as u32,
            },
            PlainWindow::Time { seconds, buckets } => {
                let oldest = (second + 1).saturating_sub(*seconds);
                buckets.retain(|(s, _)| *s >= oldest);
                buckets.iter().filter(|(s, _)| *s <= second).fold(
                    Counts::default(),
                    |mut sum, (_, c)| {
                        sum.calls += c.calls;
                        sum.failures += c.failures;
                        sum.slow += c.slow;
                        sum
                    },
                )
            }
        }
    }

    fn count_window_calls(&self) -> Option<u32> {
        match self {
            PlainWindow::Count { calls, .. } => Some(calls.len() as u32),
            PlainWindow::Time { .. } => None,
        }
    }

    fn clear(&mut self) {
        match self {
            PlainWindow::Count { calls, .. } => calls.clear(),
            PlainWindow::Time { buckets, .. } => buckets.clear(),
        }
    }
}

impl Machine {
    /// A closed breaker with an empty window of `policy`'s shape.
    pub fn new(policy: &BreakerPolicy) -> Self {
        let window = match policy.window {
            Window::Count(n) => PlainWindow::Count {
                size: n as usize,
                calls: VecDeque::new(),
            },
            Window::Time(n) => PlainWindow::Time {
                seconds: u64::from(n),
                buckets: VecDeque::new(),
            },
        };
        Machine {
            state: State::Closed,
            cycle: 0,
            open_until: 0,
            reopenings: 0,
            consecutive_failures: 0,
            probes_admitted: 0,
            probes_done: 0,
            probe_failures: 0,
            window,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Failures in a row (while closed).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Asks to make a call at `now`. An open breaker whose period has ended turns half-open
    /// here, on demand (`may_probe` false — a fleet member without the probe lease — keeps it
    /// open and refuses with `lease_wait`).
    pub fn admit(&mut self, policy: &BreakerPolicy, now: u64) -> Result<Ticket, Refused> {
        self.admit_in_fleet(policy, now, true, Duration::ZERO)
    }

    /// [`admit`](Self::admit) for a fleet member: only with `may_probe` does an ended open
    /// period turn half-open; otherwise the call is refused, to try again after `lease_wait`.
    pub fn admit_in_fleet(
        &mut self,
        policy: &BreakerPolicy,
        now: u64,
        may_probe: bool,
        lease_wait: Duration,
    ) -> Result<Ticket, Refused> {
        let ticket = |kind, cycle| Ok(Ticket { kind, cycle });
        let refused = |state, retry_after| Err(Refused { state, retry_after });
        match self.state {
            State::Closed | State::MetricsOnly => return ticket(Admitted::Measured, self.cycle),
            State::Disabled => return ticket(Admitted::Unmeasured, self.cycle),
            State::ForcedOpen => return refused(State::ForcedOpen, None),
            State::Open if now < self.open_until => {
                return refused(
                    State::Open,
                    Some(Duration::from_micros(self.open_until - now)),
                );
            }
            State::Open if !may_probe => return refused(State::Open, Some(lease_wait)),
            State::Open => {
                self.transition(policy, State::HalfOpen, now, None, 0.5);
            }
            State::HalfOpen => {}
        }
        if self.probes_admitted >= policy.half_open_probes {
            return refused(State::HalfOpen, Some(policy.open_duration.base));
        }
        self.probes_admitted += 1;
        ticket(Admitted::Probe, self.cycle)
    }

    /// Reports how the call of `ticket` ended at `now` (`slow`: it took at least the slow-call
    /// duration). Returns the transition it caused, if any.
    pub fn record(
        &mut self,
        policy: &BreakerPolicy,
        ticket: Ticket,
        outcome: Outcome,
        slow: bool,
        now: u64,
        unit: f64,
    ) -> Option<(State, State)> {
        if ticket.kind == Admitted::Unmeasured {
            return None;
        }
        if outcome == Outcome::Ignored {
            self.release(ticket);
            return None;
        }
        if ticket.cycle != self.cycle {
            return None;
        }
        let failed = outcome == Outcome::Failure;
        let bad = failed || slow;
        match ticket.kind {
            Admitted::Measured => {
                let second = now / 1_000_000;
                self.window.record(failed, slow, second);
                self.consecutive_failures = if failed {
                    self.consecutive_failures + 1
                } else {
                    0
                };
                let evaluate = evaluates(bad, self.window.count_window_calls(), policy);
                if self.state == State::Closed
                    && evaluate
                    && decide::should_open(
                        policy,
                        self.window.counts(second),
                        self.consecutive_failures,
                    )
                {
                    return Some(self.transition(policy, State::Open, now, None, unit));
                }
                None
            }
            Admitted::Probe => {
                self.probe_failures += u32::from(bad);
                self.probes_done += 1;
                let to = match decide::probe_verdict(policy, self.probes_done, self.probe_failures)?
                {
                    ProbeVerdict::Reopen => State::Open,
                    ProbeVerdict::Close => State::Closed,
                };
                Some(self.transition(policy, to, now, None, unit))
            }
            Admitted::Unmeasured => None,
        }
    }

    /// Gives back the ticket of a call that was not made or not reported (cancelled): a
    /// half-open probe slot is free again.
    pub fn release(&mut self, ticket: Ticket) {
        if ticket.kind == Admitted::Probe && ticket.cycle == self.cycle {
            self.probes_admitted = self.probes_admitted.saturating_sub(1);
        }
    }

    /// An operator's (or the fleet's) move to `to` at `now`; `open_for` replaces the policy's
    /// open duration when opening. No-op if already there.
    pub fn set(
        &mut self,
        policy: &BreakerPolicy,
        to: State,
        now: u64,
        open_for: Option<Duration>,
        unit: f64,
    ) -> Option<(State, State)> {
        (self.state != to).then(|| self.transition(policy, to, now, open_for, unit))
    }

    /// Moves to `to`, with what that state starts with.
    fn transition(
        &mut self,
        policy: &BreakerPolicy,
        to: State,
        now: u64,
        open_for: Option<Duration>,
        unit: f64,
    ) -> (State, State) {
        let from = self.state;
        if to == State::Open {
            let reopenings = reopenings_on_opening(from, self.reopenings);
            let wait = open_for
                .unwrap_or_else(|| decide::open_duration(&policy.open_duration, reopenings, unit));
            self.open_until = now + wait.as_micros() as u64;
            if from == State::HalfOpen {
                self.reopenings += 1;
            }
            self.probes_admitted = 0;
            self.probes_done = 0;
            self.probe_failures = 0;
        }
        if to == State::Closed {
            self.window.clear();
            self.consecutive_failures = 0;
            self.reopenings = 0;
        }
        self.state = to;
        self.cycle += 1;
        (from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::OpenDuration;

    const SECOND: u64 = 1_000_000;

    fn policy() -> BreakerPolicy {
        BreakerPolicy::builder("t")
            .time_window(2)
            .minimum_calls(3)
            .failure_rate(0.5)
            .half_open_probes(1)
            .open_for(OpenDuration {
                base: Duration::from_secs(1),
                multiplier: 2.0,
                max: Duration::from_secs(8),
                jitter: 0.0,
            })
            .build()
            .unwrap()
    }

    fn call(m: &mut Machine, p: &BreakerPolicy, now: u64, outcome: Outcome) {
        let ticket = m.admit(p, now).unwrap();
        m.record(p, ticket, outcome, false, now, 0.5);
    }

    #[test]
    fn a_good_call_never_opens_a_time_window_even_when_good_seconds_leave_it() {
        let p = policy();
        let mut m = Machine::new(&p);
        for _ in 0..3 {
            call(&mut m, &p, 0, Outcome::Success);
        }
        call(&mut m, &p, SECOND, Outcome::Failure);
        call(&mut m, &p, SECOND, Outcome::Failure);
        assert_eq!(m.state(), State::Closed, "2 of 5 failed");
        // Second 0 leaves the window: 2 of 3 failed, but a good call does not evaluate.
        call(&mut m, &p, 2 * SECOND, Outcome::Success);
        assert_eq!(m.state(), State::Closed);
        call(&mut m, &p, 2 * SECOND, Outcome::Failure);
        assert_eq!(m.state(), State::Open);
    }

    #[test]
    fn a_fleet_member_without_the_lease_stays_open() {
        let p = policy();
        let mut m = Machine::new(&p);
        m.set(&p, State::Open, 0, Some(Duration::from_secs(1)), 0.5);
        let lease_wait = Duration::from_millis(250);
        let refused = m
            .admit_in_fleet(&p, 2 * SECOND, false, lease_wait)
            .unwrap_err();
        assert_eq!(
            refused,
            Refused {
                state: State::Open,
                retry_after: Some(lease_wait)
            }
        );
        assert_eq!(m.state(), State::Open);
        let probe = m.admit_in_fleet(&p, 2 * SECOND, true, lease_wait).unwrap();
        assert_eq!(probe.kind, Admitted::Probe);
        assert_eq!(m.state(), State::HalfOpen);
    }

    #[test]
    fn a_probe_from_an_earlier_round_frees_no_slot_in_this_one() {
        let p = policy();
        let mut m = Machine::new(&p);
        m.set(&p, State::Open, 0, Some(Duration::from_secs(1)), 0.5);
        let stale = m.admit(&p, SECOND).unwrap();
        assert_eq!(stale.kind, Admitted::Probe);
        // That round ends (another report reopens it), a new one starts and fills its slot.
        m.set(&p, State::Open, SECOND, Some(Duration::from_secs(1)), 0.5);
        let fresh = m.admit(&p, 2 * SECOND).unwrap();
        assert_eq!(fresh.kind, Admitted::Probe);
        m.release(stale);
        assert!(
            m.admit(&p, 2 * SECOND).is_err(),
            "the one slot is still taken"
        );
        m.release(fresh);
        assert!(m.admit(&p, 2 * SECOND).is_ok());
    }

    #[test]
    fn states_have_their_metric_names() {
        let names: Vec<_> = State::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "closed",
                "open",
                "half_open",
                "forced_open",
                "disabled",
                "metrics_only"
            ]
        );
    }
}
