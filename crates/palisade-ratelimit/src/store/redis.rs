use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, LazyLock},
    time::Duration,
};

use palisade_core::{
    BackendError,
    key::Key,
    redis::{Arg, DECISION_TIMEOUT, RedisBackend, RedisClient, RedisScript},
};

use super::{Checked, Mode, RateLimitStore};
use crate::{Decision, Policy, decision::LimitOutcome, policy::MAX_LIMITS};

static CHECK: LazyLock<RedisScript> =
    LazyLock::new(|| RedisScript::new(include_str!("../scripts/check.lua")));

/// Rate-limit state in Redis, shared by every instance: one `EVALSHA` per decision.
///
/// The script checks all of a policy's limits atomically with the Redis server's clock
/// (`TIME`), so instances with skewed clocks agree. Keys are
/// `<prefix>:ratelimit:<policy>.<limit>.<algorithm>:{<key>}`; the client key is the Cluster
/// hash tag, so a policy's limits for one client share a slot and the store works on Redis
/// Cluster. Every call is bounded by a timeout (default 50 ms); when it fails the layer applies
/// the policy's `on_backend_error`.
///
/// Works with any [`RedisClient`]: with feature `fred` (the default) `fred::clients::Client`
/// or `Pool` (a pool of two connections reaches Redis' own script throughput on a small
/// machine); with feature `redis-rs` a `ConnectionManager` or a cluster `ClusterConnection`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use fred::prelude::*;
/// use palisade_ratelimit::RedisStore;
///
/// let client = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build()?;
/// client.init().await?;
/// let store = RedisStore::new(client);
/// # Ok(()) }
/// ```
pub struct RedisStore<C> {
    inner: Arc<RedisBackend<C>>,
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
            .field("prefix", &self.inner.keys().prefix())
            .field("timeout", &self.inner.timeout())
            .finish_non_exhaustive()
    }
}

impl<C: RedisClient> RedisStore<C> {
    /// A store on `client` with the default key prefix (`palisade`) and timeout
    /// ([`DECISION_TIMEOUT`], 50 ms).
    pub fn new(client: C) -> Self {
        RedisStore {
            inner: Arc::new(RedisBackend::new(client, "ratelimit", DECISION_TIMEOUT)),
        }
    }

    /// Puts every key under `prefix` (one prefix per application sharing a Redis).
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.map(|b| b.with_prefix(prefix))
    }

    /// Bounds every decision's round trip (default 50 ms).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.map(|b| b.with_timeout(timeout))
    }

    fn map(self, f: impl FnOnce(RedisBackend<C>) -> RedisBackend<C>) -> Self {
        RedisStore {
            inner: Arc::new(f(RedisBackend::clone(&self.inner))),
        }
    }

    /// The Redis keys a check of `policy` for `key` touches, one per limit.
    pub fn keys_of(&self, policy: &Policy, key: &Key) -> Vec<String> {
        policy
            .namespaces()
            .iter()
            .map(|ns| self.inner.key(ns, key))
            .collect()
    }

    /// Runs the script with an explicit `now` (µs) instead of the server clock: for the
    /// differential test only.
    #[doc(hidden)]
    pub async fn check_at(
        &self,
        policy: &Policy,
        key: &Key,
        cost: u64,
        mode: Mode,
        now: Option<u64>,
    ) -> Result<Decision, BackendError> {
        let keys = self.keys_of(policy, key);
        let mut args: Vec<Arg> = Vec::with_capacity(4 + 3 * policy.limits().len());
        args.push(Arg::Int(if mode == Mode::Peek { 1 } else { 0 }));
        args.push(Arg::Int(now.map_or(-1, |n| n as i64)));
        args.push(Arg::Int(cost as i64));
        args.push(Arg::Int(policy.limits().len() as i64));
        for limit in policy.limits() {
            for arg in limit.algorithm().script_args() {
                args.push(Arg::Int(arg as i64));
            }
        }
        let reply: Vec<i64> = self.inner.run(&CHECK, &keys, &args).await?;
        parse_reply(policy, &reply)
    }
}

fn parse_reply(policy: &Policy, reply: &[i64]) -> Result<Decision, BackendError> {
    let n = policy.limits().len();
    if reply.len() != 2 + 6 * n {
        return Err(BackendError::Protocol(format!(
            "rate-limit script returned {} values, expected {}",
            reply.len(),
            2 + 6 * n
        )));
    }
    let allowed = reply[0] == 1;
    let mut outcomes = [LimitOutcome::default(); MAX_LIMITS];
    for (i, slot) in outcomes.iter_mut().take(n).enumerate() {
        let r = &reply[2 + 6 * i..2 + 6 * (i + 1)];
        let (fits, before, after, retry, reset_before, reset_after) =
            (r[0] == 1, r[1], r[2], r[3], r[4], r[5]);
        *slot = LimitOutcome::new(
            (if allowed { after } else { before }).max(0) as u64,
            (if allowed { reset_after } else { reset_before }).max(0) as u64,
            (!fits).then_some((retry >= 0).then_some(retry as u64)),
        );
    }
    Ok(Decision::from_outcomes(policy, allowed, outcomes))
}

impl<C: RedisClient> RateLimitStore for RedisStore<C> {
    type Future = Pin<Box<dyn Future<Output = Result<Decision, BackendError>> + Send>>;

    fn check(&self, policy: &Policy, key: &Key, cost: u64, mode: Mode) -> Checked<Self::Future> {
        let store = self.clone();
        let policy = policy.clone();
        let key = key.clone();
        Checked::Pending(Box::pin(async move {
            store.check_at(&policy, &key, cost, mode, None).await
        }))
    }
}
