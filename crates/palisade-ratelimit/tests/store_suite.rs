//! One suite, every store: the in-memory store and the Redis store must behave the same.

use std::{sync::Arc, time::Duration};

use palisade_core::key::Key;
use palisade_ratelimit::{
    FixedWindow, Gcra, MemoryStore, Policy, RateLimitStore, RateLimiter, RedisStore,
    SlidingWindowLog, TokenBucket,
};
use palisade_testkit::TestRedis;

const HOUR: Duration = Duration::from_secs(3600);

/// Every algorithm with `n` units that will not refill during a test.
fn slow_policies(n: u64) -> Vec<Policy> {
    vec![
        Policy::new("tb", TokenBucket::new(n, 0.001).unwrap()).unwrap(),
        Policy::new("gcra", Gcra::new(n, HOUR * 24).unwrap()).unwrap(),
        Policy::new("swl", SlidingWindowLog::new(n, HOUR).unwrap()).unwrap(),
        Policy::new("fw", FixedWindow::new(n, HOUR * 24 * 365).unwrap()).unwrap(),
    ]
}

async fn admits_quota_then_refuses<S: RateLimitStore>(store: S) {
    for policy in slow_policies(5) {
        let limiter = RateLimiter::new(store.clone(), policy.clone());
        let key = Key::from("client-a");
        for expected_remaining in (0..5).rev() {
            let d = limiter.check(&key, 1).await.unwrap();
            assert!(d.is_allowed(), "{}", policy.name());
            assert_eq!(d.remaining(), expected_remaining, "{}", policy.name());
        }
        let refused = limiter.check(&key, 1).await.unwrap();
        assert!(!refused.is_allowed(), "{}", policy.name());
        assert!(refused.retry_after().unwrap() > Duration::ZERO);
        assert_eq!(refused.violated().collect::<Vec<_>>(), [policy.name()]);
        // Another key has its own quota.
        assert!(
            limiter
                .check(&Key::from("client-b"), 5)
                .await
                .unwrap()
                .is_allowed()
        );
    }
}

async fn peek_consumes_nothing<S: RateLimitStore>(store: S) {
    for policy in slow_policies(3) {
        let limiter = RateLimiter::new(store.clone(), policy.clone());
        let key = Key::from("peeker");
        for _ in 0..10 {
            let d = limiter.peek(&key, 2).await.unwrap();
            assert!(d.is_allowed());
            assert_eq!(
                d.remaining(),
                1,
                "{}: peek reports the remainder after the cost",
                policy.name()
            );
        }
        assert_eq!(limiter.check(&key, 3).await.unwrap().remaining(), 0);
    }
}

async fn cost_above_capacity_never_fits<S: RateLimitStore>(store: S) {
    for policy in slow_policies(4) {
        let limiter = RateLimiter::new(store.clone(), policy.clone());
        let d = limiter.check(&Key::from("greedy"), 5).await.unwrap();
        assert!(!d.is_allowed() && d.is_never(), "{}", policy.name());
        assert_eq!(d.retry_after(), None);
        // …and consumed nothing.
        assert!(
            limiter
                .check(&Key::from("greedy"), 4)
                .await
                .unwrap()
                .is_allowed()
        );
    }
}

async fn several_limits_are_all_or_nothing<S: RateLimitStore>(store: S) {
    let policy = Policy::builder("multi")
        .limit("burst", TokenBucket::new(5, 0.001).unwrap())
        .unwrap()
        .limit("daily", FixedWindow::new(3, HOUR * 24 * 365).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let limiter = RateLimiter::new(store, policy);
    let key = Key::from("user:1");
    let first = limiter.check(&key, 2).await.unwrap();
    assert!(first.is_allowed());
    assert_eq!(
        first
            .limits()
            .iter()
            .map(|l| l.remaining())
            .collect::<Vec<_>>(),
        [3, 1]
    );
    // Fits "burst" (3 left) but not "daily" (1 left): refused, and "burst" keeps its 3.
    let refused = limiter.check(&key, 2).await.unwrap();
    assert!(!refused.is_allowed());
    assert_eq!(refused.violated().collect::<Vec<_>>(), ["daily"]);
    let after = limiter.peek(&key, 0).await.unwrap();
    assert_eq!(
        after
            .limits()
            .iter()
            .map(|l| l.remaining())
            .collect::<Vec<_>>(),
        [3, 1]
    );
}

async fn concurrent_checks_never_over_admit<S: RateLimitStore>(store: S) {
    for policy in slow_policies(50) {
        for round in 0..3 {
            let limiter = Arc::new(RateLimiter::new(store.clone(), policy.clone()));
            let key = Key::from(format!("hot-{round}"));
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let limiter = limiter.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        let mut admitted = 0;
                        for _ in 0..10 {
                            if limiter.check(&key, 1).await.unwrap().is_allowed() {
                                admitted += 1;
                            }
                        }
                        admitted
                    })
                })
                .collect();
            let mut admitted = 0;
            for t in tasks {
                admitted += t.await.unwrap();
            }
            assert_eq!(admitted, 50, "{} round {round}", policy.name());
        }
    }
}

macro_rules! suite {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn admits_quota_then_refuses() {
                super::admits_quota_then_refuses($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn peek_consumes_nothing() {
                super::peek_consumes_nothing($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cost_above_capacity_never_fits() {
                super::cost_above_capacity_never_fits($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn several_limits_are_all_or_nothing() {
                super::several_limits_are_all_or_nothing($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_checks_never_over_admit() {
                super::concurrent_checks_never_over_admit($make).await;
            }
        }
    };
}

suite!(memory, MemoryStore::new());
suite!(redis, {
    let redis = TestRedis::connect().await;
    RedisStore::new(redis.client).with_prefix(&redis.prefix)
});
suite!(redis_rs, {
    let redis = TestRedis::connect().await;
    RedisStore::new(redis.redis_rs().await).with_prefix(&redis.prefix)
});
// A store chosen at run time: both sides of `Either` (the memory side decides synchronously,
// the Redis side through its future).
suite!(
    either_memory,
    palisade_core::Either::<MemoryStore, RedisStore<fred::clients::Client>>::Left(
        MemoryStore::new()
    )
);
suite!(either_redis, {
    let redis = TestRedis::connect().await;
    palisade_core::Either::<MemoryStore, _>::Right(
        RedisStore::new(redis.client).with_prefix(&redis.prefix),
    )
});

palisade_testkit::suite_on_cluster!(
    |client, prefix| RedisStore::new(client)
        .with_prefix(prefix)
        .with_timeout(Duration::from_secs(2)),
    [
        admits_quota_then_refuses,
        peek_consumes_nothing,
        cost_above_capacity_never_fits,
        several_limits_are_all_or_nothing,
        concurrent_checks_never_over_admit,
    ]
);
