//! [`RedisBackend`]: what every Redis store embeds — a client, its key names, its call timeout.

use std::{fmt, time::Duration};

use super::{Arg, CallError, FromReply, RedisClient, RedisScript};
use crate::{backend::BackendError, key::Key, redis_key::RedisKeyBuilder};

/// The default bound on a **decision** on the request path (a rate-limit check, a fleet
/// permit, a fleet-breaker read): 50 ms. A decision that cannot be made in that time is better
/// answered by the layer's `on_backend_error` policy than waited for.
pub const DECISION_TIMEOUT: Duration = Duration::from_millis(50);

/// The default bound on a call that **takes or changes ownership** (a lock, an idempotency
/// claim and its completion): 500 ms. Missing it leaves an unknown outcome that must be
/// compensated, so it is given more room than a decision.
pub const OWNERSHIP_TIMEOUT: Duration = Duration::from_millis(500);

/// One Redis backend: the client, the store's key names (`<prefix>:<layer>:…`) and the bound on
/// each call. Every palisade Redis store is built on one, so prefixes, timeouts and script
/// handling mean the same thing in all of them.
///
/// ```
/// # fn demo<C: palisade_core::redis::RedisClient>(client: C) {
/// use std::time::Duration;
/// use palisade_core::redis::{RedisBackend, DECISION_TIMEOUT};
///
/// let backend = RedisBackend::new(client, "ratelimit", DECISION_TIMEOUT)
///     .with_prefix("shop")
///     .with_timeout(Duration::from_millis(20));
/// assert_eq!(backend.keys().prefix(), "shop");
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackend<C> {
    client: C,
    keys: RedisKeyBuilder,
    timeout: Duration,
}

impl<C> fmt::Debug for RedisBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.keys.prefix())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<C> RedisBackend<C> {
    /// A backend for the keys of `layer` (`"ratelimit"`, `"lock"`…) under the prefix
    /// `palisade`, each call bounded by `timeout` ([`DECISION_TIMEOUT`] or
    /// [`OWNERSHIP_TIMEOUT`]).
    pub fn new(client: C, layer: &'static str, timeout: Duration) -> Self {
        RedisBackend {
            client,
            keys: RedisKeyBuilder::new(layer),
            timeout,
        }
    }

    /// Puts every key under `prefix` (one prefix per application sharing a Redis).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.keys = self.keys.with_prefix(prefix);
        self
    }

    /// Bounds every call by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// The key builder.
    pub fn keys(&self) -> &RedisKeyBuilder {
        &self.keys
    }

    /// The Redis key of `key` in `namespace`.
    pub fn key(&self, namespace: &str, key: &Key) -> String {
        self.keys.key(namespace, key)
    }

    /// The Redis key of the text name `name` in `namespace` (as [`key`](Self::key) of
    /// `Key::from(name)`).
    pub fn key_of_text(&self, namespace: &str, name: &str) -> String {
        self.keys.key_of_text(namespace, name)
    }

    /// The bound on one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<C: RedisClient> RedisBackend<C> {
    /// Runs `script` within the backend's timeout.
    pub async fn run<R: FromReply>(
        &self,
        script: &RedisScript,
        keys: &[String],
        args: &[Arg],
    ) -> Result<R, BackendError> {
        script.invoke(&self.client, keys, args, self.timeout).await
    }

    /// Runs one plain command (`name args…`, routed by its first argument on a cluster)
    /// within the backend's timeout.
    pub async fn command<R: FromReply>(
        &self,
        name: &'static str,
        args: &[Arg],
    ) -> Result<R, BackendError> {
        match tokio::time::timeout(self.timeout, self.client.command(name, args)).await {
            Ok(Ok(reply)) => R::from_reply(reply),
            Ok(Err(CallError::Backend(error))) => Err(error),
            Ok(Err(CallError::NoScript)) => {
                Err(BackendError::Protocol(format!("{name} answered NOSCRIPT")))
            }
            Err(_) => Err(BackendError::Timeout(self.timeout)),
        }
    }

    /// Runs `script` within `timeout` (a compensation's longer deadline, or what is left of a
    /// request's budget).
    pub async fn run_within<R: FromReply>(
        &self,
        script: &RedisScript,
        keys: &[String],
        args: &[Arg],
        timeout: Duration,
    ) -> Result<R, BackendError> {
        script.invoke(&self.client, keys, args, timeout).await
    }
}
