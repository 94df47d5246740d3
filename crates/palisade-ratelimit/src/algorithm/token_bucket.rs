use super::{LimitState, MAX_EXACT, Micros, Step, Update, div_ceil};
use crate::error::PolicyError;

const MILLI: u64 = 1_000;
const SECOND: u64 = 1_000_000;

/// A token bucket: bursts of up to `capacity`, refilled at `refill_per_second` (fractional
/// rates such as 0.5/s are fine; resolution 0.001 token/s).
///
/// The bucket starts full. With capacity 10 and 5 tokens/s, ten requests at t=0 empty it,
/// five more pass at t=1 s, and it is full again at t=2 s. Tokens are counted in thousandths
/// and the refill remainder is carried, so frequent calls never lose fractional refill.
///
/// ```
/// use palisade_ratelimit::TokenBucket;
///
/// let bucket = TokenBucket::new(10, 5.0).unwrap();
/// assert_eq!(bucket.capacity(), 10);
/// assert!(TokenBucket::new(10, 0.0).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    capacity: u64,
    refill_per_second: f64,
    /// Refill in milli-tokens per second, `>= 1`.
    refill_milli: u64,
}

impl TokenBucket {
    /// A bucket of `capacity` tokens refilled at `refill_per_second`.
    ///
    /// Capacity is 1 ..= 4 503 599 (so every intermediate stays exact in the Redis script's
    /// doubles); the rate is 0.001 ..= 1 000 000 tokens per second.
    pub fn new(capacity: u64, refill_per_second: f64) -> Result<Self, PolicyError> {
        if capacity == 0 || capacity.saturating_mul(MILLI * SECOND) > MAX_EXACT {
            return Err(PolicyError::invalid(format!(
                "token bucket capacity must be 1..=4503599, got {capacity}"
            )));
        }
        let milli = (refill_per_second * MILLI as f64).round();
        if !milli.is_finite() || !(1.0..=1e9).contains(&milli) {
            return Err(PolicyError::invalid(format!(
                "token bucket refill_per_second must be 0.001..=1000000, got {refill_per_second}"
            )));
        }
        Ok(TokenBucket {
            capacity,
            refill_per_second,
            refill_milli: milli as u64,
        })
    }

    /// The capacity (largest burst).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Tokens added per second.
    pub fn refill_per_second(&self) -> f64 {
        self.refill_per_second
    }

    pub(crate) fn capacity_milli(&self) -> u64 {
        self.capacity * MILLI
    }

    pub(crate) fn refill_milli_per_second(&self) -> u64 {
        self.refill_milli
    }

    /// Microseconds to refill from empty.
    pub fn full_refill(&self) -> Micros {
        div_ceil(self.capacity_milli() * SECOND, self.refill_milli)
    }

    /// Microseconds until `missing_milli` more milli-tokens have accrued, given `carry`.
    fn time_to_accrue(&self, missing_milli: u64, carry: u64) -> Micros {
        let needed = (missing_milli * SECOND).saturating_sub(carry);
        div_ceil(needed, self.refill_milli)
    }

    pub(crate) fn decide(&self, state: Option<&LimitState>, now: Micros, cost: u64) -> Step {
        let cap = self.capacity_milli();
        let (mut tokens, updated_at, mut carry) = match state {
            Some(&LimitState::TokenBucket {
                tokens_milli,
                updated_at,
                carry,
            }) => (tokens_milli.min(cap), updated_at, carry),
            _ => (cap, now, 0),
        };
        // Refill for the time elapsed (none if the clock went backwards).
        let elapsed = now.saturating_sub(updated_at);
        if tokens < cap {
            if elapsed >= self.time_to_accrue(cap - tokens, carry) {
                tokens = cap;
                carry = 0;
            } else {
                let accrued = elapsed * self.refill_milli + carry;
                tokens += accrued / SECOND;
                carry = accrued % SECOND;
            }
        } else {
            carry = 0;
        }
        let updated_at = updated_at.max(now);
        let need = cost.saturating_mul(MILLI);
        let fits = need <= tokens;
        let left = if fits { tokens - need } else { tokens };
        let retry_after = if fits {
            Some(0)
        } else if need > cap {
            None
        } else {
            Some(self.time_to_accrue(need - tokens, carry))
        };
        Step {
            fits,
            remaining_before: tokens / MILLI,
            remaining_after: left / MILLI,
            retry_after,
            reset_before: self.reset(tokens, carry),
            reset_after: self.reset(left, carry),
            update: Update::Set(LimitState::TokenBucket {
                tokens_milli: left,
                updated_at,
                carry,
            }),
        }
    }

    fn reset(&self, tokens: u64, carry: u64) -> Micros {
        let cap = self.capacity_milli();
        if tokens >= cap {
            0
        } else {
            self.time_to_accrue(cap - tokens, carry)
        }
    }
}
