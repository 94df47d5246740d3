//! [`MemoryStore`]: records in this process only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use palisade_core::BackendError;
use tokio::time::Instant;

use super::{Claim, Failed, IdempotencyStore, Owner, RecordKey};
use crate::{
    record::NOT_KEPT,
    state::{self, Phase, Record, Step},
};

/// Records in a mutex-guarded map, timed by tokio's clock (so tests can pause time), each
/// step the [`state`](crate::state) machine's.
///
/// For one process only — development, tests, a single instance. Several replicas each with
/// their own `MemoryStore` do **not** deduplicate across each other: use [`RedisStore`] or
/// [`PostgresStore`] there.
///
/// **Bounded**: at most [`DEFAULT_MAX_RECORDS`] records by default
/// ([`with_max_records`](Self::with_max_records)). When the store is full of live records (after
/// dropping the expired ones) a *new* key is refused with a [`BackendError`] — the layer then
/// follows its `on_backend_error` policy (503 by default) — rather than evicting a live record,
/// which would let a retry of a completed payment run again. Replays and in-flight answers are
/// never refused. Size the bound as (requests per second × retention) for the keys you expect.
///
/// The responses kept are bounded too, at [`DEFAULT_MAX_BYTES`]
/// ([`with_max_bytes`](Self::with_max_bytes)): a response that would not fit (after dropping
/// expired records) is recorded as *done but not kept* — retries get 409 "not replayable",
/// the request never runs again.
///
/// [`RedisStore`]: super::RedisStore
/// [`PostgresStore`]: super::PostgresStore
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

/// The default bound on records a [`MemoryStore`] keeps.
pub const DEFAULT_MAX_RECORDS: usize = 100_000;

/// The default bound on the bytes of responses a [`MemoryStore`] keeps (64 MiB).
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_max_records(DEFAULT_MAX_RECORDS)
    }
}

#[derive(Debug)]
struct Inner {
    records: HashMap<RecordKey, Record<Instant>>,
    // Never more records than this (live ones; expired ones are swept first).
    max_records: usize,
    // Bytes of stored responses, and their bound.
    bytes: usize,
    max_bytes: usize,
    // Expired records are dropped when the map reaches this size (then it doubles from what
    // is left): amortised O(1) per insert, memory bounded by twice the live records.
    sweep_at: usize,
}

impl MemoryStore {
    /// An empty store holding at most [`DEFAULT_MAX_RECORDS`] records.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `max` records (at least 1).
    pub fn with_max_records(max: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                records: HashMap::new(),
                max_records: max.max(1),
                bytes: 0,
                max_bytes: DEFAULT_MAX_BYTES,
                sweep_at: 0,
            })),
        }
    }

    /// Keeps at most `max` bytes of responses (see the type's docs for what happens beyond).
    pub fn with_max_bytes(self, max: usize) -> Self {
        self.lock().max_bytes = max;
        self
    }

    /// Bytes of responses currently kept.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
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
    ) -> Result<Claim, BackendError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let step = state::claim(inner.records.get(key), now, fingerprint, owner, lease);
        let Some(record) = step.write else {
            return Ok(step.reply);
        };
        inner.sweep(now);
        if inner.records.len() >= inner.max_records && !inner.records.contains_key(key) {
            // Full of live records: refuse the new key rather than forget a live one.
            inner.records.retain(|_, r| r.expires_at > now);
            if inner.records.len() >= inner.max_records {
                return Err(BackendError::Unavailable(format!(
                    "the in-memory idempotency store is full ({} live records)",
                    inner.max_records
                )));
            }
        }
        inner.write(key, record, now);
        Ok(step.reply)
    }

    // Runs one step of the state machine on `key`'s record and writes its result.
    fn step<R>(
        &self,
        key: &RecordKey,
        step: impl FnOnce(Option<&Record<Instant>>, Instant) -> Step<Instant, R>,
    ) -> R {
        let now = Instant::now();
        let mut inner = self.lock();
        let step = step(inner.records.get(key), now);
        if let Some(record) = step.write {
            inner.write(key, record, now);
        }
        step.reply
    }
}

// The bytes a record keeps.
fn weight(record: &Record<Instant>) -> usize {
    match &record.phase {
        Phase::Completed(response) => response.len(),
        _ => 0,
    }
}

impl Inner {
    // Before an insert: once the map has doubled since the last sweep, drop expired records.
    fn sweep(&mut self, now: Instant) {
        if self.records.len() >= self.sweep_at.max(1024) {
            self.sweep_now(now);
        }
    }

    fn sweep_now(&mut self, now: Instant) {
        self.records.retain(|_, r| r.expires_at > now);
        self.sweep_at = self.records.len() * 2;
        self.bytes = self.records.values().map(weight).sum();
    }

    // Keeps `response`, or — when it would not fit even after a sweep — the "not kept" marker.
    fn admit(&mut self, response: Bytes, now: Instant) -> Bytes {
        if self.bytes + response.len() > self.max_bytes {
            self.sweep_now(now);
        }
        let kept = if self.bytes + response.len() > self.max_bytes {
            Bytes::from_static(NOT_KEPT)
        } else {
            response
        };
        self.bytes += kept.len();
        kept
    }

    // Replaces `key`'s record, keeping the bytes count: a completed response is admitted (or
    // replaced by the "not kept" marker when it would not fit).
    fn write(&mut self, key: &RecordKey, mut record: Record<Instant>, now: Instant) {
        if let Some(old) = self.records.remove(key) {
            self.bytes = self.bytes.saturating_sub(weight(&old));
        }
        if let Phase::Completed(response) = &mut record.phase {
            *response = self.admit(std::mem::take(response), now);
        }
        self.records.insert(key.clone(), record);
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
        self.claim_now(key, fingerprint, owner, lease)
    }

    async fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: Bytes,
        retention: Duration,
    ) -> Result<bool, BackendError> {
        Ok(self.step(key, |record, now| {
            state::complete(record, now, owner, response, retention)
        }))
    }

    async fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
    ) -> Result<Option<Failed>, BackendError> {
        Ok(self.step(key, |record, now| {
            state::fail(record, now, owner, max_attempts, dead, retention)
        }))
    }

    async fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<bool, BackendError> {
        Ok(self.step(key, |record, now| state::renew(record, now, owner, lease)))
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
            let _ = store.claim_now(&key(i), "", &Owner::unique(), Duration::from_secs(1));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 5000..10_000 {
            let _ = store.claim_now(&key(i), "", &Owner::unique(), Duration::from_secs(1));
        }
        assert!(
            store.len() <= 2 * 5000 + 1024,
            "{} records kept",
            store.len()
        );
        // Replays never insert, so they never pay for a sweep.
        assert!(matches!(
            store.claim_now(&key(9999), "", &Owner::unique(), Duration::from_secs(1)),
            Ok(Claim::InFlight { .. })
        ));
    }

    /// Regression: the store grew without bound (405 k keys → 244 MB, never shrinking).
    #[tokio::test(start_paused = true)]
    async fn a_full_store_refuses_new_keys_but_keeps_answering_old_ones() {
        let store = MemoryStore::with_max_records(100);
        let key = |i: usize| RecordKey::message("full", &i.to_string());
        let lease = Duration::from_secs(10);
        for i in 0..100 {
            let claimed = store.claim_now(&key(i), "", &Owner::unique(), lease);
            assert!(matches!(claimed, Ok(Claim::Acquired)));
        }
        let refused = store.claim_now(&key(100), "", &Owner::unique(), lease);
        assert!(matches!(refused, Err(BackendError::Unavailable(_))));
        assert_eq!(store.len(), 100);
        // Known keys still answer (in flight), never evicted.
        let again = store.claim_now(&key(7), "", &Owner::unique(), lease);
        assert!(matches!(again, Ok(Claim::InFlight { .. })));
        // Once records expire there is room again.
        tokio::time::advance(lease + Duration::from_secs(1)).await;
        let later = store.claim_now(&key(100), "", &Owner::unique(), lease);
        assert!(matches!(later, Ok(Claim::Acquired)));
        assert!(store.len() <= 100);
    }

    /// The responses kept are bounded in bytes: one that does not fit is recorded as done but
    /// not kept (a retry gets "not replayable", never a second run).
    #[tokio::test(start_paused = true)]
    async fn responses_are_bounded_in_bytes() {
        let store = MemoryStore::new().with_max_bytes(10_000);
        let lease = Duration::from_secs(10);
        let keep = Duration::from_secs(60);
        let key = |i: usize| RecordKey::message("bytes", &i.to_string());
        for i in 0..3 {
            let owner = Owner::unique();
            assert!(matches!(
                store.claim_now(&key(i), "", &owner, lease),
                Ok(Claim::Acquired)
            ));
            let response = Bytes::from(vec![b'x'; 4000]);
            assert!(
                store
                    .complete(&key(i), &owner, response, keep)
                    .await
                    .unwrap()
            );
        }
        assert!(store.bytes() <= 10_000, "{} bytes kept", store.bytes());
        assert!(matches!(
            store.claim_now(&key(2), "", &Owner::unique(), lease),
            Ok(Claim::Completed(r)) if r.as_ref() == NOT_KEPT
        ));
        // Once the kept responses expire, there is room again.
        tokio::time::advance(keep + Duration::from_secs(1)).await;
        let owner = Owner::unique();
        let _ = store.claim_now(&key(9), "", &owner, lease);
        let response = Bytes::from(vec![b'y'; 4000]);
        assert!(
            store
                .complete(&key(9), &owner, response.clone(), keep)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .claim_now(&key(9), "", &Owner::unique(), lease)
                .unwrap(),
            Claim::Completed(response)
        );
    }
}
