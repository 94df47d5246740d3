//! One suite, every lock backend: memory, Redis, Redlock (3 private nodes) and PostgreSQL
//! advisory locks must behave the same for what they all promise.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use palisade_lock::{LockError, Locker, MemoryLock, PgAdvisoryLock, RedisLock, Redlock};
use palisade_testkit::{RedisNode, TestPostgres, TestRedis};

async fn exclusive_and_released<L: Locker>(locks: L) {
    let a = locks.try_acquire("suite-a").await.unwrap().expect("free");
    assert!(
        locks.try_acquire("suite-a").await.unwrap().is_none(),
        "held"
    );
    let b = locks
        .try_acquire("suite-b")
        .await
        .unwrap()
        .expect("other names are free");
    assert!(a.release().await.unwrap());
    let again = locks
        .try_acquire("suite-a")
        .await
        .unwrap()
        .expect("free after release");
    again.release().await.unwrap();
    b.release().await.unwrap();
    assert!(matches!(
        locks.try_acquire("").await,
        Err(LockError::InvalidName(_))
    ));
}

async fn busy_after_the_wait<L: Locker>(locks: L) {
    let held = locks.try_acquire("suite-busy").await.unwrap().unwrap();
    let err = locks
        .acquire("suite-busy", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Busy { .. }), "{err}");
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move { locks.acquire("suite-busy", Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release().await.unwrap();
    waiter
        .await
        .unwrap()
        .expect("granted once released")
        .release()
        .await
        .unwrap();
}

async fn dropped_guard_frees_the_lock<L: Locker>(locks: L) {
    drop(locks.try_acquire("suite-drop").await.unwrap().unwrap());
    let guard = locks
        .acquire("suite-drop", Duration::from_secs(5))
        .await
        .expect("freed by drop");
    guard.release().await.unwrap();
}

async fn many_tasks_one_holder<L: Locker>(locks: L) {
    let inside = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (locks, inside) = (locks.clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                let guard = locks
                    .acquire("suite-x", Duration::from_secs(30))
                    .await
                    .unwrap();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders");
                tokio::task::yield_now().await;
                inside.store(false, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn acquire_all_in_any_order<L: Locker>(locks: L) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        let locks = locks.clone();
        tasks.push(tokio::spawn(async move {
            let names: &[&str] = if i % 2 == 0 {
                &["suite-m1", "suite-m2"]
            } else {
                &["suite-m2", "suite-m1"]
            };
            for _ in 0..5 {
                let guards = locks
                    .acquire_all(names, Duration::from_secs(30))
                    .await
                    .unwrap();
                for guard in guards {
                    guard.release().await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

macro_rules! suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn exclusive_and_released() {
                let (locks, _keep) = $make;
                super::exclusive_and_released(locks).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn busy_after_the_wait() {
                let (locks, _keep) = $make;
                super::busy_after_the_wait(locks).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dropped_guard_frees_the_lock() {
                let (locks, _keep) = $make;
                super::dropped_guard_frees_the_lock(locks).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_tasks_one_holder() {
                let (locks, _keep) = $make;
                super::many_tasks_one_holder(locks).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acquire_all_in_any_order() {
                let (locks, _keep) = $make;
                super::acquire_all_in_any_order(locks).await;
            }
        }
    };
}

suite!(memory, (MemoryLock::new(Duration::from_secs(10)), ()));
// A backend chosen at run time: `Either` delegating to its Redis side.
suite!(either, {
    let redis = TestRedis::connect().await;
    let locks =
        RedisLock::new(redis.client.clone(), Duration::from_secs(10)).with_prefix(&redis.prefix);
    (palisade_core::Either::<MemoryLock, _>::Right(locks), redis)
});
suite!(redis, {
    let redis = TestRedis::connect().await;
    let locks =
        RedisLock::new(redis.client.clone(), Duration::from_secs(10)).with_prefix(&redis.prefix);
    (locks, redis)
});
suite!(redis_rs, {
    let redis = TestRedis::connect().await;
    let locks =
        RedisLock::new(redis.redis_rs().await, Duration::from_secs(10)).with_prefix(&redis.prefix);
    (locks, redis)
});
suite!(redlock_redis_rs, {
    let nodes: Vec<RedisNode> = (0..3).map(|_| RedisNode::start()).collect();
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.redis_rs().await);
    }
    (
        Redlock::new(clients, Duration::from_secs(10)).unwrap(),
        nodes,
    )
});
suite!(redlock, {
    let nodes: Vec<RedisNode> = (0..3).map(|_| RedisNode::start()).collect();
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.client().await);
    }
    (
        Redlock::new(clients, Duration::from_secs(10)).unwrap(),
        nodes,
    )
});
suite!(postgres, {
    let pg = TestPostgres::connect().await;
    let locks = PgAdvisoryLock::new(pg.pool.clone(), &pg.schema);
    (locks, pg)
});

palisade_testkit::suite_on_cluster!(
    |client, prefix| RedisLock::new(client, Duration::from_secs(10))
        .with_prefix(prefix)
        .with_timeout(Duration::from_secs(2)),
    [
        exclusive_and_released,
        busy_after_the_wait,
        dropped_guard_frees_the_lock,
        many_tasks_one_holder,
        acquire_all_in_any_order,
    ]
);
