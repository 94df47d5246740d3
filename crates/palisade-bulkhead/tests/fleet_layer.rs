//! `BulkheadLayer` over a `FleetSemaphore`: the same layer as over a local pool, its slots
//! fleet-wide leases on a real Redis.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use palisade_bulkhead::{BulkheadLayer, FleetSemaphore};
use palisade_core::{OnBackendError, redis::RedisClient};
use palisade_testkit::{FaultMode, FaultProxy, RedisNode, TestRedis, connect_url};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

fn semaphore<C: RedisClient>(client: C, prefix: &str, capacity: u32) -> FleetSemaphore<C> {
    FleetSemaphore::new(client, "partner", capacity)
        .with_prefix(prefix)
        .lease(Duration::from_secs(30))
        .timeout(Duration::from_secs(2))
}

/// An upstream that counts the calls that reach it and answers once `gate` lets it.
fn gated(
    gate: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |_req: Request<()>| {
        let (gate, entered) = (gate.clone(), entered.clone());
        async move {
            // Only a call holding the fleet permit gets here.
            entered.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    })
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `observer` can take (and give back) a permit: `what` was released.
async fn eventually_free<C: RedisClient>(what: &str, observer: &FleetSemaphore<C>) {
    eventually(&format!("{what} is free again"), async || {
        match observer.try_acquire().await {
            Ok(permit) => {
                permit.release().await;
                true
            }
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_refuses_beyond_the_fleet_limit() {
    let redis = TestRedis::connect().await;
    let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let instance = async || {
        let fleet = semaphore(redis.another_client().await, &redis.prefix, 1);
        BulkheadLayer::from_semaphore(fleet).layer(gated(gate.clone(), entered.clone()))
    };
    let (a, b) = (instance().await, instance().await);
    let held = tokio::spawn(a.oneshot(Request::new(())));
    eventually("A takes the fleet's only permit", async || {
        entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let refused = b.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let secs: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    assert_eq!(entered.load(Ordering::SeqCst), 1, "B's call never ran");
    gate.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
    // A's permit came back with its response: B gets in now.
    gate.add_permits(1);
    eventually("B runs once A is done", async || {
        b.clone().oneshot(Request::new(())).await.unwrap().status() == StatusCode::OK
    })
    .await;
}

/// tower's contract: a slot reserved by `poll_ready` belongs to the next `call`; a service
/// readied and dropped without being called gives it back — here a fleet-wide lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readied_service_dropped_uncalled_gives_its_fleet_permit_back() {
    let redis = TestRedis::connect().await;
    let (gate, entered) = (Arc::new(Semaphore::new(1)), Arc::new(AtomicUsize::new(0)));
    let fleet = semaphore(redis.another_client().await, &redis.prefix, 1);
    let observer = semaphore(redis.another_client().await, &redis.prefix, 1);
    let mut readied = BulkheadLayer::from_semaphore(fleet).layer(gated(gate, entered));
    readied.ready().await.unwrap();
    assert!(
        observer.try_acquire().await.is_err(),
        "poll_ready holds the fleet's only permit"
    );
    drop(readied);
    eventually_free("the dropped reservation's permit", &observer).await;
}

/// Redis unreachable: fail open (the default) runs the call without a permit; fail closed
/// answers 503 problem+json without reaching the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_open_or_closed_as_configured() {
    let node = RedisNode::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], node.port()).into()).await;
    let client = connect_url(&proxy.redis_url(), Duration::from_secs(3))
        .await
        .unwrap();
    let fleet = FleetSemaphore::new(client, "partner", 1).timeout(Duration::from_millis(100));
    let (gate, entered) = (Arc::new(Semaphore::new(10)), Arc::new(AtomicUsize::new(0)));
    proxy.set(FaultMode::BlackHole);

    let open =
        BulkheadLayer::from_semaphore(fleet.clone()).layer(gated(gate.clone(), entered.clone()));
    assert_eq!(
        open.oneshot(Request::new(())).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(entered.load(Ordering::SeqCst), 1);

    let closed = BulkheadLayer::from_semaphore(fleet.on_backend_error(OnBackendError::FailClosed))
        .layer(gated(gate, entered.clone()));
    let refused = closed.oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        entered.load(Ordering::SeqCst),
        1,
        "the refused call never ran"
    );
}

/// The per-call timeout works over a fleet semaphore too: 504 naming the semaphore (no tier),
/// and the lease is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_is_cut_off_and_frees_its_fleet_permit() {
    let redis = TestRedis::connect().await;
    let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let fleet = semaphore(redis.another_client().await, &redis.prefix, 1);
    let observer = semaphore(redis.another_client().await, &redis.prefix, 1);
    let svc = BulkheadLayer::from_semaphore(fleet)
        .call_timeout(Duration::from_millis(100))
        .layer(gated(gate, entered));
    let cut = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(cut.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = axum::body::to_bytes(cut.into_body(), 4096).await.unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["bulkhead"], "partner");
    assert!(problem.get("tier").is_none(), "{problem}");
    eventually_free("the cut-off call's permit", &observer).await;
}
