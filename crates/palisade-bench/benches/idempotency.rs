//! Idempotency cost per request: a trivial handler bare, then behind `IdempotencyLayer` on each
//! store — first execution (a fresh key: claim, handler, store the response) and replay (a
//! known key: one lookup). Redis and PostgreSQL are the local servers (`REDIS_URL`,
//! `DATABASE_URL`); the PostgreSQL table lives in a fresh schema.
//!
//! cargo bench -p palisade-bench --bench idempotency

use std::{
    convert::Infallible,
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use palisade_core::key::Key;
use palisade_idempotency::{
    DualStore, Fingerprint, IdempotencyLayer, IdempotencyStore, InnerBody, MemoryStore,
    PostgresStore, RedisStore, StoredResponse,
    store::{Owner, RecordKey},
};
use palisade_testkit::{TestPostgres, TestRedis};
use tower::{Layer, Service, ServiceExt, service_fn};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn handler(_: Request<InnerBody<Full<Bytes>>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .status(201)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"payment_id":"p-1","amount_cents":500}"#,
        )))
        .unwrap())
}

static FRESH: AtomicU64 = AtomicU64::new(0);

fn request(key: Option<String>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/payments").header("x-api-key", "client-1");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder
        .body(Full::new(Bytes::from_static(
            br#"{"amount_cents":500,"currency":"EUR"}"#,
        )))
        .unwrap()
}

fn bench_store<S: IdempotencyStore>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: S,
) {
    let svc = IdempotencyLayer::new(store).layer(service_fn(handler));
    c.bench_function(&format!("idempotency {name}: first execution"), |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let key = format!(
                        "fresh-{}-{}",
                        std::process::id(),
                        FRESH.fetch_add(1, Ordering::Relaxed)
                    );
                    let response = svc
                        .ready()
                        .await
                        .unwrap()
                        .call(request(Some(key)))
                        .await
                        .unwrap();
                    black_box(response);
                }
                started.elapsed()
            })
        })
    });
    let replay_key = format!(
        "replay-{}-{}",
        std::process::id(),
        FRESH.fetch_add(1, Ordering::Relaxed)
    );
    rt.block_on(async {
        let first = svc
            .clone()
            .oneshot(request(Some(replay_key.clone())))
            .await
            .unwrap();
        assert_eq!(first.status(), 201);
    });
    c.bench_function(&format!("idempotency {name}: replay"), |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let response = svc
                        .ready()
                        .await
                        .unwrap()
                        .call(request(Some(replay_key.clone())))
                        .await
                        .unwrap();
                    assert!(response.headers().contains_key("idempotent-replayed"));
                    black_box(response);
                }
                started.elapsed()
            })
        })
    });
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let bare = service_fn(handler);
    c.bench_function("idempotency bare handler", |b| {
        b.iter_custom(|iters| {
            let mut svc = bare;
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let (parts, body) = request(None).into_parts();
                    let req = Request::from_parts(parts, InnerBody::Left(body));
                    black_box(svc.ready().await.unwrap().call(req).await.unwrap());
                }
                started.elapsed()
            })
        })
    });
    // The parts of the in-memory path, alone.
    let (parts, _) = request(None).into_parts();
    let body = br#"{"amount_cents":500,"currency":"EUR"}"#;
    let fingerprint = Fingerprint::default();
    c.bench_function("idempotency part: fingerprint", |b| {
        b.iter(|| black_box(fingerprint.compute(&parts, body)))
    });
    c.bench_function("idempotency part: record key", |b| {
        b.iter(|| black_box(RecordKey::new("default", &Key::Global, "/payments", "k-1")))
    });
    let memory = MemoryStore::new();
    let key = RecordKey::new("default", &Key::Global, "/payments", "k-1");
    let owner = Owner::unique();
    rt.block_on(async {
        memory
            .claim(&key, "fp", &owner, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let stored = StoredResponse {
            status: http::StatusCode::CREATED,
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            trailers: None,
        };
        memory
            .complete(
                &key,
                &owner,
                stored.encode(),
                std::time::Duration::from_secs(60),
            )
            .await
            .unwrap();
    });
    c.bench_function("idempotency part: memory claim (completed)", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    memory
                        .claim(&key, "fp", &owner, std::time::Duration::from_secs(60))
                        .await
                        .unwrap(),
                )
            })
        })
    });
    bench_store(c, &rt, "memory", MemoryStore::new());
    let (redis, pg) =
        rt.block_on(async { (TestRedis::connect().await, TestPostgres::connect().await) });
    let redis_store = RedisStore::new(redis.client.clone()).with_prefix(&redis.prefix);
    let pg_store = PostgresStore::new(pg.pool.clone());
    rt.block_on(pg_store.migrate()).unwrap();
    bench_store(c, &rt, "redis", redis_store.clone());
    bench_store(c, &rt, "postgres", pg_store.clone());
    bench_store(
        c,
        &rt,
        "redis+postgres",
        DualStore::new(redis_store, pg_store),
    );
}

criterion_group! {
    name = idempotency;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(idempotency);
