//! [`MemoryLock`]: locks in this process only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    LockError, LockGuard, Locker,
    error::check_name,
    guard::{Held, HeldFuture},
    locker::owner_token,
    state::{Acquired, LockRecord},
};

/// Locks in a mutex-guarded map, with leases and fencing tokens like the Redis lock, timed by
/// tokio's clock (tests can pause time).
///
/// For one process — development, tests, a single instance. It excludes nothing across
/// replicas: use [`RedisLock`](crate::RedisLock) or [`PgAdvisoryLock`](crate::PgAdvisoryLock)
/// there.
#[derive(Debug, Clone)]
pub struct MemoryLock {
    state: Arc<Mutex<HashMap<String, LockRecord>>>,
    /// Times in the records are milliseconds since this instant.
    epoch: Instant,
    ttl: Duration,
    watchdog: bool,
}

impl MemoryLock {
    /// Locks with lease `ttl`, renewed by a watchdog while held.
    pub fn new(ttl: Duration) -> Self {
        MemoryLock {
            state: Arc::default(),
            epoch: Instant::now(),
            ttl: ttl.max(Duration::from_millis(3)),
            watchdog: true,
        }
    }

    /// No watchdog: a lease simply runs out after the TTL.
    pub fn without_watchdog(mut self) -> Self {
        self.watchdog = false;
        self
    }

    fn lock_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, LockRecord>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds since the epoch, rounded up: a lease never looks longer than it is.
    fn now_ms(&self) -> u64 {
        let since = Instant::now().saturating_duration_since(self.epoch);
        since.as_micros().div_ceil(1_000) as u64
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }
}

struct MemoryHeld {
    lock: MemoryLock,
    name: String,
    token: String,
}

impl MemoryHeld {
    /// Applies `op` to this lock's record at the current time.
    fn on_record(&self, op: impl FnOnce(&mut LockRecord, u64) -> bool) -> bool {
        let now = self.lock.now_ms();
        let mut map = self.lock.lock_map();
        map.get_mut(&self.name)
            .is_some_and(|record| op(record, now))
    }
}

impl Held for MemoryHeld {
    fn extend(&self) -> HeldFuture<'_, bool> {
        let ttl = self.lock.ttl_ms();
        let extended = self.on_record(|record, now| record.extend(&self.token, ttl, now));
        Box::pin(async move { Ok(extended) })
    }

    fn release(&self) -> HeldFuture<'_, bool> {
        let released = self.on_record(|record, now| record.release(&self.token, now));
        Box::pin(async move { Ok(released) })
    }
}

impl Locker for MemoryLock {
    async fn try_acquire(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        check_name(name)?;
        let sent_at = Instant::now();
        let token = owner_token();
        let fence = {
            let now = self.now_ms();
            let mut map = self.lock_map();
            let record = map.entry(name.to_owned()).or_default();
            match record.acquire(&token, self.ttl_ms(), now, 0) {
                Acquired::Granted { token } => token,
                Acquired::Held { .. } => return Ok(None),
            }
        };
        let held = Arc::new(MemoryHeld {
            lock: self.clone(),
            name: name.to_owned(),
            token,
        });
        Ok(Some(LockGuard::new(
            name,
            Some(fence),
            self.ttl,
            sent_at,
            self.watchdog,
            held,
        )))
    }
}
