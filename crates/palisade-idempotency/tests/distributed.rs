//! Three service instances sharing Redis, PostgreSQL, or both: one execution per key, whatever
//! the concurrency, the crashes, the flushes and the outages.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::State,
    routing::post,
};
use fred::interfaces::KeysInterface;
use http::{Request, StatusCode};
use palisade_core::key::{Header, KeyExtractor, RequestHead};
use palisade_idempotency::{
    DualStore, Fingerprint, IdempotencyLayer, IdempotencyStore, PostgresStore, RedisStore,
    store::{Claim, Owner, RecordKey},
};
use palisade_testkit::{FaultMode, FaultProxy, RedisNode, TestPostgres, TestRedis};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

async fn pay(State(calls): State<Calls>) -> (StatusCode, String) {
    let n = calls.0.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(30)).await;
    (StatusCode::CREATED, format!("{{\"payment\":{n}}}"))
}

fn instance<S: IdempotencyStore>(store: S, calls: Calls) -> Router {
    Router::new()
        .route("/pay", post(pay))
        .route_layer(
            IdempotencyLayer::new(store)
                .scope(Header::new("x-api-key"))
                .require_key(),
        )
        .with_state(calls)
}

fn request(key: &str) -> Request<Body> {
    Request::post("/pay")
        .header("x-api-key", "client-1")
        .header("idempotency-key", key)
        .body(Body::from("{\"amount\":5}"))
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, bool, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        replayed,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn record(key: &str) -> RecordKey {
    let (parts, _) = request(key).into_parts();
    let caller = Header::new("x-api-key")
        .extract(&RequestHead::from(&parts))
        .unwrap();
    RecordKey::new("default", &caller, "/pay", key)
}

fn fingerprint(key: &str) -> String {
    let (parts, _) = request(key).into_parts();
    Fingerprint::default().compute(&parts, b"{\"amount\":5}")
}

/// 100 concurrent identical requests spread over three instances: one execution, and every
/// answer is the stored response or 409.
async fn hundred_duplicates(apps: &[Router], calls: &Calls) {
    for round in 0..3 {
        let key = format!("dup-{round}");
        let mut tasks = Vec::new();
        for i in 0..100 {
            let app = apps[i % apps.len()].clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move { send(&app, request(&key)).await }));
        }
        let mut bodies = Vec::new();
        for task in tasks {
            let (status, _, body) = task.await.unwrap();
            match status {
                StatusCode::CREATED => bodies.push(body),
                StatusCode::CONFLICT => {}
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(
            calls.0.load(Ordering::SeqCst),
            round + 1,
            "exactly one execution"
        );
        bodies.dedup();
        assert_eq!(bodies.len(), 1, "everyone saw the same response");
        for app in apps {
            let (status, replayed, body) = send(app, request(&key)).await;
            assert_eq!((status, replayed), (StatusCode::CREATED, true));
            assert_eq!(body, bodies[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis() {
    let redis = TestRedis::connect().await;
    let calls = Calls::default();
    let mut apps = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::new(redis.another_client().await).with_prefix(&redis.prefix);
        apps.push(instance(store, calls.clone()));
    }
    hundred_duplicates(&apps, &calls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres() {
    let pg = TestPostgres::connect().await;
    let calls = Calls::default();
    let mut apps = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::new(pg.another_pool(5).await);
        store.migrate().await.unwrap();
        apps.push(instance(store, calls.clone()));
    }
    hundred_duplicates(&apps, &calls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis_and_postgres() {
    let redis = TestRedis::connect().await;
    let pg = TestPostgres::connect().await;
    let calls = Calls::default();
    let mut apps = Vec::new();
    for _ in 0..3 {
        let fast = RedisStore::new(redis.another_client().await).with_prefix(&redis.prefix);
        let durable = PostgresStore::new(pg.another_pool(5).await);
        durable.migrate().await.unwrap();
        apps.push(instance(DualStore::new(fast, durable), calls.clone()));
    }
    hundred_duplicates(&apps, &calls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_redis_does_not_run_it_twice_with_postgres_behind() {
    let node = RedisNode::start();
    let client = node.client().await;
    let pg = TestPostgres::connect().await;
    let durable = PostgresStore::new(pg.pool.clone());
    durable.migrate().await.unwrap();
    let fast = RedisStore::new(client.clone());
    let calls = Calls::default();
    let app = instance(DualStore::new(fast.clone(), durable), calls.clone());

    let (_, _, first) = send(&app, request("flush")).await;
    let flushed = std::process::Command::new("redis-cli")
        .args(["-p", &node.port().to_string(), "FLUSHALL"])
        .output()
        .expect("redis-cli");
    assert!(flushed.status.success());
    let exists: i64 = client
        .exists(fast.redis_key(&record("flush")))
        .await
        .unwrap();
    assert_eq!(exists, 0, "Redis forgot the key");
    let (status, replayed, again) = send(&app, request("flush")).await;
    assert_eq!(
        (status, replayed, again.as_str()),
        (StatusCode::CREATED, true, first.as_str())
    );
    assert_eq!(calls.0.load(Ordering::SeqCst), 1);
    // Backfilled: Redis answers the next replay itself.
    let exists: i64 = client
        .exists(fast.redis_key(&record("flush")))
        .await
        .unwrap();
    assert_eq!(exists, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_store_survives_a_dead_redis() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let client = palisade_testkit::connect_url(&proxy.redis_url(), Duration::from_secs(5))
        .await
        .unwrap();
    let pg = TestPostgres::connect().await;
    let durable = PostgresStore::new(pg.pool.clone());
    durable.migrate().await.unwrap();
    let fast = RedisStore::new(client).with_timeout(Duration::from_millis(100));
    let calls = Calls::default();
    let app = instance(DualStore::new(fast, durable), calls.clone());
    proxy.set(FaultMode::BlackHole);
    let (s1, _, b1) = send(&app, request("down")).await;
    let (s2, replayed, b2) = send(&app, request("down")).await;
    assert_eq!(
        (s1, s2, replayed),
        (StatusCode::CREATED, StatusCode::CREATED, true)
    );
    assert_eq!(b1, b2);
    assert_eq!(calls.0.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_quickly_and_recovers() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let client = palisade_testkit::connect_url(&proxy.redis_url(), Duration::from_secs(5))
        .await
        .unwrap();
    let store = RedisStore::new(client).with_timeout(Duration::from_millis(200));
    let calls = Calls::default();
    let app = instance(store, calls.clone());
    for mode in [FaultMode::BlackHole, FaultMode::Drop] {
        proxy.set(mode);
        let answered = tokio::time::timeout(Duration::from_secs(5), send(&app, request("o"))).await;
        let (status, _, _) = answered.expect("answered, never hangs");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        calls.0.load(Ordering::SeqCst),
        0,
        "nothing ran without deduplication"
    );
    proxy.set(FaultMode::Pass);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = send(&app, request("o")).await.0;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::CREATED);
}

/// A claim whose holder crashed is free once its lease runs out (expired here by moving the
/// record's expiry into the past, as the server's clock would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_claims_expire_on_redis_and_postgres() {
    let redis = TestRedis::connect().await;
    let pg = TestPostgres::connect().await;
    let redis_store = RedisStore::new(redis.client.clone()).with_prefix(&redis.prefix);
    let pg_store = PostgresStore::new(pg.pool.clone());
    pg_store.migrate().await.unwrap();
    let calls = Calls::default();
    let fp = fingerprint("crash");
    let rec = record("crash");

    let app = instance(redis_store.clone(), calls.clone());
    let claim = redis_store
        .claim(&rec, &fp, &Owner::unique(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claim, Claim::Acquired);
    assert_eq!(send(&app, request("crash")).await.0, StatusCode::CONFLICT);
    let _: () = redis
        .client
        .pexpire_at(redis_store.redis_key(&rec), 1, None)
        .await
        .unwrap();
    assert_eq!(send(&app, request("crash")).await.0, StatusCode::CREATED);

    let app = instance(pg_store.clone(), calls.clone());
    let claim = pg_store
        .claim(&rec, &fp, &Owner::unique(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claim, Claim::Acquired);
    assert_eq!(send(&app, request("crash")).await.0, StatusCode::CONFLICT);
    sqlx::query("UPDATE palisade_idempotency SET expires_at = now() - interval '1 second'")
        .execute(&pg.pool)
        .await
        .unwrap();
    assert_eq!(send(&app, request("crash")).await.0, StatusCode::CREATED);
    assert_eq!(calls.0.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expiry_and_batched_cleanup_on_postgres() {
    let pg = TestPostgres::connect().await;
    let store = PostgresStore::new(pg.pool.clone());
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrations are idempotent");
    let calls = Calls::default();
    let app = instance(store.clone(), calls.clone());
    send(&app, request("keep")).await;
    assert!(
        send(&app, request("keep")).await.1,
        "replayed while retained"
    );
    for i in 0..25 {
        let rec = RecordKey::message("cleanup", &i.to_string());
        let owner = Owner::unique();
        store
            .claim(&rec, "", &owner, Duration::from_secs(60))
            .await
            .unwrap();
        store
            .complete(
                &rec,
                &owner,
                bytes::Bytes::from_static(b"x"),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
    }
    sqlx::query("UPDATE palisade_idempotency SET expires_at = now() - interval '1 second'")
        .execute(&pg.pool)
        .await
        .unwrap();
    let (status, replayed, _) = send(&app, request("keep")).await;
    assert_eq!(
        (status, replayed),
        (StatusCode::CREATED, false),
        "retention over: runs again"
    );
    assert_eq!(calls.0.load(Ordering::SeqCst), 2);
    let deleted = store.delete_expired(10, Duration::ZERO).await.unwrap();
    assert_eq!(deleted, 25);
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM palisade_idempotency")
        .fetch_one(&pg.pool)
        .await
        .unwrap();
    assert_eq!(left, 1, "only the live record is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expiry_on_redis() {
    let redis = TestRedis::connect().await;
    let store = RedisStore::new(redis.client.clone()).with_prefix(&redis.prefix);
    let calls = Calls::default();
    let app = instance(store.clone(), calls.clone());
    send(&app, request("r")).await;
    let ttl: i64 = redis
        .client
        .pttl(store.redis_key(&record("r")))
        .await
        .unwrap();
    assert!(
        ttl > 23 * 3600 * 1000,
        "kept for the 24 h retention, got {ttl} ms"
    );
    assert!(send(&app, request("r")).await.1);
    let _: () = redis
        .client
        .pexpire_at(store.redis_key(&record("r")), 1, None)
        .await
        .unwrap();
    assert!(!send(&app, request("r")).await.1);
    assert_eq!(calls.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalid_table_names_are_refused() {
    let pool = sqlx::PgPool::connect_lazy(&palisade_testkit::database_url()).unwrap();
    for bad in ["", "a;drop table x", "1abc", "a.b.c", "a b", "a."] {
        assert!(
            PostgresStore::new(pool.clone()).with_table(bad).is_err(),
            "{bad}"
        );
    }
    assert!(
        PostgresStore::new(pool)
            .with_table("app.idempotency_v2")
            .is_ok()
    );
}

async fn slow_pay(State(calls): State<Calls>) -> (StatusCode, String) {
    let n = calls.0.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(600)).await;
    (StatusCode::CREATED, format!("{{\"slow_payment\":{n}}}"))
}

/// A duplicate arriving at another instance while the first still runs waits for it and gets
/// its response, when the layer is told to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_duplicates_across_instances_get_the_replay() {
    let redis = TestRedis::connect().await;
    let calls = Calls::default();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::new(redis.another_client().await).with_prefix(&redis.prefix);
        apps.push(
            Router::new()
                .route("/pay", post(slow_pay))
                .route_layer(
                    IdempotencyLayer::new(store)
                        .scope(Header::new("x-api-key"))
                        .wait_for_in_flight(Duration::from_secs(10)),
                )
                .with_state(calls.clone()),
        );
    }
    let first = tokio::spawn({
        let app = apps[0].clone();
        async move { send(&app, request("wait")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, replayed, body) = send(&apps[1], request("wait")).await;
    let (first_status, _, first_body) = first.await.unwrap();
    assert_eq!(
        (status, first_status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(replayed, "the waiter got the stored response");
    assert_eq!(body, first_body);
    assert_eq!(calls.0.load(Ordering::SeqCst), 1);
}

/// Regression: a claim whose reply came after the store timeout had landed, and the key stayed
/// "in flight" for the whole lease: the client's retry of a request that never ran got 409 for
/// 60 s. The late claim is released with its owner token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_claim_does_not_block_the_retry() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let client = palisade_testkit::connect_url(&proxy.redis_url(), Duration::from_secs(5))
        .await
        .unwrap();
    let slow = RedisStore::new(client).with_timeout(Duration::from_millis(100));
    let direct = RedisStore::new(node.client().await);
    let calls = Calls::default();
    let (first, second) = (
        instance(slow, calls.clone()),
        instance(direct, calls.clone()),
    );
    // Load the scripts while the network is fine.
    assert_eq!(send(&first, request("warm")).await.0, StatusCode::CREATED);
    proxy.set(FaultMode::Latency(Duration::from_millis(300)));
    assert_eq!(
        send(&first, request("late")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The late claim lands, then its compensation.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set(FaultMode::Pass);
    let (status, replayed, body) = send(&second, request("late")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!replayed);
    assert_eq!(
        calls.0.load(Ordering::SeqCst),
        2,
        "warm-up and the retry ran"
    );
}
