//! The answer to a rate-limit check.

use std::time::Duration;

use crate::{
    algorithm::{Micros, Step},
    policy::{MAX_LIMITS, Policy},
};

/// How one limit of the policy stands after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitOutcome {
    /// Whether the request's cost fitted this limit.
    pub fits: bool,
    /// Units left in this limit (after consumption when the request was allowed).
    pub remaining: u64,
    /// Microseconds until this limit is fully restored.
    pub reset_after: Micros,
    /// When the cost did not fit: microseconds until it would, `None` if it never can.
    pub retry_after: Option<Micros>,
}

impl LimitOutcome {
    /// Seconds until more quota, as the `RateLimit` field's `t`: the wait for a limit that
    /// refused, else the time until it is fully restored. Rounded up.
    pub fn reset_seconds(&self) -> u64 {
        let micros = if self.fits {
            self.reset_after
        } else {
            self.retry_after.unwrap_or(self.reset_after)
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
    pub(crate) fn from_steps<'a>(
        policy: &Policy,
        steps: impl IntoIterator<Item = &'a Step>,
    ) -> Self {
        let steps: Vec<&Step> = steps.into_iter().collect();
        let allowed = steps.iter().all(|s| s.fits);
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
        if self.allowed {
            return None;
        }
        let mut wait = 0;
        for o in self.limits().iter().filter(|o| !o.fits) {
            wait = wait.max(o.retry_after?);
        }
        Some(Duration::from_micros(wait))
    }

    /// Whether the request was denied because its cost exceeds a limit's capacity.
    pub fn is_never(&self) -> bool {
        self.limits()
            .iter()
            .any(|o| !o.fits && o.retry_after.is_none())
    }

    /// The names of the limits that refused.
    pub fn violated(&self) -> impl Iterator<Item = &str> {
        self.policy
            .limits()
            .iter()
            .zip(self.limits())
            .filter(|(_, o)| !o.fits)
            .map(|(l, _)| l.name())
    }
}

fn outcome(step: &Step, allowed: bool) -> LimitOutcome {
    LimitOutcome {
        fits: step.fits,
        remaining: if allowed {
            step.remaining_after
        } else {
            step.remaining_before
        },
        reset_after: if allowed {
            step.reset_after
        } else {
            step.reset_before
        },
        retry_after: if step.fits { None } else { step.retry_after },
    }
}
