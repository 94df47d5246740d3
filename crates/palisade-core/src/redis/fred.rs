//! [`RedisClient`] for the `fred` client (feature `fred`): `fred::clients::Client` and
//! `fred::clients::Pool`, centralized or clustered, as the user configured them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fred::prelude::*;
//!
//! let client = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build()?;
//! client.init().await?;
//! // `client` is a `palisade_core::redis::RedisClient`: hand it to any palisade Redis store.
//! # Ok(()) }
//! ```

use ::fred::{
    clients::{Client, Pool},
    error::{Error, ErrorKind},
    interfaces::{ClientLike, LuaInterface},
    types::{ClusterHash, CustomCommand, Value},
};

use super::{Arg, CallError, RedisClient, Reply};
use crate::backend::BackendError;

fn value(arg: &Arg) -> Value {
    match arg {
        Arg::Int(n) => Value::Integer(*n),
        Arg::Bytes(b) => Value::Bytes(b.clone()),
    }
}

fn values(args: &[Arg]) -> Vec<Value> {
    args.iter().map(value).collect()
}

fn reply(value: Value) -> Reply {
    match value {
        Value::Null => Reply::Nil,
        Value::Integer(n) => Reply::Int(n),
        Value::Boolean(b) => Reply::Int(i64::from(b)),
        Value::Double(d) => Reply::Bytes(d.to_string().into()),
        Value::String(s) => Reply::Bytes(s.into_inner()),
        Value::Bytes(b) => Reply::Bytes(b),
        Value::Queued => Reply::Bytes("QUEUED".into()),
        Value::Array(items) => Reply::Array(items.into_iter().map(reply).collect()),
        Value::Map(map) => Reply::Array(
            map.inner()
                .into_iter()
                .flat_map(|(k, v)| [Reply::Bytes(k.into_bytes()), reply(v)])
                .collect(),
        ),
    }
}

fn error(error: Error) -> CallError {
    if error.details().starts_with("NOSCRIPT") {
        return CallError::NoScript;
    }
    CallError::Backend(match error.kind() {
        ErrorKind::Parse | ErrorKind::Protocol | ErrorKind::InvalidArgument => {
            BackendError::Protocol(error.to_string())
        }
        _ => BackendError::Unavailable(error.to_string()),
    })
}

macro_rules! fred_client {
    ($client:ty) => {
        impl RedisClient for $client {
            async fn evalsha(
                &self,
                sha1: &str,
                keys: &[String],
                args: &[Arg],
            ) -> Result<Reply, CallError> {
                LuaInterface::evalsha::<Value, _, _, _>(self, sha1, keys.to_vec(), values(args))
                    .await
                    .map(reply)
                    .map_err(error)
            }

            async fn eval(
                &self,
                source: &str,
                keys: &[String],
                args: &[Arg],
            ) -> Result<Reply, CallError> {
                LuaInterface::eval::<Value, _, _, _>(self, source, keys.to_vec(), values(args))
                    .await
                    .map(reply)
                    .map_err(error)
            }

            async fn command(&self, name: &'static str, args: &[Arg]) -> Result<Reply, CallError> {
                let command = CustomCommand::new_static(name, ClusterHash::FirstKey, false);
                ClientLike::custom::<Value, Value>(self, command, values(args))
                    .await
                    .map(reply)
                    .map_err(error)
            }

            async fn pipeline(
                &self,
                commands: &[(&'static str, Vec<Arg>)],
            ) -> Result<Vec<Reply>, CallError> {
                let pipeline = pipeline_of(self);
                for (name, args) in commands {
                    let command = CustomCommand::new_static(name, ClusterHash::FirstKey, false);
                    ClientLike::custom::<Value, Value>(&pipeline, command, values(args))
                        .await
                        .map_err(error)?;
                }
                let replies: Vec<Value> = pipeline.all().await.map_err(error)?;
                Ok(replies.into_iter().map(reply).collect())
            }
        }
    };
}

/// A pipeline on the client, or on the pool's next client.
trait PipelineOf {
    fn pipeline_of(&self) -> ::fred::clients::Pipeline<Client>;
}

impl PipelineOf for Client {
    fn pipeline_of(&self) -> ::fred::clients::Pipeline<Client> {
        self.pipeline()
    }
}

impl PipelineOf for Pool {
    fn pipeline_of(&self) -> ::fred::clients::Pipeline<Client> {
        self.next().pipeline()
    }
}

fn pipeline_of<T: PipelineOf>(client: &T) -> ::fred::clients::Pipeline<Client> {
    client.pipeline_of()
}

fred_client!(Client);
fred_client!(Pool);
