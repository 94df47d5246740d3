//! The payments service: every palisade layer composed, one process or a fleet.
//!
//! ```text
//! cargo run -p palisade-examples --bin payments                      # in memory
//! REDIS_URL=redis://127.0.0.1:6379 PAYMENTS_ADDR=127.0.0.1:3001 \
//!   cargo run -p palisade-examples --bin payments                    # one of a fleet
//! REDIS_URL=… DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run -p palisade-examples --bin payments                    # + durable idempotency
//!
//! curl -i -X POST localhost:3000/orders/o-1/payments -H 'x-api-key: k' \
//!   -H 'idempotency-key: "pay-o-1"' -H 'content-type: application/json' \
//!   -d '{"amount_cents": 500, "currency": "EUR"}'
//! ```
//!
//! See `examples/README.md` for the HTTP contract.

mod app;
mod config;
mod ledger;
mod problem;
mod serve;
mod upstream;

use std::time::Duration;

use palisade::{
    Either,
    idempotency::{
        DualStore, MemoryStore as MemoryIdempotency, PostgresStore, RedisStore as RedisIdempotency,
    },
    lock::{MemoryLock, RedisLock},
    ratelimit::{MemoryStore as MemoryRateLimits, RedisStore as RedisRateLimits},
};

use crate::{
    app::{Backends, router},
    config::Settings,
    ledger::{MemoryLedger, RedisLedger},
    upstream::Quotes,
};

#[tokio::main]
async fn main() {
    palisade_examples::init_tracing("info,palisade=info");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("payments: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("payments: cannot listen on {}: {e}", settings.addr);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("bound");
    let upstream = format!("http://{addr}/upstream/price")
        .parse()
        .expect("valid uri");
    let quotes = Quotes::new(&settings.quote, upstream);

    let app = router(&settings, backends(&settings).await, quotes);

    tracing::info!(%addr, "payments listening");
    println!("payments listening on http://{addr}");
    // Ctrl-C, or SIGTERM from a container runtime: stop accepting, finish what is running.
    let shutdown = async {
        palisade_examples::serve::shutdown_signal().await;
        tracing::info!("shutting down");
    };
    serve::serve(listener, app, settings.limits, shutdown).await;
}

/// Every backend, chosen from the settings at run time behind one type each
/// ([`Either`]: memory or Redis; idempotency also Redis + PostgreSQL), so the router and its
/// layers are built once, whatever runs behind them.
type RateLimits = Either<MemoryRateLimits, RedisRateLimits<fred::clients::Client>>;
type Idempotency = Either<
    MemoryIdempotency,
    Either<
        RedisIdempotency<fred::clients::Client>,
        DualStore<RedisIdempotency<fred::clients::Client>, PostgresStore>,
    >,
>;
type Locks = Either<MemoryLock, RedisLock<fred::clients::Client>>;
type Ledgers = Either<MemoryLedger, RedisLedger>;

async fn backends(settings: &Settings) -> Backends<RateLimits, Idempotency, Locks, Ledgers> {
    let Some(redis_url) = &settings.redis_url else {
        tracing::info!("in-memory backends: state is per process");
        return Backends {
            rate_limits: Either::Left(MemoryRateLimits::new()),
            idempotency: Either::Left(MemoryIdempotency::new()),
            locks: Either::Left(MemoryLock::new(settings.payments.lock_ttl)),
            ledger: Either::Left(MemoryLedger::default()),
        };
    };
    let client = palisade_examples::redis::connect(redis_url, "payments").await;
    let prefix = settings.redis_prefix.clone();
    let redis_idempotency = RedisIdempotency::new(client.clone()).with_prefix(&prefix);
    let idempotency = match &settings.database_url {
        None => {
            tracing::info!(%redis_url, "Redis backends: shared by every instance");
            Either::Right(Either::Left(redis_idempotency))
        }
        Some(database_url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy(database_url)
                .unwrap_or_else(|e| {
                    eprintln!("payments: DATABASE_URL: {e}");
                    std::process::exit(2);
                });
            let durable = PostgresStore::new(pool);
            if let Err(e) = durable.migrate().await {
                eprintln!("payments: cannot prepare the idempotency table: {e}");
                std::process::exit(1);
            }
            tracing::info!(%redis_url, "Redis backends, idempotency on Redis + PostgreSQL");
            Either::Right(Either::Right(DualStore::new(redis_idempotency, durable)))
        }
    };
    Backends {
        rate_limits: Either::Right(RedisRateLimits::new(client.clone()).with_prefix(&prefix)),
        idempotency,
        locks: Either::Right(
            RedisLock::new(client.clone(), settings.payments.lock_ttl).with_prefix(&prefix),
        ),
        ledger: Either::Right(RedisLedger::new(
            client,
            &prefix,
            settings.payments.lock_ttl,
            settings.payments.idempotency_retention,
        )),
    }
}
