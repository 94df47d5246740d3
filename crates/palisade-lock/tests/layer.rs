//! `LockLayer` over axum: requests for one order are serialised, different orders run in
//! parallel, fail-fast refusals are 409 problem+json with `Retry-After`, and the held lock is
//! visible to the handler — in memory under paused time, and across three instances on Redis.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::{Path, State},
    routing::post,
};
use http::{Request, StatusCode};
use palisade_lock::{HeldLock, LockLayer, Locker, MemoryLock, PathSegment, RedisLock};
use palisade_testkit::TestRedis;
use tower::ServiceExt;

/// Per order: how many handlers run right now, and the most ever seen at once.
/// Also, across orders: how many run now, and the most seen at once.
#[derive(Clone, Default)]
struct Inside(
    Arc<Mutex<HashMap<String, (usize, usize)>>>,
    Arc<Mutex<(usize, usize)>>,
);

impl Inside {
    fn max(&self, order: &str) -> usize {
        self.0.lock().unwrap().get(order).map_or(0, |e| e.1)
    }
    fn total_max(&self) -> usize {
        self.1.lock().unwrap().1
    }
}

async fn pay(State(inside): State<Inside>, Path(order): Path<String>, lock: HeldLock) -> String {
    {
        let mut map = inside.0.lock().unwrap();
        let entry = map.entry(order.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        let mut all = inside.1.lock().unwrap();
        all.0 += 1;
        all.1 = all.1.max(all.0);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    {
        inside.0.lock().unwrap().get_mut(&order).unwrap().0 -= 1;
        inside.1.lock().unwrap().0 -= 1;
    }
    format!("{}:{}", lock.name, lock.fencing_token.unwrap_or(0))
}

fn app<L: Locker>(locker: L, inside: Inside, wait: Duration) -> Router {
    Router::new()
        .route("/orders/{id}/payments", post(pay))
        .route_layer(
            LockLayer::new(locker, PathSegment::new(1))
                .namespace("order")
                .wait(wait),
        )
        .with_state(inside)
}

fn request(order: &str) -> Request<Body> {
    Request::post(format!("/orders/{order}/payments"))
        .body(Body::empty())
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(start_paused = true)]
async fn serialised_per_order_parallel_across_orders() {
    let inside = Inside::default();
    let app = app(
        MemoryLock::new(Duration::from_secs(10)),
        inside.clone(),
        Duration::from_secs(60),
    );
    let mut tasks = Vec::new();
    for i in 0..30 {
        let app = app.clone();
        let order = format!("o{}", i % 3);
        tasks.push(tokio::spawn(
            async move { send(&app, request(&order)).await },
        ));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
    }
    for order in ["o0", "o1", "o2"] {
        assert_eq!(inside.max(order), 1, "{order} ran one request at a time");
    }
    assert!(inside.total_max() >= 2, "different orders ran in parallel");
    assert!(
        bodies.iter().any(|b| b.starts_with("order:o1:")),
        "{bodies:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn fail_fast_is_409_with_retry_after() {
    let locks = MemoryLock::new(Duration::from_secs(10));
    let app = app(locks.clone(), Inside::default(), Duration::ZERO);
    let held = locks.try_acquire("order:o9").await.unwrap().unwrap();
    let (status, headers, body) = send(&app, request("o9")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["retry-after"], "1");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], 409);
    held.release().await.unwrap();
    assert_eq!(send(&app, request("o9")).await.0, StatusCode::OK);
    // Released when the response was produced.
    assert!(locks.try_acquire("order:o9").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn no_name_is_400() {
    let app = Router::new()
        .route("/", post(|| async { "x" }))
        .route_layer(LockLayer::new(
            MemoryLock::new(Duration::from_secs(1)),
            PathSegment::new(3),
        ));
    let (status, headers, _) = send(&app, Request::post("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis() {
    let redis = TestRedis::connect().await;
    let inside = Inside::default();
    let mut apps = Vec::new();
    for _ in 0..3 {
        let locks = RedisLock::new(redis.another_client().await, Duration::from_secs(5))
            .with_prefix(&redis.prefix);
        apps.push(app(locks, inside.clone(), Duration::from_secs(30)));
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = apps[i % 3].clone();
        let order = format!("r{}", i % 2);
        tasks.push(tokio::spawn(
            async move { send(&app, request(&order)).await },
        ));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body);
    }
    assert_eq!(inside.max("r0"), 1);
    assert_eq!(inside.max("r1"), 1);
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 24, "every request had its own fencing token");
}

/// Regression: `PathSegment` locked the raw segment, so `/orders/%6F-1/payments` ran in order
/// o-1's critical section beside `/orders/o-1/payments` (axum decodes both to `o-1`).
#[tokio::test(start_paused = true)]
async fn every_spelling_of_a_path_takes_the_same_lock() {
    let inside = Inside::default();
    let app = app(
        MemoryLock::new(Duration::from_secs(10)),
        inside.clone(),
        Duration::from_secs(60),
    );
    let spellings = ["o-1", "%6F-1", "%6f%2D1", "o%2d1"];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let app = app.clone();
        let order = spellings[i % spellings.len()];
        tasks.push(tokio::spawn(
            async move { send(&app, request(order)).await },
        ));
    }
    for task in tasks {
        let (status, _, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.starts_with("order:o-1:"), "{body}");
    }
    assert_eq!(inside.max("o-1"), 1, "one handler at a time for order o-1");
}

#[tokio::test(start_paused = true)]
async fn a_segment_that_is_not_utf8_is_400_before_locking() {
    let locks = MemoryLock::new(Duration::from_secs(10));
    let app = app(locks, Inside::default(), Duration::ZERO);
    let (status, headers, body) = send(&app, request("%FF")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_while_it_holds_the_lock_releases_it() {
    let locks = MemoryLock::new(Duration::from_secs(600));
    let app = app(locks.clone(), Inside::default(), Duration::ZERO);
    // The client goes away while the handler (50 ms) holds the lock.
    let call = send(&app, request("o7"));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), call)
            .await
            .is_err()
    );
    // The guard went with the future; its release runs in the background, long before the
    // 10-minute lease would have ended.
    tokio::task::yield_now().await;
    assert!(locks.try_acquire("order:o7").await.unwrap().is_some());
}
