//! The ledger: an event-sourced account (optimistic concurrency, snapshots) and a `balances`
//! projection, over PostgreSQL.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -p palisade-examples --bin ledger
//! curl -X POST localhost:3200/accounts/a-1/deposit -d '{"amount_cents": 1000}'
//! curl -X POST localhost:3200/accounts/a-1/withdraw -d '{"amount_cents": 100, "expected_version": 1}'
//! curl localhost:3200/accounts/a-1
//! curl localhost:3200/balances/a-1
//! ```
//!
//! See `examples/README.md` for the contract.

mod account;
mod api;
mod balances;

use std::time::Duration;

use palisade::{
    eventstore::{EventStore, ProjectionRunner, Repository},
    outbox::Schema,
};
use palisade_examples::serve::{ServeLimits, serve, shutdown_signal};
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;

use crate::{account::Account, api::App, balances::Balances};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn exit(code: i32, message: String) -> ! {
    eprintln!("ledger: {message}");
    std::process::exit(code)
}

#[tokio::main]
async fn main() {
    palisade_examples::init_tracing("info,palisade=info");
    let database_url =
        var("DATABASE_URL").unwrap_or_else(|| exit(2, "DATABASE_URL is required".into()));
    let addr: std::net::SocketAddr = var("LEDGER_ADDR")
        .as_deref()
        .unwrap_or("127.0.0.1:3200")
        .parse()
        .unwrap_or_else(|e| exit(2, format!("LEDGER_ADDR: {e}")));
    let schema = Schema::new(&var("LEDGER_SCHEMA").unwrap_or_else(|| "palisade_ledger".into()))
        .unwrap_or_else(|e| exit(2, format!("LEDGER_SCHEMA: {e}")));
    let snapshot_every: u64 = var("LEDGER_SNAPSHOT_EVERY")
        .map(|v| {
            v.parse()
                .unwrap_or_else(|e| exit(2, format!("LEDGER_SNAPSHOT_EVERY: {e}")))
        })
        .unwrap_or(100);

    let pool = connect(&database_url).await;
    let store = EventStore::new(pool, schema);
    if let Err(e) = store.migrate().await {
        exit(1, format!("cannot migrate: {e}"));
    }
    let projections = ProjectionRunner::new(store.clone())
        .with(Balances)
        .poll_interval(Duration::from_millis(50));
    if let Err(e) = projections.prepare().await {
        exit(1, format!("cannot prepare the projections: {e}"));
    }
    // Contention is expected (many withdrawals of one account): retry generously, with
    // jittered backoff, before answering 503.
    let accounts = Repository::<Account>::new(store)
        .snapshot_every(snapshot_every)
        .retries(200);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| exit(1, format!("cannot listen on {addr}: {e}")));
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = watch::channel(false);
    let runner = {
        let (projections, mut stopped) = (projections.clone(), stopped.clone());
        tokio::spawn(async move {
            projections
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        })
    };
    drop(stopped);
    tracing::info!(%addr, "ledger listening");
    println!("ledger listening on http://{addr}");
    let limits = ServeLimits::default();
    let app = api::router(
        App {
            accounts,
            projections,
        },
        limits,
    );
    serve(listener, app, limits, async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    })
    .await;
    let _ = runner.await;
}

/// Connects to PostgreSQL, retrying for 30 s (it may still be starting).
async fn connect(url: &str) -> sqlx::PgPool {
    let mut last = String::new();
    for _ in 0..30 {
        match PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
        {
            Ok(pool) => return pool,
            Err(sqlx::Error::Configuration(e)) => exit(2, format!("DATABASE_URL: {e}")),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    exit(1, format!("cannot reach PostgreSQL: {last}"))
}
