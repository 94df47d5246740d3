//! Where claims and stored responses live: the [`IdempotencyStore`] trait and its
//! implementations — [`MemoryStore`], [`RedisStore`], [`PostgresStore`] and [`DualStore`]
//! (Redis in front of PostgreSQL).
//!
//! # The record and its states
//!
//! One record per [`RecordKey`], in one of three states:
//!
//! - **processing** — claimed by one owner (a random token) until its *lease* ends; the owner
//!   renews the lease while its handler runs. A crashed owner's claim simply runs out.
//! - **completed** — the stored response, kept for the *retention* period.
//! - **released** — the handler failed; the key is free again, and the record only counts the
//!   failed attempts (for dead-lettering), kept for the retention period.
//!
//! Every transition is one atomic step in the store (a Lua script, one SQL statement, one
//! mutex section): of any number of concurrent claims on a free key exactly one is acquired,
//! and only the owner's token can complete, release or renew its claim.

#[cfg(all(feature = "redis", feature = "postgres"))]
mod dual;
mod either;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

use std::{future::Future, time::Duration};

use bytes::Bytes;
use palisade_core::{BackendError, key::Key};
use sha2::{Digest, Sha256};

#[cfg(all(feature = "redis", feature = "postgres"))]
pub use dual::DualStore;
pub use memory::{DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS, MemoryStore};
#[cfg(feature = "postgres")]
pub use postgres::{DEFAULT_PG_TIMEOUT, InvalidTableName, MIGRATION, PostgresStore};
#[cfg(feature = "redis")]
pub use redis::RedisStore;

use crate::fingerprint::hex;

/// The identity of one idempotent operation: SHA-256 over its namespace, its caller scope, its
/// route and the client's key, as 64 hex characters.
///
/// Because the caller and the route are part of it, the same `Idempotency-Key` sent by two
/// API keys, or to two endpoints, names two different operations: one client can never
/// receive another's stored response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey(String);

impl RecordKey {
    /// The key of an HTTP request's operation.
    pub fn new(namespace: &str, caller: &Key, route: &str, key: &str) -> RecordKey {
        let caller = caller.to_string();
        let mut hash = Sha256::new();
        for part in [namespace, caller.as_str(), route, key] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        RecordKey(hex(&hash.finalize()))
    }

    /// The key of a message in consumer deduplication.
    pub fn message(namespace: &str, message_id: &str) -> RecordKey {
        RecordKey::new(namespace, &Key::Global, "message", message_id)
    }

    /// The 64 hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub use crate::state::{Claim, Failed, Owner};

/// Keeps idempotency records. See the [module docs](self) for the states.
///
/// Implementations must make each method one atomic step. The in-memory, Redis, PostgreSQL and
/// dual stores run the same test suite.
pub trait IdempotencyStore: Clone + Send + Sync + 'static {
    /// Claims `key` for `owner` with a lease, unless it is in flight or completed.
    fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, BackendError>> + Send;

    /// Stores `response` under `owner`'s claim and keeps it for `retention`. `Ok(false)` when
    /// the claim is no longer `owner`'s (its lease ran out and another request took it).
    fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: Bytes,
        retention: Duration,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Records a failed attempt of `owner`'s claim **in one step**: released for another
    /// attempt, or — when this is attempt `max_attempts` — completed with `dead` (retired), so
    /// no other worker can claim the record between "released" and "retired". `Ok(None)` when
    /// the claim is not `owner`'s.
    fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
    ) -> impl Future<Output = Result<Option<Failed>, BackendError>> + Send;

    /// Frees `owner`'s claim after a failed attempt and returns the number of failed attempts
    /// recorded for the key (kept for `retention`); `Ok(None)` when the claim was not
    /// `owner`'s. The default is [`fail`](Self::fail) with no attempt limit — the same step.
    fn release(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> impl Future<Output = Result<Option<u32>, BackendError>> + Send {
        async move {
            let failed = self
                .fail(key, owner, u32::MAX, Bytes::new(), retention)
                .await?;
            Ok(failed.map(|f| f.attempts))
        }
    }

    /// Releases `owner`'s claim after the *claim itself* timed out — it may have landed after
    /// the caller stopped waiting. Runs in the background, so stores whose calls have a
    /// deadline give this one a longer one
    /// ([`compensation_timeout`](palisade_core::backend::compensation_timeout)). The default
    /// is [`release`](Self::release).
    fn release_late_claim(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> impl Future<Output = Result<Option<u32>, BackendError>> + Send {
        self.release(key, owner, retention)
    }

    /// Extends `owner`'s lease to `lease` from now. `Ok(false)` when the claim is lost.
    fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
}

/// Runs `work` while renewing `owner`'s claim on `key` every third of `lease`; a failed or lost
/// renewal is logged (the work goes on: stopping it half-way could leave it half done).
pub(crate) async fn renew_while<S: IdempotencyStore, F: Future>(
    store: &S,
    key: &RecordKey,
    owner: &Owner,
    lease: Duration,
    work: F,
) -> F::Output {
    let every = lease / 3;
    // Renewals run beside the work, never in its way: a slow store delays the next renewal,
    // never the handler (polling the work is not suspended while a renewal is awaited).
    let renewals = async {
        let mut next = tokio::time::Instant::now() + every;
        loop {
            tokio::time::sleep_until(next).await;
            match store.renew(key, owner, lease).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    target: "palisade::idempotency",
                    "lease lost while the work runs; a retry may run it again"
                ),
                Err(error) => tracing::warn!(
                    target: "palisade::idempotency",
                    %error,
                    "could not renew the lease"
                ),
            }
            // No burst of catch-up renewals after a slow one: the next is a period from now.
            next = tokio::time::Instant::now().max(next + every);
        }
    };
    let mut work = std::pin::pin!(work);
    let mut renewals = std::pin::pin!(renewals);
    tokio::select! {
        biased;
        output = &mut work => output,
        never = &mut renewals => never,
    }
}
