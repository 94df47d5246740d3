//! Consumer deduplication: each message id handled once across workers, failures retried,
//! dead-lettered after the last attempt, durable across a Redis flush.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use palisade_idempotency::{
    Deduplicator, DualStore, IdempotencyStore, MemoryStore, PostgresStore, Processed, RedisStore,
    dedup::DedupError,
};
use palisade_testkit::{RedisNode, TestPostgres, TestRedis};

async fn once_across_workers<S: IdempotencyStore>(workers: Vec<Deduplicator<S>>) {
    let runs = Arc::new(AtomicUsize::new(0));
    for message in 0..10 {
        let id = format!("evt-{message}");
        let mut tasks = Vec::new();
        for i in 0..12 {
            let dedup = workers[i % workers.len()].clone();
            let runs = runs.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                dedup
                    .process_once(&id, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok::<_, std::io::Error>(i)
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut done = 0;
        for task in tasks {
            if let Processed::Done(_) = task.await.unwrap() {
                done += 1;
            }
        }
        assert_eq!(done, 1, "{id}: one worker processed it");
        assert_eq!(runs.load(Ordering::SeqCst), message + 1);
        let again = workers[0]
            .process_once(&id, || async { Ok::<_, std::io::Error>(99) })
            .await
            .unwrap();
        assert_eq!(again, Processed::Duplicate);
    }
}

async fn failures_retry_then_dead_letter<S: IdempotencyStore>(dedup: Deduplicator<S>) {
    let dead = Arc::new(Mutex::new(Vec::new()));
    let dedup = dedup.dead_letter(3, {
        let dead = dead.clone();
        move |id, attempts, error| {
            dead.lock()
                .unwrap()
                .push((id.to_owned(), attempts, error.to_string()))
        }
    });
    let fail = || async { Err::<(), _>(std::io::Error::other("poison")) };
    for attempt in 1..=2 {
        match dedup.process_once("m", fail).await {
            Err(DedupError::Failed { attempts, .. }) => assert_eq!(attempts, attempt),
            other => panic!("{other:?}"),
        }
    }
    match dedup.process_once("m", fail).await {
        Err(DedupError::DeadLettered { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        *dead.lock().unwrap(),
        vec![("m".to_owned(), 3, "poison".to_owned())]
    );
    let after = dedup
        .process_once("m", || async { Ok::<_, std::io::Error>(()) })
        .await;
    assert_eq!(
        after.unwrap(),
        Processed::Duplicate,
        "never processed after dead-lettering"
    );
    // A failure followed by a success: done once.
    assert!(dedup.process_once("n", fail).await.is_err());
    let ok = dedup
        .process_once("n", || async { Ok::<_, std::io::Error>(7) })
        .await;
    assert_eq!(ok.unwrap(), Processed::Done(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    let store = MemoryStore::new();
    once_across_workers(vec![Deduplicator::new(store.clone()); 3]).await;
    failures_retry_then_dead_letter(Deduplicator::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let redis = TestRedis::connect().await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::new(redis.another_client().await).with_prefix(&redis.prefix);
        workers.push(Deduplicator::new(store));
    }
    once_across_workers(workers.clone()).await;
    failures_retry_then_dead_letter(workers[0].clone().namespace("fail")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let pg = TestPostgres::connect().await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::new(pg.another_pool(4).await);
        store.migrate().await.unwrap();
        workers.push(Deduplicator::new(store));
    }
    once_across_workers(workers.clone()).await;
    failures_retry_then_dead_letter(workers[0].clone().namespace("fail")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_survives_a_redis_flush() {
    let node = RedisNode::start();
    let pg = TestPostgres::connect().await;
    let durable = PostgresStore::new(pg.pool.clone());
    durable.migrate().await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(Deduplicator::new(DualStore::new(
            RedisStore::new(node.client().await),
            durable.clone(),
        )));
    }
    once_across_workers(workers.clone()).await;
    let flushed = std::process::Command::new("redis-cli")
        .args(["-p", &node.port().to_string(), "FLUSHALL"])
        .output()
        .expect("redis-cli");
    assert!(flushed.status.success());
    for message in 0..10 {
        let again = workers[message % 3]
            .process_once(&format!("evt-{message}"), || async {
                Ok::<_, std::io::Error>(0)
            })
            .await
            .unwrap();
        assert_eq!(
            again,
            Processed::Duplicate,
            "PostgreSQL remembers after the flush"
        );
    }
    failures_retry_then_dead_letter(workers[1].clone().namespace("fail")).await;
}
