//! [`Redlock`]: a lock over N independent Redis nodes.

use std::{fmt, sync::Arc, time::Duration};

use futures_util::future::join_all;
use palisade_core::{
    BackendError,
    backend::{Undo, compensation_timeout},
    redis::{Arg, DECISION_TIMEOUT, RedisClient, RedisScript},
    redis_key::RedisKeyBuilder,
};
use tokio::time::Instant;

use crate::{
    LockError, LockGuard, Locker,
    error::check_name,
    guard::{Held, HeldFuture},
    locker::owner_token,
    quorum::{self, Acquisition, Extension},
    store::redis::{EXTEND, RELEASE, millis},
};

static SET_NX: std::sync::LazyLock<RedisScript> = std::sync::LazyLock::new(|| {
    RedisScript::new(
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end return 0",
    )
});

/// The Redlock algorithm over N independent Redis masters (N ≥ 3; 5 recommended).
///
/// Acquisition sends `SET NX PX` to every node **in parallel**, each bounded by a per-node
/// timeout (default 50 ms, far below the TTL, so a dead or paused node costs at most that).
/// The lock is held when a quorum of N/2+1 nodes granted it and time remains: validity =
/// TTL − elapsed − drift, with drift = 1 % of the TTL + 2 ms (the arithmetic is
/// [`quorum`](crate::quorum), pure and tested alone). Otherwise it is released on
/// **every** node (so no partial locks are left) and [`try_acquire`](Locker::try_acquire) returns
/// `Ok(None)`; [`acquire`](Locker::acquire) retries after a random delay. Extension (the watchdog)
/// and release are owner-checked scripts on every node; an extension holds when a quorum
/// extended.
///
/// # When Redlock is, and is not, safe
///
/// Redlock tolerates the loss of a minority of nodes, which a single Redis with failover
/// does not. Its safety still rests on **timing assumptions**: bounded process pauses,
/// bounded network delay, and clocks that advance at about the same rate on every node. A
/// holder paused past the validity (GC, SIGSTOP, VM migration), or a node whose clock jumps
/// forward and expires the key early, or a node restarted without persistence that forgets
/// a lock, can let two owners hold it at once. A lock service cannot detect a paused holder;
/// only the resource can, by refusing writes with an old **fencing token**. Redlock has no
/// single counter to issue strictly increasing tokens, so [`LockGuard::fencing_token`] is
/// `None` here: where correctness (not just efficiency) depends on mutual exclusion, use
/// [`RedisLock`](crate::RedisLock) or [`PgAdvisoryLock`](crate::PgAdvisoryLock) with fencing
/// tokens checked by the resource. Run nodes with `appendfsync always`, or keep a restarted
/// node out for longer than the max TTL, to keep Redlock's own guarantees.
pub struct Redlock<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    nodes: Vec<C>,
    keys: RedisKeyBuilder,
    ttl: Duration,
    node_timeout: Duration,
    watchdog: bool,
}

impl<C> Clone for Redlock<C> {
    fn clone(&self) -> Self {
        Redlock {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for Redlock<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redlock")
            .field("nodes", &self.inner.nodes.len())
            .field("ttl", &self.inner.ttl)
            .field("node_timeout", &self.inner.node_timeout)
            .finish_non_exhaustive()
    }
}

/// Fewer than three nodes were given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Redlock needs at least 3 independent nodes, got {0}")]
pub struct TooFewNodes(pub usize);

impl<C: RedisClient> Redlock<C> {
    /// A Redlock over `nodes` (independent masters, not replicas of each other; any
    /// [`RedisClient`]) with lease `ttl`, a 50 ms per-node timeout ([`DECISION_TIMEOUT`]: a
    /// node's answer is a vote, and a slow vote is worth less than a quick quorum) and the
    /// watchdog on.
    pub fn new(nodes: Vec<C>, ttl: Duration) -> Result<Self, TooFewNodes> {
        if nodes.len() < 3 {
            return Err(TooFewNodes(nodes.len()));
        }
        Ok(Redlock {
            inner: Arc::new(Inner {
                nodes,
                keys: RedisKeyBuilder::new("lock"),
                ttl: ttl.max(Duration::from_millis(10)),
                node_timeout: DECISION_TIMEOUT,
                watchdog: true,
            }),
        })
    }

    fn edit(self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        let mut inner = Inner {
            nodes: self.inner.nodes.clone(),
            keys: self.inner.keys.clone(),
            ttl: self.inner.ttl,
            node_timeout: self.inner.node_timeout,
            watchdog: self.inner.watchdog,
        };
        f(&mut inner);
        Redlock {
            inner: Arc::new(inner),
        }
    }

    /// The first part of every key (default `palisade`).
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.edit(|i| i.keys = RedisKeyBuilder::new("lock").with_prefix(prefix))
    }

    /// The bound on each node's answer (default 50 ms; keep it a small fraction of the TTL).
    pub fn with_node_timeout(self, timeout: Duration) -> Self {
        self.edit(|i| i.node_timeout = timeout)
    }

    /// No watchdog.
    pub fn without_watchdog(self) -> Self {
        self.edit(|i| i.watchdog = false)
    }

    /// N/2 + 1 ([`quorum::quorum`]).
    pub fn quorum(&self) -> usize {
        quorum::quorum(self.inner.nodes.len())
    }

    /// The key of lock `name` on every node.
    pub fn key(&self, name: &str) -> String {
        self.inner.keys.key_of_text("l", name)
    }

    /// The drift allowance: 1 % of the TTL + 2 ms.
    pub fn drift(&self) -> Duration {
        crate::guard::safety_margin(self.inner.ttl)
    }
}

// Runs a script on every node in parallel; counts the nodes that answered 1.
async fn on_all<C: RedisClient>(
    inner: &Inner<C>,
    script: &RedisScript,
    key: &str,
    args: &[Arg],
) -> (usize, usize) {
    on_all_within(inner, script, key, args, inner.node_timeout).await
}

async fn on_all_within<C: RedisClient>(
    inner: &Inner<C>,
    script: &RedisScript,
    key: &str,
    args: &[Arg],
    timeout: Duration,
) -> (usize, usize) {
    let keys = [key.to_owned()];
    let calls = inner
        .nodes
        .iter()
        .map(|node| script.invoke::<_, i64>(node, &keys, args, timeout));
    let replies = join_all(calls).await;
    let granted = replies.iter().filter(|r| matches!(r, Ok(1))).count();
    let failed = replies.iter().filter(|r| r.is_err()).count();
    (granted, failed)
}

struct RedlockHeld<C> {
    lock: Redlock<C>,
    key: String,
    token: String,
}

impl<C: RedisClient> Held for RedlockHeld<C> {
    fn extend(&self) -> HeldFuture<'_, bool> {
        Box::pin(async move {
            let inner = &self.lock.inner;
            let started = Instant::now();
            let args = [Arg::from(self.token.as_str()), millis(inner.ttl)];
            let (extended, failed) = on_all(inner, &EXTEND, &self.key, &args).await;
            let nodes = inner.nodes.len();
            match quorum::extension(nodes, extended, failed, inner.ttl, started.elapsed()) {
                Extension::Held => Ok(true),
                Extension::Lost => Ok(false),
                // Not enough answers to tell: an error (the watchdog retries) rather than "lost".
                Extension::Unknown => Err(LockError::Backend(BackendError::Unavailable(format!(
                    "Redlock extension reached {extended} of {nodes} nodes"
                )))),
            }
        })
    }

    fn release(&self) -> HeldFuture<'_, bool> {
        Box::pin(async move {
            let args = [Arg::from(self.token.as_str())];
            let (released, _) = on_all(&self.lock.inner, &RELEASE, &self.key, &args).await;
            Ok(released >= self.lock.quorum())
        })
    }
}

impl<C: RedisClient> Locker for Redlock<C> {
    async fn try_acquire(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        check_name(name)?;
        let inner = &self.inner;
        let key = self.key(name);
        let token = owner_token();
        // Until the lock is granted, every node's SET NX may land unseen (a node timed out, or
        // this future was dropped mid-call): if it is not granted, it is released everywhere
        // in the background too, with the owner token and a compensation deadline — a slow
        // node otherwise keeps a partial lock for the TTL.
        let undo = Undo::new("lock", || {
            let (lock, key, token) = (self.clone(), key.clone(), token.clone());
            async move {
                let inner = &lock.inner;
                let within = compensation_timeout(inner.node_timeout);
                let args = [Arg::from(token.as_str())];
                on_all_within(inner, &RELEASE, &key, &args, within).await;
                Ok::<(), BackendError>(())
            }
        });
        let started = Instant::now();
        let args = [Arg::from(token.as_str()), millis(inner.ttl)];
        let (granted, failed) = on_all(inner, &SET_NX, &key, &args).await;
        let nodes = inner.nodes.len();
        let verdict = quorum::acquisition(nodes, granted, failed, inner.ttl, started.elapsed());
        if let Acquisition::Held { .. } = verdict {
            undo.disarm();
            let held = Arc::new(RedlockHeld {
                lock: self.clone(),
                key,
                token,
            });
            return Ok(Some(LockGuard::new(
                name,
                None,
                inner.ttl,
                started,
                inner.watchdog,
                held,
            )));
        }
        // No quorum (or no time left): undo everywhere, so no node keeps a partial lock.
        on_all(inner, &RELEASE, &key, &args[..1]).await;
        if verdict == Acquisition::Unreachable {
            return Err(LockError::Backend(BackendError::Unavailable(format!(
                "Redlock: {failed} of {nodes} nodes unreachable, no quorum possible"
            ))));
        }
        Ok(None)
    }
}
