//! What to do after an attempt, pure: the policy, the attempt count, the classifier's verdict,
//! the previous wait and the time left give "stop" or "wait this long, then try again". The
//! layer only adds what needs state — the shared budget — and the clock.

use std::time::Duration;

use palisade_core::backoff;

use crate::{RetryPolicy, classify::RetryDecision};

/// The verdict after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Return this attempt's result.
    Stop(Stop),
    /// Wait this long, then try again (if the retry budget allows).
    Retry(Duration),
}

/// Why an attempt's result is the call's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The classifier says another attempt cannot help (a success, a 4xx, a refusal).
    Final,
    /// `max_attempts` attempts were made.
    AttemptsSpent,
    /// The server asked to wait longer than the policy's `max_server_wait`.
    ServerWaitTooLong,
    /// The wait would end at or after the deadline.
    NoTimeLeft,
}

/// Decides after attempt number `attempts` (1 for the first) whose classification is
/// `decision`. `previous_wait` is the last wait (the policy's base before the first retry; the
/// decorrelated jitter grows from it), `time_left` what remains before the deadline (if any),
/// `unit` a uniform draw in `[0, 1)` for the jitter.
pub fn decide(
    policy: &RetryPolicy,
    attempts: u32,
    decision: RetryDecision,
    previous_wait: Duration,
    time_left: Option<Duration>,
    unit: f64,
) -> Next {
    if attempts >= policy.max_attempts {
        return Next::Stop(Stop::AttemptsSpent);
    }
    let wait = match decision {
        RetryDecision::Stop => return Next::Stop(Stop::Final),
        RetryDecision::Retry(Some(server)) if server > policy.max_server_wait => {
            return Next::Stop(Stop::ServerWaitTooLong);
        }
        RetryDecision::Retry(Some(server)) => server,
        RetryDecision::Retry(None) => backoff::delay(
            policy.jitter,
            policy.base,
            policy.cap,
            attempts - 1,
            previous_wait,
            unit,
        ),
    };
    if time_left.is_some_and(|left| wait >= left) {
        return Next::Stop(Stop::NoTimeLeft);
    }
    Next::Retry(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Jitter;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RetryPolicy {
        RetryPolicy::new(3)
            .backoff(Jitter::Full, 100 * MS, 1000 * MS)
            .max_server_wait(5000 * MS)
    }

    #[test]
    fn exponential_waits_until_the_attempts_are_spent() {
        let p = policy();
        let retry = RetryDecision::Retry(None);
        // Full jitter, the draw at the middle: half of 100 ms, then half of 200 ms.
        assert_eq!(
            decide(&p, 1, retry, 100 * MS, None, 0.5),
            Next::Retry(50 * MS)
        );
        assert_eq!(
            decide(&p, 2, retry, 100 * MS, None, 0.5),
            Next::Retry(100 * MS)
        );
        assert_eq!(
            decide(&p, 3, retry, 200 * MS, None, 0.5),
            Next::Stop(Stop::AttemptsSpent)
        );
        // A final result stops at once, and spent attempts win over it.
        assert_eq!(
            decide(&p, 1, RetryDecision::Stop, MS, None, 0.5),
            Next::Stop(Stop::Final)
        );
        assert_eq!(
            decide(&p, 3, RetryDecision::Stop, MS, None, 0.5),
            Next::Stop(Stop::AttemptsSpent)
        );
    }

    #[test]
    fn the_server_s_wait_is_honoured_up_to_the_cap() {
        let p = policy();
        let asked = |ms| RetryDecision::Retry(Some(ms * MS));
        assert_eq!(
            decide(&p, 1, asked(5000), MS, None, 0.5),
            Next::Retry(5000 * MS)
        );
        assert_eq!(
            decide(&p, 1, asked(5001), MS, None, 0.5),
            Next::Stop(Stop::ServerWaitTooLong)
        );
    }

    #[test]
    fn no_wait_runs_into_the_deadline() {
        let p = policy();
        let retry = RetryDecision::Retry(None);
        assert_eq!(
            decide(&p, 1, retry, MS, Some(51 * MS), 0.5),
            Next::Retry(50 * MS)
        );
        assert_eq!(
            decide(&p, 1, retry, MS, Some(50 * MS), 0.5),
            Next::Stop(Stop::NoTimeLeft)
        );
    }
}
