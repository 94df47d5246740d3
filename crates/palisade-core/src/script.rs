//! Running a Lua script with one `EVALSHA`: reloaded on `NOSCRIPT`, bounded by a timeout.

use std::time::Duration;

use fred::{
    interfaces::LuaInterface,
    types::{FromValue, MultipleKeys, MultipleValues},
};

use crate::backend::BackendError;

/// A Lua script known by its SHA-1, run with `EVALSHA`.
///
/// The script cache is emptied when Redis restarts or fails over, so `EVALSHA` may answer
/// `NOSCRIPT`; the script is then sent once with `EVAL` (which caches it again) on the node that
/// owns the keys. The whole exchange is bounded by a timeout: a paused or black-holed Redis
/// yields [`BackendError::Timeout`], never a hang.
///
/// ```no_run
/// # async fn demo(client: fred::clients::Client) -> Result<(), palisade_core::BackendError> {
/// use std::time::Duration;
/// use palisade_core::script::RedisScript;
///
/// static INCR: std::sync::LazyLock<RedisScript> =
///     std::sync::LazyLock::new(|| RedisScript::new("return redis.call('INCR', KEYS[1])"));
/// let n: i64 = INCR
///     .invoke(&client, vec!["counter".to_string()], Vec::<i64>::new(), Duration::from_millis(50))
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
        RedisScript {
            lua,
            sha1: fred::util::sha1_hash(lua),
        }
    }

    /// The script's SHA-1, as `EVALSHA` wants it.
    pub fn sha1(&self) -> &str {
        &self.sha1
    }

    /// The script's source.
    pub fn source(&self) -> &'static str {
        self.lua
    }

    /// Runs the script on `keys` and `args`, within `timeout` in all.
    pub async fn invoke<C, R, K, V>(
        &self,
        client: &C,
        keys: K,
        args: V,
        timeout: Duration,
    ) -> Result<R, BackendError>
    where
        C: LuaInterface + Send + Sync,
        R: FromValue,
        K: Into<MultipleKeys> + Send,
        V: TryInto<MultipleValues> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        let keys: MultipleKeys = keys.into();
        let args: MultipleValues = args.try_into().map_err(|e| {
            let e: fred::error::Error = e.into();
            BackendError::Protocol(e.to_string())
        })?;
        let call = async {
            match client
                .evalsha::<R, _, _, _>(self.sha1.as_str(), keys.clone(), args.clone())
                .await
            {
                Err(error) if error.details().starts_with("NOSCRIPT") => {
                    client.eval::<R, _, _, _>(self.lua, keys, args).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(classify(error)),
            Err(_) => Err(BackendError::Timeout(timeout)),
        }
    }
}

fn classify(error: fred::error::Error) -> BackendError {
    use fred::error::ErrorKind;
    match error.kind() {
        ErrorKind::Parse | ErrorKind::Protocol | ErrorKind::InvalidArgument => {
            BackendError::Protocol(error.to_string())
        }
        _ => BackendError::Unavailable(error.to_string()),
    }
}
