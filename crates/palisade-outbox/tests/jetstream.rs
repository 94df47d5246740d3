//! The relay and the consumer over a private `nats-server -js` and the real PostgreSQL:
//! subjects, headers and body as promised; dedup by `Nats-Msg-Id` when a relay republishes;
//! a broker killed and restarted under load; oversized events dead-lettered; a consumer with
//! an inbox processing each event once through redeliveries and poison messages.

#![cfg(feature = "nats")]

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, stream::Stream};
use common::{Db, assert_per_aggregate_order};
use palisade_outbox::{
    ConsumerDeadLetters, DeadLetters, InboxLayer, Message, OutboxEvent, OutboxStats, Relay,
    RelayConfig, Sink, SinkError,
    jetstream::{ConsumerConfig, JetStreamConsumer, JetStreamSink, ensure_stream},
};
use palisade_testkit::NatsServer;
use tower::ServiceBuilder;

fn config() -> RelayConfig {
    let mut config = RelayConfig::default();
    config.batch_size = 32;
    config.poll_interval = Duration::from_millis(50);
    config.backoff_base = Duration::from_millis(20);
    config.backoff_cap = Duration::from_millis(200);
    config.max_attempts = 2;
    config
}

async fn context(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .expect("connect to the private nats-server");
    let mut context = jetstream::new(client);
    context.set_timeout(Duration::from_secs(2));
    context
}

/// Every message in the stream, in stream order: (subject, headers, body).
async fn read_stream(
    stream: &Stream,
) -> Vec<(String, BTreeMap<String, String>, serde_json::Value)> {
    let mut stream = stream.clone();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut all = Vec::new();
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let headers = message
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.last().map(|v| v.as_str().to_owned()).unwrap_or_default(),
                )
            })
            .collect();
        all.push((
            message.subject.to_string(),
            headers,
            serde_json::from_slice(&message.payload).unwrap(),
        ));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_out_on_their_subjects_with_the_promised_headers_and_body() {
    let (db, server) = (Db::new().await, NatsServer::start());
    let context = context(&server).await;
    let stream = ensure_stream(&context, "ORDERS", "orders", Duration::from_secs(120))
        .await
        .unwrap();
    let placed = db.write("o-1", "order.placed", false).await;
    let paid = db.write("o-1", "order.paid", false).await;
    let relay = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        JetStreamSink::new(context, "orders"),
        config(),
    );
    let report = relay.relay_batch().await.unwrap();
    assert_eq!(report.published, 2, "{report:?}");
    let messages = read_stream(&stream).await;
    assert_eq!(messages.len(), 2);
    let (subject, headers, body) = &messages[0];
    assert_eq!(subject, "orders.order.placed");
    assert_eq!(headers["Nats-Msg-Id"], placed);
    assert_eq!(headers["Palisade-Aggregate-Id"], "o-1");
    assert_eq!(headers["Palisade-Sequence"], "1");
    assert_eq!(body["event_id"], placed.as_str());
    assert_eq!(body["event_type"], "order.placed");
    assert_eq!(body["aggregate_id"], "o-1");
    assert_eq!(body["sequence"], 1);
    assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["aggregate"], "o-1");
    assert_eq!(messages[1].0, "orders.order.paid");
    assert_eq!(messages[1].1["Nats-Msg-Id"], paid);
    assert_eq!(messages[1].1["Palisade-Sequence"], "2");
}

/// Publishes through JetStream, then hangs: a relay killed after the broker's ack and before
/// its commit.
struct HangAfterPublish(JetStreamSink);

impl Sink for HangAfterPublish {
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), SinkError>> {
        let _ = self.0.publish(events).await;
        std::future::pending().await
    }
}

/// The relay publishes again what a dead relay had published; JetStream keeps one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_event_is_dropped_by_the_stream() {
    let (db, server) = (Db::new().await, NatsServer::start());
    let context = context(&server).await;
    let stream = ensure_stream(&context, "ORDERS", "orders", Duration::from_secs(120))
        .await
        .unwrap();
    for i in 0..5 {
        db.write(&format!("o-{i}"), "order.placed", false).await;
    }
    let dying = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        HangAfterPublish(JetStreamSink::new(context.clone(), "orders")),
        config(),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), dying.relay_batch())
            .await
            .is_err()
    );
    assert_eq!(
        db.pending().await,
        5,
        "nothing marked: the dying relay never committed"
    );
    let relay = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        JetStreamSink::new(context, "orders"),
        config(),
    );
    assert_eq!(relay.relay_batch().await.unwrap().published, 5);
    assert_eq!(db.pending().await, 0);
    let messages = read_stream(&stream).await;
    assert_eq!(messages.len(), 5, "one copy each in the stream");
}

/// Two relays run while writers commit and the broker is killed and restarted: afterwards
/// `pending` returns to 0 by itself, and the stream holds each committed event exactly once, in
/// per-aggregate order; nothing was dead-lettered for the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_and_duplicates_nothing() {
    let (db, mut server) = (Db::new().await, NatsServer::start());
    let context = context(&server).await;
    let stream = ensure_stream(&context, "ORDERS", "orders", Duration::from_secs(120))
        .await
        .unwrap();
    let stop = Arc::new(tokio::sync::Notify::new());
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = Relay::new(
                db.pool().clone(),
                db.schema.clone(),
                JetStreamSink::new(context.clone(), "orders"),
                config(),
            );
            let stop = stop.clone();
            tokio::spawn(async move { relay.run(stop.notified_owned()).await })
        })
        .collect();
    let mut committed = HashSet::new();
    for i in 0..60 {
        if i == 20 {
            server.kill();
        }
        if i == 40 {
            server.restart();
        }
        committed.insert(
            db.write(&format!("o-{}", i % 6), "order.changed", false)
                .await,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut drained = false;
    for _ in 0..300 {
        if db.pending().await == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.notify_waiters();
    for relay in relays {
        let _ = relay.await;
    }
    assert!(drained, "pending returned to 0 after the broker came back");
    let stats = OutboxStats::read(db.pool(), &db.schema).await.unwrap();
    assert_eq!(stats.dead_letters, 0, "an outage is not a rejection");
    let messages = read_stream(&stream).await;
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m.1["Nats-Msg-Id"].clone())
        .collect();
    assert_eq!(ids.len(), committed.len(), "exactly once in the stream");
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), committed);
    let order: Vec<(String, String, i64)> = messages
        .iter()
        .map(|m| {
            (
                m.1["Nats-Msg-Id"].clone(),
                m.1["Palisade-Aggregate-Id"].clone(),
                m.1["Palisade-Sequence"].parse().unwrap(),
            )
        })
        .collect();
    assert_per_aggregate_order(&order);
}

/// An event over the server's max_payload would make the server close the connection; the
/// sink rejects it instead, and it is dead-lettered while the rest flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_is_dead_lettered_not_retried_forever() {
    let (db, server) = (Db::new().await, NatsServer::start());
    let context = context(&server).await;
    let stream = ensure_stream(&context, "ORDERS", "orders", Duration::from_secs(120))
        .await
        .unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    let huge = db
        .outbox
        .enqueue(
            &mut tx,
            palisade_outbox::NewEvent::new(
                "order",
                "o-1",
                "order.placed",
                serde_json::json!({"blob": "x".repeat(2 * 1024 * 1024)}),
            ),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let fine = db.write("o-2", "order.placed", false).await;
    let relay = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        JetStreamSink::new(context, "orders"),
        config(),
    );
    for _ in 0..50 {
        relay.relay_batch().await.unwrap();
        if db.pending().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = DeadLetters::new(db.schema.clone())
        .list(db.pool(), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, huge.id.to_string());
    assert!(dead[0].error.contains("max_payload"), "{}", dead[0].error);
    let messages = read_stream(&stream).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1["Nats-Msg-Id"], fine);
}

/// A consumer with an inbox: each event's effect once, through a handler that fails on the
/// first deliveries, a poison message that does not decode, and one that always fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_processes_each_event_once_and_parks_what_it_cannot() {
    let (db, server) = (Db::new().await, NatsServer::start());
    let context = context(&server).await;
    let stream = ensure_stream(&context, "ORDERS", "orders", Duration::from_secs(120))
        .await
        .unwrap();
    common::create_effects(&db).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(db.write(&format!("o-{i}"), "order.placed", false).await);
    }
    let always_fails = db.write("o-bad", "order.placed", false).await;
    let relay = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        JetStreamSink::new(context.clone(), "orders"),
        config(),
    );
    while relay.relay_batch().await.unwrap().claimed > 0 {}
    // A message that is not an envelope at all.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "garbage-1");
    context
        .publish_with_headers("orders.order.placed", headers, "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let handler = common::flaky_effects(db.schema.clone(), always_fails.clone());
    let service = ServiceBuilder::new()
        .layer(InboxLayer::new(
            db.pool().clone(),
            db.schema.clone(),
            "effects",
        ))
        .service(handler);
    let mut consumer_config = ConsumerConfig::new("effects").max_deliver(3);
    consumer_config.redelivery_base = Duration::from_millis(20);
    let consumer: JetStreamConsumer<serde_json::Value> = JetStreamConsumer::new(
        stream.clone(),
        consumer_config,
        ConsumerDeadLetters::new(db.pool().clone(), &db.schema),
    );
    let dead_letters = ConsumerDeadLetters::new(db.pool().clone(), &db.schema);
    let done = common::settled(&db, "effects", 10, 2);
    consumer.run(service, done).await.unwrap();
    let effects = common::effects(&db).await;
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        effects, expected,
        "each good event's effect exactly once; the failing one's rolled back"
    );
    assert_eq!(
        dead_letters.count("effects").await.unwrap(),
        2,
        "garbage and the always-failing one"
    );
}

/// The inbox answers a second delivery of the same event as a duplicate without calling the
/// handler, also when both deliveries race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_runs_the_handler_once_per_event_even_concurrently() {
    use palisade_outbox::{Envelope, Handled};
    use tower::{Service, ServiceExt};
    let db = Db::new().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |_: Message<()>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, String>(())
            }
        })
    };
    let inbox = ServiceBuilder::new()
        .layer(InboxLayer::new(
            db.pool().clone(),
            db.schema.clone(),
            "once",
        ))
        .service(handler);
    for round in 0..20 {
        let message = Message::new(Envelope {
            event_id: format!("e-{round}"),
            event_type: "order.placed".into(),
            aggregate_type: "order".into(),
            aggregate_id: "o-1".into(),
            sequence: 1,
            occurred_at: String::new(),
            data: (),
        });
        let deliveries: Vec<_> = (0..4)
            .map(|_| {
                let (mut inbox, message) = (inbox.clone(), message.clone());
                tokio::spawn(async move { inbox.ready().await.unwrap().call(message).await })
            })
            .collect();
        let mut processed = 0;
        for d in deliveries {
            if let Handled::Processed(()) = d.await.unwrap().unwrap() {
                processed += 1;
            }
        }
        assert_eq!(processed, 1, "round {round}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
}
