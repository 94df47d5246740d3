//! Stores shared by several caches, one suite for every store: `MemoryStore` shared by three
//! caches in one process, and `RedisStore` on real servers — fred and redis-rs, on one Redis
//! and on a 3-master cluster: shared storage and variants, purges seen by every cache (hard,
//! soft, by URL, surrogate key and all), coalescing across caches, a dead leader's claim; then
//! Redis only: corrupt records, a paused Redis, a fetch in flight during a purge.

mod common;

use std::time::{Duration, Instant};

use common::{Origin, cache_status, get, send};
use http::{Request, StatusCode};
use http_body_util::Full;
use palisade_cache::{HttpCache, PurgeMode, Store, store::RedisStore};
use palisade_core::redis::{Arg, RedisClient};
use palisade_testkit::{
    FaultMode, FaultProxy, RedisCluster, RedisNode, TestRedis, connect_url, unique_prefix,
};
use tower::Layer;

fn instance<St: Store>(store: St) -> HttpCache<St> {
    HttpCache::new(store)
        .name("fleet")
        .coalesce_wait(Duration::from_secs(5))
}

fn on_redis<C: RedisClient>(clients: Vec<C>, prefix: &str) -> Vec<RedisStore<C>> {
    clients
        .into_iter()
        .map(|c| {
            RedisStore::new(c)
                .with_prefix(prefix)
                .timeout(Duration::from_secs(2))
        })
        .collect()
}

/// Runs each scenario (given three stores sharing their storage) on one `MemoryStore` shared
/// by three caches, on fred and redis-rs against the shared Redis, and on both clients against
/// a 3-master cluster.
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let shared = palisade_cache::MemoryStore::new(16 << 20);
                    super::$scenario(vec![shared.clone(), shared.clone(), shared]).await;
                }
            )*
        }

        mod fred_client {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let redis = TestRedis::connect().await;
                    let clients = vec![
                        redis.another_client().await,
                        redis.another_client().await,
                        redis.another_client().await,
                    ];
                    super::$scenario(on_redis(clients, &redis.prefix)).await;
                }
            )*
        }

        mod redis_rs_client {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let redis = TestRedis::connect().await;
                    let clients = vec![redis.redis_rs().await, redis.redis_rs().await, redis.redis_rs().await];
                    super::$scenario(on_redis(clients, &redis.prefix)).await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_scenario_on_redis_cluster() {
            let cluster = RedisCluster::start();
            let (fred, redis_rs) = (cluster.client().await, cluster.redis_rs().await);
            $(
                $scenario(on_redis(vec![fred.clone(); 3], &unique_prefix("cluster"))).await;
                $scenario(on_redis(vec![redis_rs.clone(); 3], &unique_prefix("cluster"))).await;
            )*
        }
    };
}

on_every_store!(
    variants_are_shared_by_the_fleet,
    purges_are_seen_by_every_instance_when_they_return,
    concurrent_misses_across_instances_make_one_origin_request,
    a_dead_leaders_claim_only_delays_the_others_until_it_expires,
);

async fn variants_are_shared_by_the_fleet<St: Store>(stores: Vec<St>) {
    let origin = Origin::new(
        200,
        &[("cache-control", "max-age=60"), ("vary", "accept-language")],
        "hello",
    );
    let a = instance(stores[0].clone()).layer().layer(origin.clone());
    let b = instance(stores[1].clone()).layer().layer(origin.clone());
    let lang = |l: &str| {
        Request::get("http://example.com/v")
            .header("accept-language", l)
            .body(Full::default())
            .unwrap()
    };
    send(&a, lang("en")).await;
    send(&a, lang("de")).await;
    let (_, headers, body) = send(&b, lang("en")).await;
    assert_eq!(body.as_ref(), b"hello");
    assert!(
        cache_status(&headers).contains("hit"),
        "B reads what A stored: {headers:?}"
    );
    assert!(cache_status(&send(&b, lang("de")).await.1).contains("hit"));
    assert!(cache_status(&send(&b, lang("fr")).await.1).contains("fwd=vary-miss"));
    assert_eq!(origin.calls(), 3);
}

async fn purges_are_seen_by_every_instance_when_they_return<St: Store>(stores: Vec<St>) {
    let origin = Origin::new(
        200,
        &[
            ("cache-control", "max-age=60, stale-while-revalidate=60"),
            ("surrogate-key", "catalog item-1"),
            ("etag", "\"1\""),
        ],
        "item",
    );
    let (a_cache, b_cache) = (instance(stores[0].clone()), instance(stores[1].clone()));
    let a = a_cache.layer().layer(origin.clone());
    let b = b_cache.layer().layer(origin.clone());
    send(&a, get("/i")).await;
    assert!(cache_status(&send(&a, get("/i")).await.1).contains("hit"));

    // Hard purge by tag on B: A misses at once.
    b_cache
        .purge_surrogate_key("item-1", PurgeMode::Hard)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(cache_status(&send(&a, get("/i")).await.1).contains("fwd=uri-miss"));
    assert_eq!(origin.calls(), 2);

    // Soft purge by tag: still served at once (stale-while-revalidate), revalidated behind.
    b_cache
        .purge_surrogate_key("catalog", PurgeMode::Soft)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    origin.answer(
        304,
        &[
            ("cache-control", "max-age=60, stale-while-revalidate=60"),
            ("etag", "\"1\""),
        ],
        "",
    );
    let (_, headers, body) = send(&a, get("/i")).await;
    assert_eq!(body.as_ref(), b"item");
    // Stale at once (ttl 0 or below), served without waiting for the origin.
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    eventually("the soft-purged response is revalidated", || {
        origin.calls() == 3
    })
    .await;
    eventually_hit(&b, "/i").await;

    // By URL (hard), and all (soft then hard).
    let url = "http://example.com/i".parse().unwrap();
    assert_eq!(
        a_cache.purge_url(&url, PurgeMode::Hard).await.unwrap(),
        Some(1)
    );
    origin.answer(200, &[("cache-control", "max-age=60")], "again");
    assert!(cache_status(&send(&b, get("/i")).await.1).contains("fwd=uri-miss"));
    a_cache.purge_all(PurgeMode::Hard).await.unwrap();
    // Bans compare milliseconds: what is stored in the purge's own millisecond is purged too.
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(cache_status(&send(&b, get("/i")).await.1).contains("fwd=uri-miss"));
    // What is stored after a purge is not purged by it.
    assert!(cache_status(&send(&a, get("/i")).await.1).contains("hit"));
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn eventually_hit<St: Store>(svc: &palisade_cache::Caching<Origin, St>, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, headers, _) = send(svc, get(path)).await;
        let status = cache_status(&headers);
        let ttl: i64 = status
            .split("ttl=")
            .nth(1)
            .and_then(|t| t.split(';').next()?.trim().parse().ok())
            .unwrap_or(-1);
        if status.contains("hit") && ttl > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "never fresh again: {headers:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn concurrent_misses_across_instances_make_one_origin_request<St: Store>(stores: Vec<St>) {
    let (origin, gate) = Origin::new(200, &[("cache-control", "max-age=60")], "once").gated();
    let instances: Vec<_> = stores
        .iter()
        .map(|s| instance(s.clone()).layer().layer(origin.clone()))
        .collect();
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let svc = instances[i % 3].clone();
            tokio::spawn(async move { send(&svc, get("/hot")).await })
        })
        .collect();
    // Every instance has asked the store by now; only one fetches.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.calls(), 1);
    gate.add_permits(1);
    for call in calls {
        let (status, _, body) = call.await.unwrap();
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"once"[..]));
    }
    assert_eq!(origin.calls(), 1, "one origin request for the whole fleet");
}

async fn a_dead_leaders_claim_only_delays_the_others_until_it_expires<St: Store>(stores: Vec<St>) {
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "late");
    let dead = stores[0].clone();
    // An instance claimed the fetch, then died: its claim lives 400 ms.
    let token = dead
        .claim_fetch("http://example.com/dead", Duration::from_millis(400))
        .await
        .unwrap();
    assert!(token.is_some());
    let svc = instance(stores[1].clone()).layer().layer(origin.clone());
    let started = Instant::now();
    let (status, headers, _) = send(&svc, get("/dead")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cache_status(&headers).contains("collapsed"), "{headers:?}");
    assert_eq!(
        origin.calls(),
        1,
        "it fetched itself once the claim was gone"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "not the whole coalescing wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_a_miss_not_an_error() {
    let redis = TestRedis::connect().await;
    let store = RedisStore::new(redis.another_client().await).with_prefix(&redis.prefix);
    let key = palisade_core::redis_key::RedisKeyBuilder::new("cache")
        .with_prefix(&redis.prefix)
        .key("v", &palisade_core::key::Key::from("http://example.com/x"));
    let args = [
        Arg::from(key.as_str()),
        Arg::from("-"),
        Arg::from("definitely not an entry"),
    ];
    RedisClient::command(&redis.client, "HSET", &args)
        .await
        .unwrap();
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "fine");
    let svc = HttpCache::new(store).layer().layer(origin.clone());
    let (status, headers, _) = send(&svc, get("/x")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        cache_status(&headers).contains("fwd=uri-miss"),
        "{headers:?}"
    );
    assert!(
        cache_status(&send(&svc, get("/x")).await.1).contains("hit"),
        "replaced by a good one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_makes_the_cache_a_pass_through_within_its_timeout() {
    let node = RedisNode::start();
    let client = connect_url(&node.url(), Duration::from_secs(3))
        .await
        .unwrap();
    let store = RedisStore::new(client).timeout(Duration::from_millis(100));
    let origin = Origin::new(200, &[("cache-control", "max-age=60")], "origin");
    let cache = HttpCache::new(store);
    let svc = cache.layer().layer(origin.clone());
    send(&svc, get("/p")).await;
    node.pause();
    let started = Instant::now();
    let (status, headers, body) = send(&svc, get("/p")).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"origin"[..]));
    assert!(cache_status(&headers).contains("detail=store-unavailable"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the store timeout"
    );
    node.resume();
}

/// Regression (review): a fetch that began before a purge and landed after it stored the
/// pre-purge response, served as fresh by every instance. Bans compare when entries were
/// requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_in_flight_during_a_purge_does_not_bring_the_old_response_back() {
    let redis = TestRedis::connect().await;
    for by_url in [false, true] {
        let prefix = format!("{}-{by_url}", redis.prefix);
        let (origin, gate) = Origin::new(
            200,
            &[("cache-control", "max-age=60"), ("surrogate-key", "t")],
            "old",
        )
        .gated();
        let cache = instance(on_redis(vec![redis.another_client().await], &prefix).remove(0));
        let svc = cache.layer().layer(origin.clone());
        let in_flight = {
            let svc = svc.clone();
            tokio::spawn(async move { send(&svc, get("/f")).await })
        };
        eventually("the fetch is under way", || origin.calls() == 1).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        if by_url {
            let url = "http://example.com/f".parse().unwrap();
            cache.purge_url(&url, PurgeMode::Hard).await.unwrap();
        } else {
            cache
                .purge_surrogate_key("t", PurgeMode::Hard)
                .await
                .unwrap();
        }
        gate.add_permits(1);
        assert_eq!(
            in_flight.await.unwrap().2.as_ref(),
            b"old",
            "it asked before the purge"
        );
        origin.answer(200, &[("cache-control", "max-age=60")], "new");
        gate.add_permits(10);
        let (_, headers, body) = send(&svc, get("/f")).await;
        assert_eq!(body.as_ref(), b"new", "by_url={by_url}: {headers:?}");
    }
}

/// A fetch claim whose reply comes after the store's timeout may still land: it is given back
/// by its token (nobody else's claim is touched), so other instances are not held for the
/// whole lease by a claim nobody will release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_lands_after_its_timeout_is_given_back() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let slow = RedisStore::new(
        connect_url(&proxy.redis_url(), Duration::from_secs(3))
            .await
            .unwrap(),
    )
    .timeout(Duration::from_millis(50));
    let direct = RedisStore::new(node.client().await).timeout(Duration::from_secs(2));
    proxy.set(FaultMode::Latency(Duration::from_millis(200)));
    let claimed = slow
        .claim_fetch("http://example.com/k", Duration::from_secs(30))
        .await;
    assert!(
        matches!(claimed, Err(palisade_core::BackendError::Timeout(_))),
        "{claimed:?}"
    );
    // The SET lands ~200 ms after it was sent, the compensation ~50 ms after that (both through
    // the same delayed connection). Real network time: wait until both must have landed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !direct.fetch_claimed("http://example.com/k").await.unwrap(),
        "the late claim was never given back: others would wait its whole lease"
    );
    proxy.set(FaultMode::Pass);
}
