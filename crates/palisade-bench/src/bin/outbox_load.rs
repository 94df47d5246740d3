//! Outbox load runs for BENCHMARKS.md, against the machine's PostgreSQL (`DATABASE_URL`, a
//! fresh schema) and NATS (`NATS_URL`, a fresh stream). Loopback only, bounded in count.
//!
//! ```text
//! outbox_load pg N WRITERS        # the machine's limit: N insert+commit, WRITERS at once
//! outbox_load jetstream N         # the broker's limit: N publishes, 256 in flight
//! outbox_load relay N RELAYS      # N committed events drained by RELAYS relays
//! outbox_load latency RATE SECS   # commit-to-broker latency at RATE events/s, one relay
//! outbox_load inbox N             # per-message cost: bare handler vs InboxLayer
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use palisade_outbox::{
    Envelope, InboxLayer, Message, NewEvent, Outbox, OutboxStats, Relay, RelayConfig, Schema,
    jetstream::{JetStreamSink, ensure_stream},
};
use palisade_testkit::{TestPostgres, nats_url, unique_prefix};
use tower::{Layer, Service, ServiceExt};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("pg") => pg(n(1, 5000), n(2, 8)).await,
        Some("jetstream") => jetstream(n(1, 20000)).await,
        Some("relay") => relay(n(1, 20000), n(2, 1)).await,
        Some("latency") => latency(n(1, 200), n(2, 10)).await,
        Some("inbox") => inbox(n(1, 2000)).await,
        _ => {
            eprintln!("usage: outbox_load pg|jetstream|relay|latency|inbox …");
            std::process::exit(2);
        }
    }
}

async fn setup() -> (TestPostgres, Schema, Outbox) {
    let pg = TestPostgres::with_max_connections(16).await;
    let schema = Schema::new(&pg.schema).unwrap();
    schema.migrate(&pg.pool).await.unwrap();
    (pg, schema.clone(), Outbox::new(schema))
}

async fn context() -> (async_nats::jetstream::Context, String) {
    let client = async_nats::connect(nats_url()).await.expect("NATS");
    let context = async_nats::jetstream::new(client);
    let prefix = unique_prefix("bench").replace('-', "_");
    let stream = prefix.to_uppercase();
    ensure_stream(&context, &stream, &prefix, Duration::from_secs(120))
        .await
        .unwrap();
    (context, prefix)
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    (count as f64 / elapsed.as_secs_f64()).round()
}

/// Plain row insert + commit, `writers` at once: what PostgreSQL does without an outbox.
async fn pg(n: u64, writers: u64) {
    let (pg, schema, outbox) = setup().await;
    sqlx::query(&format!(
        "CREATE TABLE {schema}.plain (id bigserial PRIMARY KEY, body jsonb NOT NULL)"
    ))
    .execute(&pg.pool)
    .await
    .unwrap();
    let insert = Arc::new(format!(
        "INSERT INTO {schema}.plain (body) VALUES ($1::jsonb)"
    ));
    let run = |with_outbox: bool| {
        let (pool, insert, outbox) = (pg.pool.clone(), insert.clone(), outbox.clone());
        async move {
            let start = Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let (pool, insert, outbox) = (pool.clone(), insert.clone(), outbox.clone());
                    tokio::spawn(async move {
                        for i in 0..n / writers {
                            let mut tx = pool.begin().await.unwrap();
                            sqlx::query(&insert)
                                .bind(r#"{"amount_cents": 500}"#)
                                .execute(&mut *tx)
                                .await
                                .unwrap();
                            if with_outbox {
                                outbox
                                    .enqueue(
                                        &mut tx,
                                        NewEvent::new(
                                            "order",
                                            format!("o-{w}-{i}"),
                                            "order.placed",
                                            serde_json::json!({"amount_cents": 500}),
                                        ),
                                    )
                                    .await
                                    .unwrap();
                            }
                            tx.commit().await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            start.elapsed()
        }
    };
    let plain = run(false).await;
    let with_outbox = run(true).await;
    println!(
        "pg n={n} writers={writers} plain_tx_per_sec={} with_outbox_tx_per_sec={}",
        per_sec(n, plain),
        per_sec(n, with_outbox)
    );
}

/// JetStream publishes with acks, 256 in flight: what the broker does without an outbox.
async fn jetstream(n: u64) {
    let (context, prefix) = context().await;
    let start = Instant::now();
    let mut acks = futures_util::stream::FuturesUnordered::new();
    for i in 0..n {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("m-{i}").as_str(),
        );
        let body = format!(r#"{{"event_id":"m-{i}","data":{{"amount_cents":500}}}}"#);
        acks.push(
            context
                .publish_with_headers(format!("{prefix}.order.placed"), headers, body.into())
                .await
                .unwrap()
                .into_future(),
        );
        if acks.len() >= 256 {
            acks.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
    println!(
        "jetstream n={n} publish_acked_per_sec={}",
        per_sec(n, start.elapsed())
    );
}

async fn fill(pg: &TestPostgres, outbox: &Outbox, n: u64) {
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (pool, outbox) = (pg.pool.clone(), outbox.clone());
            tokio::spawn(async move {
                for chunk in 0..(n / 8).div_ceil(100) {
                    let mut tx = pool.begin().await.unwrap();
                    for i in 0..100 {
                        if chunk * 100 + i >= n / 8 {
                            break;
                        }
                        outbox
                            .enqueue(
                                &mut tx,
                                NewEvent::new(
                                    "order",
                                    format!("o-{w}-{}", (chunk * 100 + i) % 500),
                                    "order.placed",
                                    serde_json::json!({"amount_cents": 500}),
                                ),
                            )
                            .await
                            .unwrap();
                    }
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// `n` committed events (4 000 aggregates) drained by `relays` relays: events/s from the
/// outbox to the broker's ack.
async fn relay(n: u64, relays: u64) {
    let (pg, schema, outbox) = setup().await;
    let (context, prefix) = context().await;
    fill(&pg, &outbox, n).await;
    let total = OutboxStats::read(&pg.pool, &schema).await.unwrap().pending;
    let start = Instant::now();
    let stop = Arc::new(tokio::sync::Notify::new());
    let running: Vec<_> = (0..relays)
        .map(|_| {
            let relay = Relay::new(
                pg.pool.clone(),
                schema.clone(),
                JetStreamSink::new(context.clone(), prefix.clone()),
                RelayConfig::default(),
            );
            let stop = stop.clone();
            tokio::spawn(async move { relay.run(stop.notified_owned()).await })
        })
        .collect();
    loop {
        let pending = OutboxStats::read(&pg.pool, &schema).await.unwrap().pending;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    stop.notify_waiters();
    for r in running {
        let _ = r.await;
    }
    println!(
        "relay n={total} relays={relays} events_per_sec={}",
        per_sec(total, elapsed)
    );
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Events committed at a steady `rate` for `secs`; a subscriber records when each reaches the
/// broker (core NATS delivery of the stored message) against its commit time.
async fn latency(rate: u64, secs: u64) {
    let (pg, schema, outbox) = setup().await;
    let (context, prefix) = context().await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    let mut subscriber = client.subscribe(format!("{prefix}.>")).await.unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let relay = Relay::new(
        pg.pool.clone(),
        schema.clone(),
        JetStreamSink::new(context, prefix.clone()),
        RelayConfig::default(),
    );
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move { relay.run(stop.notified_owned()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rate * secs;
    let writer = {
        let (pool, outbox) = (pg.pool.clone(), outbox.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            for i in 0..total {
                tick.tick().await;
                let mut tx = pool.begin().await.unwrap();
                let mut event = NewEvent::new(
                    "order",
                    format!("o-{}", i % 100),
                    "order.placed",
                    serde_json::json!({}),
                );
                event = event.header("x-bench", "1");
                let id = outbox.enqueue(&mut tx, event).await.unwrap().id.to_string();
                tx.commit().await.unwrap();
                // The commit time: when commit returned.
                COMMITS.lock().unwrap().insert(id, now_micros());
            }
        })
    };
    let mut arrivals = Vec::with_capacity(total as usize);
    while (arrivals.len() as u64) < total {
        let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(10), subscriber.next()).await
        else {
            break;
        };
        let arrived = now_micros();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        arrivals.push((id, arrived));
    }
    writer.await.unwrap();
    let commits = COMMITS.lock().unwrap().clone();
    let mut latencies: Vec<u64> = arrivals
        .iter()
        .filter_map(|(id, arrived)| Some(arrived.saturating_sub(*commits.get(id)?)))
        .collect();
    let pending = OutboxStats::read(&pg.pool, &schema).await.unwrap().pending;
    stop.notify_waiters();
    let _ = running.await;
    latencies.sort_unstable();
    let q = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    println!(
        "latency rate={rate}/s committed={} received={} pending_after={pending} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        commits.len(),
        latencies.len(),
        q(0.50),
        q(0.99),
        q(1.0)
    );
}

static COMMITS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, u64>>> =
    std::sync::LazyLock::new(Default::default);

/// The same handler write, bare (its own transaction) and behind the inbox.
async fn inbox(n: u64) {
    let (pg, schema, _) = setup().await;
    sqlx::query(&format!("CREATE TABLE {schema}.effects (id text NOT NULL)"))
        .execute(&pg.pool)
        .await
        .unwrap();
    let insert = format!("INSERT INTO {schema}.effects (id) VALUES ($1)");
    let message = |i: u64| {
        Message::new(Envelope {
            event_id: format!("e-{i}"),
            event_type: "order.placed".into(),
            aggregate_type: "order".into(),
            aggregate_id: "o-1".into(),
            sequence: 1,
            occurred_at: String::new(),
            data: (),
        })
    };
    let bare = {
        let (pool, insert) = (pg.pool.clone(), insert.clone());
        let start = Instant::now();
        for i in 0..n {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(&insert)
                .bind(format!("bare-{i}"))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        start.elapsed()
    };
    let handler = {
        let insert = insert.clone();
        tower::service_fn(move |m: Message<()>| {
            let insert = insert.clone();
            async move {
                let tx = m.transaction().expect("inbox");
                let mut db = tx.lock().await.map_err(|e| e.to_string())?;
                sqlx::query(&insert)
                    .bind(m.event_id())
                    .execute(&mut *db)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            }
        })
    };
    let mut service = InboxLayer::new(pg.pool.clone(), schema.clone(), "bench").layer(handler);
    let start = Instant::now();
    for i in 0..n {
        service
            .ready()
            .await
            .unwrap()
            .call(message(i))
            .await
            .unwrap();
    }
    let with_inbox = start.elapsed();
    let start = Instant::now();
    for i in 0..n {
        service
            .ready()
            .await
            .unwrap()
            .call(message(i))
            .await
            .unwrap();
    }
    let duplicates = start.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "inbox n={n} bare_us={:.0} inbox_us={:.0} duplicate_us={:.0} overhead_us={:.0}",
        per(bare),
        per(with_inbox),
        per(duplicates),
        per(with_inbox) - per(bare)
    );
}
