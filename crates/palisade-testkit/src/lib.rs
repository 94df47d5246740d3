//! Test support for palisade: real servers, never mocks.
//!
//! - [`TestRedis`]: a client for the shared Redis at `REDIS_URL` (default
//!   `redis://127.0.0.1:6379`) and a key prefix unique to the test, so tests run in parallel
//!   without flushing anything. A missing server fails the test with instructions. Both
//!   clients palisade supports are at hand: fred ([`TestRedis::client`]) and redis-rs
//!   ([`TestRedis::redis_rs`], [`connect_redis_rs`], [`RedisCluster::redis_rs`]).
//! - [`RedisNode`]: a private `redis-server` on a free loopback port, with kill, pause
//!   (SIGSTOP) / resume (SIGCONT) and restart, for outage tests.
//! - [`RedisCluster`]: three private masters joined with `redis-cli --cluster create`.
//! - [`FaultProxy`]: a TCP proxy that can add latency, drop, reset or black-hole connections.
//! - [`faults`]: the fault matrix — a private server behind a fault proxy, every fault, and the
//!   `eventually` check for invariants once the fault has healed.
//! - [`metrics::Recording`]: a recorder keeping every counter and gauge, for metric tests.
//! - `grpc::RawCodec` (feature `grpc`): tonic messages as raw bytes.
//! - `TestPostgres` (feature `postgres`): a pool on the shared PostgreSQL at `DATABASE_URL`
//!   whose connections use a schema created for the test alone.
//!
//! ```no_run
//! # async fn demo() {
//! let redis = palisade_testkit::TestRedis::connect().await;
//! let key = format!("{}:counter", redis.prefix);
//! # }
//! ```

pub mod differential;
pub mod faults;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod metrics;
mod nats;
mod node;
#[cfg(feature = "postgres")]
mod postgres;
mod proxy;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fred::{
    clients::Client,
    interfaces::ClientLike,
    types::{
        Builder,
        config::{Config, ReconnectPolicy},
    },
};

pub use nats::{NatsServer, nats_url};
pub use node::{RedisCluster, RedisNode};
#[cfg(feature = "postgres")]
pub use postgres::{TestPostgres, database_url};
pub use proxy::{FaultMode, FaultProxy};

/// The shared Redis tests use: `REDIS_URL`, else `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (in this or another process) uses.
pub fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "t-{name}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// A connected client for the shared Redis and a prefix unique to this test.
pub struct TestRedis {
    /// The client, connected.
    pub client: Client,
    /// A key prefix unique to this test.
    pub prefix: String,
}

impl TestRedis {
    /// Connects to [`redis_url`], or panics explaining how to start Redis.
    pub async fn connect() -> TestRedis {
        let url = redis_url();
        let client = connect_url(&url, Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach Redis at {url} ({e}). Tests need a real Redis: start one with \
                     `redis-server --daemonize yes --port 6379 --save ''` or \
                     `docker compose up -d redis`, or point REDIS_URL at one."
                )
            });
        TestRedis {
            client,
            prefix: unique_prefix("r"),
        }
    }

    /// A redis-rs connection to the same server (use it with the same [`prefix`](Self::prefix)
    /// to run a store on the other client).
    pub async fn redis_rs(&self) -> redis::aio::ConnectionManager {
        let url = redis_url();
        connect_redis_rs(&url, Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| panic!("cannot reach Redis at {url} with redis-rs ({e})"))
    }

    /// A further client on the same server (as another service instance would have).
    pub async fn another_client(&self) -> Client {
        connect_url(&redis_url(), Duration::from_secs(3))
            .await
            .expect("second connection to the test Redis")
    }
}

/// A redis-rs `ConnectionManager` on `url` (`redis://` only), ready. It reconnects by itself
/// (every 50 ms at most), so a test can kill and restart its server; no response timeout is
/// set, so the store's own timeout is the one under test.
pub async fn connect_redis_rs(
    url: &str,
    within: Duration,
) -> Result<redis::aio::ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(None)
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(50));
    match tokio::time::timeout(
        within,
        redis::aio::ConnectionManager::new_with_config(client, config),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}

/// Connects a client to `url` (`redis://` or `redis-cluster://`) and waits until it is ready.
///
/// The client reconnects forever every 50 ms, so a test can kill and restart its server.
pub async fn connect_url(url: &str, within: Duration) -> Result<Client, String> {
    let config = Config::from_url(url).map_err(|e| e.to_string())?;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_millis(500);
            c.internal_command_timeout = Duration::from_millis(500);
            c.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_constant(0, 50))
        .build()
        .map_err(|e| e.to_string())?;
    let ready = async {
        client.init().await?;
        client.ping::<String>(None).await
    };
    match tokio::time::timeout(within, ready).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => {
            let _ = client.quit().await;
            Err(e.to_string())
        }
        Err(_) => {
            let _ = client.quit().await;
            Err(format!("no answer within {within:?}"))
        }
    }
}

/// One test, `suite_on_redis_cluster`, running every `scenario(store)` of a store suite on a
/// private 3-master Redis Cluster, once with each client: `$make` builds a store from a
/// client (fred's cluster `Client`, then redis-rs' `ClusterConnection`) and a key prefix
/// unique to the scenario.
///
/// ```ignore
/// palisade_testkit::suite_on_cluster!(
///     |client, prefix| RedisStore::new(client).with_prefix(prefix),
///     [admits_quota_then_refuses, peek_consumes_nothing]
/// );
/// ```
#[macro_export]
macro_rules! suite_on_cluster {
    (|$client:ident, $prefix:ident| $make:expr, [$($scenario:ident),* $(,)?]) => {
        /// The whole suite on a 3-master Redis Cluster, on both clients: a store's keys for
        /// one caller share a hash slot, so every script runs on the master owning it.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn suite_on_redis_cluster() {
            let cluster = $crate::RedisCluster::start();
            let fred = cluster.client().await;
            let redis_rs = cluster.redis_rs().await;
            $(
                {
                    let ($client, $prefix) = (fred.clone(), &$crate::unique_prefix("cluster"));
                    $scenario($make).await;
                }
                {
                    let ($client, $prefix) =
                        (redis_rs.clone(), &$crate::unique_prefix("cluster"));
                    $scenario($make).await;
                }
            )*
        }
    };
}
