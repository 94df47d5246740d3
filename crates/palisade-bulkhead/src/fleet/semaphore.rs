//! [`FleetSemaphore`]: at most N concurrent calls across every instance, on Redis.

use std::{
    fmt,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use palisade_core::{
    BackendError, OnBackendError,
    backend::{Undo, compensation_timeout},
    key::Key,
    lease::Lease,
    redis::{Arg, DECISION_TIMEOUT, RedisBackend, RedisClient, RedisScript},
};
use tokio::time::Instant;

static SEMAPHORE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/semaphore.lua")));

use super::{
    FleetPermit,
    state::{Op, Reply},
};

/// "At most N concurrent calls to this partner API across all instances": a semaphore whose
/// permits are Redis leases.
///
/// A permit is a lease that expires (default 30 s) unless renewed; the holder renews it every
/// third of the lease while it lives, so a long call keeps its slot, and an instance that dies
/// (or stalls past its lease) gives its slots back on its own — no leaked permits. Every Redis
/// call is bounded by a timeout.
///
/// ```no_run
/// # async fn demo(client: impl palisade_core::redis::RedisClient) -> Result<(), palisade_bulkhead::FleetError> {
/// use palisade_bulkhead::FleetSemaphore;
///
/// let partner = FleetSemaphore::new(client, "partner-api", 20);
/// let permit = partner.try_acquire().await?;   // FleetError::Full { retry_after } when taken
/// // … call the partner API …
/// permit.release().await;
/// # Ok(()) }
/// ```
pub struct FleetSemaphore<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    backend: RedisBackend<C>,
    name: String,
    key: String,
    capacity: u32,
    lease: Duration,
    instance: u64,
    next: AtomicU64,
    on_backend_error: OnBackendError,
}

/// Why no permit was granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Every permit is held; the earliest lease ends within `retry_after` at the latest.
    #[error("all fleet permits are taken; retry after {retry_after:?}")]
    Full {
        /// Until the earliest lease expires (if it is not renewed or released first).
        retry_after: Duration,
    },
    /// Redis did not answer.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl<C> Clone for FleetSemaphore<C> {
    fn clone(&self) -> Self {
        FleetSemaphore {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for FleetSemaphore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetSemaphore")
            .field("key", &self.inner.key)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl<C: RedisClient> FleetSemaphore<C> {
    /// At most `capacity` permits named `name` across every instance using the same Redis
    /// (any [`RedisClient`]), 30 s leases, 50 ms Redis timeout ([`DECISION_TIMEOUT`]).
    pub fn new(client: C, name: &str, capacity: u32) -> Self {
        let backend = RedisBackend::new(client, "semaphore", DECISION_TIMEOUT);
        FleetSemaphore {
            inner: Arc::new(Inner {
                key: backend.key("leases", &Key::from(name)),
                backend,
                name: name.to_owned(),
                capacity,
                lease: Duration::from_secs(30),
                instance: palisade_core::random::u64(),
                next: AtomicU64::new(0),
                on_backend_error: OnBackendError::default(),
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        let i = &self.inner;
        let mut inner = Inner {
            backend: i.backend.clone(),
            name: i.name.clone(),
            key: i.key.clone(),
            capacity: i.capacity,
            lease: i.lease,
            instance: i.instance,
            next: AtomicU64::new(0),
            on_backend_error: i.on_backend_error,
        };
        f(&mut inner);
        FleetSemaphore {
            inner: Arc::new(inner),
        }
    }

    /// Keys under `prefix` instead of `palisade`.
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.map(|i| {
            i.backend = i.backend.clone().with_prefix(prefix);
            i.key = i.backend.key("leases", &Key::from(i.name.as_str()));
        })
    }

    /// How long a permit lives without renewal (default 30 s): the longest a dead instance's
    /// slots stay taken.
    pub fn lease(self, lease: Duration) -> Self {
        self.map(|i| i.lease = lease.max(Duration::from_millis(10)))
    }

    /// Bounds every Redis call (default 50 ms).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|i| i.backend = i.backend.clone().with_timeout(timeout))
    }

    /// What a bulkhead over this semaphore does when Redis cannot answer (default: fail open —
    /// the call runs without a permit, logged and counted by the policy).
    pub fn on_backend_error(self, policy: OnBackendError) -> Self {
        self.map(|i| i.on_backend_error = policy)
    }

    pub(super) fn backend_error_policy(&self) -> OnBackendError {
        self.inner.on_backend_error
    }

    pub(super) async fn run(&self, op: &str, id: &str) -> Result<(bool, Duration), BackendError> {
        self.run_within(op, id, self.inner.backend.timeout()).await
    }

    async fn run_within(
        &self,
        op: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<(bool, Duration), BackendError> {
        let i = &*self.inner;
        let reply = self.script(op, id, i.lease, None, timeout).await?;
        Ok((reply.granted, Duration::from_millis(reply.wait_ms)))
    }

    async fn script(
        &self,
        op: &str,
        id: &str,
        lease: Duration,
        now_ms: Option<u64>,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        let i = &*self.inner;
        let args = [
            Arg::from(op),
            Arg::from(id),
            Arg::from(i.capacity),
            Arg::Int(lease.as_millis() as i64),
            Arg::Int(now_ms.map_or(-1, |n| n as i64)),
        ];
        let reply: Vec<i64> = i
            .backend
            .run_within(&SEMAPHORE, std::slice::from_ref(&i.key), &args, timeout)
            .await?;
        match reply.as_slice() {
            [granted, holders, wait] => Ok(Reply {
                granted: *granted == 1,
                holders: (*holders).clamp(0, i64::from(u32::MAX)) as u32,
                wait_ms: (*wait).max(0) as u64,
            }),
            _ => Err(BackendError::Protocol(format!(
                "semaphore script replied {reply:?}"
            ))),
        }
    }

    /// One step of the script with an explicit clock (`now_ms`) and lease, answered as the
    /// model ([`state`](super::state)) answers: for the differential test only.
    #[doc(hidden)]
    pub async fn step_at(
        &self,
        op: Op,
        id: &str,
        lease: Duration,
        now_ms: u64,
    ) -> Result<Reply, BackendError> {
        let op = match op {
            Op::Acquire => "acquire",
            Op::Renew => "renew",
            Op::Release => "release",
        };
        let timeout = self.inner.backend.timeout();
        self.script(op, id, lease, Some(now_ms), timeout).await
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A permit if one is free now. It is renewed in the background (on the current tokio
    /// runtime) until released or dropped.
    pub async fn try_acquire(&self) -> Result<FleetPermit<C>, FleetError> {
        let i = &*self.inner;
        let id = format!(
            "{:016x}-{}",
            i.instance,
            i.next.fetch_add(1, Ordering::Relaxed)
        );
        // Armed until the reply is known: the script may run after a timeout, or after this
        // future is dropped, taking a slot nobody renews or releases. Released by its id (a
        // no-op if it never landed; the id is ours alone).
        let undo = Undo::new("bulkhead", || {
            let (semaphore, id) = (self.clone(), id.clone());
            let within = compensation_timeout(self.inner.backend.timeout());
            async move { semaphore.run_within("release", &id, within).await }
        });
        let sent_at = Instant::now();
        let (granted, wait) = undo.settle(self.run("acquire", &id).await)?;
        if !granted {
            return Err(FleetError::Full {
                retry_after: wait.max(Duration::from_millis(1)),
            });
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (semaphore, id, lost) = (self.clone(), id.clone(), lost.clone());
            tokio::spawn(async move {
                // The lease counts from the send time of the last success, and the permit is
                // lost once it has run out — even while a renewal is pending — so it never
                // believes it holds a slot the server may already have given away.
                let mut lease = Lease::new(semaphore.inner.lease, sent_at);
                let every = semaphore.inner.lease / 3;
                let mut next = sent_at + every;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(lease.lost_at()) => break,
                        _ = tokio::time::sleep_until(next) => {}
                    }
                    let sent = Instant::now();
                    let renewed = tokio::select! {
                        renewed = semaphore.run("renew", &id) => renewed,
                        _ = tokio::time::sleep_until(lease.lost_at()) => break,
                    };
                    match renewed {
                        Ok((true, _)) => lease = lease.extended(sent),
                        Ok((false, _)) => break,
                        Err(error) => {
                            tracing::warn!(target: "palisade::bulkhead", %error, "fleet permit renewal failed")
                        }
                    }
                    next = Instant::now().max(sent + every);
                }
                tracing::warn!(target: "palisade::bulkhead", lease = %id, "fleet permit lost: its lease expired");
                lost.store(true, Ordering::Release);
            })
        };
        Ok(FleetPermit {
            semaphore: self.clone(),
            id,
            lost,
            renewer: Some(renewer),
        })
    }
}
