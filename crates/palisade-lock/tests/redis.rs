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
use palisade_testkit::{FaultMode, FaultProxy, RedisNode, TestRedis, connect_url};

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

/// Polls `locks` for `name` every 5 ms for up to `within`: the guard once it is granted.
async fn first_grant(
    locks: &RedisLock<fred::clients::Client>,
    name: &str,
    within: Duration,
) -> Option<palisade_lock::LockGuard> {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if let Ok(Some(guard)) = locks.try_acquire(name).await {
            return Some(guard);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Regression: the watchdog counted the lease from when an extension *returned* and declared
/// the loss only when a later one failed, so another owner held the lock for a while before
/// the first learned it had lost it. The loss must come first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loss_is_signalled_before_anyone_else_holds_the_lock() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let through_proxy = connect_url(&proxy.redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    let ttl = Duration::from_secs(1);
    let holder = RedisLock::new(through_proxy, ttl).with_timeout(Duration::from_millis(200));
    let other = RedisLock::new(node.client().await, ttl);
    for round in 0..3 {
        let name = format!("partitioned-{round}");
        let guard = holder.try_acquire(&name).await.unwrap().unwrap();
        // The holder is cut off: its extensions hang, then time out.
        proxy.set(FaultMode::BlackHole);
        let taken = first_grant(&other, &name, Duration::from_secs(5))
            .await
            .expect("the lease expires on the server");
        assert!(
            guard.is_lost(),
            "round {round}: another owner holds the lock and the holder does not know"
        );
        taken.release().await.unwrap();
        proxy.set(FaultMode::Pass);
        drop(guard);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Regression: a `SET NX` whose reply came after the client timeout left an ownerless lock for
/// its whole TTL. The late acquisition is undone with the owner token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_acquisition_is_undone() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let through_proxy = connect_url(&proxy.redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    let holder = RedisLock::new(through_proxy, Duration::from_secs(30))
        .with_timeout(Duration::from_millis(100));
    let other = RedisLock::new(node.client().await, Duration::from_secs(30));
    // Load the script first: a late NOSCRIPT would never lead to the EVAL that lands.
    let warm = holder.try_acquire("warm").await.unwrap().unwrap();
    warm.release().await.unwrap();
    proxy.set(FaultMode::Latency(Duration::from_millis(300)));
    let late = holder.try_acquire("late").await;
    assert!(
        matches!(
            late,
            Err(LockError::Backend(palisade_core::BackendError::Timeout(_)))
        ),
        "{late:?}"
    );
    // Let the late SET NX land (it is 300 ms on its way), then look.
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.set(FaultMode::Pass);
    let freed = first_grant(&other, "late", Duration::from_secs(3)).await;
    assert!(
        freed.is_some(),
        "the late lock is still held with a 30 s TTL"
    );
}

/// Fencing counters expire with their lock (one key per live name), and after they are gone —
/// expired, or Redis lost its data — new tokens are still above every earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stay_increasing_when_the_counter_is_gone() {
    let redis = TestRedis::connect().await;
    let locks = RedisLock::new(redis.client.clone(), Duration::from_millis(500))
        .with_prefix(&redis.prefix)
        .without_watchdog();
    let first = locks.try_acquire("order-9").await.unwrap().unwrap();
    let a = first.fencing_token().unwrap();
    first.release().await.unwrap();
    let ttl: i64 = redis.client.pttl(locks.fence_key("order-9")).await.unwrap();
    assert!(ttl > 0, "the counter expires (PTTL {ttl})");
    // Redis forgets the counter (expiry, a restart without persistence, a failover).
    let _: i64 = redis.client.del(locks.fence_key("order-9")).await.unwrap();
    let second = locks.try_acquire("order-9").await.unwrap().unwrap();
    let b = second.fencing_token().unwrap();
    assert!(b > a, "{b} after {a}");
    second.release().await.unwrap();
}
