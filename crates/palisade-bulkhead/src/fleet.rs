//! [`FleetSemaphore`]: at most N concurrent calls across every instance, on Redis.

use std::{
    fmt,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use fred::interfaces::LuaInterface;
use palisade_core::{BackendError, key::Key, redis_key::RedisKeyBuilder, script::RedisScript};
use tokio::task::JoinHandle;

static SEMAPHORE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("scripts/semaphore.lua")));

/// "At most N concurrent calls to this partner API across all instances": a semaphore whose
/// permits are Redis leases.
///
/// A permit is a lease that expires (default 30 s) unless renewed; the holder renews it every
/// third of the lease while it lives, so a long call keeps its slot, and an instance that dies
/// (or stalls past its lease) gives its slots back on its own — no leaked permits. Every Redis
/// call is bounded by a timeout.
///
/// ```no_run
/// # async fn demo(client: fred::clients::Client) -> Result<(), palisade_bulkhead::FleetError> {
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
    client: C,
    name: String,
    key: String,
    capacity: u32,
    lease: Duration,
    timeout: Duration,
    instance: u64,
    next: AtomicU64,
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

impl<C: LuaInterface + Clone + Send + Sync + 'static> FleetSemaphore<C> {
    /// At most `capacity` permits named `name` across every instance using the same Redis,
    /// 30 s leases, 50 ms Redis timeout.
    pub fn new(client: C, name: &str, capacity: u32) -> Self {
        Self::build(client, RedisKeyBuilder::new("semaphore"), name, capacity)
    }

    fn build(client: C, keys: RedisKeyBuilder, name: &str, capacity: u32) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        FleetSemaphore {
            inner: Arc::new(Inner {
                client,
                name: name.to_owned(),
                key: keys.key("leases", &Key::from(name)),
                capacity,
                lease: Duration::from_secs(30),
                timeout: Duration::from_millis(50),
                instance: nanos ^ (u64::from(std::process::id()) << 32),
                next: AtomicU64::new(0),
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        let i = &self.inner;
        let mut inner = Inner {
            client: i.client.clone(),
            name: i.name.clone(),
            key: i.key.clone(),
            capacity: i.capacity,
            lease: i.lease,
            timeout: i.timeout,
            instance: i.instance,
            next: AtomicU64::new(0),
        };
        f(&mut inner);
        FleetSemaphore {
            inner: Arc::new(inner),
        }
    }

    /// Keys under `prefix` instead of `palisade`.
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.map(|i| {
            i.key = RedisKeyBuilder::new("semaphore")
                .with_prefix(prefix)
                .key("leases", &Key::from(i.name.as_str()));
        })
    }

    /// How long a permit lives without renewal (default 30 s): the longest a dead instance's
    /// slots stay taken.
    pub fn lease(self, lease: Duration) -> Self {
        self.map(|i| i.lease = lease.max(Duration::from_millis(10)))
    }

    /// Bounds every Redis call (default 50 ms).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|i| i.timeout = timeout)
    }

    async fn run(&self, op: &str, id: &str) -> Result<(bool, Duration), BackendError> {
        let i = &*self.inner;
        let reply: Vec<i64> = SEMAPHORE
            .invoke(
                &i.client,
                vec![i.key.clone()],
                vec![
                    op.to_string(),
                    id.to_string(),
                    i.capacity.to_string(),
                    i.lease.as_millis().to_string(),
                ],
                i.timeout,
            )
            .await?;
        match reply.as_slice() {
            [granted, _, wait] => Ok((*granted == 1, Duration::from_millis((*wait).max(0) as u64))),
            _ => Err(BackendError::Protocol(format!(
                "semaphore script replied {reply:?}"
            ))),
        }
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
        let (granted, wait) = self.run("acquire", &id).await?;
        if !granted {
            return Err(FleetError::Full {
                retry_after: wait.max(Duration::from_millis(1)),
            });
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (semaphore, id, lost) = (self.clone(), id.clone(), lost.clone());
            tokio::spawn(async move {
                let every = semaphore.inner.lease / 3;
                loop {
                    tokio::time::sleep(every).await;
                    match semaphore.run("renew", &id).await {
                        Ok((true, _)) => {}
                        Ok((false, _)) => {
                            tracing::warn!(target: "palisade::bulkhead", lease = %id, "fleet permit lost: its lease expired");
                            lost.store(true, Ordering::Release);
                            return;
                        }
                        // A transient failure: the lease has two more thirds to live.
                        Err(error) => {
                            tracing::warn!(target: "palisade::bulkhead", %error, "fleet permit renewal failed")
                        }
                    }
                }
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

/// A fleet-wide slot. Release it with [`release`](Self::release); dropping it stops the
/// renewal and releases it in the background (or the lease expires).
pub struct FleetPermit<C: LuaInterface + Clone + Send + Sync + 'static> {
    semaphore: FleetSemaphore<C>,
    id: String,
    lost: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

impl<C: LuaInterface + Clone + Send + Sync + 'static> FleetPermit<C> {
    /// Whether the lease was lost (the instance stalled past it, or Redis forgot it): another
    /// instance may now hold this slot, so work that must stay within the limit should stop.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Gives the slot back.
    pub async fn release(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Err(error) = self.semaphore.run("release", &self.id).await {
            tracing::warn!(target: "palisade::bulkhead", %error, "fleet permit release failed; its lease will expire");
        }
    }

    /// Stops renewing and leaves the lease to expire, as when the process dies: for tests of
    /// recovery, or a process about to exit abruptly.
    pub fn abandon(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.id.clear();
    }
}

impl<C: LuaInterface + Clone + Send + Sync + 'static> Drop for FleetPermit<C> {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let (semaphore, id) = (self.semaphore.clone(), std::mem::take(&mut self.id));
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = semaphore.run("release", &id).await;
                });
            }
        }
    }
}

impl<C: LuaInterface + Clone + Send + Sync + 'static> fmt::Debug for FleetPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetPermit")
            .field("id", &self.id)
            .field("lost", &self.is_lost())
            .finish()
    }
}
