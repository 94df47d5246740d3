//! [`RedisStore`]: records in Redis, shared by every instance.

use std::{
    fmt,
    sync::{Arc, LazyLock},
    time::Duration,
};

use bytes::Bytes;
use palisade_core::{
    BackendError,
    key::Key,
    redis::{Arg, OWNERSHIP_TIMEOUT, RedisBackend, RedisClient, RedisScript, Reply},
};

use super::{Claim, Failed, IdempotencyStore, Owner, RecordKey};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

static CLAIM: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/claim.lua")));
static COMPLETE: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/complete.lua")));
static FAIL: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/fail.lua")));
static RENEW: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/renew.lua")));

/// Idempotency records in Redis: one script call to claim, one to complete (or release).
///
/// Each record is a hash at `<prefix>:idempotency:<namespace>:{<record key>}` that expires
/// with its lease (while processing) or its retention (once completed), by the Redis server's
/// clock. Leases are Redis TTLs, so a crashed instance's claim disappears on its own. Every
/// call is bounded by a timeout (default 500 ms, [`OWNERSHIP_TIMEOUT`]); a failure is a [`BackendError`] and the
/// layer applies its `on_backend_error` policy (fail closed by default).
///
/// Redis alone loses records when it restarts without persistence or evicts keys under
/// `maxmemory`: where a duplicate execution is expensive, put it in front of PostgreSQL with
/// [`DualStore`](super::DualStore).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use fred::prelude::*;
/// use palisade_idempotency::RedisStore;
///
/// let client = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build()?;
/// client.init().await?;
/// let store = RedisStore::new(client).with_namespace("payments");
/// # Ok(()) }
/// ```
///
/// Works with any [`RedisClient`]: fred's `Client` or `Pool` (feature `fred`, the default),
/// redis-rs' `ConnectionManager` or `ClusterConnection` (feature `redis-rs`).
pub struct RedisStore<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    backend: RedisBackend<C>,
    namespace: String,
}

impl<C> Clone for RedisStore<C> {
    fn clone(&self) -> Self {
        RedisStore {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.backend.keys().prefix())
            .field("namespace", &self.inner.namespace)
            .field("timeout", &self.inner.backend.timeout())
            .finish_non_exhaustive()
    }
}

impl<C: RedisClient> RedisStore<C> {
    /// A store on `client` with prefix `palisade`, namespace `default` and a 500 ms timeout.
    pub fn new(client: C) -> Self {
        RedisStore {
            inner: Arc::new(Inner {
                backend: RedisBackend::new(client, "idempotency", OWNERSHIP_TIMEOUT),
                namespace: "default".to_owned(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
        } else {
            let mut inner = Inner {
                backend: self.inner.backend.clone(),
                namespace: self.inner.namespace.clone(),
            };
            f(&mut inner);
            self.inner = Arc::new(inner);
        }
        self
    }

    /// The first part of every key (default `palisade`).
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.edit(|inner| inner.backend = inner.backend.clone().with_prefix(prefix))
    }

    /// A name separating this store's records from other services' (default `default`).
    pub fn with_namespace(self, namespace: &str) -> Self {
        self.edit(|inner| inner.namespace = namespace.to_owned())
    }

    /// The bound on one round trip (default 500 ms).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.edit(|inner| inner.backend = inner.backend.clone().with_timeout(timeout))
    }

    /// The Redis key of a record.
    pub fn redis_key(&self, key: &RecordKey) -> String {
        self.inner
            .backend
            .key(&self.inner.namespace, &Key::from(key.as_str()))
    }

    // A failed attempt, in one script: released, or retired once `max_attempts` is reached.
    // `release` is the same step with no limit.
    async fn fail_within(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
        timeout: Duration,
    ) -> Result<Option<Failed>, BackendError> {
        let args = [
            Arg::from(owner.as_str()),
            Arg::Int(millis(retention) as i64),
            Arg::from(max_attempts),
            Arg::Bytes(dead),
        ];
        let reply: Vec<i64> = self
            .inner
            .backend
            .run_within(&FAIL, &[self.redis_key(key)], &args, timeout)
            .await?;
        match reply.as_slice() {
            [failures, _] if *failures < 0 => Ok(None),
            [failures, retired] => Ok(Some(Failed {
                attempts: (*failures).clamp(0, i64::from(u32::MAX)) as u32,
                retired: *retired == 1,
            })),
            other => Err(BackendError::Protocol(format!(
                "unexpected fail reply {other:?}"
            ))),
        }
    }
}

impl<C: RedisClient> IdempotencyStore for RedisStore<C> {
    async fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Claim, BackendError> {
        let args = [
            Arg::from(fingerprint),
            Arg::from(owner.as_str()),
            Arg::Int(millis(lease) as i64),
        ];
        let reply: Vec<Reply> = self
            .inner
            .backend
            .run(&CLAIM, &[self.redis_key(key)], &args)
            .await?;
        let mut reply = reply.into_iter();
        let kind = reply.next();
        match kind.as_ref().and_then(Reply::as_bytes).map(|b| &b[..]) {
            Some(b"acquired") => Ok(Claim::Acquired),
            Some(b"mismatch") => Ok(Claim::Mismatch),
            Some(b"in_flight") => {
                let left = reply.next().and_then(|v| v.as_int()).unwrap_or(0).max(0);
                Ok(Claim::InFlight {
                    lease_left: Duration::from_millis(left as u64),
                })
            }
            Some(b"completed") => match reply.next() {
                Some(Reply::Bytes(bytes)) => Ok(Claim::Completed(bytes)),
                other => Err(BackendError::Protocol(format!(
                    "completed record without a response: {other:?}"
                ))),
            },
            other => Err(BackendError::Protocol(format!(
                "unexpected claim reply {other:?}"
            ))),
        }
    }

    async fn complete(
        &self,
        key: &RecordKey,
        owner: &Owner,
        response: Bytes,
        retention: Duration,
    ) -> Result<bool, BackendError> {
        let args = [
            Arg::from(owner.as_str()),
            Arg::Bytes(response),
            Arg::Int(millis(retention) as i64),
        ];
        let done: i64 = self
            .inner
            .backend
            .run(&COMPLETE, &[self.redis_key(key)], &args)
            .await?;
        Ok(done == 1)
    }

    async fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
    ) -> Result<Option<Failed>, BackendError> {
        let timeout = self.inner.backend.timeout();
        self.fail_within(key, owner, max_attempts, dead, retention, timeout)
            .await
    }

    async fn release_late_claim(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        let timeout = palisade_core::backend::compensation_timeout(self.inner.backend.timeout());
        let failed = self
            .fail_within(key, owner, u32::MAX, Bytes::new(), retention, timeout)
            .await?;
        Ok(failed.map(|f| f.attempts))
    }

    async fn renew(
        &self,
        key: &RecordKey,
        owner: &Owner,
        lease: Duration,
    ) -> Result<bool, BackendError> {
        let args = [Arg::from(owner.as_str()), Arg::Int(millis(lease) as i64)];
        let renewed: i64 = self
            .inner
            .backend
            .run(&RENEW, &[self.redis_key(key)], &args)
            .await?;
        Ok(renewed == 1)
    }
}
