//! [`RedisStore`]: records in Redis, shared by every instance.

use std::{
    fmt,
    sync::{Arc, LazyLock},
    time::Duration,
};

use bytes::Bytes;
use fred::{interfaces::LuaInterface, types::Value};
use palisade_core::{BackendError, key::Key, redis_key::RedisKeyBuilder, script::RedisScript};

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

/// Default bound on one Redis round trip.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Idempotency records in Redis: one script call to claim, one to complete (or release).
///
/// Each record is a hash at `<prefix>:idempotency:<namespace>:{<record key>}` that expires
/// with its lease (while processing) or its retention (once completed), by the Redis server's
/// clock. Leases are Redis TTLs, so a crashed instance's claim disappears on its own. Every
/// call is bounded by a timeout (default 500 ms); a failure is a [`BackendError`] and the
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
pub struct RedisStore<C = fred::clients::Client> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    client: C,
    keys: RedisKeyBuilder,
    namespace: String,
    timeout: Duration,
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
            .field("prefix", &self.inner.keys.prefix())
            .field("namespace", &self.inner.namespace)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl<C: LuaInterface + Clone + Send + Sync + 'static> RedisStore<C> {
    /// A store on `client` (any `fred` client or pool) with prefix `palisade`, namespace
    /// `default` and a 500 ms timeout.
    pub fn new(client: C) -> Self {
        RedisStore {
            inner: Arc::new(Inner {
                client,
                keys: RedisKeyBuilder::new("idempotency"),
                namespace: "default".to_owned(),
                timeout: DEFAULT_REDIS_TIMEOUT,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner<C>)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
        } else {
            let mut inner = Inner {
                client: self.inner.client.clone(),
                keys: self.inner.keys.clone(),
                namespace: self.inner.namespace.clone(),
                timeout: self.inner.timeout,
            };
            f(&mut inner);
            self.inner = Arc::new(inner);
        }
        self
    }

    /// The first part of every key (default `palisade`).
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.edit(|inner| inner.keys = RedisKeyBuilder::new("idempotency").with_prefix(prefix))
    }

    /// A name separating this store's records from other services' (default `default`).
    pub fn with_namespace(self, namespace: &str) -> Self {
        self.edit(|inner| inner.namespace = namespace.to_owned())
    }

    /// The bound on one round trip (default 500 ms).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.edit(|inner| inner.timeout = timeout)
    }

    /// The Redis key of a record.
    pub fn redis_key(&self, key: &RecordKey) -> String {
        self.inner
            .keys
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
        let reply: Vec<i64> = FAIL
            .invoke(
                &self.inner.client,
                self.redis_key(key),
                vec![
                    Value::from(owner.as_str()),
                    Value::from(millis(retention) as i64),
                    Value::from(i64::from(max_attempts)),
                    Value::Bytes(dead),
                ],
                timeout,
            )
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

impl<C: LuaInterface + Clone + Send + Sync + 'static> IdempotencyStore for RedisStore<C> {
    async fn claim(
        &self,
        key: &RecordKey,
        fingerprint: &str,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Claim, BackendError> {
        let reply: Vec<Value> = CLAIM
            .invoke(
                &self.inner.client,
                self.redis_key(key),
                vec![
                    Value::from(fingerprint),
                    Value::from(owner.as_str()),
                    Value::from(millis(lease) as i64),
                ],
                self.inner.timeout,
            )
            .await?;
        let mut reply = reply.into_iter();
        let kind = reply.next().and_then(|v| v.as_string());
        match kind.as_deref() {
            Some("acquired") => Ok(Claim::Acquired),
            Some("mismatch") => Ok(Claim::Mismatch),
            Some("in_flight") => {
                let left = reply.next().and_then(|v| v.as_i64()).unwrap_or(0).max(0);
                Ok(Claim::InFlight {
                    lease_left: Duration::from_millis(left as u64),
                })
            }
            Some("completed") => match reply.next() {
                Some(Value::Bytes(bytes)) => Ok(Claim::Completed(bytes)),
                Some(Value::String(s)) => Ok(Claim::Completed(s.into_inner())),
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
        let done: i64 = COMPLETE
            .invoke(
                &self.inner.client,
                self.redis_key(key),
                vec![
                    Value::from(owner.as_str()),
                    Value::Bytes(response),
                    Value::from(millis(retention) as i64),
                ],
                self.inner.timeout,
            )
            .await?;
        Ok(done == 1)
    }

    async fn release(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        let timeout = self.inner.timeout;
        let failed = self
            .fail_within(key, owner, u32::MAX, Bytes::new(), retention, timeout)
            .await?;
        Ok(failed.map(|f| f.attempts))
    }

    async fn fail(
        &self,
        key: &RecordKey,
        owner: &Owner,
        max_attempts: u32,
        dead: Bytes,
        retention: Duration,
    ) -> Result<Option<Failed>, BackendError> {
        let timeout = self.inner.timeout;
        self.fail_within(key, owner, max_attempts, dead, retention, timeout)
            .await
    }

    async fn release_late_claim(
        &self,
        key: &RecordKey,
        owner: &Owner,
        retention: Duration,
    ) -> Result<Option<u32>, BackendError> {
        let timeout = palisade_core::backend::compensation_timeout(self.inner.timeout);
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
        let renewed: i64 = RENEW
            .invoke(
                &self.inner.client,
                self.redis_key(key),
                vec![
                    Value::from(owner.as_str()),
                    Value::from(millis(lease) as i64),
                ],
                self.inner.timeout,
            )
            .await?;
        Ok(renewed == 1)
    }
}
