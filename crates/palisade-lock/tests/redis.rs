//! `RedisLock` on real Redis: exclusion across clients with strictly increasing fencing
//! tokens, a paused holder fenced off, the watchdog, and the lost-lease signal.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use fred::interfaces::{HashesInterface, KeysInterface};
use palisade_lock::{LockError, Locker, RedisLock, fencing::fenced_set};
use palisade_testkit::{RedisNode, TestRedis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_across_four_clients() {
    let redis = TestRedis::connect().await;
    let inside = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let locks = RedisLock::new(redis.another_client().await, Duration::from_secs(5))
            .with_prefix(&redis.prefix);
        for _ in 0..4 {
            let (locks, inside, tokens) = (locks.clone(), inside.clone(), tokens.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..130 {
                    let guard = locks
                        .acquire("account-1", Duration::from_secs(30))
                        .await
                        .unwrap();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    tokens.lock().unwrap().push(guard.fencing_token().unwrap());
                    tokio::task::yield_now().await;
                    inside.store(false, Ordering::SeqCst);
                    assert!(guard.release().await.unwrap());
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 16 * 130);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens strictly increase"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_fenced_off() {
    let redis = TestRedis::connect().await;
    let locks = RedisLock::new(redis.client.clone(), Duration::from_secs(30))
        .with_prefix(&redis.prefix)
        .without_watchdog();
    let resource = format!("{}:ledger", redis.prefix);
    let a = locks.try_acquire("order-9").await.unwrap().unwrap();
    // A is paused past its lease: Redis expires the key (forced here rather than waited for).
    let _: () = redis
        .client
        .pexpire_at(locks.key("order-9"), 1, None)
        .await
        .unwrap();
    let b = locks
        .try_acquire("order-9")
        .await
        .unwrap()
        .expect("the lease ran out");
    assert!(b.fencing_token() > a.fencing_token());
    assert!(
        fenced_set(
            &redis.client,
            &resource,
            b"by b",
            b.fencing_token().unwrap()
        )
        .await
        .unwrap()
    );
    // A wakes up and writes: refused.
    assert!(
        !fenced_set(
            &redis.client,
            &resource,
            b"by a",
            a.fencing_token().unwrap()
        )
        .await
        .unwrap()
    );
    let value: String = redis.client.hget(&resource, "value").await.unwrap();
    assert_eq!(value, "by b");
    // A's release does not free B's lock.
    assert!(!a.release().await.unwrap());
    assert!(locks.try_acquire("order-9").await.unwrap().is_none());
    assert!(b.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_keeps_the_lock_past_its_ttl() {
    let redis = TestRedis::connect().await;
    // A 1 s lease renewed every 333 ms: room for a loaded CI machine.
    let locks =
        RedisLock::new(redis.client.clone(), Duration::from_secs(1)).with_prefix(&redis.prefix);
    let guard = locks.try_acquire("long").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert!(!guard.is_lost());
    assert!(
        locks.try_acquire("long").await.unwrap().is_none(),
        "still held after 4 TTLs"
    );
    assert!(guard.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_signal_fires_on_flush_and_on_restart() {
    let mut node = RedisNode::start();
    let client = node.client().await;
    let locks = RedisLock::new(client, Duration::from_millis(300));
    let guard = locks.try_acquire("flushed").await.unwrap().unwrap();
    let flushed = std::process::Command::new("redis-cli")
        .args(["-p", &node.port().to_string(), "FLUSHALL"])
        .output()
        .unwrap();
    assert!(flushed.status.success());
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("lost signal after a flush");
    assert!(guard.is_lost());

    let guard = locks.try_acquire("restarted").await.unwrap().unwrap();
    node.restart();
    tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("lost signal after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_cancels_the_work_when_the_lock_is_lost() {
    let node = RedisNode::start();
    let locks = RedisLock::new(node.client().await, Duration::from_millis(300));
    let finished = Arc::new(AtomicBool::new(false));
    let port = node.port();
    let outcome = locks
        .run("job", Duration::from_secs(1), |_guard| {
            let finished = finished.clone();
            async move {
                let flushed = std::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "FLUSHALL"])
                    .output()
                    .unwrap();
                assert!(flushed.status.success());
                tokio::time::sleep(Duration::from_secs(10)).await;
                finished.store(true, Ordering::SeqCst);
            }
        })
        .await;
    assert!(matches!(outcome, Err(LockError::Lost(_))), "{outcome:?}");
    assert!(!finished.load(Ordering::SeqCst), "the work was cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_a_backend_error() {
    let mut node = RedisNode::start();
    let locks = RedisLock::new(node.client().await, Duration::from_secs(1))
        .with_timeout(Duration::from_millis(100));
    node.kill();
    let err = tokio::time::timeout(Duration::from_secs(3), locks.try_acquire("x"))
        .await
        .expect("never hangs")
        .unwrap_err();
    assert!(matches!(err, LockError::Backend(_)), "{err}");
}
