//! [`RedisScript`]: one `EVALSHA` per decision, reloaded on `NOSCRIPT`, bounded by a timeout.

use std::{fmt::Write, time::Duration};

use sha1::{Digest, Sha1};

use super::{Arg, CallError, FromReply, RedisClient};
use crate::backend::BackendError;

/// A Lua script known by its SHA-1, run with `EVALSHA`.
///
/// The script cache is emptied when Redis restarts or fails over, so `EVALSHA` may answer
/// `NOSCRIPT`; the script is then sent once with `EVAL` (which caches it again) on the node that
/// owns the keys. The whole exchange is bounded by a timeout: a paused or black-holed Redis
/// yields [`BackendError::Timeout`], never a hang.
///
/// ```
/// use palisade_core::redis::RedisScript;
///
/// let incr = RedisScript::new("return redis.call('INCR', KEYS[1])");
/// // What `redis-cli SCRIPT LOAD` answers for the same source:
/// assert_eq!(incr.sha1(), "61636018f4e6b5817b89791bbed242f93fa089e3");
/// ```
///
/// Running it, on any [`RedisClient`]:
///
/// ```no_run
/// # async fn demo(client: impl palisade_core::redis::RedisClient) -> Result<(), palisade_core::BackendError> {
/// use std::{sync::LazyLock, time::Duration};
/// use palisade_core::redis::RedisScript;
///
/// static INCR: LazyLock<RedisScript> =
///     LazyLock::new(|| RedisScript::new("return redis.call('INCR', KEYS[1])"));
/// let n: i64 = INCR
///     .invoke(&client, &["counter".to_owned()], &[], Duration::from_millis(50))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisScript {
    lua: &'static str,
    sha1: String,
}

impl RedisScript {
    /// Wraps `lua` (usually `include_str!` of a file under `src/scripts/`).
    pub fn new(lua: &'static str) -> Self {
        let digest = Sha1::digest(lua.as_bytes());
        let mut sha1 = String::with_capacity(40);
        for byte in digest {
            let _ = write!(sha1, "{byte:02x}");
        }
        RedisScript { lua, sha1 }
    }

    /// The script's SHA-1, as `EVALSHA` wants it.
    pub fn sha1(&self) -> &str {
        &self.sha1
    }

    /// The script's source.
    pub fn source(&self) -> &'static str {
        self.lua
    }

    /// Runs the script on `keys` and `args`, within `timeout` in all (the `EVAL` after a
    /// `NOSCRIPT` included).
    pub async fn invoke<C, R>(
        &self,
        client: &C,
        keys: &[String],
        args: &[Arg],
        timeout: Duration,
    ) -> Result<R, BackendError>
    where
        C: RedisClient,
        R: FromReply,
    {
        let call = async {
            match client.evalsha(&self.sha1, keys, args).await {
                Err(CallError::NoScript) => client.eval(self.lua, keys, args).await,
                other => other,
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => R::from_reply(reply),
            Ok(Err(CallError::Backend(error))) => Err(error),
            Ok(Err(CallError::NoScript)) => Err(BackendError::Protocol(
                "NOSCRIPT after EVAL: the server refused to cache the script".to_owned(),
            )),
            Err(_) => Err(BackendError::Timeout(timeout)),
        }
    }
}
