//! The orders service: orders and their events written in one transaction (the transactional
//! outbox), relayed to NATS JetStream or Redis Streams, projected into a customers read model
//! by an idempotent consumer.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -p palisade-examples --bin orders
//! curl -i -X POST localhost:3100/orders -H 'content-type: application/json' \
//!   -d '{"order_id": "o-1", "customer_id": "c-1", "amount_cents": 500}'
//! curl -i -X POST localhost:3100/orders/o-1/pay
//! curl localhost:3100/customers/c-1
//! ```
//!
//! `ORDERS_ROLE` = `all` (default) | `api` | `relay` | `projector` runs the parts as separate
//! processes. See `examples/README.md` for the whole contract.

mod api;
mod checkout;
mod config;
mod fakes;
mod projector;
mod store;

use std::time::Duration;

use palisade::{
    Either,
    outbox::{
        Outbox, Relay, RelayConfig,
        jetstream::{JetStreamSink, ensure_stream},
        redis_streams::RedisStreamSink,
    },
};
use palisade_examples::serve::{ServeLimits, serve};
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;

use crate::{
    config::{Settings, SinkKind},
    store::Store,
};

/// How long JetStream remembers a `Nats-Msg-Id` (a relay republishing after a crash within
/// it adds nothing).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(300);

/// The broker connection the relay and the projector share.
#[derive(Clone)]
pub enum Broker {
    Nats(Box<async_nats::jetstream::Context>),
    Redis(fred::clients::Client),
}

#[tokio::main]
async fn main() {
    palisade_examples::init_tracing("info,palisade=info");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("orders: {e}");
            std::process::exit(2);
        }
    };
    let store = match open_store(&settings).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("orders: {e}");
            std::process::exit(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(listener) => listener,
        // A relay or projector started without ORDERS_ADDR next to an API instance on the
        // default port still serves its read-only routes, on a free port.
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && !settings.role.api()
                && !settings.addr_given =>
        {
            match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("orders: cannot listen: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("orders: cannot listen on {}: {e}", settings.addr);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("bound");

    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let broker = if settings.role.relay() || settings.role.projector() {
        Some(connect_broker(&settings.sink).await)
    } else {
        None
    };
    let mut tasks = Vec::new();
    if let (true, Some(broker)) = (settings.role.relay(), broker.clone()) {
        tasks.push(tokio::spawn(run_relay(
            store.clone(),
            broker,
            settings.clone(),
            until_stopped(),
        )));
    }
    if let (true, Some(broker)) = (settings.role.projector(), broker) {
        tasks.push(tokio::spawn(projector::run(
            store.pool().clone(),
            store.schema().clone(),
            broker,
            settings.stream.clone(),
            settings.subject.clone(),
            until_stopped(),
        )));
    }

    // The checkout saga and its fake downstreams live with the API (every API instance runs
    // the saga runner: a checkout whose instance died is resumed by another).
    let extra = if settings.role.api() {
        let fakes = match fakes::Fakes::open(store.pool().clone(), store.schema()).await {
            Ok(fakes) => fakes,
            Err(e) => {
                eprintln!("orders: cannot create the fake services' table: {e}");
                std::process::exit(1);
            }
        };
        let runner = palisade::saga::SagaRunner::new(
            store.pool().clone(),
            store.schema().clone(),
            vec![checkout::definition(&format!("http://{addr}"))],
        )
        .lease(Duration::from_secs(3))
        .poll_interval(Duration::from_millis(200))
        .publish_to(Outbox::new(store.schema().clone()));
        if let Err(e) = runner.migrate().await {
            eprintln!("orders: cannot migrate the saga table: {e}");
            std::process::exit(1);
        }
        tasks.push(tokio::spawn({
            let (runner, stopped) = (runner.clone(), until_stopped());
            async move { runner.run(stopped).await }
        }));
        checkout::router(runner).merge(fakes.router())
    } else {
        axum::Router::new()
    };

    tracing::info!(%addr, role = ?settings.role, "orders listening");
    println!("orders listening on http://{addr}");
    let shutdown = async move {
        palisade_examples::serve::shutdown_signal().await;
        let _ = stop.send(true);
    };
    let limits = ServeLimits::default();
    serve(
        listener,
        api::router(store, limits, extra),
        limits,
        shutdown,
    )
    .await;
    for task in tasks {
        let _ = task.await;
    }
}

/// Connects to PostgreSQL (retrying for 30 s: the database may still be starting) and
/// migrates.
async fn open_store(settings: &Settings) -> Result<Store, String> {
    let mut last = String::new();
    for _ in 0..30 {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&settings.database_url)
            .await;
        match pool {
            Ok(pool) => {
                return Store::open(pool, settings.schema.clone())
                    .await
                    .map_err(|e| format!("cannot migrate schema {}: {e}", settings.schema));
            }
            Err(sqlx::Error::Configuration(e)) => return Err(format!("DATABASE_URL: {e}")),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("cannot reach PostgreSQL: {last}"))
}

/// The broker client; it connects (and reconnects) in the background, so a broker that is
/// down at start is waited for, not fatal.
async fn connect_broker(sink: &SinkKind) -> Broker {
    match sink {
        SinkKind::Nats(url) => {
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connection_timeout(Duration::from_secs(2))
                .connect(url.as_str())
                .await
                .unwrap_or_else(|e| {
                    eprintln!("orders: NATS_URL={url}: {e}");
                    std::process::exit(2);
                });
            let mut context = async_nats::jetstream::new(client);
            context.set_timeout(Duration::from_secs(2));
            Broker::Nats(Box::new(context))
        }
        SinkKind::Redis(url) => {
            Broker::Redis(palisade_examples::redis::connect(url, "orders").await)
        }
    }
}

async fn run_relay(
    store: Store,
    broker: Broker,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let sink = match broker {
        Broker::Nats(context) => {
            loop {
                let made = ensure_stream(
                    &context,
                    &settings.stream,
                    &settings.subject,
                    DUPLICATE_WINDOW,
                );
                tokio::select! {
                    made = made => match made {
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(%error, "relay: stream not ready, retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    _ = &mut shutdown => return,
                }
            }
            Either::Left(JetStreamSink::new(*context, settings.subject.clone()))
        }
        Broker::Redis(client) => match RedisStreamSink::new(client, settings.stream.clone()) {
            Ok(sink) => Either::Right(sink),
            Err(error) => {
                eprintln!("orders: ORDERS_STREAM: {error}");
                std::process::exit(2);
            }
        },
    };
    let mut config = RelayConfig::default();
    config.backoff_base = Duration::from_millis(50);
    config.backoff_cap = Duration::from_secs(2);
    let relay = Relay::new(store.pool().clone(), store.schema().clone(), sink, config);
    if let Err(error) = relay.run(shutdown).await {
        tracing::error!(%error, "relay stopped");
    }
}
