//! Event store load runs for BENCHMARKS.md, against the machine's PostgreSQL (`DATABASE_URL`,
//! a fresh schema). Loopback only, bounded in count.
//!
//! ```text
//! eventstore_load append STREAMS N   # N commands (load, decide, append) over STREAMS streams at once
//! eventstore_load load N             # load one aggregate of N events: full replay vs snapshot
//! eventstore_load catchup N          # a projection catching up on N events
//! ```

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use palisade_eventstore::{
    Aggregate, DomainEvent, EventStore, NewStored, Projection, ProjectionRunner, RecordedEvent,
    Repository, Snapshot,
};
use palisade_outbox::Schema;
use palisade_testkit::TestPostgres;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Event {
    Deposited { amount_cents: i64 },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        "account.deposited"
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Account {
    balance_cents: i64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Event = Event;
    type Command = i64;
    type Error = String;

    fn apply(&mut self, Event::Deposited { amount_cents }: &Event) {
        self.balance_cents += amount_cents;
    }

    fn handle(&self, amount: i64) -> Result<Vec<Event>, String> {
        Ok(vec![Event::Deposited {
            amount_cents: amount,
        }])
    }
}

struct Counter;

impl Projection for Counter {
    fn name(&self) -> &str {
        "counter"
    }

    fn table(&self) -> &str {
        "counter"
    }

    fn create<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        table: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, n bigint NOT NULL)"
            ))
            .execute(conn)
            .await
            .map(drop)
        })
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        table: &'a str,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query(&format!(
                "INSERT INTO {table} AS c (id, n) VALUES ($1, 1) \
                 ON CONFLICT (id) DO UPDATE SET n = c.n + 1"
            ))
            .bind(&event.stream_id)
            .execute(conn)
            .await
            .map(drop)
        })
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let pg = TestPostgres::with_max_connections(20).await;
    let store = EventStore::new(pg.pool.clone(), Schema::new(&pg.schema).unwrap());
    store.migrate().await.unwrap();
    match args.first().map(String::as_str) {
        Some("append") => append(store, n(1, 1), n(2, 4000)).await,
        Some("load") => load(store, n(1, 10_000)).await,
        Some("catchup") => catchup(store, n(1, 20_000)).await,
        _ => {
            eprintln!("usage: eventstore_load append|load|catchup …");
            std::process::exit(2);
        }
    }
}

async fn append(store: EventStore, streams: u64, n: u64) {
    let repository = Repository::<Account>::new(store).snapshot_every(100);
    let start = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|s| {
            let repository = repository.clone();
            tokio::spawn(async move {
                for _ in 0..n / streams {
                    repository
                        .execute(&format!("s-{s}"), 1, None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "append streams={streams} n={n} commands_per_sec={:.0}",
        n as f64 / elapsed.as_secs_f64()
    );
}

async fn fill(store: &EventStore, stream: &str, n: u64) {
    let event = serde_json::to_value(Event::Deposited { amount_cents: 1 }).unwrap();
    let mut version = 0;
    while version < n {
        let chunk = (n - version).min(500);
        let events: Vec<NewStored> = (0..chunk)
            .map(|_| NewStored {
                event_type: "account.deposited".into(),
                schema_version: 1,
                payload: event.clone(),
                metadata: serde_json::json!({}),
            })
            .collect();
        let mut tx = store.pool().begin().await.unwrap();
        version = store
            .append(&mut tx, stream, "account", version, &events)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn load(store: EventStore, n: u64) {
    fill(&store, "big", n).await;
    let repository = Repository::<Account>::new(store.clone());
    let time = |runs: u32| {
        let repository = repository.clone();
        async move {
            let start = Instant::now();
            for _ in 0..runs {
                let loaded = repository.load("big").await.unwrap();
                assert_eq!(loaded.version, n);
            }
            start.elapsed() / runs
        }
    };
    let replay = time(5).await;
    let state = repository.load("big").await.unwrap().state;
    let mut tx = store.pool().begin().await.unwrap();
    store
        .save_snapshot(
            &mut tx,
            "big",
            &Snapshot {
                version: n,
                schema_version: 1,
                state: serde_json::to_value(&state).unwrap(),
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let snapshot = time(20).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "load events={n} replay_ms={:.2} snapshot_ms={:.2} ratio={:.3}",
        ms(replay),
        ms(snapshot),
        ms(snapshot) / ms(replay)
    );
}

async fn catchup(store: EventStore, n: u64) {
    for s in 0..10 {
        fill(&store, &format!("s-{s}"), n / 10).await;
    }
    let runner = ProjectionRunner::new(store).with(Counter).batch(500);
    runner.prepare().await.unwrap();
    let start = Instant::now();
    let mut applied = 0;
    loop {
        let k = runner.catch_up("counter").await.unwrap();
        if k == 0 {
            break;
        }
        applied += k;
    }
    println!(
        "catchup events={applied} events_per_sec={:.0}",
        applied as f64 / start.elapsed().as_secs_f64()
    );
}
