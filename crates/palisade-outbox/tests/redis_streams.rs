//! The relay and the consumer over Redis Streams (the shared Redis, both clients, and a
//! 3-master cluster): the entry's fields, one entry per event id when a relay republishes, and
//! a consumer group with an inbox processing each event once through failures and poison
//! entries.

#![cfg(feature = "redis")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Db;
use palisade_core::redis::{Arg, RedisClient, Reply};
use palisade_outbox::{
    ConsumerDeadLetters, InboxLayer, OutboxEvent, Relay, RelayConfig, Sink, SinkError,
    redis_streams::{RedisStreamConsumer, RedisStreamSink, StreamConsumerConfig},
};
use palisade_testkit::{RedisCluster, connect_redis_rs, connect_url, redis_url, unique_prefix};
use tower::ServiceBuilder;

fn config() -> RelayConfig {
    let mut config = RelayConfig::default();
    config.batch_size = 32;
    config.backoff_base = Duration::from_millis(10);
    config.backoff_cap = Duration::from_millis(50);
    config
}

fn text(s: &str) -> Arg {
    Arg::Bytes(Bytes::copy_from_slice(s.as_bytes()))
}

/// Every entry of `stream`: (entry id, fields as text).
async fn entries<C: RedisClient>(client: &C, stream: &str) -> Vec<Vec<(String, String)>> {
    let reply = client
        .command("XRANGE", &[text(stream), text("-"), text("+")])
        .await
        .unwrap();
    let Reply::Array(entries) = reply else {
        panic!("XRANGE answered {reply:?}")
    };
    entries
        .into_iter()
        .map(|entry| {
            let Reply::Array(mut parts) = entry else {
                panic!()
            };
            let Some(Reply::Array(fields)) = parts.pop() else {
                panic!()
            };
            fields
                .chunks(2)
                .map(|pair| match pair {
                    [Reply::Bytes(k), Reply::Bytes(v)] => (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ),
                    other => panic!("{other:?}"),
                })
                .collect()
        })
        .collect()
}

fn field<'a>(entry: &'a [(String, String)], name: &str) -> &'a str {
    entry
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name} in {entry:?}"))
}

struct HangAfterPublish<S>(S);

impl<S: Sink> Sink for HangAfterPublish<S> {
    async fn publish(&self, events: &[OutboxEvent]) -> Vec<Result<(), SinkError>> {
        let _ = self.0.publish(events).await;
        std::future::pending().await
    }
}

/// Relays events (one republished by a second relay after the first died before its commit)
/// and checks the stream holds each once, with the promised fields.
async fn relay_once_each<C: RedisClient>(client: C, stream: String) {
    let db = Db::new().await;
    let placed = db.write("o-1", "order.placed", false).await;
    let paid = db.write("o-1", "order.paid", false).await;
    let dying = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        HangAfterPublish(RedisStreamSink::new(client.clone(), stream.clone()).unwrap()),
        config(),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), dying.relay_batch())
            .await
            .is_err()
    );
    let relay = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        RedisStreamSink::new(client.clone(), stream.clone()).unwrap(),
        config(),
    );
    while relay.relay_batch().await.unwrap().claimed > 0 {}
    assert_eq!(db.pending().await, 0);
    let all = entries(&client, &stream).await;
    assert_eq!(all.len(), 2, "one entry per event: {all:?}");
    assert_eq!(field(&all[0], "event_id"), placed);
    assert_eq!(field(&all[0], "event_type"), "order.placed");
    assert_eq!(field(&all[0], "aggregate_id"), "o-1");
    assert_eq!(field(&all[0], "sequence"), "1");
    assert!(field(&all[0], "occurred_at").ends_with('Z'));
    let data: serde_json::Value = serde_json::from_str(field(&all[0], "data")).unwrap();
    assert_eq!(data["aggregate"], "o-1");
    assert_eq!(field(&all[1], "event_id"), paid);
    assert_eq!(field(&all[1], "sequence"), "2");
}

/// A consumer group member with an inbox: each good event's effect once, through a handler
/// failing on early deliveries; an undecodable entry and an always-failing one are parked.
async fn consume_once_each<C: RedisClient>(client: C, stream: String) {
    let db = Db::new().await;
    common::create_effects(&db).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(db.write(&format!("o-{i}"), "order.placed", false).await);
    }
    let always_fails = db.write("o-bad", "order.placed", false).await;
    let relay = Relay::new(
        db.pool().clone(),
        db.schema.clone(),
        RedisStreamSink::new(client.clone(), stream.clone()).unwrap(),
        config(),
    );
    while relay.relay_batch().await.unwrap().claimed > 0 {}
    client
        .command(
            "XADD",
            &[
                text(&stream),
                text("*"),
                text("event_id"),
                text("junk"),
                text("data"),
                text("{not json"),
            ],
        )
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
    let consumer: RedisStreamConsumer<serde_json::Value, C> = RedisStreamConsumer::new(
        client.clone(),
        stream.clone(),
        StreamConsumerConfig::new("effects", "member-1")
            .max_deliver(3)
            .claim_idle(Duration::from_millis(100)),
        ConsumerDeadLetters::new(db.pool().clone(), &db.schema),
    );
    let dead_letters = ConsumerDeadLetters::new(db.pool().clone(), &db.schema);
    let done = common::settled(&db, "effects", 8, 2);
    consumer.run(service, done).await.unwrap();
    let effects = common::effects(&db).await;
    ids.sort();
    assert_eq!(effects, ids, "each good event's effect exactly once");
    assert_eq!(dead_letters.count("effects").await.unwrap(), 2);
    // Nothing left pending in the group.
    let pending = client
        .command("XPENDING", &[text(&stream), text("effects")])
        .await
        .unwrap();
    let Reply::Array(summary) = pending else {
        panic!("{pending:?}")
    };
    assert_eq!(
        summary[0].as_int(),
        Some(0),
        "all acknowledged: {summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_relay_once_each() {
    let client = connect_url(&redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    relay_once_each(client, unique_prefix("orders-stream")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_relay_once_each() {
    let client = connect_redis_rs(&redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    relay_once_each(client, unique_prefix("orders-stream")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_consume_once_each() {
    let client = connect_url(&redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    consume_once_each(client, unique_prefix("orders-stream")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_consume_once_each() {
    let client = connect_redis_rs(&redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    consume_once_each(client, unique_prefix("orders-stream")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_with_both_clients() {
    let cluster = RedisCluster::start();
    relay_once_each(cluster.client().await, unique_prefix("orders-stream")).await;
    consume_once_each(cluster.redis_rs().await, unique_prefix("orders-stream")).await;
}

/// The sink's script answered after its timeout (a latency spike): the relay counted it
/// unavailable and republishes later — the late script had added the entry, and the
/// republish adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_after_the_timeout_is_republished_without_a_duplicate() {
    use palisade_testkit::{FaultMode, FaultProxy, RedisNode};
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let slow = connect_url(&proxy.redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    let stream = unique_prefix("orders-stream");
    let db = Db::new().await;
    let sink = RedisStreamSink::new(slow, stream.clone())
        .unwrap()
        .timeout(Duration::from_millis(50));
    let relay = Relay::new(db.pool().clone(), db.schema.clone(), sink, config());
    // Load the script while the network is fine.
    db.write("o-0", "order.placed", false).await;
    while relay.relay_batch().await.unwrap().claimed > 0 {}
    proxy.set(FaultMode::Latency(Duration::from_millis(200)));
    db.write("o-1", "order.placed", false).await;
    let report = relay.relay_batch().await.unwrap();
    assert!(report.unavailable.is_some(), "{report:?}");
    assert_eq!(db.pending().await, 1, "not marked: its outcome was unknown");
    // The late script lands; then the network heals and the relay publishes again.
    let direct = node.client().await;
    let mut landed = false;
    for _ in 0..100 {
        if entries(&direct, &stream).await.len() == 2 {
            landed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(landed, "the late XADD landed");
    proxy.set(FaultMode::Pass);
    for _ in 0..100 {
        relay.relay_batch().await.unwrap();
        if db.pending().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(db.pending().await, 0);
    assert_eq!(
        entries(&direct, &stream).await.len(),
        2,
        "one entry per event"
    );
}
