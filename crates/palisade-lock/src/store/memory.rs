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
};

/// Locks in a mutex-guarded map, with leases and fencing tokens like the Redis lock, timed by
/// tokio's clock (tests can pause time).
///
/// For one process — development, tests, a single instance. It excludes nothing across
/// replicas: use [`RedisLock`](crate::RedisLock) or [`PgAdvisoryLock`](crate::PgAdvisoryLock)
/// there.
#[derive(Debug, Clone)]
pub struct MemoryLock {
    state: Arc<Mutex<HashMap<String, Entry>>>,
    ttl: Duration,
    watchdog: bool,
}

#[derive(Debug, Default)]
struct Entry {
    holder: Option<(String, Instant)>,
    fence: u64,
}

impl MemoryLock {
    /// Locks with lease `ttl`, renewed by a watchdog while held.
    pub fn new(ttl: Duration) -> Self {
        MemoryLock {
            state: Arc::default(),
            ttl: ttl.max(Duration::from_millis(3)),
            watchdog: true,
        }
    }

    /// No watchdog: a lease simply runs out after the TTL.
    pub fn without_watchdog(mut self) -> Self {
        self.watchdog = false;
        self
    }

    fn lock_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct MemoryHeld {
    lock: MemoryLock,
    name: String,
    token: String,
}

impl MemoryHeld {
    fn with_own(&self, f: impl FnOnce(&mut Entry)) -> bool {
        let now = Instant::now();
        let mut map = self.lock.lock_map();
        match map.get_mut(&self.name) {
            Some(entry)
                if entry
                    .holder
                    .as_ref()
                    .is_some_and(|(t, until)| *t == self.token && *until > now) =>
            {
                f(entry);
                true
            }
            _ => false,
        }
    }
}

impl Held for MemoryHeld {
    fn extend(&self) -> HeldFuture<'_, bool> {
        let until = Instant::now() + self.lock.ttl;
        let extended = self.with_own(|entry| {
            if let Some((_, at)) = entry.holder.as_mut() {
                *at = until;
            }
        });
        Box::pin(async move { Ok(extended) })
    }

    fn release(&self) -> HeldFuture<'_, bool> {
        let released = self.with_own(|entry| entry.holder = None);
        Box::pin(async move { Ok(released) })
    }
}

impl Locker for MemoryLock {
    async fn try_acquire(&self, name: &str) -> Result<Option<LockGuard>, LockError> {
        check_name(name)?;
        let now = Instant::now();
        let token = owner_token();
        let fence = {
            let mut map = self.lock_map();
            let entry = map.entry(name.to_owned()).or_default();
            if entry.holder.as_ref().is_some_and(|(_, until)| *until > now) {
                return Ok(None);
            }
            entry.fence += 1;
            entry.holder = Some((token.clone(), now + self.ttl));
            entry.fence
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
            now,
            self.watchdog,
            held,
        )))
    }
}
