//! The answer to a rate-limit check.

use std::time::Duration;

use crate::{
    algorithm::{Micros, Step},
    policy::{MAX_LIMITS, Policy},
};

/// How one limit of the policy stands after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitOutcome {
    remaining: u64,
    reset_after: Micros,
    /// 0: the cost fitted; `NEVER`: it never can; else µs until it would.
    wait: Micros,
}

const NEVER: Micros = Micros::MAX;

impl LimitOutcome {
    /// An outcome: `retry_after` is `None` when the cost fitted, `Some(None)` when it never
    /// can, `Some(Some(µs))` when it will after that wait.
    pub(crate) fn new(
        remaining: u64,
        reset_after: Micros,
        retry_after: Option<Option<Micros>>,
    ) -> Self {
        let wait = match retry_after {
            None => 0,
            Some(None) => NEVER,
            Some(Some(wait)) => wait.clamp(1, NEVER - 1),
        };
        LimitOutcome {
            remaining,
            reset_after,
            wait,
        }
    }

    /// Whether the request's cost fitted this limit.
    pub fn fits(&self) -> bool {
        self.wait == 0
    }

    /// Units left in this limit (after consumption when the request was allowed).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Time until this limit is fully restored.
    pub fn reset_after(&self) -> Duration {
        Duration::from_micros(self.reset_after)
    }

    /// When the cost did not fit: the wait until it would; `None` if it fitted or never can
    /// ([`is_never`](Self::is_never)).
    pub fn retry_after(&self) -> Option<Duration> {
        (self.wait != 0 && self.wait != NEVER).then(|| Duration::from_micros(self.wait))
    }

    /// Whether the cost exceeds this limit's capacity, so it can never fit.
    pub fn is_never(&self) -> bool {
        self.wait == NEVER
    }

    pub(crate) fn reset_micros(&self) -> Micros {
        self.reset_after
    }

    /// Seconds until more quota, as the `RateLimit` field's `t`: the wait for a limit that
    /// refused, else the time until it is fully restored. Rounded up.
    pub fn reset_seconds(&self) -> u64 {
        let micros = if self.wait == 0 || self.wait == NEVER {
            self.reset_after
        } else {
            self.wait
        };
        micros.div_ceil(1_000_000)
    }
}

/// The result of a check: allowed or not, and how every limit of the policy stands.
///
/// A denied request consumed nothing; `retry_after` says when the same cost would pass.
#[derive(Debug, Clone)]
pub struct Decision {
    allowed: bool,
    policy: Policy,
    outcomes: [LimitOutcome; MAX_LIMITS],
}

impl Decision {
    /// Assembles a decision from the steps of every limit (in policy order).
    pub(crate) fn from_steps<'a, I>(policy: &Policy, steps: I) -> Self
    where
        I: IntoIterator<Item = &'a Step> + Clone,
    {
        let allowed = steps.clone().into_iter().all(|s| s.fits);
        let mut outcomes = [LimitOutcome::default(); MAX_LIMITS];
        for (slot, step) in outcomes.iter_mut().zip(steps) {
            *slot = outcome(step, allowed);
        }
        Decision {
            allowed,
            policy: policy.clone(),
            outcomes,
        }
    }

    /// Assembles a decision from per-limit outcomes.
    pub(crate) fn from_outcomes(
        policy: &Policy,
        allowed: bool,
        outcomes: [LimitOutcome; MAX_LIMITS],
    ) -> Self {
        Decision {
            allowed,
            policy: policy.clone(),
            outcomes,
        }
    }

    /// Whether the request may proceed (its cost was taken from every limit).
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The policy checked.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Per-limit outcomes, in the policy's order.
    pub fn limits(&self) -> &[LimitOutcome] {
        &self.outcomes[..self.policy.limits().len()]
    }

    /// Units left in the tightest limit.
    pub fn remaining(&self) -> u64 {
        self.limits().iter().map(|o| o.remaining).min().unwrap_or(0)
    }

    /// For a denied request: how long until the same cost would pass (the longest wait among
    /// the limits that refused). `None` when allowed, or when the cost exceeds a limit's
    /// capacity and can never pass ([`is_never`](Self::is_never)).
    pub fn retry_after(&self) -> Option<Duration> {
        if self.allowed || self.is_never() {
            return None;
        }
        self.limits().iter().filter_map(|o| o.retry_after()).max()
    }

    /// Whether the request was denied because its cost exceeds a limit's capacity.
    pub fn is_never(&self) -> bool {
        self.limits().iter().any(|o| o.is_never())
    }

    /// The names of the limits that refused.
    pub fn violated(&self) -> impl Iterator<Item = &str> {
        self.policy
            .limits()
            .iter()
            .zip(self.limits())
            .filter(|(_, o)| !o.fits())
            .map(|(l, _)| l.name())
    }
}

fn outcome(step: &Step, allowed: bool) -> LimitOutcome {
    LimitOutcome::new(
        if allowed {
            step.remaining_after
        } else {
            step.remaining_before
        },
        if allowed {
            step.reset_after
        } else {
            step.reset_before
        },
        (!step.fits).then_some(step.retry_after),
    )
}
