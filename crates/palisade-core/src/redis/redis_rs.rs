//! [`RedisClient`] for redis-rs (feature `redis-rs`, redis 1.x): `ConnectionManager`
//! (reconnects by itself — the usual choice), `MultiplexedConnection` and the cluster
//! `ClusterConnection`.
//!
//! ```no_run
//! # async fn demo() -> redis::RedisResult<()> {
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let connection = redis::aio::ConnectionManager::new(client).await?;
//! // `connection` is a `palisade_core::redis::RedisClient`: hand it to any palisade Redis store.
//! # Ok(()) }
//! ```

use ::redis::{
    Cmd, ErrorKind, RedisError, ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager, MultiplexedConnection},
    cluster_async::ClusterConnection,
};

use super::{Arg, CallError, RedisClient, Reply};
use crate::backend::BackendError;

fn push_args(cmd: &mut Cmd, args: &[Arg]) {
    for arg in args {
        match arg {
            Arg::Int(n) => cmd.arg(*n),
            Arg::Bytes(b) => cmd.arg(&b[..]),
        };
    }
}

fn script_cmd(name: &str, script: &str, keys: &[String], args: &[Arg]) -> Cmd {
    let mut cmd = ::redis::cmd(name);
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(key.as_str());
    }
    push_args(&mut cmd, args);
    cmd
}

fn reply(value: Value) -> Reply {
    match value {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Int(n),
        Value::Boolean(b) => Reply::Int(i64::from(b)),
        Value::BulkString(bytes) => Reply::Bytes(bytes.into()),
        Value::SimpleString(s) => Reply::Bytes(s.into()),
        Value::Okay => Reply::Bytes("OK".into()),
        Value::Double(d) => Reply::Bytes(d.to_string().into()),
        Value::VerbatimString { text, .. } => Reply::Bytes(text.into()),
        Value::Array(items) | Value::Set(items) => {
            Reply::Array(items.into_iter().map(reply).collect())
        }
        Value::Map(pairs) => Reply::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [reply(k), reply(v)])
                .collect(),
        ),
        Value::Attribute { data, .. } => reply(*data),
        Value::Push { data, .. } => Reply::Array(data.into_iter().map(reply).collect()),
        other => Reply::Bytes(format!("{other:?}").into()),
    }
}

fn error(error: RedisError) -> CallError {
    match error.kind() {
        ErrorKind::Server(ServerErrorKind::NoScript) => CallError::NoScript,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            CallError::Backend(BackendError::Protocol(error.to_string()))
        }
        _ => CallError::Backend(BackendError::Unavailable(error.to_string())),
    }
}

async fn query<C: ConnectionLike>(mut connection: C, cmd: Cmd) -> Result<Reply, CallError> {
    cmd.query_async::<Value>(&mut connection)
        .await
        .map(reply)
        .map_err(error)
}

macro_rules! redis_rs_client {
    ($client:ty) => {
        impl RedisClient for $client {
            fn evalsha(
                &self,
                sha1: &str,
                keys: &[String],
                args: &[Arg],
            ) -> impl Future<Output = Result<Reply, CallError>> + Send {
                query(self.clone(), script_cmd("EVALSHA", sha1, keys, args))
            }

            fn eval(
                &self,
                source: &str,
                keys: &[String],
                args: &[Arg],
            ) -> impl Future<Output = Result<Reply, CallError>> + Send {
                query(self.clone(), script_cmd("EVAL", source, keys, args))
            }

            fn command(
                &self,
                name: &'static str,
                args: &[Arg],
            ) -> impl Future<Output = Result<Reply, CallError>> + Send {
                let mut cmd = ::redis::cmd(name);
                push_args(&mut cmd, args);
                query(self.clone(), cmd)
            }

            fn pipeline(
                &self,
                commands: &[(&'static str, Vec<Arg>)],
            ) -> impl Future<Output = Result<Vec<Reply>, CallError>> + Send {
                let mut pipe = ::redis::pipe();
                for (name, args) in commands {
                    let mut cmd = ::redis::cmd(name);
                    push_args(&mut cmd, args);
                    pipe.add_command(cmd);
                }
                let mut connection = self.clone();
                async move {
                    let replies: Vec<Value> =
                        pipe.query_async(&mut connection).await.map_err(error)?;
                    Ok(replies.into_iter().map(reply).collect())
                }
            }
        }
    };
}

redis_rs_client!(ConnectionManager);
redis_rs_client!(MultiplexedConnection);
redis_rs_client!(ClusterConnection);
