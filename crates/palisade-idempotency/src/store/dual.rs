//! [`DualStore`]: a fast store in front of a durable one.

use std::time::Duration;

use bytes::Bytes;
use palisade_core::BackendError;

use super::{Claim, Failed, IdempotencyStore, Owner, RecordKey};

/// Redis in front of PostgreSQL (or any fast store in front of any durable one): the fast
/// store answers replays and in-flight conflicts in one round trip; the durable store is the
/// source of truth that decides who executes.
///
/// - **claim**: the fast store first. A completed, in-flight or mismatched record there is the
///   answer. When the fast store grants the claim, the durable store is asked too, and its
///   answer wins: if it already holds the completed response (the fast store was flushed,
///   restarted or evicted the key), the fast store is **backfilled** with it and it is
///   replayed — the operation does not run twice.
/// - **complete / release / renew**: durable store first (its answer is returned), then the
///   fast store.
/// - A failing fast store is logged and skipped: the durable store alone still decides, so
///   a Redis outage costs latency, not correctness. A failing durable store is an error.
///
/// ```no_run
/// # async fn demo(redis: fred::clients::Client, pool: sqlx::PgPool) {
/// use palisade_idempotency::{DualStore, PostgresStore, RedisStore};
///
/// let store = DualStore::new(RedisStore::new(redis), PostgresStore::new(pool));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DualStore<F, D> {
    fast: F,
    durable: D,
}

impl<F: IdempotencyStore, D: IdempotencyStore> DualStore<F, D> {
    /// `fast` in front of `durable`.
    pub fn new(fast: F, durable: D) -> Self {
        DualStore { fast, durable }
    }

    /// The fast store.
    pub fn fast(&self) -> &F {
        &self.fast
    }

    /// The durable store.
    pub fn durable(&self) -> &D {
        &self.durable
    }
}

fn skip_fast(operation: &'static str, error: &BackendError) {
    tracing::warn!(
        target: "palisade::idempotency",
        operation,
        error = %error,
        "fast idempotency store failed; using the durable store alone"
    );
    metrics::counter!("palisade_idempotency_fast_store_errors_total").increment(1);
}

impl<F: IdempotencyStore, D: IdempotencyStore> IdempotencyStore for DualStore<F, D> {
    async fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Claim, BackendError> {
        let fast_claimed = match self.fast.claim(key, fingerprint, owner, lease).await {
            Ok(Claim::Acquired) => true,
            Ok(answer) => return Ok(answer),
            Err(error) => {
                skip_fast("claim", &error);
                false
            }
        };
        let durable = self.durable.claim(key, fingerprint, owner, lease).await;
        if !fast_claimed {
            return durable;
        }
        let outcome = match &durable {
            Ok(Claim::Acquired) => return durable,
            Ok(Claim::Completed(response)) => {
                // Backfill: the fast store now replays it without asking the durable one.
                self.fast
                    .complete(key, owner, response.clone(), lease.max(BACKFILL_RETENTION))
                    .await
            }
            // In flight elsewhere, mismatched, or failing: free the fast claim we just took.
            _ => self.fast.release(key, owner, lease).await.map(|_| true),
        };
        if let Err(error) = outcome {
            skip_fast("backfill", &error);
        }
        durable
    }

    async fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: Bytes,
        retention: Duration,
    ) -> Result<bool, BackendError> {
        let done = self
            .durable
            .complete(key, owner, response.clone(), retention)
            .await?;
        if done {
            if let Err(error) = self.fast.complete(key, owner, response, retention).await {
                skip_fast("complete", &error);
            }
        }
        Ok(done)
    }

    async fn release(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        let failures = self.durable.release(key, owner, retention).await?;
        if let Err(error) = self.fast.release(key, owner, retention).await {
            skip_fast("release", &error);
        }
        Ok(failures)
    }

    async fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
    ) -> Result<Option<Failed>, BackendError> {
        let failed = self
            .durable
            .fail(key, owner, max_attempts, dead.clone(), retention)
            .await?;
        if let Err(error) = self
            .fast
            .fail(key, owner, max_attempts, dead, retention)
            .await
        {
            skip_fast("fail", &error);
        }
        Ok(failed)
    }

    async fn release_late_claim(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        let failures = self
            .durable
            .release_late_claim(key, owner, retention)
            .await?;
        if let Err(error) = self.fast.release_late_claim(key, owner, retention).await {
            skip_fast("release", &error);
        }
        Ok(failures)
    }

    async fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<bool, BackendError> {
        let renewed = self.durable.renew(key, owner, lease).await?;
        if let Err(error) = self.fast.renew(key, owner, lease).await {
            skip_fast("renew", &error);
        }
        Ok(renewed)
    }
}

/// How long a backfilled response stays in the fast store (the durable store keeps it for
/// its full retention).
const BACKFILL_RETENTION: Duration = Duration::from_secs(3600);
