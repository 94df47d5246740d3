//! Adaptive limits move with latency and errors, and refuse rather than queue.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use palisade_bulkhead::{AdaptiveLimit, AdaptiveLimitLayer, LimitAlgorithm, LimitBounds};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};

/// `n` calls at once, each taking `latency`.
async fn round(limit: &AdaptiveLimit, n: usize, latency: Duration, failed: bool) {
    let permits: Vec<_> = (0..n).map_while(|_| limit.try_acquire()).collect();
    tokio::time::advance(latency).await;
    for p in permits {
        p.record(failed);
    }
}

#[tokio::test(start_paused = true)]
async fn aimd_shrinks_under_latency_and_grows_back() {
    let limit = AdaptiveLimit::new(
        "partner",
        LimitAlgorithm::Aimd {
            slow: Duration::from_millis(100),
            backoff: 0.5,
        },
        LimitBounds {
            min: 2.0,
            initial: 10.0,
            max: 40.0,
        },
    );
    // Six at once against 10: the first to finish saw 6 ≥ 10/2 in flight (+1); then 5 < 11/2.
    round(&limit, 6, Duration::from_millis(10), false).await;
    assert_eq!(
        limit.limit(),
        11.0,
        "+1 per fast call while half the limit is in use"
    );
    for _ in 0..5 {
        round(&limit, 16, Duration::from_millis(10), false).await;
    }
    let grown = limit.limit();
    assert!(grown > 11.0, "keeps growing while busy and fast: {grown}");
    for _ in 0..3 {
        round(&limit, 40, Duration::from_millis(300), false).await;
    }
    assert_eq!(
        limit.limit(),
        2.0,
        "halved per slow call, down to the floor"
    );
    round(&limit, 2, Duration::from_millis(10), true).await;
    assert_eq!(limit.limit(), 2.0, "errors count as congestion");
    for _ in 0..20 {
        let n = limit.limit() as usize;
        round(&limit, n, Duration::from_millis(10), false).await;
    }
    assert_eq!(
        limit.limit(),
        40.0,
        "back up to the ceiling once latency recovers"
    );
    assert_eq!(limit.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn gradient_follows_the_latency_ratio() {
    let limit = AdaptiveLimit::new(
        "db",
        LimitAlgorithm::Gradient {
            smoothing: 0.2,
            tolerance: 2.0,
        },
        LimitBounds {
            min: 4.0,
            initial: 20.0,
            max: 200.0,
        },
    );
    for _ in 0..50 {
        round(&limit, 1, Duration::from_millis(10), false).await;
    }
    let healthy = limit.limit();
    assert!(healthy > 20.0, "grows while latency is steady: {healthy}");
    for _ in 0..30 {
        round(&limit, 1, Duration::from_millis(200), false).await;
    }
    let congested = limit.limit();
    assert!(
        congested < healthy / 2.0,
        "{congested} after latency went 20x"
    );
    for _ in 0..300 {
        round(&limit, 1, Duration::from_millis(10), false).await;
    }
    assert!(
        limit.limit() > congested * 2.0,
        "recovers: {}",
        limit.limit()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_calls_are_refused_not_queued() {
    let limit = AdaptiveLimit::new(
        "svc",
        LimitAlgorithm::Aimd {
            slow: Duration::from_secs(10),
            backoff: 0.9,
        },
        LimitBounds {
            min: 2.0,
            initial: 2.0,
            max: 2.0,
        },
    );
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let svc =
        AdaptiveLimitLayer::new(limit.clone()).layer(tower::service_fn(move |_req: Request<()>| {
            let gate = g.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }
        }));
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while limit.in_flight() < 2 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    gate.add_permits(2);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(limit.in_flight(), 0);
}
