//! The database-less inbox (`DedupLayer`) on every idempotency store: in memory and on the real
//! Redis with both clients — one suite. Concurrent deliveries run the handler once; a failed
//! attempt is run again on redelivery.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use palisade_idempotency::{Deduplicator, IdempotencyStore, MemoryStore, RedisStore};
use palisade_outbox::{DedupHandlerError, DedupLayer, Envelope, Handled, Message};
use palisade_testkit::{connect_redis_rs, connect_url, redis_url, unique_prefix};
use tower::{Service, ServiceBuilder, ServiceExt};

fn message(id: &str) -> Message<u32> {
    Message::new(Envelope {
        event_id: id.to_owned(),
        event_type: "order.placed".into(),
        aggregate_type: "order".into(),
        aggregate_id: "o-1".into(),
        sequence: 1,
        occurred_at: String::new(),
        data: 7,
    })
}

async fn suite<S: IdempotencyStore + Clone + Send + Sync + 'static>(store: S) {
    let calls = Arc::new(AtomicUsize::new(0));
    let fail_first = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (calls, fail_first) = (calls.clone(), fail_first.clone());
        tower::service_fn(move |m: Message<u32>| {
            let (calls, fail_first) = (calls.clone(), fail_first.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                if m.event_id() == "flaky" && fail_first.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err("first attempt fails".to_owned());
                }
                Ok::<_, String>(*m.data())
            }
        })
    };
    let service = ServiceBuilder::new()
        .layer(DedupLayer::new(
            Deduplicator::new(store).namespace(&unique_prefix("dedup")),
        ))
        .service(handler);
    for round in 0..10 {
        let id = format!("e-{round}");
        let deliveries: Vec<_> = (0..4)
            .map(|_| {
                let (mut service, message) = (service.clone(), message(&id));
                tokio::spawn(async move { service.ready().await.unwrap().call(message).await })
            })
            .collect();
        let mut processed = 0;
        for d in deliveries {
            match d.await.unwrap() {
                Ok(Handled::Processed(7)) => processed += 1,
                Ok(Handled::Duplicate) | Err(DedupHandlerError::InProgress) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(processed, 1, "round {round}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    // A failure is released for the redelivery, which runs it.
    let mut service = service;
    let first = service.ready().await.unwrap().call(message("flaky")).await;
    assert!(
        matches!(first, Err(DedupHandlerError::Dedup(_))),
        "{first:?}"
    );
    let second = service.ready().await.unwrap().call(message("flaky")).await;
    assert_eq!(second.unwrap(), Handled::Processed(7));
    let third = service.ready().await.unwrap().call(message("flaky")).await;
    assert_eq!(third.unwrap(), Handled::Duplicate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    suite(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_with_fred() {
    let client = connect_url(&redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    suite(RedisStore::new(client).with_prefix(&unique_prefix("outbox-dedup"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_with_redis_rs() {
    let client = connect_redis_rs(&redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    suite(RedisStore::new(client).with_prefix(&unique_prefix("outbox-dedup"))).await;
}
