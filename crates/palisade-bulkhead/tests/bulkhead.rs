//! Bulkhead admission under real concurrency and paused time.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::Poll,
    time::Duration,
};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use palisade_bulkhead::{Acquire, BulkheadLayer, Pool, PoolConfig, Tier};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

/// An inner service that counts calls in flight and waits for `gate` before answering.
fn gated(
    gate: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
) -> impl Service<
    Request<()>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_req: Request<()>| {
        let (gate, in_flight, peak) = (gate.clone(), in_flight.clone(), peak.clone());
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_the_limit_in_flight() {
    let pool = Pool::new(PoolConfig::single("db", 3, 1_000, Duration::from_secs(60)));
    let gate = Arc::new(Semaphore::new(0));
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let svc = BulkheadLayer::new(pool.clone(), pool.lowest_tier()).layer(gated(
        gate.clone(),
        in_flight,
        peak.clone(),
    ));
    let calls: Vec<_> = (0..200)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
        .collect();
    // Let them pile up, then release them a few at a time.
    eventually("3 active, the rest queued", || {
        let t = &pool.snapshot().tiers[0];
        t.active == 3 && t.queued == 197
    })
    .await;
    for _ in 0..200 {
        gate.add_permits(1);
        tokio::task::yield_now().await;
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(pool.snapshot().max_active, 3);
    assert_eq!(pool.snapshot().tiers[0].active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded() {
    let pool = Pool::new(PoolConfig::single("db", 2, 3, Duration::from_secs(60)));
    let gate = Arc::new(Semaphore::new(0));
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let svc = BulkheadLayer::new(pool.clone(), pool.lowest_tier()).layer(gated(
        gate.clone(),
        in_flight,
        peak,
    ));
    let running: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
        .collect();
    eventually("2 active, 3 queued", || {
        let t = &pool.snapshot().tiers[0];
        (t.active, t.queued) == (2, 3)
    })
    .await;
    // The next three are refused at once.
    for _ in 0..3 {
        let r = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    gate.add_permits(5);
    for r in running {
        assert_eq!(r.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn the_max_wait_is_honoured() {
    let pool = Pool::new(PoolConfig::single("db", 1, 1, Duration::from_secs(5)));
    let held = pool.try_acquire(pool.lowest_tier()).unwrap();
    let svc = BulkheadLayer::new(pool.clone(), pool.lowest_tier()).layer(tower::service_fn(
        |_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Body::empty())) },
    ));
    let waiting = tokio::spawn(svc.oneshot(Request::new(())));
    tokio::time::sleep(Duration::from_millis(4_999)).await;
    assert!(!waiting.is_finished());
    tokio::time::sleep(Duration::from_millis(2)).await;
    let r = waiting.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(pool.snapshot().tiers[0].queued, 0);
    drop(held);
    assert_eq!(pool.snapshot().tiers[0].active, 0);
}

#[tokio::test]
async fn a_flood_of_optional_work_never_blocks_critical_work() {
    let pool = Pool::new(PoolConfig::three_tiers("api"));
    let (optional, standard, critical) = (
        pool.tier("optional").unwrap(),
        pool.tier("standard").unwrap(),
        pool.tier("critical").unwrap(),
    );
    // Optional takes what it may: 4 slots.
    let mut held: Vec<_> = std::iter::from_fn(|| pool.try_acquire(optional)).collect();
    assert_eq!(held.len(), 4);
    // Standard may take its 8 (not critical's 5).
    held.extend(std::iter::from_fn(|| pool.try_acquire(standard)));
    assert_eq!(held.len(), 12);
    // Every critical call still gets a slot.
    let critical_permits: Vec<_> = (0..5)
        .map(|_| pool.try_acquire(critical).unwrap())
        .collect();
    assert!(pool.try_acquire(critical).is_none());
    // Freed capacity goes to the highest-priority waiter first.
    let Acquire::Queued(low) = pool.acquire_or_queue(optional) else {
        panic!()
    };
    let Acquire::Queued(high) = pool.acquire_or_queue(critical) else {
        panic!()
    };
    drop(critical_permits);
    let waker = futures_noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(matches!(pool.poll_ticket(high, &mut cx), Poll::Ready(_)));
    assert!(
        pool.poll_ticket(low, &mut cx).is_pending(),
        "optional still over its share"
    );
    pool.cancel(low);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_come_back_on_drop_after_ready_cancellation_and_panic() {
    let pool = Pool::new(PoolConfig::single("db", 1, 10, Duration::from_secs(60)));
    let svc = BulkheadLayer::new(pool.clone(), pool.lowest_tier()).layer(tower::service_fn(
        |req: Request<()>| async move {
            if req.uri().path() == "/panic" {
                panic!("handler bug");
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        },
    ));
    // Readied, then dropped without a call.
    let mut ready = svc.clone();
    ready.ready().await.unwrap();
    assert_eq!(pool.snapshot().tiers[0].active, 1);
    drop(ready);
    assert_eq!(pool.snapshot().tiers[0].active, 0);
    // A call whose future is dropped (the client went away).
    let call = tokio::spawn(svc.clone().oneshot(Request::new(())));
    eventually("the call runs", || pool.snapshot().tiers[0].active == 1).await;
    call.abort();
    let _ = call.await;
    assert_eq!(pool.snapshot().tiers[0].active, 0);
    // A handler that panics.
    let req = Request::get("/panic").body(()).unwrap();
    assert!(tokio::spawn(svc.clone().oneshot(req)).await.is_err());
    assert_eq!(pool.snapshot().tiers[0].active, 0);
    // A waiter that gives up leaves the queue.
    let held = pool.try_acquire(pool.lowest_tier()).unwrap();
    let waiter = tokio::spawn(svc.clone().oneshot(Request::new(())));
    eventually("the call waits", || pool.snapshot().tiers[0].queued == 1).await;
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(pool.snapshot().tiers[0].queued, 0);
    drop(held);
    assert_eq!(pool.snapshot().tiers[0].active, 0);
}

/// Waits (real time, up to 5 s) until `check` holds: for states other tasks must reach.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}

#[test]
fn seed_presets() {
    assert_eq!(
        (Tier::critical().concurrency, Tier::critical().queue),
        (5, 10)
    );
    assert_eq!(
        (Tier::standard().concurrency, Tier::standard().queue),
        (8, 12)
    );
    assert_eq!(
        (Tier::optional().concurrency, Tier::optional().queue),
        (4, 6)
    );
}

#[tokio::test(start_paused = true)]
async fn the_per_call_timeout_cuts_slow_calls_off_and_frees_the_slot() {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let pool = Pool::new(PoolConfig::single("slow-dep", 1, 0, Duration::ZERO));
    let d = dropped.clone();
    let svc = BulkheadLayer::new(pool.clone(), pool.lowest_tier())
        .call_timeout(Duration::from_secs(2))
        .layer(tower::service_fn(move |req: Request<()>| {
            let guard = Dropped(d.clone());
            async move {
                let _guard = guard;
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }
        }));
    let fast = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(fast.status(), StatusCode::OK);
    let started = tokio::time::Instant::now();
    let slow = svc
        .clone()
        .oneshot(Request::get("/slow").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "the slow call's future was dropped"
    );
    assert_eq!(pool.snapshot().tiers[0].active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_bulkheads_isolate_dependencies() {
    use palisade_bulkhead::{KeyedBulkheadLayer, PoolRegistry};
    use palisade_core::key::Header;

    let registry = PoolRegistry::new(PoolConfig::single("deps", 1, 0, Duration::ZERO), 16);
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let svc = KeyedBulkheadLayer::new(
        registry.clone(),
        Header::new("x-dep"),
        registry.config().lowest_tier(),
    )
    .layer(tower::service_fn(move |req: Request<()>| {
        let gate = g.clone();
        async move {
            if req.headers()["x-dep"] == "slow" {
                gate.acquire().await.unwrap().forget();
            }
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    }));
    let call = |dep: &str| Request::get("/").header("x-dep", dep).body(()).unwrap();
    let stuck = tokio::spawn(svc.clone().oneshot(call("slow")));
    eventually("the slow call holds its slot", || {
        registry
            .get(&palisade_core::key::Key::text("header", b"slow"))
            .snapshot()
            .tiers[0]
            .active
            == 1
    })
    .await;
    let refused = svc.clone().oneshot(call("slow")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let other = svc.clone().oneshot(call("fast")).await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another dependency is unaffected"
    );
    gate.add_permits(1);
    assert_eq!(stuck.await.unwrap().unwrap().status(), StatusCode::OK);
    for i in 0..100 {
        let _ = svc
            .clone()
            .oneshot(call(&format!("dep-{i}")))
            .await
            .unwrap();
        assert!(registry.len() <= 16);
    }
}
