//! [`LockGuard`]: a held lock, its fencing token, its watchdog and its lost-lease signal.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::LockError;

/// A boxed future of a backend operation on a held lock.
pub type HeldFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LockError>> + Send + 'a>>;

/// What a backend does with a lock it granted. Implemented by each backend; users only see
/// [`LockGuard`].
pub trait Held: Send + Sync + 'static {
    /// Extends the lease to a full TTL from now: `Ok(false)` when the lock is no longer ours.
    fn extend(&self) -> HeldFuture<'_, bool>;
    /// Releases the lock if it is still ours: `Ok(false)` when it was not.
    fn release(&self) -> HeldFuture<'_, bool>;
}

/// A held lock. Release it with [`release`](Self::release); dropping it releases it in the
/// background (on the current tokio runtime), so a panic or an early return never leaves it
/// held longer than that.
///
/// While the guard lives a **watchdog** extends the lease every third of the TTL. The lease is
/// counted from when the last successful extension (or the acquisition) was **sent** — the
/// server's expiry cannot be earlier than that plus the TTL — and the guard is **lost** as
/// soon as that lease, less a [safety margin](safety_margin) for clock rates, has run out
/// without a newer success, whether or not an extension is still waiting for its reply. So
/// the loss is signalled *before* the server can give the lock to someone else. It is lost as
/// well when an extension finds the lock gone (the Redis node flushed or restarted, the
/// PostgreSQL session ended): [`lost`](Self::lost) resolves and
/// [`is_lost`](Self::is_lost) turns true. Work protected by the lock should stop then —
/// [`Locker::run`](crate::Locker::run) cancels it for you — and writes to shared resources
/// should carry the [`fencing_token`](Self::fencing_token) so a resource can refuse a holder
/// that lost the lock without knowing it.
pub struct LockGuard {
    name: Arc<str>,
    fence: Option<u64>,
    lost: CancellationToken,
    held: Arc<dyn Held>,
    watchdog: Option<JoinHandle<()>>,
    released: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("fencing_token", &self.fence)
            .field("lost", &self.lost.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// A guard for a lock `held` with lease `ttl`, whose acquisition was sent at `sent_at`
    /// (the lease runs from then); `watchdog` starts the renewal task.
    pub fn new(
        name: &str,
        fence: Option<u64>,
        ttl: Duration,
        sent_at: Instant,
        watchdog: bool,
        held: Arc<dyn Held>,
    ) -> LockGuard {
        let lost = CancellationToken::new();
        let watchdog = watchdog.then(|| {
            let lease = Lease::new(ttl, sent_at);
            tokio::spawn(keep_alive(
                held.clone(),
                lease,
                lost.clone(),
                name.to_owned(),
            ))
        });
        metrics::gauge!("palisade_lock_held").increment(1.0);
        LockGuard {
            name: name.into(),
            fence,
            lost,
            held,
            watchdog,
            released: false,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: strictly greater than every token issued before for this name
    /// (Redis, memory, PostgreSQL with fencing on). `None` where the backend cannot promise
    /// that (Redlock: see its docs).
    pub fn fencing_token(&self) -> Option<u64> {
        self.fence
    }

    /// Whether the watchdog found the lock lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Resolves when the lock is lost (never, while it is held).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lost.clone().cancelled_owned()
    }

    /// A token cancelled when the lock is lost: hand it to the protected work.
    pub fn lost_token(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// The lock's name, fencing token and lost-lock token, to hand to the protected work.
    pub fn held_lock(&self) -> crate::HeldLock {
        crate::HeldLock {
            name: self.name.clone(),
            fencing_token: self.fence,
            lost: self.lost.clone(),
        }
    }

    /// Extends the lease now (the watchdog does this on its own): `Ok(false)` when lost.
    pub async fn extend(&self) -> Result<bool, LockError> {
        let extended = self.held.extend().await?;
        if !extended {
            mark_lost(&self.lost, &self.name);
        }
        Ok(extended)
    }

    /// Releases the lock: `Ok(true)` if it was still ours. Releasing twice, or after the lock
    /// expired, is harmless.
    pub async fn release(mut self) -> Result<bool, LockError> {
        self.stop();
        self.held.release().await
    }

    fn stop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        if !self.released {
            self.released = true;
            metrics::gauge!("palisade_lock_held").decrement(1.0);
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let first = !self.released;
        self.stop();
        if first {
            let held = self.held.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = held.release().await;
                });
            }
        }
    }
}

use palisade_core::lease::Lease;
pub use palisade_core::lease::safety_margin;

// Extends every ttl/3. The lock is lost when an extension says so, or when the lease counted
// from the send time of the last success runs out — even while an extension is still pending.
async fn keep_alive(held: Arc<dyn Held>, mut lease: Lease, lost: CancellationToken, name: String) {
    let every = lease.ttl / 3;
    let mut next = lease.sent_at + every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(lease.lost_at()) => break,
            _ = tokio::time::sleep_until(next) => {}
        }
        let sent_at = Instant::now();
        let outcome = tokio::select! {
            outcome = held.extend() => outcome,
            _ = tokio::time::sleep_until(lease.lost_at()) => break,
        };
        match outcome {
            Ok(true) => lease = lease.extended(sent_at),
            Ok(false) => break,
            Err(error) => {
                tracing::warn!(target: "palisade::lock", lock = %name, %error, "lease extension failed");
            }
        }
        next = Instant::now().max(sent_at + every);
        if next == Instant::now() {
            // A slow failure: pause a little before the next try rather than spin.
            next += every / 4;
        }
    }
    mark_lost(&lost, &name);
}

// Signals the loss once: the first to notice logs and counts it.
fn mark_lost(lost: &CancellationToken, name: &str) {
    if !lost.is_cancelled() {
        tracing::warn!(target: "palisade::lock", lock = %name, "lock lost");
        metrics::counter!("palisade_lock_lost_total").increment(1);
        lost.cancel();
    }
}
