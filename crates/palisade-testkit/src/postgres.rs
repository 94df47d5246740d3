//! [`TestPostgres`]: a fresh schema per test on the shared PostgreSQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{
    Executor, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::unique_prefix;

/// The shared PostgreSQL tests use: `DATABASE_URL`, else
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A pool whose connections all use a schema created for this test alone (`search_path`), so
/// tests create their tables freely and run in parallel.
///
/// Schemas are named `palisade_t_<unix seconds>_…`; each new `TestPostgres` drops the ones
/// older than an hour, so interrupted runs do not pile up.
pub struct TestPostgres {
    /// The pool; every connection's `search_path` is [`schema`](Self::schema).
    pub pool: PgPool,
    /// The schema created for this test.
    pub schema: String,
}

impl TestPostgres {
    /// Connects to [`database_url`] and creates a fresh schema, or panics explaining how to
    /// start PostgreSQL.
    pub async fn connect() -> TestPostgres {
        Self::with_max_connections(10).await
    }

    /// As [`connect`](Self::connect), with a pool of at most `max` connections.
    pub async fn with_max_connections(max: u32) -> TestPostgres {
        let url = database_url();
        let options: PgConnectOptions = url
            .parse()
            .unwrap_or_else(|e| panic!("DATABASE_URL {url} is not a PostgreSQL URL: {e}"));
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {url} ({e}). Tests need a real PostgreSQL: start \
                     one (`docker compose up -d postgres`, or `pg_ctlcluster 15 main start`) or \
                     point DATABASE_URL at one."
                )
            });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        drop_stale_schemas(&admin, now).await;
        let schema = format!("palisade_t_{now}_{}", unique_prefix("").replace('-', "_"))
            .replace("__", "_")
            .to_lowercase();
        admin
            .execute(format!("CREATE SCHEMA {schema}").as_str())
            .await
            .expect("create the test schema");
        admin.close().await;
        let pool = schema_pool(options, &schema, max)
            .await
            .expect("connect the test pool");
        TestPostgres { pool, schema }
    }

    /// The server's address (host and port of [`database_url`]), to put a
    /// [`FaultProxy`](crate::FaultProxy) in front of it.
    pub async fn server_addr(&self) -> std::net::SocketAddr {
        let options: PgConnectOptions = database_url().parse().expect("DATABASE_URL");
        let target = format!("{}:{}", options.get_host(), options.get_port());
        tokio::net::lookup_host(target.as_str())
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve the PostgreSQL address {target}"))
    }

    /// A pool on the same schema whose connections go to `addr` (a fault proxy) instead.
    pub async fn pool_via(&self, addr: std::net::SocketAddr, max: u32) -> PgPool {
        let options: PgConnectOptions = database_url().parse().expect("DATABASE_URL");
        let options = options.host(&addr.ip().to_string()).port(addr.port());
        schema_pool(options, &self.schema, max)
            .await
            .expect("connect a test pool through the proxy")
    }

    /// Terminates backend `pid` and waits (up to 5 s) until it is gone from
    /// `pg_stat_activity` — `pg_terminate_backend` returns before the backend has exited and
    /// released its locks, so asserting right after it is a race.
    pub async fn terminate(&self, pid: i32) {
        let _: (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&self.pool)
            .await
            .expect("pg_terminate_backend");
        for _ in 0..500 {
            let alive: (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                    .bind(pid)
                    .fetch_one(&self.pool)
                    .await
                    .expect("pg_stat_activity");
            if !alive.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("backend {pid} still running 5 s after pg_terminate_backend");
    }

    /// A second, independent pool on the same schema (as another service instance would have).
    pub async fn another_pool(&self, max: u32) -> PgPool {
        let options: PgConnectOptions = database_url().parse().expect("DATABASE_URL");
        schema_pool(options, &self.schema, max)
            .await
            .expect("connect a second test pool")
    }
}

// A pool whose every connection works in `schema`.
async fn schema_pool(
    options: PgConnectOptions,
    schema: &str,
    max: u32,
) -> Result<PgPool, sqlx::Error> {
    let search_path = schema.to_owned();
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            let set = format!("SET search_path TO {search_path}");
            Box::pin(async move {
                conn.execute(set.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
}

async fn drop_stale_schemas(admin: &PgPool, now: u64) {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'palisade\\_t\\_%'",
    )
    .fetch_all(admin)
    .await
    .unwrap_or_default();
    for (name,) in names {
        let created = name
            .strip_prefix("palisade_t_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| secs + 3600 < now) {
            let _ = admin
                .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                .await;
        }
    }
}
