//! [`RetryPolicy`].

use std::time::Duration;

use crate::backoff::Jitter;

/// How many attempts, how far apart, within what time.
///
/// ```
/// use std::time::Duration;
/// use palisade_retry::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::new(3)
///     .backoff(Jitter::Full, Duration::from_millis(100), Duration::from_secs(2))
///     .deadline(Duration::from_secs(5))
///     .attempt_timeout(Duration::from_secs(1));
/// assert_eq!(policy.max_attempts(), 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) jitter: Jitter,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_server_wait: Duration,
    pub(crate) body_limit: usize,
    pub(crate) any_method: bool,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (the first included; at least 1), full-jitter
    /// backoff from 100 ms capped at 10 s, server waits capped at 30 s, bodies up to 64 KiB
    /// replayed, only idempotent methods or requests with an `Idempotency-Key` retried.
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            jitter: Jitter::Full,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            deadline: None,
            attempt_timeout: None,
            max_server_wait: Duration::from_secs(30),
            body_limit: 64 * 1024,
            any_method: false,
        }
    }

    /// Attempts in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff between attempts.
    pub fn backoff(mut self, jitter: Jitter, base: Duration, cap: Duration) -> Self {
        self.jitter = jitter;
        self.base = base;
        self.cap = cap.max(base);
        self
    }

    /// An overall deadline covering every attempt and every wait: no attempt starts, and no
    /// wait is taken, that would end after it.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Bounds each attempt; an attempt that runs out fails with [`AttemptTimedOut`](crate::AttemptTimedOut)
    /// and may be retried.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The longest `Retry-After` / `grpc-retry-pushback-ms` honoured (default 30 s); a longer
    /// one ends the retries.
    pub fn max_server_wait(mut self, wait: Duration) -> Self {
        self.max_server_wait = wait;
        self
    }

    /// Buffers request bodies up to `bytes` to replay them (default 64 KiB); larger or failing
    /// bodies are sent once and not retried.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Retries every method, not only GET, HEAD, OPTIONS, PUT, DELETE and requests carrying an
    /// `Idempotency-Key`. Only for upstreams you know to be idempotent.
    pub fn retry_any_method(mut self) -> Self {
        self.any_method = true;
        self
    }
}
