//! [`Permit`]: the right to make one call — how it is granted
//! ([`CircuitBreaker::try_acquire`]) and how its outcome is counted.

use std::{fmt, sync::atomic::Ordering::*, time::Duration};

use tokio::time::Instant;

use crate::{
    CircuitBreaker, CircuitOpen, Outcome, State,
    breaker::state_of,
    decide::{self, ProbeVerdict},
    state,
    window::{FAILED, Outcomes, SLOW},
};

/// The right to make one call; report its outcome with [`record`](Permit::record). Dropping
/// it unreported (a cancelled call) frees a half-open probe slot and counts nothing.
pub struct Permit {
    pub(crate) breaker: CircuitBreaker,
    pub(crate) word: u64,
    pub(crate) kind: PermitKind,
    /// When the call started, if call durations are measured (slow-call detection).
    pub(crate) started: Option<Instant>,
    pub(crate) done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    Measured,
    Probe,
    Unmeasured,
}

impl CircuitBreaker {
    /// Asks to make a call: a [`Permit`], or [`CircuitOpen`] with the time until the next probe.
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        let inner = &*self.inner;
        loop {
            let word = inner.word.load(Acquire);
            let permit = |kind| Permit {
                breaker: self.clone(),
                word,
                kind,
                started: inner.policy.slow_call_duration.map(|_| Instant::now()),
                done: false,
            };
            match state_of(word) {
                State::Closed | State::MetricsOnly => return Ok(permit(PermitKind::Measured)),
                State::Disabled => return Ok(permit(PermitKind::Unmeasured)),
                State::ForcedOpen => return Err(self.reject(State::ForcedOpen, None)),
                State::Open => {
                    let now = self.now();
                    let until = inner.open_until.load(Acquire);
                    if now < until {
                        let wait = Duration::from_micros(until - now);
                        return Err(self.reject(State::Open, Some(wait)));
                    }
                    if let Some(fleet) = inner.fleet.get()
                        && !fleet.may_probe.load(Acquire)
                    {
                        // Another instance probes for the fleet (or the lease is not ours yet).
                        fleet.wants_probe.store(true, Release);
                        return Err(self.reject(State::Open, Some(fleet.interval)));
                    }
                    self.transition(word, State::HalfOpen);
                }
                State::HalfOpen => {
                    let admitted = inner.probes_admitted.load(Acquire);
                    if admitted >= inner.policy.half_open_probes {
                        let wait = inner.policy.open_duration.base;
                        return Err(self.reject(State::HalfOpen, Some(wait)));
                    }
                    // If the breaker moved on meanwhile, the slot belongs to no cycle: retry.
                    if inner
                        .probes_admitted
                        .compare_exchange(admitted, admitted + 1, AcqRel, Acquire)
                        .is_ok()
                        && inner.word.load(Acquire) == word
                    {
                        return Ok(permit(PermitKind::Probe));
                    }
                }
            }
        }
    }
}

impl Permit {
    /// Reports how the call ended; its duration (since the permit was granted) decides
    /// whether it was slow.
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        let slow = match (self.started, self.breaker.inner.policy.slow_call_duration) {
            (Some(started), Some(threshold)) => started.elapsed() >= threshold,
            _ => false,
        };
        self.finish(outcome, slow);
    }

    fn finish(&self, outcome: Outcome, slow: bool) {
        let breaker = &self.breaker;
        let inner = &*breaker.inner;
        if self.kind == PermitKind::Unmeasured {
            return;
        }
        if outcome == Outcome::Ignored {
            inner.metrics.calls[3].increment(1);
            self.release_probe();
            return;
        }
        let mut bits = 0;
        if outcome == Outcome::Failure {
            bits |= FAILED;
        }
        if slow {
            bits |= SLOW;
        }
        let metric = if bits & FAILED != 0 {
            1
        } else if bits & SLOW != 0 {
            2
        } else {
            0
        };
        inner.metrics.calls[metric].increment(1);
        // An outcome from a call admitted under an earlier state says nothing about this one.
        let word = inner.word.load(Acquire);
        if word != self.word {
            return;
        }
        let bad = bits != 0;
        match self.kind {
            PermitKind::Measured => {
                // Only a time window needs the clock.
                let second = match inner.window {
                    Outcomes::Time(_) => breaker.now() / 1_000_000,
                    Outcomes::Count(_) => 0,
                };
                inner.window.record(bits, second);
                let consecutive = if bits & FAILED != 0 {
                    inner.consecutive_failures.fetch_add(1, AcqRel) + 1
                } else {
                    // Read first: a store on every success would bounce the cache line
                    // between cores even when nothing changes.
                    if inner.consecutive_failures.load(Relaxed) != 0 {
                        inner.consecutive_failures.store(0, Release);
                    }
                    0
                };
                // The rule of `state::evaluates`: good calls stay O(1).
                if state_of(word) == State::Closed {
                    let count_window_calls = match &inner.window {
                        Outcomes::Count(w) => Some(w.calls()),
                        Outcomes::Time(_) => None,
                    };
                    let evaluate = state::evaluates(bad, count_window_calls, &inner.policy);
                    if evaluate
                        && decide::should_open(
                            &inner.policy,
                            inner.window.counts(second),
                            consecutive,
                        )
                    {
                        breaker.transition(word, State::Open);
                    }
                }
            }
            PermitKind::Probe => {
                let failures =
                    inner.probe_failures.fetch_add(u32::from(bad), AcqRel) + u32::from(bad);
                let done = inner.probes_done.fetch_add(1, AcqRel) + 1;
                match decide::probe_verdict(&inner.policy, done, failures) {
                    Some(ProbeVerdict::Reopen) => {
                        breaker.transition(word, State::Open);
                    }
                    Some(ProbeVerdict::Close) => {
                        breaker.transition(word, State::Closed);
                    }
                    None => {}
                }
            }
            PermitKind::Unmeasured => {}
        }
    }

    fn release_probe(&self) {
        let inner = &*self.breaker.inner;
        if self.kind == PermitKind::Probe && inner.word.load(Acquire) == self.word {
            let _ = inner
                .probes_admitted
                .fetch_update(AcqRel, Acquire, |n| n.checked_sub(1));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.release_probe();
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("kind", &self.kind).finish()
    }
}
