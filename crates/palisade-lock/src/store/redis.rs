//! [`RedisLock`]: a lock on one Redis (or a Redis Cluster), with fencing tokens.

use std::{
    fmt,
    sync::{Arc, LazyLock},
    time::Duration,
};

use palisade_core::{
    BackendError,
    backend::{Undo, compensation_timeout},
    redis::{Arg, OWNERSHIP_TIMEOUT, RedisBackend, RedisClient, RedisScript},
};

use crate::{
    LockError, LockGuard, Locker,
    error::check_name,
    guard::{Held, HeldFuture},
    locker::owner_token,
};

static ACQUIRE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/acquire.lua")));
pub(crate) static RELEASE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/release.lua")));
pub(crate) static EXTEND: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/extend.lua")));

/// A lock on one Redis: `SET NX PX` with a random owner token, released and extended only by
/// owner-checked scripts, each acquisition issuing a **fencing token** in the same script:
/// `max(last token + 1, Redis server time in µs)`, so tokens strictly increase in acquisition
/// order while the counter lives, and stay above every earlier token after it is gone.
///
/// Keys are `<prefix>:lock:{<name>}` and `<prefix>:lock:{<name>}:fence` — the name is the
/// Cluster hash tag, so both live in one slot. The counter expires an hour after the lease
/// (one key per *live* lock name, not per name ever locked — per-order locks do not pile up),
/// and because new tokens start from the server clock, neither that expiry nor a Redis that
/// lost its data (restart without persistence, failover) can issue a token below one a
/// resource has already seen — unless the server clock itself went back by more than the gap. The TTL is mandatory; a watchdog extends it
/// every TTL/3 while the guard lives (turn it off with
/// [`without_watchdog`](Self::without_watchdog)).
///
/// **What it guarantees**: while Redis keeps its data, at most one owner holds the lock at a
/// time *by Redis' clock*. A holder that pauses (GC, SIGSTOP, a swapped VM) longer than the
/// TTL can wake up still believing it holds the lock after another owner took it — no lock
/// service can prevent that. The fencing token is how the *resource* refuses that stale
/// holder: see [`fencing`](crate::fencing). A failover to a replica that had not received the
/// lock yet can grant it twice; use [`Redlock`](crate::Redlock) or PostgreSQL where that
/// matters, and fencing everywhere.
///
/// ```no_run
/// # async fn demo(client: impl palisade_core::redis::RedisClient) -> Result<(), palisade_lock::LockError> {
/// use std::time::Duration;
/// use palisade_lock::{Locker, RedisLock};
///
/// let locks = RedisLock::new(client, Duration::from_secs(10));
/// let guard = locks.acquire("payment:order-123", Duration::from_secs(2)).await?;
/// let token = guard.fencing_token();
/// // ... the critical section, passing `token` to every fenced write ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct RedisLock<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    backend: RedisBackend<C>,
    ttl: Duration,
    watchdog: bool,
}

impl<C> Clone for RedisLock<C> {
    fn clone(&self) -> Self {
        RedisLock {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for RedisLock<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("prefix", &self.inner.backend.keys().prefix())
            .field("ttl", &self.inner.ttl)
            .field("watchdog", &self.inner.watchdog)
            .finish_non_exhaustive()
    }
}

pub(crate) fn millis(d: Duration) -> Arg {
    Arg::Int(i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1))
}

impl<C: RedisClient> RedisLock<C> {
    /// Locks on `client` (any [`RedisClient`]) with lease `ttl` (at least 10 ms), key prefix
    /// `palisade`, a 500 ms timeout per round trip ([`OWNERSHIP_TIMEOUT`]) and the watchdog
    /// on.
    pub fn new(client: C, ttl: Duration) -> Self {
        RedisLock {
            inner: Arc::new(Inner {
                backend: RedisBackend::new(client, "lock", OWNERSHIP_TIMEOUT),
                ttl: ttl.max(Duration::from_millis(10)),
                watchdog: true,
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        let mut inner = Inner {
            backend: self.inner.backend.clone(),
            ttl: self.inner.ttl,
            watchdog: self.inner.watchdog,
        };
        f(&mut inner);
        RedisLock {
            inner: Arc::new(inner),
        }
    }

    /// The first part of every key (default `palisade`).
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.edit(|i| i.backend = i.backend.clone().with_prefix(prefix))
    }

    /// The bound on one round trip (default 500 ms).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.edit(|i| i.backend = i.backend.clone().with_timeout(timeout))
    }

    /// No watchdog: the lease simply runs out after the TTL unless
    /// [`LockGuard::extend`] is called.
    pub fn without_watchdog(self) -> Self {
        self.edit(|i| i.watchdog = false)
    }

    /// The lease.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The Redis key of lock `name`.
    pub fn key(&self, name: &str) -> String {
        self.inner.backend.key_of_text("l", name)
    }

    /// The Redis key of lock `name`'s fencing counter.
    pub fn fence_key(&self, name: &str) -> String {
        format!("{}:fence", self.key(name))
    }
}

struct RedisHeld<C> {
    lock: RedisLock<C>,
    key: String,
    token: String,
}

impl<C: RedisClient> Held for RedisHeld<C> {
    fn extend(&self) -> HeldFuture<'_, bool> {
        Box::pin(async move {
            let inner = &self.lock.inner;
            let args = [Arg::from(self.token.as_str()), millis(inner.ttl)];
            let key = std::slice::from_ref(&self.key);
            let extended: i64 = inner.backend.run(&EXTEND, key, &args).await?;
            Ok(extended == 1)
        })
    }

    fn release(&self) -> HeldFuture<'_, bool> {
        Box::pin(async move {
            let inner = &self.lock.inner;
            let args = [Arg::from(self.token.as_str())];
            let key = std::slice::from_ref(&self.key);
            let released: i64 = inner.backend.run(&RELEASE, key, &args).await?;
            Ok(released == 1)
        })
    }
}

impl<C: RedisClient> Locker for RedisLock<C> {
    async fn try_acquire(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        check_name(name)?;
        let inner = &self.inner;
        let key = self.key(name);
        // The fencing counter shares the lock's hash tag (same slot on a cluster).
        let fence = format!("{key}:fence");
        let keys = [key, fence];
        let token = owner_token();
        let sent_at = tokio::time::Instant::now();
        // Armed until the reply is known: a timeout, or this future dropped while the script
        // is in flight, may leave an ownerless lock for a whole TTL — undone with our token
        // (owner-checked: nobody else's lock is touched).
        // The closure borrows; it clones only if it fires (nothing allocated on the hot path).
        let undo = Undo::new("lock", || {
            let (lock, key, token) = (self.clone(), keys[0].clone(), token.clone());
            async move {
                let backend = &lock.inner.backend;
                let within = compensation_timeout(backend.timeout());
                let args = [Arg::from(token.as_str())];
                backend
                    .run_within::<i64>(&RELEASE, &[key], &args, within)
                    .await
            }
        });
        let args = [Arg::from(token.as_str()), millis(inner.ttl)];
        let reply: Result<i64, BackendError> = inner.backend.run(&ACQUIRE, &keys, &args).await;
        // A timeout leaves the outcome unknown: the SET NX may land, and `undo` runs.
        let reply = undo.settle(reply)?;
        if reply < 1 {
            return Ok(None);
        }
        let [key, _] = keys;
        let held = Arc::new(RedisHeld {
            lock: self.clone(),
            key,
            token,
        });
        Ok(Some(LockGuard::new(
            name,
            Some(reply as u64),
            inner.ttl,
            sent_at,
            inner.watchdog,
            held,
        )))
    }
}
