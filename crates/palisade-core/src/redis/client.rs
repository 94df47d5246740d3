//! The client trait every Redis store runs on, and the values it sends and receives.

use std::future::Future;

use bytes::Bytes;

use crate::backend::BackendError;

/// One argument of a script or command: an integer or a binary-safe string.
///
/// Redis hands every argument to a script as a string, so the two variants differ only in how
/// they are written; integers are kept apart so the adapters need no formatting on the caller's
/// side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// An integer, sent as its decimal digits.
    Int(i64),
    /// Bytes, sent as they are.
    Bytes(Bytes),
}

impl From<i64> for Arg {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

impl From<u32> for Arg {
    fn from(n: u32) -> Self {
        Arg::Int(i64::from(n))
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Bytes(Bytes::from(s))
    }
}

impl From<Bytes> for Arg {
    fn from(b: Bytes) -> Self {
        Arg::Bytes(b)
    }
}

impl From<&[u8]> for Arg {
    fn from(b: &[u8]) -> Self {
        Arg::Bytes(Bytes::copy_from_slice(b))
    }
}

/// A reply, as a Lua script can produce it (RESP2 shapes; RESP3 maps and sets arrive as
/// flat arrays, booleans as integers, doubles as their text).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `nil` (Lua `false` or `nil`).
    Nil,
    /// An integer (a Lua number is truncated to one; Lua `true` is `1`).
    Int(i64),
    /// A bulk or status string.
    Bytes(Bytes),
    /// An array (a Lua table).
    Array(Vec<Reply>),
}

impl Reply {
    /// The integer in the reply; a string of digits counts.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// The bytes in the reply, if it is a string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Reply::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// A type a [`Reply`] converts into; a reply of the wrong shape is a
/// [`BackendError::Protocol`] (a script from another version, a key of the wrong type).
pub trait FromReply: Sized {
    /// Converts `reply`.
    fn from_reply(reply: Reply) -> Result<Self, BackendError>;
}

fn unexpected(expected: &str, reply: &Reply) -> BackendError {
    BackendError::Protocol(format!("expected {expected}, got {reply:?}"))
}

impl FromReply for Reply {
    fn from_reply(reply: Reply) -> Result<Self, BackendError> {
        Ok(reply)
    }
}

impl FromReply for i64 {
    fn from_reply(reply: Reply) -> Result<Self, BackendError> {
        reply
            .as_int()
            .ok_or_else(|| unexpected("an integer", &reply))
    }
}

impl FromReply for Bytes {
    fn from_reply(reply: Reply) -> Result<Self, BackendError> {
        match reply {
            Reply::Bytes(b) => Ok(b),
            other => Err(unexpected("a string", &other)),
        }
    }
}

impl<T: FromReply> FromReply for Option<T> {
    fn from_reply(reply: Reply) -> Result<Self, BackendError> {
        match reply {
            Reply::Nil => Ok(None),
            other => T::from_reply(other).map(Some),
        }
    }
}

impl<T: FromReply> FromReply for Vec<T> {
    fn from_reply(reply: Reply) -> Result<Self, BackendError> {
        match reply {
            Reply::Array(items) => items.into_iter().map(T::from_reply).collect(),
            Reply::Nil => Ok(Vec::new()),
            other => Err(unexpected("an array", &other)),
        }
    }
}

/// Why a call gave no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// `EVALSHA` found no script with that SHA-1 (the server restarted or failed over, or
    /// `SCRIPT FLUSH` ran): send the source with `EVAL`.
    #[error("NOSCRIPT: the script is not cached on the server")]
    NoScript,
    /// Any other failure.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The few operations palisade's Redis stores need, implemented for the clients users already
/// have: with feature `fred`, `fred::clients::Client` and `Pool`; with feature `redis-rs`,
/// redis-rs' `ConnectionManager`, `MultiplexedConnection` and cluster `ClusterConnection`.
///
/// Every piece of shared state lives in a Lua script (one atomic round trip per decision), so
/// scripts are the core of the trait; [`command`](Self::command) runs one plain command whose
/// first argument is its key, and [`pipeline`](Self::pipeline) several in one round trip. Implementations neither retry nor time out — callers bound each
/// call by its deadline ([`RedisScript::invoke`](super::RedisScript::invoke)) and treat a missed
/// one as an unknown outcome. On a cluster, calls go to the node owning the first key.
///
/// Implementing it for another client is a few lines: see `src/redis/fred.rs`.
pub trait RedisClient: Clone + Send + Sync + 'static {
    /// `EVALSHA sha1 <keys.len()> keys… args…`; [`CallError::NoScript`] when the server does
    /// not have the script.
    fn evalsha(
        &self,
        sha1: &str,
        keys: &[String],
        args: &[Arg],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// `EVAL source <keys.len()> keys… args…` (also caches the script on that node).
    fn eval(
        &self,
        source: &str,
        keys: &[String],
        args: &[Arg],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// One command: `name args…`, routed by its first argument on a cluster.
    fn command(
        &self,
        name: &'static str,
        args: &[Arg],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// Several commands in one round trip, in order — a pipeline, **not** a transaction (use a
    /// script for atomicity): every reply, or the first error (a command's error reply or the
    /// round trip's). On a cluster every command's key must be in one hash slot (a hash tag:
    /// `{order-1}:a`, `{order-1}:b`); the pipeline goes to that slot's node.
    fn pipeline(
        &self,
        commands: &[(&'static str, Vec<Arg>)],
    ) -> impl Future<Output = Result<Vec<Reply>, CallError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_convert_or_say_what_they_got() {
        assert_eq!(i64::from_reply(Reply::Int(7)), Ok(7));
        assert_eq!(
            i64::from_reply(Reply::Bytes(Bytes::from_static(b"-3"))),
            Ok(-3)
        );
        assert!(matches!(
            i64::from_reply(Reply::Nil),
            Err(BackendError::Protocol(_))
        ));
        assert_eq!(
            Vec::<i64>::from_reply(Reply::Array(vec![Reply::Int(1), Reply::Int(2)])),
            Ok(vec![1, 2])
        );
        assert_eq!(Option::<i64>::from_reply(Reply::Nil), Ok(None));
        assert!(Vec::<i64>::from_reply(Reply::Array(vec![Reply::Nil])).is_err());
    }
}
