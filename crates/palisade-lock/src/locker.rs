//! [`Locker`]: what every lock backend offers, and the waiting and scoped forms built on it.

use std::{future::Future, time::Duration};

use palisade_core::{
    backoff::{self, Jitter},
    random,
};
use tokio::time::Instant;

use crate::{HeldLock, LockError, LockGuard};

/// A lock backend: Redis, Redlock, PostgreSQL advisory locks or memory.
///
/// Backends implement [`try_acquire`](Self::try_acquire); waiting with jittered backoff
/// ([`acquire`](Self::acquire)), the scoped form ([`run`](Self::run)) and several names at once
/// ([`acquire_all`](Self::acquire_all)) come with the trait.
pub trait Locker: Clone + Send + Sync + 'static {
    /// One attempt: the guard, or `Ok(None)` when someone else holds the lock.
    fn try_acquire(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<LockGuard>, LockError>> + Send;

    /// Retries [`try_acquire`](Self::try_acquire) with jittered exponential backoff (from 5 ms, at
    /// most 200 ms apart) for up to `wait`; still held → [`LockError::Busy`].
    fn acquire(
        &self,
        name: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<LockGuard, LockError>> + Send {
        async move {
            let started = Instant::now();
            let mut retry = 0;
            loop {
                if let Some(guard) = self.try_acquire(name).await? {
                    return Ok(guard);
                }
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(LockError::Busy {
                        name: name.to_owned(),
                        waited,
                    });
                }
                // Full jitter, 5 ms doubling to 200 ms (at least 5 % of the ceiling), never past
                // the deadline.
                let pause = backoff::delay(
                    Jitter::Full,
                    Duration::from_millis(5),
                    Duration::from_millis(200),
                    retry,
                    Duration::ZERO,
                    random::unit().max(0.05),
                );
                tokio::time::sleep(pause.min(wait - waited)).await;
                retry += 1;
            }
        }
    }

    /// Takes the lock (waiting up to `wait`), runs `work` with a [`HeldLock`] (the name, the
    /// fencing token, the lost-lock token), and releases the lock. If the lock is lost meanwhile, `work` is **cancelled** (dropped at its next
    /// await) and the result is [`LockError::Lost`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_lock::{Locker, MemoryLock};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade_lock::LockError> {
    /// let locks = MemoryLock::new(Duration::from_secs(10));
    /// let charged = locks
    ///     .run("payment:order-123", Duration::from_secs(1), |lock| async move {
    ///         // Pass the fencing token along with every write the lock protects.
    ///         lock.fencing_token
    ///     })
    ///     .await?;
    /// assert_eq!(charged, Some(1));
    /// # Ok(()) }
    /// ```
    fn run<T, F, Fut>(
        &self,
        name: &str,
        wait: Duration,
        work: F,
    ) -> impl Future<Output = Result<T, LockError>> + Send
    where
        T: Send,
        F: FnOnce(HeldLock) -> Fut + Send,
        Fut: Future<Output = T> + Send,
    {
        async move {
            let guard = self.acquire(name, wait).await?;
            let lost = guard.lost();
            let outcome = tokio::select! {
                biased;
                () = lost => None,
                value = work(guard.held_lock()) => Some(value),
            };
            match outcome {
                Some(value) => {
                    guard.release().await?;
                    Ok(value)
                }
                None => {
                    drop(guard);
                    Err(LockError::Lost(name.to_owned()))
                }
            }
        }
    }

    /// Takes every lock in `names` — in sorted order, so two callers locking overlapping sets
    /// can never deadlock — waiting up to `wait` in all. On failure the locks already taken are
    /// released.
    fn acquire_all(
        &self,
        names: &[&str],
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<LockGuard>, LockError>> + Send {
        let mut sorted: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        sorted.sort();
        sorted.dedup();
        async move {
            let started = Instant::now();
            let mut guards = Vec::with_capacity(sorted.len());
            for name in &sorted {
                let left = wait.saturating_sub(started.elapsed());
                match self.acquire(name, left).await {
                    Ok(guard) => guards.push(guard),
                    Err(error) => {
                        for guard in guards {
                            let _ = guard.release().await;
                        }
                        return Err(error);
                    }
                }
            }
            Ok(guards)
        }
    }
}

/// An owner token unique across processes.
pub(crate) fn owner_token() -> String {
    palisade_core::token::unique_token()
}
