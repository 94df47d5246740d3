//! [`MemoryStore`]: records in this process only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use palisade_core::BackendError;
use tokio::time::Instant;

use super::{Claim, IdempotencyStore, Owner, RecordKey};

/// Records in a mutex-guarded map, timed by tokio's clock (so tests can pause time).
///
/// For one process only — development, tests, a single instance. Several replicas each with
/// their own `MemoryStore` do **not** deduplicate across each other: use [`RedisStore`] or
/// [`PostgresStore`] there.
///
/// [`RedisStore`]: super::RedisStore
/// [`PostgresStore`]: super::PostgresStore
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<RecordKey, Record>,
    // Expired records are dropped when the map reaches this size (then it doubles from what
    // is left): amortised O(1) per insert, memory bounded by twice the live records.
    sweep_at: usize,
}

#[derive(Debug)]
struct Record {
    fingerprint: String,
    state: State,
    failures: u32,
    // The lease's end while processing; the retention's end otherwise.
    expires_at: Instant,
}

#[derive(Debug)]
enum State {
    Processing(Owner),
    Completed(Bytes),
    Released,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records currently kept (expired ones may linger until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written (every update is
        // a single assignment), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim_now(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Claim {
        let now = Instant::now();
        let mut inner = self.lock();
        let failures = match inner.records.get(key) {
            Some(record) if record.expires_at > now => match &record.state {
                State::Released => record.failures,
                _ if record.fingerprint != fingerprint => return Claim::Mismatch,
                State::Processing(_) => {
                    return Claim::InFlight {
                        lease_left: record.expires_at - now,
                    };
                }
                State::Completed(response) => return Claim::Completed(response.clone()),
            },
            _ => 0,
        };
        inner.sweep(now);
        inner.records.insert(
            key.clone(),
            Record {
                fingerprint: fingerprint.to_owned(),
                state: State::Processing(owner.clone()),
                failures,
                expires_at: now + lease,
            },
        );
        Claim::Acquired
    }

    // The record `owner` holds, if its lease is still running.
    fn with_owned<T>(
        &self,
        key: &RecordKey,
        owner: &Owner,
        f: impl FnOnce(&mut Record, Instant) -> T,
    ) -> Option<T> {
        let now = Instant::now();
        let mut inner = self.lock();
        let record = inner.records.get_mut(key)?;
        match &record.state {
            State::Processing(holder) if holder == owner && record.expires_at > now => {
                Some(f(record, now))
            }
            _ => None,
        }
    }
}

impl Inner {
    // Before an insert: once the map has doubled since the last sweep, drop expired records.
    fn sweep(&mut self, now: Instant) {
        if self.records.len() >= self.sweep_at.max(1024) {
            self.records.retain(|_, r| r.expires_at > now);
            self.sweep_at = self.records.len() * 2;
        }
    }
}

impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Claim, BackendError> {
        Ok(self.claim_now(key, fingerprint, owner, lease))
    }

    async fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: Bytes,
        retention: Duration,
    ) -> Result<bool, BackendError> {
        Ok(self
            .with_owned(key, owner, |record, now| {
                record.state = State::Completed(response);
                record.expires_at = now + retention;
            })
            .is_some())
    }

    async fn release(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        Ok(self.with_owned(key, owner, |record, now| {
            record.state = State::Released;
            record.failures += 1;
            record.expires_at = now + retention;
            record.failures
        }))
    }

    async fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<bool, BackendError> {
        Ok(self
            .with_owned(key, owner, |record, now| record.expires_at = now + lease)
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expired_records_are_swept_and_memory_stays_bounded() {
        let store = MemoryStore::new();
        let key = |i: usize| RecordKey::message("sweep", &i.to_string());
        for i in 0..5000 {
            store.claim_now(&key(i), "", &Owner::unique(), Duration::from_secs(1));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 5000..10_000 {
            store.claim_now(&key(i), "", &Owner::unique(), Duration::from_secs(1));
        }
        assert!(
            store.len() <= 2 * 5000 + 1024,
            "{} records kept",
            store.len()
        );
        // Replays never insert, so they never pay for a sweep.
        assert!(matches!(
            store.claim_now(&key(9999), "", &Owner::unique(), Duration::from_secs(1)),
            Claim::InFlight { .. }
        ));
    }
}
