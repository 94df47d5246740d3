//! The Redis store as a fleet sees it: several instances, a dying node, a cluster.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use palisade_core::{BackendError, OnBackendError, key::Key};
use palisade_ratelimit::{
    FixedWindow, Gcra, Policy, RateLimiter, RedisStore, SlidingWindowLog, TokenBucket,
};
use palisade_testkit::{FaultMode, FaultProxy, RedisCluster, RedisNode, TestRedis};

/// Four instances, each with its own Redis connection, hammer one key from 64 tasks. Whatever
/// the interleaving, the total admitted never exceeds capacity + refill × elapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_never_over_admit() {
    let redis = TestRedis::connect().await;
    let capacity = 100u64;
    let per_second = 50.0;
    let policy = Policy::new("fleet", TokenBucket::new(capacity, per_second).unwrap()).unwrap();
    let mut instances = Vec::new();
    for _ in 0..4 {
        let client = redis.another_client().await;
        instances.push(RateLimiter::new(
            RedisStore::new(client)
                .with_prefix(&redis.prefix)
                .with_timeout(Duration::from_secs(2)),
            policy.clone(),
        ));
    }
    for round in 0..3 {
        let key = Key::from(format!("shared-{round}"));
        let admitted = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(600);
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let limiter = instances[i % 4].clone();
                let key = key.clone();
                let admitted = admitted.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        if limiter.check(&key, 1).await.unwrap().is_allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let admitted = admitted.load(Ordering::Relaxed);
        let bound = capacity + (per_second * elapsed).ceil() as u64;
        assert!(
            admitted >= capacity,
            "round {round}: only {admitted} admitted"
        );
        assert!(
            admitted <= bound,
            "round {round}: {admitted} admitted, at most {bound} allowed in {elapsed:.3}s"
        );
    }
}

/// A sliding-window log is exact: 4 instances × 32 tasks on one key never admit more than the
/// quota within the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_is_exact_across_instances() {
    let redis = TestRedis::connect().await;
    let policy = Policy::new(
        "exact",
        SlidingWindowLog::new(40, Duration::from_secs(3600)).unwrap(),
    )
    .unwrap();
    let mut tasks = Vec::new();
    let key = Key::from("exact");
    for _ in 0..4 {
        let limiter = RateLimiter::new(
            RedisStore::new(redis.another_client().await).with_prefix(&redis.prefix),
            policy.clone(),
        );
        for _ in 0..32 {
            let limiter = limiter.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                for _ in 0..5 {
                    n += u64::from(limiter.check(&key, 1).await.unwrap().is_allowed());
                }
                n
            }));
        }
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    assert_eq!(admitted, 40);
}

/// A node killed mid-run and restarted: every request gets an answer within the timeout (by
/// policy while Redis is gone), nothing panics or hangs, and decisions resume by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_answered_by_policy_and_recovers() {
    let mut node = RedisNode::start();
    let client = node.client().await;
    let timeout = Duration::from_millis(100);
    let store = RedisStore::new(client).with_timeout(timeout);
    let open = RateLimiter::new(
        store.clone(),
        Policy::new(
            "open",
            Gcra::new(1_000_000, Duration::from_secs(1)).unwrap(),
        )
        .unwrap(),
    );
    let closed = RateLimiter::new(
        store.clone(),
        Policy::builder("closed")
            .limit(
                "closed",
                Gcra::new(1_000_000, Duration::from_secs(1)).unwrap(),
            )
            .unwrap()
            .on_backend_error(OnBackendError::FailClosed)
            .build()
            .unwrap(),
    );
    let key = Key::from("k");
    // Bound for "answered within the timeout": the timeout plus scheduling slack. This is a
    // liveness bound (no hang), not a performance assertion.
    let bound = timeout + Duration::from_secs(2);

    async fn timed(
        limiter: &RateLimiter<RedisStore<fred::clients::Client>>,
        key: &Key,
    ) -> (Result<bool, BackendError>, Duration) {
        let started = Instant::now();
        let result = limiter.check(key, 1).await.map(|d| d.is_allowed());
        (result, started.elapsed())
    }

    for _ in 0..20 {
        assert_eq!(timed(&open, &key).await.0, Ok(true));
    }

    node.kill();
    let mut errors = 0;
    for _ in 0..20 {
        let (result, took) = timed(&open, &key).await;
        assert!(took < bound, "answer took {took:?} while Redis was down");
        if result.is_err() {
            errors += 1;
        }
        assert!(
            open.is_allowed(&key).await,
            "fail-open admits while Redis is down"
        );
        assert!(
            !closed.is_allowed(&key).await,
            "fail-closed refuses while Redis is down"
        );
    }
    assert!(errors > 0, "the store noticed the outage");

    node.restart();
    let recovered_by = Instant::now() + Duration::from_secs(15);
    loop {
        let (result, took) = timed(&closed, &key).await;
        assert!(took < bound);
        if result == Ok(true) {
            break;
        }
        assert!(
            Instant::now() < recovered_by,
            "no recovery after restart: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted node lost its script cache: EVALSHA → NOSCRIPT → EVAL reloaded it.
    assert_eq!(timed(&open, &key).await.0, Ok(true));
}

/// A paused (SIGSTOP) node and a black-holed connection answer nothing at all: the timeout
/// turns that into a policy decision instead of a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_or_black_holed_redis_times_out() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let client = palisade_testkit::connect_url(&proxy.redis_url(), Duration::from_secs(5))
        .await
        .unwrap();
    let timeout = Duration::from_millis(80);
    let limiter = RateLimiter::new(
        RedisStore::new(client).with_timeout(timeout),
        Policy::new("p", TokenBucket::new(1000, 1000.0).unwrap()).unwrap(),
    );
    let key = Key::from("k");
    assert!(limiter.check(&key, 1).await.unwrap().is_allowed());

    proxy.set(FaultMode::BlackHole);
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(
            limiter.check(&key, 1).await.unwrap_err(),
            BackendError::Timeout(timeout)
        );
        assert!(started.elapsed() < timeout + Duration::from_secs(2));
    }
    proxy.set(FaultMode::Pass);

    node.pause();
    let started = Instant::now();
    assert!(limiter.check(&key, 1).await.is_err());
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
    node.resume();

    let recovered_by = Instant::now() + Duration::from_secs(15);
    while limiter.check(&key, 1).await.is_err() {
        assert!(Instant::now() < recovered_by, "no recovery after resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On a 3-master Redis Cluster, a policy's limits for one client share a hash slot, so the
/// multi-key script runs on whichever master owns each client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_redis_cluster() {
    let cluster = RedisCluster::start();
    let client = cluster.client().await;
    let policy = Policy::builder("api")
        .limit("burst", TokenBucket::new(3, 0.001).unwrap())
        .unwrap()
        .limit(
            "daily",
            FixedWindow::new(5, Duration::from_secs(86_400)).unwrap(),
        )
        .unwrap()
        .limit(
            "strict",
            SlidingWindowLog::new(4, Duration::from_secs(600)).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
    let store = RedisStore::new(client).with_timeout(Duration::from_secs(2));
    let limiter = RateLimiter::new(store.clone(), policy.clone());
    // Many clients spread over all three masters' slots.
    for client_id in 0..60 {
        let key = Key::from(format!("user:{client_id}"));
        for _ in 0..3 {
            assert!(limiter.check(&key, 1).await.unwrap().is_allowed());
        }
        let refused = limiter.check(&key, 1).await.unwrap();
        assert!(!refused.is_allowed());
        assert_eq!(refused.violated().collect::<Vec<_>>(), ["burst"]);
    }
    let keys = store.keys_of(&policy, &Key::from("user:7"));
    assert!(keys.iter().all(|k| k.ends_with(":{user:7}")), "{keys:?}");
}
